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
//! `write_all` fails with ENOSPC before writing".

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{Storage, StorageFile};

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
    faults: Vec<Fault>,
    /// Faults that fired, in order.
    fired: Vec<Fault>,
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
        let nth = inner.writes;
        inner.writes += 1;
        let fault = inner.faults.iter().copied().find(|f| match *f {
            Fault::ShortWrite { nth: k } | Fault::NoSpace { nth: k } => k == nth,
            Fault::SyncFails { .. } => false,
        });
        if let Some(fault) = fault {
            inner.fired.push(fault);
        }
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
        let mut inner = self.storage.lock();
        let nth = inner.syncs;
        inner.syncs += 1;
        let fault = inner
            .faults
            .iter()
            .copied()
            .find(|f| matches!(*f, Fault::SyncFails { nth: k } if k == nth));
        if let Some(fault) = fault {
            inner.fired.push(fault);
            return Err(io::Error::other("injected fsync failure"));
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
        self.written(path).ok_or_else(|| not_found(path))
    }

    fn exists(&self, path: &Path) -> bool {
        self.lock().names.contains_key(path)
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        let mut inner = self.lock();
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
}

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
