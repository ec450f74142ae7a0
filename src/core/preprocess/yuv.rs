//! YUV rows to packed RGB8, a chunk of pixels at a time: the chroma and luma of a chunk are first
//! gathered into small arrays on the stack, then converted by one straight loop the compiler
//! vectorises (AVX2 where the CPU has it, chosen at run time; SSE2 otherwise). BT.601 limited
//! range in 8-bit fixed point, integer only, so every kernel gives the same bytes. Allocates
//! nothing.

use crate::core::image::{ImageView, PixelEncoding};

/// Pixels converted per step.
const CHUNK: usize = 64;

/// One chunk: `y`, `u`, `v` per pixel in, RGB8 out (the first `out.len() / 3` pixels).
#[inline(always)]
fn chunk_to_rgb(y: &[u8; CHUNK], u: &[u8; CHUNK], v: &[u8; CHUNK], out: &mut [u8]) {
    let mut px = [0u32; CHUNK];
    for (((p, &y), &u), &v) in px.iter_mut().zip(y).zip(u).zip(v) {
        let c = (i32::from(y) - 16) * 298 + 128;
        let d = i32::from(u) - 128;
        let e = i32::from(v) - 128;
        let r = ((c + 409 * e) >> 8).clamp(0, 255) as u32;
        let g = ((c - 100 * d - 208 * e) >> 8).clamp(0, 255) as u32;
        let b = ((c + 516 * d) >> 8).clamp(0, 255) as u32;
        *p = r | (g << 8) | (b << 16);
    }
    for (o, p) in out.chunks_exact_mut(3).zip(px) {
        o.copy_from_slice(&p.to_le_bytes()[..3]);
    }
}

/// Row `row` of a YUV `view` as RGB8 into `out` (`width * 3` bytes; fewer pixels if shorter).
#[inline(always)]
fn row_to_rgb(view: &ImageView, row: u32, out: &mut [u8]) {
    let (mut y, mut u, mut v) = ([16u8; CHUNK], [128u8; CHUNK], [128u8; CHUNK]);
    let luma = view.row(row);
    match view.encoding() {
        e @ (PixelEncoding::Uyvy | PixelEncoding::Yuyv) => {
            let uyvy = e == PixelEncoding::Uyvy;
            for (o, g) in out.chunks_mut(3 * CHUNK).zip(luma.chunks(2 * CHUNK)) {
                let pairs = y
                    .chunks_exact_mut(2)
                    .zip(u.chunks_exact_mut(2).zip(v.chunks_exact_mut(2)));
                for ((ys, (us, vs)), g) in pairs.zip(g.chunks_exact(4)) {
                    let [a, b, c, d] = [g[0], g[1], g[2], g[3]];
                    let (y0, cb, y1, cr) = if uyvy { (b, a, d, c) } else { (a, b, c, d) };
                    ys.copy_from_slice(&[y0, y1]);
                    us.fill(cb);
                    vs.fill(cr);
                }
                chunk_to_rgb(&y, &u, &v, o);
            }
        }
        e @ (PixelEncoding::Nv21 | PixelEncoding::Nv24) => {
            let full = e == PixelEncoding::Nv24;
            let chroma = view.chroma_row(if full { row } else { row / 2 });
            // Chroma bytes per chunk of pixels: a V,U pair per 2 pixels (NV21) or U,V per pixel.
            let per_chunk = if full { 2 * CHUNK } else { CHUNK };
            for ((o, l), c) in out
                .chunks_mut(3 * CHUNK)
                .zip(luma.chunks(CHUNK))
                .zip(chroma.chunks(per_chunk))
            {
                y[..l.len()].copy_from_slice(l);
                if full {
                    for ((us, vs), c) in u.iter_mut().zip(v.iter_mut()).zip(c.chunks_exact(2)) {
                        *us = c[0];
                        *vs = c[1];
                    }
                } else {
                    let pairs = u.chunks_exact_mut(2).zip(v.chunks_exact_mut(2));
                    for ((us, vs), c) in pairs.zip(c.chunks_exact(2)) {
                        us.fill(c[1]);
                        vs.fill(c[0]);
                    }
                }
                chunk_to_rgb(&y, &u, &v, o);
            }
        }
        _ => {}
    }
}

/// The AVX2 build of [`row_to_rgb`].
///
/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn row_to_rgb_avx2(view: &ImageView, row: u32, out: &mut [u8]) {
    row_to_rgb(view, row, out)
}

/// Row `row` of a `yuv422`, `yuv422_yuy2`, `nv21` or `nv24` `view` as RGB8 into `out` (at
/// least `width * 3` bytes), with the widest kernel this CPU runs.
pub fn rgb_row(view: &ImageView, row: u32, out: &mut [u8]) {
    let Some(out) = out.get_mut(..view.width() as usize * 3) else {
        return;
    };
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 was detected just above.
        return unsafe { row_to_rgb_avx2(view, row, out) };
    }
    row_to_rgb(view, row, out)
}

/// The portable kernel, for tests that compare it with the one this CPU runs.
pub fn rgb_row_portable(view: &ImageView, row: u32, out: &mut [u8]) {
    if let Some(out) = out.get_mut(..view.width() as usize * 3) {
        row_to_rgb(view, row, out)
    }
}
