//! Property tests: every kernel path against a naive i128 reference, on
//! random, extreme and boundary inputs.

use super::*;
use alloc::vec::Vec;
use proptest::prelude::*;

fn reference_l2(a: &[i32], b: &[i32]) -> u128 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| {
            let d = i128::from(x) - i128::from(y);
            (d * d) as u128
        })
        .sum()
}

fn reference_dot(a: &[i32], b: &[i32]) -> i128 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| i128::from(x) * i128::from(y))
        .sum()
}

/// Checks every available path on one pair: a path either declines (not on
/// this CPU, or no headroom) or returns exactly the reference. The wide path
/// and the best narrow path (when headroom holds) must always answer.
fn check_all_paths(a: &[i32], b: &[i32]) {
    let want_l2 = reference_l2(a, b);
    let want_dot = reference_dot(a, b);
    let narrow = Headroom::new(a.len(), max_abs(a), max_abs(b)).is_narrow();
    for path in Path::ALL {
        let l2 = l2_squared_on(path, a, b);
        let dot = dot_on(path, a, b);
        if path.is_available() && (!path.is_narrow() || narrow) {
            assert_eq!(l2, Some(want_l2), "l2 on {path:?}");
            assert_eq!(dot, Some(want_dot), "dot on {path:?}");
        } else {
            assert_eq!(l2, None);
            assert_eq!(dot, None);
        }
    }
    assert_eq!(l2_squared(a, b), want_l2);
    assert_eq!(dot(a, b), want_dot);
}

fn pair(max: i32, dim: core::ops::Range<usize>) -> impl Strategy<Value = (Vec<i32>, Vec<i32>)> {
    dim.prop_flat_map(move |d| {
        (
            proptest::collection::vec(-max..=max, d),
            proptest::collection::vec(-max..=max, d),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// Realistic magnitudes (|x| < 8): every narrow path answers.
    #[test]
    fn small_values_all_paths((a, b) in pair(8 << 16, 0..800)) {
        check_all_paths(&a, &b);
    }

    /// The whole i32 range: narrow paths must decline or be exact.
    #[test]
    fn full_range_all_paths((a, b) in pair(i32::MAX, 0..64)) {
        check_all_paths(&a, &b);
    }

    /// Magnitudes straddling the headroom boundary for 384 dimensions.
    #[test]
    fn boundary_magnitudes((a, b) in pair(1 << 26, 384..385)) {
        check_all_paths(&a, &b);
    }
}

/// The extreme corners: i32::MIN against i32::MAX everywhere, the largest
/// possible sum at the largest dimension.
#[test]
fn extremes() {
    let dim = crate::limits::DIM_MAX as usize;
    let lo = alloc::vec![i32::MIN; dim];
    let hi = alloc::vec![i32::MAX; dim];
    check_all_paths(&lo, &hi);
    check_all_paths(&lo, &lo);
    check_all_paths(&hi, &hi);
    let mixed: Vec<i32> = (0..dim)
        .map(|i| if i % 2 == 0 { i32::MIN } else { i32::MAX })
        .collect();
    check_all_paths(&mixed, &hi);
    check_all_paths(&mixed, &lo);
    let d = (i128::from(i32::MAX) - i128::from(i32::MIN)) as u128;
    assert_eq!(l2_squared(&lo, &hi), d * d * dim as u128);
}

/// Every length from 0 to 70 exercises each tail of each SIMD loop.
#[test]
fn every_tail_length() {
    for n in 0..70i32 {
        let a: Vec<i32> = (0..n).map(|i| (i * 7919) % 65536 - 30000).collect();
        let b: Vec<i32> = (0..n).map(|i| (i * 104729) % 99991 - 50000).collect();
        check_all_paths(&a, &b);
    }
}

/// Headroom admits exactly the inputs whose sums fit: at the largest
/// admitted magnitude for one dimension the narrow sum is i64::MAX-safe.
#[test]
fn headroom_boundary_is_tight() {
    let dim = 384usize;
    // Largest s with dim · s² ≤ i64::MAX.
    let s = ((i64::MAX as u128) / dim as u128).isqrt() as u32;
    assert!(Headroom::new(dim, s / 2, s - s / 2).is_narrow());
    assert!(!Headroom::new(dim, s / 2 + 1, s - s / 2).is_narrow());
    let half = (s / 2) as i32;
    let a = alloc::vec![half; dim];
    let b = alloc::vec![-((s - s / 2) as i32); dim];
    check_all_paths(&a, &b);
}

/// Cosine follows its documented definition and orders as real cosine does
/// on clearly separated inputs.
#[test]
fn cosine_definition() {
    let one = 1 << 16;
    let x = [one, 0];
    let y = [0, one];
    let neg = [-one, 0];
    let diag = [one, one];
    assert_eq!(distance(Metric::Cosine, &x, &x), Distance(0));
    assert_eq!(distance(Metric::Cosine, &x, &y), Distance(1 << 32));
    assert_eq!(distance(Metric::Cosine, &x, &neg), Distance(2 << 32));
    // den = 65536 · ⌊√(2·65536²)⌋ = 65536 · 92681; dot = 65536².
    let den: i128 = 65536 * 92681;
    let want = ((den - 65536 * 65536) << 32).div_euclid(den);
    assert_eq!(distance(Metric::Cosine, &x, &diag), Distance(want));
    assert!(Distance(want) > Distance(0) && Distance(want) < Distance(1 << 32));
    assert_eq!(
        distance(Metric::Cosine, &[0, 0], &x),
        Distance(COSINE_ZERO_VECTOR)
    );
}

/// Inner product distance is the negated dot product (pgvector's `<#>`).
#[test]
fn inner_product_is_negated_dot() {
    let a = [3 << 16, -2 << 16];
    let b = [1 << 16, 5 << 16];
    assert_eq!(
        distance(Metric::InnerProduct, &a, &b),
        Distance(-((3 - 10) * (1i128 << 32)))
    );
}
