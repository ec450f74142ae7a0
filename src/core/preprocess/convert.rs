//! Rows of the encodings the resampler does not read directly, converted to packed RGB8.
//!
//! - Bayer (`bayer_rggb8`, ...): demosaiced at half resolution, one RGB pixel per 2x2 cell (its
//!   red and blue, and the mean of its two greens), so the image to resample is `w/2 x h/2`. A
//!   detector's input is smaller than that for every common camera, so nothing is lost that the
//!   letterbox would keep.
//! - YUV (`yuv422`, `yuv422_yuy2`, `nv21`, `nv24`): BT.601 limited range (Y 16..235), the matrix
//!   camera drivers and OpenCV's `COLOR_YUV2RGB_*` use, in 8-bit fixed point, converted a chunk
//!   of pixels at a time by the vectorised kernels of [`super::yuv`].
//! - 16-bit (`mono16`, `rgb16`, `bgr16`): the 8 most significant bits, in the byte order the
//!   message states.
//!
//! Integer arithmetic only: the same bytes give the same RGB on every machine. Allocates nothing.

use crate::core::image::{ImageView, PixelEncoding};

/// The size of the RGB image `view` is resampled from (half of it for Bayer).
pub fn rgb_size(view: &ImageView) -> (u32, u32) {
    match view.encoding() {
        PixelEncoding::BayerRggb8
        | PixelEncoding::BayerBggr8
        | PixelEncoding::BayerGbrg8
        | PixelEncoding::BayerGrbg8 => (view.width() / 2, view.height() / 2),
        _ => (view.width(), view.height()),
    }
}

/// Writes row `y` of the RGB image of `view` (see [`rgb_size`]) into `out` (at least
/// `rgb_size(view).0 * 3` bytes). Direct encodings are not converted here (nothing written).
pub fn rgb_row(view: &ImageView, y: u32, out: &mut [u8]) {
    let (w, _) = rgb_size(view);
    let w = w as usize;
    let Some(out) = out.get_mut(..w * 3) else {
        return;
    };
    let high = usize::from(!view.big_endian()); // index of the high byte of a 16-bit sample
    match view.encoding() {
        PixelEncoding::Mono16 => {
            for (o, px) in out.chunks_exact_mut(3).zip(view.row(y).chunks_exact(2)) {
                o.fill(px[high]);
            }
        }
        e @ (PixelEncoding::Rgb16 | PixelEncoding::Bgr16) => {
            let [r, g, b] = if e == PixelEncoding::Rgb16 {
                [0, 1, 2]
            } else {
                [2, 1, 0]
            };
            for (o, px) in out.chunks_exact_mut(3).zip(view.row(y).chunks_exact(6)) {
                o[0] = px[2 * r + high];
                o[1] = px[2 * g + high];
                o[2] = px[2 * b + high];
            }
        }
        e @ (PixelEncoding::BayerRggb8
        | PixelEncoding::BayerBggr8
        | PixelEncoding::BayerGbrg8
        | PixelEncoding::BayerGrbg8) => {
            let (top, bottom) = (view.row(2 * y), view.row(2 * y + 1));
            for (x, o) in out.chunks_exact_mut(3).enumerate() {
                let (p00, p01) = (top[2 * x], top[2 * x + 1]);
                let (p10, p11) = (bottom[2 * x], bottom[2 * x + 1]);
                let mean = |a: u8, b: u8| ((u16::from(a) + u16::from(b) + 1) >> 1) as u8;
                let (r, g, b) = match e {
                    PixelEncoding::BayerRggb8 => (p00, mean(p01, p10), p11),
                    PixelEncoding::BayerBggr8 => (p11, mean(p01, p10), p00),
                    PixelEncoding::BayerGbrg8 => (p10, mean(p00, p11), p01),
                    _ => (p01, mean(p00, p11), p10), // grbg
                };
                o.copy_from_slice(&[r, g, b]);
            }
        }
        PixelEncoding::Uyvy | PixelEncoding::Yuyv | PixelEncoding::Nv21 | PixelEncoding::Nv24 => {
            super::yuv::rgb_row(view, y, out)
        }
        PixelEncoding::Rgb8
        | PixelEncoding::Bgr8
        | PixelEncoding::Rgba8
        | PixelEncoding::Bgra8
        | PixelEncoding::Mono8 => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// BT.601 limited range, 8-bit fixed point, one pixel at a time: the reference the chunked
    /// kernels of `yuv.rs` must match byte for byte.
    fn yuv_to_rgb(y: u8, u: u8, v: u8) -> [u8; 3] {
        let c = (i32::from(y) - 16) * 298;
        let d = i32::from(u) - 128;
        let e = i32::from(v) - 128;
        let clamp8 = |v: i32| v.clamp(0, 255) as u8;
        [
            clamp8((c + 409 * e + 128) >> 8),
            clamp8((c - 100 * d - 208 * e + 128) >> 8),
            clamp8((c + 516 * d + 128) >> 8),
        ]
    }

    use crate::core::preprocess::test_bytes as bytes;

    #[test]
    fn yuv_kernels_match_the_per_pixel_reference() {
        use crate::core::preprocess::yuv;
        // Widths around the chunk size; odd ones where the layout has them (4:4:4).
        for w in [1usize, 2, 6, 62, 63, 64, 65, 66, 130, 1280] {
            for e in [
                PixelEncoding::Uyvy,
                PixelEncoding::Yuyv,
                PixelEncoding::Nv21,
                PixelEncoding::Nv24,
            ] {
                if w % 2 == 1 && e != PixelEncoding::Nv24 {
                    continue;
                }
                let h = 4usize;
                let (data, step) = match e {
                    PixelEncoding::Uyvy | PixelEncoding::Yuyv => {
                        (bytes(w * 2 * h, w as u32), w * 2)
                    }
                    PixelEncoding::Nv21 => (bytes(w * h + w * h / 2, w as u32), w),
                    _ => (bytes(w * h * 3, w as u32), w),
                };
                let view = ImageView::new(w as u32, h as u32, step, e, &data).unwrap();
                for r in 0..h as u32 {
                    let mut want = Vec::new();
                    for x in 0..w {
                        let (l, u, v) = match e {
                            PixelEncoding::Uyvy | PixelEncoding::Yuyv => {
                                let g = &view.row(r)[(x / 2) * 4..(x / 2) * 4 + 4];
                                let uyvy = e == PixelEncoding::Uyvy;
                                let l = if uyvy {
                                    g[1 + 2 * (x % 2)]
                                } else {
                                    g[2 * (x % 2)]
                                };
                                if uyvy {
                                    (l, g[0], g[2])
                                } else {
                                    (l, g[1], g[3])
                                }
                            }
                            PixelEncoding::Nv21 => {
                                let c = view.chroma_row(r / 2);
                                (view.row(r)[x], c[2 * (x / 2) + 1], c[2 * (x / 2)])
                            }
                            _ => {
                                let c = view.chroma_row(r);
                                (view.row(r)[x], c[2 * x], c[2 * x + 1])
                            }
                        };
                        want.extend_from_slice(&yuv_to_rgb(l, u, v));
                    }
                    let mut fast = vec![0u8; w * 3];
                    let mut portable = vec![0u8; w * 3];
                    yuv::rgb_row(&view, r, &mut fast);
                    yuv::rgb_row_portable(&view, r, &mut portable);
                    assert_eq!(fast, want, "{e} width {w} row {r}");
                    assert_eq!(portable, want, "{e} width {w} row {r}");
                }
            }
        }
    }

    fn row(view: &ImageView, y: u32) -> Vec<u8> {
        let mut out = vec![0u8; rgb_size(view).0 as usize * 3];
        rgb_row(view, y, &mut out);
        out
    }

    #[test]
    fn bayer_cells_become_one_pixel() {
        // One 2x2 cell per pattern, values r=200 g=100/102 b=50.
        let cases = [
            (PixelEncoding::BayerRggb8, [200, 100, 102, 50]),
            (PixelEncoding::BayerBggr8, [50, 100, 102, 200]),
            (PixelEncoding::BayerGbrg8, [100, 50, 200, 102]),
            (PixelEncoding::BayerGrbg8, [100, 200, 50, 102]),
        ];
        for (e, cell) in cases {
            let view = ImageView::packed(2, 2, e, &cell).unwrap();
            assert_eq!(rgb_size(&view), (1, 1));
            assert_eq!(row(&view, 0), vec![200, 101, 50], "{e}");
        }
    }

    #[test]
    fn yuv_grey_and_primaries() {
        // Y=235, U=V=128 is white; Y=16 black; BT.601 red is Y=81 U=90 V=240.
        let uyvy = [128u8, 235, 128, 16];
        let view = ImageView::packed(2, 1, PixelEncoding::Uyvy, &uyvy).unwrap();
        assert_eq!(row(&view, 0), vec![255, 255, 255, 0, 0, 0]);
        let yuyv = [81u8, 90, 81, 240];
        let view = ImageView::packed(2, 1, PixelEncoding::Yuyv, &yuyv).unwrap();
        let r = row(&view, 0);
        assert!(r[0] >= 250 && r[1] <= 5 && r[2] <= 5, "{r:?}");
    }

    #[test]
    fn nv21_and_nv24_read_their_chroma_planes() {
        // 2x2 NV21: four Y then one V/U pair; 1x1 NV24: one Y then U, V.
        let nv21 = [81u8, 81, 81, 81, 240, 90];
        let view = ImageView::new(2, 2, 2, PixelEncoding::Nv21, &nv21).unwrap();
        let r = row(&view, 1);
        assert!(r[3] >= 250 && r[4] <= 5, "{r:?}");
        let nv24 = [81u8, 90, 240];
        let view = ImageView::new(1, 1, 1, PixelEncoding::Nv24, &nv24).unwrap();
        assert_eq!(
            row(&view, 0),
            row(
                &ImageView::new(2, 2, 2, PixelEncoding::Nv21, &nv21).unwrap(),
                0
            )[..3]
                .to_vec()
        );
        // A chroma plane that is too short is a geometry error, not a panic.
        assert!(ImageView::new(2, 2, 2, PixelEncoding::Nv21, &nv21[..5]).is_err());
        assert!(ImageView::new(3, 2, 3, PixelEncoding::Nv21, &[0; 9]).is_err());
    }

    #[test]
    fn sixteen_bit_takes_the_high_byte_in_either_order() {
        let le = [0x34u8, 0x12, 0x78, 0x56, 0xbc, 0x9a];
        let view = ImageView::packed(1, 1, PixelEncoding::Rgb16, &le).unwrap();
        assert_eq!(row(&view, 0), vec![0x12, 0x56, 0x9a]);
        let view = view.with_big_endian(true);
        assert_eq!(row(&view, 0), vec![0x34, 0x78, 0xbc]);
        let view = ImageView::packed(1, 1, PixelEncoding::Bgr16, &le).unwrap();
        assert_eq!(row(&view, 0), vec![0x9a, 0x56, 0x12]);
        let view = ImageView::packed(3, 1, PixelEncoding::Mono16, &le).unwrap();
        assert_eq!(
            row(&view, 0),
            vec![0x12, 0x12, 0x12, 0x56, 0x56, 0x56, 0x9a, 0x9a, 0x9a]
        );
    }
}
