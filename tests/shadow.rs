//! The shadow model: the same model with a higher confidence threshold runs beside the primary.
//! In a max-speed replay it sees every frame; its disagreement (the primary's weaker detections
//! it does not make) is counted per camera, WARNs on /diagnostics, and its detections go to
//! `<camera namespace>/shadow/detections`, while the primary's detections stay byte for byte
//! what they are without a shadow. Bad shadow settings are refused, naming the key.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn params(dir: &Path, name: &str, shadow: &str) -> PathBuf {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &path,
        format!(
            "lookout:\n  ros__parameters:\n    model: {}\n    engine:\n      execution_providers: [cpu]\n    diagnostics:\n      period_ms: 500.0\n{shadow}    cameras: [raw]\n    camera:\n      raw:\n        topic: /camera/image_raw\n",
            common::default_manifest().display()
        ),
    )
    .unwrap();
    path
}

fn replay(dir: &Path, name: &str, params: &Path) -> (std::process::Output, PathBuf, PathBuf) {
    let out = dir.join(format!("out_{name}"));
    let report = dir.join(format!("{name}.json"));
    let o = common::output(
        Command::new(env!("CARGO_BIN_EXE_lookout"))
            .arg("replay")
            .arg(dir.join("vtest"))
            .arg("--params-file")
            .arg(params)
            .arg("--out")
            .arg(&out)
            .arg("--report")
            .arg(&report),
    );
    (o, out, report)
}

/// Per detections topic of `bag`: message count, sha256 of the messages' bytes in order, and
/// the lowest score of any detection.
fn topics(bag: &Path) -> serde_json::Value {
    let read = r#"
import hashlib, json, sys
from pathlib import Path
from rosbags.highlevel import AnyReader
out = {}
with AnyReader([Path(sys.argv[1])]) as r:
    conns = [c for c in r.connections if c.msgtype == "vision_msgs/msg/Detection2DArray"]
    for c, t, raw in r.messages(connections=conns):
        e = out.setdefault(c.topic, {"messages": 0, "sha": hashlib.sha256(), "min_score": 1.0})
        e["messages"] += 1
        e["sha"].update(raw)
        for d in r.deserialize(raw, c.msgtype).detections:
            e["min_score"] = min(e["min_score"], d.results[0].hypothesis.score)
for e in out.values():
    e["sha"] = e["sha"].hexdigest()
print(json.dumps(out))
"#;
    let o = common::output(Command::new(common::python()).args(["-c", read]).arg(bag));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn a_stricter_shadow_disagrees_warns_and_leaves_the_primary_unchanged() {
    let dir = common::fresh_dir("shadow");
    common::vtest_clip(&dir, 30, &["--storage", "mcap"]);
    let shadow = format!(
        "    shadow:\n      model: {}\n      publish: true\n      thresholds:\n        confidence: 0.6\n      window_frames: 20\n      min_frames: 10\n      warn_disagreement: 0.2\n",
        common::default_manifest().display()
    );
    let (o, plain_bag, plain_report) = replay(&dir, "plain", &params(&dir, "plain", ""));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (o, shadow_bag, shadow_report) =
        replay(&dir, "shadowed", &params(&dir, "shadowed", &shadow));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // The primary's detections: the same bytes with and without the shadow.
    let plain = topics(&plain_bag);
    let shadowed = topics(&shadow_bag);
    assert_eq!(plain["/raw/detections"]["messages"], 30, "{plain}");
    assert_eq!(plain["/raw/detections"], shadowed["/raw/detections"]);
    // The shadow's: every frame, nothing under its own threshold.
    let s = &shadowed["/raw/shadow/detections"];
    assert_eq!(s["messages"], 30, "{shadowed}");
    assert!(s["min_score"].as_f64().unwrap() >= 0.6, "{s}");
    assert!(
        plain["/raw/detections"]["min_score"].as_f64().unwrap() < 0.6,
        "{plain}"
    );

    // The report: every frame compared, none skipped (max speed runs the shadow inline); the
    // stricter shadow makes a subset of the primary's detections.
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&shadow_report).unwrap()).unwrap();
    let p: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&plain_report).unwrap()).unwrap();
    assert!(p.get("shadow_model").is_none() && p["per_camera"]["raw"].get("shadow").is_none());
    assert_eq!(r["shadow_model_sha256"], r["model_sha256"]);
    let c = &r["per_camera"]["raw"]["shadow"];
    assert_eq!(c["frames"], 30, "{c}");
    assert_eq!(c["skipped"], 0, "{c}");
    assert_eq!(c["shadow_only"], 0, "{c}");
    assert_eq!(c["errors"], 0, "{c}");
    let detections: u64 = r["detections_by_class"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(
        c["matched"].as_u64().unwrap() + c["primary_only"].as_u64().unwrap(),
        detections,
        "{c}"
    );
    assert!(c["primary_only"].as_u64().unwrap() > 0, "{c}");
    assert!(c["disagreeing_frames"].as_u64().unwrap() > 15, "{c}");

    // /diagnostics: the counts, and WARN once the window holds 10 frames (1 s of the clip).
    let rows = common::camera_diagnostics(&shadow_bag, "raw");
    assert!(rows.len() >= 4, "{rows:?}");
    let warned: Vec<_> = rows
        .iter()
        .filter(|d| d.level >= 1 && d.message.contains("shadow model disagrees"))
        .collect();
    assert!(!warned.is_empty(), "{rows:?}");
    assert!(warned.iter().all(|d| d.t_s >= 0.9), "{rows:?}");
    let last = rows.last().unwrap();
    assert_eq!(last.values["shadow_frames"], "30", "{last:?}");
    assert!(
        last.values["shadow_window_disagreement"]
            .parse::<f64>()
            .unwrap()
            > 0.2,
        "{last:?}"
    );
}

#[test]
fn bad_shadow_settings_are_refused_naming_the_key() {
    let dir = common::fresh_dir("shadow_refused");
    common::vtest_clip(&dir, 2, &["--storage", "mcap"]);
    let model = common::default_manifest();
    // A package of other classes: the default manifest with `person` renamed, beside a link to
    // the same ONNX file.
    let renamed = dir.join("renamed");
    std::fs::create_dir_all(&renamed).unwrap();
    std::os::unix::fs::symlink(
        model.with_file_name("yolov3-tiny.onnx"),
        renamed.join("yolov3-tiny.onnx"),
    )
    .unwrap();
    let text = std::fs::read_to_string(&model).unwrap();
    assert!(
        text.contains("  - person\n"),
        "the manifest lists its classes one per line"
    );
    std::fs::write(
        renamed.join("manifest.yaml"),
        text.replacen("  - person\n", "  - pedestrian\n", 1),
    )
    .unwrap();
    for (name, shadow, key) in [
        (
            "classes",
            format!(
                "    shadow:\n      model: {}\n",
                renamed.join("manifest.yaml").display()
            ),
            "shadow.model",
        ),
        (
            "iou",
            format!(
                "    shadow:\n      model: {}\n      match_iou: 0.0\n",
                model.display()
            ),
            "shadow.match_iou",
        ),
        (
            "confidence",
            format!(
                "    shadow:\n      model: {}\n      thresholds:\n        confidence: 2.0\n",
                model.display()
            ),
            "shadow.thresholds.confidence",
        ),
        (
            "window",
            format!(
                "    shadow:\n      model: {}\n      window_frames: 10\n      min_frames: 11\n",
                model.display()
            ),
            "shadow.min_frames",
        ),
        (
            "missing",
            format!(
                "    shadow:\n      model: {}\n",
                dir.join("nowhere/manifest.yaml").display()
            ),
            "nowhere",
        ),
    ] {
        let (o, out, _) = replay(&dir, name, &params(&dir, name, &shadow));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(key), "{name}: {err}");
        assert!(!out.exists(), "{name}: no output bag on a refused start");
    }
}
