//! Replay arithmetic on flags and bag times that used to panic, overflow or stall: a `--rate`
//! far from real time is a one-line error, and a receive time that jumps to u64::MAX does not
//! stall `--rate` for ever (the gap is played as at most 60 s of bag time, counted and logged).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn rates_far_from_real_time_are_one_line_errors() {
    let dir = common::fresh_dir("replay-rates");
    let p = common::raw_camera_params(&dir);
    for rate in ["1e-300", "1e-20", "0", "-1", "1e9", "nan", "inf"] {
        let o = common::output(
            Command::new(env!("CARGO_BIN_EXE_lookout"))
                .args([
                    "replay",
                    "no-such-bag",
                    &format!("--rate={rate}"),
                    "--params-file",
                ])
                .arg(&p),
        );
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "--rate {rate} accepted");
        assert!(
            stderr.contains("expected a number within"),
            "{rate}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{rate}: {stderr}");
    }
}

#[test]
fn a_receive_time_jumping_to_the_end_of_time_does_not_stall_rate_mode() {
    let dir = common::fresh_dir("replay-jump");
    common::vtest_clip(&dir, 3, &[]);
    // The clip's raw frames rewritten with receive times 0.1 s apart, then u64::MAX - 1.
    let src = lookout::bag::Bag::open(&dir.join("vtest")).unwrap();
    let bag = dir.join("jump");
    let mut w = lookout::bag::BagWriter::create(&bag, Default::default()).unwrap();
    let image = lookout::bag::schema::known("sensor_msgs/msg/Image").unwrap();
    let def = image.definition();
    let t = w
        .add_topic(
            "/camera/image_raw",
            image.name,
            Some(("ros2msg", def.as_bytes())),
            image.type_hash,
            &lookout::bag::offered_qos_yaml(true, 10),
        )
        .unwrap();
    let mut n = 0u64;
    src.for_each(|m| {
        if m.topic == "/camera/image_raw" {
            let at = if n < 2 {
                1_000_000_000 + n * 100_000_000
            } else {
                u64::MAX - 1
            };
            w.write(t, at, m.data).unwrap();
            n += 1;
        }
        std::ops::ControlFlow::Continue(())
    })
    .unwrap();
    w.finish().unwrap();
    assert_eq!(n, 3);

    let p = common::raw_camera_params(&dir);
    let out = dir.join("out");
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_lookout"))
        .args(["replay", "--rate", "1000", "--params-file"])
        .arg(&p)
        .arg("--out")
        .arg(&out)
        .arg(&bag)
        .env("RUST_LOG", "warn")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // 60 s of bag time at rate 1000 is 60 ms; allow model loading and slow machines.
    let limit = Duration::from_secs(90);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("the replay stalled on the jump in receive times");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("jump forward"),
        "the gap was not logged: {stderr}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["frames_in"], 3, "{report}");
    let _ = std::fs::remove_dir_all(&dir);
}
