//! A client session's settings, the same on every front end.
//!
//! `SET`, `RESET` and `SHOW` are statements of the statement layer
//! ([`crate::statement`]): a Postgres connection, a REST `/v1/sql` call
//! and a Python `sql()` call each keep a [`Session`] and pass it with
//! every statement. The settings Valori uses are `valori.ef_search`,
//! `valori.exact`, `valori.read_consistency` and `statement_timeout`; any
//! other name is stored for `SHOW` (bounded in number and size by
//! [`limits`]), and the server's fixed parameters (`server_version`,
//! `client_encoding`, …) answer `SHOW` when the session has not set them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use valori_core::limits;

use crate::advisory::AdvisorySession;
use crate::settings::{ReadConsistency, SearchSettings};
use crate::transaction::Transaction;

/// The PostgreSQL version Valori answers as (`SHOW server_version`,
/// `version()`): the protocol and catalog it speaks.
pub const SERVER_VERSION: &str = "16.6";
/// [`SERVER_VERSION`] as `server_version_num`.
pub const SERVER_VERSION_NUM: &str = "160006";

/// Why a setting was refused. The session is unchanged.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SettingError {
    #[error("invalid value for parameter \"{name}\": {value:?} ({expected})")]
    InvalidValue {
        name: String,
        value: String,
        expected: &'static str,
    },
    /// A number outside the setting's range, in Postgres's words.
    #[error("{value} is outside the valid range for parameter \"{name}\" ({min} .. {max})")]
    OutOfRange {
        name: String,
        value: String,
        min: String,
        max: String,
    },
    #[error("unrecognized configuration parameter \"{0}\"")]
    Unknown(String),
    /// A size limit of [`limits`] (the message names it).
    #[error("{0}")]
    TooLarge(String),
}

/// One client session's settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Session {
    pub search: SearchSettings,
    /// The session's own `statement_timeout` (it can only shorten the
    /// server's, [`crate::QueryLimits::statement_timeout`]).
    pub statement_timeout: Option<Duration>,
    /// `valori.read_consistency`: which state the session's queries see.
    pub read_consistency: ReadConsistency,
    /// Settings Valori does not use, kept for `SHOW`.
    settings: BTreeMap<String, String>,
    /// The open transaction block, between `BEGIN` and its end.
    pub transaction: Option<Transaction>,
    /// The session as a holder of advisory locks (shared by its copies;
    /// its locks go when the last copy does).
    pub advisory: AdvisorySession,
    /// Statements `PREPARE`d in SQL, by name.
    pub prepared: SqlPrepared,
    /// The name the session logged in with (`current_user`); `None`
    /// where the front end has none (REST, Flight, embedded).
    pub user: Option<String>,
}

/// A session's `PREPARE`d statements (at most
/// [`valori_core::limits::PLAN_CACHE_ENTRIES_MAX`]), by name. Two are
/// equal when they hold the same names for the same statement texts.
#[derive(Clone, Debug, Default)]
pub struct SqlPrepared(BTreeMap<String, Arc<crate::statement::Prepared>>);

impl SqlPrepared {
    pub fn get(&self, name: &str) -> Option<Arc<crate::statement::Prepared>> {
        self.0.get(name).cloned()
    }

    pub fn insert(&mut self, name: String, statement: Arc<crate::statement::Prepared>) {
        self.0.insert(name, statement);
    }

    pub fn remove(&mut self, name: &str) -> Option<Arc<crate::statement::Prepared>> {
        self.0.remove(name)
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl PartialEq for SqlPrepared {
    fn eq(&self, other: &SqlPrepared) -> bool {
        self.0.len() == other.0.len()
            && self
                .0
                .iter()
                .zip(&other.0)
                .all(|((a, x), (b, y))| a == b && x.sql() == y.sql())
    }
}

impl Eq for SqlPrepared {}

impl Session {
    /// A session with these search settings and nothing else set.
    pub fn with_search(search: SearchSettings) -> Session {
        Session {
            search,
            ..Session::default()
        }
    }

    /// `SET name = value` (`value` `default` resets it).
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), SettingError> {
        let name = name.to_ascii_lowercase();
        let name = name.as_str();
        match name {
            "valori.ef_search" => {
                self.search.ef_search = parse_ef(
                    name,
                    value,
                    limits::EF_SEARCH_MAX as usize,
                    "an integer in 1..=100000",
                )?;
            }
            "valori.exact" => {
                self.search.exact = if value.eq_ignore_ascii_case("default") {
                    false
                } else {
                    parse_bool(value).ok_or_else(|| invalid(name, value, "on or off"))?
                };
            }
            "valori.read_consistency" => {
                self.read_consistency = if value.eq_ignore_ascii_case("default") {
                    ReadConsistency::default()
                } else {
                    ReadConsistency::parse(value)
                        .ok_or_else(|| invalid(name, value, "applied or linearizable"))?
                };
            }
            // pgvector's name for the same setting, within pgvector's
            // range.
            "hnsw.ef_search" => {
                self.search.ef_search = parse_ef(name, value, 1000, "an integer in 1..=1000")?;
            }
            "statement_timeout" => {
                self.statement_timeout = parse_timeout(value).ok_or_else(|| {
                    invalid(name, value, "milliseconds, or a number with ms, s or min")
                })?;
            }
            _ => {
                if value.eq_ignore_ascii_case("default") {
                    self.settings.remove(name);
                } else {
                    if let Some(setting) = PGVECTOR_SETTINGS.iter().find(|s| s.name == name) {
                        setting.check(value)?;
                    }
                    self.check_size(name, value)?;
                    self.settings.insert(name.to_owned(), value.to_owned());
                }
            }
        }
        Ok(())
    }

    /// `RESET name`; `RESET ALL` with `all`.
    pub fn reset(&mut self, name: &str) -> Result<(), SettingError> {
        if name.eq_ignore_ascii_case("all") {
            // Settings only: an open block stays open.
            *self = Session {
                transaction: self.transaction.take(),
                advisory: self.advisory.clone(),
                user: self.user.take(),
                ..Session::default()
            };
            return Ok(());
        }
        self.set(name, "default")
    }

    /// `SHOW name`.
    pub fn show(&self, name: &str) -> Result<String, SettingError> {
        let name = name.to_ascii_lowercase();
        Ok(match name.as_str() {
            "valori.ef_search" | "hnsw.ef_search" => self
                .search
                .ef_search
                .unwrap_or_else(SearchSettings::default_ef)
                .to_string(),
            "valori.exact" => if self.search.exact { "on" } else { "off" }.to_owned(),
            "valori.read_consistency" => self.read_consistency.name().to_owned(),
            "statement_timeout" => self
                .statement_timeout
                .map_or_else(|| "0".to_owned(), |d| format!("{}ms", d.as_millis())),
            other => match self.settings.get(other) {
                Some(v) => v.clone(),
                None if let Some(setting) = PGVECTOR_SETTINGS.iter().find(|s| s.name == other) => {
                    setting.default.to_owned()
                }
                None => server_setting(other)
                    .ok_or_else(|| SettingError::Unknown(other.to_owned()))?
                    .to_owned(),
            },
        })
    }

    /// Settings stored for `SHOW` only.
    pub fn stored(&self) -> usize {
        self.settings.len()
    }

    /// Bounds what a client can make its session keep: the settings
    /// Valori does not use are stored for `SHOW`, so their number and
    /// sizes are limited ([`limits::SESSION_SETTINGS_MAX`] and the byte
    /// limits).
    fn check_size(&self, name: &str, value: &str) -> Result<(), SettingError> {
        if name.len() > limits::SESSION_SETTING_NAME_BYTES_MAX as usize {
            return Err(SettingError::TooLarge(format!(
                "setting name of {} bytes exceeds {} bytes (SESSION_SETTING_NAME_BYTES_MAX)",
                name.len(),
                limits::SESSION_SETTING_NAME_BYTES_MAX
            )));
        }
        if value.len() > limits::SESSION_SETTING_VALUE_BYTES_MAX as usize {
            return Err(SettingError::TooLarge(format!(
                "value of setting \"{name}\" has {} bytes; at most {} (SESSION_SETTING_VALUE_BYTES_MAX)",
                value.len(),
                limits::SESSION_SETTING_VALUE_BYTES_MAX
            )));
        }
        if !self.settings.contains_key(name)
            && self.settings.len() >= limits::SESSION_SETTINGS_MAX as usize
        {
            return Err(SettingError::TooLarge(format!(
                "a session stores at most {} settings (SESSION_SETTINGS_MAX); RESET one first",
                limits::SESSION_SETTINGS_MAX
            )));
        }
        Ok(())
    }
}

/// An ef_search value in `1..=max`; `None` for `default`.
fn parse_ef(
    name: &str,
    value: &str,
    max: usize,
    expected: &'static str,
) -> Result<Option<usize>, SettingError> {
    if value.eq_ignore_ascii_case("default") {
        return Ok(None);
    }
    match value.trim().parse::<i64>() {
        Ok(n) if n >= 1 && usize::try_from(n).is_ok_and(|n| n <= max) => Ok(Some(n as usize)),
        Ok(_) => Err(out_of_range(name, value, "1", &max.to_string())),
        Err(_) => Err(invalid(name, value, expected)),
    }
}

fn out_of_range(name: &str, value: &str, min: &str, max: &str) -> SettingError {
    SettingError::OutOfRange {
        name: name.to_owned(),
        value: value.trim().to_owned(),
        min: min.to_owned(),
        max: max.to_owned(),
    }
}

/// The values a pgvector setting takes.
#[derive(Clone, Copy, Debug)]
enum Range {
    Integer(i64, i64),
    Real(f64, f64),
    Choice(&'static [&'static str]),
}

impl Range {
    fn admits(&self, value: &str) -> bool {
        match *self {
            Range::Integer(lo, hi) => value.parse::<i64>().is_ok_and(|n| (lo..=hi).contains(&n)),
            Range::Real(lo, hi) => value.parse::<f64>().is_ok_and(|n| (lo..=hi).contains(&n)),
            Range::Choice(names) => names.iter().any(|n| n.eq_ignore_ascii_case(value)),
        }
    }
}

/// One of pgvector's other index settings: its name, values, the
/// values in words, and its default.
struct PgvectorSetting {
    name: &'static str,
    range: Range,
    expected: &'static str,
    default: &'static str,
}

impl PgvectorSetting {
    fn check(&self, value: &str) -> Result<(), SettingError> {
        if self.range.admits(value) {
            return Ok(());
        }
        // A number of the right kind outside the range is reported as
        // Postgres reports it.
        let number = match self.range {
            Range::Integer(lo, hi) => value
                .trim()
                .parse::<i64>()
                .ok()
                .map(|_| (lo.to_string(), hi.to_string())),
            Range::Real(lo, hi) => value
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|n| n.is_finite())
                .map(|_| (lo.to_string(), hi.to_string())),
            Range::Choice(_) => None,
        };
        Err(match number {
            Some((lo, hi)) => out_of_range(self.name, value, &lo, &hi),
            None => invalid(self.name, value, self.expected),
        })
    }
}

/// pgvector's other index settings: checked against pgvector's ranges,
/// kept for `SHOW` (with pgvector's defaults) and otherwise without
/// effect. Valori's filtered search returns `k` rows whenever `k` match
/// under every `iterative_scan`, and an ivfflat index is the HNSW index
/// (docs/pgvector.md).
const PGVECTOR_SETTINGS: [PgvectorSetting; 6] = [
    PgvectorSetting {
        name: "hnsw.iterative_scan",
        range: Range::Choice(&["off", "relaxed_order", "strict_order"]),
        expected: "off, relaxed_order or strict_order",
        default: "off",
    },
    PgvectorSetting {
        name: "hnsw.max_scan_tuples",
        range: Range::Integer(1, 2_147_483_647),
        expected: "an integer in 1..=2147483647",
        default: "20000",
    },
    PgvectorSetting {
        name: "hnsw.scan_mem_multiplier",
        range: Range::Real(1.0, 1000.0),
        expected: "a number in 1..=1000",
        default: "1",
    },
    PgvectorSetting {
        name: "ivfflat.probes",
        range: Range::Integer(1, 32_768),
        expected: "an integer in 1..=32768",
        default: "1",
    },
    PgvectorSetting {
        name: "ivfflat.iterative_scan",
        range: Range::Choice(&["off", "relaxed_order"]),
        expected: "off or relaxed_order",
        default: "off",
    },
    PgvectorSetting {
        name: "ivfflat.max_probes",
        range: Range::Integer(1, 32_768),
        expected: "an integer in 1..=32768",
        default: "32768",
    },
];

fn invalid(name: &str, value: &str, expected: &'static str) -> SettingError {
    SettingError::InvalidValue {
        name: name.to_owned(),
        value: value.to_owned(),
        expected,
    }
}

/// The server's fixed parameters, as Postgres reports them (the
/// catalog's `pg_settings`).
pub fn server_setting(name: &str) -> Option<&'static str> {
    crate::catalog::server_setting(name)
}

/// Postgres's spellings of a boolean setting.
pub fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "on" | "true" | "t" | "yes" | "1" => Some(true),
        "off" | "false" | "f" | "no" | "0" => Some(false),
        _ => None,
    }
}

/// `statement_timeout` values: milliseconds, or a number with `ms`, `s`,
/// `min`; `0` turns it off.
fn parse_timeout(value: &str) -> Option<Option<Duration>> {
    let value = value.trim().to_ascii_lowercase();
    if value == "default" {
        return Some(None);
    }
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let n: u64 = value[..split].parse().ok()?;
    let ms = match value[split..].trim() {
        "" | "ms" => n,
        "s" => n.checked_mul(1000)?,
        "min" => n.checked_mul(60_000)?,
        _ => return None,
    };
    Some((ms > 0).then(|| Duration::from_millis(ms)))
}

/// `name=value` pairs of a libpq startup `options` string (`-c name=value`
/// or `--name=value`, as `PGOPTIONS` sends them).
pub fn startup_options(options: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut tokens = options.split_whitespace();
    while let Some(token) = tokens.next() {
        let pair = if token == "-c" {
            tokens.next()
        } else {
            token
                .strip_prefix("-c")
                .or_else(|| token.strip_prefix("--"))
        };
        if let Some((name, value)) = pair.and_then(|p| p.split_once('=')) {
            out.push((name.replace('-', "_"), value.to_owned()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves the settings a session stores are bounded in number, name
    /// and value size, and that a refused SET keeps the session's
    /// settings.
    #[test]
    fn stored_settings_are_bounded() {
        let mut s = Session::default();
        let max_value = "v".repeat(limits::SESSION_SETTING_VALUE_BYTES_MAX as usize);
        s.set("application_name", &max_value).unwrap();
        let e = s
            .set("application_name", &format!("{max_value}v"))
            .unwrap_err();
        assert!(matches!(e, SettingError::TooLarge(_)), "{e}");
        assert_eq!(s.show("application_name").unwrap(), max_value);
        let long_name = "n".repeat(limits::SESSION_SETTING_NAME_BYTES_MAX as usize + 1);
        assert!(matches!(
            s.set(&long_name, "1").unwrap_err(),
            SettingError::TooLarge(_)
        ));
        for i in 1..limits::SESSION_SETTINGS_MAX {
            s.set(&format!("app.s{i}"), "1").unwrap();
        }
        assert_eq!(s.stored(), limits::SESSION_SETTINGS_MAX as usize);
        let e = s.set("app.one_more", "1").unwrap_err();
        assert!(e.to_string().contains("SESSION_SETTINGS_MAX"), "{e}");
        // Changing or removing a stored setting is still allowed.
        s.set("app.s1", "2").unwrap();
        s.set("app.s1", "default").unwrap();
        s.set("app.one_more", "1").unwrap();
    }

    /// Proves libpq-style startup options are read.
    #[test]
    fn startup_options_pairs() {
        assert_eq!(
            startup_options(
                "-c statement_timeout=100 -cvalori.exact=on --valori.ef_search=32 junk"
            ),
            vec![
                ("statement_timeout".to_owned(), "100".to_owned()),
                ("valori.exact".to_owned(), "on".to_owned()),
                ("valori.ef_search".to_owned(), "32".to_owned()),
            ]
        );
    }

    /// Proves the session settings' values and refusals.
    #[test]
    fn settings() {
        let mut s = Session::default();
        s.set("valori.ef_search", "64").unwrap();
        s.set("valori.exact", "on").unwrap();
        s.set("statement_timeout", "2s").unwrap();
        assert_eq!(
            s.search,
            SearchSettings {
                ef_search: Some(64),
                exact: true
            }
        );
        assert_eq!(s.statement_timeout, Some(Duration::from_millis(2000)));
        assert_eq!(s.show("valori.ef_search").unwrap(), "64");
        assert!(matches!(
            s.set("valori.ef_search", "0").unwrap_err(),
            SettingError::OutOfRange { .. }
        ));
        assert!(matches!(
            s.set("valori.ef_search", "many").unwrap_err(),
            SettingError::InvalidValue { .. }
        ));
        assert!(matches!(
            s.set("valori.exact", "maybe").unwrap_err(),
            SettingError::InvalidValue { .. }
        ));
        s.set("statement_timeout", "0").unwrap();
        assert_eq!(s.statement_timeout, None);
        assert_eq!(s.show("valori.read_consistency").unwrap(), "applied");
        s.set("valori.read_consistency", "LINEARIZABLE").unwrap();
        assert_eq!(s.read_consistency, ReadConsistency::Linearizable);
        assert_eq!(s.show("valori.read_consistency").unwrap(), "linearizable");
        assert!(matches!(
            s.set("valori.read_consistency", "eventual").unwrap_err(),
            SettingError::InvalidValue { .. }
        ));
        assert_eq!(
            s.show("no_such_thing").unwrap_err(),
            SettingError::Unknown("no_such_thing".into())
        );
        // pgvector's settings: hnsw.ef_search is valori.ef_search within
        // pgvector's range; the others are checked and shown.
        s.set("hnsw.ef_search", "100").unwrap();
        assert_eq!(s.search.ef_search, Some(100));
        assert_eq!(s.show("valori.ef_search").unwrap(), "100");
        for bad in ["0", "1001"] {
            assert_eq!(
                s.set("hnsw.ef_search", bad).unwrap_err().to_string(),
                format!(
                    "{bad} is outside the valid range for parameter \"hnsw.ef_search\" (1 .. 1000)"
                )
            );
        }
        assert!(matches!(
            s.set("hnsw.ef_search", "x").unwrap_err(),
            SettingError::InvalidValue { .. }
        ));
        assert_eq!(
            s.set("hnsw.scan_mem_multiplier", "0")
                .unwrap_err()
                .to_string(),
            "0 is outside the valid range for parameter \"hnsw.scan_mem_multiplier\" (1 .. 1000)"
        );
        assert_eq!(s.show("hnsw.ef_search").unwrap(), "100");
        assert_eq!(s.show("hnsw.iterative_scan").unwrap(), "off");
        assert!(s.set("hnsw.iterative_scan", "on").is_err());
        s.set("hnsw.iterative_scan", "relaxed_order").unwrap();
        assert_eq!(s.show("hnsw.iterative_scan").unwrap(), "relaxed_order");
        assert!(s.set("ivfflat.iterative_scan", "strict_order").is_err());
        assert_eq!(s.show("ivfflat.probes").unwrap(), "1");
        assert!(s.set("ivfflat.probes", "32769").is_err());
        s.set("ivfflat.probes", "10").unwrap();
        assert!(s.set("hnsw.scan_mem_multiplier", "0.5").is_err());
        assert!(s.set("hnsw.max_scan_tuples", "0").is_err());
        assert_eq!(s.show("hnsw.max_scan_tuples").unwrap(), "20000");
        let advisory = s.advisory.clone();
        s.reset("all").unwrap();
        // Settings go back to their defaults; the session stays the same
        // holder of its advisory locks.
        assert_eq!(
            s,
            Session {
                advisory,
                ..Session::default()
            }
        );
    }
}
