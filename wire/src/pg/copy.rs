//! `COPY` data as Postgres lays it out: rows written for `COPY … TO
//! STDOUT` in text, csv and binary format, and a binary `COPY … FROM
//! STDIN` stream read into typed values.
//!
//! Values take the forms the query path sends ([`types::text_form`] for
//! text and csv, [`types::encode_value`] for binary); binary fields are
//! read by the decoders of binary parameters ([`types::param_value`]).
//!
//! The binary stream (Postgres's `PGCOPY` file format) is an 11-byte
//! signature `PGCOPY\n\xff\r\n\0`, a 32-bit flags word, a 32-bit length of
//! a header extension and the extension, then per row a 16-bit field
//! count and each field as a 32-bit length (-1 for NULL) and its bytes,
//! and a 16-bit -1 as trailer. Integers are big-endian.

use bytes::{BufMut, Bytes, BytesMut};
use pgwire::api::Type;
use pgwire::api::results::FieldFormat;
use valori_core::limits;
use valori_query::datafusion::arrow::array::RecordBatch;
use valori_query::datafusion::arrow::datatypes::{DataType, Schema};
use valori_query::datafusion::common::ScalarValue;
use valori_query::write::CopyFormat;

use super::error::{PgError, SqlState};
use super::types;

/// The binary format's signature.
pub const BINARY_SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

/// Bit 16 of the flags word: each row carries an OID (tables have none).
const FLAG_OIDS: u32 = 1 << 16;

/// Writes the rows of a `COPY … TO STDOUT`, one copy-data message per
/// row as Postgres sends them (clients such as psycopg read a row per
/// message).
#[derive(Debug)]
pub struct CopyWriter {
    format: CopyFormat,
    names: Vec<String>,
    types: Vec<Type>,
    /// Whether the binary signature has been written.
    started: bool,
}

impl CopyWriter {
    /// A writer of rows of `schema`, typed as the query path types them.
    pub fn new(format: CopyFormat, schema: &Schema) -> CopyWriter {
        CopyWriter {
            format,
            names: schema.fields().iter().map(|f| f.name().clone()).collect(),
            types: schema
                .fields()
                .iter()
                .map(|f| types::field_pg_type(f))
                .collect(),
            started: false,
        }
    }

    /// The format code of the CopyOutResponse: 1 binary, 0 text.
    pub fn code(&self) -> i8 {
        i8::from(self.format.binary)
    }

    pub fn columns(&self) -> usize {
        self.types.len()
    }

    /// The header line of text or csv with `HEADER`, its own message.
    pub fn header(&self) -> Option<Bytes> {
        if self.format.binary || !self.format.header {
            return None;
        }
        let mut line = String::new();
        for (i, name) in self.names.iter().enumerate() {
            if i > 0 {
                line.push(self.format.delimiter);
            }
            if self.format.csv {
                csv_field(&mut line, name, &self.format, false);
            } else {
                text_field(&mut line, name, self.format.delimiter);
            }
        }
        line.push('\n');
        Some(Bytes::from(line))
    }

    /// Every row of `batch`, one message each.
    pub fn rows(&mut self, batch: &RecordBatch) -> Result<Vec<Bytes>, PgError> {
        if batch.num_columns() != self.types.len() {
            return Err(PgError::internal(format!(
                "a COPY batch of {} columns for {}",
                batch.num_columns(),
                self.types.len()
            )));
        }
        let count = i16::try_from(self.types.len()).map_err(|_| {
            PgError::new(
                SqlState::ProgramLimitExceeded,
                "COPY of more than 32767 columns",
            )
        })?;
        let single = self.types.len() == 1;
        let mut out = Vec::with_capacity(batch.num_rows());
        for row in 0..batch.num_rows() {
            if self.format.binary {
                let mut data = BytesMut::with_capacity(64);
                if !self.started {
                    binary_header(&mut data);
                    self.started = true;
                }
                data.put_i16(count);
                for (array, ty) in batch.columns().iter().zip(&self.types) {
                    types::encode_value(&mut data, array.as_ref(), row, ty, FieldFormat::Binary)?;
                }
                out.push(data.freeze());
                continue;
            }
            let mut line = String::with_capacity(64);
            for (i, (array, ty)) in batch.columns().iter().zip(&self.types).enumerate() {
                if i > 0 {
                    line.push(self.format.delimiter);
                }
                if array.is_null(row) || *array.data_type() == DataType::Null {
                    line.push_str(&self.format.null);
                    continue;
                }
                let text = types::text_form(array.as_ref(), row, ty)?;
                if self.format.csv {
                    csv_field(&mut line, &text, &self.format, single);
                } else {
                    text_field(&mut line, &text, self.format.delimiter);
                }
            }
            line.push('\n');
            out.push(Bytes::from(line));
        }
        Ok(out)
    }

    /// The last message: a binary stream's trailer (after its signature
    /// when no row carried it); nothing for text and csv.
    pub fn finish(&mut self) -> Option<Bytes> {
        if !self.format.binary {
            return None;
        }
        let mut data = BytesMut::with_capacity(21);
        if !self.started {
            binary_header(&mut data);
            self.started = true;
        }
        data.put_i16(-1);
        Some(data.freeze())
    }
}

/// The signature, no flags, an empty header extension.
fn binary_header(out: &mut BytesMut) {
    out.put_slice(BINARY_SIGNATURE);
    out.put_u32(0);
    out.put_u32(0);
}

/// A value in text format: backslash, the delimiter and the control
/// characters that would end a field or line are escaped as Postgres
/// escapes them.
fn text_field(out: &mut String, value: &str, delimiter: char) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if c == delimiter => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
}

/// A value in csv format: quoted when it holds the delimiter, the quote,
/// a line break, or reads as the NULL string (or, alone on its line, as
/// the end-of-data marker `\.`); quotes and escapes inside are escaped.
fn csv_field(out: &mut String, value: &str, format: &CopyFormat, single: bool) {
    let quote = (single && value == "\\.")
        || value == format.null
        || value
            .chars()
            .any(|c| c == format.delimiter || c == format.quote || c == '\n' || c == '\r');
    if !quote {
        out.push_str(value);
        return;
    }
    out.push(format.quote);
    for c in value.chars() {
        if c == format.quote || c == format.escape {
            out.push(format.escape);
        }
        out.push(c);
    }
    out.push(format.quote);
}

fn bad_format(message: impl Into<String>) -> PgError {
    PgError::new(SqlState::BadCopyFileFormat, message)
}

/// Reads big-endian words from a binary stream, every read checked
/// against the bytes there are.
struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], PgError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.data.len())
            .ok_or_else(|| {
                bad_format(format!(
                    "unexpected EOF in COPY data: {n} bytes needed at byte {}, {} left",
                    self.at,
                    self.data.len() - self.at
                ))
            })?;
        let bytes = &self.data[self.at..end];
        self.at = end;
        Ok(bytes)
    }

    fn i16(&mut self) -> Result<i16, PgError> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self) -> Result<i32, PgError> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn done(&self) -> bool {
        self.at == self.data.len()
    }
}

/// The rows of a binary `COPY … FROM STDIN` stream, each field decoded as
/// its column's type (`columns`: names and types, in the stream's order).
///
/// The whole stream is read before anything is written: a malformed one
/// (bad signature, unknown critical flags, a field count or length that
/// does not fit, bytes after the trailer) is refused with 22P04, a field
/// that is not its type's binary form with 22P03, and more rows than one
/// event takes ([`limits::BATCH_RECORDS_MAX`]) or a field longer than
/// [`limits::VALUE_BYTES_MAX`] with 54000. Every size read from the stream
/// is checked against the bytes that follow it before it is used, so what
/// is allocated is bounded by the data received (itself bounded by
/// [`limits::EVENT_BYTES_MAX`]). As in Postgres, the stream may end at a
/// row boundary without its trailer.
pub fn binary_rows(
    data: &[u8],
    columns: &[(String, Type)],
) -> Result<Vec<Vec<ScalarValue>>, PgError> {
    let mut r = Reader { data, at: 0 };
    if r.take(BINARY_SIGNATURE.len()).ok() != Some(&BINARY_SIGNATURE[..]) {
        return Err(bad_format(
            "COPY file signature not recognized (binary COPY data starts with PGCOPY\\n\\377\\r\\n\\0)",
        ));
    }
    let flags = r.i32()? as u32;
    if flags & FLAG_OIDS != 0 {
        return Err(bad_format(
            "invalid COPY file header: rows with OIDs are not supported",
        ));
    }
    if flags >> 17 != 0 {
        return Err(bad_format(
            "unrecognized critical flags in COPY file header",
        ));
    }
    let extension = r.i32()?;
    let extension = usize::try_from(extension).map_err(|_| {
        bad_format(format!(
            "invalid COPY file header: extension length {extension}"
        ))
    })?;
    r.take(extension)?;
    let width = columns.len();
    let mut rows = Vec::new();
    while !r.done() {
        let count = r.i16()?;
        if count == -1 {
            if !r.done() {
                return Err(bad_format(format!(
                    "{} bytes of COPY data after the end-of-data marker",
                    data.len() - r.at
                )));
            }
            break;
        }
        let line = rows.len() + 1;
        if usize::try_from(count).ok() != Some(width) {
            return Err(bad_format(format!(
                "COPY row {line}: row field count is {count}, expected {width}"
            )));
        }
        if rows.len() >= limits::BATCH_RECORDS_MAX as usize {
            return Err(PgError::new(
                SqlState::ProgramLimitExceeded,
                format!(
                    "COPY of more than {} rows (BATCH_RECORDS_MAX); one COPY is one atomic event: split the data into several COPY statements",
                    limits::BATCH_RECORDS_MAX
                ),
            ));
        }
        let mut row = Vec::with_capacity(width);
        for (name, ty) in columns {
            let len = r.i32()?;
            if len == -1 {
                row.push(ScalarValue::Null);
                continue;
            }
            let len = usize::try_from(len).map_err(|_| {
                bad_format(format!(
                    "COPY row {line}, column {name}: invalid field size {len}"
                ))
            })?;
            if len > limits::VALUE_BYTES_MAX as usize {
                return Err(PgError::new(
                    SqlState::ProgramLimitExceeded,
                    format!(
                        "COPY row {line}, column {name}: a field of {len} bytes; at most {} (VALUE_BYTES_MAX)",
                        limits::VALUE_BYTES_MAX
                    ),
                ));
            }
            let bytes = r.take(len)?;
            let value = types::param_value(Some(bytes), true, ty).map_err(|e| {
                PgError::new(
                    e.state(),
                    format!("COPY row {line}, column {name}: {}", e.message()),
                )
            })?;
            row.push(value);
        }
        rows.push(row);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Vec<u8> {
        let mut data = BINARY_SIGNATURE.to_vec();
        data.extend_from_slice(&0u32.to_be_bytes());
        data.extend_from_slice(&0u32.to_be_bytes());
        data
    }

    fn columns() -> Vec<(String, Type)> {
        vec![
            ("id".to_owned(), Type::INT8),
            ("embedding".to_owned(), types::vector_type()),
        ]
    }

    /// One row: an int8 and a vector, or NULL for `None`.
    fn row(id: i64, vector: Option<&[f32]>) -> Vec<u8> {
        let mut data = 2i16.to_be_bytes().to_vec();
        data.extend_from_slice(&8i32.to_be_bytes());
        data.extend_from_slice(&id.to_be_bytes());
        match vector {
            None => data.extend_from_slice(&(-1i32).to_be_bytes()),
            Some(v) => {
                data.extend_from_slice(&(4 + 4 * v.len() as i32).to_be_bytes());
                data.extend_from_slice(&(v.len() as u16).to_be_bytes());
                data.extend_from_slice(&0u16.to_be_bytes());
                for x in v {
                    data.extend_from_slice(&x.to_be_bytes());
                }
            }
        }
        data
    }

    /// Proves a well-formed stream reads into typed values (with a header
    /// extension skipped, and without its optional trailer).
    #[test]
    fn binary_stream_reads() {
        let mut data = BINARY_SIGNATURE.to_vec();
        data.extend_from_slice(&0u32.to_be_bytes());
        data.extend_from_slice(&3u32.to_be_bytes());
        data.extend_from_slice(b"ext");
        data.extend(row(7, Some(&[1.5, -2.0])));
        data.extend(row(8, None));
        let mut whole = data.clone();
        whole.extend_from_slice(&(-1i16).to_be_bytes());
        for stream in [&whole, &data] {
            let rows = binary_rows(stream, &columns()).unwrap();
            assert_eq!(rows.len(), 2);
            assert_eq!(rows[0][0], ScalarValue::Int64(Some(7)));
            assert_eq!(
                rows[0][1],
                valori_query::statement::vector_param(vec![1.5, -2.0])
            );
            assert_eq!(
                rows[1],
                vec![ScalarValue::Int64(Some(8)), ScalarValue::Null]
            );
        }
    }

    /// Proves each kind of malformed stream is refused with its SQLSTATE
    /// and a message naming what is wrong: a bad signature, OIDs, a
    /// header extension or field length past the end, a wrong field
    /// count, a negative length other than -1, bytes after the trailer
    /// (22P04); a field that is not its type's binary form (22P03); and a
    /// field longer than VALUE_BYTES_MAX (54000), refused before its
    /// bytes are looked for.
    #[test]
    fn malformed_binary_streams_are_refused() {
        let trailer = (-1i16).to_be_bytes();
        let with = |parts: &[&[u8]]| -> Vec<u8> { parts.concat() };
        let good_row = row(1, Some(&[1.0, 2.0]));
        let mut oids = BINARY_SIGNATURE.to_vec();
        oids.extend_from_slice(&FLAG_OIDS.to_be_bytes());
        oids.extend_from_slice(&0u32.to_be_bytes());
        let mut long_extension = BINARY_SIGNATURE.to_vec();
        long_extension.extend_from_slice(&0u32.to_be_bytes());
        long_extension.extend_from_slice(&i32::MAX.to_be_bytes());
        let mut one_field = 1i16.to_be_bytes().to_vec();
        one_field.extend_from_slice(&(-1i32).to_be_bytes());
        let mut past_end = 2i16.to_be_bytes().to_vec();
        past_end.extend_from_slice(&8i32.to_be_bytes());
        past_end.extend_from_slice(&[0, 0, 0]);
        let mut negative = 2i16.to_be_bytes().to_vec();
        negative.extend_from_slice(&(-2i32).to_be_bytes());
        let mut short_int = 2i16.to_be_bytes().to_vec();
        short_int.extend_from_slice(&4i32.to_be_bytes());
        short_int.extend_from_slice(&7i32.to_be_bytes());
        short_int.extend_from_slice(&(-1i32).to_be_bytes());
        let mut huge = 2i16.to_be_bytes().to_vec();
        huge.extend_from_slice(&8i32.to_be_bytes());
        huge.extend_from_slice(&1i64.to_be_bytes());
        huge.extend_from_slice(&i32::MAX.to_be_bytes());
        let h = header();
        for (data, code, says) in [
            (b"PGCOPY\n\xff\r\n".to_vec(), "22P04", "signature"),
            (b"1\t[1,2]\n".to_vec(), "22P04", "signature"),
            (oids, "22P04", "OIDs"),
            (long_extension, "22P04", "unexpected EOF"),
            (
                with(&[&h, &one_field]),
                "22P04",
                "field count is 1, expected 2",
            ),
            (with(&[&h, &good_row, &past_end]), "22P04", "unexpected EOF"),
            (with(&[&h, &negative]), "22P04", "invalid field size -2"),
            (
                with(&[&h, &good_row, &trailer, &good_row]),
                "22P04",
                "after the end-of-data",
            ),
            (with(&[&h, &good_row, &[0]]), "22P04", "unexpected EOF"),
            (with(&[&h, &short_int]), "22P03", "row 1, column id"),
            (with(&[&h, &huge]), "54000", "VALUE_BYTES_MAX"),
        ] {
            let e = binary_rows(&data, &columns()).unwrap_err();
            assert_eq!(e.code(), code, "{e}");
            assert!(e.message().contains(says), "{e}");
        }
    }

    /// Proves text and csv fields are escaped and quoted as Postgres does:
    /// backslash, delimiter and line breaks in text; delimiter, quote,
    /// line breaks, the NULL string and a lone `\.` in csv.
    #[test]
    fn text_and_csv_fields() {
        let mut out = String::new();
        text_field(&mut out, "a\tb\\c\nd\re", '\t');
        assert_eq!(out, "a\\tb\\\\c\\nd\\re");
        let mut out = String::new();
        text_field(&mut out, "a|b\tc", '|');
        assert_eq!(out, "a\\|b\\tc");
        let csv = valori_query::write::CopyFormat {
            csv: true,
            binary: false,
            delimiter: ',',
            header: false,
            null: String::new(),
            quote: '"',
            escape: '"',
        };
        for (value, single, expected) in [
            ("plain", false, "plain"),
            ("a,b", false, "\"a,b\""),
            ("say \"hi\"", false, "\"say \"\"hi\"\"\""),
            ("two\nlines", false, "\"two\nlines\""),
            ("", false, "\"\""),
            ("\\.", true, "\"\\.\""),
            ("\\.", false, "\\."),
        ] {
            let mut out = String::new();
            csv_field(&mut out, value, &csv, single);
            assert_eq!(out, expected, "{value:?}");
        }
    }
}
