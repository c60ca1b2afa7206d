//! Configuration of `valori serve`: flags, `VALORI_*` environment variables
//! and an optional TOML file, in that order of precedence, then defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use serde::Deserialize;

use crate::auth::User;

/// Default address of the REST API.
pub const DEFAULT_REST_ADDR: &str = "127.0.0.1:3000";
/// Default address of the Postgres protocol (5433, so that a local
/// PostgreSQL on 5432 does not collide).
pub const DEFAULT_PG_ADDR: &str = "127.0.0.1:5433";
/// Default address of Arrow Flight and Flight SQL (gRPC).
pub const DEFAULT_FLIGHT_ADDR: &str = "127.0.0.1:50051";
/// Default data directory, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = "valori_data";
/// Default largest request body of the REST API.
pub const DEFAULT_BODY_BYTES_MAX: usize = valori_core::limits::REST_BODY_BYTES_DEFAULT as usize;

/// `valori serve` flags. Each has an environment variable; values left
/// unset come from the `--config` file, then from the defaults shown.
#[derive(Args, Debug, Default)]
pub struct ServeArgs {
    /// TOML file with any of the settings below (keys as the long flag
    /// names with `_` for `-`, users as `[[users]]` tables with name, key and
    /// role).
    #[arg(long, env = "VALORI_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Directory of the log, snapshots and checkpoint; created if missing.
    /// [default: valori_data]
    #[arg(long, env = "VALORI_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Address of the REST/JSON API. [default: 127.0.0.1:3000]
    #[arg(long, env = "VALORI_REST_ADDR", value_name = "HOST:PORT")]
    pub rest_addr: Option<SocketAddr>,

    /// Address of the Postgres wire protocol (psql, psycopg, asyncpg, …).
    /// [default: 127.0.0.1:5433]
    #[arg(long, env = "VALORI_PG_ADDR", value_name = "HOST:PORT")]
    pub pg_addr: Option<SocketAddr>,

    /// Address of Arrow Flight and Flight SQL (pyarrow.flight, ADBC, JDBC).
    /// [default: 127.0.0.1:50051]
    #[arg(long, env = "VALORI_FLIGHT_ADDR", value_name = "HOST:PORT")]
    pub flight_addr: Option<SocketAddr>,

    /// A user as NAME:KEY:ROLE with ROLE read or write; repeat for more
    /// (environment: comma-separated). REST clients send the key as
    /// `Authorization: Bearer KEY`, Postgres clients log in with NAME and the
    /// key as password. Without users the server is open to anyone who can
    /// reach it, which it allows on loopback addresses only.
    #[arg(
        long = "user",
        env = "VALORI_USERS",
        hide_env_values = true,
        value_delimiter = ',',
        value_name = "NAME:KEY:ROLE"
    )]
    pub users: Vec<User>,

    /// Largest REST request body in bytes. [default: 67108864]
    #[arg(long, env = "VALORI_BODY_BYTES_MAX", value_name = "BYTES")]
    pub body_bytes_max: Option<usize>,

    /// Threads that build the HNSW index (the graph is the same for any
    /// number). [default: all cores]
    #[arg(long, env = "VALORI_INDEX_THREADS", value_name = "N")]
    pub index_threads: Option<usize>,

    /// Longest a SQL statement or DSL query may run, in seconds, on every
    /// front end; a Postgres session's `statement_timeout` can only
    /// shorten it. [default: 60]
    #[arg(long, env = "VALORI_STATEMENT_TIMEOUT", value_name = "SECONDS")]
    pub statement_timeout: Option<u64>,

    /// Memory that all running queries together may reserve for
    /// aggregates, sorts and joins; a query that needs more fails instead
    /// of exhausting the server. [default: 1073741824]
    #[arg(long, env = "VALORI_QUERY_MEMORY_BYTES", value_name = "BYTES")]
    pub query_memory_bytes: Option<usize>,

    /// Log filter, e.g. `info` or `valori_wire=debug,info`. [default: info]
    #[arg(long, env = "VALORI_LOG", value_name = "FILTER")]
    pub log: Option<String>,
}

/// The settings file: every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    rest_addr: Option<SocketAddr>,
    pg_addr: Option<SocketAddr>,
    flight_addr: Option<SocketAddr>,
    #[serde(default)]
    users: Vec<User>,
    body_bytes_max: Option<usize>,
    index_threads: Option<usize>,
    statement_timeout: Option<u64>,
    query_memory_bytes: Option<usize>,
    log: Option<String>,
}

/// The resolved settings of a server.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub data_dir: PathBuf,
    pub rest_addr: SocketAddr,
    pub pg_addr: SocketAddr,
    pub flight_addr: SocketAddr,
    pub users: Vec<User>,
    pub body_bytes_max: usize,
    pub index_threads: Option<usize>,
    /// The statement timeout and query memory pool of every front end.
    pub query_limits: valori_query::QueryLimits,
    pub log: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error(
        "refusing to listen on {addr} without credentials: anyone who can reach it could read and \
         write every collection. Configure users (--user NAME:KEY:ROLE or VALORI_USERS), or \
         listen on a loopback address"
    )]
    OpenBeyondLoopback { addr: SocketAddr },
    #[error("{0}")]
    Invalid(String),
}

impl ServeArgs {
    /// Flags and environment over the file over the defaults.
    pub fn resolve(self) -> Result<ServeConfig, ConfigError> {
        let file = match &self.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let users = if self.users.is_empty() {
            file.users
        } else {
            self.users
        };
        let config = ServeConfig {
            data_dir: self
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            rest_addr: self
                .rest_addr
                .or(file.rest_addr)
                .unwrap_or_else(|| default_addr(DEFAULT_REST_ADDR)),
            pg_addr: self
                .pg_addr
                .or(file.pg_addr)
                .unwrap_or_else(|| default_addr(DEFAULT_PG_ADDR)),
            flight_addr: self
                .flight_addr
                .or(file.flight_addr)
                .unwrap_or_else(|| default_addr(DEFAULT_FLIGHT_ADDR)),
            users,
            body_bytes_max: self
                .body_bytes_max
                .or(file.body_bytes_max)
                .unwrap_or(DEFAULT_BODY_BYTES_MAX),
            index_threads: self.index_threads.or(file.index_threads),
            query_limits: {
                let defaults = valori_query::QueryLimits::default();
                valori_query::QueryLimits {
                    statement_timeout: self
                        .statement_timeout
                        .or(file.statement_timeout)
                        .map_or(defaults.statement_timeout, Duration::from_secs),
                    memory_bytes: self
                        .query_memory_bytes
                        .or(file.query_memory_bytes)
                        .unwrap_or(defaults.memory_bytes),
                }
            },
            log: self.log.or(file.log).unwrap_or_else(|| "info".into()),
        };
        config.check()?;
        Ok(config)
    }
}

impl ServeConfig {
    fn check(&self) -> Result<(), ConfigError> {
        if self.body_bytes_max < 1024 {
            return Err(ConfigError::Invalid(format!(
                "body_bytes_max = {} is below 1024 bytes",
                self.body_bytes_max
            )));
        }
        if self.query_limits.statement_timeout.is_zero() {
            return Err(ConfigError::Invalid(
                "statement_timeout must be at least 1 second".into(),
            ));
        }
        if self.query_limits.memory_bytes < 1 << 20 {
            return Err(ConfigError::Invalid(format!(
                "query_memory_bytes = {} is below 1 MiB",
                self.query_limits.memory_bytes
            )));
        }
        if self.index_threads == Some(0) {
            return Err(ConfigError::Invalid(
                "index_threads must be at least 1".into(),
            ));
        }
        if self.users.is_empty() {
            for addr in [self.rest_addr, self.pg_addr, self.flight_addr] {
                if !addr.ip().is_loopback() {
                    return Err(ConfigError::OpenBeyondLoopback { addr });
                }
            }
        }
        check_users(&self.users)
    }
}

/// Refuses a user name or key given twice. Two users with one key would
/// make a REST bearer token mean either role; two entries for one name
/// would make the Postgres login pick one of them silently.
fn check_users(users: &[User]) -> Result<(), ConfigError> {
    for (i, user) in users.iter().enumerate() {
        for earlier in &users[..i] {
            if earlier.name == user.name {
                return Err(ConfigError::Invalid(format!(
                    "user {:?} is configured twice",
                    user.name
                )));
            }
            if earlier.key == user.key {
                return Err(ConfigError::Invalid(format!(
                    "users {:?} and {:?} have the same key; each user needs its own",
                    earlier.name, user.name
                )));
            }
        }
    }
    Ok(())
}

fn default_addr(text: &str) -> SocketAddr {
    text.parse()
        .expect("invariant: the default addresses are valid socket addresses")
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    #[test]
    fn defaults_are_loopback_and_open() {
        let config = ServeArgs::default().resolve().expect("defaults");
        assert_eq!(config.rest_addr.to_string(), "127.0.0.1:3000");
        assert_eq!(config.pg_addr.to_string(), "127.0.0.1:5433");
        assert_eq!(config.data_dir, PathBuf::from("valori_data"));
        assert!(config.users.is_empty());
    }

    #[test]
    fn open_access_beyond_loopback_is_refused() {
        let args = ServeArgs {
            rest_addr: Some(default_addr("0.0.0.0:3000")),
            ..ServeArgs::default()
        };
        let err = args.resolve().expect_err("open on 0.0.0.0");
        assert!(err.to_string().contains("without credentials"), "{err}");
        let args = ServeArgs {
            rest_addr: Some(default_addr("0.0.0.0:3000")),
            users: vec!["ops:k3y:write".parse().expect("user")],
            ..ServeArgs::default()
        };
        assert!(args.resolve().is_ok());
    }

    #[test]
    fn flags_win_over_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("valori.toml");
        std::fs::write(
            &path,
            "data_dir = \"/srv/valori\"\nrest_addr = \"127.0.0.1:4000\"\n\
             [[users]]\nname = \"ro\"\nkey = \"k\"\nrole = \"read\"\n",
        )
        .expect("write");
        let args = ServeArgs {
            config: Some(path.clone()),
            rest_addr: Some(default_addr("127.0.0.1:4001")),
            ..ServeArgs::default()
        };
        let config = args.resolve().expect("resolve");
        assert_eq!(config.data_dir, PathBuf::from("/srv/valori"));
        assert_eq!(config.rest_addr.port(), 4001);
        assert_eq!(config.users.len(), 1);
        assert_eq!(config.users[0].role, Role::Read);

        std::fs::write(&path, "rest_adr = \"127.0.0.1:1\"\n").expect("write");
        let err = ServeArgs {
            config: Some(path),
            ..ServeArgs::default()
        }
        .resolve()
        .expect_err("unknown key");
        assert!(err.to_string().contains("rest_adr"), "{err}");
    }

    /// Proves users from the settings file are checked as strictly as
    /// users from flags: an empty key or name is refused at load (an empty
    /// key would accept an empty bearer token), and so are a key or a name
    /// given to two users, from the file or from flags.
    #[test]
    fn file_users_are_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("valori.toml");
        let load = |text: &str| {
            std::fs::write(&path, text).expect("write");
            ServeArgs {
                config: Some(path.clone()),
                ..ServeArgs::default()
            }
            .resolve()
        };
        let user = |name: &str, key: &str| {
            format!("[[users]]\nname = \"{name}\"\nkey = \"{key}\"\nrole = \"read\"\n")
        };
        let err = load(&user("ro", "")).expect_err("empty key");
        assert!(err.to_string().contains("empty key"), "{err}");
        let err = load(&user("", "k")).expect_err("empty name");
        assert!(err.to_string().contains("empty name"), "{err}");
        let err =
            load(&format!("{}{}", user("a", "same"), user("b", "same"))).expect_err("shared key");
        assert!(err.to_string().contains("same key"), "{err}");
        assert!(
            !err.to_string().contains("\"same\""),
            "the key is not printed: {err}"
        );
        let err = load(&format!("{}{}", user("a", "k1"), user("a", "k2"))).expect_err("twice");
        assert!(err.to_string().contains("configured twice"), "{err}");
        let err = ServeArgs {
            users: vec![
                "a:k:read".parse().expect("user"),
                "b:k:write".parse().expect("user"),
            ],
            ..ServeArgs::default()
        }
        .resolve()
        .expect_err("shared key from flags");
        assert!(err.to_string().contains("same key"), "{err}");
        let config = load(&format!("{}{}", user("a", "k1"), user("b", "k2"))).expect("two users");
        assert_eq!(config.users.len(), 2);
    }
}
