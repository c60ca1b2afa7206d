//! Floats in PostgreSQL's text form, as `float4out`, `float8out` and
//! pgvector's `vector_out` write them: what the Postgres protocol sends,
//! `COPY … TO` writes and a cast to text gives.

use std::fmt::Write as _;

use datafusion::arrow::array::{Array, AsArray, PrimitiveArray, StringArray};
use datafusion::arrow::datatypes::{ArrowPrimitiveType, DataType, Float32Type, Float64Type};

/// `real` and `double precision`: `f32` and `f64`.
pub trait PgFloat: Into<f64> + Copy + ryu::Float {}

impl PgFloat for f32 {}
impl PgFloat for f64 {}

/// Appends a float in Postgres's text form (`float4out`, `float8out`,
/// pgvector's `vector_out`): the shortest digits that read back as the
/// same value, in the float's own width (an `f32`'s shortest form, not
/// its `f64` widening's); written plainly when the first digit's decimal
/// exponent is from -4 to 5 for a `real` (`FLT_DIG` - 1) and to 14 for a
/// `double precision` (`DBL_DIG` - 1), otherwise as `1.5e+06`, `1e-07`
/// (exponent signed, at least two digits); `Infinity`, `NaN`, `-0`.
/// Writes straight into `out`: a vector's components are written on
/// every row a query or `COPY` sends.
///
/// The digits are Ryū's (the `ryu` crate; PostgreSQL computes them with
/// Ryū too); only the layout is PostgreSQL's, decided here.
pub fn push_float_text<F>(out: &mut String, x: F)
where
    F: PgFloat,
{
    let wide: f64 = x.into();
    if wide.is_nan() {
        out.push_str("NaN");
        return;
    }
    if wide.is_infinite() {
        out.push_str(if wide > 0.0 { "Infinity" } else { "-Infinity" });
        return;
    }
    if wide == 0.0 {
        out.push_str(if wide.is_sign_negative() { "-0" } else { "0" });
        return;
    }
    let plain_below = if std::mem::size_of::<F>() == 4 { 6 } else { 15 };
    let mut buffer = ryu::Buffer::new();
    let text = buffer.format_finite(x);
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    // Ryū writes `1234.5`, `100.0`, `0.00012`, `1e-7` or `1.5e20`: its
    // significant digits, and the decimal exponent of the first.
    let (mantissa, shift) = match text.split_once('e') {
        Some((m, e)) => (m, e.parse::<i32>().unwrap_or(0)),
        None => (text, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let mut digits = [0u8; 40];
    let mut len = 0;
    let exponent;
    if whole != "0" {
        exponent = whole.len() as i32 - 1 + shift;
        for &b in whole.as_bytes().iter().chain(fraction.as_bytes()) {
            digits[len] = b;
            len += 1;
        }
    } else {
        let zeros = fraction.bytes().take_while(|&b| b == b'0').count();
        exponent = -(zeros as i32) - 1 + shift;
        for &b in &fraction.as_bytes()[zeros..] {
            digits[len] = b;
            len += 1;
        }
    }
    while len > 1 && digits[len - 1] == b'0' {
        len -= 1;
    }
    let digits = std::str::from_utf8(&digits[..len]).unwrap_or("0");
    if negative {
        out.push('-');
    }
    if (-4..plain_below).contains(&exponent) {
        if exponent < 0 {
            out.push_str("0.");
            for _ in 1..-exponent {
                out.push('0');
            }
            out.push_str(digits);
        } else {
            let point = exponent as usize + 1;
            if digits.len() <= point {
                out.push_str(digits);
                for _ in digits.len()..point {
                    out.push('0');
                }
            } else {
                out.push_str(&digits[..point]);
                out.push('.');
                out.push_str(&digits[point..]);
            }
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(
            out,
            "e{}{:02}",
            if exponent < 0 { '-' } else { '+' },
            exponent.unsigned_abs()
        );
    }
}

/// A float in PostgreSQL's text form ([`push_float_text`]).
pub fn float_text<F>(x: F) -> String
where
    F: PgFloat,
{
    let mut out = String::new();
    push_float_text(&mut out, x);
    out
}

/// Each value of a `real` or `double precision` column in text form
/// (NULL stays NULL); `None` for a column of another type.
pub fn float_column_text(array: &dyn Array) -> Option<StringArray> {
    fn texts<T>(values: &PrimitiveArray<T>) -> StringArray
    where
        T: ArrowPrimitiveType,
        T::Native: PgFloat,
    {
        values.iter().map(|v| v.map(float_text)).collect()
    }
    match array.data_type() {
        DataType::Float32 => Some(texts(array.as_primitive::<Float32Type>())),
        DataType::Float64 => Some(texts(array.as_primitive::<Float64Type>())),
        _ => None,
    }
}

/// pgvector's text form of a vector, `[1,2.5,-0.125]`, its components
/// written as `float4out` writes them.
pub fn vector_text(values: &[f32]) -> String {
    let mut out = String::with_capacity(2 + values.len() * 12);
    out.push('[');
    for (i, x) in values.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_float_text(&mut out, *x);
    }
    out.push(']');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves floats are written as PostgreSQL 16 writes them: the
    /// expected texts are `SELECT x::float4` and `x::float8` in psql and
    /// pgvector 0.6's `'[…]'::vector`, around each boundary of the plain
    /// form (1e-4 and 1e6 for `real`, 1e15 for `double precision`).
    #[test]
    fn floats_as_postgresql_writes_them() {
        let cases32: [(f32, &str); 16] = [
            (100000.0, "100000"),
            (1e6, "1e+06"),
            (1234567.0, "1.234567e+06"),
            (1e12, "1e+12"),
            (1e15, "1e+15"),
            (0.0001, "0.0001"),
            (0.00012345, "0.00012345"),
            (123456.7, "123456.7"),
            (16777216.0, "1.6777216e+07"),
            (65535.5, "65535.5"),
            (32767.9999, "32768"),
            (1e-5, "1e-05"),
            (-0.0, "-0"),
            (-2.5e-7, "-2.5e-07"),
            // -1,706,840,064 / 2^16 and 65,537 / 2^17.
            (-1_706_840_064.0 / 65536.0, "-26044.312"),
            (65_537.0 / 131_072.0, "0.5000076"),
        ];
        for (x, expected) in cases32 {
            assert_eq!(float_text(x), expected, "{x:e} as real");
        }
        let cases64: [(f64, &str); 6] = [
            (1e14, "100000000000000"),
            (1e15, "1e+15"),
            (1234567890123456.0, "1.234567890123456e+15"),
            (1e16, "1e+16"),
            (0.0001, "0.0001"),
            (-1e100, "-1e+100"),
        ];
        for (x, expected) in cases64 {
            assert_eq!(float_text(x), expected, "{x:e} as double precision");
        }
    }

    /// Proves the digits are the shortest that read back as the value, as
    /// the standard library's own shortest form gives them (its `{:e}`,
    /// an implementation independent of Ryū), and the layout follows the
    /// decimal exponent, for 200,000 `f32` and `f64` values of every
    /// magnitude.
    #[test]
    fn float_digits_are_the_shortest_round_trip() {
        fn check<F>(x: F, plain_below: i32)
        where
            F: PgFloat + std::fmt::LowerExp + std::str::FromStr + PartialEq,
        {
            let wide: f64 = x.into();
            if !wide.is_finite() || wide == 0.0 {
                return;
            }
            let text = float_text(x);
            let back: F = text
                .parse()
                .ok()
                .unwrap_or_else(|| panic!("{text} does not parse"));
            assert!(back == x, "{text} reads back as another value than {x:e}");
            let std_form = format!("{x:e}");
            let (std_mantissa, std_exponent) = std_form.split_once('e').unwrap();
            let std_exponent: i32 = std_exponent.parse().unwrap();
            let std_digits: String = std_mantissa.chars().filter(char::is_ascii_digit).collect();
            let digits: String = match text.split_once('e') {
                Some((m, _)) => m.chars().filter(char::is_ascii_digit).collect(),
                None => text.chars().filter(char::is_ascii_digit).collect(),
            };
            let digits = digits.trim_start_matches('0').trim_end_matches('0');
            let std_digits = std_digits.trim_end_matches('0');
            // Where two shortest forms are equally near (`-26044.3125` as
            // a real: `-26044.312` or `-26044.313`), the standard library
            // rounds the half up and PostgreSQL's Ryū to the even digit.
            if digits != std_digits {
                let (ours, theirs) = (digits.as_bytes(), std_digits.as_bytes());
                assert_eq!(ours.len(), theirs.len(), "{text} against {std_form}");
                let last = ours.len() - 1;
                assert_eq!(ours[..last], theirs[..last], "{text} against {std_form}");
                assert!(
                    ours[last] % 2 == 0 && theirs[last] == ours[last] + 1,
                    "{text} against {std_form}"
                );
            }
            assert_eq!(
                text.contains('e'),
                !(-4..plain_below).contains(&std_exponent),
                "{text} against {std_form}"
            );
        }
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..100_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            check(f32::from_bits(state as u32), 6);
            check(f64::from_bits(state), 15);
            // Q16.16 values, as vectors hold them.
            check((state as i32) as f32 / 65536.0, 6);
        }
    }
}
