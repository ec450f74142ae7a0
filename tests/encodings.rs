//! Every camera encoding gives the detections of the original image: bus.jpg converted to each
//! encoding here (the conversions below are the textbook ones, written independently of
//! lookout's), run through the real model on the CPU, compared with the rgb8 frame's detections.
//! 16-bit frames must match exactly (their high bytes are the 8-bit image); Bayer (demosaiced at
//! half resolution) and YUV (chroma subsampled, 8-bit rounding) must find the same objects.

mod common;

use lookout::core::detector::Detector;
use lookout::core::image::{ImageView, PixelEncoding};
use lookout::core::model::Model;
use lookout::core::postprocess::{Detection, iou};

fn detector() -> Detector {
    let model = Model::load(&common::default_manifest()).unwrap();
    Detector::new(model, &common::cpu_engine(), None).unwrap()
}

fn detect(det: &mut Detector, view: &ImageView) -> Vec<Detection> {
    det.detect(view).unwrap().detections.to_vec()
}

/// The original, packed rgb8.
fn rgb() -> (usize, usize, Vec<u8>) {
    let (w, h, e, data) = common::load_rgb(&common::image("bus.jpg"));
    assert_eq!(e, PixelEncoding::Rgb8);
    // An even size for the 4:2:0 and 4:2:2 layouts (bus.jpg is 810x1080).
    let (w, h) = (w as usize & !1, h as usize & !1);
    let stride = common::load_rgb(&common::image("bus.jpg")).0 as usize * 3;
    let mut out = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        out.extend_from_slice(&data[y * stride..y * stride + w * 3]);
    }
    (w, h, out)
}

fn yuv(p: &[u8]) -> (i32, i32, i32) {
    let (r, g, b) = (i32::from(p[0]), i32::from(p[1]), i32::from(p[2]));
    (
        ((66 * r + 129 * g + 25 * b + 128) >> 8) + 16,
        ((-38 * r - 74 * g + 112 * b + 128) >> 8) + 128,
        ((112 * r - 94 * g - 18 * b + 128) >> 8) + 128,
    )
}

/// `encoding`'s bytes for the rgb8 image (packed rows; NV planes one after the other).
fn convert(w: usize, h: usize, rgb: &[u8], encoding: PixelEncoding, big_endian: bool) -> Vec<u8> {
    let px = |x: usize, y: usize| &rgb[(y * w + x) * 3..(y * w + x) * 3 + 3];
    let word = |v: u8| {
        // The 8-bit value in the high byte, something else in the low one.
        let (hi, lo) = (v, v ^ 0x5a);
        if big_endian { [hi, lo] } else { [lo, hi] }
    };
    let mut out = Vec::new();
    match encoding {
        PixelEncoding::Rgb16 | PixelEncoding::Bgr16 => {
            for p in rgb.chunks_exact(3) {
                let order = if encoding == PixelEncoding::Rgb16 {
                    [0, 1, 2]
                } else {
                    [2, 1, 0]
                };
                for c in order {
                    out.extend_from_slice(&word(p[c]));
                }
            }
        }
        PixelEncoding::Mono16 => {
            for p in rgb.chunks_exact(3) {
                out.extend_from_slice(&word(p[1]));
            }
        }
        PixelEncoding::BayerRggb8
        | PixelEncoding::BayerBggr8
        | PixelEncoding::BayerGbrg8
        | PixelEncoding::BayerGrbg8 => {
            // Channel (0 r, 1 g, 2 b) at (x % 2, y % 2).
            let cell: [[usize; 2]; 2] = match encoding {
                PixelEncoding::BayerRggb8 => [[0, 1], [1, 2]],
                PixelEncoding::BayerBggr8 => [[2, 1], [1, 0]],
                PixelEncoding::BayerGbrg8 => [[1, 2], [0, 1]],
                _ => [[1, 0], [2, 1]],
            };
            for y in 0..h {
                for x in 0..w {
                    out.push(px(x, y)[cell[y % 2][x % 2]]);
                }
            }
        }
        PixelEncoding::Uyvy | PixelEncoding::Yuyv => {
            for y in 0..h {
                for x in (0..w).step_by(2) {
                    let (y0, u0, v0) = yuv(px(x, y));
                    let (y1, u1, v1) = yuv(px(x + 1, y));
                    let (u, v) = (((u0 + u1 + 1) / 2) as u8, ((v0 + v1 + 1) / 2) as u8);
                    if encoding == PixelEncoding::Uyvy {
                        out.extend_from_slice(&[u, y0 as u8, v, y1 as u8]);
                    } else {
                        out.extend_from_slice(&[y0 as u8, u, y1 as u8, v]);
                    }
                }
            }
        }
        PixelEncoding::Nv21 | PixelEncoding::Nv24 => {
            for y in 0..h {
                for x in 0..w {
                    out.push(yuv(px(x, y)).0 as u8);
                }
            }
            if encoding == PixelEncoding::Nv24 {
                for y in 0..h {
                    for x in 0..w {
                        let (_, u, v) = yuv(px(x, y));
                        out.extend_from_slice(&[u as u8, v as u8]);
                    }
                }
            } else {
                for y in (0..h).step_by(2) {
                    for x in (0..w).step_by(2) {
                        let (mut u, mut v) = (0, 0);
                        for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                            let (_, pu, pv) = yuv(px(x + dx, y + dy));
                            u += pu;
                            v += pv;
                        }
                        out.extend_from_slice(&[((v + 2) / 4) as u8, ((u + 2) / 4) as u8]);
                    }
                }
            }
        }
        _ => unreachable!("direct encodings are not converted here"),
    }
    out
}

/// Every strong detection of `reference` has a same-class match in `got` with IoU >= `min_iou`
/// and a score within `score_tol`; returns the worst IoU and score difference seen.
fn same_objects(
    reference: &[Detection],
    got: &[Detection],
    min_iou: f32,
    score_tol: f32,
    what: &str,
) -> (f32, f32) {
    let (mut worst_iou, mut worst_score) = (1.0f32, 0.0f32);
    for r in reference.iter().filter(|d| d.score >= 0.5) {
        let best = got
            .iter()
            .filter(|g| g.class_id == r.class_id)
            .map(|g| (iou(&r.bbox, &g.bbox), (r.score - g.score).abs()))
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .unwrap_or_else(|| panic!("{what}: no class {} in {got:?}", r.class_id));
        assert!(
            best.0 >= min_iou,
            "{what}: IoU {} for {r:?} in {got:?}",
            best.0
        );
        assert!(
            best.1 <= score_tol,
            "{what}: score diff {} for {r:?}",
            best.1
        );
        worst_iou = worst_iou.min(best.0);
        worst_score = worst_score.max(best.1);
    }
    (worst_iou, worst_score)
}

#[test]
fn sixteen_bit_frames_give_exactly_the_8_bit_detections() {
    let mut det = detector();
    let (w, h, rgb) = rgb();
    let reference = detect(
        &mut det,
        &ImageView::packed(w as u32, h as u32, PixelEncoding::Rgb8, &rgb).unwrap(),
    );
    let grey: Vec<u8> = rgb.chunks_exact(3).map(|p| p[1]).collect();
    let grey_ref = detect(
        &mut det,
        &ImageView::packed(w as u32, h as u32, PixelEncoding::Mono8, &grey).unwrap(),
    );
    for big_endian in [false, true] {
        for (encoding, want) in [
            (PixelEncoding::Rgb16, &reference),
            (PixelEncoding::Bgr16, &reference),
            (PixelEncoding::Mono16, &grey_ref),
        ] {
            let data = convert(w, h, &rgb, encoding, big_endian);
            let view = ImageView::packed(w as u32, h as u32, encoding, &data)
                .unwrap()
                .with_big_endian(big_endian);
            assert_eq!(
                &detect(&mut det, &view),
                want,
                "{encoding} big_endian={big_endian}"
            );
        }
    }
}

#[test]
fn bayer_and_yuv_frames_find_the_same_objects() {
    let mut det = detector();
    let (w, h, rgb) = rgb();
    let reference = detect(
        &mut det,
        &ImageView::packed(w as u32, h as u32, PixelEncoding::Rgb8, &rgb).unwrap(),
    );
    assert!(
        reference.iter().filter(|d| d.score >= 0.5).count() >= 3,
        "{reference:?}"
    );
    for encoding in [
        PixelEncoding::BayerRggb8,
        PixelEncoding::BayerBggr8,
        PixelEncoding::BayerGbrg8,
        PixelEncoding::BayerGrbg8,
        PixelEncoding::Uyvy,
        PixelEncoding::Yuyv,
        PixelEncoding::Nv21,
        PixelEncoding::Nv24,
    ] {
        let data = convert(w, h, &rgb, encoding, false);
        let view = ImageView::new(
            w as u32,
            h as u32,
            w * encoding.bytes_per_pixel(),
            encoding,
            &data,
        )
        .unwrap();
        let got = detect(&mut det, &view);
        // Bayer is demosaiced at half resolution (fine detail goes: the weakest person moves a
        // little); YUV only loses chroma resolution and 8-bit rounding.
        let (min_iou, score_tol) = if encoding.as_ros().starts_with("bayer") {
            (0.7, 0.15)
        } else {
            (0.85, 0.08)
        };
        let (worst_iou, worst_score) =
            same_objects(&reference, &got, min_iou, score_tol, encoding.as_ros());
        eprintln!(
            "{encoding}: {} detections, worst IoU {worst_iou:.3}, worst score difference {worst_score:.3}",
            got.len()
        );
    }
}

#[test]
fn odd_sizes_and_short_chroma_planes_are_bad_input() {
    assert!(ImageView::new(3, 2, 6, PixelEncoding::Uyvy, &[0; 12]).is_err());
    assert!(ImageView::new(4, 3, 4, PixelEncoding::Nv21, &[0; 18]).is_err());
    assert!(ImageView::new(4, 2, 4, PixelEncoding::Nv21, &[0; 11]).is_err());
    assert!(ImageView::new(4, 2, 4, PixelEncoding::Nv24, &[0; 23]).is_err());
    assert!(ImageView::new(1, 4, 1, PixelEncoding::BayerRggb8, &[0; 4]).is_err());
    // A step times height that overflows is too short, not a crash.
    assert!(ImageView::new(4, u32::MAX, usize::MAX / 2, PixelEncoding::Nv24, &[0; 64]).is_err());
}
