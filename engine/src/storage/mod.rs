//! The storage seam: the few file operations the log and the snapshots
//! need. [`FsStorage`] is the real file system; [`sim::SimStorage`] models
//! written-versus-durable bytes and injects failures for tests.
//!
//! What the engine assumes of storage (see docs/format.md, "What Valori
//! assumes of the disk"): bytes written to a file are durable once `sync`
//! returns Ok; a new name, a rename or a removal is durable once `sync_dir`
//! of the parent returns Ok; a failed `sync` leaves the file's durable
//! content unknown.

pub mod sim;

use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

/// A file open for writing.
pub trait StorageFile: Send + Debug {
    /// Writes all of `buf` at the end of the file.
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()>;
    /// Makes everything written so far durable (fdatasync).
    fn sync(&mut self) -> io::Result<()>;
    /// Truncates or extends the file; the position moves to the new end.
    fn set_len(&mut self, len: u64) -> io::Result<()>;
}

/// The file operations of the engine.
pub trait Storage: Send + Sync + Debug {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// File names in `dir`, sorted.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Up to `len` bytes of `path` from `offset` (fewer at the end of the
    /// file), so that one frame is read without reading its segment.
    fn read_range(&self, path: &Path, offset: u64, len: u64) -> io::Result<Vec<u8>>;
    fn exists(&self, path: &Path) -> bool;
    /// Creates (or truncates) `path` for writing.
    fn create(&self, path: &Path) -> io::Result<Box<dyn StorageFile>>;
    /// Opens an existing file for appending.
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn StorageFile>>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes the directory's entries (creations, renames, removals) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Takes an exclusive lock on `path` (created if missing) for as long
    /// as the returned guard lives, and writes `owner` into the file so
    /// that a refused opener can say who holds it. Fails with
    /// [`io::ErrorKind::WouldBlock`] when another holder has it.
    fn lock_file(&self, path: &Path, owner: &[u8]) -> io::Result<Box<dyn LockGuard>>;
}

/// Holds a [`Storage::lock_file`] until dropped.
pub trait LockGuard: Send + Sync + Debug {}

/// The real file system.
#[derive(Clone, Copy, Debug, Default)]
pub struct FsStorage;

#[derive(Debug)]
struct FsFile {
    file: File,
}

impl StorageFile for FsFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.file.write_all(buf)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        use std::io::Seek;
        self.file.set_len(len)?;
        self.file.seek(io::SeekFrom::Start(len))?;
        Ok(())
    }
}

impl Storage for FsStorage {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file()
                && let Some(name) = entry.file_name().to_str()
            {
                names.push(name.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }

    fn read_range(&self, path: &Path, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        use std::io::{Read, Seek};
        let mut file = File::open(path)?;
        file.seek(io::SeekFrom::Start(offset))?;
        // The length comes from the engine's own frame index, but the file
        // may be shorter than the index says: read what is there.
        let mut out = Vec::new();
        file.take(len).read_to_end(&mut out)?;
        Ok(out)
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        Ok(Box::new(FsFile { file }))
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        let file = OpenOptions::new().append(true).open(path)?;
        Ok(Box::new(FsFile { file }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn lock_file(&self, path: &Path, owner: &[u8]) -> io::Result<Box<dyn LockGuard>> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        // flock: held by this open file description until it is closed,
        // released by the kernel when the process dies (even by SIGKILL).
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    "locked by another holder",
                ));
            }
            Err(fs::TryLockError::Error(e)) => return Err(e),
        }
        file.set_len(0)?;
        file.write_all(owner)?;
        // The owner is advice for a refused opener; a crash that loses it
        // loses nothing else (the lock dies with the process).
        Ok(Box::new(FsLock { _file: file }))
    }
}

#[derive(Debug)]
struct FsLock {
    _file: File,
}

impl LockGuard for FsLock {}
