//! Tables as users declare them: named, typed columns over a collection.
//!
//! A collection created by [`Event::CreateTable`](crate::event::Event)
//! carries a [`TableSchema`]: the columns in declared order, exactly one
//! of them the vector column (stored in the collection's vector rows, as
//! every collection's vectors are) and any number of scalar columns,
//! stored here as [`ScalarColumn`]s in Arrow's layouts (a values buffer
//! for fixed-width types, offsets into a byte heap for the others, a
//! validity flag per row). A value is a byte string in its type's
//! canonical form ([`ScalarType::check`]); the state machine checks it,
//! never interprets it beyond that, so what a value means (a date, a
//! JSON document) is decided once at the edge and replay is exact.
//!
//! The engine's record id stays the collection's row key. A table whose
//! primary key is an integer column uses the key's value as the record
//! id (two's complement); any other table gets record ids chosen at the
//! edge, and its key is a unique column checked here.
//!
//! Byte layouts (schema, values, hash, snapshot) are in `docs/format.md`.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::String;
use alloc::vec::Vec;
use core::ops::Bound;

use crate::limits;

/// The tag of a table record whose vector column is NULL; its vector is
/// all zeros. Every other table record carries tag 0. Searches of a table
/// never return such records (as pgvector's indexes skip NULL vectors),
/// and a NULL vector reads back as SQL NULL.
pub const NULL_VECTOR_TAG: u64 = 1;

/// The type of a scalar column. [`ScalarType::code`] is part of the event,
/// snapshot and hash encodings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ScalarType {
    /// One byte, 0 or 1.
    Bool,
    /// Little-endian two's complement of 2, 4 and 8 bytes.
    Int16,
    Int32,
    Int64,
    /// IEEE 754 bits, little-endian; NaN only as the canonical quiet NaN.
    Float32,
    Float64,
    /// Exact decimal text: `-?digits[.digits]`, no redundant zeros, or
    /// `NaN`.
    Numeric,
    /// UTF-8 text.
    Text,
    Bytea,
    /// 16 bytes in the order they are written.
    Uuid,
    /// Days since 1970-01-01, `i32` little-endian.
    Date,
    /// Microseconds since 1970-01-01 00:00:00, `i64` little-endian.
    Timestamp,
    /// Microseconds since 1970-01-01 00:00:00 UTC, `i64` little-endian.
    TimestampTz,
    /// UTF-8 text, kept as written (Postgres `json`).
    Json,
    /// UTF-8 text in the canonical form chosen at the edge (`jsonb`).
    Jsonb,
    /// UTF-8 text blank-padded to the column's `type_mod` characters
    /// (Postgres `character(n)`, `bpchar`); without a `type_mod`, as
    /// written.
    Char,
    /// One-dimensional arrays: `count:u32` then, per element, `valid:u8`
    /// and the element in its scalar form (fixed width, or `len:u32` and
    /// bytes).
    Array(ArrayElement),
}

/// The element type of a one-dimensional array column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ArrayElement {
    Bool,
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    Numeric,
    Text,
}

impl ArrayElement {
    const ALL: [ArrayElement; 8] = [
        ArrayElement::Bool,
        ArrayElement::Int16,
        ArrayElement::Int32,
        ArrayElement::Int64,
        ArrayElement::Float32,
        ArrayElement::Float64,
        ArrayElement::Numeric,
        ArrayElement::Text,
    ];

    pub fn scalar(self) -> ScalarType {
        match self {
            ArrayElement::Bool => ScalarType::Bool,
            ArrayElement::Int16 => ScalarType::Int16,
            ArrayElement::Int32 => ScalarType::Int32,
            ArrayElement::Int64 => ScalarType::Int64,
            ArrayElement::Float32 => ScalarType::Float32,
            ArrayElement::Float64 => ScalarType::Float64,
            ArrayElement::Numeric => ScalarType::Numeric,
            ArrayElement::Text => ScalarType::Text,
        }
    }
}

/// Why a value is not in its type's canonical form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValueError {
    #[error("a {ty} value takes {expected} bytes, not {got}")]
    Width {
        ty: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("a boolean is stored as 0 or 1, not {0}")]
    Bool(u8),
    #[error("a NaN must be the canonical quiet NaN")]
    NonCanonicalNan,
    #[error("text is not valid UTF-8")]
    Utf8,
    #[error("numeric text is not in canonical decimal form")]
    Numeric,
    #[error("a value of {len} bytes exceeds {max}", max = limits::VALUE_BYTES_MAX)]
    TooLarge { len: usize },
    #[error("an array value is malformed")]
    Array,
    #[error("text of {chars} characters exceeds the column's {max}")]
    TooLong { chars: u64, max: u32 },
    #[error("character({width}) text has {chars} characters, not {width} (blank-padded)")]
    NotPadded { chars: u64, width: u32 },
}

const ARRAY_BASE: u8 = 0x40;

impl ScalarType {
    const BASE: [ScalarType; 16] = [
        ScalarType::Bool,
        ScalarType::Int16,
        ScalarType::Int32,
        ScalarType::Int64,
        ScalarType::Float32,
        ScalarType::Float64,
        ScalarType::Numeric,
        ScalarType::Text,
        ScalarType::Bytea,
        ScalarType::Uuid,
        ScalarType::Date,
        ScalarType::Timestamp,
        ScalarType::TimestampTz,
        ScalarType::Json,
        ScalarType::Jsonb,
        ScalarType::Char,
    ];

    /// The type's code: 1..=16 for the base types in declaration order,
    /// `0x40 + element code` for arrays.
    pub fn code(self) -> u8 {
        match self {
            ScalarType::Array(e) => ARRAY_BASE + e.scalar().code(),
            base => {
                ScalarType::BASE
                    .iter()
                    .position(|t| *t == base)
                    .expect("invariant: every base type is listed") as u8
                    + 1
            }
        }
    }

    pub fn from_code(code: u8) -> Option<ScalarType> {
        if code > ARRAY_BASE {
            let element = ScalarType::from_code(code - ARRAY_BASE)?;
            return ArrayElement::ALL
                .into_iter()
                .find(|e| e.scalar() == element)
                .map(ScalarType::Array);
        }
        ScalarType::BASE
            .get(usize::from(code).checked_sub(1)?)
            .copied()
    }

    /// Bytes of every value of a fixed-width type.
    pub fn width(self) -> Option<usize> {
        match self {
            ScalarType::Bool => Some(1),
            ScalarType::Int16 => Some(2),
            ScalarType::Int32 | ScalarType::Float32 | ScalarType::Date => Some(4),
            ScalarType::Int64
            | ScalarType::Float64
            | ScalarType::Timestamp
            | ScalarType::TimestampTz => Some(8),
            ScalarType::Uuid => Some(16),
            _ => None,
        }
    }

    /// Whether a btree index can order the type's values: those whose
    /// canonical form maps to an [`ScalarType::order_key`].
    pub fn is_orderable(self) -> bool {
        !matches!(
            self,
            ScalarType::Numeric | ScalarType::Json | ScalarType::Jsonb | ScalarType::Array(_)
        )
    }

    /// A canonical value as bytes whose lexicographic order is the
    /// order of the values as the query layer compares them: integers,
    /// dates and timestamps as `i64` with the sign bit flipped,
    /// big-endian; floats by IEEE 754 total order (as Arrow compares
    /// them); booleans, text, `bytea` and `uuid` as they are (text by
    /// bytes, as Arrow compares strings). `None` for types without one
    /// ([`ScalarType::is_orderable`]) and for values not of the type's
    /// width.
    pub fn order_key(self, value: &[u8]) -> Option<Vec<u8>> {
        if self.width().is_some_and(|w| w != value.len()) {
            return None;
        }
        Some(match self {
            ScalarType::Int16
            | ScalarType::Int32
            | ScalarType::Int64
            | ScalarType::Date
            | ScalarType::Timestamp
            | ScalarType::TimestampTz => {
                let v = integer_value(value)?;
                ((v as u64) ^ (1 << 63)).to_be_bytes().to_vec()
            }
            ScalarType::Float32 => {
                let bits = u32::from_le_bytes(value.try_into().ok()?);
                let key = if bits >> 31 == 1 {
                    !bits
                } else {
                    bits | 1 << 31
                };
                key.to_be_bytes().to_vec()
            }
            ScalarType::Float64 => {
                let bits = u64::from_le_bytes(value.try_into().ok()?);
                let key = if bits >> 63 == 1 {
                    !bits
                } else {
                    bits | 1 << 63
                };
                key.to_be_bytes().to_vec()
            }
            ScalarType::Bool | ScalarType::Text | ScalarType::Bytea | ScalarType::Uuid => {
                value.to_vec()
            }
            // Trailing blanks are insignificant in `character(n)`, as
            // Postgres compares it (`bpcharcmp`).
            ScalarType::Char => value
                .iter()
                .rposition(|b| *b != b' ')
                .map_or_else(Vec::new, |last| value[..=last].to_vec()),
            _ => return None,
        })
    }

    /// Whether the type is an integer type a primary key maps to record
    /// ids from.
    /// Whether a column of this type can be a key, unique or the two
    /// ends of a foreign key: integers, text, uuid and bytea.
    pub fn is_keyable(self) -> bool {
        self.is_integer()
            || matches!(
                self,
                ScalarType::Text | ScalarType::Char | ScalarType::Uuid | ScalarType::Bytea
            )
    }

    pub fn is_integer(self) -> bool {
        matches!(
            self,
            ScalarType::Int16 | ScalarType::Int32 | ScalarType::Int64
        )
    }

    /// The Postgres name of the type, for errors.
    pub fn name(self) -> &'static str {
        match self {
            ScalarType::Bool => "boolean",
            ScalarType::Int16 => "smallint",
            ScalarType::Int32 => "integer",
            ScalarType::Int64 => "bigint",
            ScalarType::Float32 => "real",
            ScalarType::Float64 => "double precision",
            ScalarType::Numeric => "numeric",
            ScalarType::Text => "text",
            ScalarType::Char => "character",
            ScalarType::Bytea => "bytea",
            ScalarType::Uuid => "uuid",
            ScalarType::Date => "date",
            ScalarType::Timestamp => "timestamp",
            ScalarType::TimestampTz => "timestamptz",
            ScalarType::Json => "json",
            ScalarType::Jsonb => "jsonb",
            ScalarType::Array(ArrayElement::Bool) => "boolean[]",
            ScalarType::Array(ArrayElement::Int16) => "smallint[]",
            ScalarType::Array(ArrayElement::Int32) => "integer[]",
            ScalarType::Array(ArrayElement::Int64) => "bigint[]",
            ScalarType::Array(ArrayElement::Float32) => "real[]",
            ScalarType::Array(ArrayElement::Float64) => "double precision[]",
            ScalarType::Array(ArrayElement::Numeric) => "numeric[]",
            ScalarType::Array(ArrayElement::Text) => "text[]",
        }
    }

    /// Checks that `value` is in this type's canonical form. `max_chars`
    /// bounds text (`varchar(n)`) and is the width of `character(n)`
    /// values, padded with blanks to it; 0 means no bound.
    pub fn check(self, value: &[u8], max_chars: u32) -> Result<(), ValueError> {
        if value.len() > limits::VALUE_BYTES_MAX as usize {
            return Err(ValueError::TooLarge { len: value.len() });
        }
        if let Some(width) = self.width()
            && value.len() != width
        {
            return Err(ValueError::Width {
                ty: self.name(),
                expected: width,
                got: value.len(),
            });
        }
        match self {
            ScalarType::Bool if value[0] > 1 => Err(ValueError::Bool(value[0])),
            ScalarType::Float32 => {
                let v =
                    f32::from_bits(u32::from_le_bytes([value[0], value[1], value[2], value[3]]));
                if v.is_nan() && v.to_bits() != f32::NAN.to_bits() {
                    return Err(ValueError::NonCanonicalNan);
                }
                Ok(())
            }
            ScalarType::Float64 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(value);
                let v = f64::from_bits(u64::from_le_bytes(b));
                if v.is_nan() && v.to_bits() != f64::NAN.to_bits() {
                    return Err(ValueError::NonCanonicalNan);
                }
                Ok(())
            }
            ScalarType::Numeric => {
                if is_canonical_decimal(value) {
                    Ok(())
                } else {
                    Err(ValueError::Numeric)
                }
            }
            ScalarType::Text | ScalarType::Json | ScalarType::Jsonb => {
                let text = core::str::from_utf8(value).map_err(|_| ValueError::Utf8)?;
                if max_chars > 0 {
                    let chars = text.chars().count() as u64;
                    if chars > u64::from(max_chars) {
                        return Err(ValueError::TooLong {
                            chars,
                            max: max_chars,
                        });
                    }
                }
                Ok(())
            }
            ScalarType::Char => {
                let text = core::str::from_utf8(value).map_err(|_| ValueError::Utf8)?;
                if max_chars > 0 {
                    let chars = text.chars().count() as u64;
                    if chars != u64::from(max_chars) {
                        return Err(ValueError::NotPadded {
                            chars,
                            width: max_chars,
                        });
                    }
                }
                Ok(())
            }
            ScalarType::Array(element) => check_array(element.scalar(), value),
            _ => Ok(()),
        }
    }
}

/// `-?(0|[1-9][0-9]*)(\.[0-9]*[1-9])?` except `-0`, or `NaN`.
fn is_canonical_decimal(value: &[u8]) -> bool {
    if value == b"NaN" {
        return true;
    }
    let digits = value.strip_prefix(b"-").unwrap_or(value);
    let (int, frac) = match digits.iter().position(|&b| b == b'.') {
        Some(dot) => (&digits[..dot], Some(&digits[dot + 1..])),
        None => (digits, None),
    };
    let int_ok =
        !int.is_empty() && int.iter().all(u8::is_ascii_digit) && (int.len() == 1 || int[0] != b'0');
    let frac_ok = frac.is_none_or(|f| {
        !f.is_empty() && f.iter().all(u8::is_ascii_digit) && f.last() != Some(&b'0')
    });
    let negative_zero = value.first() == Some(&b'-') && int == b"0" && frac.is_none();
    int_ok && frac_ok && !negative_zero
}

fn check_array(element: ScalarType, value: &[u8]) -> Result<(), ValueError> {
    let mut rest = value;
    let mut take = |n: usize| -> Result<&[u8], ValueError> {
        if n > rest.len() {
            return Err(ValueError::Array);
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Ok(head)
    };
    let count = u32::from_le_bytes(take(4)?.try_into().map_err(|_| ValueError::Array)?);
    for _ in 0..count {
        match take(1)?[0] {
            0 => {}
            1 => {
                let len = match element.width() {
                    Some(width) => width,
                    None => u32::from_le_bytes(take(4)?.try_into().map_err(|_| ValueError::Array)?)
                        as usize,
                };
                element.check(take(len)?, 0)?;
            }
            _ => return Err(ValueError::Array),
        }
    }
    if rest.is_empty() {
        Ok(())
    } else {
        Err(ValueError::Array)
    }
}

/// What a column holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ColumnType {
    /// The table's vector column (`vector(n)`; `halfvec(n)` when `half`),
    /// stored as Q16.16 in the collection's vector rows.
    Vector {
        half: bool,
    },
    Scalar(ScalarType),
}

/// Flag bits of a column definition.
pub mod column_flags {
    pub const NOT_NULL: u8 = 1;
    pub const PRIMARY_KEY: u8 = 2;
    pub const UNIQUE: u8 = 4;
    /// Values come from the column's sequence when not given
    /// (`serial`, `bigserial`, `smallserial`).
    pub const SERIAL: u8 = 8;
    /// An identity column (`GENERATED BY DEFAULT AS IDENTITY`): values
    /// come from the column's sequence when not given, as for `SERIAL`.
    pub const IDENTITY: u8 = 16;
    /// With `IDENTITY`: `GENERATED ALWAYS AS IDENTITY`, whose values only
    /// the sequence gives (the edge refuses others).
    pub const ALWAYS: u8 = 32;
    pub const ALL: u8 = NOT_NULL | PRIMARY_KEY | UNIQUE | SERIAL | IDENTITY | ALWAYS;
    /// Set in a column's encoding when it carries a btree index
    /// ([`super::ColumnDef::index`]), whose name follows the default;
    /// never among a definition's `flags`.
    pub const INDEXED: u8 = 64;
    /// Set in a column's encoding when it references another table's
    /// unique column ([`super::ColumnDef::references`]), whose
    /// definition follows the index name; never among a definition's
    /// `flags`.
    pub const REFERENCES: u8 = 128;
}

/// What deleting a referenced row does to the rows that reference it
/// (`ON DELETE`). [`OnDelete::code`] is part of the schema encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OnDelete {
    /// `NO ACTION` (the default): the delete is refused.
    NoAction,
    /// `RESTRICT`: the delete is refused (checked at once, as
    /// `NO ACTION` is here).
    Restrict,
    /// `CASCADE`: the referencing rows are deleted with it.
    Cascade,
    /// `SET NULL`: the referencing column is set to NULL.
    SetNull,
}

impl OnDelete {
    pub fn code(self) -> u8 {
        match self {
            OnDelete::NoAction => 0,
            OnDelete::Restrict => 1,
            OnDelete::Cascade => 2,
            OnDelete::SetNull => 3,
        }
    }

    pub fn from_code(code: u8) -> Option<OnDelete> {
        Some(match code {
            0 => OnDelete::NoAction,
            1 => OnDelete::Restrict,
            2 => OnDelete::Cascade,
            3 => OnDelete::SetNull,
            _ => return None,
        })
    }

    /// `pg_constraint.confdeltype`.
    pub fn pg_code(self) -> &'static str {
        match self {
            OnDelete::NoAction => "a",
            OnDelete::Restrict => "r",
            OnDelete::Cascade => "c",
            OnDelete::SetNull => "n",
        }
    }

    /// The clause as SQL writes it.
    pub fn sql(self) -> &'static str {
        match self {
            OnDelete::NoAction => "NO ACTION",
            OnDelete::Restrict => "RESTRICT",
            OnDelete::Cascade => "CASCADE",
            OnDelete::SetNull => "SET NULL",
        }
    }
}

/// A foreign key on one column: each of its non-NULL values must be held
/// by a live row of `table`'s unique column `column`. The state machine
/// checks it on every write and applies [`OnDelete`] when such a row is
/// deleted; updating a referenced value that is still referenced is
/// refused (`ON UPDATE NO ACTION`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ForeignKey {
    /// The constraint's name (Postgres's `<table>_<column>_fkey` when
    /// the statement gives none).
    pub name: String,
    pub table: crate::event::CollectionName,
    pub column: String,
    pub on_delete: OnDelete,
}

/// One declared column.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ColumnDef {
    pub name: String,
    pub ty: ColumnType,
    /// `varchar(n)` / `char(n)`: at most `n` characters; the vector's
    /// dimension for the vector column; otherwise 0.
    pub type_mod: u32,
    /// [`column_flags`] bits.
    pub flags: u8,
    /// The `DEFAULT` expression as SQL text, for catalogs; the value is
    /// computed at the edge and written into each event.
    pub default: Option<String>,
    /// The name of the column's btree index (`CREATE INDEX name ON t
    /// (column)`), when it has one: the table keeps its live rows
    /// ordered by value ([`Table::index_range`]). On the vector column,
    /// the name of its HNSW index (`CREATE INDEX name ON t USING hnsw
    /// …`): the graph every collection keeps.
    pub index: Option<String>,
    /// The column's foreign key, when it has one.
    pub references: Option<ForeignKey>,
}

impl ColumnDef {
    pub fn not_null(&self) -> bool {
        self.flags & (column_flags::NOT_NULL | column_flags::PRIMARY_KEY) != 0
    }

    pub fn is_primary_key(&self) -> bool {
        self.flags & column_flags::PRIMARY_KEY != 0
    }

    pub fn is_unique(&self) -> bool {
        self.flags & (column_flags::UNIQUE | column_flags::PRIMARY_KEY) != 0
    }

    /// Whether values come from the column's sequence when not given:
    /// `serial` types and identity columns.
    pub fn is_serial(&self) -> bool {
        self.flags & (column_flags::SERIAL | column_flags::IDENTITY) != 0
    }

    /// `pg_attribute.attidentity`: `"d"` for `GENERATED BY DEFAULT AS
    /// IDENTITY`, `"a"` for `GENERATED ALWAYS AS IDENTITY`, `""` otherwise.
    pub fn identity(&self) -> &'static str {
        match (
            self.flags & column_flags::IDENTITY != 0,
            self.flags & column_flags::ALWAYS != 0,
        ) {
            (true, true) => "a",
            (true, false) => "d",
            _ => "",
        }
    }

    /// Whether the column can carry an index name: a scalar column
    /// with a btree order, or the vector column, whose index is the
    /// collection's HNSW graph.
    pub fn has_index_kind(&self) -> bool {
        match self.ty {
            ColumnType::Vector { .. } => true,
            ColumnType::Scalar(t) => t.is_orderable(),
        }
    }

    pub fn scalar(&self) -> Option<ScalarType> {
        match self.ty {
            ColumnType::Scalar(t) => Some(t),
            ColumnType::Vector { .. } => None,
        }
    }

    /// The column's canonical encoding, as in a schema: `name_len:u32 ‖
    /// name ‖ type:u8 ‖ type_mod:u32 ‖ flags:u8 ‖ has_default:u8 [‖
    /// default_len:u32 ‖ default] [‖ index_len:u32 ‖ index] [‖
    /// constraint_len:u32 ‖ constraint ‖ table_len:u32 ‖ table ‖
    /// column_len:u32 ‖ column ‖ on_delete:u8]`. Type 0 is `vector`, 0x80
    /// `halfvec`, anything else a [`ScalarType::code`]. The index name is
    /// present when flag bit [`column_flags::INDEXED`] is set, and the bit
    /// exactly when the column has an index; the foreign key likewise
    /// with [`column_flags::REFERENCES`].
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.name.len() as u32).to_le_bytes());
        out.extend_from_slice(self.name.as_bytes());
        out.push(match self.ty {
            ColumnType::Vector { half: false } => 0,
            ColumnType::Vector { half: true } => 0x80,
            ColumnType::Scalar(t) => t.code(),
        });
        out.extend_from_slice(&self.type_mod.to_le_bytes());
        let indexed = if self.index.is_some() {
            column_flags::INDEXED
        } else {
            0
        };
        let references = if self.references.is_some() {
            column_flags::REFERENCES
        } else {
            0
        };
        out.push(
            self.flags & !(column_flags::INDEXED | column_flags::REFERENCES) | indexed | references,
        );
        match &self.default {
            None => out.push(0),
            Some(d) => {
                out.push(1);
                out.extend_from_slice(&(d.len() as u32).to_le_bytes());
                out.extend_from_slice(d.as_bytes());
            }
        }
        let mut put = |text: &str| {
            out.extend_from_slice(&(text.len() as u32).to_le_bytes());
            out.extend_from_slice(text.as_bytes());
        };
        if let Some(index) = &self.index {
            put(index);
        }
        if let Some(key) = &self.references {
            put(&key.name);
            put(key.table.as_str());
            put(&key.column);
            out.push(key.on_delete.code());
        }
    }

    /// Decodes a column written by [`ColumnDef::encode_into`] from the
    /// front of `bytes`, returning it and the bytes it used; `None` when
    /// the bytes are not such an encoding. Lengths are checked against
    /// the limits before anything is allocated.
    pub fn decode_prefix(bytes: &[u8]) -> Option<(ColumnDef, usize)> {
        let mut pos = 0usize;
        let mut take = |n: usize| -> Option<&[u8]> {
            let out = bytes.get(pos..pos.checked_add(n)?)?;
            pos += n;
            Some(out)
        };
        /// A name of at most `COLUMN_NAME_BYTES_MAX` bytes, as
        /// `len:u32 ‖ UTF-8`.
        fn name_field<'b>(take: &mut impl FnMut(usize) -> Option<&'b [u8]>) -> Option<String> {
            let len = u32::from_le_bytes(take(4)?.try_into().ok()?);
            if len > limits::COLUMN_NAME_BYTES_MAX {
                return None;
            }
            Some(String::from(
                core::str::from_utf8(take(len as usize)?).ok()?,
            ))
        }
        let name = name_field(&mut take)?;
        let ty = match take(1)?[0] {
            0 => ColumnType::Vector { half: false },
            0x80 => ColumnType::Vector { half: true },
            code => ColumnType::Scalar(ScalarType::from_code(code)?),
        };
        let type_mod = u32::from_le_bytes(take(4)?.try_into().ok()?);
        let flags = take(1)?[0];
        let default = match take(1)?[0] {
            0 => None,
            1 => {
                let len = u32::from_le_bytes(take(4)?.try_into().ok()?);
                if len > limits::COLUMN_DEFAULT_BYTES_MAX {
                    return None;
                }
                Some(String::from(
                    core::str::from_utf8(take(len as usize)?).ok()?,
                ))
            }
            _ => return None,
        };
        let index = if flags & column_flags::INDEXED != 0 {
            Some(name_field(&mut take)?)
        } else {
            None
        };
        let references = if flags & column_flags::REFERENCES != 0 {
            let name = name_field(&mut take)?;
            let table = crate::event::CollectionName::new(&name_field(&mut take)?).ok()?;
            let column = name_field(&mut take)?;
            let on_delete = OnDelete::from_code(take(1)?[0])?;
            Some(ForeignKey {
                name,
                table,
                column,
                on_delete,
            })
        } else {
            None
        };
        Some((
            ColumnDef {
                name,
                ty,
                type_mod,
                flags: flags & !(column_flags::INDEXED | column_flags::REFERENCES),
                default,
                index,
                references,
            },
            pos,
        ))
    }
}

/// A column or index name: 1 to [`limits::COLUMN_NAME_BYTES_MAX`] bytes,
/// no control character.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= limits::COLUMN_NAME_BYTES_MAX as usize
        && !name.chars().any(char::is_control)
}

/// Why a schema is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaError {
    #[error("a table has 1..={max} columns, not {0}", max = limits::TABLE_COLUMNS_MAX)]
    ColumnCount(usize),
    #[error("column name {0:?} is empty, longer than {max} bytes or holds a control character", max = limits::COLUMN_NAME_BYTES_MAX)]
    BadName(String),
    #[error("column {0:?} is declared twice")]
    Duplicate(String),
    #[error("a table has at most one vector column, not {0}")]
    VectorCount(usize),
    #[error("the vector column's dimension {column} differs from the collection's {collection}")]
    Dimension { column: u32, collection: u32 },
    #[error("a table has at most one primary key")]
    KeyCount,
    #[error("column {0:?}: this type cannot be a key, unique or serial")]
    BadFlags(String),
    #[error("column {0:?}: a DEFAULT of more than {max} bytes", max = limits::COLUMN_DEFAULT_BYTES_MAX)]
    Default(String),
    #[error("column {0:?} does not exist")]
    UnknownColumn(String),
    #[error("column {0:?} is the table's vector column; it cannot be dropped")]
    DropVector(String),
    #[error("column {0:?} is the table's primary key; it cannot be dropped")]
    DropKey(String),
    #[error(
        "column {0:?}: a vector column can be added only to a table without one that has never held rows"
    )]
    AddVector(String),
    #[error("column {0:?}: an added column may be NOT NULL, but not a key, unique or serial")]
    AddFlags(String),
    #[error(
        "column {0:?} contains null values: a NOT NULL column added to a table with rows needs a DEFAULT"
    )]
    AddNotNull(String),
    #[error("column {column:?}: the value for existing rows: {source}")]
    AddValue {
        column: String,
        // Boxed: keeps `SchemaError`, and the errors that carry it, small.
        source: alloc::boxed::Box<ValueError>,
    },
    #[error("an ALTER TABLE carries 1..={max} actions, not {0}", max = limits::ALTER_ACTIONS_MAX)]
    ActionCount(usize),
    #[error("an ALTER TABLE renames its table at most once")]
    RenameTwice,
    #[error(
        "index name {0:?} is empty, longer than {max} bytes, holds a control character or is taken",
        max = limits::COLUMN_NAME_BYTES_MAX
    )]
    BadIndexName(String),
    #[error("column {0:?} already has a btree index, or its type has no btree order")]
    IndexColumn(String),
    #[error("index {0:?} does not exist")]
    UnknownIndex(String),
    #[error(
        "the vector column takes a dimension only when declared without one, in a table that has never held a row, and within 1..={max}",
        max = limits::DIM_MAX
    )]
    TypeVector,
    #[error(
        "column {0:?}: a foreign key is on one integer, text, uuid or bytea column, at most one per column"
    )]
    ForeignKeyColumn(String),
    #[error(
        "constraint name {0:?} is empty, longer than {max} bytes, holds a control character or is taken",
        max = limits::COLUMN_NAME_BYTES_MAX
    )]
    BadConstraintName(String),
    #[error("constraint {0:?} does not exist")]
    UnknownConstraint(String),
    #[error(
        "unique constraint {0:?}: 1..={max} distinct integer, text, uuid or bytea columns of the table, none added by the same ALTER TABLE",
        max = limits::TABLE_COLUMNS_MAX
    )]
    UniqueColumns(String),
    #[error(
        "column {0:?}: only the length of a text column (text, varchar(n), char(n)) can change"
    )]
    TypeChange(String),
    #[error("column {0:?}: NOT NULL of a primary key, identity or vector column cannot change")]
    NotNullChange(String),
    #[error("column {0:?}: the DEFAULT of a serial, identity or vector column cannot change")]
    DefaultChange(String),
}

/// How many rows a table holds, for the checks of an `ALTER TABLE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowCounts {
    /// Rows not deleted.
    pub live: u64,
    /// Every row, deleted ones included.
    pub stored: u64,
}

/// One change of a table's shape; an `AlterTable` event carries them in
/// order, applied all or none.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AlterAction {
    /// Appends a scalar column. Every row the collection holds (deleted
    /// ones too) takes `value` in canonical form, NULL when `None`: the
    /// `DEFAULT` is computed once at the edge.
    AddColumn {
        column: ColumnDef,
        value: Option<Vec<u8>>,
    },
    /// Removes a scalar column that is not the primary key, with its
    /// values, unique set and sequence.
    DropColumn { name: String },
    /// Renames a column; values and their hashes stay as they are.
    RenameColumn { from: String, to: String },
    /// Renames the table (its collection).
    RenameTable { to: crate::event::CollectionName },
    /// Gives scalar column `column` a btree index named `name`: the
    /// table keeps its live rows ordered by the column's value. Names
    /// are unique among a table's indexes; a column has at most one.
    CreateIndex { column: String, name: String },
    /// Removes the btree index named `name`.
    DropIndex { name: String },
    /// Gives the vector column declared without a dimension (`vector`,
    /// `type_mod` 0) the dimension `dim`, while the table has never held
    /// a row: the collection starts again at that dimension, as a table
    /// declared `vector(dim)` would have been created.
    TypeVector { dim: u32 },
    /// Gives scalar column `column` the foreign key `key`; every live
    /// row's value must be present in the referenced column.
    AddForeignKey { column: String, key: ForeignKey },
    /// Removes the constraint named `name`: a foreign key or a
    /// [`UniqueSet`].
    DropConstraint { name: String },
    /// Adds a unique constraint over one or more scalar columns; the
    /// live rows must satisfy it.
    AddUnique { set: UniqueSet },
    /// Gives text column `column` the character bound `type_mod` (0:
    /// none), as `ALTER COLUMN … TYPE varchar(n)` does; every live value
    /// must fit.
    SetTypeMod { column: String, type_mod: u32 },
    /// Sets or drops `NOT NULL` on scalar column `column`; setting it
    /// needs every live value to be present.
    SetNotNull { column: String, not_null: bool },
    /// Gives scalar column `column` the `DEFAULT` whose SQL text is
    /// `default`, or none (`DROP DEFAULT`): later inserts take it, the
    /// rows held keep their values. Not on a serial or identity column,
    /// whose default is its sequence.
    SetDefault {
        column: String,
        default: Option<String>,
    },
}

/// A unique constraint over several columns (`UNIQUE (a, b)`): no two
/// live rows hold equal values in all of them. A row with NULL in any of
/// them is not constrained, as in Postgres.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UniqueSet {
    pub name: String,
    pub columns: Vec<String>,
}

/// The columns of a table, in declared order, and its unique
/// constraints over several columns.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct TableSchema {
    pub columns: Vec<ColumnDef>,
    pub uniques: Vec<UniqueSet>,
}

impl TableSchema {
    /// Checks the schema against the collection's dimension.
    pub fn check(&self, dim: u32) -> Result<(), SchemaError> {
        let n = self.columns.len();
        if n == 0 || n > limits::TABLE_COLUMNS_MAX as usize {
            return Err(SchemaError::ColumnCount(n));
        }
        let mut names: Vec<&str> = Vec::with_capacity(n);
        let mut indexes: Vec<&str> = Vec::new();
        let mut constraints: Vec<&str> = Vec::new();
        let mut vectors = 0;
        let mut keys = 0;
        for c in &self.columns {
            if !valid_name(&c.name) {
                return Err(SchemaError::BadName(c.name.clone()));
            }
            if c.default
                .as_ref()
                .is_some_and(|d| d.len() > limits::COLUMN_DEFAULT_BYTES_MAX as usize)
            {
                return Err(SchemaError::Default(c.name.clone()));
            }
            if c.flags & !column_flags::ALL != 0 {
                return Err(SchemaError::BadFlags(c.name.clone()));
            }
            if let Some(index) = &c.index {
                if !valid_name(index) {
                    return Err(SchemaError::BadIndexName(index.clone()));
                }
                if !c.has_index_kind() {
                    return Err(SchemaError::IndexColumn(c.name.clone()));
                }
                indexes.push(index);
            }
            if let Some(key) = &c.references {
                if !valid_name(&key.name) {
                    return Err(SchemaError::BadConstraintName(key.name.clone()));
                }
                if !c.scalar().is_some_and(ScalarType::is_keyable) {
                    return Err(SchemaError::ForeignKeyColumn(c.name.clone()));
                }
                constraints.push(&key.name);
            }
            keys += usize::from(c.is_primary_key());
            match c.ty {
                ColumnType::Vector { .. } => {
                    vectors += 1;
                    // Without a dimension (type_mod 0) the collection
                    // keeps dimension 1 until the first row gives one.
                    if c.type_mod != dim && !(c.type_mod == 0 && dim == 1) {
                        return Err(SchemaError::Dimension {
                            column: c.type_mod,
                            collection: dim,
                        });
                    }
                    if c.flags & !column_flags::NOT_NULL != 0 {
                        return Err(SchemaError::BadFlags(c.name.clone()));
                    }
                }
                ColumnType::Scalar(t) => {
                    if (c.is_unique() && !t.is_keyable()) || (c.is_serial() && !t.is_integer()) {
                        return Err(SchemaError::BadFlags(c.name.clone()));
                    }
                    // A column is serial or an identity, not both; ALWAYS
                    // qualifies an identity.
                    let identity = c.flags & column_flags::IDENTITY != 0;
                    if (identity && c.flags & column_flags::SERIAL != 0)
                        || (!identity && c.flags & column_flags::ALWAYS != 0)
                    {
                        return Err(SchemaError::BadFlags(c.name.clone()));
                    }
                }
            }
            names.push(&c.name);
        }
        if vectors > 1 {
            return Err(SchemaError::VectorCount(vectors));
        }
        // A table without a vector column keeps the constant vector [0]
        // in each record: its collection has dimension 1.
        if vectors == 0 && dim != 1 {
            return Err(SchemaError::Dimension {
                column: 1,
                collection: dim,
            });
        }
        if keys > 1 {
            return Err(SchemaError::KeyCount);
        }
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(SchemaError::Duplicate(String::from(w[0])));
        }
        indexes.sort_unstable();
        if let Some(w) = indexes.windows(2).find(|w| w[0] == w[1]) {
            return Err(SchemaError::BadIndexName(String::from(w[0])));
        }
        for set in &self.uniques {
            if !valid_name(&set.name) {
                return Err(SchemaError::BadConstraintName(set.name.clone()));
            }
            let mut seen: Vec<&str> = Vec::with_capacity(set.columns.len());
            for name in &set.columns {
                let keyable = self
                    .columns
                    .iter()
                    .find(|c| c.name == *name)
                    .and_then(ColumnDef::scalar)
                    .is_some_and(ScalarType::is_keyable);
                if !keyable || seen.contains(&name.as_str()) {
                    return Err(SchemaError::UniqueColumns(set.name.clone()));
                }
                seen.push(name);
            }
            if seen.is_empty() {
                return Err(SchemaError::UniqueColumns(set.name.clone()));
            }
            constraints.push(&set.name);
        }
        constraints.sort_unstable();
        if let Some(w) = constraints.windows(2).find(|w| w[0] == w[1]) {
            return Err(SchemaError::BadConstraintName(String::from(w[0])));
        }
        Ok(())
    }

    /// Applies one column action of an `ALTER TABLE` to the schema,
    /// checking what depends on the action alone; the caller checks the
    /// resulting schema with [`TableSchema::check`] (against the added
    /// vector column's dimension, if one was added).
    /// [`AlterAction::RenameTable`] does not change the schema.
    pub fn alter(&mut self, action: &AlterAction, rows: RowCounts) -> Result<(), SchemaError> {
        let position = |name: &str| {
            self.columns
                .iter()
                .position(|c| c.name == name)
                .ok_or_else(|| SchemaError::UnknownColumn(String::from(name)))
        };
        match action {
            AlterAction::AddColumn { column, value } => {
                let ty = match column.ty {
                    ColumnType::Scalar(t) => t,
                    // The vector column sets the collection's dimension:
                    // it can be added only while no row holds a vector of
                    // the dimension before (pgvector's README adds it to
                    // a new table).
                    ColumnType::Vector { .. } => {
                        if self.vector_column().is_some()
                            || rows.stored > 0
                            || value.is_some()
                            || column.index.is_some()
                            || column.flags & !column_flags::NOT_NULL != 0
                        {
                            return Err(SchemaError::AddVector(column.name.clone()));
                        }
                        self.columns.push(column.clone());
                        return Ok(());
                    }
                };
                // A foreign key may come with the column: its value for
                // existing rows is checked against the referenced table.
                if column.flags & !column_flags::NOT_NULL != 0 || column.index.is_some() {
                    return Err(SchemaError::AddFlags(column.name.clone()));
                }
                match value {
                    Some(v) => {
                        ty.check(v, column.type_mod)
                            .map_err(|source| SchemaError::AddValue {
                                column: column.name.clone(),
                                source: alloc::boxed::Box::new(source),
                            })?
                    }
                    None if column.not_null() && rows.live > 0 => {
                        return Err(SchemaError::AddNotNull(column.name.clone()));
                    }
                    None => {}
                }
                self.columns.push(column.clone());
            }
            AlterAction::DropColumn { name } => {
                let i = position(name)?;
                let c = &self.columns[i];
                if matches!(c.ty, ColumnType::Vector { .. }) {
                    return Err(SchemaError::DropVector(name.clone()));
                }
                if c.is_primary_key() {
                    return Err(SchemaError::DropKey(name.clone()));
                }
                self.columns.remove(i);
                // A unique constraint goes with a column it covers.
                self.uniques.retain(|u| !u.columns.contains(name));
            }
            AlterAction::RenameColumn { from, to } => {
                let i = position(from)?;
                self.columns[i].name = to.clone();
                for column in self.uniques.iter_mut().flat_map(|u| u.columns.iter_mut()) {
                    if column == from {
                        *column = to.clone();
                    }
                }
            }
            AlterAction::RenameTable { .. } => {}
            AlterAction::CreateIndex { column, name } => {
                if self.columns.iter().any(|c| c.index.as_ref() == Some(name)) {
                    return Err(SchemaError::BadIndexName(name.clone()));
                }
                let i = position(column)?;
                let c = &mut self.columns[i];
                if c.index.is_some() || !c.has_index_kind() {
                    return Err(SchemaError::IndexColumn(column.clone()));
                }
                c.index = Some(name.clone());
            }
            AlterAction::DropIndex { name } => {
                let c = self
                    .columns
                    .iter_mut()
                    .find(|c| c.index.as_ref() == Some(name))
                    .ok_or_else(|| SchemaError::UnknownIndex(name.clone()))?;
                c.index = None;
            }
            AlterAction::TypeVector { dim } => {
                let column = self.vector_column().map(|i| &mut self.columns[i]);
                match column {
                    Some(c)
                        if c.type_mod == 0
                            && rows.stored == 0
                            && (1..=limits::DIM_MAX).contains(dim) =>
                    {
                        c.type_mod = *dim;
                    }
                    _ => return Err(SchemaError::TypeVector),
                }
            }
            AlterAction::AddForeignKey { column, key } => {
                if self
                    .columns
                    .iter()
                    .any(|c| c.references.as_ref().is_some_and(|k| k.name == key.name))
                {
                    return Err(SchemaError::BadConstraintName(key.name.clone()));
                }
                let i = position(column)?;
                let c = &mut self.columns[i];
                if c.references.is_some() {
                    return Err(SchemaError::ForeignKeyColumn(column.clone()));
                }
                c.references = Some(key.clone());
            }
            AlterAction::DropConstraint { name } => {
                if let Some(i) = self.uniques.iter().position(|u| u.name == *name) {
                    self.uniques.remove(i);
                } else {
                    let c = self
                        .columns
                        .iter_mut()
                        .find(|c| c.references.as_ref().is_some_and(|k| k.name == *name))
                        .ok_or_else(|| SchemaError::UnknownConstraint(name.clone()))?;
                    c.references = None;
                }
            }
            AlterAction::AddUnique { set } => {
                let taken = self.uniques.iter().any(|u| u.name == set.name)
                    || self
                        .columns
                        .iter()
                        .any(|c| c.references.as_ref().is_some_and(|k| k.name == set.name));
                if taken {
                    return Err(SchemaError::BadConstraintName(set.name.clone()));
                }
                self.uniques.push(set.clone());
            }
            AlterAction::SetTypeMod { column, type_mod } => {
                let i = position(column)?;
                let c = &mut self.columns[i];
                if c.scalar() != Some(ScalarType::Text) {
                    return Err(SchemaError::TypeChange(column.clone()));
                }
                c.type_mod = *type_mod;
            }
            AlterAction::SetNotNull { column, not_null } => {
                let i = position(column)?;
                let c = &mut self.columns[i];
                if c.scalar().is_none()
                    || c.is_primary_key()
                    || c.flags & column_flags::IDENTITY != 0
                {
                    return Err(SchemaError::NotNullChange(column.clone()));
                }
                if *not_null {
                    c.flags |= column_flags::NOT_NULL;
                } else {
                    c.flags &= !column_flags::NOT_NULL;
                }
            }
            AlterAction::SetDefault { column, default } => {
                let i = position(column)?;
                let c = &mut self.columns[i];
                if c.scalar().is_none() || c.is_serial() {
                    return Err(SchemaError::DefaultChange(column.clone()));
                }
                c.default = default.clone();
            }
        }
        Ok(())
    }

    /// The foreign keys of the table: (position among the scalar
    /// columns, column, key).
    pub fn foreign_keys(&self) -> impl Iterator<Item = (usize, &ColumnDef, &ForeignKey)> {
        self.scalar_columns()
            .enumerate()
            .filter_map(|(s, (_, c, _))| c.references.as_ref().map(|k| (s, c, k)))
    }

    /// Position among the scalar columns of the column named `name`.
    pub fn scalar_position(&self, name: &str) -> Option<usize> {
        self.scalar_columns().position(|(_, c, _)| c.name == name)
    }

    /// The collection's dimension for this schema: the vector column's,
    /// or 1 for a table without one or whose vector column has no
    /// dimension yet (each record keeps the vector `[0]`).
    pub fn dim(&self) -> u32 {
        self.vector_column()
            .map(|i| self.columns[i].type_mod)
            .filter(|&d| d > 0)
            .unwrap_or(1)
    }

    /// Index (in `columns`) of the vector column, if the table has one.
    pub fn vector_column(&self) -> Option<usize> {
        self.columns
            .iter()
            .position(|c| matches!(c.ty, ColumnType::Vector { .. }))
    }

    /// The scalar columns in declared order, with their index in
    /// `columns`.
    pub fn scalar_columns(&self) -> impl Iterator<Item = (usize, &ColumnDef, ScalarType)> {
        self.columns
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.scalar().map(|t| (i, c, t)))
    }

    pub fn scalar_count(&self) -> usize {
        self.scalar_columns().count()
    }

    /// Position among the scalar columns of the primary key, when it is
    /// an integer column: its values are the record ids.
    pub fn integer_key(&self) -> Option<usize> {
        self.scalar_columns()
            .position(|(_, c, t)| c.is_primary_key() && t.is_integer())
    }

    /// The canonical encoding (also hashed): `count:u32`, then per
    /// column `name_len:u32 ‖ name ‖ type:u8 ‖ type_mod:u32 ‖ flags:u8 ‖
    /// has_default:u8 [‖ default_len:u32 ‖ default]`. Type 0 is `vector`,
    /// 0x80 `halfvec`, anything else a [`ScalarType::code`].
    ///
    /// Unique constraints over several columns follow when bit 31 of
    /// `count` is set (and only then): `n:u32`, then per constraint
    /// `name_len:u32 ‖ name ‖ k:u32 ‖ (len:u32 ‖ column) × k`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let flag = if self.uniques.is_empty() {
            0
        } else {
            UNIQUES_FOLLOW
        };
        out.extend_from_slice(&(self.columns.len() as u32 | flag).to_le_bytes());
        for c in &self.columns {
            c.encode_into(out);
        }
        if self.uniques.is_empty() {
            return;
        }
        out.extend_from_slice(&(self.uniques.len() as u32).to_le_bytes());
        for u in &self.uniques {
            put_text(out, &u.name);
            out.extend_from_slice(&(u.columns.len() as u32).to_le_bytes());
            for c in &u.columns {
                put_text(out, c);
            }
        }
    }

    /// Decodes a schema written by [`TableSchema::encode_into`] from the
    /// front of `bytes`, returning it and the bytes it used. `None` when
    /// the bytes are not such an encoding (the caller reports where).
    pub fn decode_prefix(bytes: &[u8]) -> Option<(TableSchema, usize)> {
        let raw = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?);
        let count = raw & !UNIQUES_FOLLOW;
        let mut pos = 4usize;
        if count == 0 || count > limits::TABLE_COLUMNS_MAX {
            return None;
        }
        let mut columns = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let (column, used) = ColumnDef::decode_prefix(bytes.get(pos..)?)?;
            pos += used;
            columns.push(column);
        }
        let mut uniques = Vec::new();
        if raw & UNIQUES_FOLLOW != 0 {
            let u32_at = |pos: &mut usize| -> Option<u32> {
                let v = u32::from_le_bytes(bytes.get(*pos..*pos + 4)?.try_into().ok()?);
                *pos += 4;
                Some(v)
            };
            let text_at = |pos: &mut usize| -> Option<String> {
                let len = u32::from_le_bytes(bytes.get(*pos..*pos + 4)?.try_into().ok()?);
                if len > limits::COLUMN_NAME_BYTES_MAX {
                    return None;
                }
                let start = *pos + 4;
                let text = core::str::from_utf8(bytes.get(start..start + len as usize)?).ok()?;
                *pos = start + len as usize;
                Some(String::from(text))
            };
            let n = u32_at(&mut pos)?;
            if n == 0 || n > limits::TABLE_COLUMNS_MAX {
                return None;
            }
            for _ in 0..n {
                let name = text_at(&mut pos)?;
                let k = u32_at(&mut pos)?;
                if k == 0 || k > count {
                    return None;
                }
                let mut set = Vec::with_capacity(k as usize);
                for _ in 0..k {
                    set.push(text_at(&mut pos)?);
                }
                uniques.push(UniqueSet { name, columns: set });
            }
        }
        Some((TableSchema { columns, uniques }, pos))
    }
}

/// Bit 31 of a schema's column count: unique constraints over several
/// columns follow the columns.
const UNIQUES_FOLLOW: u32 = 1 << 31;

/// `len:u32 ‖ text`.
fn put_text(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(&(text.len() as u32).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
}

/// The values of one scalar column for the rows of one event: value `i`
/// is `bytes[ends[i-1]..ends[i]]` when `valid[i]`, NULL (an empty span)
/// otherwise.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ColumnValues {
    pub valid: Vec<bool>,
    pub ends: Vec<u32>,
    pub bytes: Vec<u8>,
}

impl ColumnValues {
    pub fn len(&self) -> usize {
        self.valid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.valid.is_empty()
    }

    pub fn push(&mut self, value: Option<&[u8]>) {
        self.valid.push(value.is_some());
        if let Some(v) = value {
            self.bytes.extend_from_slice(v);
        }
        self.ends.push(self.bytes.len() as u32);
    }

    pub fn get(&self, i: usize) -> Option<&[u8]> {
        if !self.valid[i] {
            return None;
        }
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        Some(&self.bytes[start..self.ends[i] as usize])
    }

    /// Whether the parts agree: one end per value, ends ascending to the
    /// byte count, NULLs empty.
    pub fn is_well_formed(&self) -> bool {
        let mut start = 0u32;
        self.ends.len() == self.valid.len()
            && self.ends.iter().zip(&self.valid).all(|(&end, &valid)| {
                let ok = end >= start && (valid || end == start);
                start = end;
                ok
            })
            && start as usize == self.bytes.len()
    }
}

/// One stored scalar column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScalarColumn {
    ty: ScalarType,
    valid: Vec<bool>,
    /// Fixed-width types: `width` bytes per row (zeros for NULL).
    fixed: Vec<u8>,
    /// Other types: row `r` is `heap[start[r]..start[r] + len[r]]`;
    /// updates append to the heap.
    start: Vec<u64>,
    len: Vec<u32>,
    heap: Vec<u8>,
}

impl ScalarColumn {
    fn new(ty: ScalarType) -> ScalarColumn {
        ScalarColumn {
            ty,
            valid: Vec::new(),
            fixed: Vec::new(),
            start: Vec::new(),
            len: Vec::new(),
            heap: Vec::new(),
        }
    }

    /// A column of `rows` rows, each holding `value`.
    fn filled(ty: ScalarType, rows: usize, value: Option<&[u8]>) -> ScalarColumn {
        let mut c = ScalarColumn::new(ty);
        for _ in 0..rows {
            c.push(value);
        }
        c
    }

    pub fn ty(&self) -> ScalarType {
        self.ty
    }

    pub fn rows(&self) -> usize {
        self.valid.len()
    }

    /// Validity per row.
    pub fn valid(&self) -> &[bool] {
        &self.valid
    }

    /// The value of `row`, `None` for NULL.
    pub fn get(&self, row: usize) -> Option<&[u8]> {
        if !self.valid[row] {
            return None;
        }
        Some(match self.ty.width() {
            Some(w) => &self.fixed[row * w..(row + 1) * w],
            None => {
                let start = self.start[row] as usize;
                &self.heap[start..start + self.len[row] as usize]
            }
        })
    }

    fn push(&mut self, value: Option<&[u8]>) {
        self.valid.push(value.is_some());
        match self.ty.width() {
            Some(w) => match value {
                Some(v) => self.fixed.extend_from_slice(v),
                None => self.fixed.resize(self.fixed.len() + w, 0),
            },
            None => {
                let v = value.unwrap_or_default();
                self.start.push(self.heap.len() as u64);
                self.len.push(v.len() as u32);
                self.heap.extend_from_slice(v);
            }
        }
    }

    fn set(&mut self, row: usize, value: Option<&[u8]>) {
        self.valid[row] = value.is_some();
        match self.ty.width() {
            Some(w) => {
                let slot = &mut self.fixed[row * w..(row + 1) * w];
                match value {
                    Some(v) => slot.copy_from_slice(v),
                    None => slot.fill(0),
                }
            }
            None => {
                let v = value.unwrap_or_default();
                self.start[row] = self.heap.len() as u64;
                self.len[row] = v.len() as u32;
                self.heap.extend_from_slice(v);
            }
        }
    }
}

/// Why a table write is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RowError {
    #[error(
        "an event on this table carries {got} columns, the table has {expected} scalar columns"
    )]
    ColumnCount { expected: usize, got: usize },
    #[error("column {column:?} carries {got} values for {expected} rows")]
    ValueCount {
        column: String,
        expected: usize,
        got: usize,
    },
    #[error("column {column:?}: values are malformed")]
    Malformed { column: String },
    #[error("column {column:?}, row {row}: {source}")]
    Value {
        column: String,
        row: usize,
        source: ValueError,
    },
    #[error("null value in column {column:?} violates not-null constraint")]
    Null { column: String },
    #[error("duplicate key value violates unique constraint on column {column:?}")]
    Duplicate { column: String },
    #[error("record id {id} differs from the primary key {key} of its row")]
    KeyMismatch { id: u64, key: i64 },
    #[error(
        "a table record carries no metadata and tag 0, or tag 1 and the zero vector when its vector is NULL"
    )]
    TagOrMetadata,
    #[error("column index {0} is not a scalar column of the table")]
    UnknownColumn(u16),
    #[error("column {0:?} is set twice in one update")]
    RepeatedColumn(String),
    #[error("an update sets no column")]
    EmptyUpdate,
}

/// The scalar columns of a table collection, and what keeps its unique
/// columns unique.
#[derive(Clone, Debug)]
pub struct Table {
    schema: TableSchema,
    /// One per scalar column, in schema order.
    columns: Vec<ScalarColumn>,
    /// Per scalar column with a unique constraint: live value → row.
    unique: Vec<Option<BTreeMap<Vec<u8>, u32>>>,
    /// Per scalar column: the largest value a serial column has held (its
    /// sequence continues after it); 0 otherwise.
    sequences: Vec<i64>,
    /// Per scalar column with a btree index: (order key, row) of every
    /// live row whose value is not NULL. Derived from the values, so not
    /// hashed or stored.
    ordered: Vec<Option<Ordered>>,
    /// Per [`UniqueSet`] of the schema, in order: the live rows by their
    /// values in its columns. Derived from the values.
    composite: Vec<Composite>,
}

/// What keeps a [`UniqueSet`]: its columns' positions among the scalar
/// columns, and each live row without a NULL in them by its key (the
/// values, each as `len:u32 ‖ bytes`).
#[derive(Clone, Debug, Default)]
struct Composite {
    columns: Vec<usize>,
    rows: BTreeMap<Vec<u8>, u32>,
}

impl Composite {
    /// The key of the values `value(c)` give the set's columns; `None`
    /// when one is NULL.
    fn key<'a>(&self, mut value: impl FnMut(usize) -> Option<&'a [u8]>) -> Option<Vec<u8>> {
        let mut key = Vec::new();
        for &c in &self.columns {
            let v = value(c)?;
            key.extend_from_slice(&(v.len() as u32).to_le_bytes());
            key.extend_from_slice(v);
        }
        Some(key)
    }
}

/// One btree index: (order key, row) of the live, non-NULL rows.
type Ordered = BTreeSet<(Vec<u8>, u32)>;

/// Reads a little-endian two's complement integer of 2, 4 or 8 bytes.
pub fn integer_value(bytes: &[u8]) -> Option<i64> {
    Some(match bytes.len() {
        2 => i64::from(i16::from_le_bytes(bytes.try_into().ok()?)),
        4 => i64::from(i32::from_le_bytes(bytes.try_into().ok()?)),
        8 => i64::from_le_bytes(bytes.try_into().ok()?),
        _ => return None,
    })
}

impl Table {
    pub fn new(schema: TableSchema) -> Table {
        let columns: Vec<ScalarColumn> = schema
            .scalar_columns()
            .map(|(_, _, t)| ScalarColumn::new(t))
            .collect();
        let unique = schema
            .scalar_columns()
            .map(|(_, c, _)| c.is_unique().then(BTreeMap::new))
            .collect();
        let sequences = alloc::vec![0; columns.len()];
        let ordered = schema
            .scalar_columns()
            .map(|(_, c, _)| c.index.as_ref().map(|_| Ordered::new()))
            .collect();
        let mut table = Table {
            schema,
            columns,
            unique,
            sequences,
            ordered,
            composite: Vec::new(),
        };
        table.rebuild_composite(&[]);
        table
    }

    /// Builds every [`UniqueSet`]'s rows anew from the live rows
    /// (`deleted` says which rows are deleted).
    fn rebuild_composite(&mut self, deleted: &[bool]) {
        let schema = &self.schema;
        let mut composite: Vec<Composite> = schema
            .uniques
            .iter()
            .map(|u| Composite {
                columns: u
                    .columns
                    .iter()
                    .filter_map(|name| schema.scalar_position(name))
                    .collect(),
                rows: BTreeMap::new(),
            })
            .collect();
        for set in &mut composite {
            for (row, _) in deleted.iter().enumerate().filter(|(_, d)| !**d) {
                if let Some(key) = set.key(|c| self.columns[c].get(row)) {
                    set.rows.insert(key, row as u32);
                }
            }
        }
        self.composite = composite;
    }

    /// Checks that the live rows satisfy a unique constraint over the
    /// scalar columns named `columns` (`deleted` says which rows are
    /// deleted); the name of the first column that is not one of them
    /// otherwise.
    pub fn check_unique_set(
        &self,
        name: &str,
        columns: &[String],
        deleted: &[bool],
    ) -> Result<(), RowError> {
        let set = Composite {
            columns: columns
                .iter()
                .map(|c| {
                    self.schema
                        .scalar_position(c)
                        .ok_or_else(|| RowError::Duplicate {
                            column: String::from(name),
                        })
                })
                .collect::<Result<_, _>>()?,
            rows: BTreeMap::new(),
        };
        let mut seen = BTreeSet::new();
        for (row, _) in deleted.iter().enumerate().filter(|(_, d)| !**d) {
            if let Some(key) = set.key(|c| self.columns[c].get(row))
                && !seen.insert(key)
            {
                return Err(RowError::Duplicate {
                    column: String::from(name),
                });
            }
        }
        Ok(())
    }

    /// Checks that the live rows fit text column `column`'s new bound
    /// of `type_mod` characters, or holds no NULL for `NOT NULL`.
    pub fn check_column_change(
        &self,
        column: &str,
        type_mod: Option<u32>,
        not_null: bool,
        deleted: &[bool],
    ) -> Result<(), RowError> {
        let Some(s) = self.schema.scalar_position(column) else {
            return Ok(());
        };
        let values = &self.columns[s];
        for (row, _) in deleted.iter().enumerate().filter(|(_, d)| !**d) {
            match values.get(row) {
                None if not_null => {
                    return Err(RowError::Null {
                        column: String::from(column),
                    });
                }
                Some(v) if type_mod.is_some() => {
                    if let Err(source) = values.ty.check(v, type_mod.unwrap_or(0)) {
                        return Err(RowError::Value {
                            column: String::from(column),
                            row,
                            source,
                        });
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    pub fn schema(&self) -> &TableSchema {
        &self.schema
    }

    /// The scalar columns, in schema order.
    pub fn columns(&self) -> &[ScalarColumn] {
        &self.columns
    }

    /// Applies one action of an `ALTER TABLE` that
    /// [`TableSchema::alter`] accepted; `deleted` says which of the
    /// collection's rows are deleted.
    pub fn alter(&mut self, action: &AlterAction, deleted: &[bool]) {
        self.alter_values(action, deleted);
        if !self.schema.uniques.is_empty() || !self.composite.is_empty() {
            self.rebuild_composite(deleted);
        }
    }

    fn alter_values(&mut self, action: &AlterAction, deleted: &[bool]) {
        let rows = deleted.len();
        let scalar_index = |schema: &TableSchema, name: &str| {
            schema.scalar_columns().position(|(_, c, _)| c.name == name)
        };
        match action {
            AlterAction::AddColumn { column, value } => {
                self.schema.columns.push(column.clone());
                let Some(ty) = column.scalar() else {
                    // The vector column's values are the collection's
                    // vector rows.
                    return;
                };
                self.columns
                    .push(ScalarColumn::filled(ty, rows, value.as_deref()));
                self.unique.push(None);
                self.sequences.push(0);
                self.ordered.push(None);
            }
            AlterAction::DropColumn { name } => {
                if let Some(s) = scalar_index(&self.schema, name) {
                    self.columns.remove(s);
                    self.unique.remove(s);
                    self.sequences.remove(s);
                    self.ordered.remove(s);
                }
                self.schema.columns.retain(|c| c.name != *name);
                self.schema.uniques.retain(|u| !u.columns.contains(name));
            }
            AlterAction::RenameColumn { from, to } => {
                if let Some(c) = self.schema.columns.iter_mut().find(|c| c.name == *from) {
                    c.name = to.clone();
                }
                for column in self
                    .schema
                    .uniques
                    .iter_mut()
                    .flat_map(|u| u.columns.iter_mut())
                {
                    if column == from {
                        *column = to.clone();
                    }
                }
            }
            AlterAction::RenameTable { .. } => {}
            AlterAction::CreateIndex { column, name } => {
                if let Some(c) = self.schema.columns.iter_mut().find(|c| c.name == *column) {
                    c.index = Some(name.clone());
                }
                // The vector column's index is the collection's graph: only
                // its name is kept here.
                let Some(s) = scalar_index(&self.schema, column) else {
                    return;
                };
                let values = &self.columns[s];
                let mut ordered = Ordered::new();
                for (row, _) in deleted.iter().enumerate().filter(|(_, d)| !**d) {
                    if let Some(key) = values.get(row).and_then(|v| values.ty.order_key(v)) {
                        ordered.insert((key, row as u32));
                    }
                }
                self.ordered[s] = Some(ordered);
            }
            AlterAction::TypeVector { dim } => {
                if let Some(i) = self.schema.vector_column() {
                    self.schema.columns[i].type_mod = *dim;
                }
            }
            // Only the schema changes; the values stay as they are.
            AlterAction::AddForeignKey { .. }
            | AlterAction::DropConstraint { .. }
            | AlterAction::AddUnique { .. }
            | AlterAction::SetTypeMod { .. }
            | AlterAction::SetNotNull { .. }
            | AlterAction::SetDefault { .. } => {
                let counts = RowCounts {
                    live: 0,
                    stored: rows as u64,
                };
                // Checked by the caller against this very schema.
                let altered = self.schema.alter(action, counts);
                debug_assert!(altered.is_ok(), "{altered:?}");
            }
            AlterAction::DropIndex { name } => {
                if let Some(c) = self
                    .schema
                    .columns
                    .iter_mut()
                    .find(|c| c.index.as_ref() == Some(name))
                {
                    c.index = None;
                    let column = c.name.clone();
                    if let Some(s) = scalar_index(&self.schema, &column) {
                        self.ordered[s] = None;
                    }
                }
            }
        }
    }

    /// The rows of scalar column `column`'s btree index whose order keys
    /// ([`ScalarType::order_key`]) lie between `lower` and `upper`, in
    /// key order; `None` when the column has no index. Only live rows
    /// with a value are indexed.
    pub fn index_range<'a>(
        &'a self,
        column: usize,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
    ) -> Option<impl Iterator<Item = u32> + 'a> {
        let ordered = self.ordered.get(column)?.as_ref()?;
        let lower = match lower {
            Bound::Included(k) => Bound::Included((k.to_vec(), 0)),
            Bound::Excluded(k) => Bound::Excluded((k.to_vec(), u32::MAX)),
            Bound::Unbounded => Bound::Unbounded,
        };
        let upper = match upper {
            Bound::Included(k) => Bound::Included((k.to_vec(), u32::MAX)),
            Bound::Excluded(k) => Bound::Excluded((k.to_vec(), 0)),
            Bound::Unbounded => Bound::Unbounded,
        };
        // An empty or inverted range holds nothing (`BTreeSet::range`
        // would panic on it).
        let empty = match (&lower, &upper) {
            (Bound::Included(l) | Bound::Excluded(l), Bound::Included(u) | Bound::Excluded(u)) => {
                l > u
                    || (l == u
                        && !matches!((&lower, &upper), (Bound::Included(_), Bound::Included(_))))
            }
            _ => false,
        };
        let range = (!empty).then(|| ordered.range((lower, upper)));
        Some(range.into_iter().flatten().map(|(_, row)| *row))
    }

    /// How many rows scalar column `column`'s btree index holds; `None`
    /// when it has none.
    pub fn index_len(&self, column: usize) -> Option<usize> {
        Some(self.ordered.get(column)?.as_ref()?.len())
    }

    fn index_insert(&mut self, column: usize, row: u32, value: Option<&[u8]>) {
        if let (Some(ordered), Some(v)) = (&mut self.ordered[column], value)
            && let Some(key) = self.columns[column].ty.order_key(v)
        {
            ordered.insert((key, row));
        }
    }

    fn index_remove(&mut self, column: usize, row: u32) {
        if let (Some(ordered), Some(v)) = (
            &mut self.ordered[column],
            self.columns[column].get(row as usize),
        ) && let Some(key) = self.columns[column].ty.order_key(v)
        {
            ordered.remove(&(key, row));
        }
    }

    /// The live row holding `value` in scalar column `column`, when the
    /// column is unique.
    pub fn unique_row(&self, column: usize, value: &[u8]) -> Option<u32> {
        self.unique.get(column)?.as_ref()?.get(value).copied()
    }

    /// The live row whose values in the columns of the schema's
    /// [`UniqueSet`] number `set` are those `value` gives (by scalar
    /// column), and the set's key for them; `None` for the row when none
    /// holds them, and no key when one of them is NULL (a NULL is never
    /// a duplicate).
    pub fn unique_set_row<'a>(
        &self,
        set: usize,
        value: impl FnMut(usize) -> Option<&'a [u8]>,
    ) -> Option<(Vec<u8>, Option<u32>)> {
        let composite = self.composite.get(set)?;
        let key = composite.key(value)?;
        let row = composite.rows.get(&key).copied();
        Some((key, row))
    }

    /// The last value each scalar column's sequence gave (0 when the
    /// column is not serial or has given none).
    pub fn sequences(&self) -> &[i64] {
        &self.sequences
    }

    fn def(&self, column: usize) -> &ColumnDef {
        self.schema
            .scalar_columns()
            .nth(column)
            .map(|(_, c, _)| c)
            .expect("invariant: one definition per scalar column")
    }

    fn check_value(&self, column: usize, row: usize, value: Option<&[u8]>) -> Result<(), RowError> {
        let def = self.def(column);
        match value {
            None if def.not_null() => Err(RowError::Null {
                column: def.name.clone(),
            }),
            None => Ok(()),
            Some(v) => self.columns[column]
                .ty
                .check(v, def.type_mod)
                .map_err(|source| RowError::Value {
                    column: def.name.clone(),
                    row,
                    source,
                }),
        }
    }

    fn check_values_shape(
        &self,
        column: usize,
        values: &ColumnValues,
        rows: usize,
    ) -> Result<(), RowError> {
        let name = || self.def(column).name.clone();
        if values.len() != rows {
            return Err(RowError::ValueCount {
                column: name(),
                expected: rows,
                got: values.len(),
            });
        }
        if !values.is_well_formed() {
            return Err(RowError::Malformed { column: name() });
        }
        for row in 0..rows {
            self.check_value(column, row, values.get(row))?;
        }
        Ok(())
    }

    /// Checks the values of an insert of `ids` (new rows; the caller
    /// checked the ids themselves).
    pub fn check_insert(&self, ids: &[u64], columns: &[ColumnValues]) -> Result<(), RowError> {
        self.check_replace(&[], ids, columns)
    }

    /// [`Table::check_insert`] of rows that replace the live rows
    /// `replaced` in the same event: the unique values those rows hold
    /// are free for the new ones.
    pub fn check_replace(
        &self,
        replaced: &[u32],
        ids: &[u64],
        columns: &[ColumnValues],
    ) -> Result<(), RowError> {
        if columns.len() != self.columns.len() {
            return Err(RowError::ColumnCount {
                expected: self.columns.len(),
                got: columns.len(),
            });
        }
        for (i, values) in columns.iter().enumerate() {
            self.check_values_shape(i, values, ids.len())?;
        }
        if let Some(key) = self.schema.integer_key() {
            for (row, id) in ids.iter().enumerate() {
                let value = columns[key].get(row).and_then(integer_value);
                if value.map(|v| v as u64) != Some(*id) {
                    return Err(RowError::KeyMismatch {
                        id: *id,
                        key: value.unwrap_or_default(),
                    });
                }
            }
        }
        for (i, values) in columns.iter().enumerate() {
            if let Some(live) = &self.unique[i] {
                let mut seen: Vec<&[u8]> =
                    (0..values.len()).filter_map(|r| values.get(r)).collect();
                let before = seen.len();
                seen.sort_unstable();
                seen.dedup();
                let held = |v: &[u8]| live.get(v).is_some_and(|row| !replaced.contains(row));
                if seen.len() != before || seen.iter().any(|v| held(v)) {
                    return Err(RowError::Duplicate {
                        column: self.def(i).name.clone(),
                    });
                }
            }
        }
        for (set, u) in self.composite.iter().zip(&self.schema.uniques) {
            let mut seen = BTreeSet::new();
            for r in 0..ids.len() {
                let Some(key) = set.key(|c| columns[c].get(r)) else {
                    continue;
                };
                let held = set
                    .rows
                    .get(&key)
                    .is_some_and(|row| !replaced.contains(row));
                if held || !seen.insert(key) {
                    return Err(RowError::Duplicate {
                        column: u.name.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Appends the checked values of rows `first_row..`.
    pub fn push(&mut self, first_row: u32, columns: &[ColumnValues]) {
        for (i, values) in columns.iter().enumerate() {
            let serial = self.def(i).is_serial();
            for r in 0..values.len() {
                let value = values.get(r);
                self.columns[i].push(value);
                if let (Some(live), Some(v)) = (&mut self.unique[i], value) {
                    live.insert(v.to_vec(), first_row + r as u32);
                }
                self.index_insert(i, first_row + r as u32, value);
                if serial && let Some(v) = value.and_then(integer_value) {
                    self.sequences[i] = self.sequences[i].max(v);
                }
            }
        }
        let rows = columns.first().map_or(0, ColumnValues::len);
        for set in &mut self.composite {
            for r in 0..rows {
                if let Some(key) = set.key(|c| columns[c].get(r)) {
                    set.rows.insert(key, first_row + r as u32);
                }
            }
        }
    }

    /// Checks an update of the rows `rows` (live, distinct; the caller
    /// checked them).
    pub fn check_update(&self, rows: &[u32], sets: &[(u16, ColumnValues)]) -> Result<(), RowError> {
        if sets.is_empty() {
            return Err(RowError::EmptyUpdate);
        }
        let mut seen: Vec<u16> = Vec::with_capacity(sets.len());
        for (column, values) in sets {
            let c = usize::from(*column);
            if c >= self.columns.len() {
                return Err(RowError::UnknownColumn(*column));
            }
            if seen.contains(column) {
                return Err(RowError::RepeatedColumn(self.def(c).name.clone()));
            }
            seen.push(*column);
            if self.schema.integer_key() == Some(c) {
                // The key is the record id: changing it is a delete and
                // an insert, which the edge writes as such.
                return Err(RowError::UnknownColumn(*column));
            }
            self.check_values_shape(c, values, rows.len())?;
            if let Some(live) = &self.unique[c] {
                let mut new: Vec<&[u8]> = (0..values.len()).filter_map(|r| values.get(r)).collect();
                let before = new.len();
                new.sort_unstable();
                new.dedup();
                let clash = new
                    .iter()
                    .any(|v| live.get(*v).is_some_and(|holder| !rows.contains(holder)));
                if new.len() != before || clash {
                    return Err(RowError::Duplicate {
                        column: self.def(c).name.clone(),
                    });
                }
            }
        }
        for (set, u) in self.composite.iter().zip(&self.schema.uniques) {
            if !sets
                .iter()
                .any(|(c, _)| set.columns.contains(&usize::from(*c)))
            {
                continue;
            }
            let mut seen = BTreeSet::new();
            for (r, &row) in rows.iter().enumerate() {
                let value = |c: usize| match sets.iter().find(|(s, _)| usize::from(*s) == c) {
                    Some((_, values)) => values.get(r),
                    None => self.columns[c].get(row as usize),
                };
                let Some(key) = set.key(value) else { continue };
                let clash = set
                    .rows
                    .get(&key)
                    .is_some_and(|holder| !rows.contains(holder));
                if clash || !seen.insert(key) {
                    return Err(RowError::Duplicate {
                        column: u.name.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Applies a checked update.
    pub fn update(&mut self, rows: &[u32], sets: &[(u16, ColumnValues)]) {
        let touched: Vec<usize> = (0..self.composite.len())
            .filter(|&i| {
                sets.iter()
                    .any(|(c, _)| self.composite[i].columns.contains(&usize::from(*c)))
            })
            .collect();
        for &i in &touched {
            for &row in rows {
                if let Some(key) = self.composite[i].key(|c| self.columns[c].get(row as usize)) {
                    self.composite[i].rows.remove(&key);
                }
            }
        }
        self.update_values(rows, sets);
        for &i in &touched {
            for &row in rows {
                if let Some(key) = self.composite[i].key(|c| self.columns[c].get(row as usize)) {
                    self.composite[i].rows.insert(key, row);
                }
            }
        }
    }

    fn update_values(&mut self, rows: &[u32], sets: &[(u16, ColumnValues)]) {
        for (column, values) in sets {
            let c = usize::from(*column);
            let serial = self.def(c).is_serial();
            if let Some(live) = &mut self.unique[c] {
                for &row in rows {
                    if let Some(old) = self.columns[c].get(row as usize) {
                        live.remove(old);
                    }
                }
            }
            for &row in rows {
                self.index_remove(c, row);
            }
            for (r, &row) in rows.iter().enumerate() {
                let value = values.get(r);
                self.columns[c].set(row as usize, value);
                self.index_insert(c, row, value);
                if let (Some(live), Some(v)) = (&mut self.unique[c], value) {
                    live.insert(v.to_vec(), row);
                }
                if serial && let Some(v) = value.and_then(integer_value) {
                    self.sequences[c] = self.sequences[c].max(v);
                }
            }
        }
    }

    /// Forgets the unique and indexed values of a row being deleted.
    pub fn delete(&mut self, row: u32) {
        for (c, live) in self.unique.iter_mut().enumerate() {
            if let (Some(live), Some(v)) = (live, self.columns[c].get(row as usize)) {
                live.remove(v);
            }
        }
        for c in 0..self.columns.len() {
            self.index_remove(c, row);
        }
        for i in 0..self.composite.len() {
            if let Some(key) = self.composite[i].key(|c| self.columns[c].get(row as usize)) {
                self.composite[i].rows.remove(&key);
            }
        }
    }

    /// Restores a row's values as snapshot loading does (the row is
    /// checked like an insert of one row).
    pub fn restore_row(
        &mut self,
        row: u32,
        id: u64,
        values: &[Option<&[u8]>],
        deleted: bool,
    ) -> Result<(), RowError> {
        let mut columns: Vec<ColumnValues> = Vec::with_capacity(values.len());
        for v in values {
            let mut c = ColumnValues::default();
            c.push(*v);
            columns.push(c);
        }
        if deleted {
            // A deleted row's values may since have been taken by a live
            // row: check their form only.
            if columns.len() != self.columns.len() {
                return Err(RowError::ColumnCount {
                    expected: self.columns.len(),
                    got: columns.len(),
                });
            }
            // A NULL may stand in a NOT NULL column of a deleted row: a
            // column added without a value to a table whose rows were
            // all deleted (`AlterAction::AddColumn`).
            for (i, v) in values.iter().enumerate() {
                if v.is_some() {
                    self.check_value(i, 0, *v)?;
                }
            }
            for (i, v) in values.iter().enumerate() {
                self.columns[i].push(*v);
            }
            return Ok(());
        }
        self.check_insert(&[id], &columns)?;
        self.push(row, &columns);
        Ok(())
    }

    /// Sets the sequences as snapshot loading does: each at least what
    /// the restored rows imply.
    pub fn restore_sequences(&mut self, sequences: &[i64]) -> bool {
        if sequences.len() != self.sequences.len()
            || sequences
                .iter()
                .zip(&self.sequences)
                .any(|(s, min)| s < min)
            || sequences
                .iter()
                .enumerate()
                .any(|(i, &s)| s != 0 && !self.def(i).is_serial())
        {
            return false;
        }
        self.sequences.copy_from_slice(sequences);
        true
    }

    /// Appends the canonical encoding of row `row`'s scalar values to a
    /// row's hash encoding: per column `valid:u8`, then the value (fixed
    /// width, or `len:u32 ‖ bytes`).
    pub fn encode_row(&self, out: &mut Vec<u8>, row: usize) {
        for c in &self.columns {
            match c.get(row) {
                None => out.push(0),
                Some(v) => {
                    out.push(1);
                    if c.ty.width().is_none() {
                        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
                    }
                    out.extend_from_slice(v);
                }
            }
        }
    }

    /// The table's part of its collection hash: the schema's encoding,
    /// then the sequences (`i64` each).
    pub fn descriptor(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.schema.encode_into(&mut out);
        for s in &self.sequences {
            out.extend_from_slice(&s.to_le_bytes());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves `character(n)` values (code 16) are canonical only padded
    /// to exactly `n` characters (blanks added at the edge, as Postgres
    /// stores them), any length without `n` (`bpchar`), and that their
    /// order key drops the trailing blanks (Postgres's `bpcharcmp`
    /// ignores them), so `'ab '` and `'ab'` are one key and `'a '` sorts
    /// before `'a!'`.
    #[test]
    fn character_values_are_padded_and_compare_without_blanks() {
        assert_eq!(ScalarType::from_code(16), Some(ScalarType::Char));
        assert_eq!(ScalarType::Char.code(), 16);
        assert_eq!(ScalarType::Char.check(b"ab ", 3), Ok(()));
        assert_eq!(ScalarType::Char.check("é  ".as_bytes(), 3), Ok(()));
        assert_eq!(
            ScalarType::Char.check(b"ab", 3),
            Err(ValueError::NotPadded { chars: 2, width: 3 })
        );
        assert_eq!(
            ScalarType::Char.check(b"abcd", 3),
            Err(ValueError::NotPadded { chars: 4, width: 3 })
        );
        assert_eq!(ScalarType::Char.check(b"ab  ", 0), Ok(()));
        assert_eq!(ScalarType::Char.check(&[0xff], 0), Err(ValueError::Utf8));
        let key = |v: &[u8]| ScalarType::Char.order_key(v).unwrap();
        assert_eq!(key(b"ab "), key(b"ab"));
        assert_eq!(key(b"   "), Vec::<u8>::new());
        assert!(key(b"a  ") < key(b"a! "));
        assert!(key(b" a ") < key(b"ab "));
        assert!(ScalarType::Char.is_keyable() && ScalarType::Char.is_orderable());
    }

    /// Proves that order keys sort as the values: integers of every
    /// width and the date and timestamp types by numeric value (one key
    /// for one value whatever the width), floats by IEEE 754 total order
    /// as `f64::total_cmp` sorts them, and that the types without an
    /// order have no key.
    #[test]
    fn order_keys_sort_as_the_values() {
        let ints = [
            i64::MIN,
            -70_000,
            -300,
            -1,
            0,
            1,
            255,
            256,
            70_000,
            i64::MAX,
        ];
        let mut keys: Vec<Vec<u8>> = ints
            .iter()
            .map(|v| ScalarType::Int64.order_key(&v.to_le_bytes()).unwrap())
            .collect();
        let sorted = keys.clone();
        keys.sort();
        assert_eq!(keys, sorted);
        for v in [-300i16, -1, 0, 255] {
            let wide = ScalarType::Int64.order_key(&i64::from(v).to_le_bytes());
            assert_eq!(ScalarType::Int16.order_key(&v.to_le_bytes()), wide);
            assert_eq!(
                ScalarType::Int32.order_key(&i32::from(v).to_le_bytes()),
                wide
            );
            assert_eq!(
                ScalarType::Date.order_key(&i32::from(v).to_le_bytes()),
                wide
            );
        }
        let floats = [
            f64::NEG_INFINITY,
            -1e300,
            -2.5,
            -f64::MIN_POSITIVE,
            -0.0,
            0.0,
            f64::MIN_POSITIVE,
            1.0,
            1e300,
            f64::INFINITY,
            f64::NAN,
        ];
        let mut by_key: Vec<f64> = floats.to_vec();
        by_key.sort_by_key(|v| ScalarType::Float64.order_key(&v.to_le_bytes()).unwrap());
        let mut by_total = floats.to_vec();
        by_total.sort_by(f64::total_cmp);
        assert_eq!(
            by_key.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            by_total.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        let mut singles: Vec<f32> = floats.iter().map(|&v| v as f32).collect();
        singles.sort_by_key(|v| ScalarType::Float32.order_key(&v.to_le_bytes()).unwrap());
        assert!(singles.windows(2).all(|w| w[0].total_cmp(&w[1]).is_le()));
        for ty in [
            ScalarType::Numeric,
            ScalarType::Json,
            ScalarType::Jsonb,
            ScalarType::Array(ArrayElement::Int32),
        ] {
            assert!(!ty.is_orderable());
            assert_eq!(ty.order_key(b"1"), None);
        }
        assert_eq!(ScalarType::Int32.order_key(&[1, 2]), None);
    }
}
