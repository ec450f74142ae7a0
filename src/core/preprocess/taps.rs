//! Filter taps of the anti-aliased triangle ("bilinear") resampler, in 14-bit fixed point.
//!
//! The filter is PIL's `BILINEAR`: a triangle of support 1 that widens by the downscale factor,
//! so every source pixel contributes when shrinking (no aliasing). Output pixel `o` is centred at
//! `(o + 0.5) * in / out` in source pixels; its taps are the source pixels whose centres fall
//! within the support, weighted by the triangle and normalised to sum to one. Weights are stored
//! as integers summing to exactly [`ONE`], so a flat image stays exactly flat.
//!
//! Computed once per frame geometry (allocates); nothing here is on the per-frame path.

/// Fixed-point one: weights are in units of 1/2^14.
pub const ONE_BITS: u32 = 14;
/// `1 << ONE_BITS`.
pub const ONE: i32 = 1 << ONE_BITS;

/// The taps of every output pixel along one axis.
#[derive(Debug, Clone, PartialEq)]
pub struct Taps {
    /// Source length (pixels or rows).
    pub source_len: usize,
    /// First source index of each output.
    pub start: Vec<u32>,
    /// Taps per output (`weights` holds `stride` per output, the unused ones zero).
    pub count: Vec<u32>,
    /// Weights, `stride` per output, `count[o]` used, the rest zero.
    pub weights: Vec<i16>,
    /// Weights per output: the largest count, rounded up to an even number (pairs feed one
    /// multiply-add).
    pub stride: usize,
    /// The weights again as pairs, `stride / 2` per output: `w[2k]` in the low and `w[2k + 1]` in
    /// the high 16 bits, the operand one multiply-add takes.
    pub pairs: Vec<i32>,
    /// The pairs again for two outputs at a time (outputs `2q` and `2q + 1`): per pair index,
    /// four copies of the first output's pair then four of the second's (the 256-bit operand of
    /// a multiply-add over two 128-bit lanes). An odd last output is paired with itself.
    pub pairs_by_two: Vec<i32>,
    /// The weights again, [`WIDE`] per output (zero past `count`), for the one-channel kernel
    /// that multiplies a whole 16-value load at once; empty when `stride > WIDE`.
    pub wide: Vec<i16>,
}

/// Weights per output in [`Taps::wide`].
pub const WIDE: usize = 16;

fn triangle(x: f64) -> f64 {
    (1.0 - x.abs()).max(0.0)
}

impl Taps {
    /// Taps resampling `source_len` pixels into `out_len`. Both must be at least one.
    pub fn new(source_len: usize, out_len: usize) -> Self {
        let source_len = source_len.max(1);
        let out_len = out_len.max(1);
        let scale = source_len as f64 / out_len as f64;
        let filter_scale = scale.max(1.0);
        let support = filter_scale; // triangle support 1, widened
        let mut per_output: Vec<(u32, Vec<f64>)> = Vec::with_capacity(out_len);
        for o in 0..out_len {
            let center = (o as f64 + 0.5) * scale;
            let first = ((center - support + 0.5).floor().max(0.0) as usize).min(source_len - 1);
            let end = ((center + support + 0.5).floor() as usize).clamp(first + 1, source_len);
            let mut w: Vec<f64> = (first..end)
                .map(|i| triangle((i as f64 - center + 0.5) / filter_scale))
                .collect();
            let sum: f64 = w.iter().sum();
            if sum > 0.0 {
                w.iter_mut().for_each(|v| *v /= sum);
            } else {
                // Cannot happen with a triangle of support >= 1, kept for safety: nearest pixel.
                w.iter_mut().for_each(|v| *v = 0.0);
                w[0] = 1.0;
            }
            // Trim zero weights at both ends (they cost a multiply-add each).
            let lead = w.iter().take_while(|v| **v == 0.0).count().min(w.len() - 1);
            let trail = w.iter().rev().take_while(|v| **v == 0.0).count();
            let keep = (w.len() - lead).saturating_sub(trail).max(1);
            per_output.push(((first + lead) as u32, w[lead..lead + keep].to_vec()));
        }
        let max_count = per_output.iter().map(|(_, w)| w.len()).max().unwrap_or(1);
        let stride = max_count.div_ceil(2) * 2;
        let mut start = Vec::with_capacity(out_len);
        let mut count = Vec::with_capacity(out_len);
        let mut weights = vec![0i16; out_len * stride];
        for (o, (first, w)) in per_output.iter().enumerate() {
            start.push(*first);
            count.push(w.len() as u32);
            let fixed = &mut weights[o * stride..o * stride + w.len()];
            let mut total = 0i32;
            for (f, v) in fixed.iter_mut().zip(w) {
                *f = (v * f64::from(ONE)).round() as i16;
                total += i32::from(*f);
            }
            // Put the rounding error on the largest weight: the sum is exactly ONE.
            if let Some(big) = (0..fixed.len()).max_by_key(|&i| fixed[i]) {
                fixed[big] = (i32::from(fixed[big]) + ONE - total) as i16;
            }
        }
        let pairs: Vec<i32> = weights
            .chunks_exact(2)
            .map(|w| (i32::from(w[1] as u16) << 16) | i32::from(w[0] as u16))
            .collect();
        let half = stride / 2;
        let mut pairs_by_two = Vec::with_capacity(out_len.div_ceil(2) * half * 8);
        for q in 0..out_len.div_ceil(2) {
            let (a, b) = (2 * q, (2 * q + 1).min(out_len - 1));
            for k in 0..half {
                let (pa, pb): (i32, i32) = (pairs[a * half + k], pairs[b * half + k]);
                pairs_by_two.extend_from_slice(&[pa, pa, pa, pa, pb, pb, pb, pb]);
            }
        }
        let wide = if stride <= WIDE {
            let mut wide = vec![0i16; out_len * WIDE];
            for (o, w) in wide.chunks_exact_mut(WIDE).enumerate() {
                w[..stride].copy_from_slice(&weights[o * stride..(o + 1) * stride]);
            }
            wide
        } else {
            Vec::new()
        };
        Self {
            source_len,
            start,
            count,
            weights,
            stride,
            pairs,
            pairs_by_two,
            wide,
        }
    }

    /// The weights of output `o` (its `count` used ones, then zeros up to `stride`).
    pub fn of(&self, o: usize) -> &[i16] {
        &self.weights[o * self.stride..(o + 1) * self.stride]
    }

    /// The weight pairs of output `o` (`stride / 2`, zero past `count`).
    pub fn pairs_of(&self, o: usize) -> &[i32] {
        let n = self.stride / 2;
        &self.pairs[o * n..(o + 1) * n]
    }

    /// Outputs.
    pub fn len(&self) -> usize {
        self.start.len()
    }

    /// No outputs (never, for a constructed `Taps`).
    pub fn is_empty(&self) -> bool {
        self.start.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_sum_to_one_and_stay_inside_the_source() {
        for (src, out) in [
            (1280, 416),
            (720, 234),
            (1920, 416),
            (100, 416),
            (7, 3),
            (1, 5),
            (5, 1),
        ] {
            let t = Taps::new(src, out);
            assert_eq!(t.len(), out);
            assert_eq!(t.stride % 2, 0);
            for o in 0..out {
                let w = t.of(o);
                let n = t.count[o] as usize;
                assert_eq!(
                    w.iter().map(|v| i32::from(*v)).sum::<i32>(),
                    ONE,
                    "{src}->{out} #{o}"
                );
                assert!(w[n..].iter().all(|v| *v == 0));
                assert!(w[..n].iter().all(|v| *v >= 0));
                assert!(t.start[o] as usize + n <= src, "{src}->{out} #{o}");
            }
        }
    }

    #[test]
    fn downscale_widens_the_support() {
        // 3x down: the support is +-3 source pixels around each centre, about 6 taps.
        let t = Taps::new(1248, 416);
        assert!((5..=7).contains(&t.count[200]), "{}", t.count[200]);
        // Same size: one tap of weight one.
        let t = Taps::new(416, 416);
        assert_eq!(t.count[10], 1);
        assert_eq!(t.of(10)[0] as i32, ONE);
        assert_eq!(t.start[10], 10);
    }

    #[test]
    fn symmetric_geometry_has_mirrored_taps() {
        let t = Taps::new(1280, 416);
        let (a, b) = (0, 415);
        let wa: Vec<i16> = t.of(a)[..t.count[a] as usize].to_vec();
        let mut wb: Vec<i16> = t.of(b)[..t.count[b] as usize].to_vec();
        wb.reverse();
        assert_eq!(wa, wb);
    }
}
