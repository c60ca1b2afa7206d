//! Advisory locks: `pg_advisory_lock` and its relatives, as PostgreSQL
//! has them.
//!
//! An advisory lock is a named mutex that clients take to order their
//! own work (LangChain's PGVector takes one before `CREATE EXTENSION`;
//! migration tools take one so that two deployments do not migrate at
//! once). It changes nothing in the state and nothing in the log: it is
//! held by a client session, in memory, on the server it was taken on.
//!
//! - Keys are one `bigint`, or two `integer`s (a separate key space, as
//!   in Postgres).
//! - A session-level lock (`pg_advisory_lock`) is held until
//!   `pg_advisory_unlock` or the end of the session; a transaction-level
//!   lock (`pg_advisory_xact_lock`) until the end of the transaction
//!   block, or of the statement outside a block.
//! - A session may take a lock it holds again; it is released when it
//!   has been released as many times.
//! - Waiting for a lock another session holds ends when it is released
//!   or when the statement's timeout passes (SQLSTATE 55P03).
//! - Only exclusive locks exist: the `_shared` forms are not functions
//!   here and are refused by name.
//!
//! Locks are kept per server process. The number of keys held at once is
//! bounded by [`limits::ADVISORY_LOCKS_MAX`].

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard};
use std::time::Instant;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, Int32Array, Int64Array, NullArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::config::ConfigEntry;
use datafusion::common::{DataFusionError, Result as DfResult, ScalarValue};
use datafusion::config::{ConfigExtension, ExtensionOptions};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use datafusion::prelude::SessionContext;
use valori_core::limits;

/// One lock's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LockKey {
    /// `pg_advisory_lock(bigint)`.
    Single(i64),
    /// `pg_advisory_lock(integer, integer)`.
    Pair(i32, i32),
}

impl std::fmt::Display for LockKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockKey::Single(k) => write!(f, "({k})"),
            LockKey::Pair(a, b) => write!(f, "({a}, {b})"),
        }
    }
}

/// Why a lock function failed. Nothing is held that was not held before.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AdvisoryError {
    /// Another session held the lock until the statement's timeout.
    #[error(
        "canceling statement due to lock timeout: advisory lock {0} is held by another session"
    )]
    Timeout(LockKey),
    /// The server holds [`limits::ADVISORY_LOCKS_MAX`] keys already.
    #[error(
        "out of shared memory: the server holds at most {max} advisory locks at once",
        max = limits::ADVISORY_LOCKS_MAX
    )]
    TooMany,
    /// Called where no client session runs the statement.
    #[error("{0} can only be called in a client session's statement")]
    NoSession(&'static str),
    /// A key that is NULL or not an integer of its width.
    #[error("{function}: invalid lock key: {detail}")]
    BadKey {
        function: &'static str,
        detail: String,
    },
}

/// How long a lock is held.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Scope {
    Session,
    Transaction,
}

/// One held key: its holder and how many times it holds it at each level.
#[derive(Debug)]
struct Held {
    holder: u64,
    session: u32,
    transaction: u32,
}

/// Every held key of the process.
struct Registry {
    held: Mutex<HashMap<LockKey, Held>>,
    released: Condvar,
}

static REGISTRY: LazyLock<Registry> = LazyLock::new(|| Registry {
    held: Mutex::new(HashMap::new()),
    released: Condvar::new(),
});

static NEXT_HOLDER: AtomicU64 = AtomicU64::new(1);

fn held() -> MutexGuard<'static, HashMap<LockKey, Held>> {
    // A panic while the map was held cannot leave it inconsistent (each
    // change is one map operation), so a poisoned lock is taken as is.
    REGISTRY.held.lock().unwrap_or_else(|p| p.into_inner())
}

/// A client session's identity as a lock holder: every lock it holds is
/// released when the last copy of its [`crate::session::Session`] is
/// dropped (the connection ended).
#[derive(Debug)]
pub struct Holder {
    id: u64,
    /// The session has an open transaction block.
    in_block: AtomicBool,
    /// Keys this holder holds, changed under the registry's lock: read
    /// without it, zero means there is nothing to release, so the end of
    /// a statement that took no lock does not touch the registry.
    keys: AtomicUsize,
}

impl PartialEq for Holder {
    fn eq(&self, other: &Holder) -> bool {
        self.id == other.id
    }
}

impl Eq for Holder {}

impl Holder {
    fn new() -> Holder {
        Holder {
            id: NEXT_HOLDER.fetch_add(1, Ordering::Relaxed),
            in_block: AtomicBool::new(false),
            keys: AtomicUsize::new(0),
        }
    }

    fn acquire(&self, key: LockKey, scope: Scope, deadline: Instant) -> Result<(), AdvisoryError> {
        let mut map = held();
        loop {
            if self.take(&mut map, key, scope)? {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(AdvisoryError::Timeout(key));
            }
            map = REGISTRY
                .released
                .wait_timeout(map, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Takes `key` if it is free or already this holder's.
    fn take(
        &self,
        map: &mut HashMap<LockKey, Held>,
        key: LockKey,
        scope: Scope,
    ) -> Result<bool, AdvisoryError> {
        let held = match map.get_mut(&key) {
            Some(held) if held.holder != self.id => return Ok(false),
            Some(held) => held,
            None => {
                if map.len() >= limits::ADVISORY_LOCKS_MAX as usize {
                    return Err(AdvisoryError::TooMany);
                }
                self.keys.fetch_add(1, Ordering::Relaxed);
                map.entry(key).or_insert(Held {
                    holder: self.id,
                    session: 0,
                    transaction: 0,
                })
            }
        };
        let count = match scope {
            Scope::Session => &mut held.session,
            Scope::Transaction => &mut held.transaction,
        };
        // A holder taking one key four billion times is refused like too
        // many keys.
        *count = count.checked_add(1).ok_or(AdvisoryError::TooMany)?;
        Ok(true)
    }

    fn try_acquire(&self, key: LockKey, scope: Scope) -> Result<bool, AdvisoryError> {
        self.take(&mut held(), key, scope)
    }

    /// Releases one session-level hold of `key`; false when this holder
    /// had none.
    fn release(&self, key: LockKey) -> bool {
        let mut map = held();
        let Some(held) = map.get_mut(&key).filter(|h| h.holder == self.id) else {
            return false;
        };
        if held.session == 0 {
            return false;
        }
        held.session -= 1;
        if held.session == 0 && held.transaction == 0 {
            map.remove(&key);
            self.keys.fetch_sub(1, Ordering::Relaxed);
            REGISTRY.released.notify_all();
        }
        true
    }

    /// Releases this holder's locks of `scope` (both when `None`).
    fn release_all(&self, scope: Option<Scope>) {
        if self.keys.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut map = held();
        let before = map.len();
        map.retain(|_, held| {
            if held.holder != self.id {
                return true;
            }
            match scope {
                Some(Scope::Session) => held.session = 0,
                Some(Scope::Transaction) => held.transaction = 0,
                None => return false,
            }
            held.session > 0 || held.transaction > 0
        });
        if map.len() != before {
            self.keys.fetch_sub(before - map.len(), Ordering::Relaxed);
            REGISTRY.released.notify_all();
        }
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        self.release_all(None);
    }
}

/// A session's lock holder, shared by the copies of one
/// [`crate::session::Session`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdvisorySession(Arc<Holder>);

impl Default for AdvisorySession {
    fn default() -> Self {
        AdvisorySession(Arc::new(Holder::new()))
    }
}

impl AdvisorySession {
    /// The session opened a transaction block: transaction-level locks
    /// are held until [`AdvisorySession::end_transaction`].
    pub fn begin_transaction(&self) {
        self.0.in_block.store(true, Ordering::Relaxed);
    }

    /// Ends the session's transaction: its transaction-level locks are
    /// released.
    pub fn end_transaction(&self) {
        self.0.in_block.store(false, Ordering::Relaxed);
        self.0.release_all(Some(Scope::Transaction));
    }

    /// Releases the session's session-level locks
    /// (`pg_advisory_unlock_all`, `DISCARD ALL`).
    pub fn unlock_all(&self) {
        self.0.release_all(Some(Scope::Session));
    }

    /// Whether the session holds `key` (at either level).
    pub fn holds(&self, key: LockKey) -> bool {
        held().get(&key).is_some_and(|h| h.holder == self.0.id)
    }
}

/// Releases, when a statement run outside a transaction block ends (its
/// plan and stream are dropped), the transaction-level locks it took.
#[derive(Debug)]
struct StatementEnd(AdvisorySession);

impl Drop for StatementEnd {
    fn drop(&mut self) {
        self.0.0.release_all(Some(Scope::Transaction));
    }
}

/// The lock functions' view of the statement that calls them, carried in
/// the statement's configuration.
#[derive(Clone, Debug, Default)]
pub struct AdvisoryScope {
    session: Option<AdvisorySession>,
    /// Set outside a transaction block, where the statement is the
    /// transaction: held only to be dropped with the statement.
    _statement_end: Option<Arc<StatementEnd>>,
    /// When waiting for a lock gives up (the statement's timeout).
    deadline: Option<Instant>,
}

impl AdvisoryScope {
    /// The scope of one statement of `session` that may run until
    /// `deadline`.
    pub fn for_statement(session: &AdvisorySession, deadline: Instant) -> AdvisoryScope {
        let in_block = session.0.in_block.load(Ordering::Relaxed);
        AdvisoryScope {
            session: Some(session.clone()),
            _statement_end: (!in_block).then(|| Arc::new(StatementEnd(session.clone()))),
            deadline: Some(deadline),
        }
    }
}

impl ConfigExtension for AdvisoryScope {
    const PREFIX: &'static str = "valori_advisory";
}

impl ExtensionOptions for AdvisoryScope {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn cloned(&self) -> Box<dyn ExtensionOptions> {
        // The session is shared on purpose: it is the statement's
        // identity, not a setting.
        Box::new(self.clone())
    }

    fn set(&mut self, key: &str, _value: &str) -> DfResult<()> {
        Err(DataFusionError::Configuration(format!(
            "{}.{key} is not a setting",
            Self::PREFIX
        )))
    }

    fn entries(&self) -> Vec<ConfigEntry> {
        Vec::new()
    }
}

/// What a lock function does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Op {
    Lock(Scope),
    TryLock(Scope),
    Unlock,
    UnlockAll,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct AdvisoryUdf {
    name: &'static str,
    op: Op,
    signature: Signature,
}

const FUNCTIONS: [(&str, Op); 6] = [
    ("pg_advisory_lock", Op::Lock(Scope::Session)),
    ("pg_advisory_xact_lock", Op::Lock(Scope::Transaction)),
    ("pg_try_advisory_lock", Op::TryLock(Scope::Session)),
    ("pg_try_advisory_xact_lock", Op::TryLock(Scope::Transaction)),
    ("pg_advisory_unlock", Op::Unlock),
    ("pg_advisory_unlock_all", Op::UnlockAll),
];

/// Registers the lock functions in `ctx`.
pub fn register_functions(ctx: &SessionContext) {
    for (name, op) in FUNCTIONS {
        let signature = if op == Op::UnlockAll {
            Signature::nullary(Volatility::Volatile)
        } else {
            Signature::one_of(
                vec![TypeSignature::Any(1), TypeSignature::Any(2)],
                Volatility::Volatile,
            )
        };
        ctx.register_udf(ScalarUDF::new_from_impl(AdvisoryUdf {
            name,
            op,
            signature,
        }));
    }
}

/// Runs `f`, which may wait, without holding up the other tasks of a
/// multi-threaded runtime.
fn blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

impl AdvisoryUdf {
    /// The keys of `rows` rows: one `bigint` or two `integer`s each.
    fn keys(&self, args: &[ColumnarValue], rows: usize) -> DfResult<Vec<LockKey>> {
        let bad = |detail: String| {
            DataFusionError::External(Box::new(AdvisoryError::BadKey {
                function: self.name,
                detail,
            }))
        };
        let column = |value: &ColumnarValue, to: &DataType| -> DfResult<ArrayRef> {
            let array = value.to_array(rows)?;
            let cast = cast(&array, to).map_err(|e| bad(e.to_string()))?;
            if cast.null_count() > 0 {
                return Err(bad("a key is NULL".to_owned()));
            }
            Ok(cast)
        };
        match args {
            [one] => {
                let keys = column(one, &DataType::Int64)?;
                let keys = keys
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .ok_or_else(|| bad("not a bigint".to_owned()))?;
                Ok(keys.values().iter().map(|k| LockKey::Single(*k)).collect())
            }
            [a, b] => {
                let (a, b) = (column(a, &DataType::Int32)?, column(b, &DataType::Int32)?);
                let (Some(a), Some(b)) = (
                    a.as_any().downcast_ref::<Int32Array>(),
                    b.as_any().downcast_ref::<Int32Array>(),
                ) else {
                    return Err(bad("not two integers".to_owned()));
                };
                Ok(a.values()
                    .iter()
                    .zip(b.values().iter())
                    .map(|(a, b)| LockKey::Pair(*a, *b))
                    .collect())
            }
            _ => Err(bad(format!("{} arguments", args.len()))),
        }
    }
}

impl ScalarUDFImpl for AdvisoryUdf {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        // Postgres's `void` functions answer an empty value.
        Ok(match self.op {
            Op::Lock(_) | Op::UnlockAll => DataType::Null,
            Op::TryLock(_) | Op::Unlock => DataType::Boolean,
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let scope = args
            .config_options
            .extensions
            .get::<AdvisoryScope>()
            .cloned()
            .unwrap_or_default();
        let (Some(session), Some(deadline)) = (scope.session, scope.deadline) else {
            return Err(DataFusionError::External(Box::new(
                AdvisoryError::NoSession(self.name),
            )));
        };
        let external = |e: AdvisoryError| DataFusionError::External(Box::new(e));
        let rows = args.number_rows;
        let scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let out: ArrayRef = match self.op {
            Op::UnlockAll => {
                session.0.release_all(Some(Scope::Session));
                Arc::new(NullArray::new(rows.max(1)))
            }
            Op::Lock(level) => {
                for key in self.keys(&args.args, if scalar { 1 } else { rows })? {
                    blocking(|| session.0.acquire(key, level, deadline)).map_err(external)?;
                }
                Arc::new(NullArray::new(rows.max(1)))
            }
            Op::TryLock(level) => {
                let keys = self.keys(&args.args, if scalar { 1 } else { rows })?;
                let got = keys
                    .into_iter()
                    .map(|key| session.0.try_acquire(key, level).map(Some))
                    .collect::<Result<BooleanArray, _>>()
                    .map_err(external)?;
                Arc::new(got)
            }
            Op::Unlock => {
                let keys = self.keys(&args.args, if scalar { 1 } else { rows })?;
                Arc::new(
                    keys.into_iter()
                        .map(|key| Some(session.0.release(key)))
                        .collect::<BooleanArray>(),
                )
            }
        };
        if scalar || self.op == Op::UnlockAll && rows <= 1 {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?));
        }
        Ok(ColumnarValue::Array(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Proves the lock rules: a key held by one session is refused to
    /// another until released as many times as taken; the two key spaces
    /// are apart; transaction-level locks go at the transaction's end and
    /// every lock when the session goes; a waiter is woken by the release;
    /// the number of keys held is bounded. (The only test of this binary
    /// that takes locks: the count at the limit is exact.)
    #[test]
    fn locks_exclude_other_sessions_until_released() {
        let (a, b) = (AdvisorySession::default(), AdvisorySession::default());
        let key = LockKey::Single(-7_001);
        assert!(a.0.try_acquire(key, Scope::Session).unwrap());
        assert!(a.0.try_acquire(key, Scope::Session).unwrap());
        assert!(!b.0.try_acquire(key, Scope::Session).unwrap());
        // (a, b) pairs are another key space than one bigint.
        assert!(
            b.0.try_acquire(LockKey::Pair(0, -7_001), Scope::Session)
                .unwrap()
        );
        assert!(a.0.release(key));
        assert!(!b.0.try_acquire(key, Scope::Session).unwrap());
        assert!(a.0.release(key));
        assert!(!a.0.release(key));
        assert!(b.0.try_acquire(key, Scope::Transaction).unwrap());
        assert!(!a.0.try_acquire(key, Scope::Transaction).unwrap());
        b.end_transaction();
        assert!(!b.holds(key));
        assert!(a.0.try_acquire(key, Scope::Transaction).unwrap());
        // A waiter gets the key when the holder's session ends.
        let waiter = std::thread::spawn({
            let b = b.clone();
            move || {
                b.0.acquire(
                    key,
                    Scope::Session,
                    Instant::now() + Duration::from_secs(30),
                )
            }
        });
        std::thread::sleep(Duration::from_millis(50));
        drop(a);
        waiter.join().unwrap().unwrap();
        assert!(b.holds(key));
        // A wait past the deadline fails and takes nothing.
        let c = AdvisorySession::default();
        let started = Instant::now();
        let timed_out = c.0.acquire(
            key,
            Scope::Session,
            Instant::now() + Duration::from_millis(100),
        );
        assert_eq!(timed_out, Err(AdvisoryError::Timeout(key)));
        assert!(started.elapsed() >= Duration::from_millis(100));
        assert!(!c.holds(key));
        drop(b);
        assert!(c.0.try_acquire(key, Scope::Session).unwrap());

        // The server holds at most ADVISORY_LOCKS_MAX keys (here c's one
        // and d's); one more is refused and taking it changes nothing.
        let d = AdvisorySession::default();
        let max = limits::ADVISORY_LOCKS_MAX as i32;
        for i in 1..max {
            assert!(
                d.0.try_acquire(LockKey::Pair(i, 0), Scope::Session)
                    .unwrap()
            );
        }
        let past = LockKey::Pair(max, 0);
        assert_eq!(
            d.0.try_acquire(past, Scope::Session),
            Err(AdvisoryError::TooMany)
        );
        assert!(!d.holds(past));
        // Taking a held key again needs no new one.
        assert!(c.0.try_acquire(key, Scope::Session).unwrap());
        drop(d);
        assert!(c.0.try_acquire(past, Scope::Session).unwrap());
    }
}
