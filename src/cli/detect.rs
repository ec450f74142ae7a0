//! `lookout detect`: detections in image files, as JSON lines.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

use lookout::config::locate::{Origin, locate, searched};
use lookout::core::decode::{CompressedFormat, Decoder};
use lookout::core::detector::Detector;
use lookout::core::engine::EngineConfig;
use lookout::core::model::{self, Model};

use super::args::DetectArgs;

pub(crate) fn detect(args: &DetectArgs) -> Result<ExitCode> {
    let manifest = match &args.model {
        Some(m) => locate(m, Origin::User),
        None => locate(Path::new(model::DEFAULT_MANIFEST), Origin::Default),
    };
    if manifest.is_relative() {
        let origin = if args.model.is_some() {
            Origin::User
        } else {
            Origin::Default
        };
        bail!(
            "model manifest {} not found ({})",
            manifest.display(),
            searched(origin)
        );
    }
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
        // Named on the command line: relative to the working directory, made absolute here.
        ort_library: args
            .ort_library
            .as_deref()
            .map(std::path::absolute)
            .transpose()
            .context("--ort-library")?,
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
    if let Some(dir) = &args.draw {
        std::fs::create_dir_all(dir).with_context(|| format!("--draw {}", dir.display()))?;
    }
    let mut boxes = Vec::new();
    for path in &args.images {
        let result = detect_one(
            path,
            &mut decoder,
            &mut detector,
            &classes,
            args.json,
            &mut boxes,
        )
        .and_then(|text| {
            if let Some(dir) = &args.draw {
                draw_one(path, dir, args.max_size, &boxes)?;
            }
            Ok(text)
        });
        match result {
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

/// Decodes `path` at full size and writes it with `boxes` (class, image-pixel box) drawn to
/// `dir/<file stem>.png`.
fn draw_one(path: &Path, dir: &Path, max: (u32, u32), boxes: &[(u32, [f32; 4])]) -> Result<()> {
    use lookout::charts::boxes::{class_color, draw_box, png, rgb_of};
    let bytes = std::fs::read(path).context("cannot read image")?;
    let format = CompressedFormat::sniff(&bytes).context("unsupported image format")?;
    let mut full = Decoder::new(max.0, max.1);
    let view = full.decode(&bytes, format)?;
    let (w, h) = (view.width(), view.height());
    let mut rgb = rgb_of(&view).context("unsupported decoded encoding")?;
    let thickness = (w.max(h) / 400).max(2);
    for &(class, bbox) in boxes {
        draw_box(&mut rgb, w, h, bbox, class_color(class), thickness);
    }
    let stem = path
        .file_stem()
        .map_or_else(|| "image".into(), |s| s.to_string_lossy().into_owned());
    let out = dir.join(format!("{stem}.png"));
    let bytes = png(&rgb, w, h).map_err(anyhow::Error::msg)?;
    lookout::replay::write_file_atomically(&out, &bytes)?;
    Ok(())
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

pub(crate) fn detect_one(
    path: &Path,
    decoder: &mut Decoder,
    detector: &mut Detector,
    classes: &[String],
    json: bool,
    boxes: &mut Vec<(u32, [f32; 4])>,
) -> Result<String> {
    let bytes = std::fs::read(path).context("cannot read image")?;
    let format = CompressedFormat::sniff(&bytes)
        .context("unsupported image format (supported: JPEG, PNG)")?;
    let (view, (width, height)) = decoder.decode_sized(&bytes, format)?;
    let provider = detector.execution_provider();
    let fallback_reason = detector.fallback_reason().map(str::to_string);
    let result = detector.detect_sized(&view, (width, height), None)?;
    boxes.clear();
    boxes.extend(result.detections.iter().map(|d| (d.class_id, d.bbox)));
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
