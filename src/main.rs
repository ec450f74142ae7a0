//! The `lookout` command line.
//!
//! `anyhow` lives here only: every library error is a typed enum, and this binary turns it into
//! one line on stderr and a non-zero exit code (never a panic or a backtrace).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

use lookout::decode::{CompressedFormat, Decoder};
use lookout::infer::{EngineConfig, Provider};
use lookout::model::{self, Model};
use lookout::pipeline::Detector;

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

    /// ONNX Runtime library (default: ORT_DYLIB_PATH, then the set-up's copy).
    #[arg(long, value_name = "PATH")]
    ort_library: Option<PathBuf>,

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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Detect(args) => detect(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("lookout: error: {e:#}");
            ExitCode::FAILURE
        }
    }
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
        ort_library: args.ort_library.clone(),
        ..EngineConfig::default()
    };
    let mut detector = Detector::new(model, &engine, Some(thresholds))?;
    let provider = detector.execution_provider();
    let mut decoder = Decoder::new(args.max_size.0, args.max_size.1);
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
    let view = decoder.decode(&bytes, format)?;
    let (width, height) = (view.width(), view.height());
    let provider = detector.execution_provider();
    let result = detector.detect(&view)?;
    let class_name = |id: u32| classes.get(id as usize).map_or("?", String::as_str);
    let round = |v: f32, digits: i32| {
        let m = 10f64.powi(digits);
        (f64::from(v) * m).round() / m
    };
    if json {
        let line = JsonLine {
            image: path.display().to_string(),
            execution_provider: provider.as_str(),
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
