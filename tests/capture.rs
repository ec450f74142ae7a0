//! Incident capture: a replay whose 20th frame is held up 1.5 s (a deadline miss, injected
//! with `LOOKOUT_FAULT_SLOW_FRAME`) writes one incident bag holding the second before that
//! frame and the half second after it: images and detections, readable by rosbags, with the
//! trigger and provenance in its metadata, and the same detections as the replay's output.

mod common;

use std::path::Path;
use std::process::Command;

fn read_bag(bag: &Path) -> serde_json::Value {
    let read = r#"
import hashlib, json, sys
from pathlib import Path
import yaml
from rosbags.highlevel import AnyReader
out = {"topics": {}}
with AnyReader([Path(sys.argv[1])]) as r:
    for c, t, raw in r.messages(connections=r.connections):
        m = r.deserialize(raw, c.msgtype)
        stamp = m.header.stamp.sec * 10**9 + m.header.stamp.nanosec
        e = out["topics"].setdefault(c.topic, {"type": c.msgtype, "stamps": [], "sha": {}})
        e["stamps"].append(stamp)
        if c.msgtype == "vision_msgs/msg/Detection2DArray":
            e["sha"][str(stamp)] = hashlib.sha256(bytes(raw)).hexdigest()
        if c.msgtype == "sensor_msgs/msg/Image":
            e["size"] = [m.width, m.height, m.encoding, len(m.data)]
meta = yaml.safe_load(open(Path(sys.argv[1]) / "metadata.yaml"))
out["custom_data"] = meta["rosbag2_bagfile_information"].get("custom_data", {})
print(json.dumps(out))
"#;
    let o = common::output(Command::new(common::python()).args(["-c", read]).arg(bag));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn a_deadline_miss_writes_the_seconds_around_it_to_an_incident_bag() {
    let dir = common::fresh_dir("capture");
    common::vtest_clip(&dir, 30, &["--storage", "mcap"]);
    let incidents = dir.join("incidents");
    let params = dir.join("params.yaml");
    std::fs::write(
        &params,
        format!(
            "lookout:\n  ros__parameters:\n    model: {}\n    engine:\n      execution_providers: [cpu]\n    capture:\n      dir: {}\n      before_s: 1.0\n      after_s: 0.5\n      max_rate_hz: 10.0\n      triggers: [deadline_miss]\n    cameras: [raw]\n    camera:\n      raw:\n        topic: /camera/image_raw\n        budget_ms: 1000.0\n",
            common::default_manifest().display(),
            incidents.display()
        ),
    )
    .unwrap();
    let out = dir.join("out");
    let report = dir.join("report.json");
    let o = common::output(
        Command::new(env!("CARGO_BIN_EXE_lookout"))
            .arg("replay")
            .arg(dir.join("vtest"))
            .arg("--params-file")
            .arg(&params)
            .arg("--out")
            .arg(&out)
            .arg("--report")
            .arg(&report)
            .env("LOOKOUT_FAULT_SLOW_FRAME", "20:1500"),
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("incident captured"), "{stderr}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(r["deadline_misses"], 1, "{r}");
    assert_eq!(r["incident_captures"], 1, "{r}");

    // One complete incident bag, named after the frame's stamp, the camera and the trigger.
    let names: Vec<String> = std::fs::read_dir(&incidents)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(
        names[0].starts_with("incident_") && names[0].ends_with("_raw_deadline_miss"),
        "{names:?}"
    );
    let bag = read_bag(&incidents.join(&names[0]));
    let output = read_bag(&out);

    // The frame that missed: the 20th of the output, 100 ms apart.
    let all = output["topics"]["/raw/detections"]["stamps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect::<Vec<_>>();
    assert_eq!(all.len(), 30);
    let missed = all[19];
    let custom = &bag["custom_data"];
    assert_eq!(
        custom["lookout.capture.trigger"], "deadline_miss",
        "{custom}"
    );
    assert_eq!(custom["lookout.capture.camera"], "raw");
    assert_eq!(custom["lookout.capture.stamp_ns"], missed.to_string());
    assert_eq!(custom["lookout.model_sha256"], r["model_sha256"]);

    // Images and detections of the same frames: the second before (the ring holds 10 frames)
    // and the half second after.
    let images = &bag["topics"]["/camera/image_raw"];
    let detections = &bag["topics"]["/raw/detections"];
    assert_eq!(images["type"], "sensor_msgs/msg/Image");
    assert_eq!(images["stamps"], detections["stamps"]);
    let kept: Vec<i64> = images["stamps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    let expected: Vec<i64> = all
        .iter()
        .copied()
        .filter(|s| *s > missed - 1_000_000_000 && *s <= missed + 500_000_000)
        .collect();
    assert_eq!(kept, expected, "frames 11 to 25");
    assert_eq!(kept.len(), 15);
    // The frames as they came in (vtest: 768x576 bgr8), the detections as published.
    assert_eq!(
        images["size"],
        serde_json::json!([768, 576, "bgr8", 768 * 576 * 3])
    );
    for s in &kept {
        let key = s.to_string();
        assert_eq!(
            detections["sha"][&key], output["topics"]["/raw/detections"]["sha"][&key],
            "detections of {s}"
        );
    }
}
