//! What a camera's picture looks like, measured on the model's input tensor right after
//! pre-processing: no second pass over the camera frame, only over the small letterboxed image
//! (every fourth pixel of every fourth row: about 6,000 points for a 416x234 image, 0.03 ms).
//!
//! [`InputMeter::measure`] gives, in 8-bit luminance units (BT.601 weights of the model's
//! channels, the normalisation undone): mean brightness, contrast (standard deviation), the
//! fractions of near-black (below 16) and saturated (above 250) points, a sharpness measure (the
//! variance of a 4-neighbour Laplacian on the sampling grid divided by the variance of the
//! luminance, so that it does not depend on contrast: the test photos and the vtest street give
//! 1.7 to 2.8, the photos box-blurred over 25 pixels 0.04 to 0.28) and a fingerprint of the quantised
//! luminance grid (equal fingerprints: the same picture again, a frozen camera). The monitor that
//! turns these into levels lives on the publishing side ([`crate::runtime::input_health`]).
//!
//! Contract: [`InputMeter::new`] allocates the grid for the model's input size; `measure`
//! allocates nothing, never blocks and cannot fail (a tensor of the wrong size gives zeros).
//! The arithmetic is sequential and in a fixed order: identical inputs give identical outputs.

use crate::core::geometry::Letterbox;
use crate::core::model::{ColorOrder, InputSpec, Layout};

/// Luminance below this is near black.
pub const DARK_LEVEL: f32 = 16.0;
/// Luminance above this is saturated.
pub const SATURATED_LEVEL: f32 = 250.0;
/// Distance between sampled points, tensor pixels.
const STRIDE: usize = 4;

/// The picture of one frame, in 8-bit luminance units.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct InputStats {
    /// Points measured (0: nothing measured).
    pub points: u32,
    /// Mean luminance, 0..255.
    pub brightness: f32,
    /// Standard deviation of the luminance.
    pub contrast: f32,
    /// Fraction of points below [`DARK_LEVEL`].
    pub dark_fraction: f32,
    /// Fraction of points above [`SATURATED_LEVEL`].
    pub saturated_fraction: f32,
    /// Variance of the Laplacian on the sampling grid over the variance of the luminance (low:
    /// blurred; 0 for a flat picture).
    pub sharpness: f32,
    /// FNV-1a hash of the luminance grid quantised to 8 bits.
    pub fingerprint: u64,
}

/// Measures [`InputStats`] on one model input; owns the sampling grid.
#[derive(Debug)]
pub struct InputMeter {
    spec: InputSpec,
    /// Per tensor channel: luminance = sum of `gain[c] * value + offset[c]`.
    gain: [f32; 3],
    offset: [f32; 3],
    grid: Vec<f32>,
}

impl InputMeter {
    /// A meter for tensors of `spec` (allocates the grid).
    pub fn new(spec: &InputSpec) -> Self {
        // Luminance weights of the tensor's channels, in the model's order.
        let weights = match spec.color_order {
            ColorOrder::Rgb => [0.299f32, 0.587, 0.114],
            ColorOrder::Bgr => [0.114f32, 0.587, 0.299],
        };
        let mut gain = [0f32; 3];
        let mut offset = [0f32; 3];
        for c in 0..3 {
            // value = (v8 * scale - mean) / std  =>  v8 = (value * std + mean) / scale.
            gain[c] = weights[c] * spec.std[c] / spec.scale;
            offset[c] = weights[c] * spec.mean[c] / spec.scale;
        }
        let cells = (spec.width() / STRIDE + 1) * (spec.height() / STRIDE + 1);
        Self {
            spec: spec.clone(),
            gain,
            offset,
            grid: vec![0.0; cells],
        }
    }

    /// Measures the image at `letterbox` in `tensor` (one frame of the model input).
    pub fn measure(&mut self, tensor: &[f32], letterbox: &Letterbox) -> InputStats {
        let (w, h) = (self.spec.width(), self.spec.height());
        if tensor.len() != w * h * 3 {
            return InputStats::default();
        }
        let x0 = (letterbox.pad_left as usize).min(w);
        let y0 = (letterbox.pad_top as usize).min(h);
        let x1 = (x0 + letterbox.resized_width as usize).min(w);
        let y1 = (y0 + letterbox.resized_height as usize).min(h);
        let gw = (x1 - x0).div_ceil(STRIDE);
        let gh = (y1 - y0).div_ceil(STRIDE);
        if gw == 0 || gh == 0 || gw * gh > self.grid.len() {
            return InputStats::default();
        }
        let (g, off) = (self.gain, self.offset[0] + self.offset[1] + self.offset[2]);
        let plane = w * h;
        let (mut sum, mut sum_sq) = (0f64, 0f64);
        let (mut dark, mut saturated) = (0u32, 0u32);
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for (gy, row) in self.grid.chunks_exact_mut(gw).take(gh).enumerate() {
            let y = y0 + gy * STRIDE;
            match self.spec.layout {
                Layout::Nchw => {
                    let at = |c: usize| &tensor[c * plane + y * w + x0..c * plane + y * w + x1];
                    let (r0, r1, r2) = (at(0), at(1), at(2));
                    for (gx, l) in row.iter_mut().enumerate() {
                        let i = gx * STRIDE;
                        *l = g[0] * r0[i] + g[1] * r1[i] + g[2] * r2[i] + off;
                    }
                }
                Layout::Nhwc => {
                    let r = &tensor[(y * w + x0) * 3..(y * w + x1) * 3];
                    for (gx, l) in row.iter_mut().enumerate() {
                        let i = gx * STRIDE * 3;
                        *l = g[0] * r[i] + g[1] * r[i + 1] + g[2] * r[i + 2] + off;
                    }
                }
            }
            let (s, sq) = sums(row);
            sum += f64::from(s);
            sum_sq += f64::from(sq);
            for &l in row.iter() {
                dark += u32::from(l < DARK_LEVEL);
                saturated += u32::from(l > SATURATED_LEVEL);
            }
            // The quantised row, eight points per step of the hash.
            for chunk in row.chunks(8) {
                let mut word = 0u64;
                for (k, &l) in chunk.iter().enumerate() {
                    word |= u64::from(l.clamp(0.0, 255.0) as u8) << (8 * k);
                }
                hash = (hash ^ word).wrapping_mul(0x0100_0000_01b3);
                hash ^= hash >> 29;
            }
        }
        let n = (gw * gh) as f64;
        let mean = sum / n;
        let variance = (sum_sq / n - mean * mean).max(0.0);
        // The 4-neighbour Laplacian over the interior of the grid, row by row.
        let (mut lap_sum, mut lap_sq, mut lap_n) = (0f64, 0f64, 0u64);
        if gw >= 3 && gh >= 3 {
            let grid = &self.grid[..gw * gh];
            for gy in 1..gh - 1 {
                let up = &grid[(gy - 1) * gw..gy * gw];
                let mid = &grid[gy * gw..(gy + 1) * gw];
                let down = &grid[(gy + 1) * gw..(gy + 2) * gw];
                let (mut ls, mut lq) = ([0f32; 8], [0f32; 8]);
                for (k, x) in (1..gw - 1).enumerate() {
                    let lap = 4.0 * mid[x] - mid[x - 1] - mid[x + 1] - up[x] - down[x];
                    ls[k % 8] += lap;
                    lq[k % 8] += lap * lap;
                }
                lap_sum += ls.iter().map(|v| f64::from(*v)).sum::<f64>();
                lap_sq += lq.iter().map(|v| f64::from(*v)).sum::<f64>();
                lap_n += (gw - 2) as u64;
            }
        }
        let sharpness = if lap_n > 0 && variance > 1e-6 {
            let m = lap_sum / lap_n as f64;
            (lap_sq / lap_n as f64 - m * m).max(0.0) / variance
        } else {
            0.0
        };
        InputStats {
            points: (gw * gh) as u32,
            brightness: mean as f32,
            contrast: variance.sqrt() as f32,
            dark_fraction: (f64::from(dark) / n) as f32,
            saturated_fraction: (f64::from(saturated) / n) as f32,
            sharpness: sharpness as f32,
            fingerprint: hash,
        }
    }
}

/// Sum and sum of squares of `values`, in eight lanes (a fixed order, so the same values always
/// give the same sums).
fn sums(values: &[f32]) -> (f32, f32) {
    let (mut s, mut q) = ([0f32; 8], [0f32; 8]);
    let mut chunks = values.chunks_exact(8);
    for c in &mut chunks {
        for k in 0..8 {
            s[k] += c[k];
            q[k] += c[k] * c[k];
        }
    }
    for (k, &v) in chunks.remainder().iter().enumerate() {
        s[k] += v;
        q[k] += v * v;
    }
    (s.iter().sum(), q.iter().sum())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::image::{ImageView, PixelEncoding};
    use crate::core::preprocess::Preprocessor;

    fn spec() -> InputSpec {
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("models/yolov3-tiny/manifest.yaml"),
        )
        .unwrap();
        crate::core::model::Manifest::parse(&text, std::path::Path::new("m.yaml"))
            .unwrap()
            .input
    }

    /// Pre-processes a `w`x`h` rgb8 frame whose pixel (x, y) is `f(x, y)` and measures it.
    fn measure(w: u32, h: u32, f: impl Fn(u32, u32) -> [u8; 3]) -> InputStats {
        let spec = spec();
        let mut data = Vec::with_capacity((w * h * 3) as usize);
        for y in 0..h {
            for x in 0..w {
                data.extend_from_slice(&f(x, y));
            }
        }
        let view = ImageView::packed(w, h, PixelEncoding::Rgb8, &data).unwrap();
        let mut pre = Preprocessor::new(&spec);
        let mut tensor = vec![0f32; spec.len()];
        let lb = pre.run(&view, &mut tensor).unwrap();
        InputMeter::new(&spec).measure(&tensor, &lb)
    }

    #[test]
    fn flat_frames_measure_their_level_and_no_detail() {
        let black = measure(640, 360, |_, _| [0, 0, 0]);
        assert!(
            black.brightness < 0.5 && black.dark_fraction == 1.0,
            "{black:?}"
        );
        assert!(black.contrast < 0.5 && black.sharpness < 0.5, "{black:?}");
        let white = measure(640, 360, |_, _| [255, 255, 255]);
        assert!(
            white.brightness > 254.5 && white.saturated_fraction == 1.0,
            "{white:?}"
        );
        let grey = measure(640, 360, |_, _| [100, 150, 200]);
        let want = 0.299 * 100.0 + 0.587 * 150.0 + 0.114 * 200.0;
        assert!((grey.brightness - want).abs() < 0.5, "{grey:?}");
        // The padding (grey 114) is not measured: a 16:9 frame has bands above and below.
        assert_eq!(black.points as usize, 104 * 59);
    }

    #[test]
    fn detail_raises_sharpness_and_the_same_picture_keeps_its_fingerprint() {
        let checker = |s: u32| {
            move |x: u32, y: u32| {
                if (x / s + y / s).is_multiple_of(2) {
                    [30; 3]
                } else {
                    [220; 3]
                }
            }
        };
        let fine = measure(640, 360, checker(6));
        let coarse = measure(640, 360, checker(60));
        assert!(
            fine.sharpness > 10.0 * coarse.sharpness,
            "{fine:?} {coarse:?}"
        );
        assert!(fine.contrast > 50.0, "{fine:?}");
        assert_eq!(fine.fingerprint, measure(640, 360, checker(6)).fingerprint);
        assert_ne!(fine.fingerprint, coarse.fingerprint);
    }
}
