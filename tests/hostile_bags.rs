//! Bags nobody vetted: each case here crashed, hung or read outside the bag before (an MCAP
//! record claiming 1 TiB aborted the process on the allocation; `metadata.yaml` could name any
//! file on the host; a sqlite `messages` view over an endless recursive query never returned; a
//! NULL payload stopped the whole replay). Now each is an error naming the file, or a counted
//! bad input while the replay goes on.

mod common;

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use lookout::bag::Bag;

/// `lookout replay BAG --params-file P --out OUT`, whatever its exit status.
fn replay(params: &Path, out: &Path, bag: &Path) -> std::process::Output {
    common::output(
        Command::new(env!("CARGO_BIN_EXE_lookout"))
            .args(["replay", "--params-file"])
            .arg(params)
            .arg("--out")
            .arg(out)
            .arg(bag)
            .env("RUST_LOG", "warn"),
    )
}

fn count(bag: &Path) -> Result<usize, String> {
    let mut n = 0;
    Bag::open(bag)
        .map_err(|e| e.to_string())?
        .for_each(|_| {
            n += 1;
            ControlFlow::Continue(())
        })
        .map_err(|e| e.to_string())?;
    Ok(n)
}

#[test]
fn an_mcap_record_claiming_a_terabyte_is_an_error_not_an_abort() {
    let dir = common::fresh_dir("bags-huge");
    let mut bytes = b"\x89MCAP0\r\n".to_vec();
    // Header record (profile and library: empty strings), then a Message record whose length
    // field says 1 TiB.
    bytes.push(0x01);
    bytes.extend_from_slice(&8u64.to_le_bytes());
    bytes.extend_from_slice(&[0; 8]);
    bytes.push(0x05);
    bytes.extend_from_slice(&(1u64 << 40).to_le_bytes());
    bytes.extend_from_slice(&[0; 64]);
    let file = dir.join("huge.mcap");
    std::fs::write(&file, bytes).unwrap();
    let err = count(&file).unwrap_err();
    assert!(err.contains("exceeds limit"), "{err}");
    let p = common::raw_camera_params(&dir);
    let o = replay(&p, &dir.join("out"), &file);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "not a clean error exit: {stderr}");
    assert!(stderr.contains("exceeds limit"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn metadata_listing_files_outside_the_bag_is_refused() {
    let dir = common::fresh_dir("bags-outside");
    let src = common::small_clip().join("vtest");
    let mcap = std::fs::read_dir(&src)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "mcap"))
        .unwrap();
    let name = mcap.file_name().unwrap().to_string_lossy().into_owned();
    let metadata = std::fs::read_to_string(src.join("metadata.yaml")).unwrap();
    std::fs::copy(&mcap, dir.join("elsewhere.mcap")).unwrap();
    let outside = dir.join("elsewhere.mcap");
    let cases = [
        "../elsewhere.mcap".to_string(),
        outside.display().to_string(),
        "link.mcap".to_string(),
    ];
    for (i, listed) in cases.iter().enumerate() {
        let bag = dir.join(format!("bag{i}"));
        std::fs::create_dir_all(&bag).unwrap();
        std::fs::copy(&mcap, bag.join(&name)).unwrap();
        std::os::unix::fs::symlink(&outside, bag.join("link.mcap")).unwrap();
        std::fs::write(
            bag.join("metadata.yaml"),
            metadata.replace(&format!("- {name}"), &format!("- {listed}")),
        )
        .unwrap();
        let err = count(&bag).unwrap_err();
        assert!(err.contains("outside the bag folder"), "{listed}: {err}");
    }
    // The same bag listing its own file reads.
    let good = dir.join("good");
    std::fs::create_dir_all(&good).unwrap();
    std::fs::copy(&mcap, good.join(&name)).unwrap();
    std::fs::write(good.join("metadata.yaml"), &metadata).unwrap();
    assert_eq!(count(&good).unwrap(), 6);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The clip's sqlite3 bag, copied to `dir/name/`, with `edit` applied to its database.
fn edited_sqlite(dir: &Path, name: &str, edit: &str) -> PathBuf {
    let src = common::small_clip().join("vtest_sqlite3");
    let bag = dir.join(name);
    std::fs::create_dir_all(&bag).unwrap();
    let mut db_path = None;
    for e in std::fs::read_dir(&src).unwrap() {
        let p = e.unwrap().path();
        let to = bag.join(p.file_name().unwrap());
        std::fs::copy(&p, &to).unwrap();
        if to.extension().is_some_and(|x| x == "db3") {
            db_path = Some(to);
        }
    }
    let db = rusqlite::Connection::open(db_path.unwrap()).unwrap();
    db.execute_batch(edit).unwrap();
    bag
}

#[test]
fn a_sqlite_messages_view_is_refused_at_once() {
    let dir = common::fresh_dir("bags-view");
    let bag = edited_sqlite(
        &dir,
        "view",
        "ALTER TABLE messages RENAME TO real_messages;
         CREATE VIEW messages AS WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r)
           SELECT x AS id, 1 AS topic_id, 0 AS timestamp, NULL AS data FROM r;",
    );
    let started = Instant::now();
    let err = count(&bag).unwrap_err();
    assert!(err.contains("not a table"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_null_payload_is_one_bad_input_and_the_replay_goes_on() {
    let dir = common::fresh_dir("bags-null");
    let bag = edited_sqlite(
        &dir,
        "null",
        "CREATE TABLE loose(id INTEGER PRIMARY KEY, topic_id INTEGER, timestamp INTEGER, data BLOB);
         INSERT INTO loose SELECT id, topic_id, timestamp, data FROM messages;
         DROP TABLE messages;
         ALTER TABLE loose RENAME TO messages;
         UPDATE messages SET data = NULL WHERE id = (SELECT MIN(m.id) FROM messages m
           JOIN topics t ON m.topic_id = t.id WHERE t.name = '/camera/image_raw');",
    );
    assert_eq!(count(&bag).unwrap(), 6);
    let p = common::raw_camera_params(&dir);
    let out = dir.join("out");
    let o = replay(&p, &out, &bag);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(r["frames_in"], 3, "{r}");
    assert_eq!(r["bad_inputs"], 1, "{r}");
    assert_eq!(r["frames_processed"], 2, "{r}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_truncated_bag_is_replayed_up_to_the_damage_reported_and_exits_1() {
    let dir = common::fresh_dir("bags-truncated");
    let src = common::small_clip().join("vtest");
    let bag = dir.join("cut");
    // A recorder killed mid-write: the last 40 % of the file is missing.
    common::truncated_bag_copy(&src, &bag);
    let p = common::raw_camera_params(&dir);
    let out = dir.join("out");
    let o = replay(&p, &out, &bag);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("is damaged after its first"), "{stderr}");
    // Everything before the damage was replayed, written and reported.
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let errors = r["storage_errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{r}");
    assert!(errors[0].as_str().unwrap().contains("cut"), "{r}");
    let frames = r["frames_processed"].as_u64().unwrap();
    assert!((1..3).contains(&frames), "{r}");
    assert_eq!(
        count(&out).unwrap() as u64,
        r["messages_written"].as_u64().unwrap()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_damaged_chunk_in_the_middle_costs_only_its_own_messages() {
    let dir = common::fresh_dir("bags-mid-damage");
    let src = common::small_clip().join("vtest");
    let bag = dir.join("mid");
    std::fs::create_dir_all(&bag).unwrap();
    let mut lost = None;
    for e in std::fs::read_dir(&src).unwrap() {
        let p = e.unwrap().path();
        let to = bag.join(p.file_name().unwrap());
        if p.extension().is_some_and(|x| x == "mcap") {
            let mut bytes = std::fs::read(&p).unwrap();
            let summary = mcap::Summary::read(&bytes).unwrap().unwrap();
            let mut chunks = summary.chunk_indexes.clone();
            chunks.sort_by_key(|c| c.chunk_start_offset);
            assert!(
                chunks.len() >= 3,
                "the clip needs chunks before and after the damage"
            );
            let victim = &chunks[1];
            let frames_in = |c: &mcap::records::ChunkIndex| {
                summary
                    .stream_chunk(&bytes, c)
                    .unwrap()
                    .filter(|m| m.as_ref().unwrap().channel.topic == "/camera/image_raw")
                    .count() as u64
            };
            // The frames in the damaged chunk, read from the intact file; there are frames after
            // it, which a reading that stops at the damage loses.
            lost = Some(frames_in(victim));
            assert!(chunks[2..].iter().map(frames_in).sum::<u64>() >= 1);
            // Break the chunk's compressed data (its zstd frame magic): opcode, length, start
            // and end time, uncompressed size and CRC, the compression string, records length.
            let at = victim.chunk_start_offset as usize
                + 1
                + 8
                + 8
                + 8
                + 8
                + 4
                + 4
                + victim.compression.len()
                + 8;
            bytes[at..at + 4].copy_from_slice(b"\0\0\0\0");
            std::fs::write(&to, &bytes).unwrap();
        } else {
            std::fs::copy(&p, &to).unwrap();
        }
    }
    let lost = lost.expect("an MCAP file in the clip");
    assert!(lost >= 1, "the damaged chunk holds a frame");
    let p = common::raw_camera_params(&dir);
    let out = dir.join("out");
    let o = replay(&p, &out, &bag);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "frames were lost: {stderr}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let errors = r["storage_errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{r}");
    let e = errors[0].as_str().unwrap();
    assert!(
        e.contains("chunk at byte") && e.contains("resumed at the next intact chunk"),
        "{e}"
    );
    // Before: the reading stopped at the damage. Now only the damaged chunk's frames are lost.
    assert_eq!(r["frames_processed"].as_u64().unwrap(), 3 - lost, "{r}");
    assert_eq!(
        count(&out).unwrap() as u64,
        r["messages_written"].as_u64().unwrap()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_oversized_metadata_yaml_is_refused_before_it_is_read_whole() {
    let dir = common::fresh_dir("bags-big-metadata");
    let bag = dir.join("big");
    std::fs::create_dir_all(&bag).unwrap();
    // 17 MiB of comment: valid YAML, larger than any real metadata.yaml.
    let mut text = String::from("# padding\n");
    text.push_str(&"#".repeat(17 << 20));
    std::fs::write(bag.join("metadata.yaml"), text).unwrap();
    let err = count(&bag).unwrap_err();
    assert!(err.contains("over"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
