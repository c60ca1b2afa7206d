//! Kernels over the compact 16-bit copy the HNSW index walks (see
//! `hnsw::Compact`): components are at most [`COMPACT_MAX`] in magnitude
//! and rows are padded with zeros to a multiple of [`COMPACT_LANES`]
//! components.
//!
//! These distances are approximations of the exact ones, used only to
//! decide which nodes a graph walk visits; every result is re-ranked with
//! the exact kernels. They are still exact integer sums of the compact
//! values, identical on every path and every machine, so the walk — and
//! with it every result — is the same everywhere.
//!
//! Headroom: a difference is at most `2 · COMPACT_MAX = 4094`, so a pair of
//! squares (`vpmaddwd` adds two) is below 2^25, and 64 such sums fit an
//! `i32` lane. The SIMD paths therefore widen their 32-bit lanes into 64-bit
//! totals every [`BLOCK`] components.

/// Largest magnitude of a compact component.
pub const COMPACT_MAX: i32 = 2047;

/// Compact rows are padded with zeros to a multiple of this many
/// components.
pub const COMPACT_LANES: usize = 16;

/// Components summed in 32-bit lanes before widening (64 steps of 16).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
const BLOCK: usize = 1024;

/// The compact kernels, chosen once per search.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompactKernel {
    simd: bool,
}

impl CompactKernel {
    /// The fastest path this CPU runs.
    pub fn best() -> CompactKernel {
        let simd = super::Path::Avx2.is_available() || super::Path::Neon.is_available();
        CompactKernel { simd }
    }

    /// The scalar path, for tests.
    pub const fn portable() -> CompactKernel {
        CompactKernel { simd: false }
    }

    /// `Σ (a_i − b_i)²`. Both rows padded alike, components within
    /// `±COMPACT_MAX`.
    #[inline]
    pub fn l2_squared(self, a: &[i16], b: &[i16]) -> u64 {
        assert_eq!(
            a.len(),
            b.len(),
            "invariant: compact operands have one length"
        );
        debug_assert!(a.len().is_multiple_of(COMPACT_LANES));
        if self.simd {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `simd` is set only when AVX2 is available; the length
            // is a multiple of 16 (asserted in debug builds, guaranteed by
            // the padding of every compact row).
            return unsafe { x86_64::l2_squared(a, b) };
            #[cfg(target_arch = "aarch64")]
            // SAFETY: `simd` is set only when NEON is available.
            return unsafe { aarch64::l2_squared(a, b) };
        }
        portable_l2(a, b)
    }

    /// `Σ a_i · b_i`, as [`CompactKernel::l2_squared`].
    #[inline]
    pub fn dot(self, a: &[i16], b: &[i16]) -> i64 {
        assert_eq!(
            a.len(),
            b.len(),
            "invariant: compact operands have one length"
        );
        debug_assert!(a.len().is_multiple_of(COMPACT_LANES));
        if self.simd {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as in l2_squared.
            return unsafe { x86_64::dot(a, b) };
            #[cfg(target_arch = "aarch64")]
            // SAFETY: as in l2_squared.
            return unsafe { aarch64::dot(a, b) };
        }
        portable_dot(a, b)
    }
}

fn portable_l2(a: &[i16], b: &[i16]) -> u64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| {
            let d = i32::from(x) - i32::from(y);
            (d * d) as u64
        })
        .sum()
}

fn portable_dot(a: &[i16], b: &[i16]) -> i64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| i64::from(i32::from(x) * i32::from(y)))
        .sum()
}

#[cfg(target_arch = "x86_64")]
mod x86_64 {
    use super::BLOCK;
    use core::arch::x86_64::{
        __m256i, _mm_add_epi64, _mm_cvtsi128_si64, _mm_unpackhi_epi64, _mm256_add_epi32,
        _mm256_add_epi64, _mm256_castsi256_si128, _mm256_cvtepi32_epi64, _mm256_extracti128_si256,
        _mm256_loadu_si256, _mm256_madd_epi16, _mm256_setzero_si256, _mm256_sub_epi16,
    };

    /// Eight 32-bit lanes widened and summed into four 64-bit ones.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn widen(acc: __m256i) -> __m256i {
        _mm256_add_epi64(
            _mm256_cvtepi32_epi64(_mm256_castsi256_si128(acc)),
            _mm256_cvtepi32_epi64(_mm256_extracti128_si256::<1>(acc)),
        )
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn hsum(v: __m256i) -> i64 {
        let s = _mm_add_epi64(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
        _mm_cvtsi128_si64(_mm_add_epi64(s, _mm_unpackhi_epi64(s, s)))
    }

    /// `f` maps one pair of 16-lane loads to eight 32-bit partial sums.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn fold(a: &[i16], b: &[i16], f: impl Fn(__m256i, __m256i) -> __m256i) -> i64 {
        let n = a.len();
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut total = _mm256_setzero_si256();
        let mut start = 0;
        while start < n {
            let end = (start + BLOCK).min(n);
            let mut acc0 = _mm256_setzero_si256();
            let mut acc1 = _mm256_setzero_si256();
            let mut i = start;
            // SAFETY: n is a multiple of 16 and every load reads 16 lanes
            // at i ≤ n − 16 (or i + 16 ≤ n − 16), inside both slices.
            unsafe {
                while i + 32 <= end {
                    let x0 = _mm256_loadu_si256(pa.add(i).cast());
                    let y0 = _mm256_loadu_si256(pb.add(i).cast());
                    let x1 = _mm256_loadu_si256(pa.add(i + 16).cast());
                    let y1 = _mm256_loadu_si256(pb.add(i + 16).cast());
                    acc0 = _mm256_add_epi32(acc0, f(x0, y0));
                    acc1 = _mm256_add_epi32(acc1, f(x1, y1));
                    i += 32;
                }
                if i + 16 <= end {
                    let x = _mm256_loadu_si256(pa.add(i).cast());
                    let y = _mm256_loadu_si256(pb.add(i).cast());
                    acc0 = _mm256_add_epi32(acc0, f(x, y));
                }
            }
            // Each lane of acc0 and acc1 holds at most 32 pair sums.
            total = _mm256_add_epi64(total, _mm256_add_epi64(widen(acc0), widen(acc1)));
            start = end;
        }
        hsum(total)
    }

    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn l2_squared(a: &[i16], b: &[i16]) -> u64 {
        // SAFETY: the caller's guarantees are fold's.
        let sum = unsafe {
            fold(a, b, |x, y| {
                let d = _mm256_sub_epi16(x, y);
                _mm256_madd_epi16(d, d)
            })
        };
        sum as u64
    }

    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn dot(a: &[i16], b: &[i16]) -> i64 {
        // SAFETY: as in l2_squared.
        unsafe { fold(a, b, |x, y| _mm256_madd_epi16(x, y)) }
    }
}

#[cfg(target_arch = "aarch64")]
mod aarch64 {
    use super::BLOCK;
    use core::arch::aarch64::{
        int32x4_t, vaddq_s64, vaddvq_s64, vdupq_n_s32, vdupq_n_s64, vget_low_s16, vld1q_s16,
        vmlal_high_s16, vmlal_s16, vpaddlq_s32, vsubq_s16,
    };

    #[inline]
    #[target_feature(enable = "neon")]
    unsafe fn fold(
        a: &[i16],
        b: &[i16],
        f: impl Fn(int32x4_t, int32x4_t, *const i16, *const i16) -> (int32x4_t, int32x4_t),
    ) -> i64 {
        let n = a.len();
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut total = vdupq_n_s64(0);
        let mut start = 0;
        while start < n {
            let end = (start + BLOCK).min(n);
            let mut acc0 = vdupq_n_s32(0);
            let mut acc1 = vdupq_n_s32(0);
            let mut i = start;
            // SAFETY: n is a multiple of 16; every step reads 8 lanes at
            // i ≤ n − 8.
            while i + 8 <= end {
                (acc0, acc1) = f(acc0, acc1, unsafe { pa.add(i) }, unsafe { pb.add(i) });
                i += 8;
            }
            // Each lane holds at most 128 single products below 2^24.
            total = vaddq_s64(total, vaddq_s64(vpaddlq_s32(acc0), vpaddlq_s32(acc1)));
            start = end;
        }
        vaddvq_s64(total)
    }

    #[target_feature(enable = "neon")]
    pub(super) unsafe fn l2_squared(a: &[i16], b: &[i16]) -> u64 {
        // SAFETY: the pointers come from fold, inside both slices.
        let sum = unsafe {
            fold(a, b, |acc0, acc1, x, y| {
                let d = vsubq_s16(vld1q_s16(x), vld1q_s16(y));
                (
                    vmlal_s16(acc0, vget_low_s16(d), vget_low_s16(d)),
                    vmlal_high_s16(acc1, d, d),
                )
            })
        };
        sum as u64
    }

    #[target_feature(enable = "neon")]
    pub(super) unsafe fn dot(a: &[i16], b: &[i16]) -> i64 {
        // SAFETY: as in l2_squared.
        unsafe {
            fold(a, b, |acc0, acc1, x, y| {
                let (x, y) = (vld1q_s16(x), vld1q_s16(y));
                (
                    vmlal_s16(acc0, vget_low_s16(x), vget_low_s16(y)),
                    vmlal_high_s16(acc1, x, y),
                )
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use proptest::prelude::*;

    fn padded(max: i32) -> impl Strategy<Value = (Vec<i16>, Vec<i16>)> {
        (1usize..140).prop_flat_map(move |blocks| {
            let n = blocks * COMPACT_LANES;
            let c = proptest::collection::vec((-max..=max).prop_map(|x| x as i16), n);
            (c.clone(), c)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        /// Every path equals the i64 reference, at every magnitude up to
        /// the bound and at lengths past one widening block.
        #[test]
        fn paths_agree_with_reference((a, b) in padded(COMPACT_MAX)) {
            let l2: i64 = a.iter().zip(&b).map(|(&x, &y)| (i64::from(x) - i64::from(y)).pow(2)).sum();
            let dot: i64 = a.iter().zip(&b).map(|(&x, &y)| i64::from(x) * i64::from(y)).sum();
            for k in [CompactKernel::portable(), CompactKernel::best()] {
                prop_assert_eq!(k.l2_squared(&a, &b), l2 as u64);
                prop_assert_eq!(k.dot(&a, &b), dot);
            }
        }
    }

    /// The extreme case the headroom argument is about: every difference
    /// at its largest, over several widening blocks.
    #[test]
    fn extremes_do_not_overflow() {
        let n = 3 * BLOCK + COMPACT_LANES;
        let a: Vec<i16> = (0..n).map(|_| COMPACT_MAX as i16).collect();
        let b: Vec<i16> = (0..n).map(|_| -COMPACT_MAX as i16).collect();
        let d = 2 * i64::from(COMPACT_MAX);
        for k in [CompactKernel::portable(), CompactKernel::best()] {
            assert_eq!(k.l2_squared(&a, &b), (n as i64 * d * d) as u64);
            assert_eq!(k.dot(&a, &b), -(n as i64) * i64::from(COMPACT_MAX).pow(2));
            assert_eq!(k.dot(&a, &a), n as i64 * i64::from(COMPACT_MAX).pow(2));
        }
    }
}
