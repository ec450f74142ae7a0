//! Where lookout looks for files (README, "Where lookout looks for files"): its own defaults
//! never come from the working directory, a path the user names does, and a library is never
//! loaded from a relative path. The working directory here is an "unpacked dataset" holding a
//! `config/lookout.yaml` that names a library and a broken `models/` package; before the search
//! order was fixed, lookout read both.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

/// A folder that looks like an unpacked dataset with its own lookout files.
fn dataset(name: &str) -> PathBuf {
    let dir = common::fresh_dir(name);
    std::fs::create_dir_all(dir.join("config")).unwrap();
    std::fs::create_dir_all(dir.join("models/yolov3-tiny")).unwrap();
    std::fs::write(dir.join("evil.so"), b"not a library").unwrap();
    std::fs::write(
        dir.join("config/lookout.yaml"),
        format!(
            "/**:\n  ros__parameters:\n    engine: {{ort_library: {}}}\n    cameras: [decoy]\n",
            dir.join("evil.so").display()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("models/yolov3-tiny/manifest.yaml"),
        "not a manifest\n",
    )
    .unwrap();
    dir
}

fn lookout(cwd: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lookout"));
    c.current_dir(cwd).env_remove("ORT_DYLIB_PATH");
    c
}

#[test]
fn defaults_ignore_the_working_directory() {
    let dir = dataset("search-defaults");
    let o = common::output(
        lookout(&dir)
            .args(["detect", "--execution-providers", "cpu", "--json"])
            .arg(common::image("bus.jpg")),
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "detect read the dataset's model: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(stdout.contains("\"class\":\"bus\""), "{stdout}");

    // replay without --params-file: the installed default parameters, not the dataset's.
    let out = dir.join("out");
    let o = common::output(
        lookout(&dir)
            .args(["replay", "--execution-providers", "cpu", "--no-diagnostics"])
            .arg(common::small_clip().join("vtest"))
            .arg("--out")
            .arg(&out),
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success(),
        "replay read the dataset's config: {stderr}"
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["frames_processed"], 3, "{report}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_path_the_user_names_is_taken_from_the_working_directory() {
    let dir = dataset("search-named");
    let o = common::output(
        lookout(&dir)
            .args(["detect", "--model", "models/yolov3-tiny/manifest.yaml"])
            .arg(common::image("bus.jpg")),
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        stderr.contains("invalid model manifest") && stderr.contains(&*dir.to_string_lossy()),
        "the named manifest in the working directory was not the one read: {stderr}"
    );

    let o = common::output(
        lookout(&dir)
            .args(["detect", "--model", "no/such/manifest.yaml"])
            .arg(common::image("bus.jpg")),
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        stderr.contains("no/such/manifest.yaml not found")
            && stderr.contains("not in the working directory")
            && stderr.contains("data directories"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_library_is_never_loaded_from_a_relative_path() {
    let dir = dataset("search-library");
    // From the environment.
    let o = common::output(
        lookout(&dir)
            .env("ORT_DYLIB_PATH", "evil.so")
            .args(["detect", "--execution-providers", "cpu"])
            .arg(common::image("bus.jpg")),
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success(),
        "a relative ORT_DYLIB_PATH was accepted"
    );
    assert!(stderr.contains("evil.so is a relative path"), "{stderr}");

    // From a parameters file: refused at start-up, naming the key.
    let params = dir.join("relative.yaml");
    std::fs::write(
        &params,
        "/**:\n  ros__parameters:\n    engine: {ort_library: lib/libonnxruntime.so}\n    cameras: [raw]\n    camera: {raw: {topic: /camera/image_raw}}\n",
    )
    .unwrap();
    let o = common::output(
        lookout(&dir)
            .arg("replay")
            .arg(common::small_clip().join("vtest"))
            .arg("--params-file")
            .arg(&params)
            .arg("--out")
            .arg(dir.join("out")),
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        stderr.contains("parameter `engine.ort_library`") && stderr.contains("relative path"),
        "{stderr}"
    );
    assert!(
        !dir.join("out").exists(),
        "output written despite a config error"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
