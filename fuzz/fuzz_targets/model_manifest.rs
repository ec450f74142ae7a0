//! A model package's manifest: parsed and validated (shapes, layouts, classes, thresholds).
//! Any text: a manifest or an error naming the key, never a panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use lookout::core::model::Manifest;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(m) = Manifest::parse(text, Path::new("manifest.yaml")) {
        let _ = (m.input.width(), m.input.height());
    }
});
