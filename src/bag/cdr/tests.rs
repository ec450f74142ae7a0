//! Unit tests.
use super::*;

/// Hand-encodes an Image the way rmw does (little endian).
fn encode_image(frame_id: &str, encoding: &str, data: &[u8]) -> Vec<u8> {
    let mut b = vec![0x00, 0x01, 0x00, 0x00];
    let mut body: Vec<u8> = Vec::new();
    let align = |body: &mut Vec<u8>, n: usize| {
        while !body.len().is_multiple_of(n) {
            body.push(0);
        }
    };
    let string = |body: &mut Vec<u8>, s: &str| {
        while !body.len().is_multiple_of(4) {
            body.push(0);
        }
        body.extend_from_slice(&((s.len() + 1) as u32).to_le_bytes());
        body.extend_from_slice(s.as_bytes());
        body.push(0);
    };
    body.extend_from_slice(&7i32.to_le_bytes());
    body.extend_from_slice(&500u32.to_le_bytes());
    string(&mut body, frame_id);
    align(&mut body, 4);
    body.extend_from_slice(&2u32.to_le_bytes()); // height
    body.extend_from_slice(&3u32.to_le_bytes()); // width
    string(&mut body, encoding);
    body.push(0); // is_bigendian
    align(&mut body, 4);
    body.extend_from_slice(&9u32.to_le_bytes()); // step
    body.extend_from_slice(&(data.len() as u32).to_le_bytes());
    body.extend_from_slice(data);
    b.extend(body);
    b
}

#[test]
fn decodes_an_image_with_unaligned_strings() {
    let data: Vec<u8> = (0..18).collect();
    let bytes = encode_image("cam", "bgr8", &data);
    let m = image(&bytes).unwrap();
    assert_eq!(
        m.stamp,
        Stamp {
            sec: 7,
            nanosec: 500
        }
    );
    assert_eq!((m.frame_id, m.encoding), ("cam", "bgr8"));
    assert_eq!((m.height, m.width, m.step), (2, 3, 9));
    assert_eq!(m.data, &data[..]);
}

#[test]
fn every_truncation_is_an_error_never_a_panic() {
    let bytes = encode_image("camera_frame", "rgb8", &[1u8; 18]);
    for cut in 0..bytes.len() {
        assert!(image(&bytes[..cut]).is_err(), "cut at {cut} decoded");
        let _ = compressed_image(&bytes[..cut]);
    }
}

#[test]
fn a_huge_length_is_rejected() {
    let mut bytes = encode_image("c", "rgb8", &[]);
    let n = bytes.len();
    bytes[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        image(&bytes),
        Err(CdrError::Truncated { field: "data", .. })
    ));
}

#[test]
fn wrong_encapsulation_is_named() {
    assert!(matches!(
        image(&[0x00, 0x07, 0, 0]),
        Err(CdrError::Encapsulation { .. })
    ));
    assert!(matches!(image(&[]), Err(CdrError::Encapsulation { .. })));
}

fn sample_detections() -> (Vec<Detection>, Vec<String>) {
    (
        vec![
            Detection {
                class_id: 0,
                score: 0.75,
                bbox: [10.0, 20.0, 50.5, 80.25],
            },
            Detection {
                class_id: 1,
                score: 0.5,
                bbox: [0.0, 0.0, 3.0, 4.0],
            },
        ],
        vec!["person".to_string(), "bus".to_string()],
    )
}

#[test]
fn detection_arrays_round_trip_and_encode_deterministically() {
    let (dets, names) = sample_detections();
    let stamp = Stamp {
        sec: 1_700_000_000,
        nanosec: 100_000_000,
    };
    let mut a = Vec::new();
    encode_detection_array(&mut a, stamp, "cam", &dets, &names);
    let mut b = vec![0xAA; 4096];
    encode_detection_array(&mut b, stamp, "cam", &dets, &names);
    assert_eq!(a, b, "reused buffer must not change the bytes");
    let m = detection_array(&a).unwrap();
    assert_eq!(m.stamp, stamp);
    assert_eq!(m.frame_id, "cam");
    assert_eq!(m.detections.len(), 2);
    let d = &m.detections[0];
    assert_eq!(d.best(), Some(("person", 0.75)));
    assert_eq!(d.center, (30.25, 50.125));
    assert_eq!(d.size, (40.5, 60.25));
    assert_eq!(d.corners(), [10.0, 20.0, 50.5, 80.25]);
    assert_eq!(d.id, "");
    assert_eq!(m.detections[1].best(), Some(("bus", 0.5)));
}

#[test]
fn every_truncated_detection_array_is_an_error() {
    let (dets, names) = sample_detections();
    let mut a = Vec::new();
    encode_detection_array(&mut a, Stamp::default(), "cam", &dets, &names);
    for cut in 0..a.len() {
        assert!(detection_array(&a[..cut]).is_err(), "cut at {cut} decoded");
    }
}

#[test]
fn an_impossible_detection_count_is_refused_before_allocating() {
    let mut a = Vec::new();
    encode_detection_array(&mut a, Stamp::default(), "", &[], &[]);
    let n = a.len();
    a[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        detection_array(&a),
        Err(CdrError::BadLength {
            field: "detections",
            ..
        })
    ));
}

#[test]
fn diagnostic_arrays_have_zero_padding() {
    let statuses = [Status {
        name: "x".into(),
        level: crate::runtime::health::Level::Warn,
        message: "m".into(),
        values: vec![("k".into(), "v".into())],
    }];
    let mut a = Vec::new();
    encode_diagnostic_array(&mut a, Stamp::default(), &statuses, "h");
    // Layout as rmw_fastrtps writes it, with its uninitialised padding bytes as zeros.
    let want = concat!(
        "000100000000000000000000010000000000000001000000010000000200000078000000",
        "020000006d000000020000006800000001000000020000006b000000020000007600"
    );
    let got: String = a.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(got, want);
}

/// A small fuzzer: random mutations (bit flips, byte changes, truncation, extension) of
/// valid messages never make a decoder panic or read out of bounds.
#[test]
fn mutated_messages_never_panic() {
    let (dets, names) = sample_detections();
    let mut det = Vec::new();
    encode_detection_array(&mut det, Stamp::default(), "cam", &dets, &names);
    let seeds = [encode_image("camera_frame", "rgb8", &[7u8; 18]), det, {
        let mut b = vec![0x00, 0x01, 0x00, 0x00, 1, 0, 0, 0, 2, 0, 0, 0];
        b.extend_from_slice(&[2, 0, 0, 0, b'c', 0, 0, 0, 5, 0, 0, 0]);
        b.extend_from_slice(b"jpeg\0\0\0\0\x03\0\0\0\xff\xd8\xff");
        b
    }];
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut decoded = 0usize;
    for round in 0..30_000u64 {
        let seed = &seeds[(round % seeds.len() as u64) as usize];
        let mut m = seed.clone();
        for _ in 0..(1 + next() % 4) {
            let len = m.len().max(1);
            match next() % 4 {
                0 => {
                    let i = (next() as usize) % len;
                    if let Some(b) = m.get_mut(i) {
                        *b ^= 1 << (next() % 8);
                    }
                }
                1 => {
                    let i = (next() as usize) % len;
                    if let Some(b) = m.get_mut(i) {
                        *b = next() as u8;
                    }
                }
                2 => m.truncate((next() as usize) % len),
                _ => m.extend((0..next() % 16).map(|_| next() as u8)),
            }
        }
        decoded += usize::from(image(&m).is_ok());
        decoded += usize::from(compressed_image(&m).is_ok());
        decoded += usize::from(detection_array(&m).is_ok());
    }
    // Some mutations keep a message valid; the decoders must accept those.
    assert!(decoded > 0);
}

#[test]
fn encoded_images_decode_to_what_was_encoded() {
    let stamp = Stamp {
        sec: 1_700_000_002,
        nanosec: 100_000_000,
    };
    let pixels: Vec<u8> = (0..3 * 4 * 2 + 2).map(|i| i as u8).collect();
    let mut buf = Vec::new();
    // Byte for byte what rmw writes (the hand-encoder above: 7 s 500 ns, 3x2, step 9).
    let seven = Stamp {
        sec: 7,
        nanosec: 500,
    };
    super::encode_image(
        &mut buf,
        seven,
        "f",
        (3, 2, 9),
        "rgb8",
        false,
        &pixels[..18],
    );
    assert_eq!(buf, encode_image("f", "rgb8", &pixels[..18]));
    super::encode_image(
        &mut buf,
        stamp,
        "cam_7",
        (3, 2, 13),
        "bgr8",
        false,
        &pixels[..26],
    );
    assert_eq!(image(&buf).unwrap().data, &pixels[..26]);
    let m = image(&buf).unwrap();
    assert_eq!(
        (
            m.stamp,
            m.frame_id,
            m.width,
            m.height,
            m.encoding,
            m.is_bigendian,
            m.step
        ),
        (stamp, "cam_7", 3, 2, "bgr8", 0, 13)
    );
    super::encode_compressed_image(&mut buf, stamp, "cam_7", "jpeg", &[0xff, 0xd8, 1, 2, 3]);
    let m = compressed_image(&buf).unwrap();
    assert_eq!(
        (m.stamp, m.frame_id, m.format, m.data),
        (stamp, "cam_7", "jpeg", &[0xff, 0xd8, 1, 2, 3][..])
    );
}
