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

    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// Settings of a node of a cluster (docs/replication.md). Without
/// `--cluster-node-id` (or any other of them) the server runs alone, as
/// ever.
#[derive(Args, Debug, Default)]
pub struct ClusterArgs {
    /// This node's id in its cluster (a positive integer, unique in it).
    #[arg(long, env = "VALORI_CLUSTER_NODE_ID", value_name = "N")]
    pub cluster_node_id: Option<u64>,

    /// Address other nodes reach this one on (Raft traffic).
    /// [default: 127.0.0.1:7000]
    #[arg(long, env = "VALORI_CLUSTER_ADDR", value_name = "HOST:PORT")]
    pub cluster_addr: Option<SocketAddr>,

    /// The shared cluster key; cluster connections without it are refused.
    #[arg(
        long,
        env = "VALORI_CLUSTER_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub cluster_key: Option<String>,

    /// Start a new cluster with this node as its first voter (first start
    /// only; a restarted node finds its cluster on disk).
    #[arg(long, env = "VALORI_CLUSTER_BOOTSTRAP")]
    pub cluster_bootstrap: bool,

    /// Join the cluster through the node at this cluster address (first
    /// start only): it adds this node as a learner, then as a voter.
    #[arg(
        long,
        env = "VALORI_CLUSTER_JOIN",
        value_name = "HOST:PORT",
        conflicts_with = "cluster_bootstrap"
    )]
    pub cluster_join: Option<String>,

    /// Election timeout in milliseconds; heartbeats are a third of it.
    /// [default: 1000]
    #[arg(long, env = "VALORI_CLUSTER_ELECTION_TIMEOUT_MS", value_name = "MS")]
    pub cluster_election_timeout_ms: Option<u64>,

    /// With --cluster-join: join as a learner, a non-voting replica that
    /// serves reads until promoted (`valori cluster promote ID`).
    #[arg(long, env = "VALORI_CLUSTER_LEARNER", requires = "cluster_join")]
    pub cluster_learner: bool,

    /// Snapshot every this many Raft entries and retire the Raft log
    /// behind it (a node further behind catches up from the snapshot).
    /// [default: only when asked]
    #[arg(long, env = "VALORI_CLUSTER_SNAPSHOT_EVERY", value_name = "ENTRIES")]
    pub cluster_snapshot_every: Option<u64>,

    /// Raft entries kept after a snapshot covers them: a node up to this
    /// far behind catches up from the log, one further behind receives
    /// the snapshot. [default: 1000]
    #[arg(
        long,
        env = "VALORI_CLUSTER_LOG_KEPT_AFTER_SNAPSHOT",
        value_name = "ENTRIES"
    )]
    pub cluster_log_kept_after_snapshot: Option<u64>,

    /// This node's certificate (PEM) for mutual TLS between nodes; with
    /// --cluster-tls-key and --cluster-tls-ca.
    #[arg(long, env = "VALORI_CLUSTER_TLS_CERT", value_name = "PATH")]
    pub cluster_tls_cert: Option<PathBuf>,

    /// This node's private key (PEM) for mutual TLS between nodes.
    #[arg(long, env = "VALORI_CLUSTER_TLS_KEY", value_name = "PATH")]
    pub cluster_tls_key: Option<PathBuf>,

    /// The certificate authority (PEM) that signs every node's
    /// certificate; connections from nodes without one are refused.
    #[arg(long, env = "VALORI_CLUSTER_TLS_CA", value_name = "PATH")]
    pub cluster_tls_ca: Option<PathBuf>,
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
    cluster_node_id: Option<u64>,
    cluster_addr: Option<SocketAddr>,
    cluster_key: Option<String>,
    #[serde(default)]
    cluster_bootstrap: bool,
    cluster_join: Option<String>,
    cluster_election_timeout_ms: Option<u64>,
    #[serde(default)]
    cluster_learner: bool,
    cluster_tls_cert: Option<PathBuf>,
    cluster_tls_key: Option<PathBuf>,
    cluster_tls_ca: Option<PathBuf>,
    cluster_snapshot_every: Option<u64>,
    cluster_log_kept_after_snapshot: Option<u64>,
}

/// Default cluster address of a node.
pub const DEFAULT_CLUSTER_ADDR: &str = "127.0.0.1:7000";

/// The resolved settings of a node of a cluster.
#[derive(Clone, Debug)]
pub struct ClusterSettings {
    pub node_id: u64,
    pub addr: SocketAddr,
    pub key: String,
    pub tls: Option<valori_cluster::ClusterTls>,
    pub bootstrap: bool,
    pub join: Option<String>,
    pub learner: bool,
    pub election_timeout_ms: u64,
    pub snapshot_every: Option<u64>,
    pub log_kept_after_snapshot: u64,
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
    /// Set when the server is a node of a cluster.
    pub cluster: Option<ClusterSettings>,
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
        let cluster = resolve_cluster(self.cluster, &file)?;
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
            cluster,
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

/// The cluster settings from flags and environment over the file; `None`
/// when none is given anywhere.
fn resolve_cluster(
    args: ClusterArgs,
    file: &FileConfig,
) -> Result<Option<ClusterSettings>, ConfigError> {
    let node_id = args.cluster_node_id.or(file.cluster_node_id);
    let addr = args.cluster_addr.or(file.cluster_addr);
    let key = args.cluster_key.or_else(|| file.cluster_key.clone());
    let bootstrap = args.cluster_bootstrap || file.cluster_bootstrap;
    let join = args.cluster_join.or_else(|| file.cluster_join.clone());
    let timeout = args
        .cluster_election_timeout_ms
        .or(file.cluster_election_timeout_ms);
    let learner = args.cluster_learner || file.cluster_learner;
    let snapshot_every = args.cluster_snapshot_every.or(file.cluster_snapshot_every);
    let log_kept_after_snapshot = args
        .cluster_log_kept_after_snapshot
        .or(file.cluster_log_kept_after_snapshot)
        .unwrap_or(valori_cluster::DEFAULT_LOG_KEPT_AFTER_SNAPSHOT);
    let any = node_id.is_some()
        || addr.is_some()
        || key.is_some()
        || bootstrap
        || join.is_some()
        || timeout.is_some();
    if !any {
        return Ok(None);
    }
    let node_id = node_id.ok_or_else(|| {
        ConfigError::Invalid(
            "cluster settings need --cluster-node-id (VALORI_CLUSTER_NODE_ID)".into(),
        )
    })?;
    let key = key.filter(|k| !k.is_empty()).ok_or_else(|| {
        ConfigError::Invalid(
            "a cluster node needs the shared --cluster-key (VALORI_CLUSTER_KEY): cluster traffic is refused without it".into(),
        )
    })?;
    if learner && join.is_none() {
        return Err(ConfigError::Invalid(
            "cluster_learner joins as a learner: it needs cluster_join".into(),
        ));
    }
    if snapshot_every == Some(0) {
        return Err(ConfigError::Invalid(
            "cluster_snapshot_every must be at least 1".into(),
        ));
    }
    if bootstrap && join.is_some() {
        return Err(ConfigError::Invalid(
            "--cluster-bootstrap starts a new cluster and --cluster-join joins one: give one of them".into(),
        ));
    }
    let election_timeout_ms = timeout.unwrap_or(valori_cluster::DEFAULT_ELECTION_TIMEOUT_MS);
    if election_timeout_ms < 50 {
        return Err(ConfigError::Invalid(format!(
            "cluster_election_timeout_ms = {election_timeout_ms} is below 50 ms"
        )));
    }
    let tls = match (
        args.cluster_tls_cert
            .or_else(|| file.cluster_tls_cert.clone()),
        args.cluster_tls_key
            .or_else(|| file.cluster_tls_key.clone()),
        args.cluster_tls_ca.or_else(|| file.cluster_tls_ca.clone()),
    ) {
        (Some(cert), Some(key), Some(ca)) => Some(valori_cluster::ClusterTls { cert, key, ca }),
        (None, None, None) => None,
        _ => {
            return Err(ConfigError::Invalid(
                "mutual TLS between nodes needs all of --cluster-tls-cert, --cluster-tls-key and --cluster-tls-ca".into(),
            ));
        }
    };
    Ok(Some(ClusterSettings {
        node_id,
        addr: addr.unwrap_or_else(|| default_addr(DEFAULT_CLUSTER_ADDR)),
        key,
        tls,
        bootstrap,
        join,
        learner,
        election_timeout_ms,
        snapshot_every,
        log_kept_after_snapshot,
    }))
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

    /// Proves a server with no cluster setting is standalone, that a
    /// cluster node needs an id and a key (flag, environment or file), that
    /// bootstrap and join exclude each other, and that the file's cluster
    /// keys are read under flags.
    #[test]
    fn cluster_settings_resolve_or_are_refused() {
        assert!(
            ServeArgs::default()
                .resolve()
                .expect("defaults")
                .cluster
                .is_none()
        );
        let cluster = |c: ClusterArgs| ServeArgs {
            cluster: c,
            ..ServeArgs::default()
        };
        let err = cluster(ClusterArgs {
            cluster_bootstrap: true,
            ..ClusterArgs::default()
        })
        .resolve()
        .expect_err("no node id");
        assert!(err.to_string().contains("--cluster-node-id"), "{err}");
        let err = cluster(ClusterArgs {
            cluster_node_id: Some(1),
            ..ClusterArgs::default()
        })
        .resolve()
        .expect_err("no key");
        assert!(err.to_string().contains("--cluster-key"), "{err}");
        let err = cluster(ClusterArgs {
            cluster_node_id: Some(1),
            cluster_key: Some("k".into()),
            cluster_bootstrap: true,
            cluster_join: Some("127.0.0.1:7000".into()),
            ..ClusterArgs::default()
        })
        .resolve()
        .expect_err("both");
        assert!(err.to_string().contains("give one of them"), "{err}");

        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("valori.toml");
        std::fs::write(
            &path,
            "cluster_node_id = 2\ncluster_key = \"file key\"\ncluster_join = \"127.0.0.1:7001\"\ncluster_log_kept_after_snapshot = 16\n",
        )
        .expect("write");
        let config = ServeArgs {
            config: Some(path),
            cluster: ClusterArgs {
                cluster_node_id: Some(3),
                ..ClusterArgs::default()
            },
            ..ServeArgs::default()
        }
        .resolve()
        .expect("resolve");
        let c = config.cluster.expect("a cluster node");
        assert_eq!(c.node_id, 3, "the flag wins over the file");
        assert_eq!(c.key, "file key");
        assert_eq!(c.join.as_deref(), Some("127.0.0.1:7001"));
        assert_eq!(c.addr.to_string(), DEFAULT_CLUSTER_ADDR);
        assert!(!c.bootstrap);
        assert_eq!(c.log_kept_after_snapshot, 16);
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
