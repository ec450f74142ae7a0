//! Output drift: `lookout replay --profile` writes a reference profile of a bag's detections; a
//! replay that loads it (`monitor.profile`) is quiet on the same bag and WARNs on the same street
//! at dusk (every pixel times 0.2, `make_vtest_bag.py --gain 0.2`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn params(dir: &Path, name: &str, profile: Option<&Path>) -> PathBuf {
    let monitor = match profile {
        Some(p) => format!(
            "    monitor:\n      profile: {}\n      drift:\n        window_frames: 20\n        min_frames: 10\n",
            p.display()
        ),
        None => String::new(),
    };
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &path,
        format!(
            "lookout:\n  ros__parameters:\n    model: {}\n    engine:\n      execution_providers: [cpu]\n    diagnostics:\n      period_ms: 500.0\n{monitor}    cameras: [raw]\n    camera:\n      raw:\n        topic: /camera/image_raw\n",
            common::default_manifest().display()
        ),
    )
    .unwrap();
    path
}

/// Replays `bag` with `params`; returns the report and the raw camera's /diagnostics messages
/// (seconds into the bag, level, message).
fn replay(
    dir: &Path,
    name: &str,
    bag: &Path,
    params: &Path,
    extra: &[&str],
) -> (serde_json::Value, Vec<(f64, u8, String)>) {
    let out = dir.join(format!("out_{name}"));
    let report = dir.join(format!("{name}.json"));
    let o = common::output(
        Command::new(env!("CARGO_BIN_EXE_lookout"))
            .arg("replay")
            .arg(bag)
            .arg("--params-file")
            .arg(params)
            .arg("--out")
            .arg(&out)
            .arg("--report")
            .arg(&report)
            .args(extra),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let rows = common::camera_diagnostics(&out, "raw")
        .into_iter()
        .map(|d| (d.t_s, d.level, d.message))
        .collect();
    (r, rows)
}

#[test]
fn a_profile_from_a_bag_is_quiet_on_it_and_warns_at_dusk() {
    let dir = common::fresh_dir("drift");
    common::vtest_clip(&dir, 40, &["--storage", "mcap"]);
    common::vtest_clip(
        &dir,
        40,
        &["--storage", "mcap", "--name", "dusk", "--gain", "0.2"],
    );
    let profile = dir.join("profile.json");

    // The profile: every frame of the raw camera, its detections by class, score and size.
    let plain = params(&dir, "plain", None);
    let (r, _) = replay(
        &dir,
        "profile",
        &dir.join("vtest"),
        &plain,
        &["--profile", profile.to_str().unwrap()],
    );
    let p: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&profile).unwrap()).unwrap();
    assert_eq!(p["frames"], 40);
    assert_eq!(p["model_sha256"], r["model_sha256"]);
    let persons = p["classes"]["person"].as_u64().unwrap();
    assert!(persons >= 80, "{p}");
    let bins = |k: &str| {
        p[k].as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .sum::<u64>()
    };
    assert_eq!(bins("score_bins"), p["detections"].as_u64().unwrap());
    assert_eq!(bins("size_bins"), p["detections"].as_u64().unwrap());

    // The same bag against its profile: no drift.
    let watched = params(&dir, "watched", Some(&profile));
    let (r, rows) = replay(&dir, "same", &dir.join("vtest"), &watched, &[]);
    assert!(rows.len() >= 6, "{rows:?}");
    assert!(
        rows.iter()
            .all(|(_, _, m)| !m.contains("drift") && !m.contains("collapsed")),
        "{rows:?}"
    );
    let d = &r["per_camera"]["raw"]["drift"];
    assert!(d["class_psi"].as_f64().unwrap() < 0.05, "{d}");

    // Dusk: fewer, weaker detections. Once the window holds 10 frames, WARN with the reason.
    let (r, rows) = replay(&dir, "dusk", &dir.join("dusk"), &watched, &[]);
    let warned: Vec<_> = rows
        .iter()
        .filter(|(_, level, m)| *level >= 1 && (m.contains("collapsed") || m.contains("drifted")))
        .collect();
    let last = rows.last().unwrap();
    assert!(
        !warned.is_empty() && (last.2.contains("collapsed") || last.2.contains("drifted")),
        "{rows:?}"
    );
    // Not before the window held min_frames frames (10 frames: 1 s of the 10 frames/s clip).
    assert!(warned.iter().all(|(t, _, _)| *t >= 0.9), "{rows:?}");
    let d = &r["per_camera"]["raw"]["drift"];
    assert!(!d["reasons"].as_array().unwrap().is_empty(), "{d}");

    // A profile of another model is refused at start, naming the key.
    let other = dir.join("other.json");
    std::fs::write(
        &other,
        std::fs::read_to_string(&profile)
            .unwrap()
            .replace(r["model_sha256"].as_str().unwrap(), &"0".repeat(64)),
    )
    .unwrap();
    let bad = params(&dir, "bad", Some(&other));
    let o = common::output(
        Command::new(env!("CARGO_BIN_EXE_lookout"))
            .arg("replay")
            .arg(dir.join("vtest"))
            .arg("--params-file")
            .arg(&bad)
            .arg("--out")
            .arg(dir.join("out_bad")),
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("monitor.profile"),
        "{err}"
    );
}
