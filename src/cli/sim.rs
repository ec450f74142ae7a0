//! `lookout sim`: simulated cameras through the live runtime; a report of what held.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};

use lookout::sim::source::Source;
use lookout::sim::{Sim, SimOptions};

use super::args::SimArgs;
use super::stop_flag;

pub(crate) fn sim(args: &SimArgs) -> Result<ExitCode> {
    let config = super::load_config(
        args.params_file.as_deref(),
        args.execution_providers.as_ref(),
    )?;
    if !(args.duration.is_finite() && args.duration > 0.0) {
        anyhow::bail!(
            "--duration: must be a positive number of seconds, got {}",
            args.duration
        );
    }
    let source = Source::load(&args.source)?;
    let sim = Sim::new(SimOptions {
        config,
        source,
        cameras: args.cameras,
        fps: args.fps,
        jitter_ms: args.jitter_ms,
        burst: args.burst,
        duration: Duration::try_from_secs_f64(args.duration).context("--duration: out of range")?,
        seed: args.seed,
        via_ros: args.via_ros,
    })?;
    let stop = stop_flag()?;
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(1000),
        indicatif::ProgressDrawTarget::stderr_with_hz(4),
    );
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut progress = |done: f64| bar.set_position((done.clamp(0.0, 1.0) * 1000.0) as u64);
    let report = if args.sweep {
        bar.set_message("sweep");
        sim.sweep(args.from_fps, args.step_fps, &stop, &mut progress)?
    } else {
        sim.run(&stop, &mut progress)?
    };
    bar.finish_and_clear();
    let json = serde_json::to_string_pretty(&report)?;
    if let Some(path) = &args.report {
        lookout::replay::write_file_atomically(path, format!("{json}\n").as_bytes())?;
    }
    if let Some(path) = &args.html {
        lookout::replay::write_file_atomically(path, report.html().as_bytes())?;
    }
    if args.json {
        println!("{json}");
    } else {
        print!("{}", report.table());
    }
    Ok(ExitCode::SUCCESS)
}
