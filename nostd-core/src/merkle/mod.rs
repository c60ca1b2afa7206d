//! The Merkle tree over the event log: RFC 6962 (Certificate Transparency)
//! section 2.1, as restated in RFC 9162 section 2.1, with BLAKE3 in place of
//! SHA-256 (byte layout in `docs/format.md`, section 5).
//!
//! [`MerkleLog`] keeps, level by level, the hash of every complete aligned
//! subtree: level 0 holds the leaf hashes, level `k` the hashes of the
//! subtrees of `2^k` leaves that start at a multiple of `2^k`. Every subtree
//! that the RFC's recursive definitions ask for is either one of these or is
//! formed from at most one per level, so appending costs amortised one node
//! hash and a root or a proof costs O(log n) hashes, for the current size or
//! any earlier one.
//!
//! [`verify_inclusion`] and [`verify_consistency`] are the verification
//! algorithms of RFC 9162 sections 2.1.3.2 and 2.1.4.2, step by step. They
//! only do shifts, comparisons and hashing on their inputs, so no input,
//! however absurd, makes them panic.
//!
//! A root commits to the leaves, not to the tree size: as in RFC 9162, a
//! verifier must take the size and the root together from one trusted tree
//! head (see `size_is_not_bound_by_the_root` in the tests).

use alloc::vec::Vec;

use crate::hash::Hash32;

#[cfg(test)]
mod tests;

/// Prefix of a leaf-hash message (RFC 6962: `0x00`).
pub const LEAF_PREFIX: u8 = 0x00;

/// Prefix of an interior-node message (RFC 6962: `0x01`).
pub const NODE_PREFIX: u8 = 0x01;

/// Hash of one log entry: `BLAKE3(0x00 ‖ data)`.
pub fn leaf_hash(data: &[u8]) -> Hash32 {
    let mut h = blake3::Hasher::new();
    h.update(&[LEAF_PREFIX]);
    h.update(data);
    h.finalize().into()
}

/// Hash of an interior node: `BLAKE3(0x01 ‖ left ‖ right)`. The different
/// prefixes keep a leaf from being passed off as a node (the second
/// preimage attack that RFC 6962 section 2.1 guards against).
pub fn node_hash(left: &Hash32, right: &Hash32) -> Hash32 {
    let mut h = blake3::Hasher::new();
    h.update(&[NODE_PREFIX]);
    h.update(left.as_bytes());
    h.update(right.as_bytes());
    h.finalize().into()
}

/// Root of the empty tree: BLAKE3 of the empty string (RFC 6962's
/// `MTH({}) = SHA-256()`).
pub fn empty_root() -> Hash32 {
    blake3::hash(&[]).into()
}

/// The largest power of two strictly below `n`; the RFC's split point `k`.
/// Callers guarantee `n >= 2`.
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// An append-only Merkle tree over leaf hashes.
///
/// Invariant: `levels[k]` holds exactly `len >> k` hashes, the `i`-th being
/// the root of leaves `i·2^k .. (i+1)·2^k`, and there is no empty level (so
/// the empty tree has no levels at all, and equal trees compare equal).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MerkleLog {
    levels: Vec<Vec<Hash32>>,
}

impl MerkleLog {
    /// The empty tree.
    pub const fn new() -> Self {
        MerkleLog { levels: Vec::new() }
    }

    /// Builds the tree over `leaves` (leaf hashes, as from [`leaf_hash`]) in
    /// one pass: `n − popcount(n)` node hashes, as many as `n` pushes.
    pub fn from_leaves(leaves: Vec<Hash32>) -> Self {
        let mut levels = Vec::new();
        if !leaves.is_empty() {
            levels.push(leaves);
        }
        while let Some(below) = levels.last().filter(|level| level.len() >= 2) {
            let above: Vec<Hash32> = below
                .chunks_exact(2)
                .map(|pair| node_hash(&pair[0], &pair[1]))
                .collect();
            levels.push(above);
        }
        let log = MerkleLog { levels };
        debug_assert!(log.shape_holds());
        log
    }

    /// Number of leaves.
    pub fn len(&self) -> u64 {
        // usize is at most 64 bits on every target Valori supports.
        self.leaves().len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.levels.is_empty()
    }

    /// All leaf hashes, in order.
    pub fn leaves(&self) -> &[Hash32] {
        self.levels.first().map_or(&[], Vec::as_slice)
    }

    /// Leaf hash number `index`, if there is one.
    pub fn leaf(&self, index: u64) -> Option<Hash32> {
        let index = usize::try_from(index).ok()?;
        self.leaves().get(index).copied()
    }

    /// Appends a leaf hash (as from [`leaf_hash`]). Each level that now
    /// holds an even number of hashes has completed a pair, whose parent
    /// goes one level up; over `n` pushes that is fewer than `n` node
    /// hashes in all.
    pub fn push_leaf(&mut self, leaf: Hash32) {
        let mut carry = leaf;
        let mut level = 0usize;
        loop {
            if level == self.levels.len() {
                self.levels.push(Vec::new());
            }
            let hashes = &mut self.levels[level];
            hashes.push(carry);
            let n = hashes.len();
            if n % 2 == 1 {
                break;
            }
            carry = node_hash(&hashes[n - 2], &hashes[n - 1]);
            level += 1;
        }
    }

    /// Drops every leaf from `size` on; does nothing if `size >= len`.
    /// Nothing is re-hashed: the complete aligned subtrees of a prefix are
    /// exactly the prefixes of each level.
    pub fn truncate(&mut self, size: u64) {
        if size >= self.len() {
            return;
        }
        for (k, hashes) in self.levels.iter_mut().enumerate() {
            // `size < len`, so `size >> k` fits in usize like `len >> k`.
            hashes.truncate((size >> k) as usize);
        }
        while self.levels.last().is_some_and(Vec::is_empty) {
            self.levels.pop();
        }
        debug_assert!(self.shape_holds());
    }

    /// Root of the whole tree, `MTH(D[0:len])`.
    pub fn root(&self) -> Hash32 {
        self.prefix_root(self.len())
    }

    /// Root of the tree formed by the first `size` leaves, `MTH(D[0:size])`;
    /// `None` if `size > len`.
    pub fn root_at(&self, size: u64) -> Option<Hash32> {
        (size <= self.len()).then(|| self.prefix_root(size))
    }

    /// The audit path of leaf `index` in the tree of the first `size`
    /// leaves: RFC 6962 `PATH(index, D[0:size])`, RFC 9162 section 2.1.3.1.
    /// Sibling hashes are listed from the leaf's sibling up to the child of
    /// the root. `None` if `index >= size` or `size > len`.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Option<Vec<Hash32>> {
        if index >= size || size > self.len() {
            return None;
        }
        // The recursive definition descends from the root and appends each
        // sibling after the rest of the path; walking down and reversing at
        // the end gives the same order without recursion.
        let mut path = Vec::new();
        let (mut start, mut end) = (0u64, size);
        while end - start > 1 {
            let k = split(end - start);
            if index < start + k {
                path.push(self.range_root(start + k, end));
                end = start + k;
            } else {
                path.push(self.range_root(start, start + k));
                start += k;
            }
        }
        path.reverse();
        Some(path)
    }

    /// The consistency proof between the trees of the first `old` and the
    /// first `new` leaves: RFC 6962 `PROOF(old, D[0:new])`, RFC 9162
    /// section 2.1.4.1, listed in the order of that definition (deepest
    /// node first). `None` if `old > new` or `new > len`.
    ///
    /// The RFC defines the proof only for `0 < old < new`. For `old == new`
    /// and for `old == 0` this returns the empty proof, which is what
    /// [`verify_consistency`] accepts in those cases (as RFC 9162 verifiers
    /// such as transparency-dev/merkle do): equal sizes need equal roots,
    /// and every tree extends the empty one.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Option<Vec<Hash32>> {
        if old > new || new > self.len() {
            return None;
        }
        let mut proof = Vec::new();
        if old == 0 || old == new {
            return Some(proof);
        }
        // SUBPROOF(m, D[start:end], complete), walked from the root down and
        // reversed at the end, as in `inclusion_proof`. Here
        // `start < old <= end` throughout: a step left keeps `old <= end`
        // and a step right is taken only when `old > start + k`.
        let (mut start, mut end) = (0u64, new);
        let mut complete = true;
        while old != end {
            let k = split(end - start);
            if old - start <= k {
                proof.push(self.range_root(start + k, end));
                end = start + k;
            } else {
                proof.push(self.range_root(start, start + k));
                start += k;
                complete = false;
            }
        }
        // When the old tree is a complete subtree of the new one on the
        // leftmost path (`complete`), the verifier already knows its hash:
        // it is the old root.
        if !complete {
            proof.push(self.range_root(start, end));
        }
        proof.reverse();
        Some(proof)
    }

    /// `MTH(D[0:size])` for `size <= len`.
    fn prefix_root(&self, size: u64) -> Hash32 {
        if size == 0 {
            empty_root()
        } else {
            self.range_root(0, size)
        }
    }

    /// `MTH(D[start:end])` for a range the RFC's recursion produces:
    /// `start < end <= len`, and `start` a multiple of the smallest power of
    /// two that is `>= end − start` (true of `[0, n)`, and kept by both
    /// halves of every split). Such a range is the run of complete aligned
    /// subtrees given by the bits of its size, largest first, and its hash
    /// folds them from the right, since the RFC always splits off the
    /// largest power of two on the left. One stored hash per set bit, one
    /// node hash fewer.
    fn range_root(&self, start: u64, end: u64) -> Hash32 {
        debug_assert!(start < end && end <= self.len());
        debug_assert!(
            (end - start)
                .checked_next_power_of_two()
                .is_some_and(|p| start.is_multiple_of(p))
        );
        let mut remaining = end - start;
        let mut pos = end;
        let mut acc: Option<Hash32> = None;
        while remaining != 0 {
            let level = remaining.trailing_zeros();
            pos -= 1u64 << level;
            let h = self.subtree(level, pos);
            acc = Some(match acc {
                None => h,
                Some(right) => node_hash(&h, &right),
            });
            remaining &= remaining - 1;
        }
        acc.expect("invariant: range_root is called on a non-empty range")
    }

    /// Root of the complete subtree of `2^level` leaves starting at leaf
    /// `start` (a multiple of `2^level`, ending at or before `len`).
    fn subtree(&self, level: u32, start: u64) -> Hash32 {
        // `start >> level` is below `levels[level].len()`, a usize, so both
        // casts are exact.
        self.levels[level as usize][(start >> level) as usize]
    }

    /// Checks the shape half of the invariant: level sizes only, so it is
    /// cheap enough to assert after every bulk change.
    fn shape_holds(&self) -> bool {
        let len = self.len();
        let bit_length = u64::BITS - len.leading_zeros();
        self.levels.len() as u64 == u64::from(bit_length)
            && self
                .levels
                .iter()
                .enumerate()
                .all(|(k, hashes)| hashes.len() as u64 == len >> k)
    }

    /// Checks the whole invariant, re-hashing every stored node.
    #[cfg(test)]
    fn invariant_holds(&self) -> bool {
        let hashes_ok = self.levels.windows(2).all(|pair| {
            pair[1]
                .iter()
                .zip(pair[0].chunks_exact(2))
                .all(|(parent, children)| *parent == node_hash(&children[0], &children[1]))
        });
        self.shape_holds() && hashes_ok
    }
}

/// RFC 9162 section 2.1.3.2: is `leaf` (a leaf hash, as stored in the log)
/// number `index` in the tree of `size` leaves whose root is `root`, by the
/// audit path `proof` (ordered as [`MerkleLog::inclusion_proof`] gives it)?
pub fn verify_inclusion(
    leaf: &Hash32,
    index: u64,
    size: u64,
    proof: &[Hash32],
    root: &Hash32,
) -> bool {
    // Step 1.
    if index >= size {
        return false;
    }
    // Step 2; `size >= 1` here.
    let mut f_n = index;
    let mut s_n = size - 1;
    // Step 3.
    let mut r = *leaf;
    // Step 4. `s_n` loses a bit on every element, so a proof longer than
    // 64 elements fails within 65 of them.
    for p in proof {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            while f_n & 1 == 0 && f_n != 0 {
                f_n >>= 1;
                s_n >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    // Step 5.
    s_n == 0 && r == *root
}

/// RFC 9162 section 2.1.4.2: is the tree of `new` leaves with root
/// `new_root` an extension of the tree of `old` leaves with root
/// `old_root`, by the consistency proof `proof` (ordered as
/// [`MerkleLog::consistency_proof`] gives it)?
///
/// The RFC's algorithm covers `0 < old < new`. Outside that range:
/// `old > new` fails; `old == new` needs an empty proof and equal roots;
/// `old == 0` needs an empty proof and `old_root` equal to
/// [`empty_root`], and accepts any `new_root`, since every tree extends the
/// empty one.
pub fn verify_consistency(
    old: u64,
    new: u64,
    old_root: &Hash32,
    new_root: &Hash32,
    proof: &[Hash32],
) -> bool {
    if old > new {
        return false;
    }
    if old == 0 {
        return proof.is_empty() && *old_root == empty_root() && (new != 0 || old_root == new_root);
    }
    if old == new {
        return proof.is_empty() && old_root == new_root;
    }
    // Step 1.
    if proof.is_empty() {
        return false;
    }
    // Step 2, without copying the proof: the old tree is then a complete
    // subtree of the new one, and the proof leaves its hash out.
    let prepended = old.is_power_of_two().then_some(old_root);
    let mut path = prepended.into_iter().chain(proof);
    // Step 3; `old >= 1` and `new >= 2` here.
    let mut f_n = old - 1;
    let mut s_n = new - 1;
    // Step 4.
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    // Step 5.
    let Some(first) = path.next() else {
        return false;
    };
    let mut f_r = *first;
    let mut s_r = *first;
    // Step 6. As in `verify_inclusion`, at most 65 elements are hashed.
    for c in path {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            f_r = node_hash(c, &f_r);
            s_r = node_hash(c, &s_r);
            while f_n & 1 == 0 && f_n != 0 {
                f_n >>= 1;
                s_n >>= 1;
            }
        } else {
            s_r = node_hash(&s_r, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    // Step 7.
    f_r == *old_root && s_r == *new_root && s_n == 0
}
