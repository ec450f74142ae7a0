//! Fair shares between overloaded cameras, end to end: `lookout replay --rate` on two-camera bags
//! made by scripts/make_two_camera_bag.py from a 120-frame vtest bag (front 768x576 and left 640x272, 15 Hz
//! each, left stamped 20 ms later or 0), played fast enough that only part of the frames can be
//! inferred. The scheduler's own tests (src/runtime/scheduler.rs) cover the policy exactly; this checks
//! that the runtime uses it, with real frames and timing. `scripts/camera_shares.sh` gives the
//! same figures live (rclpy player) and in replay at 1x.

mod common;

use std::path::Path;
use std::process::Command;

/// Frames processed per camera (front, left) and frames in, from replay's summary lines.
fn replay(bag: &Path, params: &Path, out: &Path) -> (u32, u32, u32) {
    let o = common::output(
        Command::new(env!("CARGO_BIN_EXE_lookout"))
            .arg("replay")
            .arg(bag)
            .arg("--params-file")
            .arg(params)
            .args(["--rate", "2", "--force", "--no-diagnostics", "--out"])
            .arg(out),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    let processed = |cam: &str| -> (u32, u32) {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("camera {cam}:")))
            .unwrap_or_else(|| panic!("no summary for {cam}: {text}"));
        let n: Vec<u32> = line
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|t| t.parse().ok())
            .collect();
        (n[1], n[0])
    };
    let (front, front_in) = processed("front");
    let (left, left_in) = processed("left");
    (front, left, front_in + left_in)
}

/// The first 120 frames of the vtest video as a bag (scripts/make_vtest_bag.py), the source of
/// the two-camera bags.
fn source_bag(dir: &Path) -> std::path::PathBuf {
    common::vtest_clip(dir, 120, &["--storage", "mcap", "--name", "source"]);
    dir.join("source")
}

fn make_bag(dir: &Path, source: &Path, name: &str, extra: &[&str]) -> std::path::PathBuf {
    let out = dir.join(name);
    let status = common::output(
        Command::new(common::python())
            .arg(common::repo().join("scripts/make_two_camera_bag.py"))
            .arg(source)
            .arg(&out)
            .args(["--frames", "120"])
            .args(extra),
    )
    .status;
    assert!(status.success());
    out
}

fn params(dir: &Path, weights: (u32, u32)) -> std::path::PathBuf {
    let path = dir.join(format!("params_{}_{}.yaml", weights.0, weights.1));
    std::fs::write(
        &path,
        format!(
            "/**:\n  ros__parameters:\n    engine: {{execution_providers: [cpu], intra_op_threads: 1}}\n    cameras: [front, left]\n    camera:\n      front: {{topic: /front/image_raw, weight: {}, max_width: 768, max_height: 576}}\n      left: {{topic: /left/image_raw, weight: {}, max_width: 768, max_height: 576}}\n",
            weights.0, weights.1
        ),
    )
    .unwrap();
    path
}

/// `a / b` is within 10 % of `want`.
fn ratio_within(a: u32, b: u32, want: f64) -> bool {
    b > 0 && (f64::from(a) / f64::from(b) / want - 1.0).abs() <= 0.1
}

#[test]
fn overloaded_cameras_share_by_weight_whatever_their_stamps() {
    let dir = common::scratch("shares");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let source = source_bag(&dir);
    let offset = make_bag(&dir, &source, "offset", &[]);
    let zero = make_bag(&dir, &source, "zero", &["--left-stamp", "zero"]);
    let out = dir.join("out");
    for (bag, weights, want) in [
        (&offset, (1, 1), 1.0),
        (&zero, (1, 1), 1.0),
        (&offset, (2, 1), 2.0),
    ] {
        let (front, left, total_in) = replay(bag, &params(&dir, weights), &out);
        if front + left == total_in {
            // Not overloaded on this machine: nothing to share, every frame was inferred.
            continue;
        }
        assert!(
            ratio_within(front, left, want),
            "{bag:?} weights {weights:?}: front {front}, left {left} (want {want}:1)"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
