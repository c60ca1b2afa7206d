//! Deterministic mutation of inputs for the short run (`tests/short.rs`):
//! byte flips, random and boundary values, inserts, deletes, repeats and
//! splices between seeds, driven by a seeded PRNG so that any failure
//! replays from its seed. There is no coverage feedback: this is mutation
//! fuzzing without coverage guidance, a smoke test of every target on
//! every run; libFuzzer (`fuzz/`) does the guided search.

/// SplitMix64: small, fast, and the same on every platform.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Largest input the mutator makes; parsers refuse longer text anyway,
/// and the short run must stay short.
pub const MUTANT_BYTES_MAX: usize = 64 * 1024;

/// Integers at the edges of every width, written little- or big-endian.
const BOUNDARY: &[u64] = &[
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0x100,
    0x7fff,
    0x8000,
    0xffff,
    0x1_0000,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x1_0000_0000,
    0x7fff_ffff_ffff_ffff,
    0x8000_0000_0000_0000,
    u64::MAX,
];

/// Text fragments that open and close structures, for the text targets:
/// repeated, they make deep nesting and long chains.
const TOKENS: &[&[u8]] = &[
    b"(", b")", b"[", b"]", b"{", b"}", b"NOT ", b" OR ", b" AND ", b"'", b"\"", b",", b"-", b"$1",
    b"1e309", b"NaN", b"\\", b"\0", b" ", b"SELECT ", b"::", b"->>", b"\xff",
];

/// One mutant of `input`; `corpus` provides splice partners.
pub fn mutate(rng: &mut Rng, input: &[u8], corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut out = input.to_vec();
    // Stack a few mutations: single ones rarely leave a checksum's reach.
    for _ in 0..1 + rng.below(4) {
        mutate_once(rng, &mut out, corpus);
    }
    out.truncate(MUTANT_BYTES_MAX);
    out
}

fn mutate_once(rng: &mut Rng, out: &mut Vec<u8>, corpus: &[Vec<u8>]) {
    let len = out.len();
    match rng.below(11) {
        // Flip one bit.
        0 if len > 0 => {
            let i = rng.below(len);
            out[i] ^= 1 << rng.below(8);
        }
        // Set one byte to anything.
        1 if len > 0 => {
            let i = rng.below(len);
            out[i] = rng.next_u64() as u8;
        }
        // Overwrite with a boundary integer of 1, 2, 4 or 8 bytes.
        2 if len > 0 => {
            let width = [1usize, 2, 4, 8][rng.below(4)];
            let value = BOUNDARY[rng.below(BOUNDARY.len())];
            let bytes = if rng.below(2) == 0 {
                value.to_le_bytes()
            } else {
                value.to_be_bytes()
            };
            let at = rng.below(len);
            let n = width.min(len - at);
            if rng.below(2) == 0 {
                out[at..at + n].copy_from_slice(&bytes[..n]);
            } else {
                out[at..at + n].copy_from_slice(&bytes[8 - n..]);
            }
        }
        // Insert random bytes.
        3 => {
            let at = rng.below(len + 1);
            let n = 1 + rng.below(16);
            let bytes: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
            out.splice(at..at, bytes);
        }
        // Delete a range.
        4 if len > 0 => {
            let at = rng.below(len);
            let n = 1 + rng.below((len - at).min(64));
            out.drain(at..at + n);
        }
        // Repeat a range many times (long chains, deep nesting).
        5 if len > 0 => {
            let at = rng.below(len);
            let n = 1 + rng.below((len - at).min(16));
            let times = 1 + rng.below(2000);
            let chunk = out[at..at + n].to_vec();
            let insert: Vec<u8> = chunk.iter().copied().cycle().take(n * times).collect();
            out.splice(at..at, insert);
        }
        // Splice: this input's head with another seed's tail.
        6 if !corpus.is_empty() => {
            let other = &corpus[rng.below(corpus.len())];
            let cut = rng.below(len + 1);
            let from = rng.below(other.len() + 1);
            out.truncate(cut);
            out.extend_from_slice(&other[from..]);
        }
        // Insert a structural token, sometimes many times.
        7 => {
            let token = TOKENS[rng.below(TOKENS.len())];
            let times = if rng.below(4) == 0 {
                1 + rng.below(20_000)
            } else {
                1
            };
            let at = rng.below(len + 1);
            let insert: Vec<u8> = token
                .iter()
                .copied()
                .cycle()
                .take(token.len() * times)
                .collect();
            out.splice(at..at, insert);
        }
        // Truncate.
        8 if len > 0 => out.truncate(rng.below(len)),
        // Swap two bytes.
        9 if len > 1 => {
            let (a, b) = (rng.below(len), rng.below(len));
            out.swap(a, b);
        }
        // Copy a range over another place.
        _ if len > 1 => {
            let from = rng.below(len);
            let to = rng.below(len);
            let n = 1 + rng.below((len - from).min(len - to).min(32));
            let chunk = out[from..from + n].to_vec();
            out[to..to + n].copy_from_slice(&chunk);
        }
        _ => out.push(rng.next_u64() as u8),
    }
}
