//! AVX2 kernels: 32-bit differences, 64-bit products (`vpmuldq` on the even
//! lanes and on the odd lanes moved down by a shuffle), 64-bit accumulators.
//! Callers guarantee AVX2 is available and narrow headroom holds.

use core::arch::x86_64::{
    __m256i, _mm_add_epi64, _mm_cvtsi128_si64, _mm_unpackhi_epi64, _mm256_add_epi64,
    _mm256_castsi256_si128, _mm256_extracti128_si256, _mm256_loadu_si256, _mm256_mul_epi32,
    _mm256_setzero_si256, _mm256_shuffle_epi32, _mm256_sub_epi32,
};

/// Odd 32-bit lanes moved onto the even ones (`[1, 1, 3, 3]` per half).
const ODD: i32 = 0b11_11_01_01;

#[inline]
#[target_feature(enable = "avx2")]
fn hsum(v: __m256i) -> i64 {
    let s = _mm_add_epi64(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    _mm_cvtsi128_si64(_mm_add_epi64(s, _mm_unpackhi_epi64(s, s)))
}

#[target_feature(enable = "avx2")]
pub(super) unsafe fn l2_squared(a: &[i32], b: &[i32]) -> u64 {
    debug_assert_eq!(a.len(), b.len());
    let n = a.len();
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [_mm256_setzero_si256(); 4];
    let mut i = 0;
    // SAFETY: every load reads 8 lanes at i < n - 7 (or i + 8 < n - 7),
    // inside both slices.
    unsafe {
        while i + 16 <= n {
            let d0 = _mm256_sub_epi32(
                _mm256_loadu_si256(pa.add(i).cast()),
                _mm256_loadu_si256(pb.add(i).cast()),
            );
            let d1 = _mm256_sub_epi32(
                _mm256_loadu_si256(pa.add(i + 8).cast()),
                _mm256_loadu_si256(pb.add(i + 8).cast()),
            );
            let o0 = _mm256_shuffle_epi32::<ODD>(d0);
            let o1 = _mm256_shuffle_epi32::<ODD>(d1);
            acc[0] = _mm256_add_epi64(acc[0], _mm256_mul_epi32(d0, d0));
            acc[1] = _mm256_add_epi64(acc[1], _mm256_mul_epi32(o0, o0));
            acc[2] = _mm256_add_epi64(acc[2], _mm256_mul_epi32(d1, d1));
            acc[3] = _mm256_add_epi64(acc[3], _mm256_mul_epi32(o1, o1));
            i += 16;
        }
        if i + 8 <= n {
            let d = _mm256_sub_epi32(
                _mm256_loadu_si256(pa.add(i).cast()),
                _mm256_loadu_si256(pb.add(i).cast()),
            );
            let o = _mm256_shuffle_epi32::<ODD>(d);
            acc[0] = _mm256_add_epi64(acc[0], _mm256_mul_epi32(d, d));
            acc[1] = _mm256_add_epi64(acc[1], _mm256_mul_epi32(o, o));
            i += 8;
        }
    }
    let total = _mm256_add_epi64(
        _mm256_add_epi64(acc[0], acc[1]),
        _mm256_add_epi64(acc[2], acc[3]),
    );
    let mut sum = hsum(total);
    for j in i..n {
        let d = i64::from(a[j]) - i64::from(b[j]);
        sum += d * d;
    }
    sum as u64
}

#[target_feature(enable = "avx2")]
pub(super) unsafe fn dot(a: &[i32], b: &[i32]) -> i64 {
    debug_assert_eq!(a.len(), b.len());
    let n = a.len();
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [_mm256_setzero_si256(); 2];
    let mut i = 0;
    // SAFETY: every load reads 8 lanes at i ≤ n − 8, inside both slices.
    unsafe {
        while i + 8 <= n {
            let x = _mm256_loadu_si256(pa.add(i).cast());
            let y = _mm256_loadu_si256(pb.add(i).cast());
            let xo = _mm256_shuffle_epi32::<ODD>(x);
            let yo = _mm256_shuffle_epi32::<ODD>(y);
            acc[0] = _mm256_add_epi64(acc[0], _mm256_mul_epi32(x, y));
            acc[1] = _mm256_add_epi64(acc[1], _mm256_mul_epi32(xo, yo));
            i += 8;
        }
    }
    let mut sum = hsum(_mm256_add_epi64(acc[0], acc[1]));
    for j in i..n {
        sum += i64::from(a[j]) * i64::from(b[j]);
    }
    sum
}
