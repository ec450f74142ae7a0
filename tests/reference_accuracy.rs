//! Accuracy against an independent implementation: `scripts/reference_detect.py` (Python
//! onnxruntime, PIL's anti-aliased bilinear letterbox, numpy NMS; no lookout code) and
//! `lookout detect` (default settings, CPU) on the test images and on frames of the vtest clip.
//! Every detection must have a partner of the same class (IoU >= 0.5) with a close score and
//! box; one without a partner is allowed only when its score is within 0.05 of the confidence
//! threshold (it can fall either side of it).

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Largest score difference between partners.
const SCORE_TOLERANCE: f64 = 0.05;
/// Largest box-corner difference between partners, as a share of the image's longer side.
const BOX_TOLERANCE: f64 = 0.01;
/// How close to the threshold a detection without a partner may be.
const BORDERLINE: f64 = 0.05;

/// Image file name -> (longer side, detections) from JSON lines with `image` and `detections`.
fn by_image(stdout: &[u8]) -> HashMap<String, Vec<Value>> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|j| {
            let name = Path::new(j["image"].as_str().unwrap())
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (name, j["detections"].as_array().unwrap().clone())
        })
        .collect()
}

fn iou(a: &[f64], b: &[f64]) -> f64 {
    let ix = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let iy = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = ix * iy;
    let union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
    if union > 0.0 { inter / union } else { 0.0 }
}

fn bbox(d: &Value) -> Vec<f64> {
    d["bbox"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

/// Compares one image's detections; returns the problems found.
fn compare(
    image: &str,
    side: f64,
    conf: f64,
    reference: &[Value],
    ours: &[Value],
    worst: &mut (f64, f64, usize),
) -> Vec<String> {
    let mut pairs = Vec::new();
    for (i, a) in reference.iter().enumerate() {
        for (j, b) in ours.iter().enumerate() {
            if a["class"] == b["class"] {
                pairs.push((iou(&bbox(a), &bbox(b)), i, j));
            }
        }
    }
    pairs.sort_by(|x, y| y.0.total_cmp(&x.0));
    let (mut used_a, mut used_b) = (vec![false; reference.len()], vec![false; ours.len()]);
    let mut problems = Vec::new();
    for (v, i, j) in pairs {
        if v < 0.5 || used_a[i] || used_b[j] {
            continue;
        }
        used_a[i] = true;
        used_b[j] = true;
        let (a, b) = (&reference[i], &ours[j]);
        let ds = (a["score"].as_f64().unwrap() - b["score"].as_f64().unwrap()).abs();
        let db = bbox(a)
            .iter()
            .zip(bbox(b))
            .map(|(p, q)| (p - q).abs())
            .fold(0.0, f64::max);
        worst.0 = worst.0.max(ds);
        worst.1 = worst.1.max(db / side);
        if ds > SCORE_TOLERANCE || db > BOX_TOLERANCE * side {
            problems.push(format!(
                "{image}: {} score {ds:.3} apart, box {db:.1} px apart: reference {a}, lookout {b}",
                a["class"]
            ));
        }
    }
    for (who, dets, used) in [
        ("reference", reference, &used_a),
        ("lookout", ours, &used_b),
    ] {
        for (d, _) in dets.iter().zip(used.iter()).filter(|(_, u)| !**u) {
            worst.2 += 1;
            if d["score"].as_f64().unwrap() > conf + BORDERLINE {
                problems.push(format!("{image}: only {who} found {d}"));
            }
        }
    }
    problems
}

/// The first `n` frames of the vtest video as PNG files in `dir`.
fn vtest_frames(dir: &Path, n: usize) -> Vec<PathBuf> {
    // (A `\` line continuation would strip the indentation Python needs.)
    let script = [
        "import sys, av",
        "c = av.open(sys.argv[1])",
        "for i, f in enumerate(c.decode(video=0)):",
        "    if i >= int(sys.argv[3]): break",
        "    f.to_image().save(f'{sys.argv[2]}/vtest_{i:03d}.png')",
    ]
    .join("\n");
    let o = common::output(
        Command::new(common::python())
            .args(["-c", &script])
            .arg(common::lookout_home().join("data/vtest.avi"))
            .arg(dir)
            .arg(n.to_string()),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    (0..n)
        .map(|i| dir.join(format!("vtest_{i:03}.png")))
        .collect()
}

#[test]
fn lookout_agrees_with_the_reference_detector_on_every_detection() {
    let dir = common::fresh_dir("reference-accuracy");
    let model = lookout::core::model::Model::load(&common::default_manifest()).unwrap();
    let names = dir.join("coco.names");
    std::fs::write(&names, model.manifest.classes.join("\n") + "\n").unwrap();
    let conf = f64::from(model.manifest.thresholds.confidence);
    let iou_threshold = f64::from(model.manifest.thresholds.nms_iou);

    let mut images: Vec<PathBuf> = [
        "bus.jpg",
        "dog.jpg",
        "person.jpg",
        "street_640x480.jpg",
        "street_1280x720.jpg",
        "street_1920x1080.jpg",
    ]
    .iter()
    .map(|n| common::image(n))
    .collect();
    images.extend(vtest_frames(&dir, 10));

    let reference = common::output(
        Command::new(common::python())
            .arg(common::repo().join("scripts/reference_detect.py"))
            .arg("--model")
            .arg(&model.onnx_path)
            .arg("--names")
            .arg(&names)
            .args([
                "--conf",
                &conf.to_string(),
                "--iou",
                &iou_threshold.to_string(),
            ])
            .args(&images),
    );
    assert!(
        reference.status.success(),
        "{}",
        String::from_utf8_lossy(&reference.stderr)
    );
    let ours = common::output(
        Command::new(env!("CARGO_BIN_EXE_lookout"))
            .args(["detect", "--json", "--execution-providers", "cpu"])
            .args(&images),
    );
    assert!(
        ours.status.success(),
        "{}",
        String::from_utf8_lossy(&ours.stderr)
    );
    let (reference, ours) = (by_image(&reference.stdout), by_image(&ours.stdout));
    let mut problems = Vec::new();
    let mut compared = 0;
    let mut worst = (0.0, 0.0, 0);
    for path in &images {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let (r, o) = (&reference[&name], &ours[&name]);
        let side = longer_side(path);
        compared += r.len();
        problems.extend(compare(&name, side, conf, r, o, &mut worst));
    }
    println!(
        "{compared} reference detections on {} images: largest score difference {:.4}, largest box difference {:.2} % of the longer side, {} borderline detections without a partner",
        images.len(),
        worst.0,
        worst.1 * 100.0,
        worst.2
    );
    assert!(
        compared >= 30,
        "too few reference detections to compare: {compared}"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The longer side of an image file, in pixels.
fn longer_side(path: &Path) -> f64 {
    let bytes = std::fs::read(path).unwrap();
    let format = lookout::core::decode::CompressedFormat::sniff(&bytes).unwrap();
    let mut dec = lookout::core::decode::Decoder::new(8192, 8192);
    let view = dec.decode(&bytes, format).unwrap();
    f64::from(view.width().max(view.height()))
}
