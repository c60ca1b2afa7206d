//! NEON kernels: 32-bit differences, widening multiply-accumulate
//! (`smlal`/`smlal2`) into 64-bit lanes. Callers guarantee narrow headroom.

use core::arch::aarch64::{
    vaddq_s64, vaddvq_s64, vdupq_n_s64, vget_low_s32, vld1q_s32, vmlal_high_s32, vmlal_s32,
    vsubq_s32,
};

#[target_feature(enable = "neon")]
pub(super) unsafe fn l2_squared(a: &[i32], b: &[i32]) -> u64 {
    debug_assert_eq!(a.len(), b.len());
    let n = a.len();
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc0 = vdupq_n_s64(0);
    let mut acc1 = vdupq_n_s64(0);
    let mut i = 0;
    // SAFETY: every load reads 4 lanes at i ≤ n − 4, inside both slices.
    unsafe {
        while i + 4 <= n {
            let d = vsubq_s32(vld1q_s32(pa.add(i)), vld1q_s32(pb.add(i)));
            acc0 = vmlal_s32(acc0, vget_low_s32(d), vget_low_s32(d));
            acc1 = vmlal_high_s32(acc1, d, d);
            i += 4;
        }
    }
    let mut sum = vaddvq_s64(vaddq_s64(acc0, acc1));
    for j in i..n {
        let d = i64::from(a[j]) - i64::from(b[j]);
        sum += d * d;
    }
    sum as u64
}

#[target_feature(enable = "neon")]
pub(super) unsafe fn dot(a: &[i32], b: &[i32]) -> i64 {
    debug_assert_eq!(a.len(), b.len());
    let n = a.len();
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc0 = vdupq_n_s64(0);
    let mut acc1 = vdupq_n_s64(0);
    let mut i = 0;
    // SAFETY: every load reads 4 lanes at i ≤ n − 4, inside both slices.
    unsafe {
        while i + 4 <= n {
            let x = vld1q_s32(pa.add(i));
            let y = vld1q_s32(pb.add(i));
            acc0 = vmlal_s32(acc0, vget_low_s32(x), vget_low_s32(y));
            acc1 = vmlal_high_s32(acc1, x, y);
            i += 4;
        }
    }
    let mut sum = vaddvq_s64(vaddq_s64(acc0, acc1));
    for j in i..n {
        sum += i64::from(a[j]) * i64::from(b[j]);
    }
    sum
}
