//! Compressed frames nobody vetted: a PNG whose compressed metadata inflates to far more than the
//! image (a "deflate bomb" in a zTXt or iCCP chunk, inflated by the decoder while it reads the
//! header, on the inference thread) is refused from its chunk sizes, before anything is inflated;
//! the same image without it decodes.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use lookout::core::decode::{CompressedFormat, Decoder};

/// A 2x2 RGB PNG, with a zTXt chunk holding `metadata_mib` MiB of zeros when not 0 (written by
/// Python's zlib: an independent encoder).
fn png(metadata_mib: usize) -> Vec<u8> {
    let script = r#"
import struct, sys, zlib
def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff)
mib = int(sys.argv[1])
out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0))
if mib:
    c = zlib.compressobj(9)
    z = b"".join(c.compress(b"\0" * (1 << 20)) for _ in range(mib)) + c.flush()
    out += chunk(b"zTXt", b"Comment\0\0" + z)
out += chunk(b"IDAT", zlib.compress(b"\0" + b"\x10\x20\x30" * 2 + b"\0" + b"\x40\x50\x60" * 2))
out += chunk(b"IEND", b"")
sys.stdout.buffer.write(out)
"#;
    let o = common::output(Command::new(common::python()).args([
        "-c",
        script,
        &metadata_mib.to_string(),
    ]));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    o.stdout
}

#[test]
fn a_png_whose_metadata_inflates_to_gigabytes_is_refused_before_inflating() {
    let mut dec = Decoder::new(64, 64);
    let clean = png(0);
    let view = dec.decode(&clean, CompressedFormat::Png).unwrap();
    assert_eq!((view.width(), view.height()), (2, 2));
    assert_eq!(&view.row(0)[..3], &[0x10, 0x20, 0x30]);

    // 256 MiB of metadata in about 250 kB.
    let bomb = png(256);
    assert!(bomb.len() < 1 << 20, "{}", bomb.len());
    let started = Instant::now();
    let err = dec
        .decode(&bomb, CompressedFormat::Png)
        .map(|v| v.width())
        .unwrap_err()
        .to_string();
    assert!(err.contains("compressed metadata"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    // The decoder is still good for the next frame.
    assert!(dec.decode(&clean, CompressedFormat::Png).is_ok());
}
