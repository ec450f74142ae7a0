//! A compressed frame (`sensor_msgs/CompressedImage` data): JPEG or PNG by the first byte, on one
//! and two decoding threads, at full and reduced scale. Any bytes: bad input, never a panic,
//! and the decoder stays usable.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lookout::core::decode::{CompressedFormat, Decoder};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    let format = if mode & 1 == 0 {
        CompressedFormat::Jpeg
    } else {
        CompressedFormat::Png
    };
    let threads = 1 + usize::from(mode >> 1 & 1);
    let mut decoder = Decoder::new(1024, 1024).with_threads(threads);
    if mode & 4 != 0 {
        decoder = decoder.with_tensor_size(64, 64);
    }
    if let Ok(view) = decoder.decode(bytes, format) {
        assert!(view.width() <= 1024 && view.height() <= 1024);
    }
});
