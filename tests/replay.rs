//! `lookout replay` and `lookout diff` on real bags: a 10-frame clip of the vtest video
//! (scripts/make_vtest_bag.py, written by `rosbags`, MCAP and sqlite3, raw and JPEG topics),
//! and a bag of broken messages (tests/bags/write_bad_bag.py). The output bags are read back
//! with `rosbags` (tests/bags/read_detections.py) as well as with lookout's own reader.

mod common;

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use lookout::bag::Bag;

const CLIP_FRAMES: usize = 10;

fn tmp(name: &str) -> PathBuf {
    let d = common::scratch(&format!("replay-{name}"));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// The clip bags (`vtest` MCAP, `vtest_sqlite3`), written once per test process.
fn clip() -> &'static PathBuf {
    static CLIP: OnceLock<PathBuf> = OnceLock::new();
    CLIP.get_or_init(|| {
        let dir = tmp("clip");
        common::vtest_clip(&dir, CLIP_FRAMES, &[]);
        dir
    })
}

/// A parameters file with both vtest topics as cameras (`raw`, `jpeg`), CPU, one thread.
fn params(extra_camera_yaml: &str, thresholds_yaml: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = common::scratch(&format!("replay-params-{n}.yaml"));
    let cam = |name: &str, topic: &str, kind: &str| {
        format!("      {name}:\n        topic: {topic}\n        type: {kind}\n{extra_camera_yaml}")
    };
    let yaml = format!(
        "lookout:\n  ros__parameters:\n    model: {}\n    engine:\n      execution_providers: [cpu]\n      intra_op_threads: 1\n{thresholds_yaml}    cameras: [raw, jpeg]\n    camera:\n{}{}",
        common::default_manifest().display(),
        cam("raw", "/camera/image_raw", "image"),
        cam("jpeg", "/camera/image_raw/compressed", "compressed"),
    );
    std::fs::write(&path, yaml).unwrap();
    path
}

fn lookout(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    common::output(
        Command::new(env!("CARGO_BIN_EXE_lookout"))
            .args(args)
            .env("RUST_LOG", "warn"),
    )
}

/// `lookout replay`, whatever its exit status.
fn try_replay(bag: &Path, params: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> =
        vec![&"replay", &bag, &"--params-file", &params, &"--out", &out];
    for e in extra {
        args.push(e);
    }
    lookout(&args)
}

/// `lookout replay`, which must succeed.
fn replay(bag: &Path, params: &Path, out: &Path, extra: &[&str]) -> Output {
    let o = try_replay(bag, params, out, extra);
    assert!(
        o.status.success(),
        "replay failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn report(out: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap()
}

/// (topic, log time, CDR bytes) of every message on `type_name`, in storage order.
fn messages(bag: &Path, type_name: &str) -> Vec<(String, u64, Vec<u8>)> {
    let mut v = Vec::new();
    Bag::open(bag)
        .unwrap()
        .for_each(|m| {
            if m.type_name == type_name {
                v.push((m.topic.to_string(), m.log_time_ns, m.data.to_vec()));
            }
            ControlFlow::Continue(())
        })
        .unwrap();
    v
}

fn rosbags_read(bag: &Path) -> serde_json::Value {
    let o = common::output(
        Command::new(common::python())
            .arg(common::repo().join("tests/bags/read_detections.py"))
            .arg(bag),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

const DETECTIONS: &str = "vision_msgs/msg/Detection2DArray";

#[test]
fn replay_writes_a_bag_that_rosbags_reads_with_provenance_and_every_frame() {
    let p = params("", "");
    let out = tmp("basic");
    let o = replay(&clip().join("vtest"), &p, &out, &[]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("20 frames in, 20 processed, 0 dropped"),
        "{stdout}"
    );

    let r = report(&out);
    for key in [
        "frames_in",
        "frames_processed",
        "dropped",
        "deadline_misses",
        "bad_inputs",
        "execution_provider",
        "model_sha256",
        "per_camera",
        "latency_ms",
    ] {
        assert!(r.get(key).is_some(), "report lacks {key}: {r}");
    }
    assert_eq!(r["frames_in"], 20);
    assert_eq!(r["frames_processed"], 20);
    assert_eq!(r["dropped"], 0);
    assert_eq!(r["bad_inputs"], 0);
    assert_eq!(r["execution_provider"], "cpu");
    let sha = lookout::core::model::Model::load(&common::default_manifest())
        .unwrap()
        .sha256()
        .to_string();
    assert_eq!(r["model_sha256"], sha.as_str());
    // Percentiles in order, each stage taking time, and the end to end covering the stages.
    for stage in ["e2e", "preprocess", "inference", "postprocess"] {
        let v: Vec<f64> = ["p50", "p90", "p99", "p999", "max"]
            .iter()
            .map(|p| r["latency_ms"][stage][p].as_f64().unwrap())
            .collect();
        assert!(v[0] > 0.0, "{stage}: {v:?}");
        assert!(v.windows(2).all(|w| w[0] <= w[1]), "{stage}: {v:?}");
    }
    let p50 = |stage: &str| r["latency_ms"][stage]["p50"].as_f64().unwrap();
    assert!(
        p50("e2e") >= p50("inference"),
        "e2e {} < inference {}",
        p50("e2e"),
        p50("inference")
    );
    assert!(r["latency_ms"]["inference"]["p50"].as_f64().unwrap() > 0.0);
    for cam in ["raw", "jpeg"] {
        let c = &r["per_camera"][cam];
        assert_eq!(c["frames_in"], 10, "{cam}");
        assert_eq!(c["frames_processed"], 10, "{cam}");
        assert_eq!(c["model_sha256"], sha.as_str());
        assert!(c["latency_ms"]["e2e"]["max"].as_f64().unwrap() > 0.0);
    }

    // Read back by rosbags, from the embedded definitions only.
    let back = rosbags_read(&out);
    assert_eq!(
        back["reserialized_identical"], true,
        "CDR differs from rosbags'"
    );
    assert_eq!(back["topics"]["/raw/detections"][0], DETECTIONS);
    assert_eq!(back["topics"]["/raw/detections"][1], 10);
    assert_eq!(back["topics"]["/jpeg/detections"][1], 10);
    let custom = &back["custom_data"];
    assert_eq!(custom["lookout.model_sha256"], sha.as_str());
    assert_eq!(custom["lookout.execution_provider"], "cpu");
    assert!(
        custom["lookout.config"]
            .as_str()
            .unwrap()
            .contains("intra_op_threads: 1")
    );
    let msgs = back["messages"].as_array().unwrap();
    // Every frame's stamp and frame_id carried over; pedestrians found in every raw frame.
    let raw: Vec<_> = msgs
        .iter()
        .filter(|m| m["topic"] == "/raw/detections")
        .collect();
    for (k, m) in raw.iter().enumerate() {
        assert_eq!(m["stamp"][0], 1_700_000_000);
        assert_eq!(m["stamp"][1], k as u64 * 100_000_000);
        assert_eq!(m["frame_id"], "camera_optical_frame");
        let persons = m["detections"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d[0] == "person")
            .count();
        assert!(persons >= 2, "frame {k}: {m}");
    }
    // The same values as lookout's own decoder gives.
    let ours = messages(&out, DETECTIONS);
    assert_eq!(ours.len(), msgs.len());
    for ((topic, t, bytes), theirs) in ours.iter().zip(msgs) {
        assert_eq!(theirs["topic"], topic.as_str());
        assert_eq!(theirs["log_time"], *t);
        let m = lookout::bag::cdr::detection_array(bytes).unwrap();
        let theirs_detections = theirs["detections"].as_array().unwrap();
        assert_eq!(
            m.detections.len(),
            theirs_detections.len(),
            "{topic} at {t}"
        );
        for (d, e) in m
            .detections
            .iter()
            .zip(theirs["detections"].as_array().unwrap())
        {
            assert_eq!(e[1].as_f64().unwrap(), d.results[0].1);
            assert_eq!(e[2].as_f64().unwrap(), d.center.0);
            assert_eq!(e[6].as_f64().unwrap(), d.size.1);
        }
    }
    // /diagnostics: per camera and engine, readable.
    let diags = back["diagnostics"].as_array().unwrap();
    assert!(!diags.is_empty());
    let names: Vec<&str> = diags[0]["status"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s[0].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "lookout: camera raw",
            "lookout: camera jpeg",
            "lookout: inference engine"
        ]
    );
}

#[test]
fn two_replays_write_byte_identical_detections_and_without_diagnostics_identical_bags() {
    let p = params("", "");
    let bag = clip().join("vtest");
    let (a, b) = (tmp("ident-a"), tmp("ident-b"));
    replay(&bag, &p, &a, &[]);
    replay(&bag, &p, &b, &[]);
    let (ma, mb) = (messages(&a, DETECTIONS), messages(&b, DETECTIONS));
    assert_eq!(ma.len(), 2 * CLIP_FRAMES);
    assert!(ma == mb, "detections differ between two replays");

    let (c, d) = (tmp("ident-c"), tmp("ident-d"));
    replay(&bag, &p, &c, &["--no-diagnostics"]);
    replay(&bag, &p, &d, &["--no-diagnostics"]);
    let file = |dir: &Path| {
        std::fs::read(dir.join(format!(
            "{}_0.mcap",
            dir.file_name().unwrap().to_str().unwrap()
        )))
        .unwrap()
    };
    assert!(file(&c) == file(&d), "output bags differ");
    assert!(
        messages(&c, DETECTIONS) == ma,
        "diagnostics changed the detections"
    );
}

#[test]
fn sqlite3_and_mcap_bags_give_the_same_detections_and_diff_agrees() {
    let p = params("", "");
    let (m, s) = (tmp("mcap"), tmp("sqlite"));
    replay(&clip().join("vtest"), &p, &m, &[]);
    replay(&clip().join("vtest_sqlite3"), &p, &s, &[]);
    assert!(messages(&m, DETECTIONS) == messages(&s, DETECTIONS));
    let o = lookout(&[&"diff", &m, &s]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{text}");
    assert!(text.contains("within tolerance"), "{text}");
    assert!(
        text.contains("/raw/detections: frames A 10 B 10 matched 10"),
        "{text}"
    );
}

#[test]
fn diff_fails_on_a_model_change_and_passes_with_looser_tolerances() {
    let base = tmp("diff-base");
    let strict = tmp("diff-strict");
    replay(&clip().join("vtest"), &params("", ""), &base, &[]);
    replay(
        &clip().join("vtest"),
        &params("", "    thresholds:\n      confidence: 0.5\n"),
        &strict,
        &[],
    );
    let o = lookout(&[&"diff", &base, &strict, &"--json"]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let d: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(d["within_tolerance"], false);
    let t = &d["topics"]["/raw/detections"];
    assert!(t["unmatched_a"].as_u64().unwrap() > 0, "{t}");
    assert_eq!(t["unmatched_b"], 0);
    let person = &t["classes"]["person"];
    assert!(person["count_a"].as_u64() > person["count_b"].as_u64());
    // The detections kept by the higher threshold are the same ones.
    assert_eq!(person["max_score_diff"], 0.0);
    let o = lookout(&[&"diff", &base, &strict, &"--max-unmatched", &"100000"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    // A bag that cannot be read: exit 2.
    let o = lookout(&[&"diff", &base, &"/nonexistent/bag"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn a_topic_missing_from_the_bag_is_an_error_listing_its_image_topics() {
    let p = params("", "");
    let text = std::fs::read_to_string(&p).unwrap().replace(
        "topic: /camera/image_raw/compressed",
        "topic: /front/compressed",
    );
    std::fs::write(&p, text).unwrap();
    let out = tmp("missing");
    let o = try_replay(&clip().join("vtest"), &p, &out, &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("camera `jpeg`: topic /front/compressed is not in the bag"),
        "{err}"
    );
    assert!(
        err.contains("/camera/image_raw (sensor_msgs/msg/Image), /camera/image_raw/compressed (sensor_msgs/msg/CompressedImage)"),
        "{err}"
    );
    assert!(
        !out.exists(),
        "no output bag is created on a configuration error"
    );

    // A topic of the wrong type names the key to fix.
    let p = params("", "");
    let text = std::fs::read_to_string(&p).unwrap().replacen(
        "topic: /camera/image_raw\n        type: image",
        "topic: /camera/image_raw/compressed\n        type: image",
        1,
    );
    std::fs::write(&p, text).unwrap();
    let o = try_replay(&clip().join("vtest"), &p, &out, &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("(camera.raw.type)"), "{err}");
}

#[test]
fn bad_messages_are_counted_and_the_replay_goes_on() {
    let dir = tmp("bad-src");
    let status = common::output(
        Command::new(common::python())
            .arg(common::repo().join("tests/bags/write_bad_bag.py"))
            .arg(&dir),
    )
    .status;
    assert!(status.success());
    let p = common::scratch("replay-bad.yaml");
    std::fs::write(
        &p,
        format!(
            "lookout:\n  ros__parameters:\n    model: {}\n    engine: {{execution_providers: [cpu], intra_op_threads: 1}}\n    cameras: [cam]\n    camera:\n      cam: {{topic: /camera/image_raw}}\n",
            common::default_manifest().display()
        ),
    )
    .unwrap();
    let out = tmp("bad");
    let o = replay(&dir.join("bad"), &p, &out, &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    let r = report(&out);
    assert_eq!(r["frames_in"], 4, "{r}");
    assert_eq!(r["frames_processed"], 2);
    assert_eq!(r["bad_inputs"], 2);
    assert_eq!(r["per_camera"]["cam"]["messages_written"], 2);
    // Logged once each, as warnings.
    assert_eq!(err.matches("does not deserialize").count(), 1, "{err}");
    assert_eq!(err.matches("bad input frame dropped").count(), 1, "{err}");
    let stamps: Vec<i32> = messages(&out, DETECTIONS)
        .iter()
        .map(|(_, _, b)| lookout::bag::cdr::detection_array(b).unwrap().stamp.sec)
        .collect();
    assert_eq!(stamps, [10, 13]);
}

#[test]
fn copy_all_copies_the_input_messages_unchanged() {
    let p = params("", "");
    let out = tmp("copy");
    replay(
        &clip().join("vtest_sqlite3"),
        &p,
        &out,
        &["--copy-all", "--no-diagnostics"],
    );
    let input = messages(&clip().join("vtest"), "sensor_msgs/msg/Image");
    let copied = messages(&out, "sensor_msgs/msg/Image");
    assert_eq!(copied.len(), CLIP_FRAMES);
    assert!(input == copied, "copied images differ");
    let back = rosbags_read(&out);
    assert_eq!(back["topics"]["/camera/image_raw/compressed"][1], 10);
    assert_eq!(back["reserialized_identical"], true);
}

#[test]
fn rate_mode_applies_the_live_deadline_policy() {
    // A 1 ms budget with late results dropped: every result is late, none is written.
    let p = params("        budget_ms: 1.0\n        late_results: drop\n", "");
    let out = tmp("rate");
    let o = replay(&clip().join("vtest"), &p, &out, &["--rate", "2"]);
    let r = report(&out);
    assert_eq!(r["mode"], "rate", "{}", String::from_utf8_lossy(&o.stdout));
    assert_eq!(r["frames_in"], 20);
    assert_eq!(r["deadline_misses"], r["frames_processed"]);
    assert_eq!(
        r["dropped"].as_u64().unwrap(),
        20 - r["bad_inputs"].as_u64().unwrap(),
        "{r}"
    );
    assert_eq!(messages(&out, DETECTIONS).len(), 0);
    // The clip lasts 0.9 s of bag time: at rate 2 the replay cannot be much faster than 0.45 s.
    assert!(r["wall_s"].as_f64().unwrap() >= 0.4, "{r}");
}

#[test]
fn ctrl_c_finishes_a_readable_bag() {
    let p = params("", "");
    let out = tmp("sigint");
    let child = Command::new(env!("CARGO_BIN_EXE_lookout"))
        .args(["replay", "--rate", "0.5", "--params-file"])
        .arg(&p)
        .arg("--out")
        .arg(&out)
        .arg(clip().join("vtest"))
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The clip plays for 1.8 s at rate 0.5; interrupt it once the output bag is being written
    // (in its staging folder beside `out`, renamed into place when the replay ends).
    let staging = format!(
        ".{}.lookout-staging-{}",
        out.file_name().unwrap().to_string_lossy(),
        child.id()
    );
    let parent = out.parent().unwrap().to_path_buf();
    let started = std::time::Instant::now();
    while !parent.join(&staging).exists() && started.elapsed() < std::time::Duration::from_secs(60)
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(800));
    // SAFETY: plain kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let o =
        common::wait_output_within(child, "lookout replay", std::time::Duration::from_secs(120));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r = report(&out);
    assert_eq!(r["interrupted"], true, "{r}");
    let n = r["frames_in"].as_u64().unwrap();
    assert!(n > 0 && n < 20, "{r}");
    // Readable by rosbags, with every message the report counts.
    let back = rosbags_read(&out);
    let written = back["messages"].as_array().unwrap().len() as u64;
    assert!(written > 0, "the interrupted replay wrote nothing: {r}");
    assert_eq!(
        written,
        r["per_camera"]["raw"]["messages_written"].as_u64().unwrap()
            + r["per_camera"]["jpeg"]["messages_written"]
                .as_u64()
                .unwrap()
    );
}

#[test]
fn a_second_ctrl_c_exits_at_once_and_leaves_the_previous_output_untouched() {
    let p = params("", "");
    let out = tmp("sigint-twice");
    replay(&clip().join("vtest"), &p, &out, &[]);
    let before = folder_bytes(&out);
    let child = Command::new(env!("CARGO_BIN_EXE_lookout"))
        .args(["replay", "--rate", "0.2", "--force", "--params-file"])
        .arg(&p)
        .arg("--out")
        .arg(&out)
        .arg(clip().join("vtest"))
        .env("RUST_LOG", "warn")
        // The finish of an interrupted replay takes from a few to a few hundred milliseconds
        // (whether a frame is in flight): held for 20 s so that the second Ctrl-C lands in it.
        .env("LOOKOUT_FAULT_FINISH_DELAY_MS", "20000")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let staging = out.parent().unwrap().join(format!(
        ".{}.lookout-staging-{}",
        out.file_name().unwrap().to_string_lossy(),
        child.id()
    ));
    let started = std::time::Instant::now();
    while !staging.exists() && started.elapsed() < std::time::Duration::from_secs(60) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    // Two Ctrl-C in a row: the user does not want to wait for the bag to be finished. The second
    // comes a second after the first (two signals close together may arrive as one on a loaded
    // machine), while the first one's finish is held open by the hook above.
    // SAFETY (both calls): plain kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    std::thread::sleep(std::time::Duration::from_millis(1000));
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let sent = std::time::Instant::now();
    let o =
        common::wait_output_within(child, "lookout replay", std::time::Duration::from_secs(120));
    assert!(
        sent.elapsed() < std::time::Duration::from_secs(5),
        "a second Ctrl-C did not exit at once"
    );
    assert!(
        !o.status.success(),
        "an abandoned replay reported success: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    // The previous output is byte for byte what it was; the abandoned staging folder is all
    // that is left, and the next replay to the same place removes it.
    assert!(
        folder_bytes(&out) == before,
        "the previous output changed; the replay said: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(staging.exists());
    replay(&clip().join("vtest"), &p, &out, &["--force"]);
    assert!(
        !staging.exists(),
        "the killed replay's staging folder was left"
    );
    let _ = std::fs::remove_dir_all(&out);
}

/// Every file under `dir` with its bytes.
fn folder_bytes(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

#[test]
fn copy_all_writes_foxglove_annotations_that_decode_with_their_own_schema_and_match_the_boxes() {
    let p = params("", "");
    let out = tmp("annotations");
    replay(&clip().join("vtest"), &p, &out, &["--copy-all"]);
    let back = rosbags_read(&out);
    assert_eq!(back["reserialized_identical"], true);
    for cam in ["raw", "jpeg"] {
        let topic = format!("/{cam}/annotations");
        assert_eq!(
            back["topics"][&topic][0], "foxglove_msgs/msg/ImageAnnotations",
            "{}",
            back["topics"]
        );
        let dets: Vec<&serde_json::Value> = back["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["topic"] == format!("/{cam}/detections"))
            .collect();
        let anns: Vec<&serde_json::Value> = back["annotations"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["topic"] == topic)
            .collect();
        assert_eq!(anns.len(), dets.len());
        assert_eq!(anns.len(), CLIP_FRAMES);
        for (a, d) in anns.iter().zip(&dets) {
            assert_eq!(a["log_time"], d["log_time"]);
            let boxes = d["detections"].as_array().unwrap();
            let loops = a["points"].as_array().unwrap();
            assert_eq!(loops.len(), boxes.len(), "{a}");
            assert_eq!(a["texts"].as_array().unwrap().len(), boxes.len());
            for (l, b) in loops.iter().zip(boxes) {
                // The image's stamp, so Foxglove pairs the shapes with their frame.
                assert_eq!(a["stamps"][0], d["stamp"]);
                assert_eq!(l[0], 2, "LINE_LOOP");
                let f = |v: &serde_json::Value| v.as_f64().unwrap();
                let (cx, cy, w, h) = (f(&b[2]), f(&b[3]), f(&b[5]), f(&b[6]));
                let want = [
                    [cx - w / 2.0, cy - h / 2.0],
                    [cx + w / 2.0, cy - h / 2.0],
                    [cx + w / 2.0, cy + h / 2.0],
                    [cx - w / 2.0, cy + h / 2.0],
                ];
                for (q, w) in l[1].as_array().unwrap().iter().zip(want) {
                    assert!(
                        (f(&q[0]) - w[0]).abs() < 1e-3 && (f(&q[1]) - w[1]).abs() < 1e-3,
                        "{l} {b}"
                    );
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn embedded_type_hashes_match_the_message_packages() {
    // The set-up's prefix (or a sourced ROS 2) carries each type's JSON description.
    let prefixes = std::env::var("AMENT_PREFIX_PATH").unwrap_or_default();
    for t in lookout::bag::schema::KNOWN {
        let rel = format!("share/{}.json", t.name);
        let file = prefixes
            .split(':')
            .map(|p| Path::new(p).join(&rel))
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("{rel} not found in AMENT_PREFIX_PATH={prefixes}"));
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let hash = json["type_hashes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["type_name"] == t.name)
            .unwrap()["hash_string"]
            .clone();
        assert_eq!(hash, t.type_hash, "{}", t.name);
    }
}

#[test]
fn a_single_mcap_file_without_metadata_replays_the_same() {
    let p = params("", "");
    let (folder, file) = (tmp("folder"), tmp("file"));
    replay(&clip().join("vtest"), &p, &folder, &["--no-diagnostics"]);
    replay(
        &clip().join("vtest/vtest.mcap"),
        &p,
        &file,
        &["--no-diagnostics"],
    );
    assert!(messages(&folder, DETECTIONS) == messages(&file, DETECTIONS));
}

#[test]
fn step_mode_processes_one_frame_per_enter_and_prints_it() {
    use std::io::Write;
    let p = params("", "");
    let out = tmp("step");
    let mut child = Command::new(env!("CARGO_BIN_EXE_lookout"))
        .args(["replay", "--step", "--params-file"])
        .arg(&p)
        .arg("--out")
        .arg(&out)
        .arg(clip().join("vtest"))
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Three frames, then stop.
    child.stdin.take().unwrap().write_all(b"\n\n\nq\n").unwrap();
    let o =
        common::wait_output_within(child, "lookout replay", std::time::Duration::from_secs(120));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r = report(&out);
    assert_eq!(r["mode"], "step");
    assert_eq!(r["frames_processed"], 3, "{r}");
    assert_eq!(r["interrupted"], true);
    assert!(
        stdout.contains("frame 1 camera raw stamp 1700000000.000000000"),
        "{stdout}"
    );
    assert!(
        stdout.contains("frame 2 camera jpeg stamp 1700000000.000000000"),
        "{stdout}"
    );
    assert!(stdout.contains("person"), "{stdout}");
    assert_eq!(messages(&out, DETECTIONS).len(), 3);
}

#[test]
fn ctrl_c_at_the_step_prompt_stops_at_once_and_finishes_the_bag() {
    use std::io::Read;
    let p = params("", "");
    let out = tmp("step-sigint");
    let mut child = Command::new(env!("CARGO_BIN_EXE_lookout"))
        .args(["replay", "--step", "--params-file"])
        .arg(&p)
        .arg("--out")
        .arg(&out)
        .arg(clip().join("vtest"))
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the first prompt (stdin stays open: nobody presses Enter).
    let mut stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::sync_channel::<String>(1);
    let reader = std::thread::Builder::new()
        .name("step-stderr".into())
        .spawn(move || {
            let mut seen = Vec::new();
            let mut buf = [0u8; 256];
            let mut told = false;
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.extend_from_slice(&buf[..n]);
                if !told && String::from_utf8_lossy(&seen).contains("next:") {
                    told = true;
                    let _ = tx.send(String::new());
                }
            }
            String::from_utf8_lossy(&seen).into_owned()
        })
        .unwrap();
    rx.recv_timeout(std::time::Duration::from_secs(120))
        .expect("no step prompt");
    let sent = std::time::Instant::now();
    // SAFETY: plain kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            sent.elapsed() < std::time::Duration::from_secs(10),
            "one Ctrl-C at the prompt did not stop the replay"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let stderr = reader.join().unwrap();
    assert!(status.success(), "{stderr}");
    let r = report(&out);
    assert_eq!(r["interrupted"], true, "{r}");
    assert_eq!(r["frames_processed"], 0, "{r}");
}

#[test]
fn a_dead_inference_thread_fails_the_replay_and_leaves_no_partial_bag() {
    let bag = clip().join("vtest");
    let p = params("", "");
    for pace in [&["--rate", "1"][..], &[][..]] {
        let out = tmp(&format!("dead-worker{}", pace.len()));
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> =
            vec![&"replay", &bag, &"--params-file", &p, &"--out", &out];
        for a in pace {
            args.push(a);
        }
        // The inference thread panics on its fourth frame (test hook, src/runtime/supervise.rs).
        let o = common::output(
            Command::new(env!("CARGO_BIN_EXE_lookout"))
                .args(&args)
                .env("RUST_LOG", "warn")
                .env("LOOKOUT_FAULT_INFER_PANIC_AFTER", "4"),
        );
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success(),
            "{pace:?}: a replay that lost frames succeeded"
        );
        assert!(stderr.contains("injected fault"), "{pace:?}: {stderr}");
        assert!(
            !out.exists(),
            "{pace:?}: a partial output bag was left behind"
        );
    }
}

#[test]
fn runs_failing_in_a_row_rebuild_the_session_and_the_replay_goes_on() {
    // The first 3 runs fail (test hook, src/runtime/supervise.rs); after 2 in a row the session
    // is rebuilt, the third fails on the new session, and every later frame is processed.
    let p = params("", "      rebuild_after_failures: 2\n");
    let out = tmp("rebuild");
    let o = common::output(
        Command::new(env!("CARGO_BIN_EXE_lookout"))
            .arg("replay")
            .arg(clip().join("vtest"))
            .arg("--params-file")
            .arg(&p)
            .arg("--out")
            .arg(&out)
            .env("RUST_LOG", "warn")
            .env("LOOKOUT_FAULT_RUN_FAILURES", "3"),
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("ONNX Runtime session rebuilt"), "{stderr}");
    let r = report(&out);
    assert_eq!(r["session_rebuilds"], 1, "{r}");
    let errors: u64 = ["raw", "jpeg"]
        .iter()
        .map(|c| r["per_camera"][c]["inference_errors"].as_u64().unwrap())
        .sum();
    assert_eq!(errors, 3, "{r}");
    assert_eq!(r["frames_processed"], 2 * CLIP_FRAMES as u64 - 3, "{r}");
    // The rebuilt session gives the detections the first one gave: the last frame's result
    // equals a clean replay's.
    let clean = tmp("rebuild-clean");
    replay(&clip().join("vtest"), &params("", ""), &clean, &[]);
    let last = |bag: &Path| {
        messages(bag, "vision_msgs/msg/Detection2DArray")
            .last()
            .map(|m| m.2.clone())
    };
    assert_eq!(last(&out), last(&clean));
    let _ = std::fs::remove_dir_all(&out);
    let _ = std::fs::remove_dir_all(&clean);
}

#[test]
fn the_watchdog_terminates_runs_of_a_rebuilt_session() {
    // Two failed runs rebuild the session; every later run is longer than its 2 ms hard timeout
    // and must still end as a timeout, not a result: the watchdog keeps the same run control,
    // which now carries the new session's run options.
    let p = params(
        "        hard_timeout_ms: 2\n",
        "      rebuild_after_failures: 2\n",
    );
    let out = tmp("rebuild-watchdog");
    let o = common::output(
        Command::new(env!("CARGO_BIN_EXE_lookout"))
            .arg("replay")
            .arg(clip().join("vtest"))
            .args(["--rate", "1", "--params-file"])
            .arg(&p)
            .arg("--out")
            .arg(&out)
            .env("RUST_LOG", "warn")
            .env("LOOKOUT_FAULT_RUN_FAILURES", "2"),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r = report(&out);
    assert_eq!(r["session_rebuilds"], 1, "{r}");
    assert_eq!(r["frames_processed"], 0, "{r}");
    let timeouts: u64 = ["raw", "jpeg"]
        .iter()
        .map(|c| r["per_camera"][c]["timeouts"].as_u64().unwrap())
        .sum();
    assert!(timeouts >= 5, "{r}");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn a_hard_timeout_at_rate_1_terminates_runs_on_time() {
    // Every run takes far longer than 2 ms on a CPU. The watchdog must be woken by each run
    // (registered with the engine, as in the live node): polling every 100 ms, it would find
    // each run already finished and terminate none of them.
    let out = tmp("rate-timeout");
    let p = params("        hard_timeout_ms: 2\n", "");
    replay(clip().join("vtest").as_path(), &p, &out, &["--rate", "1"]);
    let r = report(&out);
    for cam in ["raw", "jpeg"] {
        let c = &r["per_camera"][cam];
        assert_eq!(c["frames_in"], 10, "{cam}");
        assert_eq!(c["timeouts"], 10, "{cam}: {c}");
        assert_eq!(c["frames_processed"], 0, "{cam}: {c}");
    }
}
