//! Pre-processing: a borrowed camera frame into the model's input tensor.
//!
//! Two passes over the data:
//! 1. resample the frame (separable triangle filter whose support widens when shrinking, i.e.
//!    anti-aliased "bilinear" as in PIL) into a scratch buffer in the frame's own encoding;
//!    skipped when the frame already has the letterboxed size;
//! 2. one pass that reorders channels, scales, normalises (through per-channel lookup tables)
//!    and writes the scaled image into the tensor in its layout (NCHW or NHWC).
//!
//! Padding is written only when the letterbox geometry changes (a new frame size), since the
//! padded area is the same for every frame of one size.
//!
//! Resampling uses the `resize` crate, whose resizer computes its coefficient tables once at
//! construction and then resamples without allocating. (`fast_image_resize` was measured first:
//! it recomputes its tables on every call, about 700 heap allocations per 1080p frame.) One
//! resizer is kept per frame geometry, up to [`MAX_CACHED_GEOMETRIES`] (one per camera size).
//!
//! Contract: [`Preprocessor::new`] allocates the scratch buffer for the largest resized image
//! (the tensor size, 4 bytes per pixel) and the lookup tables. [`Preprocessor::run`] allocates
//! only the first time it sees a frame geometry (the resizer's tables and line buffer); after
//! that it allocates nothing, never blocks, and fails only on a tensor of the wrong size or a
//! resampler error.

use resize::formats::{Gray, Rgb, Rgba};
use resize::{Pixel, Resizer, Type};

use crate::geometry::Letterbox;
use crate::image::{ImageView, PixelEncoding};
use crate::model::{ColorOrder, InputSpec, Layout, ResizeMode};

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
    /// The resizer rejected the frame.
    #[error("resize failed: {0}")]
    Resize(String),
}

/// Most frame geometries (source size -> resized size) with a ready resampler.
pub const MAX_CACHED_GEOMETRIES: usize = 8;

/// A resampler for one geometry and pixel size.
enum Resampler {
    Rgb(Resizer<Rgb<u8, u8>>),
    Rgba(Resizer<Rgba<u8, u8>>),
    Gray(Resizer<Gray<u8, u8>>),
}

struct CachedResampler {
    key: (u32, u32, u32, u32, usize),
    last_used: u64,
    resampler: Resampler,
}

/// Turns frames into input tensors for one model input. Owns all scratch memory.
pub struct Preprocessor {
    spec: InputSpec,
    resamplers: Vec<CachedResampler>,
    uses: u64,
    /// Packed copy of a frame whose row step is not a whole number of pixels (rare; grown on
    /// first use).
    packed: Vec<u8>,
    /// Resized frame, in the frame's encoding, `resized_width * resized_height * bpp` bytes used.
    scratch: Vec<u8>,
    /// Per tensor channel: 8-bit value -> normalised f32.
    lut: [[f32; 256]; 3],
    /// Geometry whose padding is currently in the tensor (None: tensor not yet padded).
    padded_for: Option<Letterbox>,
}

impl Preprocessor {
    /// Allocates the scratch buffer and lookup tables for `spec`.
    pub fn new(spec: &InputSpec) -> Self {
        let mut lut = [[0f32; 256]; 3];
        for (c, table) in lut.iter_mut().enumerate() {
            for (v, out) in table.iter_mut().enumerate() {
                *out = (v as f32 * spec.scale - spec.mean[c]) / spec.std[c];
            }
        }
        Self {
            spec: spec.clone(),
            resamplers: Vec::with_capacity(MAX_CACHED_GEOMETRIES),
            uses: 0,
            packed: Vec::new(),
            scratch: vec![0u8; spec.width() * spec.height() * 4],
            lut,
            padded_for: None,
        }
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
        if tensor.len() != self.spec.len() {
            return Err(PreprocessError::TensorSize {
                expected: self.spec.len(),
                got: tensor.len(),
            });
        }
        let lb = self.letterbox_for(view.width(), view.height());
        if self.padded_for.is_none_or(|p| !same_placement(&p, &lb)) {
            self.fill_padding(&lb, tensor);
            self.padded_for = Some(lb);
        }
        let bpp = view.encoding().bytes_per_pixel();
        if lb.resized_width == view.width() && lb.resized_height == view.height() {
            // Already the right size: read the frame directly.
            write_tensor_rows(
                &self.spec,
                &self.lut,
                &lb,
                view.encoding(),
                |y| view.row(y),
                tensor,
            );
        } else {
            let len = lb.resized_width as usize * lb.resized_height as usize * bpp;
            self.resample(view, &lb, len)?;
            let row_bytes = lb.resized_width as usize * bpp;
            let scratch = &self.scratch[..len];
            let (lut, spec) = (&self.lut, &self.spec);
            write_tensor_rows(
                spec,
                lut,
                &lb,
                view.encoding(),
                |y| &scratch[y as usize * row_bytes..(y as usize + 1) * row_bytes],
                tensor,
            );
        }
        Ok(lb)
    }

    /// Resamples `view` into `scratch[..len]` at the letterbox's resized size.
    fn resample(
        &mut self,
        view: &ImageView,
        lb: &Letterbox,
        len: usize,
    ) -> Result<(), PreprocessError> {
        let bpp = view.encoding().bytes_per_pixel();
        let key = (
            view.width(),
            view.height(),
            lb.resized_width,
            lb.resized_height,
            bpp,
        );
        self.uses += 1;
        let index = match self.resamplers.iter().position(|r| r.key == key) {
            Some(i) => i,
            None => {
                let resampler = new_resampler(key)?;
                let entry = CachedResampler {
                    key,
                    last_used: 0,
                    resampler,
                };
                if self.resamplers.len() < MAX_CACHED_GEOMETRIES {
                    self.resamplers.push(entry);
                    self.resamplers.len() - 1
                } else {
                    // Replace the least recently used geometry.
                    let (i, _) = self
                        .resamplers
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, r)| r.last_used)
                        .ok_or(PreprocessError::Resize("empty resampler cache".into()))?;
                    self.resamplers[i] = entry;
                    i
                }
            }
        };
        let cached = &mut self.resamplers[index];
        cached.last_used = self.uses;

        // The resampler takes a row stride in whole pixels; other strides are packed first.
        let (src, stride_px): (&[u8], usize) = if view.step_bytes().is_multiple_of(bpp) {
            let need =
                view.step_bytes() * (view.height() as usize - 1) + view.width() as usize * bpp;
            (&view.bytes()[..need], view.step_bytes() / bpp)
        } else {
            let row_bytes = view.width() as usize * bpp;
            self.packed.resize(row_bytes * view.height() as usize, 0);
            for (dst, row) in self.packed.chunks_exact_mut(row_bytes).zip(view.rows(0)) {
                dst.copy_from_slice(row);
            }
            (&self.packed[..], view.width() as usize)
        };
        let dst = &mut self.scratch[..len];
        let err = |e: resize::Error| PreprocessError::Resize(e.to_string());
        match &mut cached.resampler {
            Resampler::Rgb(r) => r
                .resize_stride(
                    bytemuck::cast_slice(src),
                    stride_px,
                    bytemuck::cast_slice_mut(dst),
                )
                .map_err(err),
            Resampler::Rgba(r) => r
                .resize_stride(
                    bytemuck::cast_slice(src),
                    stride_px,
                    bytemuck::cast_slice_mut(dst),
                )
                .map_err(err),
            Resampler::Gray(r) => r
                .resize_stride(
                    bytemuck::cast_slice(src),
                    stride_px,
                    bytemuck::cast_slice_mut(dst),
                )
                .map_err(err),
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
                    let v = self.lut[c][pad];
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
                                tensor[(y * w + x) * 3 + c] = self.lut[c][pad];
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Builds the resampler for `(src_w, src_h, dst_w, dst_h, bytes_per_pixel)` (allocates).
fn new_resampler(key: (u32, u32, u32, u32, usize)) -> Result<Resampler, PreprocessError> {
    let (sw, sh, dw, dh, bpp) = key;
    let (sw, sh, dw, dh) = (sw as usize, sh as usize, dw as usize, dh as usize);
    let err = |e: resize::Error| PreprocessError::Resize(e.to_string());
    Ok(match bpp {
        3 => {
            Resampler::Rgb(Resizer::new(sw, sh, dw, dh, Pixel::RGB8, Type::Triangle).map_err(err)?)
        }
        4 => Resampler::Rgba(
            Resizer::new(sw, sh, dw, dh, Pixel::RGBA8, Type::Triangle).map_err(err)?,
        ),
        _ => Resampler::Gray(
            Resizer::new(sw, sh, dw, dh, Pixel::Gray8, Type::Triangle).map_err(err)?,
        ),
    })
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
    let [r, g, b] = encoding.rgb_offsets();
    // Byte offset (inside one pixel) feeding tensor channel 0, 1, 2.
    let src = match spec.color_order {
        ColorOrder::Rgb => [r, g, b],
        ColorOrder::Bgr => [b, g, r],
    };
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ColorOrder, Layout, ResizeMode};

    fn spec(w: usize, h: usize, layout: Layout, color_order: ColorOrder) -> InputSpec {
        InputSpec {
            name: "images".into(),
            shape: match layout {
                Layout::Nchw => [1, 3, h, w],
                Layout::Nhwc => [1, h, w, 3],
            },
            layout,
            color_order,
            scale: 1.0,
            mean: [0.0; 3],
            std: [1.0; 3],
            resize: ResizeMode::Letterbox,
            pad_value: 114,
        }
    }

    #[test]
    fn bgr_frame_lands_as_rgb_planes_with_grey_padding() {
        // 4x2 bgr8 frame into an 4x4 tensor: rows 1..3 hold the image, rows 0 and 3 are padding.
        let s = spec(4, 4, Layout::Nchw, ColorOrder::Rgb);
        let mut pre = Preprocessor::new(&s);
        let mut frame = Vec::new();
        for i in 0..8u8 {
            frame.extend_from_slice(&[i, 100 + i, 200 + i]); // b, g, r
        }
        let view = ImageView::packed(4, 2, PixelEncoding::Bgr8, &frame).unwrap();
        let mut t = vec![0f32; s.len()];
        let lb = pre.run(&view, &mut t).unwrap();
        assert_eq!((lb.pad_top, lb.resized_height), (1, 2));
        let plane = |c: usize| &t[c * 16..(c + 1) * 16];
        assert_eq!(plane(0)[0], 114.0); // padding
        assert_eq!(plane(0)[4], 200.0); // first pixel's red
        assert_eq!(plane(1)[4], 100.0); // green
        assert_eq!(plane(2)[4], 0.0); // blue
        assert_eq!(plane(2)[11], 7.0); // last pixel's blue
        assert_eq!(plane(2)[12], 114.0);
    }

    #[test]
    fn padded_rows_and_nhwc_bgr_output() {
        // rgba8 with 2 bytes of row padding into a BGR NHWC tensor, scaled and normalised.
        let mut s = spec(2, 2, Layout::Nhwc, ColorOrder::Bgr);
        s.scale = 0.5;
        s.mean = [1.0, 2.0, 3.0];
        s.std = [2.0, 2.0, 2.0];
        let mut pre = Preprocessor::new(&s);
        let frame = [
            10u8, 20, 30, 255, 11, 21, 31, 255, 0, 0, //
            12, 22, 32, 255, 13, 23, 33, 255, 0, 0,
        ];
        let view = ImageView::new(2, 2, 10, PixelEncoding::Rgba8, &frame).unwrap();
        let mut t = vec![0f32; s.len()];
        pre.run(&view, &mut t).unwrap();
        // First pixel: b=30 -> (15-1)/2, g=20 -> (10-2)/2, r=10 -> (5-3)/2.
        assert_eq!(&t[0..3], &[7.0, 4.0, 1.0]);
        // Last pixel: b=33, g=23, r=13.
        assert_eq!(
            &t[9..12],
            &[(16.5 - 1.0) / 2.0, (11.5 - 2.0) / 2.0, (6.5 - 3.0) / 2.0]
        );
    }

    #[test]
    fn mono_is_replicated_and_resized() {
        // A flat 8x8 mono frame resized into a 4x4 tensor stays flat.
        let s = spec(4, 4, Layout::Nchw, ColorOrder::Rgb);
        let mut pre = Preprocessor::new(&s);
        let frame = [77u8; 64];
        let view = ImageView::packed(8, 8, PixelEncoding::Mono8, &frame).unwrap();
        let mut t = vec![0f32; s.len()];
        let lb = pre.run(&view, &mut t).unwrap();
        assert_eq!((lb.resized_width, lb.resized_height), (4, 4));
        assert!(t.iter().all(|v| *v == 77.0), "{t:?}");
    }

    #[test]
    fn padding_is_rewritten_when_the_frame_size_changes() {
        let s = spec(4, 4, Layout::Nchw, ColorOrder::Rgb);
        let mut pre = Preprocessor::new(&s);
        let mut t = vec![0f32; s.len()];
        let wide = [1u8; 4 * 2 * 3];
        pre.run(
            &ImageView::packed(4, 2, PixelEncoding::Rgb8, &wide).unwrap(),
            &mut t,
        )
        .unwrap();
        assert_eq!(t[0], 114.0);
        let tall = [2u8; 2 * 4 * 3];
        pre.run(
            &ImageView::packed(2, 4, PixelEncoding::Rgb8, &tall).unwrap(),
            &mut t,
        )
        .unwrap();
        // Top-left is now padding column, row 0 column 1 is image.
        assert_eq!(t[0], 114.0);
        assert_eq!(t[1], 2.0);
        assert_eq!(t[3], 114.0);
    }

    #[test]
    fn wrong_tensor_size_is_an_error() {
        let s = spec(4, 4, Layout::Nchw, ColorOrder::Rgb);
        let mut pre = Preprocessor::new(&s);
        let frame = [0u8; 12];
        let view = ImageView::packed(2, 2, PixelEncoding::Rgb8, &frame).unwrap();
        let mut t = vec![0f32; 3];
        assert_eq!(
            pre.run(&view, &mut t),
            Err(PreprocessError::TensorSize {
                expected: 48,
                got: 3
            })
        );
    }
}
