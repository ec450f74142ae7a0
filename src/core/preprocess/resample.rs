//! The two resampling passes in fixed point, each with a portable version and an x86-64 SIMD
//! version chosen at run time ([`Kernels::detect`]). Both compute exactly the same integers, so
//! results are bit-identical whatever the CPU.
//!
//! - [`vertical`]: one output row from `count` source rows, byte by byte across the whole row
//!   (every channel at once): `inter[j] = (sum_i w_i * row_i[j] + 2^7) >> 8`, i.e. the value
//!   times 64 (6 extra bits kept for the second pass). AVX2: 16 bytes per step, two rows per
//!   multiply-add.
//! - [`horizontal`]: every output pixel of that row from its taps over the intermediate row:
//!   `out_c = (sum_k w_k * inter[(x_k) * C + c] + 2^19) >> 20`, back to 8 bits. SSSE3: the two
//!   pixels of a tap pair are interleaved channel by channel with one byte shuffle and summed with
//!   one multiply-add.
//!
//! Weights are non-negative and sum to 2^14 ([`super::taps`]), so no sum can overflow: the
//! vertical sum is at most 255 * 2^14, the horizontal one 255 * 64 * 2^14 < 2^31.
//!
//! Nothing here allocates; the caller owns every buffer.

use super::taps::Taps;

/// Which SIMD kernels this CPU runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kernels {
    avx2: bool,
    ssse3: bool,
}

/// Most source rows one vertical SIMD step takes (more: the portable pass, still exact).
pub const MAX_SIMD_ROWS: usize = 64;

/// The rounding and shift of the vertical pass (14-bit weights to 6 extra bits).
const V_SHIFT: u32 = 8;
/// The rounding and shift of the horizontal pass (14-bit weights and 6 extra bits to 8 bits).
const H_SHIFT: u32 = 20;

impl Kernels {
    /// The best kernels this CPU supports (checked once; cheap).
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            Self {
                avx2: std::arch::is_x86_feature_detected!("avx2"),
                ssse3: std::arch::is_x86_feature_detected!("ssse3"),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            Self::portable()
        }
    }

    /// The portable kernels only (for tests and comparisons).
    pub fn portable() -> Self {
        Self {
            avx2: false,
            ssse3: false,
        }
    }

    /// Whether the AVX2 kernels run.
    pub fn has_avx2(self) -> bool {
        self.avx2
    }

    /// A name for logs and benches: `avx2+ssse3`, `ssse3` or `portable`.
    pub fn name(self) -> &'static str {
        match (self.avx2, self.ssse3) {
            (true, true) => "avx2+ssse3",
            (true, false) => "avx2",
            (false, true) => "ssse3",
            (false, false) => "portable",
        }
    }
}

/// One intermediate row from `rows` (each at least `out.len()` bytes) and their `weights`.
/// `acc` is scratch of at least `out.len()` values for the portable pass.
pub fn vertical(k: Kernels, rows: &[&[u8]], weights: &[i16], acc: &mut [i32], out: &mut [i16]) {
    let n = out.len();
    let usable = rows.len() == weights.len()
        && !rows.is_empty()
        && rows.iter().all(|r| r.len() >= n)
        && acc.len() >= n;
    if !usable {
        out.fill(0);
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if k.avx2 && rows.len() <= MAX_SIMD_ROWS {
        // SAFETY: AVX2 was detected at run time; every row holds at least `n` bytes (checked
        // above) and `out` exactly `n` values, the bounds the kernel reads and writes within.
        let done = unsafe { x86::vertical_avx2(rows, weights, out) };
        vertical_portable(rows, weights, &mut acc[done..n], &mut out[done..], done);
        return;
    }
    let _ = k;
    vertical_portable(rows, weights, &mut acc[..n], out, 0);
}

/// `out[j] = (sum_i w_i * rows_i[offset + j] + 128) >> 8`, taps outer so that the inner loop
/// vectorises on any target.
fn vertical_portable(
    rows: &[&[u8]],
    weights: &[i16],
    acc: &mut [i32],
    out: &mut [i16],
    offset: usize,
) {
    let n = out.len();
    acc.fill(1 << (V_SHIFT - 1));
    for (row, &w) in rows.iter().zip(weights) {
        let w = i32::from(w);
        for (a, &p) in acc.iter_mut().zip(&row[offset..offset + n]) {
            *a += w * i32::from(p);
        }
    }
    for (o, a) in out.iter_mut().zip(acc.iter()) {
        *o = (*a >> V_SHIFT) as i16;
    }
}

/// Bytes of padding the intermediate row needs after its `width * channels` values for
/// [`horizontal`] (the SIMD loads read a little past the last tap).
pub fn inter_padding(taps: &Taps, channels: usize) -> usize {
    ((taps.stride + 2) * channels + 8).max(super::taps::WIDE)
}

/// Every output pixel of one row, as four 8-bit channel values packed little-endian in a `u32`
/// (`c0 | c1 << 8 | ...`, in the source's channel order; unused channels zero) into `out`
/// (`taps.len()` values). `inter` holds the intermediate row: `taps.source_len * channels`
/// values followed by [`inter_padding`] more (any value). `channels` is 1, 3 or 4.
pub fn horizontal(k: Kernels, inter: &[i16], channels: usize, taps: &Taps, out: &mut [u32]) {
    let need = taps.source_len * channels + inter_padding(taps, channels);
    if inter.len() < need || !(1..=4).contains(&channels) || out.len() < taps.len() {
        out.fill(0);
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if k.avx2 && channels == 1 && !taps.wide.is_empty() {
        // SAFETY: AVX2 was detected at run time; `inter` holds at least `WIDE` values past the
        // last start (the padding, checked above) and `out` one value per output.
        let done = unsafe { x86::horizontal_mono_avx2(inter, taps, out) };
        horizontal_portable(inter, channels, taps, out, done);
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if k.ssse3 && (channels == 3 || channels == 4) {
        let done = if k.avx2 {
            // SAFETY: AVX2 was detected at run time; `inter` holds the padding the kernel's
            // loads need and `out` one value per output (checked above).
            unsafe { x86::horizontal_avx2(inter, channels, taps, out) }
        } else {
            0
        };
        // SAFETY: SSSE3 was detected at run time; as above.
        unsafe { x86::horizontal_ssse3(inter, channels, taps, out, done) };
        return;
    }
    let _ = k;
    horizontal_portable(inter, channels, taps, out, 0);
}

fn to_u8(acc: i32) -> u8 {
    ((acc + (1 << (H_SHIFT - 1))) >> H_SHIFT).clamp(0, 255) as u8
}

/// Outputs `from..` of [`horizontal`], one tap at a time.
fn horizontal_portable(inter: &[i16], channels: usize, taps: &Taps, out: &mut [u32], from: usize) {
    for (x, o) in out.iter_mut().enumerate().take(taps.len()).skip(from) {
        let n = taps.count[x] as usize;
        let w = &taps.of(x)[..n];
        let base = taps.start[x] as usize * channels;
        let mut acc = [0i32; 4];
        for (k, &wk) in w.iter().enumerate() {
            let px = &inter[base + k * channels..base + (k + 1) * channels];
            for (a, &v) in acc.iter_mut().zip(px) {
                *a += i32::from(wk) * i32::from(v);
            }
        }
        *o = u32::from_le_bytes(acc.map(to_u8));
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{H_SHIFT, Taps, V_SHIFT};

    /// Two 16-bit weights as the pair one `madd` multiplies (`lo` by the first lane's value).
    fn pair(lo: i16, hi: i16) -> i32 {
        (i32::from(hi as u16) << 16) | i32::from(lo as u16)
    }

    /// The one-channel (mono8) horizontal pass, eight outputs per step: each output's 16
    /// values from its start times its 16 weights (zero past its count) in one multiply-add,
    /// then the eight sums reduced together. Returns how many outputs it wrote (a multiple of
    /// eight; the caller finishes the tail).
    ///
    /// # Safety
    /// AVX2 must be available; `taps.wide` holds `WIDE` weights per output, `inter` holds at
    /// least `start + WIDE` values for every output's start, and `out` at least `taps.len()`.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn horizontal_mono_avx2(
        inter: &[i16],
        taps: &Taps,
        out: &mut [u32],
    ) -> usize {
        use super::super::taps::WIDE;
        let n = taps.len() / 8 * 8;
        let round = _mm256_set1_epi32(1 << (H_SHIFT - 1));
        let (zero, max) = (_mm256_setzero_si256(), _mm256_set1_epi32(255));
        let src = inter.as_ptr();
        let w = taps.wide.as_ptr();
        let mut x = 0;
        while x < n {
            // SAFETY: output `x + j` reads values `start .. start + WIDE` of `inter` and weights
            // `(x + j) * WIDE ..` of `wide`, both inside by the function's contract.
            let madd = |j: usize| unsafe {
                let v = _mm256_loadu_si256(src.add(taps.start[x + j] as usize).cast());
                let k = _mm256_loadu_si256(w.add((x + j) * WIDE).cast());
                _mm256_madd_epi16(v, k)
            };
            // Per 128-bit lane: [s0 s1 s2 s3] partial sums (low and high halves of each load).
            let s0123 = _mm256_hadd_epi32(
                _mm256_hadd_epi32(madd(0), madd(1)),
                _mm256_hadd_epi32(madd(2), madd(3)),
            );
            let s4567 = _mm256_hadd_epi32(
                _mm256_hadd_epi32(madd(4), madd(5)),
                _mm256_hadd_epi32(madd(6), madd(7)),
            );
            let sum = _mm256_add_epi32(
                _mm256_permute2x128_si256::<0x20>(s0123, s4567),
                _mm256_permute2x128_si256::<0x31>(s0123, s4567),
            );
            let v = _mm256_srai_epi32::<{ H_SHIFT as i32 }>(_mm256_add_epi32(sum, round));
            let v = _mm256_min_epi32(_mm256_max_epi32(v, zero), max);
            // SAFETY: `x + 8 <= n <= out.len()`.
            unsafe { _mm256_storeu_si256(out.as_mut_ptr().add(x).cast(), v) };
            x += 8;
        }
        n
    }

    /// The AVX2 vertical pass over whole 32-byte steps; returns how many values it wrote (the
    /// caller finishes the tail).
    ///
    /// # Safety
    /// AVX2 must be available; `rows.len() == weights.len()`, `1 <= rows.len() <= 64`, and
    /// every row must hold at least `out.len()` bytes.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn vertical_avx2(rows: &[&[u8]], weights: &[i16], out: &mut [i16]) -> usize {
        let n = out.len();
        let steps = n / 32;
        let count = rows.len();
        // Row pairs and their weights, once per output row. An odd last row pairs with itself
        // at weight zero (stays inside the image).
        let mut pa = [std::ptr::null::<u8>(); 32];
        let mut pb = [std::ptr::null::<u8>(); 32];
        let mut pw = [_mm256_setzero_si256(); 32];
        let pairs = count.div_ceil(2).min(32);
        for p in 0..pairs {
            let i = 2 * p;
            let (j, wj) = if i + 1 < count {
                (i + 1, weights[i + 1])
            } else {
                (i, 0)
            };
            pa[p] = rows[i].as_ptr();
            pb[p] = rows[j].as_ptr();
            pw[p] = _mm256_set1_epi32(pair(weights[i], wj));
        }
        let round = _mm256_set1_epi32(1 << (V_SHIFT - 1));
        let dst = out.as_mut_ptr();
        for s in 0..steps {
            let off = s * 32;
            let (mut m0, mut m1, mut m2, mut m3) = (round, round, round, round);
            for p in 0..pairs {
                // SAFETY: `off + 32 <= n <= row.len()` for every row (caller's contract).
                let (a, b) = unsafe {
                    (
                        _mm256_loadu_si256(pa[p].add(off).cast()),
                        _mm256_loadu_si256(pb[p].add(off).cast()),
                    )
                };
                let w = pw[p];
                // Bytes of the two rows interleaved, then widened: (a_j, b_j) 16-bit pairs, the
                // layout `madd` multiplies by (w_a, w_b).
                let t_lo = _mm256_unpacklo_epi8(a, b);
                let t_hi = _mm256_unpackhi_epi8(a, b);
                let zero = _mm256_setzero_si256();
                m0 = _mm256_add_epi32(m0, _mm256_madd_epi16(_mm256_unpacklo_epi8(t_lo, zero), w));
                m1 = _mm256_add_epi32(m1, _mm256_madd_epi16(_mm256_unpackhi_epi8(t_lo, zero), w));
                m2 = _mm256_add_epi32(m2, _mm256_madd_epi16(_mm256_unpacklo_epi8(t_hi, zero), w));
                m3 = _mm256_add_epi32(m3, _mm256_madd_epi16(_mm256_unpackhi_epi8(t_hi, zero), w));
            }
            // Lane 0 of m0..m3 holds bytes 0-3, 4-7, 8-11, 12-15; lane 1 bytes 16-19, ... 28-31.
            let p01 = _mm256_packs_epi32(
                _mm256_srai_epi32::<{ V_SHIFT as i32 }>(m0),
                _mm256_srai_epi32::<{ V_SHIFT as i32 }>(m1),
            );
            let p23 = _mm256_packs_epi32(
                _mm256_srai_epi32::<{ V_SHIFT as i32 }>(m2),
                _mm256_srai_epi32::<{ V_SHIFT as i32 }>(m3),
            );
            let v0 = _mm256_permute2x128_si256::<0x20>(p01, p23);
            let v1 = _mm256_permute2x128_si256::<0x31>(p01, p23);
            // SAFETY: `off + 32 <= n == out.len()`.
            unsafe {
                _mm256_storeu_si256(dst.add(off).cast(), v0);
                _mm256_storeu_si256(dst.add(off + 16).cast(), v1);
            }
        }
        steps * 32
    }

    /// The SSSE3 horizontal pass for 3 or 4 interleaved channels.
    ///
    /// # Safety
    /// SSSE3 must be available; `channels` is 3 or 4, `inter` holds
    /// `taps.source_len * channels + inter_padding(taps, channels)` values and `out` at least
    /// `taps.len()`.
    #[target_feature(enable = "ssse3")]
    pub(super) unsafe fn horizontal_ssse3(
        inter: &[i16],
        channels: usize,
        taps: &Taps,
        out: &mut [u32],
        from: usize,
    ) {
        // Pixel a = values 0..C, pixel b = values C..2C of one 8-value load; interleave them
        // channel by channel (a0 b0 a1 b1 a2 b2 a3 b3), zero where a 3-channel pixel has none.
        let mask = if channels == 3 {
            _mm_setr_epi8(0, 1, 6, 7, 2, 3, 8, 9, 4, 5, 10, 11, -1, -1, -1, -1)
        } else {
            _mm_setr_epi8(0, 1, 8, 9, 2, 3, 10, 11, 4, 5, 12, 13, 6, 7, 14, 15)
        };
        let round = _mm_set1_epi32(1 << (H_SHIFT - 1));
        let src = inter.as_ptr();
        let step = 2 * channels;
        for (x, o) in out.iter_mut().enumerate().take(taps.len()).skip(from) {
            let pairs = &taps.pairs_of(x)[..(taps.count[x] as usize).div_ceil(2)];
            // SAFETY (every load below): it covers values `start * C + 2kC .. + 8`, at most
            // `source_len * C + 8 <= inter.len()`, as `start + count <= source_len`.
            let mut p = unsafe { src.add(taps.start[x] as usize * channels) };
            let mut acc = round;
            for &w in pairs {
                let v = _mm_shuffle_epi8(unsafe { _mm_loadu_si128(p.cast()) }, mask);
                acc = _mm_add_epi32(acc, _mm_madd_epi16(v, _mm_set1_epi32(w)));
                p = p.wrapping_add(step);
            }
            let acc = _mm_srai_epi32::<{ H_SHIFT as i32 }>(acc);
            // Rounded up front (as `to_u8` does); the saturating packs clamp to 0..255.
            let bytes = _mm_packus_epi16(_mm_packs_epi32(acc, acc), _mm_setzero_si128());
            *o = _mm_cvtsi128_si32(bytes) as u32;
        }
    }

    /// The AVX2 horizontal pass, two output pixels per step (one per 128-bit lane), for 3 or 4
    /// interleaved channels; returns how many outputs it wrote (an even number; the caller
    /// finishes an odd last one).
    ///
    /// # Safety
    /// AVX2 must be available; `channels` is 3 or 4, `inter` holds
    /// `taps.source_len * channels + inter_padding(taps, channels)` values and `out` at least
    /// `taps.len()`.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn horizontal_avx2(
        inter: &[i16],
        channels: usize,
        taps: &Taps,
        out: &mut [u32],
    ) -> usize {
        let mask128 = if channels == 3 {
            _mm_setr_epi8(0, 1, 6, 7, 2, 3, 8, 9, 4, 5, 10, 11, -1, -1, -1, -1)
        } else {
            _mm_setr_epi8(0, 1, 8, 9, 2, 3, 10, 11, 4, 5, 12, 13, 6, 7, 14, 15)
        };
        let mask = _mm256_broadcastsi128_si256(mask128);
        let round = _mm256_set1_epi32(1 << (H_SHIFT - 1));
        let half = taps.stride / 2;
        let src = inter.as_ptr();
        let step = 2 * channels;
        let n = taps.len() / 2 * 2;
        let mut x = 0;
        while x < n {
            let pairs = (taps.count[x].max(taps.count[x + 1]) as usize).div_ceil(2);
            let q = x / 2;
            let w = &taps.pairs_by_two[q * half * 8..(q + 1) * half * 8];
            // SAFETY (every load below): each half covers values `start * C + 2kC .. + 8` of its
            // output, with `2k < stride` and `start <= source_len`, so at most
            // `(source_len + stride) * C + 8 <= inter.len()` (the padding).
            let mut pa = unsafe { src.add(taps.start[x] as usize * channels) };
            let mut pb = unsafe { src.add(taps.start[x + 1] as usize * channels) };
            // Two accumulators (even and odd pairs) halve the dependency chain.
            let (mut even, mut odd) = (round, _mm256_setzero_si256());
            let mut k = 0;
            while k < pairs {
                let v = unsafe { _mm256_loadu2_m128i(pb.cast(), pa.cast()) };
                let v = _mm256_shuffle_epi8(v, mask);
                // SAFETY: `w` holds `half * 8` values and `k < pairs <= half`.
                let wk = unsafe { _mm256_loadu_si256(w.as_ptr().add(8 * k).cast()) };
                even = _mm256_add_epi32(even, _mm256_madd_epi16(v, wk));
                pa = pa.wrapping_add(step);
                pb = pb.wrapping_add(step);
                if k + 1 < pairs {
                    let v = unsafe { _mm256_loadu2_m128i(pb.cast(), pa.cast()) };
                    let v = _mm256_shuffle_epi8(v, mask);
                    // SAFETY: as above, `k + 1 < pairs`.
                    let wk = unsafe { _mm256_loadu_si256(w.as_ptr().add(8 * (k + 1)).cast()) };
                    odd = _mm256_add_epi32(odd, _mm256_madd_epi16(v, wk));
                    pa = pa.wrapping_add(step);
                    pb = pb.wrapping_add(step);
                }
                k += 2;
            }
            let acc = _mm256_srai_epi32::<{ H_SHIFT as i32 }>(_mm256_add_epi32(even, odd));
            // Per lane: 4 channels -> 16-bit -> 8-bit (saturating: clamps to 0..255).
            let bytes = _mm256_packus_epi16(_mm256_packs_epi32(acc, acc), _mm256_setzero_si256());
            out[x] = _mm256_extract_epi32::<0>(bytes) as u32;
            out[x + 1] = _mm256_extract_epi32::<4>(bytes) as u32;
            x += 2;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::core::preprocess::test_bytes as bytes;

    #[test]
    fn simd_and_portable_kernels_agree_bit_for_bit() {
        let simd = Kernels::detect();
        let portable = Kernels::portable();
        for (width, channels, src_h, out_w) in [
            (1280, 3, 720, 416),
            (97, 4, 13, 41),
            (33, 1, 5, 60),
            (1280, 1, 720, 416),
            (641, 1, 480, 100),
            (1280, 1, 720, 60),
            (640, 3, 480, 416),
        ] {
            let n = width * channels;
            let rows: Vec<Vec<u8>> = (0..7).map(|i| bytes(n, i)).collect();
            let refs: Vec<&[u8]> = rows.iter().map(|r| r.as_slice()).collect();
            let vt = Taps::new(src_h, 3);
            let row_w = &vt.of(1)[..vt.count[1] as usize];
            let used = &refs[..row_w.len().min(refs.len())];
            let weights = &row_w[..used.len()];
            let mut acc = vec![0i32; n];
            let (mut a, mut b) = (vec![0i16; n], vec![0i16; n]);
            vertical(simd, used, weights, &mut acc, &mut a);
            vertical(portable, used, weights, &mut acc, &mut b);
            assert_eq!(a, b, "vertical {width}x{channels}");

            let ht = Taps::new(width, out_w);
            let mut inter: Vec<i16> = bytes(n, 9).iter().map(|v| i16::from(*v) * 64).collect();
            inter.resize(n + inter_padding(&ht, channels), 0);
            let (mut oa, mut ob) = (vec![0u32; out_w], vec![1u32; out_w]);
            horizontal(simd, &inter, channels, &ht, &mut oa);
            horizontal(portable, &inter, channels, &ht, &mut ob);
            assert_eq!(oa, ob, "horizontal {width}x{channels} -> {out_w}");
        }
    }

    #[test]
    fn flat_rows_stay_flat() {
        let k = Kernels::detect();
        let row = vec![200u8; 48];
        let t = Taps::new(9, 3);
        let w = &t.of(1)[..t.count[1] as usize];
        let rows = vec![row.as_slice(); w.len()];
        let mut acc = vec![0i32; 48];
        let mut out = vec![0i16; 48];
        vertical(k, &rows, w, &mut acc, &mut out);
        assert!(out.iter().all(|v| *v == 200 * 64), "{out:?}");
        let ht = Taps::new(16, 5);
        let mut inter = out.clone();
        inter.resize(48 + inter_padding(&ht, 3), 0);
        let mut px = vec![0u32; 5];
        horizontal(k, &inter, 3, &ht, &mut px);
        assert!(
            px.iter()
                .all(|v| *v == u32::from_le_bytes([200, 200, 200, 0])),
            "{px:?}"
        );
    }
}
