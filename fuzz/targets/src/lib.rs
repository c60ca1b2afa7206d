//! Fuzz targets: one function per decoder or parser that takes untrusted
//! bytes. Each takes any `&[u8]` and panics only when an invariant of its
//! target breaks:
//!
//! - every target: no panic, no stack overflow, no allocation the input
//!   does not pay for, on any input;
//! - decoders ([`event`], [`wal_frame`], [`wal_segment`], [`checkpoint`],
//!   [`snapshot`]): whatever they accept re-encodes to exactly the bytes
//!   read (the formats are canonical, so a hash of the bytes is a hash of
//!   the value);
//! - parsers (DSL, SQL, Postgres, REST): bad input is a clean `Err`.
//!
//! The same functions run under libFuzzer (`fuzz/`, coverage-guided) and in
//! the short run of the test command (`tests/short.rs`, mutation fuzzing
//! without coverage guidance). [`TARGETS`] lists them by name; the name is
//! also the folder of the target's seeds and regressions under `fuzz/`.

pub mod mutate;
pub mod seeds;
#[cfg(feature = "sql")]
mod sql;

use valori_columnar::snapshot::{read_snapshot, write_snapshot};
use valori_core::event::Event;
use valori_engine::fuzzing::{decode_checkpoint, encode_checkpoint};
use valori_engine::wal::{
    FRAME_HEADER_BYTES, SEGMENT_HEADER_BYTES, encode_frame, parse_frame_at, scan_segment,
    segment_header,
};

#[cfg(feature = "sql")]
pub use sql::{dsl, pg_message, pg_param, rest_body, sql, sql_write};

/// A fuzz target: a name (its folder under `fuzz/seeds` and
/// `fuzz/regressions`) and the function that checks one input.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]),
}

/// Every target of this build.
pub const TARGETS: &[Target] = &[
    Target {
        name: "event",
        run: event,
    },
    Target {
        name: "wal_frame",
        run: wal_frame,
    },
    Target {
        name: "wal_segment",
        run: wal_segment,
    },
    Target {
        name: "checkpoint",
        run: checkpoint,
    },
    Target {
        name: "snapshot",
        run: snapshot,
    },
    #[cfg(feature = "sql")]
    Target {
        name: "dsl",
        run: dsl,
    },
    #[cfg(feature = "sql")]
    Target {
        name: "sql",
        run: sql,
    },
    #[cfg(feature = "sql")]
    Target {
        name: "sql_write",
        run: sql_write,
    },
    #[cfg(feature = "sql")]
    Target {
        name: "pg_param",
        run: pg_param,
    },
    #[cfg(feature = "sql")]
    Target {
        name: "pg_message",
        run: pg_message,
    },
    #[cfg(feature = "sql")]
    Target {
        name: "rest_body",
        run: rest_body,
    },
];

/// The target called `name`.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().copied().find(|t| t.name == name)
}

/// The event decoder (`Event::decode`): canonical on what it accepts.
pub fn event(data: &[u8]) {
    if let Ok(event) = Event::decode(data) {
        assert_eq!(
            event.encode(),
            data,
            "non-canonical: decode accepted bytes that re-encode differently ({event:?})"
        );
    }
}

/// One log frame (`parse_frame_at` at offset 0, expecting the sequence
/// number the header names): an accepted frame re-encodes to the bytes it
/// was read from, and its payload goes through the event decoder.
pub fn wal_frame(data: &[u8]) {
    let expected = data
        .get(8..16)
        .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])));
    if let Ok(frame) = parse_frame_at(data, 0, expected) {
        assert_eq!(frame.offset, 0);
        assert_eq!(frame.seq, expected);
        let mut out = Vec::new();
        encode_frame(&mut out, frame.seq, &frame.root, frame.payload);
        assert_eq!(out.len() as u64, frame.encoded_len());
        assert_eq!(
            out,
            data[..out.len()],
            "an accepted frame re-encodes differently"
        );
        event(frame.payload);
    }
}

/// A whole segment (`scan_segment`). The first byte chooses whether it is
/// the newest segment (bit 0: a damaged tail is allowed) and whether the
/// file name agrees with the header (bit 1 clear) or says event 0. What a
/// scan accepts is exactly the header and its frames, end to end, in
/// sequence; a clean scan covers the whole file; the work is linear.
pub fn wal_segment(data: &[u8]) {
    let Some((&flags, bytes)) = data.split_first() else {
        return;
    };
    let is_last = flags & 1 == 1;
    let name_seq = match bytes.get(16..24) {
        Some(b) if flags & 2 == 0 => u64::from_le_bytes(b.try_into().unwrap_or([0; 8])),
        _ => 0,
    };
    let Ok(scan) = scan_segment(bytes, name_seq, is_last) else {
        return;
    };
    let len = bytes.len() as u64;
    assert!(scan.valid_len <= len);
    assert!(
        scan.checked_bytes <= (FRAME_HEADER_BYTES as u64 + 3) * len,
        "scan checksummed {} bytes of a {len}-byte segment",
        scan.checked_bytes
    );
    match scan.torn_at {
        None => assert_eq!(scan.valid_len, len, "a clean scan must cover the file"),
        Some(at) => {
            assert!(is_last, "only the newest segment may have a damaged tail");
            assert_eq!(at, scan.valid_len);
            assert!(scan.tail_damage.is_some());
        }
    }
    if scan.frames.is_empty() && scan.valid_len == 0 {
        // A torn segment header: nothing was read.
        assert!(is_last);
        return;
    }
    let mut rebuilt = segment_header(scan.first_seq).to_vec();
    assert_eq!(rebuilt.len(), SEGMENT_HEADER_BYTES);
    for (i, frame) in scan.frames.iter().enumerate() {
        assert_eq!(
            frame.seq,
            scan.first_seq + i as u64,
            "frames out of sequence"
        );
        assert_eq!(frame.offset, rebuilt.len() as u64);
        encode_frame(&mut rebuilt, frame.seq, &frame.root, frame.payload);
        event(frame.payload);
    }
    assert_eq!(
        rebuilt,
        bytes[..scan.valid_len as usize],
        "the frames read do not re-encode to the bytes they were read from"
    );
}

/// The checkpoint file as recovery decodes it: canonical when accepted.
pub fn checkpoint(data: &[u8]) {
    if let Some(c) = decode_checkpoint(data) {
        assert_eq!(
            encode_checkpoint(&c),
            data,
            "an accepted checkpoint re-encodes differently"
        );
    }
}

/// The snapshot reader (`read_snapshot`): an accepted file is rewritten
/// byte for byte by the writer, from the state and position it yields; a
/// file of an older format version the reader still accepts is rewritten
/// in the current version, to a file that reads back to the same state
/// and position and is itself rewritten byte for byte.
pub fn snapshot(data: &[u8]) {
    if let Ok((mut state, meta)) = read_snapshot(data) {
        let mut out = Vec::new();
        let written = write_snapshot(&mut state, &meta, &mut out);
        assert!(
            written.is_ok(),
            "the writer refuses what the reader accepted: {written:?}"
        );
        let current = data.get(8..12)
            == Some(&valori_columnar::snapshot::SNAPSHOT_FORMAT_VERSION.to_le_bytes()[..]);
        if current {
            assert!(out == data, "an accepted snapshot is rewritten differently");
            return;
        }
        let (mut again, again_meta) =
            read_snapshot(&out).expect("a rewritten older snapshot reads back");
        assert!(
            again_meta == meta,
            "an older snapshot's position changed when rewritten"
        );
        let mut twice = Vec::new();
        write_snapshot(&mut again, &again_meta, &mut twice)
            .expect("the writer accepts what it wrote");
        assert!(
            twice == out,
            "a rewritten older snapshot is rewritten differently"
        );
    }
}
