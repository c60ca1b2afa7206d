//! Q16.16 fixed point: the only numeric representation that enters the log.
//!
//! `raw = round_half_to_even(x * 65536)` as `i32`. The conversion is done with
//! integer operations on the IEEE-754 bit pattern, so it gives the same raw
//! integer on every target whatever its float unit, rounding mode or
//! flush-to-zero setting: no float arithmetic runs on this path.

use core::fmt;

/// Number of fractional bits.
pub const FRAC_BITS: u32 = 16;

/// One Q16.16 value: the real number `raw / 65536`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub struct Q16(pub i32);

impl Q16 {
    pub const ZERO: Q16 = Q16(0);
    pub const ONE: Q16 = Q16(1 << FRAC_BITS);

    /// The raw two's-complement integer.
    pub const fn raw(self) -> i32 {
        self.0
    }

    /// The value as `f32`, for display and user-facing float views only.
    /// Never feed the result back into state.
    pub fn to_f32(self) -> f32 {
        // Exact for |raw| <= 2^24; above that f32 rounds, which is acceptable
        // for a view and never used for state.
        self.0 as f32 / 65536.0
    }

    /// The value as `f64`; exact for every raw value.
    pub fn to_f64(self) -> f64 {
        f64::from(self.0) / 65536.0
    }
}

impl fmt::Debug for Q16 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Q16({} = {})", self.0, self.to_f64())
    }
}

/// Why a float could not become a Q16.16 value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QuantizeErrorKind {
    #[error("NaN is not a number Valori can store")]
    NaN,
    #[error("infinity is not a number Valori can store")]
    Infinite,
    #[error("|x| must be below 32768 to fit Q16.16")]
    OutOfRange,
}

/// A component that could not be converted, naming where it was.
#[derive(Clone, Copy, Debug, PartialEq, thiserror::Error)]
#[error("component {component} ({value:?}): {kind}")]
pub struct QuantizeError {
    /// Index of the offending component within its vector.
    pub component: u32,
    /// The rejected input, as given.
    pub value: f32,
    pub kind: QuantizeErrorKind,
}

/// Converts one float to Q16.16 with round-half-to-even.
///
/// NaN, ±Inf and `|x| >= 32768` are rejected, never clamped.
pub fn quantize(x: f32) -> Result<Q16, QuantizeErrorKind> {
    let bits = x.to_bits();
    let negative = bits >> 31 == 1;
    let exponent = (bits >> 23) & 0xff;
    let fraction = bits & 0x007f_ffff;
    if exponent == 0xff {
        return Err(if fraction == 0 {
            QuantizeErrorKind::Infinite
        } else {
            QuantizeErrorKind::NaN
        });
    }
    // |x| >= 2^15 <=> biased exponent >= 127 + 15.
    if exponent >= 127 + 15 {
        return Err(QuantizeErrorKind::OutOfRange);
    }
    // x = mantissa * 2^(exponent - 150) for normals (implicit leading one),
    // mantissa * 2^-149 for subnormals. Scaling by 2^16 adds 16 to the power.
    let (mantissa, power) = if exponent == 0 {
        (u64::from(fraction), -149 + 16)
    } else {
        (
            u64::from(fraction | 0x0080_0000),
            exponent as i32 - 150 + 16,
        )
    };
    let magnitude: u64 = if power >= 0 {
        // power <= 141 - 134 = 7 and mantissa < 2^24: fits easily.
        mantissa << power
    } else {
        let shift = (-power) as u32;
        if shift >= 40 {
            // mantissa < 2^24 <= 2^(shift - 1): below one half, rounds to 0.
            0
        } else {
            let quotient = mantissa >> shift;
            let remainder = mantissa & ((1u64 << shift) - 1);
            let half = 1u64 << (shift - 1);
            if remainder > half || (remainder == half && quotient & 1 == 1) {
                quotient + 1
            } else {
                quotient
            }
        }
    };
    // |x| < 2^15 so magnitude <= 2^31 - 1 after rounding (the largest f32
    // below 2^15 is 2^15 - 2^-9, which scales to 2^31 - 2^7).
    debug_assert!(magnitude < 1 << 31);
    let magnitude = magnitude as i32;
    Ok(Q16(if negative { -magnitude } else { magnitude }))
}

/// Converts a float vector, naming the first bad component.
///
/// This is the one conversion every entry point (SQL, REST, Python, Flight)
/// uses.
#[cfg(feature = "alloc")]
pub fn quantize_vector(values: &[f32]) -> Result<alloc::vec::Vec<i32>, QuantizeError> {
    let mut out = alloc::vec::Vec::with_capacity(values.len());
    quantize_into(values, &mut out)?;
    Ok(out)
}

/// Appends the Q16.16 raw values of `values` to `out`; on error `out` is left
/// as it was.
#[cfg(feature = "alloc")]
pub fn quantize_into(values: &[f32], out: &mut alloc::vec::Vec<i32>) -> Result<(), QuantizeError> {
    let start = out.len();
    for (component, &value) in values.iter().enumerate() {
        match quantize(value) {
            Ok(q) => out.push(q.0),
            Err(kind) => {
                out.truncate(start);
                return Err(QuantizeError {
                    component: component as u32,
                    value,
                    kind,
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The float reference: exact because multiplying by 2^16 is exact in
    /// f64 and std's round_ties_even is correctly rounded.
    fn reference(x: f32) -> Option<i32> {
        if !x.is_finite() || x.abs() >= 32768.0 {
            return None;
        }
        Some((f64::from(x) * 65536.0).round_ties_even() as i32)
    }

    /// Proves the integer conversion equals the float reference on a dense
    /// stride through all 2^32 bit patterns plus every special value.
    #[test]
    fn matches_float_reference_across_bit_patterns() {
        let mut bits: u32 = 0;
        loop {
            let x = f32::from_bits(bits);
            assert_eq!(
                quantize(x).ok().map(|q| q.0),
                reference(x),
                "bits {bits:#010x}"
            );
            match bits.checked_add(997) {
                Some(next) => bits = next,
                None => break,
            }
        }
    }

    /// Proves the halfway cases round to even, in both signs.
    #[test]
    fn halfway_rounds_to_even() {
        let ulp = 1.0f32 / 65536.0;
        assert_eq!(quantize(0.5 * ulp), Ok(Q16(0)));
        assert_eq!(quantize(1.5 * ulp), Ok(Q16(2)));
        assert_eq!(quantize(2.5 * ulp), Ok(Q16(2)));
        assert_eq!(quantize(-2.5 * ulp), Ok(Q16(-2)));
        assert_eq!(quantize(-3.5 * ulp), Ok(Q16(-4)));
        assert_eq!(quantize(1.0), Ok(Q16::ONE));
        assert_eq!(quantize(-0.0), Ok(Q16(0)));
        assert_eq!(quantize(f32::MIN_POSITIVE / 2.0), Ok(Q16(0)));
    }

    /// Proves the range edges: the largest float below 2^15 converts, 2^15
    /// and everything non-finite is rejected with its reason.
    #[test]
    fn rejects_out_of_range_and_non_finite() {
        let below = f32::from_bits(32768.0f32.to_bits() - 1);
        assert_eq!(quantize(below), Ok(Q16(i32::MAX - 127)));
        assert_eq!(quantize(-below), Ok(Q16(-(i32::MAX - 127))));
        assert_eq!(quantize(32768.0), Err(QuantizeErrorKind::OutOfRange));
        assert_eq!(quantize(-32768.0), Err(QuantizeErrorKind::OutOfRange));
        assert_eq!(quantize(f32::NAN), Err(QuantizeErrorKind::NaN));
        assert_eq!(quantize(-f32::NAN), Err(QuantizeErrorKind::NaN));
        assert_eq!(quantize(f32::INFINITY), Err(QuantizeErrorKind::Infinite));
        assert_eq!(
            quantize(f32::NEG_INFINITY),
            Err(QuantizeErrorKind::Infinite)
        );
    }

    /// Proves a vector error names the first bad component and keeps the
    /// output untouched.
    #[test]
    fn vector_error_names_component() {
        let mut out = alloc::vec![7];
        let err = quantize_into(&[1.0, 2.0, f32::NAN, f32::INFINITY], &mut out).unwrap_err();
        assert_eq!(err.component, 2);
        assert_eq!(err.kind, QuantizeErrorKind::NaN);
        assert_eq!(out, alloc::vec![7]);
    }
}
