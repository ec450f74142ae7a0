//! An MCAP storage file (a bag nobody vetted): every message read in storage order, or an
//! error naming the file; then read again past any damage through the summary's chunk index.
//! Never a panic, an abort on a claimed length, or a hang.
#![no_main]

use std::ops::ControlFlow;
use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut n = 0usize;
    let _ = lookout::bag::for_each_mcap_in(data, Path::new("fuzz.mcap"), &mut |m| {
        n += 1;
        assert!(m.data.len() <= lookout::bag::MAX_RECORD_BYTES);
        ControlFlow::Continue(())
    });
    let mut m = 0usize;
    let (_, damage) = lookout::bag::for_each_mcap_readable_in(
        std::io::Cursor::new(data),
        Path::new("fuzz.mcap"),
        &mut |msg| {
            m += 1;
            assert!(msg.data.len() <= lookout::bag::MAX_RECORD_BYTES);
            ControlFlow::Continue(())
        },
    );
    // An intact stream gives the same messages both ways.
    if damage.is_empty() {
        assert_eq!(m, n);
    }
});
