//! An in-memory [`Storage`] that models what a crash keeps, and injects
//! failures.
//!
//! Each file has `written` bytes (what the process wrote) and `durable`
//! bytes (what survives a crash: the content at the last successful
//! `sync`). Directory entries likewise have a current and a durable view,
//! the durable one updated by `sync_dir`. [`SimStorage::crash`] returns the
//! storage as a crash would leave it: durable names, durable content, plus
//! optionally a prefix of the unsynced bytes (a torn write).
//!
//! Faults are planned per operation kind: "the k-th `sync` fails", "the
//! k-th `write_all` writes half its bytes and fails", "the k-th
//! `write_all` fails with ENOSPC before writing", "the k-th `sync_dir`,
//! `rename`, `create` or `set_len` fails", "the k-th `sync` panics" (a
//! stand-in for a bug in the thread that commits). Counters of reads and
//! directory syncs let tests bound the work an operation does.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{LockGuard, Storage, StorageFile};

/// A failure to inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The k-th `sync` (0-based) returns an I/O error; the file's durable
    /// content is not updated.
    SyncFails { nth: u64 },
    /// The k-th `write_all` writes the first half of its bytes, then fails.
    ShortWrite { nth: u64 },
    /// The k-th `write_all` fails with "no space left on device" and
    /// writes nothing.
    NoSpace { nth: u64 },
    /// The k-th `sync_dir` fails; the directory's durable entries are not
    /// updated.
    SyncDirFails { nth: u64 },
    /// The k-th `rename` fails and renames nothing.
    RenameFails { nth: u64 },
    /// The k-th `create` fails and creates nothing.
    CreateFails { nth: u64 },
    /// The k-th `set_len` (truncate) fails and changes nothing.
    TruncateFails { nth: u64 },
    /// The k-th `sync` panics (after releasing the storage's own lock).
    SyncPanics { nth: u64 },
}

/// Operation kinds that faults are counted by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Write,
    Sync,
    SyncDir,
    Rename,
    Create,
    Truncate,
}

impl Fault {
    fn at(self, op: Op, n: u64) -> bool {
        match self {
            Fault::SyncFails { nth } | Fault::SyncPanics { nth } => op == Op::Sync && nth == n,
            Fault::ShortWrite { nth } | Fault::NoSpace { nth } => op == Op::Write && nth == n,
            Fault::SyncDirFails { nth } => op == Op::SyncDir && nth == n,
            Fault::RenameFails { nth } => op == Op::Rename && nth == n,
            Fault::CreateFails { nth } => op == Op::Create && nth == n,
            Fault::TruncateFails { nth } => op == Op::Truncate && nth == n,
        }
    }
}

/// Called with the index of each `sync` before it runs, outside the
/// storage's lock (tests use it to hold a commit at its fsync).
pub type SyncHook = Arc<dyn Fn(u64) + Send + Sync>;

#[derive(Default)]
struct Hook(Option<SyncHook>);

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Hook(set)"
        } else {
            "Hook(none)"
        })
    }
}

/// How much of the unsynced tail a crash keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Torn {
    /// Only synced bytes survive.
    None,
    /// Each file keeps a pseudo-random prefix (from `seed`) of its unsynced
    /// bytes, as a crash in the middle of write-back would.
    Prefix { seed: u64 },
}

#[derive(Clone, Debug, Default)]
struct SimFile {
    written: Vec<u8>,
    durable: Vec<u8>,
}

#[derive(Debug, Default)]
struct Inner {
    files: BTreeMap<u64, SimFile>,
    names: BTreeMap<PathBuf, u64>,
    durable_names: BTreeMap<PathBuf, u64>,
    next_file: u64,
    writes: u64,
    syncs: u64,
    sync_dirs: u64,
    renames: u64,
    creates: u64,
    truncates: u64,
    /// Bytes returned by `read` and `read_range`.
    bytes_read: u64,
    /// Directories synced, in order.
    synced_dirs: Vec<PathBuf>,
    /// Paths locked by a live guard.
    locks: std::collections::BTreeSet<PathBuf>,
    faults: Vec<Fault>,
    /// Faults that fired, in order.
    fired: Vec<Fault>,
    sync_hook: Hook,
}

impl Inner {
    /// Counts an operation and returns the fault planned for it, if any.
    fn count(&mut self, op: Op) -> Option<Fault> {
        let counter = match op {
            Op::Write => &mut self.writes,
            Op::Sync => &mut self.syncs,
            Op::SyncDir => &mut self.sync_dirs,
            Op::Rename => &mut self.renames,
            Op::Create => &mut self.creates,
            Op::Truncate => &mut self.truncates,
        };
        let n = *counter;
        *counter += 1;
        let fault = self.faults.iter().copied().find(|f| f.at(op, n));
        if let Some(f) = fault {
            self.fired.push(f);
        }
        fault
    }
}

fn injected(what: &str) -> io::Error {
    io::Error::other(format!("injected {what} failure"))
}

/// The simulated storage; cheap to clone (shared state).
#[derive(Clone, Debug, Default)]
pub struct SimStorage {
    inner: Arc<Mutex<Inner>>,
}

impl SimStorage {
    pub fn new() -> SimStorage {
        SimStorage::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock can only come from a test; the
        // data is plain bytes and stays usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Plans a fault.
    pub fn inject(&self, fault: Fault) {
        self.lock().faults.push(fault);
    }

    /// Faults that fired so far.
    pub fn fired(&self) -> Vec<Fault> {
        self.lock().fired.clone()
    }

    /// Number of `write_all` and `sync` calls so far.
    pub fn op_counts(&self) -> (u64, u64) {
        let inner = self.lock();
        (inner.writes, inner.syncs)
    }

    /// Number of `sync_dir`, `rename`, `create` and `set_len` calls so far.
    pub fn meta_op_counts(&self) -> (u64, u64, u64, u64) {
        let inner = self.lock();
        (
            inner.sync_dirs,
            inner.renames,
            inner.creates,
            inner.truncates,
        )
    }

    /// Bytes returned by reads so far.
    pub fn bytes_read(&self) -> u64 {
        self.lock().bytes_read
    }

    /// Directories synced so far, in order.
    pub fn synced_dirs(&self) -> Vec<PathBuf> {
        self.lock().synced_dirs.clone()
    }

    /// Calls `hook` with the index of every later `sync` before it runs.
    pub fn on_sync(&self, hook: SyncHook) {
        self.lock().sync_hook = Hook(Some(hook));
    }

    /// The storage as a crash now would leave it. Faults are not carried
    /// over.
    pub fn crash(&self, torn: Torn) -> SimStorage {
        let inner = self.lock();
        let mut out = Inner::default();
        let mut rng = match torn {
            Torn::None => None,
            Torn::Prefix { seed } => Some(valori_core::rng::SplitMix64::new(seed)),
        };
        for (path, id) in &inner.durable_names {
            let file = &inner.files[id];
            let mut durable = file.durable.clone();
            if let Some(rng) = rng.as_mut() {
                // Unsynced bytes beyond the durable length may partly
                // survive; a rewrite of synced bytes is not modelled
                // (the engine only appends or truncates).
                if file.written.len() > durable.len() && file.written.starts_with(&durable) {
                    let extra = (file.written.len() - durable.len()) as u64;
                    let keep = rng.below(extra + 1) as usize;
                    durable.extend_from_slice(
                        &file.written[file.durable.len()..file.durable.len() + keep],
                    );
                }
            }
            let new_id = out.next_file;
            out.next_file += 1;
            out.files.insert(
                new_id,
                SimFile {
                    written: durable.clone(),
                    durable,
                },
            );
            out.names.insert(path.clone(), new_id);
            out.durable_names.insert(path.clone(), new_id);
        }
        SimStorage {
            inner: Arc::new(Mutex::new(out)),
        }
    }

    /// Current (written) content of a file, for tests.
    pub fn written(&self, path: &Path) -> Option<Vec<u8>> {
        let inner = self.lock();
        inner
            .names
            .get(path)
            .map(|id| inner.files[id].written.clone())
    }

    /// Overwrites a file's content, written and durable, for corruption
    /// tests.
    pub fn replace(&self, path: &Path, bytes: Vec<u8>) -> io::Result<()> {
        let mut inner = self.lock();
        let id = *inner.names.get(path).ok_or_else(|| not_found(path))?;
        let file = inner.files.get_mut(&id).ok_or_else(|| not_found(path))?;
        file.durable = bytes.clone();
        file.written = bytes;
        Ok(())
    }
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file", path.display()),
    )
}

#[derive(Debug)]
struct SimHandle {
    storage: SimStorage,
    id: u64,
}

impl StorageFile for SimHandle {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        let mut inner = self.storage.lock();
        let fault = inner.count(Op::Write);
        let file = inner
            .files
            .get_mut(&self.id)
            .ok_or_else(|| io::Error::other("file vanished"))?;
        match fault {
            Some(Fault::ShortWrite { .. }) => {
                file.written.extend_from_slice(&buf[..buf.len() / 2]);
                Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "injected short write",
                ))
            }
            Some(Fault::NoSpace { .. }) => Err(io::Error::from_raw_os_error(28)),
            _ => {
                file.written.extend_from_slice(buf);
                Ok(())
            }
        }
    }

    fn sync(&mut self) -> io::Result<()> {
        let hook = {
            let inner = self.storage.lock();
            inner.sync_hook.0.clone().map(|h| (h, inner.syncs))
        };
        if let Some((hook, nth)) = hook {
            hook(nth);
        }
        let mut inner = self.storage.lock();
        match inner.count(Op::Sync) {
            Some(Fault::SyncPanics { nth }) => {
                drop(inner);
                panic!("injected panic at sync {nth}");
            }
            Some(_) => return Err(injected("fsync")),
            None => {}
        }
        let file = inner
            .files
            .get_mut(&self.id)
            .ok_or_else(|| io::Error::other("file vanished"))?;
        file.durable = file.written.clone();
        Ok(())
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        let mut inner = self.storage.lock();
        if inner.count(Op::Truncate).is_some() {
            return Err(injected("truncate"));
        }
        let file = inner
            .files
            .get_mut(&self.id)
            .ok_or_else(|| io::Error::other("file vanished"))?;
        file.written.resize(len as usize, 0);
        Ok(())
    }
}

impl Storage for SimStorage {
    fn create_dir_all(&self, _dir: &Path) -> io::Result<()> {
        // Directories are implicit: a path's parent exists when a file in
        // it exists.
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let inner = self.lock();
        let mut out: Vec<String> = inner
            .names
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_owned))
            .collect();
        out.sort();
        Ok(out)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let bytes = self.written(path).ok_or_else(|| not_found(path))?;
        self.lock().bytes_read += bytes.len() as u64;
        Ok(bytes)
    }

    fn read_range(&self, path: &Path, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        let mut inner = self.lock();
        let id = *inner.names.get(path).ok_or_else(|| not_found(path))?;
        let file = &inner.files[&id].written;
        let start = (offset as usize).min(file.len());
        let end = start.saturating_add(len as usize).min(file.len());
        let bytes = file[start..end].to_vec();
        inner.bytes_read += bytes.len() as u64;
        Ok(bytes)
    }

    fn exists(&self, path: &Path) -> bool {
        self.lock().names.contains_key(path)
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        let mut inner = self.lock();
        if inner.count(Op::Create).is_some() {
            return Err(injected("create"));
        }
        let id = inner.next_file;
        inner.next_file += 1;
        inner.files.insert(id, SimFile::default());
        inner.names.insert(path.to_path_buf(), id);
        Ok(Box::new(SimHandle {
            storage: self.clone(),
            id,
        }))
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        let inner = self.lock();
        let id = *inner.names.get(path).ok_or_else(|| not_found(path))?;
        Ok(Box::new(SimHandle {
            storage: self.clone(),
            id,
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut inner = self.lock();
        if inner.count(Op::Rename).is_some() {
            return Err(injected("rename"));
        }
        let id = inner.names.remove(from).ok_or_else(|| not_found(from))?;
        inner.names.insert(to.to_path_buf(), id);
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut inner = self.lock();
        inner.names.remove(path).ok_or_else(|| not_found(path))?;
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut inner = self.lock();
        if inner.count(Op::SyncDir).is_some() {
            return Err(injected("directory fsync"));
        }
        inner.synced_dirs.push(dir.to_path_buf());
        let current: Vec<(PathBuf, u64)> = inner
            .names
            .iter()
            .filter(|(p, _)| p.parent() == Some(dir))
            .map(|(p, &id)| (p.clone(), id))
            .collect();
        inner.durable_names.retain(|p, _| p.parent() != Some(dir));
        inner.durable_names.extend(current);
        Ok(())
    }

    fn lock_file(&self, path: &Path, owner: &[u8]) -> io::Result<Box<dyn LockGuard>> {
        {
            let mut inner = self.lock();
            if !inner.locks.insert(path.to_path_buf()) {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    "locked by another holder",
                ));
            }
        }
        // A crash releases the lock (the process is gone): `crash` starts
        // with no locks, and the file's content is only advice.
        let written = self.create(path).and_then(|mut f| f.write_all(owner));
        if let Err(e) = written {
            self.lock().locks.remove(path);
            return Err(e);
        }
        Ok(Box::new(SimLock {
            storage: self.clone(),
            path: path.to_path_buf(),
        }))
    }
}

#[derive(Debug)]
struct SimLock {
    storage: SimStorage,
    path: PathBuf,
}

impl Drop for SimLock {
    fn drop(&mut self) {
        self.storage.lock().locks.remove(&self.path);
    }
}

impl LockGuard for SimLock {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unsynced bytes and unsynced names vanish in a crash; synced ones stay.
    #[test]
    fn crash_keeps_only_durable() {
        let s = SimStorage::new();
        let dir = Path::new("/d");
        let mut f = s.create(&dir.join("a")).unwrap();
        f.write_all(b"hello").unwrap();
        f.sync().unwrap();
        f.write_all(b" world").unwrap();
        let lost = s.crash(Torn::None);
        assert!(!lost.exists(&dir.join("a")), "name was never made durable");
        s.sync_dir(dir).unwrap();
        let kept = s.crash(Torn::None);
        assert_eq!(kept.read(&dir.join("a")).unwrap(), b"hello");
        let torn = s.crash(Torn::Prefix { seed: 3 });
        let bytes = torn.read(&dir.join("a")).unwrap();
        assert!(bytes.starts_with(b"hello") && b"hello world".starts_with(&bytes[..]));
    }

    /// Each fault fires once, at its operation, with its effect.
    #[test]
    fn faults_fire_as_planned() {
        let s = SimStorage::new();
        s.inject(Fault::ShortWrite { nth: 1 });
        s.inject(Fault::NoSpace { nth: 2 });
        s.inject(Fault::SyncFails { nth: 0 });
        let path = Path::new("/d/f");
        let mut f = s.create(path).unwrap();
        f.write_all(b"abcd").unwrap();
        assert!(f.write_all(b"efgh").is_err());
        assert_eq!(f.write_all(b"ijkl").unwrap_err().raw_os_error(), Some(28));
        assert_eq!(s.read(path).unwrap(), b"abcdef");
        assert!(f.sync().is_err());
        s.sync_dir(Path::new("/d")).unwrap();
        assert_eq!(s.crash(Torn::None).read(path).unwrap(), b"");
        f.sync().unwrap();
        assert_eq!(s.crash(Torn::None).read(path).unwrap(), b"abcdef");
        assert_eq!(s.fired().len(), 3);
    }
}
