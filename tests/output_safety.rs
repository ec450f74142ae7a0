//! A replay never destroys data: `--force` replaces only a folder lookout wrote, never an input
//! bag, a folder holding one, or the working directory; a replay that fails leaves the previous
//! output exactly as it was; a successful one replaces it whole, with nothing left beside it.
//! (Before: `--force` removed any folder that held an `.mcap` file, inputs included, before
//! anything was checked, and a failed run left the old output deleted.)

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn replay_in(cwd: &Path, args: &[&dyn AsRef<std::ffi::OsStr>], fault: Option<&str>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lookout"));
    c.current_dir(cwd)
        .arg("replay")
        .args(args)
        .env("RUST_LOG", "warn");
    if let Some(n) = fault {
        c.env("LOOKOUT_FAULT_INFER_PANIC_AFTER", n);
    }
    common::output(&mut c)
}

/// Every file under `dir` (relative path -> bytes).
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_path_buf();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn refused(o: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "accepted; stderr: {stderr}");
    assert!(stderr.contains(needle), "expected `{needle}` in: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn force_never_replaces_an_input_a_folder_holding_one_or_a_folder_lookout_did_not_write() {
    let clip = common::small_clip();
    let bag = clip.join("vtest");
    let mcap = std::fs::read_dir(&bag)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "mcap"))
        .unwrap();
    let work = common::fresh_dir("output-refusals");
    let p = common::raw_camera_params(&work);
    let before = files(clip);

    // The input bag itself, its folder given as a file inside it, and a folder holding it.
    refused(
        &replay_in(
            &work,
            &[&bag, &"--params-file", &p, &"--out", &bag, &"--force"],
            None,
        ),
        "input bag",
    );
    refused(
        &replay_in(
            &work,
            &[&mcap, &"--params-file", &p, &"--out", &bag, &"--force"],
            None,
        ),
        "input bag",
    );
    refused(
        &replay_in(
            &work,
            &[&bag, &"--params-file", &p, &"--out", &clip, &"--force"],
            None,
        ),
        "input bag",
    );
    assert_eq!(files(clip), before, "an input was modified");

    // The working directory.
    std::fs::write(work.join("keep.txt"), b"mine").unwrap();
    refused(
        &replay_in(
            &work,
            &[&bag, &"--params-file", &p, &"--out", &".", &"--force"],
            None,
        ),
        "working directory",
    );
    assert_eq!(std::fs::read(work.join("keep.txt")).unwrap(), b"mine");

    // A folder lookout did not write, even one that looks like a bag; and any folder without
    // --force.
    let other = work.join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("recording_0.mcap"), b"not ours").unwrap();
    std::fs::write(other.join("notes.txt"), b"notes").unwrap();
    refused(
        &replay_in(
            &work,
            &[&bag, &"--params-file", &p, &"--out", &other, &"--force"],
            None,
        ),
        "not a replay output written by lookout",
    );
    refused(
        &replay_in(&work, &[&bag, &"--params-file", &p, &"--out", &other], None),
        "pass --force",
    );
    assert_eq!(
        files(&other).len(),
        2,
        "a folder lookout did not write was touched"
    );
    assert_eq!(std::fs::read(other.join("notes.txt")).unwrap(), b"notes");
}

#[test]
fn a_failed_replay_leaves_the_previous_output_as_it_was_and_a_good_one_replaces_it_whole() {
    let bag = common::small_clip().join("vtest");
    let work = common::fresh_dir("output-replace");
    let p = common::raw_camera_params(&work);
    let out = work.join("out");
    let first = replay_in(&work, &[&bag, &"--params-file", &p, &"--out", &out], None);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let previous = files(&out);
    assert!(
        previous.keys().any(|k| k == Path::new("out_0.mcap")),
        "{previous:?}"
    );
    assert!(previous.contains_key(Path::new("report.json")));
    let leftovers = |dir: &Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".lookout-"))
            .collect()
    };

    // The inference thread dies on the second frame: the replay fails, the old output stays.
    for pace in [&[][..], &["--rate", "4"][..]] {
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![
            &bag,
            &"--params-file",
            &p,
            &"--out",
            &out,
            &"--force",
            &"--no-diagnostics",
        ];
        for a in pace {
            args.push(a);
        }
        let o = replay_in(&work, &args, Some("2"));
        assert!(
            !o.status.success(),
            "{pace:?}: a replay that lost frames succeeded"
        );
        assert_eq!(
            files(&out),
            previous,
            "{pace:?}: the previous output was changed"
        );
        assert!(
            leftovers(&work).is_empty(),
            "{pace:?}: {:?}",
            leftovers(&work)
        );
    }

    // A good replay with other settings replaces it, whole.
    let o = replay_in(
        &work,
        &[
            &bag,
            &"--params-file",
            &p,
            &"--out",
            &out,
            &"--force",
            &"--no-diagnostics",
        ],
        None,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let now = files(&out);
    assert_ne!(now, previous, "the output was not replaced");
    assert!(now.contains_key(Path::new("out_0.mcap")), "{now:?}");
    assert!(now.contains_key(Path::new("metadata.yaml")));
    let report: serde_json::Value = serde_json::from_slice(&now[Path::new("report.json")]).unwrap();
    assert_eq!(report["frames_processed"], 3);
    assert!(leftovers(&work).is_empty(), "{:?}", leftovers(&work));
    // The bag in place is readable: one detections message per frame.
    let mut n = 0;
    lookout::bag::Bag::open(&out)
        .unwrap()
        .for_each(|_| {
            n += 1;
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(n, 3);
}
