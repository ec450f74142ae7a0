//! Live tests of `lookout run` against real ROS 2 peers: rclpy publishers and subscribers from the
//! set-up's ROS 2 Jazzy (tests/ros/peer.py), over Fast DDS on this machine.
//!
//! Each test starts its own `lookout run` and peer on its own ROS_DOMAIN_ID, so the tests can run
//! in parallel. Needs `source .lookout/env.sh` (the README's test command does it).
#![cfg(feature = "ros")]

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A running `lookout run`, with its stderr collected line by line.
struct Lookout {
    child: Child,
    lines: crossbeam_channel::Receiver<String>,
    seen: Vec<String>,
}

impl Lookout {
    fn start(domain: u32, params: &Path, extra: &[&str]) -> Lookout {
        let mut child = Command::new(env!("CARGO_BIN_EXE_lookout"))
            .arg("run")
            .arg("--params-file")
            .arg(params)
            .args(extra)
            .env("ROS_DOMAIN_ID", domain.to_string())
            .env("RUST_LOG", "info,ort=warn")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("lookout starts");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = crossbeam_channel::bounded(100_000);
        std::thread::Builder::new()
            .name("lookout-stderr".into())
            .spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            })
            .unwrap();
        Lookout {
            child,
            lines: rx,
            seen: Vec::new(),
        }
    }

    /// Waits for a stderr line containing `needle`.
    fn wait_for(&mut self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return Some(line);
                    }
                }
                Err(_) => break,
            }
        }
        None
    }

    fn wait_running(&mut self) {
        if self
            .wait_for("lookout running", Duration::from_secs(60))
            .is_none()
        {
            let _ = self.child.kill();
            panic!("lookout did not start:\n{}", self.seen.join("\n"));
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal`, waits for the exit; returns (exit code, seconds to exit, all stderr).
    fn stop(mut self, signal: &str) -> (Option<i32>, f64, Vec<String>) {
        let t0 = Instant::now();
        let ok = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(ok.success());
        let deadline = t0 + Duration::from_secs(10);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("lookout did not stop within 10 s after SIG{signal}");
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let took = t0.elapsed().as_secs_f64();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(500)) {
            self.seen.push(line);
        }
        (status.code(), took, self.seen)
    }
}

/// Resident memory of `pid` in kB.
fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Counters from the `lookout: summary camera=NAME k=v ...` line of camera `name`.
fn summary(lines: &[String], name: &str) -> std::collections::HashMap<String, u64> {
    let line = lines
        .iter()
        .find(|l| l.starts_with("lookout: summary") && l.contains(&format!("camera={name} ")))
        .unwrap_or_else(|| panic!("no summary for {name} in:\n{}", lines.join("\n")));
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .filter_map(|(k, v)| v.parse().ok().map(|v| (k.to_string(), v)))
        .collect()
}

fn tmp_dir(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("lookout-live-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Writes the peer's raw frame file: u32 width, u32 height (LE), then RGB bytes. The image is
/// `name` from set-up, resized (nearest) to `size` when given.
fn raw_frame(dir: &Path, name: &str, size: Option<(u32, u32)>) -> PathBuf {
    let (w, h, _, rgb) = common::load_rgb(&common::image(name));
    let (tw, th) = size.unwrap_or((w, h));
    let mut out = Vec::with_capacity(8 + (tw * th * 3) as usize);
    out.extend_from_slice(&tw.to_le_bytes());
    out.extend_from_slice(&th.to_le_bytes());
    for y in 0..th {
        let sy = (y * h / th) as usize;
        for x in 0..tw {
            let s = (sy * w as usize + (x * w / tw) as usize) * 3;
            out.extend_from_slice(&rgb[s..s + 3]);
        }
    }
    let path = dir.join(format!("{name}-{tw}x{th}.rgb"));
    std::fs::write(&path, out).unwrap();
    path
}

/// Camera settings for the tests that check every frame: reliable input QoS and FIFO order, so
/// a frame is lost neither in transport nor to keep-newest when the machine is loaded by the
/// parallel tests. (The overload test keeps the defaults: best effort, keep newest.)
const LOSSLESS: &str = "qos: {reliability: reliable}, queue_policy: fifo";

fn params_file(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("params.yaml");
    let text =
        format!("/**:\n  ros__parameters:\n    engine: {{execution_providers: [cpu]}}\n{body}");
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs the rclpy peer and returns its JSON report.
fn peer(domain: u32, dir: &Path, args: &[String]) -> Value {
    let out = dir.join("peer.json");
    let o = Command::new(common::python())
        .arg(common::repo().join("tests/ros/peer.py"))
        .args(args)
        .arg("--out")
        .arg(&out)
        .env("ROS_DOMAIN_ID", domain.to_string())
        .output()
        .expect("peer runs");
    assert!(
        o.status.success(),
        "peer failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap()
}

fn received_on<'a>(report: &'a Value, topic: &str) -> Vec<&'a Value> {
    report["received"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["topic"] == topic)
        .collect()
}

fn classes(msg: &Value) -> Vec<&str> {
    msg["detections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["class"].as_str().unwrap())
        .collect()
}

/// Every published frame came back once on `out_topic`, with the same stamp and frame_id, and
/// every detection's header equals the array's.
fn assert_round_trip(report: &Value, in_topic: &str, out_topic: &str) -> Vec<Value> {
    let published = report["published"][in_topic].as_array().unwrap();
    let got = received_on(report, out_topic);
    assert_eq!(
        got.len(),
        published.len(),
        "{out_topic}: {} of {} frames came back",
        got.len(),
        published.len()
    );
    for (p, r) in published.iter().zip(&got) {
        assert_eq!(p["stamp_ns"], r["stamp_ns"], "stamp not copied");
        assert_eq!(p["frame_id"], r["frame_id"], "frame_id not copied");
        for d in r["detections"].as_array().unwrap() {
            assert_eq!(
                d["header_matches"], true,
                "detection header differs from the array's"
            );
            assert_eq!(d["id"], "", "id must be empty");
        }
    }
    got.into_iter().cloned().collect()
}

fn assert_bus_and_persons(msg: &Value) {
    let c = classes(msg);
    assert!(c.contains(&"bus"), "no bus in {c:?}");
    assert!(
        c.iter().filter(|x| **x == "person").count() >= 3,
        "fewer than 3 persons in {c:?}"
    );
    let bus = msg["detections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["class"] == "bus")
        .unwrap();
    // Centre and size in the original image's pixels (bus near [0, 234, 810, 736]).
    let (cx, cy) = (
        bus["center"][0].as_f64().unwrap(),
        bus["center"][1].as_f64().unwrap(),
    );
    let (w, h) = (
        bus["size"][0].as_f64().unwrap(),
        bus["size"][1].as_f64().unwrap(),
    );
    assert!(
        (cx - 405.0).abs() < 20.0 && (cy - 485.0).abs() < 20.0,
        "bus centre ({cx}, {cy})"
    );
    assert!(
        (w - 810.0).abs() < 40.0 && (h - 502.0).abs() < 40.0,
        "bus size ({w}, {h})"
    );
}

#[test]
fn raw_bgr8_and_padded_rgb8_frames_come_back_with_bus_and_persons() {
    let domain = 41;
    let dir = tmp_dir("raw");
    let bus = raw_frame(&dir, "bus.jpg", None);
    let params = params_file(
        &dir,
        &format!(
            "    cameras: [front, rear]\n    camera:\n      front: {{topic: /cam/front/image_raw, {LOSSLESS}}}\n      rear: {{topic: /cam/rear/image_raw, detections_topic: /rear/objects, {LOSSLESS}}}\n"
        ),
    );
    let mut node = Lookout::start(domain, &params, &[]);
    node.wait_running();
    let report = peer(
        domain,
        &dir,
        &[
            "--pub".into(),
            format!("/cam/front/image_raw,image,{},bgr8", bus.display()),
            "--pub".into(),
            format!("/cam/rear/image_raw,image,{},rgb8,13", bus.display()),
            "--sub".into(),
            "/front/detections".into(),
            "--sub".into(),
            "/rear/objects".into(),
            "--rate".into(),
            "2".into(),
            "--count".into(),
            "4".into(),
        ],
    );
    let (code, _, lines) = node.stop("INT");
    assert_eq!(code, Some(0));
    for (input, output) in [
        ("/cam/front/image_raw", "/front/detections"),
        ("/cam/rear/image_raw", "/rear/objects"),
    ] {
        for msg in assert_round_trip(&report, input, output) {
            assert_bus_and_persons(&msg);
        }
    }
    let front = summary(&lines, "front");
    assert_eq!(
        (front["received"], front["published"], front["bad_input"]),
        (4, 4, 0)
    );
}

#[test]
fn compressed_jpeg_frames_come_back_with_bus_and_persons() {
    let domain = 42;
    let dir = tmp_dir("jpeg");
    let params = params_file(
        &dir,
        &format!(
            "    cameras: [front]\n    camera:\n      front: {{topic: /cam/front/compressed, type: compressed, {LOSSLESS}}}\n"
        ),
    );
    let mut node = Lookout::start(domain, &params, &[]);
    node.wait_running();
    let jpeg = common::image("bus.jpg");
    let report = peer(
        domain,
        &dir,
        &[
            "--pub".into(),
            format!("/cam/front/compressed,compressed,{}", jpeg.display()),
            "--sub".into(),
            "/front/detections".into(),
            "--rate".into(),
            "2".into(),
            "--count".into(),
            "4".into(),
        ],
    );
    let (code, _, _) = node.stop("INT");
    assert_eq!(code, Some(0));
    for msg in assert_round_trip(&report, "/cam/front/compressed", "/front/detections") {
        assert_bus_and_persons(&msg);
    }
}

#[test]
fn two_cameras_each_get_their_own_detections() {
    let domain = 43;
    let dir = tmp_dir("two");
    let bus = raw_frame(&dir, "bus.jpg", None);
    let params = params_file(
        &dir,
        &format!(
            "    cameras: [left, right]\n    camera:\n      left: {{topic: /left/image_raw, {LOSSLESS}}}\n      right: {{topic: /right/compressed, type: compressed, {LOSSLESS}}}\n"
        ),
    );
    let mut node = Lookout::start(domain, &params, &["--ros-args", "-r", "__ns:=/robot"]);
    node.wait_running();
    let dog = common::image("dog.jpg");
    let report = peer(
        domain,
        &dir,
        &[
            "--pub".into(),
            format!("/left/image_raw,image,{},bgr8", bus.display()),
            "--pub".into(),
            format!("/right/compressed,compressed,{}", dog.display()),
            // Relative output topics land in the node's namespace.
            "--sub".into(),
            "/robot/left/detections".into(),
            "--sub".into(),
            "/robot/right/detections".into(),
            "--rate".into(),
            "2".into(),
            "--count".into(),
            "3".into(),
        ],
    );
    let (code, _, _) = node.stop("INT");
    assert_eq!(code, Some(0));
    for msg in assert_round_trip(&report, "/left/image_raw", "/robot/left/detections") {
        assert!(msg["frame_id"].as_str().unwrap().starts_with("image_raw_"));
        assert_bus_and_persons(&msg);
        assert!(!classes(&msg).contains(&"dog"));
    }
    for msg in assert_round_trip(&report, "/right/compressed", "/robot/right/detections") {
        assert!(msg["frame_id"].as_str().unwrap().starts_with("compressed_"));
        let c = classes(&msg);
        for class in ["bicycle", "dog", "car"] {
            assert!(c.contains(&class), "no {class} in {c:?}");
        }
        assert!(!c.contains(&"bus"));
    }
}

#[test]
fn overload_keeps_the_newest_frame_counts_drops_and_stays_bounded() {
    let domain = 44;
    let dir = tmp_dir("overload");
    let frame = raw_frame(&dir, "bus.jpg", Some((1280, 720)));
    let params = params_file(
        &dir,
        "    cameras: [front]\n    camera:\n      front: {topic: /cam/image_raw, ring_capacity: 3}\n",
    );
    let mut node = Lookout::start(domain, &params, &[]);
    node.wait_running();
    // Resident memory sampled every 250 ms while the peer runs.
    let pid = node.pid();
    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let sampling = std::sync::Arc::clone(&sampling);
        std::thread::Builder::new()
            .name("rss-sampler".into())
            .spawn(move || {
                let mut samples = Vec::new();
                while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                    samples.push(rss_kb(pid));
                    std::thread::sleep(Duration::from_millis(250));
                }
                samples
            })
            .unwrap()
    };
    // Far faster than inference runs on this machine: 40 Hz for 8 s.
    let report = peer(
        domain,
        &dir,
        &[
            "--pub".into(),
            format!("/cam/image_raw,image,{},bgr8", frame.display()),
            "--sub".into(),
            "/front/detections".into(),
            "--rate".into(),
            "40".into(),
            "--duration".into(),
            "8".into(),
        ],
    );
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let rss = sampler.join().unwrap();
    let (code, _, lines) = node.stop("INT");
    assert_eq!(code, Some(0));
    let s = summary(&lines, "front");
    let published = report["published"]["/cam/image_raw"]
        .as_array()
        .unwrap()
        .len() as u64;
    let dropped = s["dropped_superseded"] + s["dropped_ring_full"];
    assert!(dropped > 0, "no drops counted under overload: {s:?}");
    // Every frame is accounted for; at most ring_capacity + 1 were still waiting at shutdown.
    let accounted = s["processed"] + dropped + s["bad_input"];
    assert!(
        accounted <= s["received"] && s["received"] - accounted <= 4,
        "frames unaccounted for: {s:?}"
    );
    assert!(s["received"] <= published);
    let got = received_on(&report, "/front/detections");
    assert!(got.len() as u64 >= 10, "too few results: {}", got.len());
    let lat: Vec<f64> = got
        .iter()
        .map(|r| r["latency_ms"].as_f64().unwrap())
        .collect();
    // Bounded: keep-newest means a processed frame waited at most about one inference; with
    // an unbounded queue latency would grow by seconds over the run.
    let third = lat.len() / 3;
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (first, last) = (mean(&lat[..third]), mean(&lat[lat.len() - third..]));
    assert!(
        last < first + 500.0,
        "latency grows: first third {first:.0} ms, last third {last:.0} ms"
    );
    let max = lat.iter().cloned().fold(0.0, f64::max);
    assert!(max < 3000.0, "max latency {max:.0} ms");
    // Memory stays flat: every frame goes into a preallocated slot. Compared from a third into
    // the run (shared-memory transport segments are mapped while the first frames arrive).
    let (rss_mid, rss_end) = (rss[rss.len() / 3], *rss.iter().max().unwrap());
    let growth_mb = (rss_end as f64 - rss_mid as f64) / 1024.0;
    assert!(
        growth_mb < 32.0,
        "resident memory grew by {growth_mb:.1} MB ({rss_mid} kB -> {rss_end} kB): {rss:?}"
    );
    eprintln!(
        "overload: published {published}, {s:?}, latency first/last third {first:.0}/{last:.0} ms, max {max:.0} ms, rss {rss_mid} -> {rss_end} kB"
    );
}

#[test]
fn a_bad_parameter_stops_start_up_and_names_the_key() {
    let dir = tmp_dir("badparam");
    let params = params_file(
        &dir,
        "    cameras: [front]\n    camera:\n      front: {topic: /cam, ring_capcity: 3}\n",
    );
    let o = Command::new(env!("CARGO_BIN_EXE_lookout"))
        .args(["run", "--params-file", params.to_str().unwrap()])
        .env("ROS_DOMAIN_ID", "45")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("lookout: error: parameter `camera.front.ring_capcity`"),
        "{err}"
    );

    // The same through a ROS override of a valid file.
    let params = params_file(
        &dir,
        "    cameras: [front]\n    camera:\n      front: {topic: /cam}\n",
    );
    let o = Command::new(env!("CARGO_BIN_EXE_lookout"))
        .args([
            "run",
            "--params-file",
            params.to_str().unwrap(),
            "--ros-args",
            "-p",
            "camera.front.queue_policy:=lifo",
        ])
        .env("ROS_DOMAIN_ID", "45")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("parameter `camera.front.queue_policy`"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn sigint_and_sigterm_stop_cleanly_within_a_second() {
    let dir = tmp_dir("signal");
    let params = params_file(
        &dir,
        "    cameras: [front]\n    camera:\n      front: {topic: /cam}\n",
    );
    for (domain, signal) in [(46, "INT"), (47, "TERM")] {
        let mut node = Lookout::start(domain, &params, &[]);
        node.wait_running();
        let (code, took, lines) = node.stop(signal);
        assert_eq!(code, Some(0), "SIG{signal}: {}", lines.join("\n"));
        assert!(took < 1.0, "SIG{signal}: took {took:.2} s to stop");
        summary(&lines, "front");
    }
}

#[test]
fn an_incompatible_publisher_is_logged_once_and_counted() {
    let domain = 48;
    let dir = tmp_dir("qos");
    let params = params_file(
        &dir,
        "    cameras: [front]\n    camera:\n      front: {topic: /cam/compressed, type: compressed, qos: {reliability: reliable}}\n",
    );
    let mut node = Lookout::start(domain, &params, &[]);
    node.wait_running();
    let jpeg = common::image("bus.jpg");
    // A best-effort publisher cannot feed a reliable subscription: nothing arrives.
    let report = peer(
        domain,
        &dir,
        &[
            "--pub".into(),
            format!("/cam/compressed,compressed,{}", jpeg.display()),
            "--best-effort".into(),
            "--rosout".into(),
            "--rate".into(),
            "2".into(),
            "--count".into(),
            "6".into(),
            "--match-timeout".into(),
            "3".into(),
        ],
    );
    assert_eq!(
        report["published"]["/cam/compressed"]
            .as_array()
            .unwrap()
            .len(),
        6
    );
    let (code, _, lines) = node.stop("INT");
    assert_eq!(code, Some(0));
    let warnings: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("incompatible publisher"))
        .collect();
    // Once on stderr through tracing, once more as the ROS log line of the same event.
    assert!(!warnings.is_empty(), "not logged:\n{}", lines.join("\n"));
    assert!(
        warnings.iter().any(|l| l.contains("best_effort")),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .filter(|l| l.contains("WARN") && l.contains("lookout::ros"))
            .count()
            == 1,
        "{warnings:?}"
    );
    let s = summary(&lines, "front");
    assert_eq!((s["qos_incompatible"], s["received"]), (1, 0));
}
