//! `lookout replay`: bags through the runtime into a detections bag and a report.

use std::process::ExitCode;

use anyhow::{Result, bail};

use super::args::ReplayArgs;
use super::stop_flag;

pub(crate) fn replay(args: &ReplayArgs) -> Result<ExitCode> {
    use lookout::replay::{Pace, Replay, ReplayOptions, default_out};
    use std::sync::atomic::Ordering;

    let mut config = super::load_config(
        args.params_file.as_deref(),
        args.execution_providers.as_ref(),
    )?;
    if let Some(n) = args.intra_op_threads {
        config.engine.intra_op_threads = n;
        config.validate()?;
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| default_out(&args.bags[0]));
    let pace = match (args.rate, args.step) {
        (Some(r), _) => Pace::Rate(r),
        (None, true) => Pace::Step,
        (None, false) => Pace::MaxSpeed,
    };
    let report_path = args
        .report
        .clone()
        .unwrap_or_else(|| out.join("report.json"));
    let stop = stop_flag()?;
    let replay = Replay::new(ReplayOptions {
        bags: args.bags.clone(),
        config,
        out: out.clone(),
        force: args.force,
        pace,
        copy_all: args.copy_all,
        diagnostics: !args.no_diagnostics,
    })?;
    tracing::info!(
        execution_provider = replay.execution_provider(),
        out = %out.display(),
        "replaying"
    );
    let bar = indicatif::ProgressBar::with_draw_target(
        replay.frames_expected(),
        indicatif::ProgressDrawTarget::stderr_with_hz(4),
    );
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} frames {per_sec} ETA {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut progress = |n: u64| bar.set_position(n);
    let mut lines = StopAwareLines::default();
    let mut go_ahead = |view: &lookout::replay::StepView<'_>| {
        if let Some((camera, bytes)) = view.previous
            && let Ok(msg) = lookout::bag::cdr::detection_array(bytes)
        {
            bar.suspend(|| {
                println!(
                    "frame {} camera {} stamp {}.{:09}: {} detections",
                    view.frame,
                    camera,
                    msg.stamp.sec,
                    msg.stamp.nanosec,
                    msg.detections.len()
                );
                for d in &msg.detections {
                    let (class, score) = d.best().unwrap_or(("?", 0.0));
                    let c = d.corners();
                    println!(
                        "  {class:<14} {score:.2}  [{:.0}, {:.0}, {:.0}, {:.0}]",
                        c[0], c[1], c[2], c[3]
                    );
                }
            });
        }
        if view.topic.is_empty() {
            return false;
        }
        eprint!("next: {} (Enter: process, q: stop) ", view.topic);
        // Ctrl-C at the prompt stops here (a blocking read_line would swallow it, and the
        // second Ctrl-C users then press exits without finishing the bag).
        match lines.next_line(&stop) {
            None => false,
            Some(line) => line.trim() != "q",
        }
    };
    // Max speed and step infer on this thread: a panic there must not skip the clean-up.
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        replay.run(&stop, &mut progress, &mut go_ahead)
    }));
    let report = match run {
        // A failed replay leaves the previous output as it was (the bag is written aside).
        Ok(result) => result?,
        Err(payload) => {
            let reason = lookout::runtime::supervise::panic_message(payload.as_ref());
            bail!("the replay's inference died: {reason}; no output was written");
        }
    };
    bar.finish_and_clear();
    let json = serde_json::to_string_pretty(&report)?;
    lookout::replay::write_file_atomically(&report_path, format!("{json}\n").as_bytes())?;
    if let (Some(path), Some(profile)) = (&args.profile, &report.profile) {
        let json = serde_json::to_string_pretty(profile)?;
        lookout::replay::write_file_atomically(path, format!("{json}\n").as_bytes())?;
    }
    if let Some(path) = &args.html {
        lookout::replay::write_file_atomically(path, report.html().as_bytes())?;
    }
    if args.json {
        println!("{json}");
    } else {
        let l = &report.latency_ms;
        println!(
            "replay{}: {} frames in, {} processed, {} dropped, {} deadline misses, {} bad inputs ({} mode, {})",
            if report.interrupted {
                " (interrupted)"
            } else {
                ""
            },
            report.frames_in,
            report.frames_processed,
            report.dropped,
            report.deadline_misses,
            report.bad_inputs,
            report.mode,
            report.execution_provider
        );
        println!(
            "speed: {:.2} frames/s over {:.1} s (inference alone: {:.2} frames/s)",
            report.frames_per_s, report.wall_s, report.inference_only_frames_per_s
        );
        for (name, p) in [
            ("e2e", l.e2e),
            ("preprocess", l.preprocess),
            ("inference", l.inference),
            ("postprocess", l.postprocess),
        ] {
            println!(
                "{name:<12} ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  p999 {:.2}  max {:.2}",
                p.p50, p.p90, p.p99, p.p999, p.max
            );
        }
        for (name, c) in &report.per_camera {
            println!(
                "camera {name}: {} in, {} processed, {} messages written",
                c.frames_in, c.frames_processed, c.messages_written
            );
            if let Some(s) = &c.shadow {
                println!(
                    "camera {name} shadow: {} frames compared ({} skipped), {} disagreeing; detections {} in both, {} primary only, {} shadow only",
                    s.frames,
                    s.skipped,
                    s.disagreeing_frames,
                    s.matched,
                    s.primary_only,
                    s.shadow_only
                );
            }
        }
        println!("model {} sha256 {}", report.model, report.model_sha256);
        if let (Some(name), Some(sha)) = (&report.shadow_model, &report.shadow_model_sha256) {
            println!("shadow model {name} sha256 {sha}");
        }
        if let Some(n) = report.incident_captures {
            println!("incident bags written: {n}");
        }
        println!(
            "output bag: {} ({} messages); report: {}",
            report.output_bag,
            report.messages_written,
            report_path.display()
        );
    }
    let _ = stop.load(Ordering::Relaxed);
    if !report.storage_errors.is_empty() {
        // Data lost is an error: everything readable was replayed and written, but not all.
        for e in &report.storage_errors {
            eprintln!("lookout: error: {e}");
        }
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// Lines from standard input that give up as soon as `stop` is set (Ctrl-C), instead of waiting
/// for Enter. Reads the file descriptor directly (nothing hides in a buffer `poll` cannot see).
#[derive(Default)]
struct StopAwareLines {
    pending: Vec<u8>,
    eof: bool,
}

impl StopAwareLines {
    /// The next line (without its newline); `None` at end of input or once `stop` is set.
    fn next_line(&mut self, stop: &std::sync::atomic::AtomicBool) -> Option<String> {
        loop {
            if let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                return Some(String::from_utf8_lossy(&line[..end]).into_owned());
            }
            if self.eof {
                if self.pending.is_empty() {
                    return None;
                }
                let line = std::mem::take(&mut self.pending);
                return Some(String::from_utf8_lossy(&line).into_owned());
            }
            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                return None;
            }
            let mut fd = libc::pollfd {
                fd: libc::STDIN_FILENO,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd for the duration of the call.
            let ready = unsafe { libc::poll(&mut fd, 1, 100) };
            if ready <= 0 {
                // Timeout, or EINTR from the Ctrl-C itself: look at `stop` again.
                continue;
            }
            let mut buf = [0u8; 4096];
            // SAFETY: `buf` is writable for its whole length; fd 0 is open for the process.
            let n = unsafe { libc::read(libc::STDIN_FILENO, buf.as_mut_ptr().cast(), buf.len()) };
            match n {
                n if n > 0 => self.pending.extend_from_slice(&buf[..n as usize]),
                0 => self.eof = true,
                _ if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted => {}
                _ => self.eof = true,
            }
        }
    }
}
