//! `valori serve`: one process serving REST, the Postgres protocol and
//! Arrow Flight over one engine, until SIGINT or SIGTERM.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use valori_engine::{Engine, EngineOptions};
use valori_query::QueryEngine;

use crate::auth::Auth;
use crate::config::ServeConfig;
use crate::metrics::Metrics;
use crate::rest;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot open the data directory {dir}: {source}")]
    Open {
        dir: String,
        source: valori_engine::EngineError,
    },
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        addr: std::net::SocketAddr,
        what: &'static str,
        source: std::io::Error,
    },
    #[error("cannot start the cluster node: {0}")]
    Cluster(#[from] valori_cluster::ClusterError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A started server: the bound addresses and a way to stop it.
#[derive(Debug)]
pub struct Running {
    pub rest_addr: std::net::SocketAddr,
    pub pg_addr: std::net::SocketAddr,
    pub flight_addr: std::net::SocketAddr,
    pub engine: Arc<Engine>,
    /// The node of the cluster, when the server is one.
    pub cluster: Option<Arc<valori_cluster::Node>>,
}

/// Opens the engine and binds both listeners; then serves until `shutdown`
/// resolves, stops accepting, lets in-flight requests finish, writes a
/// checkpoint and closes the engine. `on_ready` is called once everything
/// listens.
pub async fn serve(
    config: ServeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_ready: impl FnOnce(&Running),
) -> Result<(), ServeError> {
    let dir = config.data_dir.clone();
    let options = EngineOptions {
        index_threads: config
            .index_threads
            .unwrap_or_else(|| EngineOptions::default().index_threads),
        ..EngineOptions::default()
    };
    tracing::info!(dir = %dir.display(), "opening data directory");
    let engine = tokio::task::spawn_blocking(move || {
        Engine::open_with(Arc::new(valori_engine::storage::FsStorage), &dir, options)
    })
    .await
    .map_err(std::io::Error::other)?
    .map_err(|source| ServeError::Open {
        dir: config.data_dir.display().to_string(),
        source,
    })?;
    let engine = Arc::new(engine);
    let report = engine.recovery_report();
    let proof = engine.proof().map_err(|source| ServeError::Open {
        dir: config.data_dir.display().to_string(),
        source,
    })?;
    tracing::info!(
        events = proof.log_size,
        state_hash = %proof.hashes.state,
        log_root = %proof.log_root,
        recovery = ?report,
        "recovered"
    );

    let bind = |addr, what| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { addr, what, source })
    };
    let rest_listener = bind(config.rest_addr, "REST").await?;
    let pg_listener = bind(config.pg_addr, "Postgres").await?;
    let flight_listener = bind(config.flight_addr, "Flight").await?;
    let rest_addr = rest_listener.local_addr()?;
    let pg_addr = pg_listener.local_addr()?;
    // A cluster node takes its place before any client can write: from
    // here on every write goes through the cluster.
    let cluster = match &config.cluster {
        Some(settings) => {
            Some(start_cluster_node(&engine, settings, &config, rest_addr, pg_addr).await?)
        }
        None => None,
    };
    let running = Running {
        rest_addr,
        pg_addr,
        flight_addr: flight_listener.local_addr()?,
        engine: Arc::clone(&engine),
        cluster: cluster.clone(),
    };

    let auth = Arc::new(Auth::new(config.users.clone()));
    if auth.is_open() {
        tracing::warn!(
            "no users configured: the server is open to anyone who can reach {} and {} \
             (loopback only); configure --user NAME:KEY:ROLE to require credentials",
            running.rest_addr,
            running.pg_addr
        );
    } else {
        tracing::info!(users = auth.users().len(), "authentication required");
    }
    let query = QueryEngine::with_limits(Arc::clone(&engine), config.query_limits);
    let flight_state = Arc::new(crate::flight::FlightState {
        engine: Arc::clone(&engine),
        query: query.clone(),
        auth: Arc::clone(&auth),
        message_bytes_max: config.body_bytes_max,
    });
    let state = Arc::new(rest::AppState {
        engine: Arc::clone(&engine),
        query: query.clone(),
        auth: Arc::clone(&auth),
        metrics: Arc::new(Metrics::default()),
        cluster: cluster.clone(),
        flight_addr: Some(running.flight_addr),
    });
    let app = rest::router(state, config.body_bytes_max);

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let rest_task = tokio::spawn(
        axum::serve(rest_listener, app)
            .with_graceful_shutdown(stopped(stop_rx.clone()))
            .into_future(),
    );
    let pg_task = tokio::spawn(crate::pg::serve(
        pg_listener,
        query,
        Arc::clone(&auth),
        stopped(stop_rx.clone()),
    ));
    let flight_task = tokio::spawn(crate::flight::serve(
        flight_listener,
        flight_state,
        stopped(stop_rx.clone()),
    ));
    tracing::info!(
        rest = %running.rest_addr,
        postgres = %running.pg_addr,
        flight = %running.flight_addr,
        "listening"
    );
    on_ready(&running);
    drop(running);

    shutdown.await;
    tracing::info!("shutting down: no new connections; finishing in-flight requests");
    let _ = stop_tx.send(true);
    match rest_task.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!("REST server: {e}"),
        Err(e) => tracing::error!("REST server task: {e}"),
    }
    match pg_task.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!("Postgres server: {e}"),
        Err(e) => tracing::error!("Postgres server task: {e}"),
    }
    match flight_task.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!("Flight server: {e}"),
        Err(e) => tracing::error!("Flight server task: {e}"),
    }
    if let Some(node) = &cluster {
        node.shutdown().await;
    }
    drop(cluster);
    let closing = Arc::clone(&engine);
    let result = tokio::task::spawn_blocking(move || closing.checkpoint())
        .await
        .map_err(std::io::Error::other)?;
    match result {
        Ok(()) => {
            let proof = engine.proof().ok();
            tracing::info!(
                events = proof.as_ref().map(|p| p.log_size),
                state_hash = proof.as_ref().map(|p| p.hashes.state.to_string()),
                "checkpoint written; every acknowledged write is durable"
            );
        }
        Err(e) => {
            tracing::error!("checkpoint at shutdown failed (the log stays authoritative): {e}")
        }
    }
    // The last reference closes the engine and joins its index builder.
    drop(engine);
    Ok(())
}

async fn start_cluster_node(
    engine: &Arc<Engine>,
    settings: &crate::config::ClusterSettings,
    config: &ServeConfig,
    rest_addr: std::net::SocketAddr,
    pg_addr: std::net::SocketAddr,
) -> Result<Arc<valori_cluster::Node>, ServeError> {
    let mut c = valori_cluster::ClusterConfig::new(
        settings.node_id,
        settings.addr,
        rest_addr.to_string(),
        config.data_dir.join("cluster"),
        settings.key.clone(),
    );
    c.pg_addr = pg_addr.to_string();
    c.tls = settings.tls.clone();
    c.bootstrap = settings.bootstrap;
    c.join = settings.join.clone();
    c.learner = settings.learner;
    c.snapshot_every_entries = settings.snapshot_every;
    c.log_kept_after_snapshot = settings.log_kept_after_snapshot;
    // No fault unless this is a test build asked for one (the cluster
    // crate's `test-apply-fault` feature; never in a release build).
    c.fault = valori_cluster::ApplyFault::from_test_env();
    c.election_timeout = std::time::Duration::from_millis(settings.election_timeout_ms);
    let node = valori_cluster::Node::start(Arc::clone(engine), c).await?;
    tracing::info!(
        node = node.id,
        cluster_addr = %node.member.cluster_addr,
        bootstrap = settings.bootstrap,
        join = ?settings.join,
        "cluster node started"
    );
    Ok(node)
}

/// Resolves at the first SIGINT or SIGTERM. The handlers are installed
/// when this is called, not when the future is first polled: a signal
/// that arrives once the server has said it is listening (a script
/// stopping it at once) finds them and shuts the server down gracefully
/// rather than killing it. Call it inside the runtime (for example under
/// `Runtime::enter`).
#[cfg(unix)]
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let interrupt = signal(SignalKind::interrupt());
    let term = signal(SignalKind::terminate());
    async move {
        match (interrupt, term) {
            (Ok(mut interrupt), Ok(mut term)) => tokio::select! {
                _ = interrupt.recv() => tracing::info!("SIGINT received"),
                _ = term.recv() => tracing::info!("SIGTERM received"),
            },
            (interrupt, term) => {
                for e in [interrupt.err(), term.err()].into_iter().flatten() {
                    tracing::warn!("cannot listen for a shutdown signal: {e}");
                }
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

/// Resolves at the first Ctrl-C.
#[cfg(not(unix))]
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
