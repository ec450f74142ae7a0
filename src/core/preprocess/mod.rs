//! Pre-processing: a borrowed camera frame into the model's input tensor, in one fused pass.
//!
//! For each row of the scaled image, [`resample::vertical`] combines the source rows under the
//! filter into one intermediate row (16-bit, every channel at once), and
//! [`resample::horizontal`] turns it into output pixels which are at once reordered into the
//! model's channel order, normalised (per-channel lookup tables, 8-bit value to f32) and stored
//! at their letterbox position in the tensor's layout (NCHW or NHWC) by [`store`]. No resized
//! image is ever stored: the only scratch is one intermediate row. A frame that already has the
//! letterboxed size is converted directly. Encodings the kernels do not read directly (Bayer,
//! YUV, 16-bit) are converted to RGB rows first, each source row once, into a ring just large
//! enough for the filter's rows ([`convert`]).
//!
//! The filter is PIL's anti-aliased bilinear (a triangle that widens when shrinking) in 14-bit
//! fixed point ([`taps`]); the arithmetic is integer and identical in the portable and the SIMD
//! kernels, so results are bit-identical from run to run and from CPU to CPU. The taps are
//! computed once per frame geometry and kept for up to [`MAX_CACHED_GEOMETRIES`] geometries.
//!
//! Padding is written only when the letterbox geometry changes (a new frame size), since the
//! padded area is the same for every frame of one size.
//!
//! Contract: [`Preprocessor::new`] allocates the lookup tables. [`Preprocessor::run`] allocates
//! only the first time it sees a frame geometry, or a geometry with a converted encoding (taps,
//! the intermediate and converted rows); after that it allocates nothing, never blocks, and
//! fails only on a tensor of the wrong size.

pub mod convert;
pub(crate) mod helper;
pub mod resample;
mod rows;
pub mod store;
pub mod taps;
pub mod yuv;

use crate::core::geometry::Letterbox;
use crate::core::image::{ImageView, PixelEncoding};
use crate::core::model::{ColorOrder, InputSpec, Layout, MAX_BATCH, ResizeMode};
use helper::Helper;
use resample::Kernels;
use rows::{Ctx, Out, Scratch};
use std::sync::Mutex;
use store::Norm;
use taps::Taps;

/// Why a frame could not be pre-processed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PreprocessError {
    /// The output tensor slice does not have the size of the model input.
    #[error("input tensor has {got} elements, the model needs {expected}")]
    TensorSize {
        /// Elements needed.
        expected: usize,
        /// Elements given.
        got: usize,
    },
}

/// Most frame geometries (source size -> resized size) with taps ready.
pub const MAX_CACHED_GEOMETRIES: usize = 8;

/// The taps of one geometry.
struct Geometry {
    key: (u32, u32, u32, u32, bool),
    last_used: u64,
    horizontal: Taps,
    vertical: Taps,
}

/// Turns frames into input tensors for one model input. Owns all scratch memory.
pub struct Preprocessor {
    spec: InputSpec,
    kernels: Kernels,
    geometries: Vec<Geometry>,
    uses: u64,
    /// Each thread's scratch (the caller's, the helper's).
    scratch: [Scratch; 2],
    /// The second thread, if pre-processing runs on two.
    helper: Option<Helper>,
    /// Normalisation per tensor channel (with its 8-bit lookup tables).
    norm: Norm,
    /// Per frame slot of a batched input: the geometry whose padding is currently there (None:
    /// not yet padded).
    padded_for: [Option<Letterbox>; MAX_BATCH],
}

impl Preprocessor {
    /// Allocates the scratch buffer and lookup tables for `spec`.
    pub fn new(spec: &InputSpec) -> Self {
        Self::with_kernels(spec, Kernels::detect())
    }

    /// As [`Self::new`], with the given kernels (tests and benches compare them).
    pub fn with_kernels(spec: &InputSpec, kernels: Kernels) -> Self {
        Self::with_threads(spec, kernels, 1)
    }

    /// As [`Self::with_kernels`] on `threads` threads (1 or 2): with 2, each frame's rows are cut
    /// into bands; a `lookout-preprocess` thread takes bands from the top while the caller takes
    /// them from the bottom, so a helper that wakes late (or shares its core) costs nothing but
    /// its share. The result is bit-identical. Spawns that thread now.
    pub fn with_threads(spec: &InputSpec, kernels: Kernels, threads: usize) -> Self {
        Self {
            spec: spec.clone(),
            kernels,
            geometries: Vec::with_capacity(MAX_CACHED_GEOMETRIES),
            uses: 0,
            scratch: [Scratch::default(), Scratch::default()],
            helper: if threads >= 2 { Helper::start() } else { None },
            norm: Norm::new(spec.scale, spec.mean, spec.std),
            padded_for: [None; MAX_BATCH],
        }
    }

    /// Threads pre-processing runs on (1 or 2).
    pub fn threads(&self) -> usize {
        1 + usize::from(self.helper.is_some())
    }

    /// The SIMD kernels in use (`avx2+ssse3`, ..., `portable`).
    pub fn kernels(&self) -> &'static str {
        self.kernels.name()
    }

    /// Forgets which padding each slot holds (the tensor memory was replaced, e.g. by a new
    /// session): the next frame of each slot writes its padding again.
    pub fn forget_padding(&mut self) {
        self.padded_for = [None; MAX_BATCH];
    }

    /// The input specification this pre-processor serves.
    pub fn spec(&self) -> &InputSpec {
        &self.spec
    }

    /// The letterbox `view` would get, without touching any data.
    pub fn letterbox_for(&self, width: u32, height: u32) -> Letterbox {
        Letterbox::fit(
            width,
            height,
            self.spec.width() as u32,
            self.spec.height() as u32,
            self.spec.resize == ResizeMode::Letterbox,
        )
    }

    /// Writes `view` into `tensor` (the model input, `spec.len()` f32) and returns where the frame
    /// landed. See the module contract for allocation.
    pub fn run(
        &mut self,
        view: &ImageView,
        tensor: &mut [f32],
    ) -> Result<Letterbox, PreprocessError> {
        self.run_sized(view, (view.width(), view.height()), tensor)
    }

    /// As [`Self::run`] for a view that is a reduced copy of a larger image of `image_size`
    /// (a JPEG decoded at a reduced scale): the letterbox, and so the mapping of detections
    /// back to pixels, is the full image's; the pixels are resampled from the view.
    pub fn run_sized(
        &mut self,
        view: &ImageView,
        image_size: (u32, u32),
        tensor: &mut [f32],
    ) -> Result<Letterbox, PreprocessError> {
        self.run_slot(view, image_size, tensor, 0)
    }

    /// As [`Self::run_sized`] into frame slot `slot` (`< MAX_BATCH`) of a batched input: each
    /// slot is its own tensor memory, whose padding is remembered separately. Callers keep
    /// slot `i` on the same memory from frame to frame, or call [`Self::forget_padding`].
    pub fn run_slot(
        &mut self,
        view: &ImageView,
        image_size: (u32, u32),
        tensor: &mut [f32],
        slot: usize,
    ) -> Result<Letterbox, PreprocessError> {
        if tensor.len() != self.spec.len() {
            return Err(PreprocessError::TensorSize {
                expected: self.spec.len(),
                got: tensor.len(),
            });
        }
        let lb = self.letterbox_for(image_size.0, image_size.1);
        let padded = self.padded_for.get(slot).copied().flatten();
        if padded.is_none_or(|p| !same_placement(&p, &lb)) {
            self.fill_padding(&lb, tensor);
            if let Some(p) = self.padded_for.get_mut(slot) {
                *p = Some(lb);
            }
        }
        let direct = view.encoding().is_direct();
        if direct && lb.resized_width == view.width() && lb.resized_height == view.height() {
            // Already the right size: read the frame directly.
            write_tensor_rows(
                &self.spec,
                &self.norm.lut,
                &lb,
                view.encoding(),
                |y| view.row(y),
                tensor,
            );
        } else {
            self.resample_into(view, &lb, tensor);
        }
        Ok(lb)
    }

    /// The cached taps of a geometry (source `width x height`, direct or converted rows, into
    /// the letterbox), computed on first use with the buffers it needs (allocates then only).
    fn geometry(&mut self, width: u32, height: u32, converted: bool, lb: &Letterbox) -> usize {
        let key = (
            width,
            height,
            lb.resized_width,
            lb.resized_height,
            converted,
        );
        self.uses += 1;
        if let Some(i) = self.geometries.iter().position(|g| g.key == key) {
            self.geometries[i].last_used = self.uses;
            return i;
        }
        let entry = Geometry {
            key,
            last_used: self.uses,
            horizontal: Taps::new(width as usize, lb.resized_width as usize),
            vertical: Taps::new(height as usize, lb.resized_height as usize),
        };
        let threads = self.threads();
        for scratch in &mut self.scratch[..threads] {
            scratch.reserve(
                width as usize,
                &entry.horizontal,
                &entry.vertical,
                lb.resized_width as usize,
                converted,
            );
        }
        if self.geometries.len() < MAX_CACHED_GEOMETRIES {
            self.geometries.push(entry);
            return self.geometries.len() - 1;
        }
        // Replace the least recently used geometry.
        let i = (0..self.geometries.len())
            .min_by_key(|&i| self.geometries[i].last_used)
            .unwrap_or(0);
        self.geometries[i] = entry;
        i
    }

    /// The fused pass: resample `view` row by row straight into the tensor ([`rows`]), on one
    /// or two threads. Encodings that are not read directly are converted to RGB rows first,
    /// each source row once, into a small ring of rows ([`convert`]).
    fn resample_into(&mut self, view: &ImageView, lb: &Letterbox, tensor: &mut [f32]) {
        let direct = view.encoding().is_direct();
        let (sw, sh) = if direct {
            (view.width(), view.height())
        } else {
            convert::rgb_size(view)
        };
        let g = self.geometry(sw, sh, !direct, lb);
        let (channels, src) = if direct {
            let e = view.encoding();
            (e.bytes_per_pixel(), channel_sources(&self.spec, e))
        } else {
            (3, channel_sources(&self.spec, PixelEncoding::Rgb8))
        };
        let (w, h) = (self.spec.width(), self.spec.height());
        let Self {
            geometries,
            scratch,
            helper,
            norm,
            spec,
            kernels,
            ..
        } = self;
        let geometry = &geometries[g];
        let ctx = Ctx {
            view: *view,
            direct,
            source_width: sw as usize,
            channels,
            src,
            horizontal: &geometry.horizontal,
            vertical: &geometry.vertical,
            norm,
            kernels: *kernels,
            tensor_width: w,
            pad_left: lb.pad_left as usize,
            pad_top: lb.pad_top as usize,
        };
        let rh = lb.resized_height as usize;
        let [ours, theirs] = scratch;
        // Too few rows to be worth a hand-off: one thread.
        let helper = helper.as_ref().filter(|_| rh >= 32);
        let n = if helper.is_some() { BANDS } else { 1 };
        let bands = bands(tensor, spec.layout, (w, h), lb.pad_top as usize, rh, n);
        let run = |band: &Mutex<Option<Band<'_>>>, scratch: &mut Scratch| {
            let taken = band.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(b) = taken {
                rows::resample_rows(&ctx, b.rows, scratch, b.out, b.offset);
            }
        };
        match helper {
            // The helper takes bands from the top, the caller from the bottom, until they meet:
            // a helper that wakes late costs nothing, the caller just takes more bands.
            Some(helper) => {
                let mut top = || bands.iter().for_each(|b| run(b, theirs));
                helper.join(&mut top, || bands.iter().rev().for_each(|b| run(b, ours)));
            }
            None => bands.iter().for_each(|b| run(b, ours)),
        }
    }

    /// Fills every tensor element outside the scaled image with the padding value.
    fn fill_padding(&self, lb: &Letterbox, tensor: &mut [f32]) {
        let (w, h) = (self.spec.width(), self.spec.height());
        let pad = self.spec.pad_value as usize;
        let x0 = lb.pad_left as usize;
        let x1 = x0 + lb.resized_width as usize;
        let y0 = lb.pad_top as usize;
        let y1 = y0 + lb.resized_height as usize;
        let inside = |x: usize, y: usize| x >= x0 && x < x1 && y >= y0 && y < y1;
        match self.spec.layout {
            Layout::Nchw => {
                for c in 0..3 {
                    let v = self.norm.lut[c][pad];
                    let plane = &mut tensor[c * w * h..(c + 1) * w * h];
                    for y in 0..h {
                        for x in 0..w {
                            if !inside(x, y) {
                                plane[y * w + x] = v;
                            }
                        }
                    }
                }
            }
            Layout::Nhwc => {
                for y in 0..h {
                    for x in 0..w {
                        if !inside(x, y) {
                            for c in 0..3 {
                                tensor[(y * w + x) * 3 + c] = self.norm.lut[c][pad];
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Byte offset inside one source pixel feeding tensor channel 0, 1, 2.
fn channel_sources(spec: &InputSpec, encoding: PixelEncoding) -> [usize; 3] {
    let [r, g, b] = encoding.rgb_offsets();
    match spec.color_order {
        ColorOrder::Rgb => [r, g, b],
        ColorOrder::Bgr => [b, g, r],
    }
}

/// Two letterboxes pad the same tensor elements.
fn same_placement(a: &Letterbox, b: &Letterbox) -> bool {
    (a.pad_left, a.pad_top, a.resized_width, a.resized_height)
        == (b.pad_left, b.pad_top, b.resized_width, b.resized_height)
}

/// The single conversion pass: for every pixel of the scaled image, pick the model's channels
/// from the frame's encoding, normalise through the lookup tables and store at the letterbox
/// offset in the tensor's layout.
fn write_tensor_rows<'r>(
    spec: &InputSpec,
    lut: &[[f32; 256]; 3],
    lb: &Letterbox,
    encoding: PixelEncoding,
    row: impl Fn(u32) -> &'r [u8],
    tensor: &mut [f32],
) {
    let bpp = encoding.bytes_per_pixel();
    let src = channel_sources(spec, encoding);
    let (w, h) = (spec.width(), spec.height());
    let x0 = lb.pad_left as usize;
    let rw = lb.resized_width as usize;
    match spec.layout {
        Layout::Nchw => {
            let (p0, rest) = tensor.split_at_mut(w * h);
            let (p1, p2) = rest.split_at_mut(w * h);
            for y in 0..lb.resized_height {
                let line = row(y);
                let base = (lb.pad_top as usize + y as usize) * w + x0;
                let o0 = &mut p0[base..base + rw];
                let o1 = &mut p1[base..base + rw];
                let o2 = &mut p2[base..base + rw];
                for (i, px) in line.chunks_exact(bpp).enumerate() {
                    o0[i] = lut[0][px[src[0]] as usize];
                    o1[i] = lut[1][px[src[1]] as usize];
                    o2[i] = lut[2][px[src[2]] as usize];
                }
            }
        }
        Layout::Nhwc => {
            for y in 0..lb.resized_height {
                let line = row(y);
                let base = ((lb.pad_top as usize + y as usize) * w + x0) * 3;
                let out = &mut tensor[base..base + rw * 3];
                for (o, px) in out.chunks_exact_mut(3).zip(line.chunks_exact(bpp)) {
                    o[0] = lut[0][px[src[0]] as usize];
                    o[1] = lut[1][px[src[1]] as usize];
                    o[2] = lut[2][px[src[2]] as usize];
                }
            }
        }
    }
}

/// Bands of output rows two threads share.
const BANDS: usize = 8;

/// A band of output rows and the part of the tensor it writes (starting at element `offset`,
/// per plane for NCHW).
struct Band<'t> {
    rows: std::ops::Range<usize>,
    out: Out<'t>,
    offset: usize,
}

/// The first `len` elements of `*p` (fewer if it is shorter), leaving the rest in `*p`.
fn cut<'t>(p: &mut &'t mut [f32], len: usize) -> &'t mut [f32] {
    let whole = std::mem::take(p);
    let (band, rest) = whole.split_at_mut(len.min(whole.len()));
    *p = rest;
    band
}

/// `tensor` cut into `n` (at most [`BANDS`]) bands of the `rh` resized rows, each behind a lock
/// that the thread taking the band holds only while taking it. No allocation.
fn bands(
    tensor: &mut [f32],
    layout: Layout,
    (w, h): (usize, usize),
    pad_top: usize,
    rh: usize,
    n: usize,
) -> [Mutex<Option<Band<'_>>>; BANDS] {
    let n = n.clamp(1, BANDS);
    let mut bands: [Mutex<Option<Band<'_>>>; BANDS] = Default::default();
    let (mut planes, channels) = match layout {
        Layout::Nchw => {
            let (p0, rest) = tensor.split_at_mut(w * h);
            let (p1, p2) = rest.split_at_mut(w * h);
            ([p0, p1, p2], 1)
        }
        Layout::Nhwc => ([tensor, &mut [][..], &mut [][..]], 3),
    };
    let mut start = 0;
    for (b, slot) in bands.iter_mut().take(n).enumerate() {
        let rows = rh * b / n..rh * (b + 1) / n;
        let end = if b + 1 == n {
            w * h
        } else {
            (pad_top + rows.end) * w
        };
        let len = end - start;
        let out = match layout {
            Layout::Nchw => {
                let [p0, p1, p2] = &mut planes;
                Out::Planar([cut(p0, len), cut(p1, len), cut(p2, len)])
            }
            Layout::Nhwc => Out::Interleaved(cut(&mut planes[0], len * channels)),
        };
        *slot.get_mut().unwrap_or_else(|p| p.into_inner()) = Some(Band {
            rows,
            out,
            offset: start,
        });
        start = end;
    }
    bands
}

/// A deterministic pseudo-random byte pattern (xorshift), for the kernels' tests.
#[cfg(test)]
pub(crate) fn test_bytes(n: usize, seed: u32) -> Vec<u8> {
    let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s >> 24) as u8
        })
        .collect()
}

#[cfg(test)]
mod tests;
