//! `lookout model inspect` and `lookout model build-engine`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

use super::args::{BuildEngineArgs, InspectArgs, ModelCommand};
use lookout::core::model::{Manifest, sha256_file};
use lookout::core::onnx_info::{self, OnnxInfo, join};

pub(crate) fn model(command: &ModelCommand) -> Result<ExitCode> {
    match command {
        ModelCommand::Inspect(args) => inspect(args),
        ModelCommand::BuildEngine(args) => build_engine(args),
    }
}

fn is_manifest(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"))
}

fn inspect(args: &InspectArgs) -> Result<ExitCode> {
    let (manifest, onnx_path) = if is_manifest(&args.path) {
        let text = lookout::config::read_small_text(&args.path)
            .with_context(|| format!("cannot read {}", args.path.display()))?;
        let manifest = Manifest::parse(&text, &args.path)?;
        let dir = args.path.parent().unwrap_or(Path::new("."));
        let onnx = dir.join(&manifest.onnx);
        (Some(manifest), onnx)
    } else {
        (None, args.path.clone())
    };
    let info = onnx_info::read(&onnx_path)?;
    let sha256 =
        sha256_file(&onnx_path).with_context(|| format!("cannot read {}", onnx_path.display()))?;
    let fit = info.decoder_fit(manifest.as_ref().map(|m| m.output.name.as_str()));
    let mut findings = Vec::new();
    if let Some(m) = &manifest {
        findings = onnx_info::check_manifest(m, &info);
        if m.sha256 != sha256 {
            findings.push(format!(
                "sha256: the manifest pins {}, the ONNX file has {sha256}",
                m.sha256
            ));
        }
    }
    if args.json {
        let doc = serde_json::json!({
            "onnx": onnx_path.display().to_string(),
            "sha256": sha256,
            "onnx_info": info,
            "decoder_fit": fit.as_ref().ok(),
            "decoder_fit_error": fit.as_ref().err(),
            "manifest": manifest.as_ref().map(|_| args.path.display().to_string()),
            "max_batch": manifest.as_ref().map(|m| m.input.max_batch),
            "findings": findings,
            "ok": findings.is_empty() && fit.is_ok(),
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print_text(&onnx_path, &sha256, &info, &fit);
        if let Some(m) = &manifest {
            println!(
                "manifest {}: {} ({} decoder, {} classes, input {} {}x{}, up to {} frame{} per run)",
                args.path.display(),
                m.name,
                m.output.decoder,
                m.classes.len(),
                m.input.name,
                m.input.width(),
                m.input.height(),
                m.input.max_batch,
                if m.input.max_batch == 1 { "" } else { "s" }
            );
            if findings.is_empty() {
                println!(
                    "  agrees with the ONNX file: names, shapes, element types, decoder, classes, sha256"
                );
            }
            for f in &findings {
                println!("  MISMATCH {f}");
            }
        }
    }
    Ok(if findings.is_empty() && fit.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_text(path: &Path, sha256: &str, info: &OnnxInfo, fit: &Result<onnx_info::Fit, String>) {
    println!("ONNX {} (sha256 {sha256})", path.display());
    let opsets: Vec<String> = info
        .opsets
        .iter()
        .map(|(d, v)| format!("{d} {v}"))
        .collect();
    println!(
        "  IR version {}, opsets {}, producer {} {}",
        info.ir_version,
        opsets.join(", "),
        info.producer_name,
        info.producer_version
    );
    for (what, list) in [("input ", &info.inputs), ("output", &info.outputs)] {
        for t in list {
            println!(
                "  {what} {} {} [{}]",
                t.name,
                t.element_type,
                join(&t.shape)
            );
        }
    }
    let nodes: u64 = info.operators.values().sum();
    let mut ops: Vec<(&String, &u64)> = info.operators.iter().collect();
    ops.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let ops: Vec<String> = ops.iter().map(|(o, n)| format!("{o} {n}")).collect();
    println!(
        "  {nodes} nodes ({}), {} initializers",
        ops.join(", "),
        info.initializers
    );
    for (k, v) in &info.metadata {
        println!("  metadata {k}: {v}");
    }
    match fit {
        Ok(f) => match f.classes {
            Some(c) => println!("  decoder that fits: {} ({c} classes)", f.decoder),
            None => println!("  decoder that fits: {} (class ids in the rows)", f.decoder),
        },
        Err(reason) => println!("  no decoder fits: {reason}"),
    }
}

fn build_engine(args: &BuildEngineArgs) -> Result<ExitCode> {
    use lookout::core::engine::{Engine, Provider};
    let mut config = super::load_config(args.params_file.as_deref(), None)?;
    let model = lookout::core::model::Model::load(&args.manifest)
        .with_context(|| format!("model package {}", args.manifest.display()))?;
    config.engine.execution_providers = vec![Provider::Tensorrt];
    config.engine.require_first_provider = true;
    config.engine.tensorrt.engine_cache = true;
    let root = config.engine.tensorrt.cache_root();
    eprintln!(
        "building the TensorRT engine of {} ({} precision) into {}; this takes minutes",
        model.manifest.name,
        config.engine.tensorrt.precision(),
        root.display()
    );
    let started = std::time::Instant::now();
    match Engine::new(&model, &config.engine) {
        Ok(_) => {
            println!(
                "TensorRT engine of {} built (or found) in {:.1} s, cached under {}",
                model.manifest.name,
                started.elapsed().as_secs_f64(),
                root.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => bail!("TensorRT engine not built: {e}"),
    }
}
