//! `lookout-fleet` (fleet/, fleet replay on Ray) against the real lookout binary, on a Ray
//! started in the test's process with 2 CPUs (2 workers, one bag each at a time).
//!
//! The bags are cut from the vtest video by scripts/make_vtest_bag.py (rosbags): MCAP and
//! sqlite3 storage, and one MCAP file truncated to 60 % (a recorder killed mid-write).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn fleet() -> PathBuf {
    let p = common::lookout_home().join("fleet-venv/bin/lookout-fleet");
    assert!(
        p.exists(),
        "{} is missing: run scripts/setup.sh (it installs Ray and fleet/)",
        p.display()
    );
    p
}

/// `lookout-fleet ARGS` on a local Ray of 2 CPUs, with this build's lookout.
fn fleet_cmd(args: &[&str]) -> Command {
    let mut cmd = Command::new(fleet());
    cmd.args(args).args([
        "--num-cpus",
        "2",
        "--lookout",
        env!("CARGO_BIN_EXE_lookout"),
    ]);
    cmd
}

fn run_fleet(args: &[&str]) -> Output {
    common::output(&mut fleet_cmd(args))
}

fn json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn copy_dir(src: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
    }
}

/// Every file of a bag folder, by name.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect()
}

/// `[value µs, count]` buckets expanded into one sample per count, sorted.
fn samples(reports: &[Value], stage: &str) -> Vec<u64> {
    let mut all = Vec::new();
    for r in reports {
        for b in r["latency_histograms_us"][stage]["buckets"]
            .as_array()
            .unwrap()
        {
            let (v, c) = (b[0].as_u64().unwrap(), b[1].as_u64().unwrap());
            all.extend(std::iter::repeat_n(v, c as usize));
        }
    }
    all.sort_unstable();
    all
}

/// The `q` quantile of sorted samples, ms: the sample of rank max(1, ceil(q n)).
fn quantile_ms(sorted: &[u64], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).max(1);
    sorted[rank - 1] as f64 / 1000.0
}

#[test]
fn a_fleet_run_reports_the_damaged_bag_and_matches_single_replays_byte_for_byte() {
    let dir = common::fresh_dir("fleet-four-bags");
    let clips = dir.join("clips");
    common::vtest_clip(&clips, 4, &[]);
    common::vtest_clip(&clips, 3, &["--name", "short", "--storage", "mcap"]);
    let bags = dir.join("bags");
    copy_dir(&clips.join("vtest"), &bags.join("front"));
    copy_dir(&clips.join("vtest_sqlite3"), &bags.join("front_sqlite3"));
    copy_dir(&clips.join("short"), &bags.join("short"));
    common::truncated_bag_copy(&clips.join("vtest"), &bags.join("damaged"));
    let params = common::raw_camera_params(&dir);
    let out = dir.join("out");
    let profile = dir.join("profile.json");

    // The folder of bags is searched: four bags, one of them damaged. The ok bags' detections
    // are summed into one drift profile.
    let o = run_fleet(&[
        "replay",
        bags.to_str().unwrap(),
        "--params-file",
        params.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--cpus-per-task",
        "1",
        "--retries",
        "1",
        "--profile",
        profile.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "one bag failed: {}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("damaged failed"), "retried: {stderr}");
    let rep = json(&out.join("fleet_report.json"));
    assert_eq!(rep["bags_total"], 4, "{rep}");
    assert_eq!(rep["bags_ok"], 3, "{rep}");
    assert_eq!(rep["bags_failed"], 1, "{rep}");
    let failed = &rep["failed"][0];
    assert_eq!(failed["name"], "damaged", "{rep}");
    assert_eq!(failed["attempts"], 2, "tried, then retried once: {rep}");
    assert!(
        failed["error"].as_str().unwrap().contains("is damaged"),
        "{rep}"
    );
    let task = json(&out.join("damaged/fleet_task.json"));
    assert_eq!(task["status"], "failed");
    assert!(out.join("damaged/replay.log").is_file());
    // The summary table names it too.
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("FAILED damaged"), "{stdout}");
    assert!(stdout.contains("total (3 ok)"), "{stdout}");

    // Each ok bag's detections are byte for byte those of a single-process replay.
    let mut reports = Vec::new();
    let mut frames = 0;
    let mut by_class: BTreeMap<String, u64> = BTreeMap::new();
    for (name, frames_in) in [("front", 4), ("front_sqlite3", 4), ("short", 3)] {
        let single = dir.join("single").join(name);
        let o = common::output(
            Command::new(env!("CARGO_BIN_EXE_lookout"))
                .arg("replay")
                .arg(bags.join(name))
                .arg("--params-file")
                .arg(&params)
                .arg("--out")
                .arg(single.join("detections"))
                .arg("--report")
                .arg(single.join("report.json"))
                .args(["--no-diagnostics", "--intra-op-threads", "1"]),
        );
        assert!(o.status.success(), "{}", text(&o));
        let fleet_bag = files(&out.join(name).join("detections"));
        assert!(
            fleet_bag.keys().any(|k| k.ends_with(".mcap")),
            "{fleet_bag:?}"
        );
        assert!(
            fleet_bag == files(&single.join("detections")),
            "{name}: the fleet's detections bag differs from a single replay's"
        );
        let r = json(&out.join(name).join("report.json"));
        assert_eq!(r["frames_in"], frames_in, "{r}");
        assert_eq!(r["frames_processed"], frames_in, "{r}");
        frames += frames_in;
        for (c, n) in r["detections_by_class"].as_object().unwrap() {
            *by_class.entry(c.clone()).or_default() += n.as_u64().unwrap();
        }
        // The report's own percentiles follow the documented rule on its own buckets.
        let e2e = samples(std::slice::from_ref(&r), "e2e");
        assert_eq!(r["latency_ms"]["e2e"]["p50"], quantile_ms(&e2e, 0.5), "{r}");
        reports.push(r);
    }

    // Totals over the ok bags; the merged percentiles are those of the concatenated samples.
    let t = &rep["totals"];
    assert_eq!(t["frames_in"], frames, "{t}");
    assert_eq!(t["frames_processed"], frames, "{t}");
    let classes: BTreeMap<String, u64> =
        serde_json::from_value(t["detections_by_class"].clone()).unwrap();
    assert_eq!(classes, by_class);
    assert!(!classes.is_empty());
    // The profile: the ok bags' frames and detections, per class as in the totals.
    let p = json(&profile);
    assert_eq!(p["frames"], frames, "{p}");
    let p_classes: BTreeMap<String, u64> = serde_json::from_value(p["classes"].clone()).unwrap();
    assert_eq!(p_classes, by_class);
    assert_eq!(p["model_sha256"], reports[0]["model_sha256"]);
    for stage in ["preprocess", "inference", "postprocess", "e2e"] {
        let all = samples(&reports, stage);
        let merged = &t["latency_ms"][stage];
        assert_eq!(merged["count"], all.len(), "{stage}: {merged}");
        for (key, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999)] {
            assert_eq!(merged[key], quantile_ms(&all, q), "{stage} {key}: {merged}");
        }
        assert_eq!(
            merged["max"],
            *all.last().unwrap() as f64 / 1000.0,
            "{stage}"
        );
    }
    // No staging folder is left behind.
    for e in std::fs::read_dir(&out).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!name.contains(".partial-"), "{name} left behind");
    }
}

/// The names of `out`'s bag folders whose task record says ok, with the record's bytes.
fn complete(out: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut done = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(out) else {
        return done;
    };
    for e in entries {
        let p = e.unwrap().path();
        let task = p.join("fleet_task.json");
        if let Ok(bytes) = std::fs::read(&task)
            && serde_json::from_slice::<Value>(&bytes).is_ok_and(|v| v["status"] == "ok")
        {
            done.insert(p.file_name().unwrap().to_string_lossy().into_owned(), bytes);
        }
    }
    done
}

/// Whether any process of session `sid` is still alive (zombies awaiting their parent aside).
fn session_alive(sid: i32) -> bool {
    std::fs::read_dir("/proc").unwrap().any(|e| {
        let Ok(e) = e else { return false };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            return false;
        };
        // pid (comm) state ppid pgrp session ...: comm may hold spaces, so split after its ')'.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return false;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        fields.len() > 3 && fields[0] != "Z" && fields[3].parse() == Ok(sid)
    })
}

fn names_where(rep: &Value, key: &str) -> BTreeSet<String> {
    rep["bags"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b[key] == true)
        .map(|b| b["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn resume_after_a_killed_run_redoes_only_what_was_missing_and_compare_names_the_changed_bags() {
    let dir = common::fresh_dir("fleet-resume");
    let clip = common::small_clip();
    let bags = dir.join("bags");
    let names: Vec<String> = (1..=6).map(|i| format!("drive{i}")).collect();
    for (i, n) in names.iter().enumerate() {
        // MCAP and sqlite3 alternately.
        let src = if i % 2 == 0 { "vtest" } else { "vtest_sqlite3" };
        copy_dir(&clip.join(src), &bags.join(n));
    }
    let params = common::raw_camera_params(&dir);
    let out = dir.join("out");
    let base_args = |out: &Path, params: &Path| -> Vec<String> {
        vec![
            "replay".into(),
            bags.display().to_string(),
            "--params-file".into(),
            params.display().to_string(),
            "--out".into(),
            out.display().to_string(),
        ]
    };

    // A run killed once two bags are complete: the driver and the Ray it started (its process
    // group) at once with SIGKILL, so nothing gets to clean up. It runs in a session of its own,
    // which tells its processes from those of the other tests' Ray.
    let args = base_args(&out, &params);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut cmd = fleet_cmd(&args);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: setsid(2) is async-signal-safe and touches no memory of the parent; the child
    // calls nothing else before exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let started = Instant::now();
    while complete(&out).len() < 2 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be killed"
        );
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "no bag done in 5 min"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let group = i32::try_from(child.id()).unwrap();
    // SAFETY: killpg(2) of the group the child leads (setsid made it the leader of a new
    // session and group); no memory involved.
    assert_eq!(unsafe { libc::killpg(group, libc::SIGKILL) }, 0);
    child.wait().unwrap();
    // Ray's workers run in process groups of their own: they notice that their Ray is gone
    // within a second and stop their replays, leaving nothing. Wait until every process of the
    // killed run's session has ended: what is in the folder then is what the run left.
    let gone = Instant::now();
    while session_alive(group) {
        assert!(
            gone.elapsed() < Duration::from_secs(60),
            "the killed run's processes go on"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let before = complete(&out);
    assert!(
        before.len() < names.len(),
        "the kill came after every bag was done: {before:?}"
    );

    // --resume replays only the bags that were not complete; the others are left as they were.
    let mut resume = args.clone();
    resume.push("--resume");
    let o = run_fleet(&resume);
    assert!(o.status.success(), "{}", text(&o));
    let rep = json(&out.join("fleet_report.json"));
    assert_eq!(rep["bags_ok"], 6, "{rep}");
    assert_eq!(rep["bags_skipped_as_complete"], before.len(), "{rep}");
    let redone = names_where(&rep, "replayed_in_this_run");
    let all: BTreeSet<String> = names.iter().cloned().collect();
    let kept: BTreeSet<String> = before.keys().cloned().collect();
    assert_eq!(redone, &all - &kept, "{rep}");
    let after = complete(&out);
    for (name, bytes) in &before {
        assert_eq!(&after[name], bytes, "{name} was done again");
    }
    for e in std::fs::read_dir(&out).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            !name.contains(".partial-") && !name.contains(".old-"),
            "{name} left behind by the killed run"
        );
    }

    // A second model setting (a higher confidence threshold) in another folder, then compare:
    // the bags it names are those `lookout diff` finds beyond tolerance, one by one.
    let stricter = dir.join("stricter.yaml");
    let yaml = std::fs::read_to_string(&params).unwrap().replace(
        "    engine:",
        "    thresholds:\n      confidence: 0.6\n    engine:",
    );
    std::fs::write(&stricter, yaml).unwrap();
    let out_b = dir.join("out_b");
    let args_b = base_args(&out_b, &stricter);
    let o = run_fleet(&args_b.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", text(&o));
    let mut differ = BTreeSet::new();
    for n in &names {
        let o = common::output(
            Command::new(env!("CARGO_BIN_EXE_lookout"))
                .arg("diff")
                .arg(out.join(n).join("detections"))
                .arg(out_b.join(n).join("detections")),
        );
        match o.status.code() {
            Some(0) => {}
            Some(1) => {
                differ.insert(n.clone());
            }
            c => panic!("lookout diff exit {c:?}: {}", text(&o)),
        }
    }
    assert!(!differ.is_empty(), "the stricter threshold changed nothing");
    let (a, b) = (out.display().to_string(), out_b.display().to_string());
    let o = run_fleet(&["compare", "--baseline", &a, "--candidate", &b]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let cmp = json(&out_b.join("compare_report.json"));
    let regressed: BTreeSet<String> = serde_json::from_value(cmp["regressed"].clone()).unwrap();
    assert_eq!(regressed, differ, "{cmp}");
    let stdout = String::from_utf8_lossy(&o.stdout);
    for n in &differ {
        assert!(
            stdout.contains(n.as_str()),
            "{n} not in the table: {stdout}"
        );
    }
    // A run compared with itself: nothing regressed, exit 0.
    let report = dir.join("self.json");
    let o = run_fleet(&[
        "compare",
        "--baseline",
        &a,
        "--candidate",
        &a,
        "--report",
        report.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(json(&report)["bags_same"], 6);

    // --resume with other parameters redoes every bag (the key holds the parameters' sha256).
    let mut changed = base_args(&out, &stricter);
    changed.push("--resume".into());
    let o = run_fleet(&changed.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", text(&o));
    let rep = json(&out.join("fleet_report.json"));
    assert_eq!(rep["bags_replayed_in_this_run"], 6, "{rep}");
}

#[test]
fn bad_arguments_fail_before_ray_starts() {
    let dir = common::fresh_dir("fleet-bad-args");
    let params = common::raw_camera_params(&dir);
    let o = run_fleet(&[
        "replay",
        dir.join("no-such-bag").to_str().unwrap(),
        "--params-file",
        params.to_str().unwrap(),
        "--out",
        dir.join("out").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not a bag"),
        "{}",
        text(&o)
    );
    // More GPUs per task than the local Ray has: refused, rather than waiting for ever.
    let clip = common::small_clip();
    let o = run_fleet(&[
        "replay",
        clip.join("vtest").to_str().unwrap(),
        "--params-file",
        params.to_str().unwrap(),
        "--out",
        dir.join("out").to_str().unwrap(),
        "--gpus-per-task",
        "1",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("GPU per task"),
        "{}",
        text(&o)
    );
}
