//! The subcommands, one file each, and their arguments.

pub(crate) mod args;
pub(crate) mod detect;
pub(crate) mod diff;
pub(crate) mod replay;
#[cfg(feature = "ros")]
pub(crate) mod run;
pub(crate) mod sim;

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
