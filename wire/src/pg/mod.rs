//! The Postgres wire protocol front end (pgwire).
//!
//! [`serve`] accepts connections on a listener and answers each with the
//! simple and extended query protocols, `COPY … FROM STDIN`, cancel
//! requests and SCRAM-SHA-256 authentication:
//!
//! - [`handler`] — statements: classification, planning at Parse time
//!   (parameter types from DataFusion's placeholder inference, the result
//!   schema for Describe), execution through
//!   [`valori_query::QueryEngine::execute_with`] with the session's
//!   [`valori_query::settings::SearchSettings`], writes through
//!   [`valori_query::write`], `SET`/`SHOW`, transactions, timeouts;
//! - [`types`] — the Postgres types of Arrow values, pgvector's `vector`
//!   type, text and binary encodings, parameters as SQL literals;
//! - [`error`] — SQLSTATE codes.
//!
//! The dialect, the types and their OIDs, transactions and limits are
//! documented in `docs/sql.md`.

pub mod copy;
pub mod error;
pub mod handler;
pub mod types;

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::Sink;
use pgwire::api::auth::noop::NoopStartupHandler;
use pgwire::api::auth::sasl::SASLAuthStartupHandler;
use pgwire::api::auth::sasl::scram::{ScramAuth, gen_salted_password};
use pgwire::api::auth::{
    AuthSource, DefaultServerParameterProvider, LoginInfo, Password, StartupHandler,
};
use pgwire::api::cancel::DefaultCancelHandler;
use pgwire::api::{ClientInfo, ConnectionManager, PgWireServerHandlers};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use tokio::net::TcpListener;

use crate::auth::Auth;
use handler::Handler;

/// How long connections may take to send their last answers on shutdown.
const CLOSE_GRACE: Duration = Duration::from_millis(250);

/// SCRAM iterations for the salted passwords (Postgres's default).
const SCRAM_ITERATIONS: usize = 4096;

/// Serves the Postgres protocol on `listener` until `shutdown` completes.
///
/// With `auth.is_open()` any user name is accepted without a password and
/// may write; otherwise clients log in with SCRAM-SHA-256, using a
/// configured user's name and key as password, and users with the `read`
/// role get SQLSTATE 25006 for any write.
///
/// When `shutdown` completes the listener is closed at once; statements
/// already running finish and are answered, then every connection is
/// closed and `serve` returns.
pub async fn serve(
    listener: TcpListener,
    query: valori_query::QueryEngine,
    auth: Arc<Auth>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let manager = Arc::new(ConnectionManager::new());
    let gate = Arc::new(tokio::sync::RwLock::new(()));
    let factory = Arc::new(Factory {
        handler: Arc::new(Handler::new(query, Arc::clone(&auth), Arc::clone(&gate))),
        startup: Arc::new(Startup::new(&auth, Arc::clone(&manager))),
        cancel: Arc::new(DefaultCancelHandler::new(manager)),
    });
    let mut connections = tokio::task::JoinSet::new();
    let shutdown = shutdown;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    // Small replies (one row, ReadyForQuery) must not wait
                    // for Nagle's timer.
                    let _ = socket.set_nodelay(true);
                    let factory = Arc::clone(&factory);
                    connections.spawn(async move {
                        if let Err(e) = pgwire::tokio::process_socket(socket, None, factory).await {
                            tracing::debug!(%peer, "postgres connection ended: {e}");
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: keep serving
                    // the connections we have, try again shortly.
                    tracing::warn!("postgres accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    // Statements hold the gate for reading while they run: taking it for
    // writing waits for every running statement and keeps new ones from
    // starting. Then the connections are closed.
    let _closing = gate.write().await;
    // Answers of the last statements are written after they release the
    // gate: give them a moment to reach their sockets, then close.
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    connections.abort_all();
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// The handlers of every connection.
struct Factory {
    handler: Arc<Handler>,
    startup: Arc<Startup>,
    cancel: Arc<DefaultCancelHandler>,
}

impl PgWireServerHandlers for Factory {
    fn simple_query_handler(&self) -> Arc<impl pgwire::api::query::SimpleQueryHandler> {
        Arc::clone(&self.handler)
    }

    fn extended_query_handler(&self) -> Arc<impl pgwire::api::query::ExtendedQueryHandler> {
        Arc::clone(&self.handler)
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        Arc::clone(&self.startup)
    }

    fn copy_handler(&self) -> Arc<impl pgwire::api::copy::CopyHandler> {
        Arc::clone(&self.handler)
    }

    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        Arc::clone(&self.cancel)
    }
}

/// Login: trust (open server) or SCRAM-SHA-256.
enum Startup {
    Open(OpenStartup),
    Scram(SASLAuthStartupHandler<DefaultServerParameterProvider>),
}

impl Startup {
    fn new(auth: &Arc<Auth>, manager: Arc<ConnectionManager>) -> Startup {
        if auth.is_open() {
            return Startup::Open(OpenStartup { manager });
        }
        let mut scram = ScramAuth::new(Arc::new(Passwords::new(auth)));
        scram.set_iterations(SCRAM_ITERATIONS);
        Startup::Scram(
            SASLAuthStartupHandler::new(Arc::new(DefaultServerParameterProvider::default()))
                .with_scram(scram)
                .with_connection_manager(manager),
        )
    }
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match self {
            Startup::Open(open) => open.on_startup(client, message).await,
            Startup::Scram(scram) => scram.on_startup(client, message).await,
        }
    }
}

/// Trust authentication, registering connections for cancel requests.
struct OpenStartup {
    manager: Arc<ConnectionManager>,
}

#[async_trait]
impl NoopStartupHandler for OpenStartup {
    fn connection_manager(&self) -> Option<Arc<ConnectionManager>> {
        Some(Arc::clone(&self.manager))
    }
}

/// The users' keys as SCRAM salted passwords, derived once at start with a
/// salt per user; and the stand-in credential of every unknown name.
#[derive(Debug)]
struct Passwords {
    users: Vec<(String, Vec<u8>, Vec<u8>)>,
    /// Keys of the stand-in credentials, random per process.
    unknown: [std::collections::hash_map::RandomState; 6],
}

/// 8 bytes per key that depend on `name` and on the process's random `keys`
/// (RandomState is seeded from the operating system's randomness), and on
/// nothing else.
fn keyed_bytes(keys: &[std::collections::hash_map::RandomState], name: &str) -> Vec<u8> {
    use std::hash::{BuildHasher, Hasher};
    let mut out = Vec::with_capacity(8 * keys.len());
    for key in keys {
        let mut h = key.build_hasher();
        h.write(name.as_bytes());
        out.extend_from_slice(&h.finish().to_le_bytes());
    }
    out
}

impl Passwords {
    fn new(auth: &Auth) -> Passwords {
        let users = auth
            .users()
            .iter()
            .map(|user| {
                let keys = [(); 2].map(|()| std::collections::hash_map::RandomState::new());
                let salt = keyed_bytes(&keys, &user.name);
                let salted = gen_salted_password(&user.key, &salt, SCRAM_ITERATIONS);
                (user.name.clone(), salt, salted)
            })
            .collect();
        Passwords {
            users,
            unknown: [(); 6].map(|()| std::collections::hash_map::RandomState::new()),
        }
    }

    /// The credential SCRAM runs against for `name`. An unknown name gets
    /// a stand-in: a salt as long as a user's and stable per name (as a
    /// user's is), and a salted password no key derives, so its exchange
    /// runs to the end and fails exactly as a wrong key does — same
    /// messages, same error — and does not tell which names exist. The
    /// stand-in is a lookup, not a key derivation, like a user's.
    fn credential(&self, name: &str) -> (Vec<u8>, Vec<u8>) {
        match self.users.iter().find(|(n, ..)| n == name) {
            Some((_, salt, salted)) => (salt.clone(), salted.clone()),
            None => {
                // 16 bytes of salt and 32 of salted password (SHA-256's
                // output length), as a user's.
                let mut bytes = keyed_bytes(&self.unknown, name);
                let salted = bytes.split_off(16);
                (bytes, salted)
            }
        }
    }
}

#[async_trait]
impl AuthSource for Passwords {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        let (salt, salted) = self.credential(login.user().unwrap_or_default());
        Ok(Password::new(Some(salt), salted))
    }
}
