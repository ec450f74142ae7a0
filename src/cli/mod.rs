//! The subcommands, one file each, and their arguments.

pub(crate) mod args;
pub(crate) mod check;
pub(crate) mod detect;
pub(crate) mod diff;
pub(crate) mod model;
pub(crate) mod replay;
#[cfg(feature = "ros")]
pub(crate) mod run;
pub(crate) mod sim;

/// The configuration of `replay` and `sim`: `--params-file` (or the default file), its relative
/// paths located, `--execution-providers` applied.
pub(crate) fn load_config(
    params_file: Option<&std::path::Path>,
    providers: Option<&Vec<lookout::core::engine::Provider>>,
) -> anyhow::Result<lookout::config::Config> {
    use anyhow::Context;
    let (params, origin) = lookout::config::params_file(params_file);
    let mut config = lookout::config::Config::load(&params, "lookout")
        .with_context(|| format!("parameters file {}", params.display()))?;
    config.locate_files(origin);
    if let Some(p) = providers {
        config.engine.execution_providers = p.clone();
    }
    Ok(config)
}

/// The flag SIGINT and SIGTERM set (a second signal while shutting down exits at once).
pub(crate) fn stop_flag() -> anyhow::Result<std::sync::Arc<std::sync::atomic::AtomicBool>> {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second signal while shutting down exits at once.
        signal_hook::flag::register_conditional_shutdown(signal, 1, Arc::clone(&stop))?;
        signal_hook::flag::register(signal, Arc::clone(&stop))?;
    }
    Ok(stop)
}
