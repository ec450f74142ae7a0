//! CDR messages from a bag or the wire: `sensor_msgs/Image`, `CompressedImage`, and lookout's
//! own `Detection2DArray` (read back by `diff` and `--step`). Any bytes: an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lookout::bag::cdr;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = cdr::image(data) {
        // The borrowed fields lie inside the input.
        assert!(m.data.len() <= data.len());
    }
    let _ = cdr::compressed_image(data);
    let _ = cdr::detection_array(data);
});
