//! 64-bit scalar kernels with four independent accumulators, for any target.
//! Callers guarantee narrow headroom (see `Headroom`): `|a_i| + |b_i|` fits
//! an `i32` and no partial sum exceeds `i64::MAX`.

pub(super) fn l2_squared(a: &[i32], b: &[i32]) -> u64 {
    let mut acc = [0i64; 4];
    let mut ca = a.chunks_exact(4);
    let mut cb = b.chunks_exact(4);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for lane in 0..4 {
            let d = i64::from(x[lane]) - i64::from(y[lane]);
            acc[lane] += d * d;
        }
    }
    let mut sum = acc[0] + acc[1] + acc[2] + acc[3];
    for (&x, &y) in ca.remainder().iter().zip(cb.remainder()) {
        let d = i64::from(x) - i64::from(y);
        sum += d * d;
    }
    sum as u64
}

pub(super) fn dot(a: &[i32], b: &[i32]) -> i64 {
    let mut acc = [0i64; 4];
    let mut ca = a.chunks_exact(4);
    let mut cb = b.chunks_exact(4);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for lane in 0..4 {
            acc[lane] += i64::from(x[lane]) * i64::from(y[lane]);
        }
    }
    let mut sum = acc[0] + acc[1] + acc[2] + acc[3];
    for (&x, &y) in ca.remainder().iter().zip(cb.remainder()) {
        sum += i64::from(x) * i64::from(y);
    }
    sum
}
