//! The `lookout detect` command line: output format and the errors a user can act on. Each error
//! must be one clear line on stderr, a non-zero exit, and no panic or backtrace.

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn lookout(args: &[&str]) -> Output {
    common::output(
        Command::new(env!("CARGO_BIN_EXE_lookout"))
            .args(args)
            // A backtrace must not appear even when the user has them enabled.
            .env("RUST_BACKTRACE", "1"),
    )
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// One `lookout: error:` line, no panic, no backtrace, exit code 1.
fn assert_clean_error(o: &Output, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "exit code; stderr: {err}");
    assert!(err.contains(needle), "`{needle}` not in: {err}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
    assert_eq!(
        err.lines()
            .filter(|l| l.starts_with("lookout: error:"))
            .count(),
        1,
        "{err}"
    );
}

fn tmp(name: &str) -> std::path::PathBuf {
    let dir = common::scratch("cli");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn json_lines_name_image_provider_and_detections() {
    let bus = common::image("bus.jpg");
    let dog = common::image("dog.jpg");
    let o = lookout(&[
        "detect",
        "--json",
        "--execution-providers",
        "cpu",
        bus.to_str().unwrap(),
        dog.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8(o.stdout).unwrap();
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["image"], bus.to_str().unwrap());
    assert_eq!(lines[0]["execution_provider"], "cpu");
    let classes: Vec<&str> = lines[0]["detections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["class"].as_str().unwrap())
        .collect();
    assert!(classes.contains(&"bus"), "{classes:?}");
    let first = &lines[0]["detections"][0];
    assert_eq!(first["bbox"].as_array().unwrap().len(), 4);
    assert!(first["score"].as_f64().unwrap() > 0.25);
}

#[test]
fn default_provider_chain_falls_back_to_cpu_and_says_so() {
    // No GPU here: TensorRT and CUDA fail to register and the CPU is reported.
    let o = lookout(&[
        "detect",
        "--json",
        common::image("dog.jpg").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let line: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let provider = line["execution_provider"].as_str().unwrap();
    assert!(["tensorrt", "cuda", "cpu"].contains(&provider));
}

#[test]
fn missing_model_is_one_line() {
    let o = lookout(&["detect", "--model", "/nonexistent/manifest.yaml", "x.jpg"]);
    assert_clean_error(&o, "cannot read model manifest /nonexistent/manifest.yaml");
}

#[test]
fn wrong_sha256_is_one_line() {
    // A copy of the default manifest whose ONNX is some other file.
    let manifest = std::fs::read_to_string(common::default_manifest()).unwrap();
    let path = tmp("manifest.yaml");
    std::fs::write(tmp("yolov3-tiny.onnx"), b"not the model").unwrap();
    std::fs::write(&path, manifest).unwrap();
    let o = lookout(&["detect", "--model", path.to_str().unwrap(), "x.jpg"]);
    assert_clean_error(&o, "but the manifest expects c3f76206");
}

#[test]
fn unknown_manifest_key_is_named() {
    let manifest = std::fs::read_to_string(common::default_manifest()).unwrap();
    let path = tmp("bad-key.yaml");
    std::fs::write(
        &path,
        manifest.replace("pad_value: 114", "pad_value: 114\n  pad_colour: 3"),
    )
    .unwrap();
    let o = lookout(&["detect", "--model", path.to_str().unwrap(), "x.jpg"]);
    assert_clean_error(&o, "unknown field `pad_colour`");
}

#[test]
fn unreadable_and_unsupported_images_are_one_line_each() {
    let missing = "/nonexistent/image.jpg";
    let gif = tmp("image.gif");
    std::fs::write(&gif, b"GIF89a....").unwrap();
    let truncated = tmp("truncated.jpg");
    let bus = std::fs::read(common::image("bus.jpg")).unwrap();
    std::fs::write(&truncated, &bus[..200]).unwrap();
    for (path, needle) in [
        (Path::new(missing), "cannot read image"),
        (gif.as_path(), "unsupported image format"),
        (truncated.as_path(), "cannot decode jpeg image"),
    ] {
        let o = lookout(&[
            "detect",
            "--execution-providers",
            "cpu",
            path.to_str().unwrap(),
        ]);
        assert_clean_error(&o, needle);
    }
}

#[test]
fn a_bad_image_does_not_stop_the_others() {
    let bus = common::image("bus.jpg");
    let o = lookout(&[
        "detect",
        "--json",
        "--execution-providers",
        "cpu",
        "/nonexistent.jpg",
        bus.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 1);
}

#[test]
fn missing_onnx_runtime_lists_what_was_tried() {
    let bus = common::image("bus.jpg");
    // The flag wins over the environment variable; a named library is never replaced.
    let o = common::output(
        Command::new(env!("CARGO_BIN_EXE_lookout"))
            .args([
                "detect",
                "--ort-library",
                "/nonexistent/libonnxruntime.so",
                bus.to_str().unwrap(),
            ])
            .env("ORT_DYLIB_PATH", "/also/missing.so"),
    );
    assert_clean_error(
        &o,
        "ONNX Runtime library not found; tried: /nonexistent/libonnxruntime.so (no such file)",
    );
    // The environment variable alone.
    let o = common::output(
        Command::new(env!("CARGO_BIN_EXE_lookout"))
            .args(["detect", bus.to_str().unwrap()])
            .env("ORT_DYLIB_PATH", "/also/missing.so"),
    );
    assert_clean_error(&o, "tried: /also/missing.so (no such file)");
    // A file that is not a library: the loader's reason is given.
    let o = common::output(
        Command::new(env!("CARGO_BIN_EXE_lookout"))
            .args(["detect", bus.to_str().unwrap()])
            .env("ORT_DYLIB_PATH", common::default_manifest()),
    );
    assert_clean_error(&o, "manifest.yaml (failed to load");
}

#[test]
fn help_explains_every_flag() {
    let o = lookout(&["detect", "--help"]);
    let help = String::from_utf8(o.stdout).unwrap();
    for flag in [
        "--model",
        "--json",
        "--confidence",
        "--execution-providers",
        "--ort-library",
        "--max-size",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
}

#[test]
fn draw_writes_each_image_with_its_boxes_as_png() {
    let dir = tmp("drawn");
    let bus = common::image("bus.jpg");
    let o = lookout(&[
        "detect",
        "--json",
        "--execution-providers",
        "cpu",
        "--draw",
        dir.to_str().unwrap(),
        bus.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let line: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&o.stdout).lines().next().unwrap()).unwrap();
    let png = std::fs::read(dir.join("bus.png")).unwrap();
    let mut dec = lookout::core::decode::Decoder::new(4096, 4096);
    let view = dec
        .decode(&png, lookout::core::decode::CompressedFormat::Png)
        .unwrap();
    assert_eq!((view.width(), view.height()), (810, 1080));
    let rgb = lookout::charts::boxes::rgb_of(&view).unwrap();
    let at = |x: f64, y: f64| {
        let i = ((y as usize) * 810 + x as usize) * 3;
        [rgb[i], rgb[i + 1], rgb[i + 2]]
    };
    // Every reported box is drawn: the middle of its top edge has its class's colour.
    let names = lookout::core::model::Model::load(&common::default_manifest())
        .unwrap()
        .manifest
        .classes;
    let dets = line["detections"].as_array().unwrap();
    assert!(!dets.is_empty());
    for d in dets {
        let b: Vec<f64> = d["bbox"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let class = names.iter().position(|n| d["class"] == *n).unwrap() as u32;
        let color = lookout::charts::boxes::class_color(class);
        let mid = ((b[0] + b[2]) / 2.0).floor();
        assert_eq!(at(mid, b[1].floor().min(1079.0)), color, "{d}");
    }
}
