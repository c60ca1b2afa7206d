//! The sizes of relations, as `pg_relation_size`, `pg_table_size`,
//! `pg_indexes_size` and `pg_total_relation_size` report them, and
//! `pg_size_pretty`, which prints them as Postgres does.
//!
//! Valori keeps its tables in memory as columns (and on disk as a log and
//! snapshots of them), so a relation's size is not a count of 8 kB pages:
//! it is the bytes of the columns the state holds for the relation,
//! counted from its rows:
//!
//! - a table: per row, live or deleted (a deleted row stays stored until
//!   its collection is rebuilt): the id (8 bytes), the tag (8), the vector
//!   (4 bytes per component, Q16.16), the tombstone (1) and the metadata's
//!   bytes; for a table with declared columns, also per scalar column one
//!   validity byte and the value (its fixed width, NULL included, for
//!   fixed-width types; its bytes for the others);
//! - the HNSW index: the graph's links as held: per row in the graph,
//!   `2·m` layer-0 slots of 4 bytes, its slot count (2), level (1) and
//!   layer-0 in-degree (4); per node above layer 0 its map key (4) and
//!   list headers, and 4 bytes per link on the layers above
//!   (`Hnsw::held_bytes`). The
//!   graph takes rows in whole blocks; rows after the last whole block are
//!   searched exactly and count nothing here. The compact copy of the
//!   vectors that graph walks read is a cache of the table's vectors and
//!   is not counted;
//! - a btree index (primary key, `UNIQUE`, `CREATE INDEX`): per live row,
//!   the key's bytes (as in the table) and a 4-byte row number;
//! - a sequence: its value, 8 bytes;
//! - the catalog's own tables: 0, since they are computed at each scan
//!   and hold nothing (as a Postgres view has size 0).
//!
//! An OID that names no relation answers NULL, as in Postgres.

use valori_core::state::Collection;

use super::Relation;
use super::keys::{self, Index};

/// Which part of a relation a size function measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// `pg_relation_size`, `pg_table_size`: the relation itself.
    Own,
    /// `pg_indexes_size`: the indexes of a table (0 for an index or a
    /// sequence).
    Indexes,
    /// `pg_total_relation_size`: both.
    Total,
}

/// The bytes of `part` of the relation with OID `oid` in `collections`,
/// or `None` when no user relation has that OID (the caller checks the
/// catalog's own tables).
pub fn relation_bytes<'a>(
    collections: impl Iterator<Item = &'a Collection>,
    oid: u32,
    part: Part,
) -> Option<u64> {
    for collection in collections {
        let relation = Relation::of(collection);
        let indexes = keys::indexes(&relation);
        if relation.oid == oid {
            let own = || table_bytes(collection);
            let attached = || {
                indexes
                    .iter()
                    .map(|i| index_bytes(collection, i))
                    .sum::<u64>()
            };
            return Some(match part {
                Part::Own => own(),
                Part::Indexes => attached(),
                Part::Total => own() + attached(),
            });
        }
        if let Some(index) = indexes.iter().find(|i| i.oid == oid) {
            return Some(match part {
                Part::Own | Part::Total => index_bytes(collection, index),
                Part::Indexes => 0,
            });
        }
        if keys::sequences(&relation).iter().any(|s| s.oid == oid) {
            return Some(match part {
                Part::Own | Part::Total => SEQUENCE_BYTES,
                Part::Indexes => 0,
            });
        }
    }
    None
}

/// A sequence's value: one `i64`.
const SEQUENCE_BYTES: u64 = 8;

/// Per row: id, tag and tombstone.
const ROW_FIXED_BYTES: u64 = 8 + 8 + 1;

/// Bytes of a row number in an index.
const ROW_NUMBER_BYTES: u64 = 4;

fn table_bytes(collection: &Collection) -> u64 {
    let rows = collection.rows() as u64;
    let vector = 4 * collection.dim() as u64;
    let metadata: u64 = (0..collection.rows())
        .map(|r| collection.metadata(r).len() as u64)
        .sum();
    let columns: u64 = collection.table().map_or(0, |table| {
        table
            .columns()
            .iter()
            .map(|c| {
                let values: u64 = match c.ty().width() {
                    Some(w) => (w * c.rows()) as u64,
                    None => (0..c.rows())
                        .map(|r| c.get(r).map_or(0, <[u8]>::len) as u64)
                        .sum(),
                };
                c.rows() as u64 + values
            })
            .sum()
    });
    rows * (ROW_FIXED_BYTES + vector) + metadata + columns
}

fn index_bytes(collection: &Collection, index: &Index) -> u64 {
    if index.hnsw.is_some() {
        return collection.index().held_bytes();
    }
    let live: Vec<usize> = collection
        .deleted()
        .iter()
        .enumerate()
        .filter(|(_, d)| !**d)
        .map(|(r, _)| r)
        .collect();
    let key: u64 = index
        .columns
        .iter()
        .map(|name| {
            let column = collection
                .table()
                .and_then(|t| Some((t, t.schema().scalar_position(name)?)))
                .and_then(|(t, i)| t.columns().get(i));
            match column {
                Some(c) => match c.ty().width() {
                    Some(w) => (w * live.len()) as u64,
                    None => live
                        .iter()
                        .map(|&r| c.get(r).map_or(0, <[u8]>::len) as u64)
                        .sum(),
                },
                // The fixed layout's `id` key: the record id.
                None => 8 * live.len() as u64,
            }
        })
        .sum();
    key + ROW_NUMBER_BYTES * live.len() as u64
}

/// The units `pg_size_pretty` uses after bytes, each 1024 of the one
/// before.
const UNITS: [&str; 5] = ["kB", "MB", "GB", "TB", "PB"];

/// `pg_size_pretty(bigint)` as Postgres 16 prints it (`dbsize.c`): bytes
/// below 10240 bytes; otherwise the largest unit (kB … PB) in which the
/// value, rounded half away from zero, is below 10240 (PB holds the
/// rest). The value is kept in half-units while it is divided, so the
/// rounding is of the exact value, not of a rounded one.
pub fn size_pretty(size: i64) -> String {
    if size.unsigned_abs() < 10 * 1024 {
        return format!("{size} bytes");
    }
    // In half-kB units, truncated toward zero.
    let mut half = size / 512;
    for (i, unit) in UNITS.iter().enumerate() {
        if i + 1 == UNITS.len() || half.unsigned_abs() < 20 * 1024 - 1 {
            let rounded = (half + if half < 0 { -1 } else { 1 }) / 2;
            return format!("{rounded} {unit}");
        }
        half /= 1024;
    }
    unreachable!("the last unit always answers")
}

/// `pg_size_pretty(numeric)`: the same rule for a decimal number given as
/// its text (`10.5`, `-1000000000000000.5`): below 10240 bytes the
/// number as written; otherwise its integer part in half-units of the
/// unit, rounded half away from zero (Postgres truncates the division
/// toward zero, then rounds the half-units). `None` if `text` is not a
/// decimal number.
pub fn size_pretty_numeric(text: &str) -> Option<String> {
    let t = text.trim();
    let (negative, digits) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let decimal = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() && frac.is_empty() || !decimal(int) || !decimal(frac) {
        return None;
    }
    let int_part: u128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let sign = if negative { "-" } else { "" };
    if int_part < 10 * 1024 {
        // Below 10240 bytes Postgres prints the number itself, as numeric
        // prints: no `+`, no leading zeros, the fraction's digits kept.
        let point = if frac.is_empty() { "" } else { "." };
        return Some(format!("{sign}{int_part}{point}{frac} bytes"));
    }
    let mut half = int_part / 512;
    for (i, unit) in UNITS.iter().enumerate() {
        if i + 1 == UNITS.len() || half < 20 * 1024 - 1 {
            let rounded = half.div_ceil(2);
            return Some(format!("{sign}{rounded} {unit}"));
        }
        half /= 1024;
    }
    unreachable!("the last unit always answers")
}

#[cfg(test)]
mod tests {
    //! `pg_size_pretty` against PostgreSQL 16's regression test
    //! `src/test/regress/sql/dbsize.sql`: its inputs, with the answers the
    //! documented rule gives (worked by hand in the comments).

    use super::*;

    /// Proves the bigint form on dbsize.sql's first query and on its
    /// "units change up" query, the boundaries where each unit starts.
    #[test]
    fn bigint_as_postgres() {
        let cases: &[(i64, &str)] = &[
            (10, "10 bytes"),
            (1000, "1000 bytes"),
            // 1000000 / 512 = 1953 half-kB → 977 kB.
            (1_000_000, "977 kB"),
            (1_000_000_000, "954 MB"),
            (1_000_000_000_000, "931 GB"),
            (1_000_000_000_000_000, "909 TB"),
            (10239, "10239 bytes"),
            (10240, "10 kB"),
            // 10485247 / 512 = 20478 half-kB (< 20479) → 10239 kB.
            (10_485_247, "10239 kB"),
            // 10485248 / 512 = 20479 → MB: 19 half-MB → 10 MB.
            (10_485_248, "10 MB"),
            (10_736_893_951, "10239 MB"),
            (10_736_893_952, "10 GB"),
            (10_994_579_406_847, "10239 GB"),
            (10_994_579_406_848, "10 TB"),
            (11_258_449_312_612_351, "10239 TB"),
            (11_258_449_312_612_352, "10 PB"),
        ];
        for &(size, expected) in cases {
            assert_eq!(size_pretty(size), expected, "{size}");
            assert_eq!(size_pretty(-size), format!("-{expected}"), "-{size}");
        }
        assert_eq!(size_pretty(0), "0 bytes");
        // Beyond 10239 PB the last unit still answers.
        assert_eq!(size_pretty(i64::MAX), "8192 PB");
    }

    /// Proves the numeric form on dbsize.sql's numeric queries: fractions
    /// below 10240 bytes are printed as given, above they round away.
    #[test]
    fn numeric_as_postgres() {
        let cases: &[(&str, &str)] = &[
            ("10", "10 bytes"),
            ("1000", "1000 bytes"),
            ("1000000", "977 kB"),
            ("1000000000", "954 MB"),
            ("1000000000000", "931 GB"),
            ("1000000000000000", "909 TB"),
            ("10.5", "10.5 bytes"),
            ("1000.5", "1000.5 bytes"),
            ("1000000.5", "977 kB"),
            ("1000000000.5", "954 MB"),
            ("1000000000000.5", "931 GB"),
            ("1000000000000000.5", "909 TB"),
            ("10239", "10239 bytes"),
            ("10240", "10 kB"),
            ("10485247", "10239 kB"),
            ("10485248", "10 MB"),
            ("11258449312612351", "10239 TB"),
            ("11258449312612352", "10 PB"),
            // Beyond bigint: PB holds the rest (10^21 / 2^50 = 888178.4).
            ("1000000000000000000000", "888178 PB"),
        ];
        for &(size, expected) in cases {
            assert_eq!(size_pretty_numeric(size).unwrap(), expected, "{size}");
            let negative = format!("-{size}");
            assert_eq!(
                size_pretty_numeric(&negative).unwrap(),
                format!("-{expected}"),
                "{negative}"
            );
        }
        assert_eq!(size_pretty_numeric("+010.50").unwrap(), "10.50 bytes");
        assert_eq!(size_pretty_numeric("1e3"), None);
        assert_eq!(size_pretty_numeric("."), None);
    }
}
