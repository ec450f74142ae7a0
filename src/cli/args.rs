//! The command line's arguments (clap).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use lookout::core::engine::Provider;

/// lookout: a real-time ROS 2 perception node (ONNX detector in, vision_msgs detections out).
#[derive(Parser, Debug)]
#[command(name = "lookout", version, about, long_about = None)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
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
    /// Measure latency and throughput with simulated cameras: the live runtime (queues,
    /// scheduler, inference loop, deadlines) fed real frames on a schedule.
    ///
    /// The source's frames are loaded first, then emitted for --duration seconds at --fps per
    /// camera (with --jitter-ms and --burst), stamped when handed over. Prints per-stage
    /// percentiles, drops by reason, the achieved rate per camera, CPU use and memory; --sweep
    /// raises the rate to find the highest one kept up with (under 1 % dropped, every camera's
    /// p99 within its budget_ms). Ctrl-C ends the run and reports what was measured.
    Sim(SimArgs),
    /// Check a parameters file and the model package it names (manifest valid, ONNX file's
    /// sha256 as pinned) without loading ONNX Runtime. Prints the lookout version, model and
    /// sha256, cameras and topics (--json: one line of JSON). Exit 0 when valid, 1 otherwise.
    Check(CheckArgs),
    /// Model packages: `inspect` an ONNX file or a manifest, `build-engine` (TensorRT, ahead of
    /// time).
    #[command(subcommand)]
    Model(ModelCommand),
}

#[derive(Subcommand, Debug)]
pub(crate) enum ModelCommand {
    /// What an ONNX file declares (inputs, outputs, opsets, producer, operators) and the
    /// decoder that fits its output; given a manifest, also a check of the manifest against its
    /// ONNX file (names, shapes, element types, decoder, class count, sha256). Reads no weights
    /// and loads no ONNX Runtime. Exit 0 when everything agrees, 1 otherwise.
    Inspect(InspectArgs),
    /// Build the TensorRT engine of a model package ahead of time into the engine cache
    /// (engine.tensorrt.* of the parameters file: precision, shapes, cache folder), so that the
    /// first start on the vehicle loads it in seconds. Fails when TensorRT cannot register.
    BuildEngine(BuildEngineArgs),
}

#[derive(clap::Args, Debug)]
pub(crate) struct InspectArgs {
    /// A model manifest (manifest.yaml) or an ONNX file.
    #[arg(value_name = "MANIFEST|ONNX")]
    pub(crate) path: PathBuf,
    /// Print one JSON document instead of the text.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(clap::Args, Debug)]
pub(crate) struct BuildEngineArgs {
    /// The model package's manifest.
    #[arg(value_name = "MANIFEST")]
    pub(crate) manifest: PathBuf,
    /// ROS 2 parameters file whose engine.tensorrt.* settings to build with (default:
    /// config/lookout.yaml).
    #[arg(long, value_name = "FILE")]
    pub(crate) params_file: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub(crate) struct CheckArgs {
    /// ROS 2 parameters file (default: config/lookout.yaml).
    #[arg(long, value_name = "FILE")]
    pub(crate) params_file: Option<PathBuf>,

    /// Print one line of JSON: lookout_version, params_file, model, model_manifest,
    /// model_sha256, cameras, topics, execution_providers.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(clap::Args, Debug)]
pub(crate) struct SimArgs {
    /// Frames: bag:PATH (image topics of a rosbag2 bag), images:DIR (JPEG/PNG files) or
    /// synthetic:WxH[:ENCODING] (generated, default bgr8); looped.
    #[arg(long, value_name = "SRC")]
    pub(crate) source: lookout::sim::source::SourceSpec,

    /// ROS 2 parameters file (default: config/lookout.yaml): model, engine, camera settings.
    #[arg(long, value_name = "FILE")]
    pub(crate) params_file: Option<PathBuf>,

    /// Frames per second per camera.
    #[arg(long, default_value_t = 10.0)]
    pub(crate) fps: f64,

    /// Simulate N cameras fed by copies of the source (default: the params file's cameras).
    #[arg(long, value_name = "N")]
    pub(crate) cameras: Option<usize>,

    /// Standard deviation of each frame's emission time, ms (Gaussian).
    #[arg(long, default_value_t = 0.0)]
    pub(crate) jitter_ms: f64,

    /// Frames come in bursts of K back to back, one burst every K periods.
    #[arg(long, default_value_t = 1, value_name = "K")]
    pub(crate) burst: u32,

    /// Length of a run (each sweep point is one run), s.
    #[arg(long, default_value_t = 10.0, value_name = "S")]
    pub(crate) duration: f64,

    /// Search the peak rate: from --from, up by --step, then bisect.
    #[arg(long)]
    pub(crate) sweep: bool,

    /// First rate of the sweep, frames per second per camera.
    #[arg(long = "from", default_value_t = 5.0, value_name = "FPS")]
    pub(crate) from_fps: f64,

    /// Rate step of the sweep.
    #[arg(long = "step", default_value_t = 5.0, value_name = "FPS")]
    pub(crate) step_fps: f64,

    /// Through a ROS 2 graph: `lookout run` in its own process, frames published and
    /// detections received over DDS (the transport is in the figures).
    #[arg(long)]
    pub(crate) via_ros: bool,

    /// Seed of the jitter (the same seed gives the same emission times).
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,

    /// Execution providers to try, in order (overrides the parameters file).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub(crate) execution_providers: Option<Vec<Provider>>,

    /// Also write the report as JSON to this file.
    #[arg(long, value_name = "FILE.json")]
    pub(crate) report: Option<PathBuf>,

    /// Also write the report as one self-contained HTML page (charts as inline SVG).
    #[arg(long, value_name = "FILE.html")]
    pub(crate) html: Option<PathBuf>,

    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(clap::Args, Debug)]
pub(crate) struct ReplayArgs {
    /// Input bags (folders with metadata.yaml, or .mcap/.db3 files), played in this order.
    #[arg(required = true, value_name = "BAG")]
    pub(crate) bags: Vec<PathBuf>,

    /// ROS 2 parameters file (default: config/lookout.yaml).
    #[arg(long, value_name = "FILE")]
    pub(crate) params_file: Option<PathBuf>,

    /// Output bag folder (default: <first bag name>_lookout); must not exist unless --force.
    /// Written beside it and renamed into place when complete.
    #[arg(long, value_name = "DIR")]
    pub(crate) out: Option<PathBuf>,

    /// Replace an existing output folder that lookout wrote (never an input or another folder).
    #[arg(long)]
    pub(crate) force: bool,

    /// Report file (JSON; default: <out>/report.json).
    #[arg(long, value_name = "FILE")]
    pub(crate) report: Option<PathBuf>,

    /// Also write the run's detections as a drift profile (JSON) for `monitor.profile`: frames,
    /// detections per class, score and box size histograms, the model's sha256.
    #[arg(long, value_name = "FILE.json")]
    pub(crate) profile: Option<PathBuf>,

    /// Every frame, in order, as fast as inference runs (the default).
    #[arg(long, conflicts_with_all = ["rate", "step"])]
    pub(crate) max_speed: bool,

    /// Play at R times the recorded rate, with the live queue, age and deadline policy.
    #[arg(long, value_name = "R", conflicts_with = "step", value_parser = parse_rate)]
    pub(crate) rate: Option<f64>,

    /// One frame per Enter (q + Enter stops); prints each frame's detections.
    #[arg(long)]
    pub(crate) step: bool,

    /// Also copy every input message (images and other topics) into the output bag.
    #[arg(long)]
    pub(crate) copy_all: bool,

    /// Leave /diagnostics out of the output bag (the whole bag is then byte-identical from run
    /// to run).
    #[arg(long)]
    pub(crate) no_diagnostics: bool,

    /// Execution providers to try, in order (overrides engine.execution_providers).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub(crate) execution_providers: Option<Vec<Provider>>,

    /// ONNX Runtime intra-op threads (overrides engine.intra_op_threads; 0: one per core).
    /// Detections are bit-identical only between runs with the same value.
    #[arg(long, value_name = "N")]
    pub(crate) intra_op_threads: Option<usize>,

    /// Print the whole report (JSON) instead of the summary.
    #[arg(long)]
    pub(crate) json: bool,

    /// Also write the report as one self-contained HTML page (latency histograms, timeline).
    #[arg(long, value_name = "FILE.html")]
    pub(crate) html: Option<PathBuf>,
}

pub(crate) fn parse_rate(s: &str) -> Result<f64, String> {
    use lookout::replay::{MAX_RATE, MIN_RATE};
    match s.parse::<f64>() {
        Ok(r) if (MIN_RATE..=MAX_RATE).contains(&r) => Ok(r),
        _ => Err(format!(
            "expected a number within [{MIN_RATE}, {MAX_RATE}], got `{s}`"
        )),
    }
}

#[derive(clap::Args, Debug)]
pub(crate) struct DiffArgs {
    /// Reference detections bag.
    pub(crate) a: PathBuf,
    /// Detections bag to compare with it.
    pub(crate) b: PathBuf,
    /// Least IoU for two same-class detections to be paired.
    #[arg(long, default_value_t = 0.5)]
    pub(crate) iou: f64,
    /// Largest allowed score difference of a pair.
    #[arg(long, default_value_t = 0.02)]
    pub(crate) score_tol: f64,
    /// Largest allowed box corner displacement of a pair, pixels.
    #[arg(long, default_value_t = 2.0)]
    pub(crate) box_tol_px: f64,
    /// Unmatched detections allowed over all frames.
    #[arg(long, default_value_t = 0)]
    pub(crate) max_unmatched: u64,
    /// Print the whole comparison as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

#[cfg(feature = "ros")]
#[derive(clap::Args, Debug)]
pub(crate) struct RunArgs {
    /// ROS 2 parameters file (see config/lookout.yaml for every key).
    #[arg(long, value_name = "FILE")]
    pub(crate) params_file: Option<PathBuf>,

    /// A ROS 2 lifecycle (managed) node: starts unconfigured and offers ~/change_state,
    /// ~/get_state, ~/get_available_states, ~/get_available_transitions, ~/get_transition_graph
    /// and ~/transition_event. configure loads and warms the model and allocates, activate
    /// subscribes and publishes, deactivate stops both without freeing, cleanup frees, shutdown
    /// ends the process.
    #[arg(long)]
    pub(crate) managed: bool,

    /// Standard ROS 2 arguments, passed to rcl unchanged (everything after --ros-args).
    #[arg(long = "ros-args", num_args = 0.., allow_hyphen_values = true, value_name = "ARGS")]
    pub(crate) ros_args: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub(crate) struct DetectArgs {
    /// Image files to run the detector on (JPEG or PNG).
    #[arg(required = true, value_name = "IMAGE")]
    pub(crate) images: Vec<PathBuf>,

    /// Model package manifest (default: the installed default model; a relative path is looked
    /// up in the working directory, then in lookout's data directories).
    #[arg(long, value_name = "MANIFEST")]
    pub(crate) model: Option<PathBuf>,

    /// Print one line of JSON per image instead of a table.
    #[arg(long)]
    pub(crate) json: bool,

    /// Also write each image with its boxes drawn (one colour per class) as DIR/<name>.png.
    #[arg(long, value_name = "DIR")]
    pub(crate) draw: Option<PathBuf>,

    /// Minimum score to report (default: the manifest's threshold).
    #[arg(long, value_name = "SCORE")]
    pub(crate) confidence: Option<f32>,

    /// Execution providers to try, in order, comma-separated: tensorrt, cuda, cpu.
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        default_value = "tensorrt,cuda,cpu"
    )]
    pub(crate) execution_providers: Vec<Provider>,

    /// Fail when the first listed provider cannot be used instead of falling back to the next.
    #[arg(long)]
    pub(crate) require_first_provider: bool,

    /// ONNX Runtime library (default: ORT_DYLIB_PATH, then the set-up's copy).
    #[arg(long, value_name = "PATH")]
    pub(crate) ort_library: Option<PathBuf>,

    /// Decode JPEGs at full size (by default a JPEG at least twice the tensor size is decoded at
    /// 1/2, 1/4 or 1/8 scale in the DCT domain: faster, detections move slightly).
    #[arg(long)]
    pub(crate) jpeg_full_scale: bool,

    /// Largest image accepted, as WIDTHxHEIGHT.
    #[arg(long, value_name = "WxH", default_value = "8192x8192", value_parser = parse_size)]
    pub(crate) max_size: (u32, u32),
}

pub(crate) fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s
        .split_once('x')
        .ok_or_else(|| format!("expected WIDTHxHEIGHT, got `{s}`"))?;
    // The same bound as a camera's max_width/max_height: the decoder reserves w x h x 4 bytes.
    let parse = |v: &str| match v.parse::<u32>() {
        Ok(n) if (1..=16384).contains(&n) => Ok(n),
        Ok(n) => Err(format!("`{n}`: must be within 1..16384")),
        Err(e) => Err(format!("`{v}`: {e}")),
    };
    Ok((parse(w)?, parse(h)?))
}
