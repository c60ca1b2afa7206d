//! Placeholder of the Postgres front end: holds the listener until
//! shutdown.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use valori_query::QueryEngine;

use crate::auth::Auth;

pub async fn serve(
    listener: TcpListener,
    _query: QueryEngine,
    _auth: Arc<Auth>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    shutdown.await;
    drop(listener);
    Ok(())
}
