//! The Raft log and vote of one node, durable in its cluster directory.
//!
//! `raft-log` is a sequence of records, each `len: u32 LE`, `check: [u8;
//! 8]` (the first 8 bytes of the BLAKE3 hash of the payload) and a payload:
//! an appended entry, a truncation (entries from an index on are gone) or
//! a purge (entries up to a log id are retired). The payload is
//! `format: u8` (2), `kind: u8` (1 append: an entry in the encoding of
//! [`crate::codec`]; 2 truncate: `index: u64`; 3 purge: a log id).
//! Records of the first format, written by earlier versions, are JSON
//! (their first byte is `{`) and are still read; the file is rewritten in
//! the current format when it is next compacted. Replaying the
//! records in order gives the log; a record cut short or failing its check
//! at the end of the file is a torn write and is cut off, one in the middle
//! is corruption and an error. Appends are fsynced before openraft is told
//! they are durable. When most of the file is retired entries it is
//! rewritten (temp file, fsync, rename, directory fsync).
//!
//! `vote` holds the last vote as JSON, replaced by a temp file, fsync and
//! rename, so that a node never votes twice in one term across a crash.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{Entry, LogId, RaftLogId, RaftLogReader, StorageError, StorageIOError, Vote};
use serde::{Deserialize, Serialize};

use crate::codec::{DecodeError, Decoder, Encoder};
use crate::{NodeId, TypeConfig};

const LOG_FILE: &str = "raft-log";
const VOTE_FILE: &str = "vote";
const RECORD_HEADER_BYTES: usize = 12;

/// The first byte of a record's payload in the current format.
const RECORD_FORMAT: u8 = 2;
/// The first byte of a record of the first format (JSON).
const RECORD_FORMAT_JSON: u8 = b'{';
const RECORD_APPEND: u8 = 1;
const RECORD_TRUNCATE: u8 = 2;
const RECORD_PURGE: u8 = 3;

/// A record of the log. The serde form is the first format's (JSON), read
/// from logs written before the binary one.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Record {
    Append(Entry<TypeConfig>),
    /// Entries from this index on are removed (a follower's conflicting,
    /// uncommitted tail).
    Truncate(u64),
    /// Entries up to and including this log id are retired (covered by a
    /// snapshot).
    Purge(LogId<NodeId>),
}

/// The log as openraft reads it: locked only briefly, never across IO.
#[derive(Debug)]
struct Inner {
    entries: BTreeMap<u64, Entry<TypeConfig>>,
    purged: Option<LogId<NodeId>>,
    vote: Option<Vote<NodeId>>,
}

/// The files: locked for each write and its fsync, on a blocking thread.
#[derive(Debug)]
struct Disk {
    dir: PathBuf,
    file: File,
    /// Records in the file, to decide when rewriting it pays.
    records: u64,
}

/// The log store openraft writes through; clones share one log.
///
/// Writes and fsyncs run on tokio's blocking threads, holding `disk`; the
/// in-memory log in `inner` changes only after the write is durable, under
/// `disk` too (lock order: `disk`, then `inner`). So an fsync that takes
/// long (a busy disk) holds up the next log write, as it must, but not
/// readers of the log (replication to the other nodes), nor the async
/// worker threads that serve heartbeats, other connections and clients.
#[derive(Clone, Debug)]
pub struct LogStore {
    inner: Arc<Mutex<Inner>>,
    disk: Arc<Mutex<Disk>>,
}

fn io_err(e: &io::Error) -> StorageError<NodeId> {
    StorageIOError::write_logs(e).into()
}

fn corrupt(path: &Path, offset: usize, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{} is corrupt at offset {offset}: {what}", path.display()),
    )
}

fn check_of(payload: &[u8]) -> [u8; 8] {
    let hash = blake3::hash(payload);
    let mut out = [0u8; 8];
    out.copy_from_slice(&hash.as_bytes()[..8]);
    out
}

/// Appends a record to `out`: the header, then the payload in the current
/// format, whose kind and body `body` writes.
fn put_record(out: &mut Vec<u8>, body: impl FnOnce(&mut Encoder<'_>)) {
    let start = out.len();
    out.extend_from_slice(&[0u8; RECORD_HEADER_BYTES]);
    let mut e = Encoder::new(out);
    e.u8(RECORD_FORMAT);
    body(&mut e);
    let payload = &out[start + RECORD_HEADER_BYTES..];
    let len = u32::try_from(payload.len())
        .expect("invariant: a record holds at most one entry, far below 4 GiB");
    let check = check_of(payload);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + RECORD_HEADER_BYTES].copy_from_slice(&check);
}

fn encode_append(entry: &Entry<TypeConfig>, out: &mut Vec<u8>) {
    put_record(out, |e| {
        e.u8(RECORD_APPEND);
        e.entry(entry);
    });
}

fn encode(record: &Record, out: &mut Vec<u8>) {
    match record {
        Record::Append(entry) => encode_append(entry, out),
        Record::Truncate(index) => put_record(out, |e| {
            e.u8(RECORD_TRUNCATE);
            e.u64(*index);
        }),
        Record::Purge(log_id) => put_record(out, |e| {
            e.u8(RECORD_PURGE);
            e.log_id(log_id);
        }),
    }
}

/// Why a record that passed its check does not decode.
#[derive(Debug, thiserror::Error)]
enum RecordError {
    #[error("{0}")]
    Binary(#[from] DecodeError),
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    #[error("unknown record format {0}")]
    Format(u8),
    #[error("unknown record kind {0}")]
    Kind(u8),
    #[error("an empty record")]
    Empty,
}

fn decode(payload: &[u8]) -> Result<Record, RecordError> {
    let (&format, rest) = payload.split_first().ok_or(RecordError::Empty)?;
    match format {
        RECORD_FORMAT => {
            let mut d = Decoder::new(rest);
            let record = match d.u8("a record's kind")? {
                RECORD_APPEND => Record::Append(d.entry()?),
                RECORD_TRUNCATE => Record::Truncate(d.u64("a truncation's index")?),
                RECORD_PURGE => Record::Purge(d.log_id()?),
                kind => return Err(RecordError::Kind(kind)),
            };
            d.finish("a record")?;
            Ok(record)
        }
        RECORD_FORMAT_JSON => Ok(serde_json::from_slice(payload)?),
        other => Err(RecordError::Format(other)),
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `bytes` to `dir/name` through a temp file, fsync, rename and
/// directory fsync.
pub(crate) fn replace_file(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, dir.join(name))?;
    sync_dir(dir)
}

impl LogStore {
    /// Opens (or creates) the log and vote in `dir`.
    pub fn open(dir: &Path) -> io::Result<LogStore> {
        fs::create_dir_all(dir)?;
        let path = dir.join(LOG_FILE);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let mut entries = BTreeMap::new();
        let mut purged = None;
        let mut pos = 0usize;
        let mut records = 0u64;
        while pos < bytes.len() {
            let rest = &bytes[pos..];
            let torn = rest.len() < RECORD_HEADER_BYTES || {
                let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                rest.len() < RECORD_HEADER_BYTES + len
            };
            if torn {
                break;
            }
            let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            let end = RECORD_HEADER_BYTES + len;
            let payload = &rest[RECORD_HEADER_BYTES..end];
            if check_of(payload) != rest[4..12] {
                if pos + end == bytes.len() {
                    // The last record, complete but failing its check: a
                    // write that reached the disk only in part.
                    break;
                }
                return Err(corrupt(&path, pos, "a record fails its check"));
            }
            let record = decode(payload)
                .map_err(|e| corrupt(&path, pos, &format!("a record does not decode: {e}")))?;
            match record {
                Record::Append(entry) => {
                    entries.insert(entry.log_id.index, entry);
                }
                Record::Truncate(from) => {
                    entries.split_off(&from);
                }
                Record::Purge(log_id) => {
                    entries = entries.split_off(&(log_id.index + 1));
                    purged = Some(log_id);
                }
            }
            records += 1;
            pos += end;
        }
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        if pos < bytes.len() {
            tracing::info!(log = %path.display(), offset = pos, bytes = bytes.len() - pos, "cutting a torn record off the Raft log");
            file.set_len(pos as u64)?;
            file.sync_all()?;
        }
        sync_dir(dir)?;
        let vote = match fs::read(dir.join(VOTE_FILE)) {
            Ok(b) => Some(
                serde_json::from_slice(&b)
                    .map_err(|_| corrupt(&dir.join(VOTE_FILE), 0, "the vote does not decode"))?,
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        Ok(LogStore {
            inner: Arc::new(Mutex::new(Inner {
                entries,
                purged,
                vote,
            })),
            disk: Arc::new(Mutex::new(Disk {
                dir: dir.to_path_buf(),
                file,
                records,
            })),
        })
    }

    /// Whether the log holds nothing and never did (no entry, no purge, no
    /// vote): a node that has never been part of a cluster.
    pub fn is_empty(&self) -> bool {
        let inner = self.lock();
        inner.entries.is_empty() && inner.purged.is_none() && inner.vote.is_none()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn disk(&self) -> MutexGuard<'_, Disk> {
        self.disk.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` (file IO, then the in-memory change it makes durable) on a
    /// blocking thread, holding the disk lock.
    async fn with_disk<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Disk, &LogStore) -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut disk = store.disk();
            f(&mut disk, &store)
        })
        .await
        .map_err(io::Error::other)?
    }
}

impl Disk {
    #[cfg(test)]
    fn write_records(&mut self, records: &[Record]) -> io::Result<()> {
        let mut buf = Vec::new();
        for r in records {
            encode(r, &mut buf);
        }
        self.write_durably(&buf, records.len())
    }

    /// Appends `count` encoded records and makes them durable.
    fn write_durably(&mut self, buf: &[u8], count: usize) -> io::Result<()> {
        self.file.write_all(buf)?;
        self.file.sync_data()?;
        self.records += count as u64;
        Ok(())
    }

    /// Rewrites the file with only the live entries when retired records
    /// are most of it.
    fn compact_if_worth_it(&mut self, store: &LogStore) -> io::Result<()> {
        let mut buf = Vec::new();
        let live = {
            let inner = store.lock();
            let live = inner.entries.len() as u64 + 1;
            if self.records < 1024 || self.records < 4 * live {
                return Ok(());
            }
            if let Some(p) = inner.purged {
                encode(&Record::Purge(p), &mut buf);
            }
            for e in inner.entries.values() {
                encode_append(e, &mut buf);
            }
            live
        };
        replace_file(&self.dir, LOG_FILE, &buf)?;
        self.file = OpenOptions::new()
            .append(true)
            .open(self.dir.join(LOG_FILE))?;
        self.records = live;
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        let inner = self.lock();
        Ok(inner.entries.range(range).map(|(_, e)| e.clone()).collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let inner = self.lock();
        let last = inner
            .entries
            .values()
            .next_back()
            .map(|e| *e.get_log_id())
            .or(inner.purged);
        Ok(LogState {
            last_purged_log_id: inner.purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        let bytes = serde_json::to_vec(vote).map_err(|e| io_err(&io::Error::other(e)))?;
        let vote = *vote;
        self.with_disk(move |disk, store| {
            replace_file(&disk.dir, VOTE_FILE, &bytes)?;
            store.lock().vote = Some(vote);
            Ok(())
        })
        .await
        .map_err(|e| StorageError::from(StorageIOError::write_vote(&e)))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        Ok(self.lock().vote)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        let mut buf = Vec::new();
        for e in &entries {
            encode_append(e, &mut buf);
        }
        // Durable before openraft hears of it: a vote counted toward a
        // commit is a promise that the entry survives a crash.
        let written = self
            .with_disk(move |disk, store| {
                disk.write_durably(&buf, entries.len())?;
                let mut inner = store.lock();
                for e in entries {
                    inner.entries.insert(e.log_id.index, e);
                }
                Ok(())
            })
            .await;
        match written {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                let err = io_err(&e);
                callback.log_io_completed(Err(e));
                Err(err)
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut buf = Vec::new();
        encode(&Record::Truncate(log_id.index), &mut buf);
        self.with_disk(move |disk, store| {
            disk.write_durably(&buf, 1)?;
            store.lock().entries.split_off(&log_id.index);
            Ok(())
        })
        .await
        .map_err(|e| io_err(&e))
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut buf = Vec::new();
        encode(&Record::Purge(log_id), &mut buf);
        self.with_disk(move |disk, store| {
            disk.write_durably(&buf, 1)?;
            {
                let mut inner = store.lock();
                inner.entries = inner.entries.split_off(&(log_id.index + 1));
                inner.purged = Some(log_id);
            }
            disk.compact_if_worth_it(store)
        })
        .await
        .map_err(|e| io_err(&e))
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;

    fn entry(index: u64) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(crate::Write {
                events: vec![vec![index as u8; 10]],
            }),
        }
    }

    fn write(dir: &Path, records: &[Record]) {
        let store = LogStore::open(dir).expect("open");
        store.disk().write_records(records).expect("write");
    }

    fn indexes(dir: &Path) -> Vec<u64> {
        let store = LogStore::open(dir).expect("open");
        store.lock().entries.keys().copied().collect()
    }

    /// Replaying the records gives the log: truncation removes the tail,
    /// a purge retires the head.
    #[test]
    fn records_replay_to_the_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(
            dir.path(),
            &(1..=5)
                .map(|i| Record::Append(entry(i)))
                .collect::<Vec<_>>(),
        );
        write(dir.path(), &[Record::Truncate(4), Record::Append(entry(4))]);
        write(
            dir.path(),
            &[Record::Purge(LogId::new(CommittedLeaderId::new(1, 1), 2))],
        );
        assert_eq!(indexes(dir.path()), vec![3, 4]);
    }

    /// A record cut short at the end of the file is a torn write: it is
    /// cut off and the records before it stay; a damaged record before the
    /// end is an error, not a silent loss.
    #[test]
    fn a_torn_tail_is_cut_and_a_damaged_middle_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(
            dir.path(),
            &(1..=3)
                .map(|i| Record::Append(entry(i)))
                .collect::<Vec<_>>(),
        );
        let path = dir.path().join(LOG_FILE);
        let len = fs::metadata(&path).expect("metadata").len();
        let f = OpenOptions::new().write(true).open(&path).expect("open");
        f.set_len(len - 3).expect("cut");
        drop(f);
        assert_eq!(indexes(dir.path()), vec![1, 2]);
        // The cut tail is gone from the file: appending continues cleanly.
        write(dir.path(), &[Record::Append(entry(3))]);
        assert_eq!(indexes(dir.path()), vec![1, 2, 3]);
        let mut bytes = fs::read(&path).expect("read");
        bytes[RECORD_HEADER_BYTES + 2] ^= 0x40;
        fs::write(&path, &bytes).expect("write");
        let err = LogStore::open(dir.path()).expect_err("a damaged first record");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    }

    /// Each kind of record decodes to the record that was encoded, in the
    /// current format; the payload is as the module doc describes it.
    #[test]
    fn records_round_trip() {
        let records = [
            Record::Append(entry(7)),
            Record::Truncate(u64::MAX),
            Record::Purge(LogId::new(CommittedLeaderId::new(3, 2), 9)),
        ];
        for r in &records {
            let mut buf = Vec::new();
            encode(r, &mut buf);
            let len = u32::from_le_bytes(buf[..4].try_into().expect("4 bytes")) as usize;
            assert_eq!(buf.len(), RECORD_HEADER_BYTES + len);
            let payload = &buf[RECORD_HEADER_BYTES..];
            assert_eq!(buf[4..RECORD_HEADER_BYTES], check_of(payload));
            assert_eq!(payload[0], RECORD_FORMAT);
            assert_eq!(&decode(payload).expect("decodes"), r);
        }
        let mut buf = Vec::new();
        encode(&records[1], &mut buf);
        let payload = &mut buf[RECORD_HEADER_BYTES..];
        payload[1] = 9;
        assert!(matches!(decode(payload), Err(RecordError::Kind(9))));
        payload[0] = 7;
        assert!(matches!(decode(payload), Err(RecordError::Format(7))));
        assert!(matches!(decode(&[]), Err(RecordError::Empty)));
        assert!(matches!(
            decode(&[RECORD_FORMAT, RECORD_TRUNCATE, 1, 2]),
            Err(RecordError::Binary(DecodeError::Truncated { .. }))
        ));
    }

    /// A Raft log written by an earlier version (JSON records) is read,
    /// records of the current format continue it, and the mixed file is
    /// read again after a restart.
    #[test]
    fn records_of_the_json_format_are_still_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        // The first format's JSON, as version 1 wrote it: one event per
        // entry, in base64 under `event`.
        let append = |i: u64| {
            use base64::Engine as _;
            serde_json::json!({"Append": {
                "log_id": entry(i).log_id,
                "payload": {"Normal": {
                    "event": base64::engine::general_purpose::STANDARD.encode([i as u8; 10]),
                }},
            }})
        };
        let mut old = Vec::new();
        for r in [
            append(1),
            append(2),
            append(3),
            serde_json::json!({"Truncate": 3}),
        ] {
            let payload = serde_json::to_vec(&r).expect("json");
            assert_eq!(payload[0], RECORD_FORMAT_JSON);
            old.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            old.extend_from_slice(&check_of(&payload));
            old.extend_from_slice(&payload);
        }
        fs::write(dir.path().join(LOG_FILE), &old).expect("write");
        let store = LogStore::open(dir.path()).expect("open");
        assert_eq!(
            store.lock().entries.values().cloned().collect::<Vec<_>>(),
            vec![entry(1), entry(2)]
        );
        drop(store);
        write(dir.path(), &[Record::Append(entry(3))]);
        let store = LogStore::open(dir.path()).expect("open");
        assert_eq!(
            store.lock().entries.values().cloned().collect::<Vec<_>>(),
            vec![entry(1), entry(2), entry(3)]
        );
    }
}
