//! An MCAP storage file (a bag nobody vetted): every message read in storage order, or an
//! error naming the file; never a panic, an abort on a claimed length, or a hang.
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
});
