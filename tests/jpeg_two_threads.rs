//! JPEG decoding on two threads (a band of rows each, `Decoder::with_threads(2)`) gives the very
//! bytes one thread gives, at every scale, in colour and grey, and fails the same way on
//! corrupt or truncated data. Images: the test images set-up fetches and the street frames it
//! writes (scripts/make_street_jpegs.py); the grey one is made here with the same encoder.

mod common;

use lookout::core::decode::{CompressedFormat, Decoder};

/// The decoded view's size, encoding and bytes, or the error text.
fn decode(d: &mut Decoder, jpeg: &[u8]) -> Result<(u32, u32, String, Vec<u8>), String> {
    d.decode_sized(jpeg, CompressedFormat::Jpeg)
        .map(|(v, _)| {
            let rows: Vec<u8> = (0..v.height()).flat_map(|y| v.row(y).to_vec()).collect();
            (v.width(), v.height(), v.encoding().to_string(), rows)
        })
        .map_err(|e| e.to_string())
}

fn decoders(tensor: Option<(u32, u32)>) -> (Decoder, Decoder) {
    let make = |threads| {
        let d = Decoder::new(4096, 4096).with_threads(threads);
        match tensor {
            Some((w, h)) => d.with_tensor_size(w, h),
            None => d,
        }
    };
    let (one, two) = (make(1), make(2));
    assert_eq!((one.threads(), two.threads()), (1, 2));
    (one, two)
}

/// A greyscale JPEG of `bus.jpg`, through libjpeg-turbo's own encoder.
fn grey_jpeg() -> Vec<u8> {
    let bus = std::fs::read(common::image("bus.jpg")).unwrap();
    let img = turbojpeg::decompress(&bus, turbojpeg::PixelFormat::GRAY).unwrap();
    turbojpeg::compress(img.as_deref(), 90, turbojpeg::Subsamp::Gray)
        .unwrap()
        .to_vec()
}

#[test]
fn two_threads_decode_the_same_bytes_as_one() {
    let mut jpegs: Vec<(String, Vec<u8>)> = [
        "bus.jpg",
        "dog.jpg",
        "street_640x480.jpg",
        "street_1280x720.jpg",
        "street_1920x1080.jpg",
    ]
    .iter()
    .map(|n| (n.to_string(), std::fs::read(common::image(n)).unwrap()))
    .collect();
    jpegs.push(("grey bus".into(), grey_jpeg()));
    // Full scale, and the 1/2 and 1/4 scales a 416x416 and a 160x160 tensor select.
    for tensor in [None, Some((416, 416)), Some((160, 160))] {
        let (mut one, mut two) = decoders(tensor);
        for (name, jpeg) in &jpegs {
            let a = decode(&mut one, jpeg).unwrap();
            let b = decode(&mut two, jpeg).unwrap();
            assert_eq!((a.0, a.1, &a.2), (b.0, b.1, &b.2), "{name} {tensor:?}");
            assert!(
                a.3 == b.3,
                "{name} {tensor:?}: two threads decoded other bytes"
            );
        }
    }
}

#[test]
fn corrupt_and_truncated_jpegs_fail_on_two_threads_as_on_one() {
    let jpeg = std::fs::read(common::image("street_1280x720.jpg")).unwrap();
    let (mut one, mut two) = decoders(Some((416, 416)));
    // Cut in the header, and in the entropy-coded data (libjpeg-turbo pads a truncated scan
    // with grey and warns: both decoders must then agree on the bytes too).
    for cut in [20, jpeg.len() / 3, jpeg.len() - 10] {
        let a = decode(&mut one, &jpeg[..cut]);
        let b = decode(&mut two, &jpeg[..cut]);
        assert_eq!(a.is_err(), b.is_err(), "cut at {cut}: {a:?} / {b:?}");
        if let (Ok(a), Ok(b)) = (a, b) {
            assert!(a.3 == b.3, "cut at {cut}");
        }
    }
    let mut flipped = jpeg.clone();
    for i in (600..flipped.len() - 2).step_by(97) {
        flipped[i] ^= 0x5a;
    }
    let a = decode(&mut one, &flipped);
    let b = decode(&mut two, &flipped);
    assert_eq!(a.is_err(), b.is_err());
    // The decoders keep working after bad input.
    assert!(decode(&mut two, &jpeg).is_ok());
    assert!(decode(&mut one, &jpeg).is_ok());
}
