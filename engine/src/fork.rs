//! Private copies of the state for SQL transactions.
//!
//! A transaction's writes must be visible to its own later statements and
//! to nobody else until `COMMIT`, and `ROLLBACK` must leave no trace. A
//! [`Fork`] is an engine in memory holding a copy of the state at the
//! transaction's first write: the transaction's statements run on it
//! unchanged (the same planner, the same write path, the same checks),
//! and every event they write is recorded. `COMMIT` submits the recorded
//! events to the real engine as one [`Event::Transaction`], applied all or
//! none ([`Engine::commit_transaction`]); dropping the fork is `ROLLBACK`.

use std::path::Path;
use std::sync::{Arc, Mutex, Weak};

use valori_core::event::Event;

use crate::storage::sim::SimStorage;
use crate::{Core, Engine, EngineError, EngineOptions, Receipt, WriteGate, lock, read, write};

/// An in-memory copy of an engine's state whose writes are recorded.
#[derive(Debug)]
pub struct Fork {
    engine: Arc<Engine>,
    recorder: Arc<Recorder>,
    /// Events in the real engine's log when the copy was taken.
    base_log_size: u64,
}

/// The fork's write gate: applies each write to the copy, and records it
/// once applied.
#[derive(Debug)]
struct Recorder {
    core: Mutex<Weak<Core>>,
    events: Mutex<Vec<Event>>,
}

impl WriteGate for Recorder {
    fn submit(&self, event: Event) -> Result<Receipt, EngineError> {
        let core = lock(&self.core)
            .upgrade()
            .ok_or_else(|| EngineError::Replication {
                reason: "the transaction's copy of the state is gone".to_owned(),
                outcome_unknown: false,
            })?;
        let receipt = core.submit_local(event.clone())?;
        lock(&self.events).push(event);
        Ok(receipt)
    }
}

impl Fork {
    /// The copy, to read and write as any engine.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The events written to the copy so far, in order.
    pub fn events(&self) -> Vec<Event> {
        lock(&self.recorder.events).clone()
    }

    /// How many events were written to the copy so far.
    pub fn event_count(&self) -> usize {
        lock(&self.recorder.events).len()
    }

    /// Events in the real engine's log when the copy was taken.
    pub fn base_log_size(&self) -> u64 {
        self.base_log_size
    }
}

impl Engine {
    /// A copy of the current state in memory, for one SQL transaction.
    /// Copying costs a pass over the state (every collection's rows and
    /// graph); writes to the copy reach neither this engine nor its disk.
    pub fn fork(&self) -> Result<Fork, EngineError> {
        self.check_failed()?;
        let options = EngineOptions {
            index_threads: 1,
            ..EngineOptions::default()
        };
        let engine = Engine::open_with(Arc::new(SimStorage::new()), Path::new("/fork"), options)?;
        let (state, base_log_size) = {
            // One consistent pair: commits change both under the state's
            // write lock.
            let state = read(&self.state);
            (state.clone(), read(&self.proof).log_size)
        };
        *write(&engine.state) = state;
        let recorder = Arc::new(Recorder {
            core: Mutex::new(Arc::downgrade(&engine.core)),
            events: Mutex::new(Vec::new()),
        });
        engine.set_write_gate(Arc::clone(&recorder) as Arc<dyn WriteGate>);
        Ok(Fork {
            engine: Arc::new(engine),
            recorder,
            base_log_size,
        })
    }

    /// Commits a transaction's events (in order, all or none): one event is
    /// submitted as it is, several as one [`Event::Transaction`]. The
    /// events were computed from the state at the fork, so they are
    /// refused with [`EngineError::TransactionConflict`] if another write
    /// was committed since ([`Fork::base_log_size`]), unless the block's
    /// one event only adds rows ([`adds_only`]).
    ///
    /// Among several, a write of the block that is itself a Transaction
    /// (an upsert, a `CREATE INDEX` that re-indexes and names the index,
    /// an `UPDATE` of an integer key) gives its events in its place: a Transaction holds
    /// no Transaction (docs/format.md), and its effect is that of its
    /// events applied in order, so the block's is unchanged.
    pub fn commit_transaction(
        &self,
        mut events: Vec<Event>,
        base_log_size: u64,
    ) -> Result<Option<Receipt>, EngineError> {
        match events.len() {
            0 => Ok(None),
            1 if adds_only(&events[0]) => self.submit(events.remove(0)).map(Some),
            1 => {
                let now = self.log_size();
                if now != base_log_size {
                    return Err(EngineError::TransactionConflict {
                        since: now.saturating_sub(base_log_size),
                    });
                }
                self.submit(events.remove(0)).map(Some)
            }
            _ => {
                let events = flatten(events);
                let now = self.log_size();
                if now != base_log_size {
                    return Err(EngineError::TransactionConflict {
                        since: now.saturating_sub(base_log_size),
                    });
                }
                self.submit(Event::Transaction { events }).map(Some)
            }
        }
    }
}

/// Whether `event` only adds rows or creates a collection: no row it
/// writes existed at the fork, so another write committed since cannot
/// have changed what it was computed from (an update, a delete or an
/// upsert computed on the fork would overwrite such a write with values
/// read before it: a lost update).
fn adds_only(event: &Event) -> bool {
    matches!(
        event,
        Event::Insert { .. }
            | Event::InsertBatch { .. }
            | Event::InsertRows { .. }
            | Event::CreateCollection { .. }
            | Event::CreateTable { .. }
    )
}

/// `events` with each Transaction among them replaced by its events, in
/// order.
fn flatten(events: Vec<Event>) -> Vec<Event> {
    if !events
        .iter()
        .any(|e| matches!(e, Event::Transaction { .. }))
    {
        return events;
    }
    let mut out = Vec::with_capacity(events.len());
    for event in events {
        match event {
            Event::Transaction { events } => out.extend(events),
            event => out.push(event),
        }
    }
    out
}
