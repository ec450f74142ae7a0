//! `lookout model inspect` on the three layouts set-up converts (and on broken files), and
//! `lookout model build-engine` where TensorRT cannot register (this machine has no GPU).

mod common;

use std::process::{Command, Output};

fn lookout(args: &[&str]) -> Output {
    common::output(Command::new(env!("CARGO_BIN_EXE_lookout")).args(args))
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn manifest(package: &str) -> String {
    common::repo()
        .join("models")
        .join(package)
        .join("manifest.yaml")
        .display()
        .to_string()
}

#[test]
fn inspect_finds_each_layouts_decoder_and_the_manifests_agree() {
    for (package, decoder, output) in [
        ("yolov3-tiny", "yolov5 (80 classes)", "[1, 2535, 85]"),
        ("yolov3-tiny-v8", "yolov8 (80 classes)", "[1, 84, 2535]"),
        ("yolov3-tiny-end2end", "end2end", "[1, 100, 6]"),
    ] {
        let o = lookout(&["model", "inspect", &manifest(package)]);
        let text = stdout(&o);
        assert!(o.status.success(), "{package}: {text}");
        assert!(
            text.contains(&format!("decoder that fits: {decoder}")),
            "{text}"
        );
        assert!(
            text.contains(&format!("output output0 float32 {output}")),
            "{text}"
        );
        assert!(
            text.contains("input  images float32 [1, 3, 416, 416]"),
            "{text}"
        );
        assert!(text.contains("agrees with the ONNX file"), "{text}");
        assert!(text.contains("ai.onnx 13"), "{text}");
    }
    // The ONNX file alone, as JSON.
    let onnx = common::repo().join("models/yolov3-tiny-end2end/yolov3-tiny-end2end.onnx");
    let o = lookout(&["model", "inspect", onnx.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", stdout(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["decoder_fit"]["decoder"], "end2end", "{v}");
    assert_eq!(v["onnx_info"]["operators"]["NonMaxSuppression"], 1, "{v}");
    assert_eq!(
        v["onnx_info"]["outputs"][0]["shape"],
        serde_json::json!([1, 100, 6])
    );
}

#[test]
fn inspect_names_every_disagreement_of_a_manifest_with_its_onnx_file() {
    // The yolov8 manifest next to the yolov5 file.
    let dir = common::fresh_dir("inspect-mismatch");
    let text = std::fs::read_to_string(manifest("yolov3-tiny-v8")).unwrap();
    std::fs::write(dir.join("manifest.yaml"), text).unwrap();
    std::os::unix::fs::symlink(
        common::repo().join("models/yolov3-tiny/yolov3-tiny.onnx"),
        dir.join("yolov3-tiny-v8.onnx"),
    )
    .unwrap();
    let o = lookout(&[
        "model",
        "inspect",
        dir.join("manifest.yaml").to_str().unwrap(),
    ]);
    let text = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(
        text.contains("MISMATCH output.shape: the manifest says [1, 84, 2535]"),
        "{text}"
    );
    assert!(
        text.contains("MISMATCH output.decoder: the manifest says yolov8")
            && text.contains("fit yolov5"),
        "{text}"
    );
    assert!(text.contains("MISMATCH sha256"), "{text}");
}

#[test]
fn inspect_refuses_truncated_and_foreign_files_with_the_reason() {
    let dir = common::fresh_dir("inspect-broken");
    let bytes = std::fs::read(common::repo().join("models/yolov3-tiny/yolov3-tiny.onnx")).unwrap();
    let cut = dir.join("cut.onnx");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let o = lookout(&["model", "inspect", cut.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("invalid ONNX file") && err.contains("at byte"),
        "{err}"
    );
    let o = lookout(&[
        "model",
        "inspect",
        common::image("bus.jpg").to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("invalid ONNX file"), "{err}");
}

#[test]
fn build_engine_fails_with_the_reason_when_tensorrt_cannot_register() {
    let o = lookout(&["model", "build-engine", &manifest("yolov3-tiny")]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("TensorRT engine not built"), "{err}");
    assert!(err.to_lowercase().contains("tensorrt"), "{err}");
}
