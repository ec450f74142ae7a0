//! The last step of the fused pass: one row of 8-bit pixels into the tensor, channels reordered
//! into the model's order and normalised, `(v * scale - mean[c]) / std[c]` in f32.
//!
//! The portable version reads the per-channel lookup tables (computed with that very expression);
//! the AVX2 version computes it 8 pixels at a time with the same IEEE operations in the same order
//! (a multiply, a subtraction, a division, never fused), so both give bit-identical values.
//!
//! Allocates nothing.

use super::resample::Kernels;

/// The normalisation of each tensor channel, and its lookup table.
#[derive(Debug, Clone)]
pub struct Norm {
    /// Multiplier of the 8-bit value.
    pub scale: f32,
    /// Per tensor channel, subtracted after scaling.
    pub mean: [f32; 3],
    /// Per tensor channel, divided by last.
    pub std: [f32; 3],
    /// Per tensor channel: 8-bit value -> normalised value.
    pub lut: [[f32; 256]; 3],
}

impl Norm {
    /// The tables for `scale`, `mean` and `std`.
    pub fn new(scale: f32, mean: [f32; 3], std: [f32; 3]) -> Self {
        let mut lut = [[0f32; 256]; 3];
        for (c, table) in lut.iter_mut().enumerate() {
            for (v, out) in table.iter_mut().enumerate() {
                *out = (v as f32 * scale - mean[c]) / std[c];
            }
        }
        Self {
            scale,
            mean,
            std,
            lut,
        }
    }
}

/// Writes the pixels `row` (packed `u32`, channel `i` in bits `8i..8i+8`) into three planes at
/// `base..base + row.len()`: plane `c` takes channel `src[c]`. `src[c] <= 3`.
pub fn planar_row(
    k: Kernels,
    row: &[u32],
    src: [usize; 3],
    norm: &Norm,
    mut planes: [&mut [f32]; 3],
    base: usize,
) {
    let n = row.len();
    if planes.iter().any(|p| p.len() < base + n) || src.iter().any(|s| *s > 3) {
        return;
    }
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if k.has_avx2() {
        // SAFETY: AVX2 was detected at run time; every plane holds `base + n` values (checked).
        done = unsafe { x86::planar_row_avx2(row, src, norm, &mut planes, base) };
    }
    let _ = k;
    let [p0, p1, p2] = planes;
    for (x, px) in row.iter().enumerate().skip(done) {
        let b = px.to_le_bytes();
        p0[base + x] = norm.lut[0][b[src[0]] as usize];
        p1[base + x] = norm.lut[1][b[src[1]] as usize];
        p2[base + x] = norm.lut[2][b[src[2]] as usize];
    }
}

/// As [`planar_row`] into one interleaved (NHWC) row at `base * 3`.
pub fn interleaved_row(row: &[u32], src: [usize; 3], norm: &Norm, tensor: &mut [f32], base: usize) {
    let Some(out) = tensor.get_mut(base * 3..(base + row.len()) * 3) else {
        return;
    };
    if src.iter().any(|s| *s > 3) {
        return;
    }
    for (o, px) in out.chunks_exact_mut(3).zip(row) {
        let b = px.to_le_bytes();
        o[0] = norm.lut[0][b[src[0]] as usize];
        o[1] = norm.lut[1][b[src[1]] as usize];
        o[2] = norm.lut[2][b[src[2]] as usize];
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::Norm;

    /// Whole groups of 8 pixels; returns how many pixels it wrote.
    ///
    /// # Safety
    /// AVX2 must be available; every plane holds at least `base + row.len()` values.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn planar_row_avx2(
        row: &[u32],
        src: [usize; 3],
        norm: &Norm,
        planes: &mut [&mut [f32]; 3],
        base: usize,
    ) -> usize {
        let groups = row.len() / 8;
        let mask = _mm256_set1_epi32(0xff);
        let scale = _mm256_set1_ps(norm.scale);
        for c in 0..3 {
            let shift = _mm_cvtsi32_si128(8 * src[c] as i32);
            let mean = _mm256_set1_ps(norm.mean[c]);
            let std = _mm256_set1_ps(norm.std[c]);
            let dst = planes[c].as_mut_ptr();
            for g in 0..groups {
                // SAFETY: `8g + 8 <= row.len()`.
                let px = unsafe { _mm256_loadu_si256(row.as_ptr().add(8 * g).cast()) };
                let v = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srl_epi32(px, shift), mask));
                let f = _mm256_div_ps(_mm256_sub_ps(_mm256_mul_ps(v, scale), mean), std);
                // SAFETY: `base + 8g + 8 <= base + row.len() <= plane.len()`.
                unsafe { _mm256_storeu_ps(dst.add(base + 8 * g), f) };
            }
        }
        groups * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simd_and_lookup_tables_agree_bit_for_bit() {
        let norm = Norm::new(1.0 / 255.0, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]);
        let row: Vec<u32> = (0..203u32)
            .map(|i| u32::from_le_bytes([(i * 7) as u8, (i * 13) as u8, (i * 29) as u8, 9]))
            .collect();
        let src = [2, 1, 0];
        let run = |k: Kernels| {
            let mut t = vec![0f32; 3 * 300];
            let (p0, rest) = t.split_at_mut(300);
            let (p1, p2) = rest.split_at_mut(300);
            planar_row(k, &row, src, &norm, [p0, p1, p2], 50);
            t
        };
        let (a, b) = (run(Kernels::detect()), run(Kernels::portable()));
        assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
        assert_eq!(a[50].to_bits(), norm.lut[0][0].to_bits());
        assert_eq!(a[300 + 51].to_bits(), norm.lut[1][13].to_bits());
    }
}
