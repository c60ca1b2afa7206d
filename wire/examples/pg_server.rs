//! The Postgres front end on a data directory, for client tests until
//! `valori serve` starts it:
//!
//! ```text
//! cargo run -p valori-wire --example pg_server -- DATA_DIR ADDR [NAME:KEY:ROLE ...]
//! ```
//!
//! `ADDR` may use port 0; the bound address is printed as
//! `listening on 127.0.0.1:PORT` once connections are accepted. Users
//! given as arguments turn on SCRAM authentication. Stops on Ctrl-C or
//! SIGTERM.

use std::sync::Arc;

use anyhow::Context;
use valori_engine::Engine;
use valori_query::QueryEngine;
use valori_wire::auth::{Auth, User};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(addr)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: pg_server DATA_DIR ADDR [NAME:KEY:ROLE ...]");
    };
    let users = args
        .map(|u| u.parse::<User>().map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let engine = Arc::new(Engine::open(&dir).with_context(|| format!("opening {dir}"))?);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    println!("listening on {}", listener.local_addr()?);
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("invariant: a SIGTERM handler can be installed at startup");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    valori_wire::pg::serve(
        listener,
        QueryEngine::new(engine),
        Arc::new(Auth::new(users)),
        shutdown,
    )
    .await?;
    Ok(())
}
