//! `lookout check`: the parameters file and the model package it names, checked without
//! loading ONNX Runtime (what a fleet run asks every worker before it replays).

use std::process::ExitCode;

use anyhow::{Context, Result};

use super::args::CheckArgs;

pub(crate) fn check(args: &CheckArgs) -> Result<ExitCode> {
    let (params, _) = lookout::config::params_file(args.params_file.as_deref());
    let config = super::load_config(args.params_file.as_deref(), None)?;
    let model = lookout::core::model::Model::load(&config.model)
        .with_context(|| format!("model package {}", config.model.display()))?;
    let topics: Vec<String> = config
        .cameras
        .iter()
        .map(|c| {
            config
                .camera
                .get(c)
                .map_or_else(String::new, |cc| cc.topic.clone())
        })
        .collect();
    let summary = serde_json::json!({
        "lookout_version": env!("CARGO_PKG_VERSION"),
        "params_file": params.display().to_string(),
        "model": model.manifest.name,
        "model_manifest": model.manifest_path.display().to_string(),
        "model_sha256": model.sha256(),
        "cameras": config.cameras,
        "topics": topics,
        "execution_providers": config.engine.execution_providers,
    });
    if args.json {
        println!("{summary}");
    } else {
        println!("parameters file {}: valid", params.display());
        println!(
            "model {} ({}): sha256 {} verified",
            model.manifest.name,
            model.manifest_path.display(),
            model.sha256()
        );
        for (camera, topic) in config.cameras.iter().zip(&topics) {
            println!("camera {camera}: {topic}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
