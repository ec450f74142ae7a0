//! Shared helpers for the integration tests: where set-up put the model, images and Python.
//!
//! The tests need `scripts/setup.sh` to have run (the README's test command does it first). A
//! missing asset fails the test with a message saying so; nothing is skipped silently.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The longest a command started by a test may run: a hang fails that test with the command
/// named, instead of stalling the suite (and CI) for ever.
pub const COMMAND_LIMIT: Duration = Duration::from_secs(600);

/// Runs `cmd` to completion with stdout and stderr captured, as [`Command::output`], but kills
/// it and fails the test after [`COMMAND_LIMIT`].
pub fn output(cmd: &mut Command) -> Output {
    output_within(cmd, COMMAND_LIMIT)
}

/// As [`output`], with the limit given.
pub fn output_within(cmd: &mut Command, limit: Duration) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    wait_output_within(child, &format!("{cmd:?}"), limit)
}

/// A child's pipe, or an empty reader when it was not piped.
fn pipe(p: Option<impl Read + Send + 'static>) -> Box<dyn Read + Send> {
    match p {
        Some(p) => Box::new(p),
        None => Box::new(std::io::empty()),
    }
}

/// As [`std::process::Child::wait_with_output`] for a child spawned with piped stdout and
/// stderr, killed (and the test failed, naming `what`) if it runs over `limit`.
pub fn wait_output_within(mut child: std::process::Child, what: &str, limit: Duration) -> Output {
    // Drained on their own threads, so a chatty child never blocks on a full pipe.
    let drain = |name: &str, mut pipe: Box<dyn Read + Send>| {
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let mut buf = Vec::new();
                let _ = pipe.read_to_end(&mut buf);
                buf
            })
            .unwrap()
    };
    let out = drain("test-stdout", pipe(child.stdout.take()));
    let err = drain("test-stderr", pipe(child.stderr.take()));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = err.join().unwrap_or_default();
            panic!(
                "{what} ran over {limit:?} and was killed; its stderr:\n{}",
                String::from_utf8_lossy(&stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// Repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `$LOOKOUT_HOME`, or `<repo>/.lookout`.
pub fn lookout_home() -> PathBuf {
    std::env::var_os("LOOKOUT_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".lookout"))
}

fn must_exist(p: PathBuf) -> PathBuf {
    assert!(
        p.exists(),
        "{} is missing: run scripts/setup.sh first",
        p.display()
    );
    p
}

/// A test image fetched by set-up (`bus.jpg`, `dog.jpg`, `person.jpg`).
pub fn image(name: &str) -> PathBuf {
    must_exist(lookout_home().join("data/images").join(name))
}

/// The default model's manifest (its ONNX file must have been converted by set-up).
pub fn default_manifest() -> PathBuf {
    must_exist(repo().join("models/yolov3-tiny/yolov3-tiny.onnx"));
    repo().join("models/yolov3-tiny/manifest.yaml")
}

/// The default model with a dynamic batch dimension (`input.max_batch: 4`), converted by set-up.
pub fn batch_manifest() -> PathBuf {
    must_exist(repo().join("models/yolov3-tiny-batch/yolov3-tiny-batch.onnx"));
    repo().join("models/yolov3-tiny-batch/manifest.yaml")
}

/// The set-up's Python (rclpy, onnx, numpy, rosbags).
pub fn python() -> PathBuf {
    must_exist(lookout_home().join("venv/bin/python"))
}

/// Writes the first `frames` frames of the vtest video as bags into `out_dir` with
/// scripts/make_vtest_bag.py (`extra`: its other options, e.g. `--storage mcap`).
pub fn vtest_clip(out_dir: &Path, frames: usize, extra: &[&str]) {
    let o = output(
        Command::new(python())
            .arg(repo().join("scripts/make_vtest_bag.py"))
            .arg(must_exist(lookout_home().join("data/vtest.avi")))
            .arg(out_dir)
            .args(["--frames", &frames.to_string()])
            .args(extra),
    );
    assert!(
        o.status.success(),
        "make_vtest_bag.py failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The node's configuration from a parameters file's text (node `/lookout`), as `lookout run`
/// reads it.
pub fn config_from_yaml(yaml: &str) -> lookout::config::Config {
    let params =
        lookout::config::Config::parameters_from_str(yaml, Path::new("test.yaml"), "/lookout")
            .unwrap();
    lookout::config::Config::from_parameters(&params).unwrap()
}

/// Engine settings for tests: CPU only, so results do not depend on the machine's GPUs.
pub fn cpu_engine() -> lookout::core::engine::EngineConfig {
    lookout::core::engine::EngineConfig {
        execution_providers: vec![lookout::core::engine::Provider::Cpu],
        ..Default::default()
    }
}

/// Decodes an image file into an owned packed rgb8 (or mono8) buffer: (width, height, encoding, data).
pub fn load_rgb(path: &Path) -> (u32, u32, lookout::core::image::PixelEncoding, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap();
    let format = lookout::core::decode::CompressedFormat::sniff(&bytes).unwrap();
    let mut dec = lookout::core::decode::Decoder::new(4096, 4096);
    let view = dec.decode(&bytes, format).unwrap();
    let (w, h, e) = (view.width(), view.height(), view.encoding());
    let data = view.rows(0).flatten().copied().collect();
    (w, h, e, data)
}

/// The class names `det` finds in `view`, in its output order.
pub fn class_names(
    det: &mut lookout::core::detector::Detector,
    view: &lookout::core::image::ImageView<'_>,
) -> Vec<String> {
    let ids: Vec<usize> = det
        .detect(view)
        .expect("detection runs")
        .detections
        .iter()
        .map(|d| d.class_id as usize)
        .collect();
    ids.into_iter()
        .map(|id| det.model().class_name(id).to_string())
        .collect()
}

static SCRATCH: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Removes the scratch folder when the test process exits (registered with `atexit`).
extern "C" fn remove_scratch() {
    if std::env::var_os("LOOKOUT_KEEP_TEST_FILES").is_some() {
        return;
    }
    if let Some(root) = SCRATCH.get() {
        let _ = std::fs::remove_dir_all(root);
    }
}

/// The folder every temporary file of this test process goes in, `lookout-tests-<pid>` in the
/// temporary directory: removed when the process exits, whether its tests passed or failed
/// (`LOOKOUT_KEEP_TEST_FILES=1` keeps it for a post-mortem).
pub fn scratch_root() -> &'static Path {
    SCRATCH.get_or_init(|| {
        let root = std::env::temp_dir().join(format!("lookout-tests-{}", std::process::id()));
        std::fs::create_dir_all(&root).unwrap();
        // SAFETY: atexit(3) with a function that takes nothing, returns nothing and cannot
        // unwind (every error is ignored).
        unsafe { libc::atexit(remove_scratch) };
        root
    })
}

/// `name` in the scratch folder (not created).
pub fn scratch(name: &str) -> PathBuf {
    scratch_root().join(name)
}

/// An empty folder `name` in the scratch folder (emptied if it exists).
pub fn fresh_dir(name: &str) -> PathBuf {
    let d = scratch(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A 3-frame vtest clip (`<dir>/vtest` MCAP, `<dir>/vtest_sqlite3`), written once per test binary.
pub fn small_clip() -> &'static PathBuf {
    static CLIP: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    CLIP.get_or_init(|| {
        let dir = fresh_dir("clip");
        vtest_clip(&dir, 3, &[]);
        dir
    })
}

/// `<dir>/params.yaml`: the vtest raw camera (`raw`, /camera/image_raw), default model, CPU,
/// one intra-op thread.
pub fn raw_camera_params(dir: &Path) -> PathBuf {
    let path = dir.join("params.yaml");
    let yaml = format!(
        "lookout:\n  ros__parameters:\n    model: {}\n    engine:\n      execution_providers: [cpu]\n      intra_op_threads: 1\n    cameras: [raw]\n    camera:\n      raw:\n        topic: /camera/image_raw\n",
        default_manifest().display()
    );
    std::fs::write(&path, yaml).unwrap();
    path
}

/// Copies bag folder `src` to `to`, its MCAP file cut to its first 60 % (a recorder killed
/// mid-write); the other files unchanged.
pub fn truncated_bag_copy(src: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let p = e.unwrap().path();
        let dest = to.join(p.file_name().unwrap());
        if p.extension().is_some_and(|x| x == "mcap") {
            let bytes = std::fs::read(&p).unwrap();
            std::fs::write(&dest, &bytes[..bytes.len() * 6 / 10]).unwrap();
        } else {
            std::fs::copy(&p, &dest).unwrap();
        }
    }
}

/// One camera status of a /diagnostics message in a bag.
#[allow(dead_code)]
#[derive(Debug, Clone)]
pub struct DiagnosticRow {
    /// Seconds into the bag (log time after 1_700_000_000 s, where make_vtest_bag.py starts).
    pub t_s: f64,
    /// Level byte.
    pub level: u8,
    /// Message.
    pub message: String,
    /// Key/values.
    pub values: std::collections::BTreeMap<String, String>,
}

/// Every status named `lookout: camera <camera>` in the /diagnostics messages of `bag`, in
/// log-time order, read with rosbags.
#[allow(dead_code)]
pub fn camera_diagnostics(bag: &Path, camera: &str) -> Vec<DiagnosticRow> {
    let read = r#"
import json, sys
from pathlib import Path
from rosbags.highlevel import AnyReader
with AnyReader([Path(sys.argv[1])]) as r:
    conns = [c for c in r.connections if c.topic == "/diagnostics"]
    for c, t, raw in r.messages(connections=conns):
        m = r.deserialize(raw, c.msgtype)
        for s in m.status:
            if s.name == "lookout: camera " + sys.argv[2]:
                level = s.level if isinstance(s.level, int) else int.from_bytes(s.level, "little")
                values = {kv.key: kv.value for kv in s.values}
                print(json.dumps([(t - 1_700_000_000_000_000_000) / 1e9, level, s.message, values]))
"#;
    let o = output(
        Command::new(python())
            .args(["-c", read])
            .arg(bag)
            .arg(camera),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            DiagnosticRow {
                t_s: v[0].as_f64().unwrap(),
                level: v[1].as_u64().unwrap() as u8,
                message: v[2].as_str().unwrap().to_string(),
                values: v[3]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect(),
            }
        })
        .collect()
}
