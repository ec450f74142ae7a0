//! The fused pass over a band of output rows: vertical filter, horizontal filter, store. Bands are
//! independent (each row depends only on the frame), so two threads can each take one and the
//! tensor comes out bit-identical to a single thread's.

use super::convert;
use super::resample::{self, Kernels};
use super::store::{self, Norm};
use super::taps::Taps;
use crate::core::image::ImageView;

/// One thread's scratch: an intermediate row, the portable pass's accumulators, a ring of
/// converted rows and one staged output row. Sized when a geometry is first seen.
#[derive(Debug, Default)]
pub struct Scratch {
    /// One intermediate row (16-bit, every channel), with the padding the SIMD loads need.
    pub inter: Vec<i16>,
    /// Scratch of the portable vertical pass.
    pub acc: Vec<i32>,
    /// Converted RGB rows (a ring of them) for encodings not read directly.
    pub converted: Vec<u8>,
    /// One output row of 8-bit pixels (packed, source channel order).
    pub staged: Vec<u32>,
}

impl Scratch {
    /// Grows the buffers for a source `width` (pixels) under `horizontal`/`vertical` taps, a
    /// letterboxed row of `out_width`, and converted rows if `converted`.
    pub fn reserve(
        &mut self,
        width: usize,
        horizontal: &Taps,
        vertical: &Taps,
        out_width: usize,
        converted: bool,
    ) {
        let row = width * 4;
        let need = row + resample::inter_padding(horizontal, 4);
        if self.inter.len() < need {
            self.inter.resize(need, 0);
        }
        if self.acc.len() < row {
            self.acc.resize(row, 0);
        }
        if self.staged.len() < out_width {
            self.staged.resize(out_width, 0);
        }
        if converted {
            let slots = vertical.count.iter().copied().max().unwrap_or(1) as usize;
            let need = slots.clamp(1, resample::MAX_SIMD_ROWS) * width * 3;
            if self.converted.len() < need {
                self.converted.resize(need, 0);
            }
        }
    }
}

/// What every band shares (read-only).
#[derive(Clone, Copy)]
pub struct Ctx<'a> {
    /// The frame.
    pub view: ImageView<'a>,
    /// Whether its bytes are read directly (else converted to RGB rows).
    pub direct: bool,
    /// Width of the image resampled, pixels (the frame's, or its converted RGB image's).
    pub source_width: usize,
    /// Channels per source pixel as the kernels see them.
    pub channels: usize,
    /// Source channel feeding tensor channel 0, 1, 2.
    pub src: [usize; 3],
    /// Filter taps.
    pub horizontal: &'a Taps,
    /// Filter taps.
    pub vertical: &'a Taps,
    /// Normalisation.
    pub norm: &'a Norm,
    /// Kernels.
    pub kernels: Kernels,
    /// Tensor width.
    pub tensor_width: usize,
    /// Letterbox offset, pixels.
    pub pad_left: usize,
    /// Letterbox offset, rows.
    pub pad_top: usize,
}

/// Where a band's rows go: the three planes (NCHW) or the interleaved tensor (NHWC), each slice
/// starting at tensor element `offset` (per plane for NCHW).
pub enum Out<'t> {
    /// NCHW planes.
    Planar([&'t mut [f32]; 3]),
    /// NHWC.
    Interleaved(&'t mut [f32]),
}

/// Output rows `rows` of the letterboxed image into `out` (whose slices start at element
/// `offset` of the tensor, per plane).
pub fn resample_rows(
    ctx: &Ctx<'_>,
    rows: std::ops::Range<usize>,
    scratch: &mut Scratch,
    out: Out<'_>,
    offset: usize,
) {
    let view = &ctx.view;
    let n = ctx.source_width * ctx.channels;
    let rw = ctx.horizontal.len();
    let Scratch {
        inter,
        acc,
        converted,
        staged,
    } = scratch;
    if inter.len() < n || acc.len() < n || staged.len() < rw {
        return;
    }
    let mut out = out;
    let mut held = [u32::MAX; resample::MAX_SIMD_ROWS];
    let slots = (converted.len() / n.max(1)).clamp(1, resample::MAX_SIMD_ROWS);
    let mut source_rows: [&[u8]; resample::MAX_SIMD_ROWS] = [&[]; resample::MAX_SIMD_ROWS];
    for y in rows {
        let vt = ctx.vertical;
        let first = vt.start[y] as usize;
        let count = vt.count[y] as usize;
        let weights = &vt.of(y)[..count];
        let inter_row = &mut inter[..n];
        if count > resample::MAX_SIMD_ROWS || (!ctx.direct && count > slots) {
            let scratch_row = if ctx.direct {
                &mut converted[..0]
            } else {
                held[0] = u32::MAX; // slot 0 is the scratch row now
                &mut converted[..n]
            };
            vertical_many(
                view,
                ctx.direct,
                first,
                weights,
                &mut acc[..n],
                scratch_row,
                inter_row,
            );
        } else if ctx.direct {
            for (k, r) in source_rows[..count].iter_mut().enumerate() {
                *r = view.row((first + k) as u32);
            }
            resample::vertical(ctx.kernels, &source_rows[..count], weights, acc, inter_row);
        } else {
            for r in first..first + count {
                let slot = r % slots;
                if held[slot] != r as u32 {
                    convert::rgb_row(view, r as u32, &mut converted[slot * n..(slot + 1) * n]);
                    held[slot] = r as u32;
                }
            }
            let converted = &converted[..];
            let mut conv_rows: [&[u8]; resample::MAX_SIMD_ROWS] = [&[]; resample::MAX_SIMD_ROWS];
            for (k, row) in conv_rows[..count].iter_mut().enumerate() {
                let slot = (first + k) % slots;
                *row = &converted[slot * n..(slot + 1) * n];
            }
            resample::vertical(ctx.kernels, &conv_rows[..count], weights, acc, inter_row);
        }
        let staged = &mut staged[..rw];
        resample::horizontal(ctx.kernels, inter, ctx.channels, ctx.horizontal, staged);
        let base = ((ctx.pad_top + y) * ctx.tensor_width + ctx.pad_left).saturating_sub(offset);
        match &mut out {
            Out::Planar([p0, p1, p2]) => {
                store::planar_row(ctx.kernels, staged, ctx.src, ctx.norm, [p0, p1, p2], base);
            }
            Out::Interleaved(t) => store::interleaved_row(staged, ctx.src, ctx.norm, t, base),
        }
    }
}

/// The vertical pass for more source rows than one SIMD step takes (a downscale of more than
/// about 30x): the portable kernel row by row, still exact. A converted encoding's rows are
/// converted one at a time into `scratch` (`out.len()` bytes).
fn vertical_many(
    view: &ImageView,
    direct: bool,
    first: usize,
    weights: &[i16],
    acc: &mut [i32],
    scratch: &mut [u8],
    out: &mut [i16],
) {
    let n = out.len();
    acc.fill(1 << 7);
    for (k, &wk) in weights.iter().enumerate() {
        let r = (first + k) as u32;
        let row = if direct {
            view.row(r)
        } else {
            convert::rgb_row(view, r, scratch);
            &scratch[..]
        };
        let wk = i32::from(wk);
        for (a, &p) in acc.iter_mut().zip(&row[..n]) {
            *a += wk * i32::from(p);
        }
    }
    for (o, a) in out.iter_mut().zip(acc.iter()) {
        *o = (*a >> 8) as i16;
    }
}
