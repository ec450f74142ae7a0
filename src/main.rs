//! The `lookout` command line.
//!
//! `anyhow` lives here only: every library error is a typed enum, and this binary turns it into
//! one line on stderr and a non-zero exit code (never a panic or a backtrace).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

use lookout::core::decode::{CompressedFormat, Decoder};
use lookout::core::detector::Detector;
use lookout::core::engine::{EngineConfig, Provider};
use lookout::core::model::{self, Model};

/// lookout: a real-time ROS 2 perception node (ONNX detector in, vision_msgs detections out).
#[derive(Parser, Debug)]
#[command(name = "lookout", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the detector on image files (JPEG or PNG) and print the detections.
    ///
    /// Prints one block per image, or with --json one line of JSON per image:
    /// {"image": PATH, "execution_provider": "cpu", "width": W, "height": H,
    ///  "detections": [{"class": "bus", "score": 0.87, "bbox": [x1, y1, x2, y2]}]}
    /// Boxes are in the image's pixels. Exits 1 if any image could not be processed.
    Detect(DetectArgs),
    /// Run the live ROS 2 node: subscribe to the configured camera topics, publish
    /// vision_msgs/Detection2DArray per camera.
    ///
    /// Parameters come from --params-file (default: config/lookout.yaml, unless --ros-args
    /// carries its own --params-file), then from the standard ROS arguments (-p key:=value,
    /// --params-file). Remapping (-r), namespace (-r __ns:=/ns), node name (-r __node:=name),
    /// use_sim_time and --log-level work as for any ROS 2 node. Stops cleanly on SIGINT/SIGTERM
    /// and prints a per-camera summary.
    #[cfg(feature = "ros")]
    Run(RunArgs),
    /// Replay rosbag2 bags (MCAP or sqlite3) through the detector; write a detections bag
    /// (MCAP, with metadata.yaml and /diagnostics) and a JSON report.
    ///
    /// Cameras, topics, model and deadlines come from the same parameters file as `run`.
    /// --max-speed (default) processes every frame in order, none dropped, and writes the same
    /// detections on every run; --rate R plays at R times the recorded rate with the live
    /// drop and deadline policy; --step processes one frame per Enter (q to stop). Ctrl-C
    /// finishes the output bag, which stays readable. Prints the report summary; exit 0.
    Replay(ReplayArgs),
    /// Compare the detections of two bags (matched by topic and stamp): per-class counts and
    /// IoU-matched score and box differences. Exit 0 within tolerances, 1 beyond them, 2 when
    /// a bag cannot be read.
    Diff(DiffArgs),
}

#[derive(clap::Args, Debug)]
struct ReplayArgs {
    /// Input bags (folders with metadata.yaml, or .mcap/.db3 files), played in this order.
    #[arg(required = true, value_name = "BAG")]
    bags: Vec<PathBuf>,

    /// ROS 2 parameters file (default: config/lookout.yaml).
    #[arg(long, value_name = "FILE")]
    params_file: Option<PathBuf>,

    /// Output bag folder (default: <first bag name>_lookout); must not exist unless --force.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,

    /// Replace an existing output bag.
    #[arg(long)]
    force: bool,

    /// Report file (JSON; default: <out>/report.json).
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,

    /// Every frame, in order, as fast as inference runs (the default).
    #[arg(long, conflicts_with_all = ["rate", "step"])]
    max_speed: bool,

    /// Play at R times the recorded rate, with the live queue, age and deadline policy.
    #[arg(long, value_name = "R", conflicts_with = "step", value_parser = parse_rate)]
    rate: Option<f64>,

    /// One frame per Enter (q + Enter stops); prints each frame's detections.
    #[arg(long)]
    step: bool,

    /// Also copy every input message (images and other topics) into the output bag.
    #[arg(long)]
    copy_all: bool,

    /// Leave /diagnostics out of the output bag (the whole bag is then byte-identical from run
    /// to run).
    #[arg(long)]
    no_diagnostics: bool,

    /// Execution providers to try, in order (overrides engine.execution_providers).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    execution_providers: Option<Vec<Provider>>,

    /// Print the whole report (JSON) instead of the summary.
    #[arg(long)]
    json: bool,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!("expected a positive number, got `{s}`")),
    }
}

#[derive(clap::Args, Debug)]
struct DiffArgs {
    /// Reference detections bag.
    a: PathBuf,
    /// Detections bag to compare with it.
    b: PathBuf,
    /// Least IoU for two same-class detections to be paired.
    #[arg(long, default_value_t = 0.5)]
    iou: f64,
    /// Largest allowed score difference of a pair.
    #[arg(long, default_value_t = 0.02)]
    score_tol: f64,
    /// Largest allowed box corner displacement of a pair, pixels.
    #[arg(long, default_value_t = 2.0)]
    box_tol_px: f64,
    /// Unmatched detections allowed over all frames.
    #[arg(long, default_value_t = 0)]
    max_unmatched: u64,
    /// Print the whole comparison as JSON.
    #[arg(long)]
    json: bool,
}

#[cfg(feature = "ros")]
#[derive(clap::Args, Debug)]
struct RunArgs {
    /// ROS 2 parameters file (see config/lookout.yaml for every key).
    #[arg(long, value_name = "FILE")]
    params_file: Option<PathBuf>,

    /// Standard ROS 2 arguments, passed to rcl unchanged (everything after --ros-args).
    #[arg(long = "ros-args", num_args = 0.., allow_hyphen_values = true, value_name = "ARGS")]
    ros_args: Vec<String>,
}

#[derive(clap::Args, Debug)]
struct DetectArgs {
    /// Image files to run the detector on (JPEG or PNG).
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<PathBuf>,

    /// Model package manifest (a relative path is also looked up in the source tree).
    #[arg(long, value_name = "MANIFEST", default_value = model::DEFAULT_MANIFEST)]
    model: PathBuf,

    /// Print one line of JSON per image instead of a table.
    #[arg(long)]
    json: bool,

    /// Minimum score to report (default: the manifest's threshold).
    #[arg(long, value_name = "SCORE")]
    confidence: Option<f32>,

    /// Execution providers to try, in order, comma-separated: tensorrt, cuda, cpu.
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        default_value = "tensorrt,cuda,cpu"
    )]
    execution_providers: Vec<Provider>,

    /// Fail when the first listed provider cannot be used instead of falling back to the next.
    #[arg(long)]
    require_first_provider: bool,

    /// ONNX Runtime library (default: ORT_DYLIB_PATH, then the set-up's copy).
    #[arg(long, value_name = "PATH")]
    ort_library: Option<PathBuf>,

    /// Decode JPEGs at full size (by default a JPEG at least twice the tensor size is decoded at
    /// 1/2, 1/4 or 1/8 scale in the DCT domain: faster, detections move slightly).
    #[arg(long)]
    jpeg_full_scale: bool,

    /// Largest image accepted, as WIDTHxHEIGHT.
    #[arg(long, value_name = "WxH", default_value = "8192x8192", value_parser = parse_size)]
    max_size: (u32, u32),
}

fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s
        .split_once('x')
        .ok_or_else(|| format!("expected WIDTHxHEIGHT, got `{s}`"))?;
    let parse = |v: &str| v.parse::<u32>().map_err(|e| format!("`{v}`: {e}"));
    Ok((parse(w)?, parse(h)?))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.command);
    let result = match cli.command {
        Command::Detect(args) => detect(&args),
        #[cfg(feature = "ros")]
        Command::Run(args) => run(&args),
        Command::Replay(args) => replay(&args),
        Command::Diff(args) => {
            return match diff(&args) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("lookout: error: {e:#}");
                    ExitCode::from(2)
                }
            };
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("lookout: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr through `tracing` (filter: RUST_LOG; default `info` for `run`, `warn`
/// otherwise, ONNX Runtime's own logs at `warn`); with the live node, warnings and errors also go to the ROS log (/rosout).
fn init_logging(command: &Command) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let default = match command {
        Command::Detect(_) | Command::Diff(_) => "warn",
        Command::Replay(_) => "info,ort=warn",
        #[cfg(feature = "ros")]
        Command::Run(_) => "info,ort=warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr));
    #[cfg(feature = "ros")]
    let registry = registry.with(lookout::ros::RosLogLayer);
    registry.init();
}

#[cfg(feature = "ros")]
fn run(args: &RunArgs) -> Result<ExitCode> {
    let stop = stop_flag()?;
    // rcl reads the process arguments itself; note whether they carry a params file.
    let ros_params_file = std::env::args()
        .skip_while(|a| a != "--ros-args")
        .any(|a| a == "--params-file");
    let _ = &args.ros_args;
    let options = lookout::ros::NodeOptions {
        params_file: args.params_file.clone(),
        ros_params_file,
    };
    let summary = lookout::ros::run(&options, stop)?;
    for cam in &summary.cameras {
        let c = cam.counters;
        let mean_ms = |total_ns: u64| total_ns as f64 / 1e6 / c.processed.max(1) as f64;
        eprintln!(
            "lookout: summary camera={} received={} processed={} published={} dropped_ring_full={} dropped_superseded={} dropped_too_old={} dropped_late={} deadline_misses={} timeouts={} bad_input={} inference_errors={} dropped_output={} clock_anomalies={} qos_incompatible={} preprocess_ms_mean={:.2} inference_ms_mean={:.2} postprocess_ms_mean={:.2}",
            cam.name,
            c.received,
            c.processed,
            c.published,
            c.dropped_ring_full,
            c.dropped_superseded,
            c.dropped_too_old,
            c.dropped_late,
            c.deadline_misses,
            c.timeouts,
            c.bad_input,
            c.inference_errors,
            c.dropped_output,
            c.clock_anomalies,
            c.qos_incompatible_events,
            mean_ms(c.preprocess_ns),
            mean_ms(c.inference_ns),
            mean_ms(c.postprocess_ns)
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn stop_flag() -> Result<std::sync::Arc<std::sync::atomic::AtomicBool>> {
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

fn replay(args: &ReplayArgs) -> Result<ExitCode> {
    use lookout::replay::{Pace, Replay, ReplayOptions, default_out};
    use std::io::BufRead;
    use std::sync::atomic::Ordering;

    let params = args.params_file.clone().unwrap_or_else(|| {
        lookout::config::resolve_path(Path::new(lookout::config::DEFAULT_PARAMS_FILE))
    });
    let mut config = lookout::config::Config::load(&params, "lookout")
        .with_context(|| format!("parameters file {}", params.display()))?;
    if let Some(p) = &args.execution_providers {
        config.engine.execution_providers = p.clone();
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| default_out(&args.bags[0]));
    if args.force && out.exists() {
        let looks_like_bag = out.join("metadata.yaml").exists()
            || std::fs::read_dir(&out)?
                .filter_map(|e| e.ok())
                .any(|e| e.path().extension().is_some_and(|x| x == "mcap"));
        if !looks_like_bag {
            bail!(
                "--force: {} exists and is not a bag; not removing it",
                out.display()
            );
        }
        std::fs::remove_dir_all(&out)
            .with_context(|| format!("cannot remove {}", out.display()))?;
    }
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
    // A replay that fails leaves no partial bag behind (output is whole or not at all); only a
    // folder this run creates is ever removed.
    let created_out = !out.exists();
    let remove_partial = |e: anyhow::Error| {
        if created_out && out.exists() {
            match std::fs::remove_dir_all(&out) {
                Ok(()) => e.context(format!("the partial output {} was removed", out.display())),
                Err(r) => e.context(format!(
                    "the partial output {} could not be removed: {r}",
                    out.display()
                )),
            }
        } else {
            e
        }
    };
    let replay = Replay::new(ReplayOptions {
        bags: args.bags.clone(),
        config,
        out: out.clone(),
        pace,
        copy_all: args.copy_all,
        diagnostics: !args.no_diagnostics,
    })
    .map_err(|e| remove_partial(e.into()))?;
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
    let stdin = std::io::stdin();
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
        let mut line = String::new();
        match stdin.lock().read_line(&mut line) {
            Ok(0) | Err(_) => false,
            Ok(_) => line.trim() != "q",
        }
    };
    // Max speed and step infer on this thread: a panic there must not skip the clean-up.
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        replay.run(&stop, &mut progress, &mut go_ahead)
    }));
    let report = match run {
        Ok(result) => result.map_err(|e| remove_partial(e.into()))?,
        Err(payload) => {
            let reason = lookout::runtime::supervise::panic_message(payload.as_ref());
            return Err(remove_partial(anyhow::anyhow!(
                "the replay's inference died: {reason}"
            )));
        }
    };
    bar.finish_and_clear();
    let json = serde_json::to_string_pretty(&report)?;
    std::fs::write(&report_path, format!("{json}\n"))
        .with_context(|| format!("cannot write {}", report_path.display()))?;
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
        }
        println!("model {} sha256 {}", report.model, report.model_sha256);
        println!(
            "output bag: {} ({} messages); report: {}",
            report.output_bag,
            report.messages_written,
            report_path.display()
        );
    }
    let _ = stop.load(Ordering::Relaxed);
    Ok(ExitCode::SUCCESS)
}

fn diff(args: &DiffArgs) -> Result<ExitCode> {
    let tol = lookout::diff::Tolerances {
        iou: args.iou,
        score: args.score_tol,
        box_px: args.box_tol_px,
        max_unmatched: args.max_unmatched,
    };
    let report = lookout::diff::diff(&args.a, &args.b, &tol)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for (topic, t) in &report.topics {
            println!(
                "{topic}: frames A {} B {} matched {} (only A {}, only B {}); unmatched detections A {} B {}",
                t.frames_a,
                t.frames_b,
                t.frames_matched,
                t.frames_only_a,
                t.frames_only_b,
                t.unmatched_a,
                t.unmatched_b
            );
            for (class, c) in &t.classes {
                println!(
                    "  {class:<14} A {:>5}  B {:>5}  pairs {:>5}  score diff max {:.4} mean {:.4}  box diff max {:.2} px",
                    c.count_a,
                    c.count_b,
                    c.matched,
                    c.max_score_diff,
                    c.mean_score_diff,
                    c.max_box_diff_px
                );
            }
        }
        if report.within_tolerance {
            println!("within tolerance");
        } else {
            for f in &report.failures {
                println!("beyond tolerance: {f}");
            }
        }
    }
    Ok(if report.within_tolerance {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn detect(args: &DetectArgs) -> Result<ExitCode> {
    let manifest = model::resolve_manifest_path(&args.model);
    let model = Model::load(&manifest)?;
    let mut thresholds = model.manifest.thresholds;
    if let Some(c) = args.confidence {
        if !(0.0..=1.0).contains(&c) {
            bail!("--confidence must be within 0..1, got {c}");
        }
        thresholds.confidence = c;
    }
    let engine = EngineConfig {
        execution_providers: args.execution_providers.clone(),
        require_first_provider: args.require_first_provider,
        ort_library: args.ort_library.clone(),
        ..EngineConfig::default()
    };
    let mut detector = Detector::new(model, &engine, Some(thresholds))?;
    let provider = detector.execution_provider();
    let input = &detector.model().manifest.input;
    let mut decoder =
        Decoder::new(args.max_size.0, args.max_size.1).with_threads(engine.preprocess_threads());
    if !args.jpeg_full_scale {
        decoder = decoder.with_tensor_size(input.width() as u32, input.height() as u32);
    }
    let classes = detector.model().manifest.classes.clone();
    let mut failures = 0usize;
    let stdout = std::io::stdout();
    for path in &args.images {
        match detect_one(path, &mut decoder, &mut detector, &classes, args.json) {
            Ok(text) => {
                let mut out = stdout.lock();
                out.write_all(text.as_bytes())?;
                out.flush()?;
            }
            Err(e) => {
                failures += 1;
                eprintln!("lookout: error: {}: {e:#}", path.display());
            }
        }
    }
    tracing::debug!(%provider, "done");
    Ok(if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// One line of `detect --json` output (field order is the documented order).
#[derive(serde::Serialize)]
struct JsonLine<'a> {
    image: String,
    execution_provider: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    fallback_reason: Option<&'a str>,
    width: u32,
    height: u32,
    detections: Vec<JsonDetection<'a>>,
}

#[derive(serde::Serialize)]
struct JsonDetection<'a> {
    class: &'a str,
    score: f64,
    bbox: [f64; 4],
}

fn detect_one(
    path: &Path,
    decoder: &mut Decoder,
    detector: &mut Detector,
    classes: &[String],
    json: bool,
) -> Result<String> {
    let bytes = std::fs::read(path).context("cannot read image")?;
    let format = CompressedFormat::sniff(&bytes)
        .context("unsupported image format (supported: JPEG, PNG)")?;
    let (view, (width, height)) = decoder.decode_sized(&bytes, format)?;
    let provider = detector.execution_provider();
    let fallback_reason = detector.fallback_reason().map(str::to_string);
    let result = detector.detect_sized(&view, (width, height), None)?;
    let class_name = |id: u32| classes.get(id as usize).map_or("?", String::as_str);
    let round = |v: f32, digits: i32| {
        let m = 10f64.powi(digits);
        (f64::from(v) * m).round() / m
    };
    if json {
        let line = JsonLine {
            image: path.display().to_string(),
            execution_provider: provider.as_str(),
            fallback_reason: fallback_reason.as_deref(),
            width,
            height,
            detections: result
                .detections
                .iter()
                .map(|d| JsonDetection {
                    class: class_name(d.class_id),
                    score: round(d.score, 4),
                    bbox: d.bbox.map(|v| round(v, 1)),
                })
                .collect(),
        };
        let line = serde_json::to_string(&line)?;
        Ok(format!("{line}\n"))
    } else {
        let t = result.times;
        let mut s = format!(
            "{} ({width}x{height}, {provider}, pre {:.1} ms, infer {:.1} ms, post {:.1} ms): {} detections\n",
            path.display(),
            t.preprocess.as_secs_f64() * 1e3,
            t.inference.as_secs_f64() * 1e3,
            t.postprocess.as_secs_f64() * 1e3,
            result.detections.len()
        );
        for d in result.detections {
            s.push_str(&format!(
                "  {:<14} {:.2}  [{:.0}, {:.0}, {:.0}, {:.0}]\n",
                class_name(d.class_id),
                d.score,
                d.bbox[0],
                d.bbox[1],
                d.bbox[2],
                d.bbox[3]
            ));
        }
        Ok(s)
    }
}
