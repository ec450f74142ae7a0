//! Replay a bag through the library, as `lookout replay` does: the same configuration file as
//! the live node, the same runtime, detections written to an output bag, a report back.
//!
//! Run: `cargo run --release --example replay_bag -- BAG PARAMS_FILE OUT_DIR`, e.g. on the test
//! bag set-up builds: `.lookout/data/bags/vtest config/vtest.yaml /tmp/vtest_out`.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use lookout::config::Config;
use lookout::replay::{Pace, Replay, ReplayOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args_os().skip(1).map(PathBuf::from);
    let (Some(bag), Some(params), Some(out)) = (args.next(), args.next(), args.next()) else {
        return Err("usage: replay_bag BAG PARAMS_FILE OUT_DIR".into());
    };
    let config = Config::load(&params, "lookout")?;
    let replay = Replay::new(ReplayOptions {
        bags: vec![bag],
        config,
        out,
        force: false,
        pace: Pace::MaxSpeed,
        copy_all: false,
        diagnostics: true,
    })?;
    let stop = AtomicBool::new(false);
    let report = replay.run(&stop, &mut |_frames| {}, &mut |_view| true)?;
    println!(
        "{} frames in, {} processed; e2e p50 {:.1} ms; output {}",
        report.frames_in, report.frames_processed, report.latency_ms.e2e.p50, report.output_bag
    );
    Ok(())
}
