//! A sqlite3 storage file (rosbag2's `.db3`): read through `Bag`, as a replay does, from a
//! temporary file. Any bytes: messages or an error naming the file, never a panic or a hang.
#![no_main]

use std::ops::ControlFlow;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("lookout-fuzz-sqlite-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("bag.db3");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    if let Ok(bag) = lookout::bag::Bag::open(&path) {
        let _ = bag.for_each(|_| ControlFlow::Continue(()));
    }
    let _ = std::fs::remove_file(&path);
});
