//! An ONNX file as `lookout model inspect` reads it (a bounded protobuf reader that skips the
//! weights). Any bytes: what the file declares, or an error with the byte offset; never a panic,
//! a hang or an allocation of a size the file claims.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lookout::core::onnx_info::read_from;

fuzz_target!(|data: &[u8]| {
    if let Ok(info) = read_from(std::io::Cursor::new(data), data.len() as u64) {
        let _ = info.decoder_fit(None);
    }
});
