//! The event log: segment files of length-prefixed, checksummed frames.
//!
//! Byte layout in docs/format.md ("The event log"). A frame carries its
//! event's sequence number and the Merkle root of the log up to and
//! including it, so each frame is chained to every frame before it and a
//! reader can check roots without trusting anything but the first frame.
//!
//! Reading is a pure function of bytes ([`scan_segment`]); writing goes
//! through [`Storage`]. A frame that fails its checksum at the end of the
//! last segment is a torn write and is truncated by recovery; anywhere else
//! it is corruption, reported with its segment and offset.

use std::path::{Path, PathBuf};

use valori_core::hash::Hash32;

use crate::error::{EngineError, StorageOp};
use crate::storage::{Storage, StorageFile};

/// Opening bytes of every segment.
pub const SEGMENT_MAGIC: [u8; 8] = *b"VALORWAL";
/// Segment format version.
pub const SEGMENT_VERSION: u32 = 1;
/// Segment header: magic, version, reserved u32, first_seq u64, crc u32,
/// reserved u32.
pub const SEGMENT_HEADER_BYTES: usize = 32;
/// Frame header: len u32, crc u32, seq u64, root 32 bytes.
pub const FRAME_HEADER_BYTES: usize = 48;
/// Default size at which a new segment is started.
pub const WAL_SEGMENT_BYTES_MAX: u64 = 64 * 1024 * 1024;

/// File name of the segment whose first frame is `first_seq`.
pub fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}.wal")
}

/// Parses a segment file name back to its first sequence number.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".wal")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The segment header bytes.
pub fn segment_header(first_seq: u64) -> [u8; SEGMENT_HEADER_BYTES] {
    let mut h = [0u8; SEGMENT_HEADER_BYTES];
    h[0..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
    h[16..24].copy_from_slice(&first_seq.to_le_bytes());
    let crc = crc32c::crc32c(&h[0..24]);
    h[24..28].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Appends one frame to `out`.
pub fn encode_frame(out: &mut Vec<u8>, seq: u64, root: &Hash32, payload: &[u8]) {
    let len = payload.len() as u32;
    let crc = frame_crc(len, seq, root, payload);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(root.as_bytes());
    out.extend_from_slice(payload);
}

/// Starts a frame in `out` whose payload the caller appends next; returns
/// the frame's start for [`finish_frame`]. Encoding the event straight into
/// the group's buffer avoids a fresh allocation per event.
pub fn begin_frame(out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.resize(start + FRAME_HEADER_BYTES, 0);
    start
}

/// The payload of the frame begun at `start`.
pub fn frame_payload(out: &[u8], start: usize) -> &[u8] {
    &out[start + FRAME_HEADER_BYTES..]
}

/// Fills in the header of the frame begun at `start`, whose payload is
/// everything after the header.
pub fn finish_frame(out: &mut [u8], start: usize, seq: u64, root: &Hash32) {
    let (header, payload) = out[start..].split_at_mut(FRAME_HEADER_BYTES);
    let len = payload.len() as u32;
    let crc = frame_crc(len, seq, root, payload);
    header[0..4].copy_from_slice(&len.to_le_bytes());
    header[4..8].copy_from_slice(&crc.to_le_bytes());
    header[8..16].copy_from_slice(&seq.to_le_bytes());
    header[16..48].copy_from_slice(root.as_bytes());
}

fn frame_crc(len: u32, seq: u64, root: &Hash32, payload: &[u8]) -> u32 {
    let mut crc = crc32c::crc32c(&len.to_le_bytes());
    crc = crc32c::crc32c_append(crc, &seq.to_le_bytes());
    crc = crc32c::crc32c_append(crc, root.as_bytes());
    crc32c::crc32c_append(crc, payload)
}

/// One frame found in a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Byte offset of the frame in its segment.
    pub offset: u64,
    pub seq: u64,
    pub root: Hash32,
    pub payload: &'a [u8],
}

/// What a segment holds.
#[derive(Debug)]
pub struct SegmentScan<'a> {
    pub first_seq: u64,
    pub frames: Vec<Frame<'a>>,
    /// Bytes up to the end of the last valid frame.
    pub valid_len: u64,
    /// Set when the segment ends in a torn frame at this offset.
    pub torn_at: Option<u64>,
}

impl SegmentScan<'_> {
    /// The newest segment whose header a crash tore: no frames, and the
    /// whole file is the torn tail.
    fn torn_header(name_seq: u64) -> Self {
        SegmentScan {
            first_seq: name_seq,
            frames: Vec::new(),
            valid_len: 0,
            torn_at: Some(0),
        }
    }
}

/// Why a segment cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScanError {
    #[error("bad segment header")]
    BadHeader,
    #[error("segment header says first event {header}, file name says {name}")]
    FirstSeqMismatch { header: u64, name: u64 },
    #[error("corrupt frame at offset {offset}: {reason}")]
    CorruptFrame { offset: u64, reason: &'static str },
    #[error("frame at offset {offset} has event {found}, expected {expected}")]
    SeqGap {
        offset: u64,
        expected: u64,
        found: u64,
    },
}

/// Reads every frame of one segment. `is_last` allows a torn tail: a bad
/// frame after which no valid frame follows. A bad frame followed by a
/// valid one, or any bad frame in an earlier segment, is corruption.
pub fn scan_segment(
    bytes: &[u8],
    name_seq: u64,
    is_last: bool,
) -> Result<SegmentScan<'_>, ScanError> {
    if bytes.len() < SEGMENT_HEADER_BYTES {
        // A crash right after creating the file can leave a short header
        // in the newest segment.
        if is_last {
            return Ok(SegmentScan::torn_header(name_seq));
        }
        return Err(ScanError::BadHeader);
    }
    let header = &bytes[..SEGMENT_HEADER_BYTES];
    let crc = u32::from_le_bytes(le4(&header[24..28]));
    if header[0..8] != SEGMENT_MAGIC
        || u32::from_le_bytes(le4(&header[8..12])) != SEGMENT_VERSION
        || crc32c::crc32c(&header[0..24]) != crc
    {
        if is_last && bytes[SEGMENT_HEADER_BYTES..].iter().all(|&b| b == 0) {
            return Ok(SegmentScan::torn_header(name_seq));
        }
        return Err(ScanError::BadHeader);
    }
    let first_seq = u64::from_le_bytes(le8(&header[16..24]));
    if first_seq != name_seq {
        return Err(ScanError::FirstSeqMismatch {
            header: first_seq,
            name: name_seq,
        });
    }
    let mut frames = Vec::new();
    let mut pos = SEGMENT_HEADER_BYTES;
    let mut expected = first_seq;
    while pos < bytes.len() {
        match parse_frame(bytes, pos) {
            Ok(frame) => {
                if frame.seq != expected {
                    return Err(ScanError::SeqGap {
                        offset: pos as u64,
                        expected,
                        found: frame.seq,
                    });
                }
                expected += 1;
                pos += FRAME_HEADER_BYTES + frame.payload.len();
                frames.push(frame);
            }
            Err(reason) => {
                let later_valid = (pos + 1..bytes.len())
                    .any(|p| parse_frame(bytes, p).is_ok_and(|f| f.seq >= expected));
                if is_last && !later_valid {
                    return Ok(SegmentScan {
                        first_seq,
                        frames,
                        valid_len: pos as u64,
                        torn_at: Some(pos as u64),
                    });
                }
                return Err(ScanError::CorruptFrame {
                    offset: pos as u64,
                    reason,
                });
            }
        }
    }
    Ok(SegmentScan {
        first_seq,
        frames,
        valid_len: pos as u64,
        torn_at: None,
    })
}

fn parse_frame(bytes: &[u8], pos: usize) -> Result<Frame<'_>, &'static str> {
    let header = bytes
        .get(pos..pos + FRAME_HEADER_BYTES)
        .ok_or("truncated frame header")?;
    let len = u32::from_le_bytes(le4(&header[0..4]));
    if len > valori_core::limits::EVENT_BYTES_MAX {
        return Err("frame length exceeds the event size limit");
    }
    let crc = u32::from_le_bytes(le4(&header[4..8]));
    let seq = u64::from_le_bytes(le8(&header[8..16]));
    let mut root = [0u8; 32];
    root.copy_from_slice(&header[16..48]);
    let root = Hash32(root);
    let start = pos + FRAME_HEADER_BYTES;
    let payload = bytes
        .get(start..start + len as usize)
        .ok_or("truncated frame payload")?;
    if frame_crc(len, seq, &root, payload) != crc {
        return Err("checksum mismatch");
    }
    Ok(Frame {
        offset: pos as u64,
        seq,
        root,
        payload,
    })
}

fn le4(b: &[u8]) -> [u8; 4] {
    [b[0], b[1], b[2], b[3]]
}

fn le8(b: &[u8]) -> [u8; 8] {
    [b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]
}

/// The open tail of the log: the segment frames are appended to.
#[derive(Debug)]
pub struct WalWriter {
    dir: PathBuf,
    file: Box<dyn StorageFile>,
    /// First sequence number of the open segment.
    segment_first: u64,
    /// Bytes in the open segment.
    segment_len: u64,
    segment_bytes_max: u64,
}

impl WalWriter {
    /// Creates a new segment starting at `first_seq` and makes its name
    /// durable.
    pub fn create(
        storage: &dyn Storage,
        dir: &Path,
        first_seq: u64,
        segment_bytes_max: u64,
    ) -> Result<WalWriter, EngineError> {
        let path = dir.join(segment_name(first_seq));
        let io = |op, e| EngineError::storage(op, &path, e);
        let mut file = storage
            .create(&path)
            .map_err(|e| io(StorageOp::Create, e))?;
        file.write_all(&segment_header(first_seq))
            .map_err(|e| io(StorageOp::Write, e))?;
        file.sync().map_err(|e| io(StorageOp::Sync, e))?;
        storage
            .sync_dir(dir)
            .map_err(|e| io(StorageOp::SyncDir, e))?;
        Ok(WalWriter {
            dir: dir.to_path_buf(),
            file,
            segment_first: first_seq,
            segment_len: SEGMENT_HEADER_BYTES as u64,
            segment_bytes_max,
        })
    }

    /// Reopens an existing segment whose valid bytes end at `valid_len`,
    /// truncating anything after (a torn tail).
    pub fn reopen(
        storage: &dyn Storage,
        dir: &Path,
        first_seq: u64,
        valid_len: u64,
        file_len: u64,
        segment_bytes_max: u64,
    ) -> Result<WalWriter, EngineError> {
        let path = dir.join(segment_name(first_seq));
        let io = |op, e| EngineError::storage(op, &path, e);
        let mut file = storage
            .open_append(&path)
            .map_err(|e| io(StorageOp::Open, e))?;
        if valid_len < SEGMENT_HEADER_BYTES as u64 {
            // The header itself was torn: rewrite it.
            file.set_len(0).map_err(|e| io(StorageOp::Truncate, e))?;
            file.write_all(&segment_header(first_seq))
                .map_err(|e| io(StorageOp::Write, e))?;
            file.sync().map_err(|e| io(StorageOp::Sync, e))?;
        } else if file_len != valid_len {
            file.set_len(valid_len)
                .map_err(|e| io(StorageOp::Truncate, e))?;
            file.sync().map_err(|e| io(StorageOp::Sync, e))?;
        }
        Ok(WalWriter {
            dir: dir.to_path_buf(),
            file,
            segment_first: first_seq,
            segment_len: valid_len.max(SEGMENT_HEADER_BYTES as u64),
            segment_bytes_max,
        })
    }

    /// First sequence number of the open segment.
    pub fn segment_first(&self) -> u64 {
        self.segment_first
    }

    /// Writes `frames` (whole frames, the first of which is `first_seq`) and
    /// makes them durable. Starts a new segment first when the open one is
    /// full. Returns only after the bytes are durable.
    pub fn append_durable(
        &mut self,
        storage: &dyn Storage,
        first_seq: u64,
        frames: &[u8],
    ) -> Result<(), EngineError> {
        if self.segment_len > SEGMENT_HEADER_BYTES as u64
            && self.segment_len + frames.len() as u64 > self.segment_bytes_max
        {
            *self = WalWriter::create(storage, &self.dir, first_seq, self.segment_bytes_max)?;
        }
        let path = self.dir.join(segment_name(self.segment_first));
        self.file
            .write_all(frames)
            .map_err(|e| EngineError::storage(StorageOp::Write, &path, e))?;
        self.segment_len += frames.len() as u64;
        self.file
            .sync()
            .map_err(|e| EngineError::storage(StorageOp::Sync, &path, e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(frames: &[(u64, &[u8])]) -> Vec<u8> {
        let mut out = segment_header(frames.first().map_or(0, |f| f.0)).to_vec();
        for (seq, payload) in frames {
            encode_frame(&mut out, *seq, &Hash32([*seq as u8; 32]), payload);
        }
        out
    }

    /// Every frame written is read back with its seq, root and payload.
    #[test]
    fn frames_round_trip() {
        let bytes = segment(&[(5, b"a"), (6, b""), (7, b"hello")]);
        let scan = scan_segment(&bytes, 5, false).unwrap();
        assert_eq!(scan.frames.len(), 3);
        assert_eq!(scan.frames[2].payload, b"hello");
        assert_eq!(scan.frames[1].root, Hash32([6; 32]));
        assert_eq!(scan.valid_len, bytes.len() as u64);
        assert_eq!(scan.torn_at, None);
    }

    /// Any cut inside the last frame is a torn tail in the last segment and
    /// corruption in an earlier one.
    #[test]
    fn torn_tail_only_at_the_end() {
        let bytes = segment(&[(0, b"first"), (1, b"second")]);
        let second = SEGMENT_HEADER_BYTES + FRAME_HEADER_BYTES + 5;
        for cut in second + 1..bytes.len() {
            let scan = scan_segment(&bytes[..cut], 0, true).unwrap();
            assert_eq!(scan.frames.len(), 1);
            assert_eq!(scan.torn_at, Some(second as u64));
            assert!(matches!(
                scan_segment(&bytes[..cut], 0, false),
                Err(ScanError::CorruptFrame { .. })
            ));
        }
    }

    /// A flipped byte in a frame followed by a valid frame is corruption
    /// naming the offset, even in the last segment.
    #[test]
    fn corruption_in_the_middle_is_an_error() {
        let mut bytes = segment(&[(0, b"first"), (1, b"second")]);
        bytes[SEGMENT_HEADER_BYTES + FRAME_HEADER_BYTES + 1] ^= 1;
        assert_eq!(
            scan_segment(&bytes, 0, true).unwrap_err(),
            ScanError::CorruptFrame {
                offset: SEGMENT_HEADER_BYTES as u64,
                reason: "checksum mismatch"
            }
        );
    }

    /// Segment names round-trip and reject anything else.
    #[test]
    fn segment_names() {
        assert_eq!(parse_segment_name(&segment_name(42)), Some(42));
        assert_eq!(parse_segment_name("42.wal"), None);
        assert_eq!(parse_segment_name("0000000000000000004x.wal"), None);
    }
}
