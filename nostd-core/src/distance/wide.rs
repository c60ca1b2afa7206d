//! 128-bit scalar kernels: exact for every `i32` input and any dimension up
//! to 2^32 components, and the semantic reference of the faster paths.

pub(super) fn l2_squared(a: &[i32], b: &[i32]) -> u128 {
    let mut sum = 0u128;
    for (&x, &y) in a.iter().zip(b) {
        // |x − y| < 2^32, so its square fits u64 (at most (2^32 − 1)²).
        let d = (i64::from(x) - i64::from(y)).unsigned_abs();
        sum += u128::from(d * d);
    }
    sum
}

pub(super) fn dot(a: &[i32], b: &[i32]) -> i128 {
    let mut sum = 0i128;
    for (&x, &y) in a.iter().zip(b) {
        // |x · y| ≤ 2^62: fits i64.
        sum += i128::from(i64::from(x) * i64::from(y));
    }
    sum
}
