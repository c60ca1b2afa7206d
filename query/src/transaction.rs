//! Transaction blocks: `BEGIN` … `COMMIT` / `ROLLBACK`, with savepoints.
//!
//! A session in a block keeps a [`Transaction`]. Until its first write
//! the block reads the shared state as any statement does. The first
//! write takes a private copy of the state ([`valori_engine::Fork`]);
//! from then on every statement of the block — reads and writes — runs on
//! that copy, planned and checked as anywhere else, so the block sees its
//! own writes and nobody else does. `COMMIT` submits the writes recorded
//! on the copy to the shared engine as one event, applied all or none
//! ([`valori_engine::Engine::commit_transaction`]); `ROLLBACK` drops the
//! copy. A block commits only if no other write was committed since its
//! first write (otherwise `COMMIT` fails with SQLSTATE 40001 and nothing
//! is written), so its reads and writes are those of one state and no
//! other write is lost under them; a block whose one write only adds
//! rows commits as that write alone would.
//!
//! An error inside a block aborts it: later statements are refused until
//! `ROLLBACK` (or `ROLLBACK TO SAVEPOINT`), and `COMMIT` ends it as a
//! rollback. `ROLLBACK TO SAVEPOINT s` undoes the writes made since `s`
//! by taking a new copy and writing again the events recorded before `s`.

use std::sync::Arc;

use datafusion::common::ScalarValue;
use valori_core::limits;
use valori_engine::Fork;

use crate::session::Session;
use crate::statement::{Access, Command, Kind, Outcome, Prepared};
use crate::{QueryEngine, QueryError};

/// Why a transaction or session command, or a statement in a block, was
/// refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransactionError {
    /// A statement of the block failed; only its end is taken now.
    #[error("current transaction is aborted, commands ignored until end of transaction block")]
    Aborted,
    /// `RELEASE` or `ROLLBACK TO` of a savepoint the block does not have.
    #[error("savepoint \"{0}\" does not exist")]
    NoSavepoint(String),
    /// `SAVEPOINT` outside a block.
    #[error("{0} can only be used in transaction blocks")]
    NotInBlock(&'static str),
    /// More savepoints than [`limits::SAVEPOINTS_MAX`].
    #[error("a transaction holds at most {max} savepoints", max = limits::SAVEPOINTS_MAX)]
    TooManySavepoints,
    /// A command that cannot run inside a transaction block.
    #[error("{0} cannot run inside a transaction block")]
    InBlock(&'static str),
    /// `DEALLOCATE` of a name the session has not prepared.
    #[error("prepared statement \"{0}\" does not exist")]
    NoPreparedStatement(String),
    /// `PREPARE` of a name the session has prepared.
    #[error("prepared statement \"{0}\" already exists")]
    PreparedStatementExists(String),
    /// More `PREPARE`d statements than a session keeps.
    #[error(
        "a session keeps at most {max} prepared statements; DEALLOCATE some",
        max = valori_core::limits::PLAN_CACHE_ENTRIES_MAX
    )]
    TooManyPreparedStatements,
    /// More writes than one transaction event holds.
    #[error(
        "a transaction holds at most {max} writes; commit it and continue in another",
        max = limits::TRANSACTION_EVENTS_MAX
    )]
    TooManyWrites,
}

/// A session's open transaction block.
#[derive(Clone, Debug, Default)]
pub struct Transaction {
    /// The block's copy of the state, from its first write on.
    fork: Option<Arc<Forked>>,
    /// Events in the shared log when the first copy was taken.
    base_log_size: u64,
    /// Savepoints in order: name and the writes made before it.
    savepoints: Vec<(String, usize)>,
    /// A statement of the block failed.
    failed: bool,
}

/// A copy of the state and the statement layer over it.
#[derive(Debug)]
struct Forked {
    fork: Fork,
    query: QueryEngine,
}

impl PartialEq for Transaction {
    fn eq(&self, other: &Transaction) -> bool {
        let same_fork = match (&self.fork, &other.fork) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        same_fork
            && self.base_log_size == other.base_log_size
            && self.savepoints == other.savepoints
            && self.failed == other.failed
    }
}

impl Eq for Transaction {}

impl Transaction {
    /// Whether a statement of the block failed.
    pub fn is_failed(&self) -> bool {
        self.failed
    }

    /// Marks the block failed (a statement of it failed outside the
    /// statement layer, for example while it was parsed).
    pub fn fail(&mut self) {
        self.failed = true;
    }

    /// Writes made in the block so far.
    fn writes(&self) -> usize {
        self.fork.as_ref().map_or(0, |f| f.fork.event_count())
    }
}

impl QueryEngine {
    /// Identifies the engine this statement layer runs on
    /// ([`Prepared`] records it).
    pub(crate) fn engine_id(&self) -> usize {
        Arc::as_ptr(&self.engine) as usize
    }

    /// Prepares `sql` (through the cache) where `session` runs it: on its
    /// transaction's copy of the state once the block has written, so
    /// that a statement may name a table the block created.
    pub async fn prepare_for(
        &self,
        session: &Session,
        sql: &str,
    ) -> Result<Arc<Prepared>, QueryError> {
        match session.transaction.as_ref().and_then(|t| t.fork.clone()) {
            Some(forked) => forked.query.prepare_cached(sql).await,
            None => self.prepare_cached(sql).await,
        }
    }

    /// Runs one prepared statement with its parameter values on
    /// `session`: the block's commands are answered here, a statement in
    /// a block that has written runs on its copy of the state, any other
    /// where it was prepared (see the [module documentation](self)).
    pub async fn run(
        &self,
        prepared: &Prepared,
        params: Vec<ScalarValue>,
        session: &mut Session,
        access: Access,
    ) -> Result<Outcome, QueryError> {
        if session.transaction.is_none() {
            return match prepared.kind() {
                Kind::Command(Command::Begin) => {
                    session.transaction = Some(Transaction::default());
                    session.advisory.begin_transaction();
                    Ok(Outcome::Begin)
                }
                Kind::Command(Command::Savepoint(_)) => {
                    Err(TransactionError::NotInBlock("SAVEPOINT").into())
                }
                Kind::Command(Command::Release(_)) => {
                    Err(TransactionError::NotInBlock("RELEASE SAVEPOINT").into())
                }
                Kind::Command(Command::RollbackTo(_)) => {
                    Err(TransactionError::NotInBlock("ROLLBACK TO SAVEPOINT").into())
                }
                _ if prepared.planned_on() != self.engine_id() => {
                    // Planned in a block that has ended: plan it here.
                    let here = self.prepare_cached(prepared.sql()).await?;
                    self.run_here(&here, params, session, access).await
                }
                _ => self.run_here(prepared, params, session, access).await,
            };
        }
        let result = Box::pin(self.run_in_block(prepared, params, session, access)).await;
        if session.transaction.is_none() {
            // COMMIT or ROLLBACK ended the block.
            session.advisory.end_transaction();
        }
        mark_failure(session, result)
    }

    async fn run_in_block(
        &self,
        prepared: &Prepared,
        params: Vec<ScalarValue>,
        session: &mut Session,
        access: Access,
    ) -> Result<Outcome, QueryError> {
        let transaction = session
            .transaction
            .as_mut()
            .expect("invariant: called in a block");
        match prepared.kind() {
            // Postgres warns and goes on; the block stays as it is.
            Kind::Command(Command::Begin) => return Ok(Outcome::Begin),
            Kind::Command(Command::Rollback) => {
                session.transaction = None;
                return Ok(Outcome::Rollback);
            }
            Kind::Command(Command::Commit) => {
                let transaction = session.transaction.take().expect("invariant: in a block");
                if transaction.failed {
                    return Ok(Outcome::Rollback);
                }
                if let Some(forked) = transaction.fork {
                    let events = forked.fork.events();
                    let engine = Arc::clone(&self.engine);
                    let base = transaction.base_log_size;
                    tokio::task::spawn_blocking(move || engine.commit_transaction(events, base))
                        .await
                        .map_err(|e| {
                            crate::statement::internal(format!("commit task failed: {e}"))
                        })?
                        .map_err(QueryError::Engine)?;
                }
                return Ok(Outcome::Commit);
            }
            Kind::Command(Command::RollbackTo(name)) => {
                let Some(at) = transaction.savepoints.iter().rposition(|(n, _)| n == name) else {
                    return Err(TransactionError::NoSavepoint(name.clone()).into());
                };
                let writes = transaction.savepoints[at].1;
                transaction.savepoints.truncate(at + 1);
                if transaction.writes() != writes {
                    self.rewind(transaction, writes).await?;
                }
                transaction.failed = false;
                return Ok(done("ROLLBACK"));
            }
            _ if transaction.failed => return Err(TransactionError::Aborted.into()),
            Kind::Command(Command::Savepoint(name)) => {
                if transaction.savepoints.len() >= limits::SAVEPOINTS_MAX as usize {
                    return Err(TransactionError::TooManySavepoints.into());
                }
                let writes = transaction.writes();
                transaction.savepoints.push((name.clone(), writes));
                return Ok(done("SAVEPOINT"));
            }
            Kind::Command(Command::Release(name)) => {
                let Some(at) = transaction.savepoints.iter().rposition(|(n, _)| n == name) else {
                    return Err(TransactionError::NoSavepoint(name.clone()).into());
                };
                transaction.savepoints.truncate(at);
                return Ok(done("RELEASE"));
            }
            Kind::Command(_) => return self.run_here(prepared, params, session, access).await,
            _ => {}
        }
        if transaction.fork.is_none() && prepared.is_write() {
            if access == Access::ReadOnly {
                return Err(QueryError::ReadOnly);
            }
            let (forked, base) = self.fork().await?;
            transaction.fork = Some(forked);
            transaction.base_log_size = base;
        }
        let Some(forked) = transaction.fork.clone() else {
            // A block that has not written reads the shared state.
            return self.run_here(prepared, params, session, access).await;
        };
        if prepared.is_write() && transaction.writes() >= limits::TRANSACTION_EVENTS_MAX as usize {
            return Err(TransactionError::TooManyWrites.into());
        }
        let mut inner = session.clone();
        inner.transaction = None;
        forked
            .query
            .run_sql(prepared.sql(), params, &mut inner, access)
            .await
    }

    /// The statement layer a session's statements run on: its block's
    /// copy of the state once the block has written, else this one.
    fn for_session(&self, session: &Session) -> QueryEngine {
        match session.transaction.as_ref().and_then(|t| t.fork.as_ref()) {
            Some(forked) => forked.query.clone(),
            None => self.clone(),
        }
    }

    /// Loads the data of a `COPY … FROM STDIN` (see [`Outcome::CopyIn`])
    /// where `session` runs it: one event, all rows or none.
    pub async fn copy_in(
        &self,
        copy: crate::statement::CopyIn,
        data: Vec<u8>,
        session: &mut Session,
    ) -> Result<Outcome, QueryError> {
        let result = self.for_session(session).copy_in_here(copy, data).await;
        mark_failure(session, result)
    }

    /// Loads the rows of a binary `COPY … FROM STDIN` where `session`
    /// runs it ([`QueryEngine::copy_in`]).
    pub async fn copy_in_values(
        &self,
        copy: crate::statement::CopyIn,
        values: Vec<Vec<ScalarValue>>,
        session: &mut Session,
    ) -> Result<Outcome, QueryError> {
        let result = self
            .for_session(session)
            .copy_in_values_here(copy, values)
            .await;
        mark_failure(session, result)
    }

    /// A copy of the shared state and a statement layer over it, and the
    /// log size it was taken at.
    async fn fork(&self) -> Result<(Arc<Forked>, u64), QueryError> {
        let engine = Arc::clone(&self.engine);
        // Copying the state is a pass over all of it: off the runtime's
        // threads.
        let fork = tokio::task::spawn_blocking(move || engine.fork())
            .await
            .map_err(|e| crate::statement::internal(format!("fork task failed: {e}")))?
            .map_err(QueryError::Engine)?;
        let base = fork.base_log_size();
        let query = QueryEngine::with_limits(Arc::clone(fork.engine()), self.limits);
        Ok((Arc::new(Forked { fork, query }), base))
    }

    /// Makes the block's copy hold only its first `writes` writes: a new
    /// copy of the shared state, with those events written again.
    async fn rewind(&self, transaction: &mut Transaction, writes: usize) -> Result<(), QueryError> {
        if writes == 0 {
            // Nothing kept: the block reads the shared state again.
            transaction.fork = None;
            return Ok(());
        }
        let events = transaction
            .fork
            .as_ref()
            .map(|f| f.fork.events())
            .unwrap_or_default();
        let (forked, base) = self.fork().await?;
        if base != transaction.base_log_size {
            // The kept writes were made on a state since changed.
            return Err(QueryError::Engine(
                valori_engine::EngineError::TransactionConflict {
                    since: base.saturating_sub(transaction.base_log_size),
                },
            ));
        }
        let engine = Arc::clone(forked.fork.engine());
        let kept: Vec<_> = events.into_iter().take(writes).collect();
        tokio::task::spawn_blocking(move || {
            kept.into_iter()
                .try_for_each(|event| engine.submit(event).map(|_| ()))
        })
        .await
        .map_err(|e| crate::statement::internal(format!("rewind task failed: {e}")))?
        .map_err(QueryError::Engine)?;
        transaction.fork = Some(forked);
        Ok(())
    }
}

/// `result`, after marking the session's block failed if it is an error.
fn mark_failure(
    session: &mut Session,
    result: Result<Outcome, QueryError>,
) -> Result<Outcome, QueryError> {
    if result.is_err()
        && let Some(transaction) = session.transaction.as_mut()
    {
        transaction.failed = true;
    }
    result
}

fn done(tag: &str) -> Outcome {
    Outcome::Done {
        tag: tag.to_owned(),
        rows: None,
        notices: Vec::new(),
    }
}
