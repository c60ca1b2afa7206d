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

impl Frame<'_> {
    /// Bytes the frame takes in its segment, header included.
    pub fn encoded_len(&self) -> u64 {
        (FRAME_HEADER_BYTES + self.payload.len()) as u64
    }
}

/// How the last segment's damaged tail looks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TailDamage {
    /// The frame is incomplete: its header or payload runs past the end of
    /// the file, as a crash in the middle of a write leaves it.
    Torn,
    /// The frame is complete (its whole length is present) but fails its
    /// checksum or names the wrong event. A crash can leave this too (a
    /// file extended before its data reached the disk), but so can damage
    /// to bytes that were durable: recovery truncates it like a torn tail,
    /// says so at warn level, and the checkpoint catches the loss of an
    /// acknowledged event.
    Corrupt,
}

/// What a segment holds.
#[derive(Debug)]
pub struct SegmentScan<'a> {
    pub first_seq: u64,
    pub frames: Vec<Frame<'a>>,
    /// Bytes up to the end of the last valid frame.
    pub valid_len: u64,
    /// Set when the segment ends in a damaged frame at this offset, after
    /// which no valid frame follows.
    pub torn_at: Option<u64>,
    /// What the damaged tail at `torn_at` looks like.
    pub tail_damage: Option<TailDamage>,
    /// Bytes checksummed by the scan: a measure of its work, which is
    /// linear in the segment's size whatever the bytes are.
    pub checked_bytes: u64,
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
            tail_damage: Some(TailDamage::Torn),
            checked_bytes: 0,
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

impl ScanError {
    /// The error with its offset moved by `base` (for a scan of bytes read
    /// from `base` of a segment).
    pub fn at_offset(self, base: u64) -> ScanError {
        match self {
            ScanError::CorruptFrame { offset, reason } => ScanError::CorruptFrame {
                offset: offset + base,
                reason,
            },
            ScanError::SeqGap {
                offset,
                expected,
                found,
            } => ScanError::SeqGap {
                offset: offset + base,
                expected,
                found,
            },
            other => other,
        }
    }
}

/// Payload bytes a search for a valid frame after a damaged one may
/// checksum, per byte of the segment (headers add at most
/// [`FRAME_HEADER_BYTES`] per offset). Candidates are filtered by their header first
/// (length within the file, sequence number in reach), so real data rarely
/// costs more than a few bytes per byte; bytes crafted to look like many
/// long frames hit this bound and are reported as corruption rather than
/// scanned in quadratic time.
const RESYNC_CHECKED_BYTES_PER_BYTE: u64 = 2;

/// A frame's header fields, read without checking anything but bounds.
#[derive(Clone, Copy, Debug)]
struct Header {
    len: u32,
    crc: u32,
    seq: u64,
    root: Hash32,
}

/// Reads the frame header at `pos`; `None` when fewer than
/// [`FRAME_HEADER_BYTES`] bytes remain.
fn read_header(bytes: &[u8], pos: usize) -> Option<Header> {
    let header = bytes.get(pos..pos.checked_add(FRAME_HEADER_BYTES)?)?;
    let mut root = [0u8; 32];
    root.copy_from_slice(&header[16..48]);
    Some(Header {
        len: u32::from_le_bytes(le4(&header[0..4])),
        crc: u32::from_le_bytes(le4(&header[4..8])),
        seq: u64::from_le_bytes(le8(&header[8..16])),
        root: Hash32(root),
    })
}

/// The payload of the frame at `pos` if its length is within the event
/// size limit and the file holds all of it.
fn payload_of<'a>(bytes: &'a [u8], pos: usize, header: &Header) -> Option<&'a [u8]> {
    if header.len > valori_core::limits::EVENT_BYTES_MAX {
        return None;
    }
    let start = pos + FRAME_HEADER_BYTES;
    bytes.get(start..start.checked_add(header.len as usize)?)
}

/// Whether the frame's checksum holds; adds the bytes checksummed to
/// `checked`.
fn crc_ok(header: &Header, payload: &[u8], checked: &mut u64) -> bool {
    *checked += (FRAME_HEADER_BYTES + payload.len()) as u64;
    frame_crc(header.len, header.seq, &header.root, payload) == header.crc
}

/// Reads every frame of one segment. `is_last` allows a damaged tail: a
/// bad frame after which no valid frame follows. A bad frame followed by a
/// valid one, or any bad frame in an earlier segment, is corruption.
///
/// The work is linear in the segment's size: each frame is checksummed
/// once, and the search for a valid frame after a damaged one looks at the
/// cheap header fields (sequence number in reach, length within the file)
/// before any checksum, within a budget of checksummed bytes.
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
        // The last word is outside the checksum: it must be the zero the
        // writer puts there, so that no byte of a segment goes unchecked.
        || header[28..32] != [0; 4]
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
    let mut checked = 0u64;
    while pos < bytes.len() {
        let header = read_header(bytes, pos);
        let payload = header.and_then(|h| payload_of(bytes, pos, &h).map(|p| (h, p)));
        let (reason, damage) = match payload {
            None if header.is_none() => ("truncated frame header", TailDamage::Torn),
            None => ("truncated frame payload", TailDamage::Torn),
            Some((h, payload)) => {
                if crc_ok(&h, payload, &mut checked) {
                    if h.seq != expected {
                        return Err(ScanError::SeqGap {
                            offset: pos as u64,
                            expected,
                            found: h.seq,
                        });
                    }
                    frames.push(Frame {
                        offset: pos as u64,
                        seq: h.seq,
                        root: h.root,
                        payload,
                    });
                    expected += 1;
                    pos += FRAME_HEADER_BYTES + payload.len();
                    continue;
                }
                ("checksum mismatch", TailDamage::Corrupt)
            }
        };
        if is_last && !valid_frame_after(bytes, pos, expected, &mut checked)? {
            return Ok(SegmentScan {
                first_seq,
                frames,
                valid_len: pos as u64,
                torn_at: Some(pos as u64),
                tail_damage: Some(damage),
                checked_bytes: checked,
            });
        }
        return Err(ScanError::CorruptFrame {
            offset: pos as u64,
            reason,
        });
    }
    Ok(SegmentScan {
        first_seq,
        frames,
        valid_len: pos as u64,
        torn_at: None,
        tail_damage: None,
        checked_bytes: checked,
    })
}

/// Reads the frame at `pos` of `bytes` (a range read from a segment), which
/// must be event `expected` and intact.
pub fn parse_frame_at(bytes: &[u8], pos: usize, expected: u64) -> Result<Frame<'_>, ScanError> {
    let corrupt = |reason| ScanError::CorruptFrame {
        offset: pos as u64,
        reason,
    };
    let header = read_header(bytes, pos).ok_or_else(|| corrupt("truncated frame header"))?;
    if header.seq != expected {
        return Err(ScanError::SeqGap {
            offset: pos as u64,
            expected,
            found: header.seq,
        });
    }
    let payload =
        payload_of(bytes, pos, &header).ok_or_else(|| corrupt("truncated frame payload"))?;
    if !crc_ok(&header, payload, &mut 0) {
        return Err(corrupt("checksum mismatch"));
    }
    Ok(Frame {
        offset: pos as u64,
        seq: header.seq,
        root: header.root,
        payload,
    })
}

/// Whether a valid frame of event `expected` or later starts after the
/// damaged frame at `damaged`. Every later offset is a candidate, but only
/// one whose sequence number is in reach (no more events ahead than
/// frames fit in the rest of the file) and whose length fits in the file
/// is checksummed, within [`RESYNC_CHECKED_BYTES_PER_BYTE`]; past that
/// budget the damage is reported as corruption, not guessed to be a tail.
fn valid_frame_after(
    bytes: &[u8],
    damaged: usize,
    expected: u64,
    checked: &mut u64,
) -> Result<bool, ScanError> {
    let reach = (bytes.len() / FRAME_HEADER_BYTES) as u64;
    // Headers cost at most FRAME_HEADER_BYTES per offset (linear already);
    // the budget bounds the payload bytes, which could be long.
    let budget = RESYNC_CHECKED_BYTES_PER_BYTE * bytes.len() as u64;
    let mut payload_checked = 0u64;
    for p in damaged + 1..bytes.len().saturating_sub(FRAME_HEADER_BYTES - 1) {
        let Some(h) = read_header(bytes, p) else {
            break;
        };
        if h.seq < expected || h.seq - expected > reach {
            continue;
        }
        let Some(payload) = payload_of(bytes, p, &h) else {
            continue;
        };
        payload_checked += payload.len() as u64;
        if payload_checked > budget {
            return Err(ScanError::CorruptFrame {
                offset: damaged as u64,
                reason: "damaged frame followed by too many frame-like headers to rule out a valid frame after it",
            });
        }
        if crc_ok(&h, payload, checked) {
            return Ok(true);
        }
    }
    Ok(false)
}

fn le4(b: &[u8]) -> [u8; 4] {
    [b[0], b[1], b[2], b[3]]
}

fn le8(b: &[u8]) -> [u8; 8] {
    [b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]
}

/// Where each event's frame is: per segment (by its first sequence number),
/// the offset of every frame and the end of the last one. Built by
/// recovery, extended at each durable append, trimmed when segments are
/// retired, so that reading an event reads one frame, not its segment.
#[derive(Debug, Default)]
pub(crate) struct FrameIndex {
    segments: std::collections::BTreeMap<u64, SegmentFrames>,
}

#[derive(Debug)]
struct SegmentFrames {
    /// Offset of frame `first + i`.
    offsets: Vec<u64>,
    /// End of the last frame (the segment header's end when empty).
    end: u64,
}

/// A run of consecutive frames in one segment: read `len` bytes at
/// `offset` of the segment whose first event is `segment_first`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FrameRun {
    pub segment_first: u64,
    pub first_seq: u64,
    pub frames: u64,
    pub offset: u64,
    pub len: u64,
}

impl FrameIndex {
    /// Records a segment's frames as a scan found them.
    pub fn add_segment(&mut self, first: u64, offsets: Vec<u64>, end: u64) {
        self.segments.insert(first, SegmentFrames { offsets, end });
    }

    /// Records frames appended at `at` of segment `first`, starting at the
    /// given offsets relative to `at`, `len` bytes in all.
    pub fn append(&mut self, first: u64, at: u64, starts: &[u64], len: u64) {
        let seg = self.segments.entry(first).or_insert(SegmentFrames {
            offsets: Vec::new(),
            end: at,
        });
        seg.offsets.extend(starts.iter().map(|s| at + s));
        seg.end = at + len;
    }

    /// Forgets a retired segment.
    pub fn remove_segment(&mut self, first: u64) {
        self.segments.remove(&first);
    }

    /// The frames of events `from..to` that the segment holding `from`
    /// has, as one contiguous run; `None` when no segment holds `from`.
    pub fn run(&self, from: u64, to: u64) -> Option<FrameRun> {
        let (&first, seg) = self.segments.range(..=from).next_back()?;
        let i = usize::try_from(from - first).ok()?;
        let start = *seg.offsets.get(i)?;
        let n = (seg.offsets.len() - i).min(usize::try_from(to.saturating_sub(from)).ok()?);
        if n == 0 {
            return None;
        }
        let end = seg.offsets.get(i + n).copied().unwrap_or(seg.end);
        Some(FrameRun {
            segment_first: first,
            first_seq: from,
            frames: n as u64,
            offset: start,
            len: end - start,
        })
    }
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
    /// Bytes of the open segment known durable (at its last fsync).
    durable_len: u64,
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
            durable_len: SEGMENT_HEADER_BYTES as u64,
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
            durable_len: valid_len.max(SEGMENT_HEADER_BYTES as u64),
            segment_bytes_max,
        })
    }

    /// First sequence number of the open segment.
    pub fn segment_first(&self) -> u64 {
        self.segment_first
    }

    /// Writes `frames` (whole frames, the first of which is `first_seq`) and
    /// makes them durable. Starts a new segment first when the open one is
    /// full. Returns only after the bytes are durable, with the segment
    /// (its first sequence number) and the offset the frames start at.
    pub fn append_durable(
        &mut self,
        storage: &dyn Storage,
        first_seq: u64,
        frames: &[u8],
    ) -> Result<(u64, u64), EngineError> {
        if self.segment_len > SEGMENT_HEADER_BYTES as u64
            && self.segment_len + frames.len() as u64 > self.segment_bytes_max
        {
            *self = WalWriter::create(storage, &self.dir, first_seq, self.segment_bytes_max)?;
        }
        let path = self.dir.join(segment_name(self.segment_first));
        let at = self.segment_len;
        let written = self
            .file
            .write_all(frames)
            .map_err(|e| EngineError::storage(StorageOp::Write, &path, e))
            .and_then(|()| {
                self.segment_len += frames.len() as u64;
                self.file
                    .sync()
                    .map_err(|e| EngineError::storage(StorageOp::Sync, &path, e))
            });
        if let Err(e) = written {
            // The group's writers are told it failed, so its frames must
            // not come back after a restart.
            self.cut_to_durable();
            return Err(e);
        }
        self.durable_len = self.segment_len;
        Ok((self.segment_first, at))
    }

    /// Cuts the open segment back to its last durable frame and fsyncs it,
    /// after a write whose writers are told it failed, so that its frames
    /// do not come back after a restart. If the disk refuses, the frames
    /// may survive whole or torn, and recovery takes what the disk kept.
    pub fn cut_to_durable(&mut self) {
        let path = self.dir.join(segment_name(self.segment_first));
        let at = self.durable_len;
        match self.file.set_len(at).and_then(|()| self.file.sync()) {
            Ok(()) => self.segment_len = at,
            Err(cut) => tracing::warn!(
                segment = %path.display(),
                offset = at,
                error = %cut,
                "could not cut the log back after a failed write; unacknowledged frames may survive a restart"
            ),
        }
    }

    /// Bytes in the open segment.
    pub fn segment_len(&self) -> u64 {
        self.segment_len
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

    /// A batch-like payload: little-endian i32 values below `max`, so
    /// that at every aligned offset inside it the frame-length field is a
    /// length that fits in the file (the shape that made the old torn-tail
    /// search checksum about n²/8 bytes).
    fn vector_payload(bytes: usize, max: u32) -> Vec<u8> {
        let mut rng = valori_core::rng::SplitMix64::new(7);
        let mut out = Vec::with_capacity(bytes);
        while out.len() < bytes {
            out.extend_from_slice(&(rng.below(u64::from(max)) as u32).to_le_bytes());
        }
        out
    }

    /// A torn 3 MiB frame at the end of the last segment is found with
    /// work linear in the segment's size: the bytes checksummed stay
    /// within a small multiple of the segment, counted by the scan itself
    /// (not timed).
    #[test]
    fn torn_large_frame_scans_in_linear_work() {
        const FRAME_PAYLOAD_BYTES: usize = 3 << 20;
        let mut bytes = segment(&[(0, b"first"), (1, b"second")]);
        let good_len = bytes.len();
        let payload = vector_payload(FRAME_PAYLOAD_BYTES, 1 << 18);
        encode_frame(&mut bytes, 2, &Hash32([2; 32]), &payload);
        // Half of the frame reached the disk.
        bytes.truncate(good_len + FRAME_HEADER_BYTES + FRAME_PAYLOAD_BYTES / 2);
        let scan = scan_segment(&bytes, 0, true).unwrap();
        assert_eq!(scan.frames.len(), 2);
        assert_eq!(scan.torn_at, Some(good_len as u64));
        assert_eq!(scan.tail_damage, Some(TailDamage::Torn));
        // One pass over the valid frames, a header per later offset, and
        // the payload budget.
        let bound =
            (1 + FRAME_HEADER_BYTES as u64 + RESYNC_CHECKED_BYTES_PER_BYTE) * bytes.len() as u64;
        eprintln!(
            "checksummed {} bytes for a segment of {}",
            scan.checked_bytes,
            bytes.len()
        );
        assert!(
            scan.checked_bytes <= bound,
            "checksummed {} bytes for a segment of {} (bound {bound})",
            scan.checked_bytes,
            bytes.len()
        );
    }

    /// Bytes crafted so that every offset after a damaged frame looks like
    /// a frame of the expected event that fits in the file end the search
    /// at its budget as corruption, never in quadratic work.
    #[test]
    fn crafted_frame_like_bytes_hit_the_budget() {
        let mut bytes = segment(&[(0, b"first")]);
        let damaged = bytes.len();
        // Frame headers claiming event 1 with a length reaching almost to
        // the end, one every 48 bytes; none checksums.
        let count = 2000usize;
        let end = damaged + count * FRAME_HEADER_BYTES + 1;
        for i in 0..count {
            let at = damaged + i * FRAME_HEADER_BYTES;
            let len = (end - at - FRAME_HEADER_BYTES) as u32;
            let mut h = [0u8; FRAME_HEADER_BYTES];
            h[0..4].copy_from_slice(&len.to_le_bytes());
            h[8..16].copy_from_slice(&1u64.to_le_bytes());
            bytes.extend_from_slice(&h);
        }
        bytes.push(0);
        match scan_segment(&bytes, 0, true) {
            Err(ScanError::CorruptFrame { offset, .. }) => assert_eq!(offset, damaged as u64),
            other => panic!("expected corruption at {damaged}, got {other:?}"),
        }
    }

    /// A complete last frame with a bad checksum is a corrupt tail, told
    /// apart from a torn (incomplete) one; both are truncatable tails of
    /// the last segment.
    #[test]
    fn corrupt_last_frame_is_told_from_torn() {
        let bytes = segment(&[(0, b"first"), (1, b"second")]);
        let second = SEGMENT_HEADER_BYTES + FRAME_HEADER_BYTES + 5;
        let mut corrupt = bytes.clone();
        *corrupt.last_mut().unwrap() ^= 1;
        let scan = scan_segment(&corrupt, 0, true).unwrap();
        assert_eq!(scan.torn_at, Some(second as u64));
        assert_eq!(scan.tail_damage, Some(TailDamage::Corrupt));
        let scan = scan_segment(&bytes[..bytes.len() - 1], 0, true).unwrap();
        assert_eq!(scan.tail_damage, Some(TailDamage::Torn));
    }

    /// Segment names round-trip and reject anything else.
    #[test]
    fn segment_names() {
        assert_eq!(parse_segment_name(&segment_name(42)), Some(42));
        assert_eq!(parse_segment_name("42.wal"), None);
        assert_eq!(parse_segment_name("0000000000000000004x.wal"), None);
    }
}
