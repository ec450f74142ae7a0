//! `lookout sim`: simulated cameras through the live runtime. The frames offered follow the
//! schedule exactly, every one is accounted for, the params file's cameras take a bag's
//! frames by topic, a sweep brackets the peak rate, bad options are one-line errors, and
//! Ctrl-C reports what was measured.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

fn sim(args: &[&str], params: &Path) -> (std::process::Output, Option<Value>) {
    let o = common::output(
        Command::new(env!("CARGO_BIN_EXE_lookout"))
            .arg("sim")
            .args(args)
            .arg("--params-file")
            .arg(params)
            .env("RUST_LOG", "warn"),
    );
    let json = serde_json::from_slice(&o.stdout).ok();
    (o, json)
}

/// CPU, one intra-op thread, the vtest camera pair (raw and JPEG), generous budgets.
fn params(dir: &Path, camera_yaml: &str) -> PathBuf {
    let path = dir.join("params.yaml");
    std::fs::write(
        &path,
        format!(
            "/**:\n  ros__parameters:\n    model: {}\n    engine: {{execution_providers: [cpu], intra_op_threads: 1}}\n{camera_yaml}",
            common::default_manifest().display()
        ),
    )
    .unwrap();
    path
}

const TWO_CAMERAS: &str = "    cameras: [raw, jpeg]\n    camera:\n      raw: {topic: /camera/image_raw, budget_ms: 2000}\n      jpeg: {topic: /camera/image_raw/compressed, type: compressed, budget_ms: 2000}\n";

#[test]
fn the_schedule_is_kept_and_every_frame_is_accounted_for() {
    let dir = common::fresh_dir("sim-run");
    let p = params(&dir, TWO_CAMERAS);
    let report_file = dir.join("report.json");
    let (o, json) = sim(
        &[
            "--source",
            "synthetic:640x480",
            "--cameras",
            "2",
            "--fps",
            "5",
            "--duration",
            "2",
            "--json",
            "--report",
            report_file.to_str().unwrap(),
        ],
        &p,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r = json.expect("JSON on stdout");
    // Two cameras, 5 fps, 2 s: frames at 0, 200, .., 1800 ms and 100, .., 1900 ms.
    assert_eq!(r["frames_in"], 20, "{r}");
    assert_eq!(r["mode"], "sim");
    assert_eq!(r["cameras"], 2);
    let accounted = r["frames_processed"].as_u64().unwrap()
        + r["dropped"].as_u64().unwrap()
        + r["bad_inputs"].as_u64().unwrap();
    assert_eq!(accounted, 20, "{r}");
    for cam in ["cam0", "cam1"] {
        assert_eq!(r["per_camera"][cam]["frames_in"], 10, "{r}");
        let fps = r["achieved_fps"][cam].as_f64().unwrap();
        let processed = r["per_camera"][cam]["frames_processed"].as_f64().unwrap();
        assert!((fps - processed / 2.0).abs() < 0.01, "{r}");
        assert!(r["drops"][cam]["ring_full"].is_u64());
        assert!(
            r["per_camera"][cam]["latency_ms"]["e2e"]["p50"]
                .as_f64()
                .unwrap()
                > 0.0
        );
    }
    // The stages add up: end to end is at least pre-processing plus inference.
    let l = &r["latency_ms"];
    assert!(
        l["e2e"]["p50"].as_f64().unwrap()
            >= l["inference"]["p50"].as_f64().unwrap() + l["preprocess"]["p50"].as_f64().unwrap()
                - 1.0,
        "{l}"
    );
    assert!(r["cpu_percent"].as_f64().unwrap() > 0.0);
    assert!(r["rss_mb"].as_f64().unwrap() > 10.0);
    assert!(r.get("sweep").is_none());
    // The same report went to the file.
    let file: Value = serde_json::from_slice(&std::fs::read(&report_file).unwrap()).unwrap();
    assert_eq!(file["frames_in"], r["frames_in"]);
}

#[test]
fn the_params_file_cameras_take_a_bags_frames_by_topic() {
    let dir = common::fresh_dir("sim-bag");
    let bag = common::small_clip().join("vtest");
    let source = format!("bag:{}", bag.display());
    let p = params(&dir, TWO_CAMERAS);
    let (o, json) = sim(
        &[
            "--source",
            &source,
            "--fps",
            "4",
            "--duration",
            "1.5",
            "--json",
        ],
        &p,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r = json.unwrap();
    for cam in ["raw", "jpeg"] {
        assert_eq!(r["per_camera"][cam]["frames_in"], 6, "{r}");
        assert_eq!(r["per_camera"][cam]["bad_inputs"], 0, "{r}");
        assert!(r["per_camera"][cam]["frames_processed"].as_u64().unwrap() > 0);
    }
    // A camera whose type is not what the topic holds, and one on a topic the bag lacks.
    let wrong = params(
        &dir,
        "    cameras: [raw]\n    camera:\n      raw: {topic: /camera/image_raw, type: compressed}\n",
    );
    let (o, _) = sim(&["--source", &source, "--duration", "1"], &wrong);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("camera.raw.type"), "{e}");
    let missing = params(
        &dir,
        "    cameras: [front]\n    camera:\n      front: {topic: /nothing/here}\n",
    );
    let (o, _) = sim(&["--source", &source, "--duration", "1"], &missing);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && e.contains("no frames for camera front"),
        "{e}"
    );
}

#[test]
fn a_sweep_brackets_the_peak_rate() {
    let dir = common::fresh_dir("sim-sweep");
    let p = params(
        &dir,
        "    cameras: [front]\n    camera:\n      front: {topic: /c, budget_ms: 1000}\n",
    );
    let (o, json) = sim(
        &[
            "--source",
            "synthetic:320x240",
            "--sweep",
            "--from",
            "2",
            "--step",
            "60",
            "--duration",
            "1",
            "--json",
        ],
        &p,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r = json.unwrap();
    let s = &r["sweep"];
    let peak = s["peak_fps"].as_f64().unwrap();
    let points = s["points"].as_array().unwrap();
    assert!(points.len() >= 3, "{s}");
    assert!((2.0..1000.0).contains(&peak), "{s}");
    // Every rate up to the peak measured was kept up with; the next one above it was not.
    let kept = |p: &Value| p["sustained"].as_bool().unwrap();
    let offered = |p: &Value| p["offered_fps"].as_f64().unwrap();
    assert!(
        points.iter().filter(|p| offered(p) <= peak).all(kept),
        "{s}"
    );
    let above = points
        .iter()
        .find(|p| offered(p) > peak)
        .expect("a point above the peak");
    assert!(!kept(above), "{s}");
    // The report is the run at the peak.
    assert_eq!(r["offered_fps"].as_f64().unwrap(), peak);
}

#[test]
fn options_out_of_range_are_one_line_errors() {
    let dir = common::fresh_dir("sim-options");
    let p = params(&dir, TWO_CAMERAS);
    for (args, needle) in [
        (vec!["--fps", "0"], "--fps"),
        (vec!["--fps", "1e9"], "--fps"),
        (vec!["--burst", "0"], "--burst"),
        (vec!["--cameras", "0"], "--cameras"),
        (vec!["--cameras", "33"], "--cameras"),
        (vec!["--jitter-ms", "1e9"], "--jitter-ms"),
        (vec!["--duration", "1e12"], "--duration"),
    ] {
        let mut a = vec!["--source", "synthetic:64x48"];
        a.extend(&args);
        let (o, _) = sim(&a, &p);
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?} accepted");
        assert!(
            e.contains(needle) && e.lines().count() <= 2,
            "{args:?}: {e}"
        );
    }
    let (o, _) = sim(&["--source", "camera:/dev/video0"], &p);
    assert!(String::from_utf8_lossy(&o.stderr).contains("expected bag:PATH"));
}

#[test]
fn ctrl_c_ends_the_run_and_reports_what_was_measured() {
    let dir = common::fresh_dir("sim-sigint");
    let p = params(&dir, TWO_CAMERAS);
    let child = Command::new(env!("CARGO_BIN_EXE_lookout"))
        .args([
            "sim",
            "--source",
            "synthetic:320x240",
            "--cameras",
            "1",
            "--fps",
            "5",
            "--duration",
            "120",
            "--json",
            "--params-file",
        ])
        .arg(&p)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(4));
    // SAFETY: plain kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let sent = Instant::now();
    let o = common::wait_output_within(child, "lookout sim", Duration::from_secs(60));
    assert!(
        sent.elapsed() < Duration::from_secs(10),
        "Ctrl-C did not end the run"
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["interrupted"], true, "{r}");
    let n = r["frames_in"].as_u64().unwrap();
    assert!(n > 0 && n < 600, "{r}");
}

#[test]
fn via_ros_goes_through_a_ros_graph_and_counts_every_frame() {
    let dir = common::fresh_dir("sim-via-ros");
    // Reliable FIFO input: on a loaded machine no frame may be lost in transport or replaced.
    let p = params(
        &dir,
        "    cameras: [front]\n    camera:\n      front: {topic: /c, budget_ms: 5000, qos: {reliability: reliable}, queue_policy: fifo}\n",
    );
    let o = common::output(
        Command::new(env!("CARGO_BIN_EXE_lookout"))
            .args([
                "sim",
                "--via-ros",
                "--source",
                "synthetic:320x240",
                "--cameras",
                "1",
                "--fps",
                "5",
                "--duration",
                "2",
                "--json",
                "--params-file",
            ])
            .arg(&p)
            .env("ROS_DOMAIN_ID", "63")
            .env("RUST_LOG", "warn"),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["mode"], "sim-via-ros");
    let v = &r["via_ros"];
    assert_eq!(v["published"]["cam0"], 10, "{r}");
    assert_eq!(v["received"]["cam0"], 10, "{r}");
    // The node's own counts came back from its summary.
    assert_eq!(r["per_camera"]["cam0"]["frames_processed"], 10, "{r}");
    assert!(
        v["node_stage_means_ms"]["cam0"]["inference"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    // Publish to receive covers at least the node's inference.
    let e2e = r["latency_ms"]["e2e"]["p50"].as_f64().unwrap();
    assert!(
        e2e >= v["node_stage_means_ms"]["cam0"]["inference"]
            .as_f64()
            .unwrap()
            * 0.5,
        "{r}"
    );
    assert!(
        r["cpu_percent"].as_f64().unwrap() > 0.0,
        "the node's CPU: {r}"
    );
}
