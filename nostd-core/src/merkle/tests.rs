//! Merkle log tests. Expected values come from an independent model: a
//! naive recursive transcription of RFC 6962 section 2.1 (`MTH`, `PATH`,
//! `PROOF`/`SUBPROOF`) over the raw entries, hashing with `blake3` directly,
//! and from the worked example of RFC 6962 section 2.1.3. No expected value
//! was taken from the output of the code under test.

use super::*;
use alloc::vec;
use proptest::prelude::*;

// ---------------------------------------------------------------------------
// The model: RFC 6962 section 2.1, one definition per function, recursion
// and slices as written there. It works on the entries themselves, so it
// also checks `leaf_hash` and `node_hash`.

fn model_hash(message: &[u8]) -> Hash32 {
    Hash32(*blake3::hash(message).as_bytes())
}

/// "the largest power of two smaller than n", by counting up.
fn model_k(n: u64) -> u64 {
    assert!(n > 1);
    let mut k = 1u64;
    while k.checked_mul(2).is_some_and(|k2| k2 < n) {
        k *= 2;
    }
    k
}

/// `model_k` for slice lengths.
fn model_k_len(n: usize) -> usize {
    model_k(n as u64) as usize
}

/// MTH(D[n]).
fn model_mth(d: &[Vec<u8>]) -> Hash32 {
    match d.len() {
        0 => model_hash(&[]),
        1 => model_hash(&[&[0x00][..], &d[0]].concat()),
        n => {
            let k = model_k_len(n);
            let left = model_mth(&d[..k]);
            let right = model_mth(&d[k..]);
            model_hash(&[&[0x01][..], &left.0, &right.0].concat())
        }
    }
}

/// Which side of the path a sibling hash sits on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Left,
    Right,
}

/// PATH(m, D[n]), each element tagged with its side.
fn model_path(m: usize, d: &[Vec<u8>]) -> Vec<(Hash32, Side)> {
    let n = d.len();
    assert!(m < n);
    if n == 1 {
        return vec![];
    }
    let k = model_k_len(n);
    if m < k {
        let mut p = model_path(m, &d[..k]);
        p.push((model_mth(&d[k..]), Side::Right));
        p
    } else {
        let mut p = model_path(m - k, &d[k..]);
        p.push((model_mth(&d[..k]), Side::Left));
        p
    }
}

/// What a consistency-proof element is: the subtree the old tree ends
/// with, a left sibling common to both trees, or a right sibling that only
/// the new tree has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Start,
    Left,
    Right,
}

/// SUBPROOF(m, D[n], b), each element tagged with its role.
fn model_subproof(m: usize, d: &[Vec<u8>], b: bool) -> Vec<(Hash32, Role)> {
    let n = d.len();
    assert!(0 < m && m <= n);
    if m == n {
        return if b {
            vec![]
        } else {
            vec![(model_mth(d), Role::Start)]
        };
    }
    let k = model_k_len(n);
    if m <= k {
        let mut p = model_subproof(m, &d[..k], b);
        p.push((model_mth(&d[k..]), Role::Right));
        p
    } else {
        let mut p = model_subproof(m - k, &d[k..], false);
        p.push((model_mth(&d[..k]), Role::Left));
        p
    }
}

/// PROOF(m, D[n]) for 0 < m <= n.
fn model_proof(m: usize, d: &[Vec<u8>]) -> Vec<(Hash32, Role)> {
    model_subproof(m, d, true)
}

/// The sides of PATH(m, D[n]): `model_path`'s recursion on sizes alone,
/// so that it can be asked about trees far too large to build.
fn model_path_shape(m: u64, n: u64) -> Vec<Side> {
    assert!(m < n);
    if n == 1 {
        return vec![];
    }
    let k = model_k(n);
    if m < k {
        let mut p = model_path_shape(m, k);
        p.push(Side::Right);
        p
    } else {
        let mut p = model_path_shape(m - k, n - k);
        p.push(Side::Left);
        p
    }
}

/// The roles of SUBPROOF(m, D[n], b), on sizes alone.
fn model_subproof_shape(m: u64, n: u64, b: bool) -> Vec<Role> {
    assert!(0 < m && m <= n);
    if m == n {
        return if b { vec![] } else { vec![Role::Start] };
    }
    let k = model_k(n);
    if m <= k {
        let mut p = model_subproof_shape(m, k, b);
        p.push(Role::Right);
        p
    } else {
        let mut p = model_subproof_shape(m - k, n - k, false);
        p.push(Role::Left);
        p
    }
}

fn hashes<T>(tagged: &[(Hash32, T)]) -> Vec<Hash32> {
    tagged.iter().map(|(h, _)| *h).collect()
}

fn shape<T: Copy>(tagged: &[(Hash32, T)]) -> Vec<T> {
    tagged.iter().map(|(_, t)| *t).collect()
}

// ---------------------------------------------------------------------------

/// Entry number `i` of a test log seeded by `seed`: distinct entries of
/// varying length, so that leaves differ and lengths are exercised.
fn entry(seed: u64, i: u64) -> Vec<u8> {
    let mut e = (seed ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .to_le_bytes()
        .to_vec();
    e.truncate(1 + (i % 8) as usize);
    e.extend_from_slice(&i.to_le_bytes());
    e
}

fn entries(seed: u64, n: u64) -> Vec<Vec<u8>> {
    (0..n).map(|i| entry(seed, i)).collect()
}

fn log_of(d: &[Vec<u8>]) -> MerkleLog {
    let mut log = MerkleLog::new();
    for e in d {
        log.push_leaf(leaf_hash(e));
    }
    log
}

fn flip(h: &Hash32, bit: usize) -> Hash32 {
    let mut out = *h;
    out.0[bit / 8] ^= 1 << (bit % 8);
    out
}

const N_MAX: u64 = 70;

/// The hash functions are the byte strings docs/format.md section 5 gives,
/// and the empty root is the BLAKE3 reference digest of the empty input.
#[test]
fn hash_definitions() {
    let a = model_hash(b"a");
    let b = model_hash(b"b");
    assert_eq!(leaf_hash(b"xyz"), model_hash(b"\x00xyz"));
    assert_eq!(leaf_hash(b""), model_hash(b"\x00"));
    assert_eq!(
        node_hash(&a, &b),
        model_hash(&[&[0x01u8][..], &a.0, &b.0].concat())
    );
    assert_ne!(node_hash(&a, &b), node_hash(&b, &a));
    assert_eq!(
        alloc::format!("{}", empty_root()),
        "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
    );
    assert_eq!(MerkleLog::new().root(), empty_root());
    // Domain separation: two leaves' root is not the leaf hash of their
    // concatenation, nor the plain hash of it.
    let two = MerkleLog::from_leaves(vec![a, b]);
    assert_ne!(two.root(), leaf_hash(&[a.0, b.0].concat()));
    assert_ne!(two.root(), model_hash(&[a.0, b.0].concat()));
}

/// The worked example of RFC 6962 section 2.1.3 (seven leaves d0..d6):
/// audit paths for d0, d3, d4 and d6 and consistency proofs from sizes 3,
/// 4 and 6, spelled with the RFC's node names.
#[test]
fn rfc6962_worked_example() {
    let d = entries(1, 7);
    let [a, b, c, dd, e, f, j] = core::array::from_fn(|i| leaf_hash(&d[i]));
    let g = node_hash(&a, &b);
    let h = node_hash(&c, &dd);
    let i = node_hash(&e, &f);
    let k = node_hash(&g, &h);
    let l = node_hash(&i, &j);
    let hash = node_hash(&k, &l);
    let hash0 = node_hash(&g, &c);
    let hash1 = k;
    let hash2 = node_hash(&k, &i);

    let log = log_of(&d);
    assert_eq!(log.root(), hash);
    assert_eq!(log.root_at(3), Some(hash0));
    assert_eq!(log.root_at(4), Some(hash1));
    assert_eq!(log.root_at(6), Some(hash2));

    assert_eq!(log.inclusion_proof(0, 7), Some(vec![b, h, l]));
    assert_eq!(log.inclusion_proof(3, 7), Some(vec![c, g, l]));
    assert_eq!(log.inclusion_proof(4, 7), Some(vec![f, j, k]));
    assert_eq!(log.inclusion_proof(6, 7), Some(vec![i, k]));

    assert_eq!(log.consistency_proof(3, 7), Some(vec![c, dd, g, l]));
    assert_eq!(log.consistency_proof(4, 7), Some(vec![l]));
    assert_eq!(log.consistency_proof(6, 7), Some(vec![i, j, k]));

    assert!(verify_inclusion(&e, 4, 7, &[f, j, k], &hash));
    assert!(verify_consistency(3, 7, &hash0, &hash, &[c, dd, g, l]));
    assert!(verify_consistency(4, 7, &hash1, &hash, &[l]));
    assert!(verify_consistency(6, 7, &hash2, &hash, &[i, j, k]));
}

/// For every size 0..=70: pushing and `from_leaves` build the same tree,
/// the stored structure is consistent, and `root`, `root_at` of every
/// prefix (asked of this tree and of the 70-leaf tree), `leaf` and
/// `leaves` agree with the model.
#[test]
fn roots_match_model() {
    let d = entries(2, N_MAX);
    let full = log_of(&d);
    let mut log = MerkleLog::new();
    for n in 0..=N_MAX {
        if n > 0 {
            log.push_leaf(leaf_hash(&d[n as usize - 1]));
        }
        let prefix = &d[..n as usize];
        assert!(log.invariant_holds(), "n = {n}");
        assert_eq!(log.len(), n);
        assert_eq!(log.is_empty(), n == 0);
        assert_eq!(
            log,
            MerkleLog::from_leaves(prefix.iter().map(|e| leaf_hash(e)).collect())
        );
        assert_eq!(log.root(), model_mth(prefix), "n = {n}");
        assert_eq!(full.root_at(n), Some(model_mth(prefix)), "n = {n}");
        for size in 0..=n {
            assert_eq!(log.root_at(size), full.root_at(size));
        }
        assert_eq!(log.root_at(n + 1), None);
        for i in 0..n {
            assert_eq!(log.leaf(i), Some(leaf_hash(&d[i as usize])));
        }
        assert_eq!(log.leaf(n), None);
        assert_eq!(log.leaf(u64::MAX), None);
        assert_eq!(log.leaves().len() as u64, n);
    }
}

/// For every size 1..=70 and every index: the inclusion proof equals the
/// model's PATH (asked of a tree of exactly that size and of the 70-leaf
/// tree) and verifies; changing any proof element, the leaf, the index or
/// the root, or dropping or adding an element, makes it fail; and changing
/// the size makes it fail exactly when the model's path for the new size
/// has a different shape (see `size_is_not_bound_by_the_root`).
#[test]
fn inclusion_proofs_match_model_and_resist_tampering() {
    let d = entries(3, N_MAX + 1);
    let full = log_of(&d[..N_MAX as usize]);
    assert_eq!(full.inclusion_proof(0, 0), None);
    assert_eq!(full.inclusion_proof(0, N_MAX + 1), None);
    // Claimed sizes that verify, which the model predicts; there are some.
    let mut accepted_sizes = 0u64;
    for n in 1..=N_MAX {
        let prefix = &d[..n as usize];
        let log = log_of(prefix);
        let root = model_mth(prefix);
        assert_eq!(log.inclusion_proof(n, n), None);
        assert_eq!(full.inclusion_proof(n, n), None);
        for i in 0..n {
            let model = model_path(i as usize, prefix);
            let leaf = leaf_hash(&d[i as usize]);
            let proof = log.inclusion_proof(i, n).expect("index < size <= len");
            assert_eq!(proof, hashes(&model), "i = {i}, n = {n}");
            assert_eq!(full.inclusion_proof(i, n), Some(proof.clone()));
            assert!(
                verify_inclusion(&leaf, i, n, &proof, &root),
                "i = {i}, n = {n}"
            );

            for (at, element) in proof.iter().enumerate() {
                for bit in [0, 133, 255] {
                    let mut bad = proof.clone();
                    bad[at] = flip(element, bit);
                    assert!(!verify_inclusion(&leaf, i, n, &bad, &root));
                }
            }
            assert!(!verify_inclusion(&flip(&leaf, 7), i, n, &proof, &root));
            assert!(!verify_inclusion(&leaf, i, n, &proof, &flip(&root, 200)));
            if !proof.is_empty() {
                assert!(!verify_inclusion(&leaf, i, n, &proof[1..], &root));
                assert!(!verify_inclusion(
                    &leaf,
                    i,
                    n,
                    &proof[..proof.len() - 1],
                    &root
                ));
            }
            let mut longer = proof.clone();
            longer.push(leaf);
            assert!(!verify_inclusion(&leaf, i, n, &longer, &root));

            // In one tree, the shape of a path names its leaf, so another
            // index never verifies.
            for other in (0..=n + 1).chain([u64::MAX - 1, u64::MAX]) {
                if other != i {
                    assert!(!verify_inclusion(&leaf, other, n, &proof, &root));
                }
            }
            assert_eq!(shape(&model), model_path_shape(i, n));
            let absurd = [1 << 56, 1 << 62, 1 << 63, u64::MAX - 1, u64::MAX];
            for other in (0..=N_MAX + 1).chain(absurd) {
                if other == n {
                    continue;
                }
                let same_shape = i < other && model_path_shape(i, other) == shape(&model);
                accepted_sizes += u64::from(same_shape);
                assert_eq!(
                    verify_inclusion(&leaf, i, other, &proof, &root),
                    same_shape,
                    "i = {i}, n = {n}, claimed size {other}"
                );
                // Against the root the claimed size really has, it fails.
                if let Some(other_root) = full.root_at(other).filter(|_| i < other) {
                    assert!(!verify_inclusion(&leaf, i, other, &proof, &other_root));
                }
            }
        }
    }
    assert!(accepted_sizes > 0);
}

/// For every 0 <= old <= new <= 70: the consistency proof equals the
/// model's PROOF (empty when old is 0 or equals new), asked of a tree of
/// exactly `new` leaves and of the 70-leaf tree, and verifies; changing
/// any proof element or either root, or dropping or adding an element,
/// makes it fail; and changing either size makes it fail exactly when the
/// model's proof for the new sizes has a different shape.
#[test]
fn consistency_proofs_match_model_and_resist_tampering() {
    let d = entries(4, N_MAX);
    let full = log_of(&d);
    let roots: Vec<Hash32> = (0..=N_MAX as usize).map(|n| model_mth(&d[..n])).collect();
    assert_eq!(full.consistency_proof(0, N_MAX + 1), None);
    assert_eq!(full.consistency_proof(2, 1), None);
    // Claimed sizes that verify, which the model predicts; there are some.
    let mut accepted_sizes = 0u64;
    for new in 0..=N_MAX {
        let log = log_of(&d[..new as usize]);
        assert_eq!(log.consistency_proof(0, new + 1), None);
        for old in 0..=new {
            let (old_root, new_root) = (roots[old as usize], roots[new as usize]);
            let model = if old == 0 || old == new {
                vec![]
            } else {
                model_proof(old as usize, &d[..new as usize])
            };
            let proof = log.consistency_proof(old, new).expect("old <= new <= len");
            assert_eq!(proof, hashes(&model), "old = {old}, new = {new}");
            assert_eq!(full.consistency_proof(old, new), Some(proof.clone()));
            assert_eq!(log.consistency_proof(new, old), (old == new).then(Vec::new));
            assert!(
                verify_consistency(old, new, &old_root, &new_root, &proof),
                "old = {old}, new = {new}"
            );

            for (at, element) in proof.iter().enumerate() {
                for bit in [0, 99, 255] {
                    let mut bad = proof.clone();
                    bad[at] = flip(element, bit);
                    assert!(!verify_consistency(old, new, &old_root, &new_root, &bad));
                }
            }
            assert!(!verify_consistency(
                old,
                new,
                &flip(&old_root, 1),
                &new_root,
                &proof
            ));
            // Every tree extends the empty one, so with old = 0 the new
            // root is not examined.
            if old != 0 {
                assert!(!verify_consistency(
                    old,
                    new,
                    &old_root,
                    &flip(&new_root, 254),
                    &proof
                ));
            }
            if !proof.is_empty() {
                assert!(!verify_consistency(
                    old,
                    new,
                    &old_root,
                    &new_root,
                    &proof[1..]
                ));
                let shorter = &proof[..proof.len() - 1];
                assert!(!verify_consistency(old, new, &old_root, &new_root, shorter));
            }
            let mut longer = proof.clone();
            longer.push(new_root);
            assert!(!verify_consistency(old, new, &old_root, &new_root, &longer));
            // Putting the old root in front, as the verifier does for a
            // power-of-two old size, must not be accepted from the prover.
            let mut prefixed = vec![old_root];
            prefixed.extend_from_slice(&proof);
            assert!(!verify_consistency(
                old, new, &old_root, &new_root, &prefixed
            ));

            // Claimed sizes other than the true ones, same roots and proof.
            let expected_shape = (old != 0 && old != new).then(|| shape(&model));
            if let Some(ref true_shape) = expected_shape {
                assert_eq!(*true_shape, model_subproof_shape(old, new, true));
            }
            let absurd = [
                (old, u64::MAX),
                (old, 1 << 63),
                (old << 56, new << 56),
                (old << 57, u64::MAX),
                (u64::MAX - 1, u64::MAX),
                (1 << 63, u64::MAX),
                (u64::MAX, u64::MAX),
                (u64::MAX, 0),
            ];
            let claims = (0..=new + 1)
                .map(|o| (o, new))
                .chain((0..=N_MAX + 1).map(|n| (old, n)))
                .chain(absurd);
            for (o, n) in claims {
                if (o, n) == (old, new) {
                    continue;
                }
                let expected = match expected_shape {
                    // A non-empty proof only ever proves 0 < o < n, and
                    // does when its shape is the one for o -> n.
                    Some(ref true_shape) => {
                        0 < o && o < n && model_subproof_shape(o, n, true) == *true_shape
                    }
                    // The empty proof proves what the conventions say.
                    None if o > n => false,
                    None if o == 0 => old_root == empty_root() && (n != 0 || old_root == new_root),
                    None => o == n && old_root == new_root,
                };
                accepted_sizes += u64::from(expected);
                assert_eq!(
                    verify_consistency(o, n, &old_root, &new_root, &proof),
                    expected,
                    "old = {old}, new = {new}, claimed {o} -> {n}"
                );
            }
        }
    }
    assert!(accepted_sizes > 0);
}

/// RFC 9162 roots do not commit to the tree size: in the trees of 7 and 8
/// leaves, leaf 4's audit path has the same shape (right, right, left), so
/// the proof for size 7 also "verifies" for a claimed size of 8 against
/// the size-7 root; likewise the consistency proof 4 -> 7 (the single hash
/// of leaves 4..7, on the right) for a claimed 4 -> 8. This is why a
/// verifier must take size and root from the same tree head. Against the
/// size-8 root both fail.
#[test]
fn size_is_not_bound_by_the_root() {
    let d = entries(5, 8);
    let log = log_of(&d);
    let [a, b, c, dd, e, f, g, h] = core::array::from_fn(|i| leaf_hash(&d[i]));
    let left = node_hash(&node_hash(&a, &b), &node_hash(&c, &dd));
    let root7 = node_hash(&left, &node_hash(&node_hash(&e, &f), &g));
    let root8 = node_hash(&left, &node_hash(&node_hash(&e, &f), &node_hash(&g, &h)));
    assert_eq!(log.root_at(7), Some(root7));
    assert_eq!(log.root(), root8);

    let path7 = vec![f, g, left];
    assert_eq!(log.inclusion_proof(4, 7), Some(path7.clone()));
    assert!(verify_inclusion(&e, 4, 7, &path7, &root7));
    assert!(verify_inclusion(&e, 4, 8, &path7, &root7));
    assert!(!verify_inclusion(&e, 4, 8, &path7, &root8));

    let right7 = node_hash(&node_hash(&e, &f), &g);
    assert_eq!(log.consistency_proof(4, 7), Some(vec![right7]));
    assert!(verify_consistency(4, 7, &left, &root7, &[right7]));
    assert!(verify_consistency(4, 8, &left, &root7, &[right7]));
    assert!(!verify_consistency(4, 8, &left, &root8, &[right7]));
}

/// The conventions outside 0 < old < new: equal sizes need an empty proof
/// and equal roots; size 0 needs an empty proof and the empty root, and
/// accepts any new root; old > new always fails.
#[test]
fn consistency_edge_conventions() {
    let empty = empty_root();
    let x = leaf_hash(b"x");
    let y = leaf_hash(b"y");
    assert!(verify_consistency(0, 0, &empty, &empty, &[]));
    assert!(!verify_consistency(0, 0, &empty, &x, &[]));
    assert!(!verify_consistency(0, 0, &x, &x, &[]));
    assert!(verify_consistency(0, 5, &empty, &x, &[]));
    assert!(!verify_consistency(0, 5, &x, &x, &[]));
    assert!(!verify_consistency(0, 5, &empty, &x, &[x]));
    assert!(verify_consistency(3, 3, &x, &x, &[]));
    assert!(!verify_consistency(3, 3, &x, &y, &[]));
    assert!(!verify_consistency(3, 3, &x, &x, &[x]));
    assert!(!verify_consistency(4, 3, &x, &x, &[]));
    assert!(!verify_consistency(1, 2, &x, &y, &[]));
    assert!(!verify_inclusion(&x, 0, 0, &[], &x));
    assert!(verify_inclusion(&x, 0, 1, &[], &x));
    assert!(!verify_inclusion(&x, 0, 1, &[], &y));
}

/// Verification terminates with `false` and without panicking on absurd
/// sizes and on proofs far longer than any tree needs.
#[test]
fn verification_survives_absurd_input() {
    let x = leaf_hash(b"x");
    let long: Vec<Hash32> = (0..1000u32).map(|i| leaf_hash(&i.to_le_bytes())).collect();
    for proof in [&long[..], &long[..64], &long[..65], &long[..1], &[]] {
        for (index, size) in [
            (0, u64::MAX),
            (u64::MAX - 1, u64::MAX),
            (u64::MAX, u64::MAX),
            (1 << 63, u64::MAX),
            ((1 << 63) - 1, 1 << 63),
            (0, 1 << 63),
        ] {
            assert!(!verify_inclusion(&x, index, size, proof, &x));
        }
        for (old, new) in [
            (1, u64::MAX),
            (u64::MAX - 1, u64::MAX),
            (1 << 63, u64::MAX),
            ((1 << 63) - 1, 1 << 63),
            (1 << 62, 1 << 63),
            (u64::MAX, 0),
        ] {
            assert!(!verify_consistency(old, new, &x, &x, proof));
        }
    }
}

/// Truncating to any size gives the tree built from that prefix (without
/// re-hashing anything that survives), and pushing the dropped leaves back
/// gives the original tree; truncating past the end changes nothing.
#[test]
fn truncate_then_repush() {
    let d = entries(6, N_MAX);
    let leaves: Vec<Hash32> = d.iter().map(|e| leaf_hash(e)).collect();
    for n in 0..=N_MAX as usize {
        let original = MerkleLog::from_leaves(leaves[..n].to_vec());
        let mut past = original.clone();
        past.truncate(n as u64);
        past.truncate(n as u64 + 1);
        past.truncate(u64::MAX);
        assert_eq!(past, original);
        for t in 0..=n {
            let mut log = original.clone();
            log.truncate(t as u64);
            assert!(log.invariant_holds(), "n = {n}, t = {t}");
            assert_eq!(log, MerkleLog::from_leaves(leaves[..t].to_vec()));
            assert_eq!(log.root(), model_mth(&d[..t]));
            for leaf in &leaves[t..n] {
                log.push_leaf(*leaf);
            }
            assert_eq!(log, original, "n = {n}, t = {t}");
        }
    }
    let mut log = MerkleLog::from_leaves(leaves.clone());
    log.truncate(0);
    assert_eq!(log, MerkleLog::new());
    assert_eq!(log.root(), empty_root());
}

/// A log of up to 5,000 entries with random contents, and random indices
/// and size pairs within it.
fn arb_case() -> impl Strategy<Value = (u64, u64, u64, u64, u64, u64)> {
    (any::<u64>(), 1u64..=5_000).prop_flat_map(|(seed, len)| {
        (Just(seed), Just(len), 1..=len).prop_flat_map(|(seed, len, size)| {
            (
                Just(seed),
                Just(len),
                Just(size),
                0..size,
                0..=size,
                0..=len,
            )
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Large logs: pushing and `from_leaves` agree, the root at `size`, the
    /// inclusion proof of `index` in `size` and the consistency proof
    /// `old -> size` equal the model's and verify, and truncating to `cut`
    /// and pushing back restores the tree.
    #[test]
    fn large_logs_match_model((seed, len, size, index, old, cut) in arb_case()) {
        let d = entries(seed, len);
        let leaves: Vec<Hash32> = d.iter().map(|e| leaf_hash(e)).collect();
        let log = log_of(&d);
        prop_assert_eq!(&log, &MerkleLog::from_leaves(leaves.clone()));
        let prefix = &d[..size as usize];

        let root = model_mth(prefix);
        prop_assert_eq!(log.root_at(size), Some(root));

        let path = log.inclusion_proof(index, size);
        prop_assert_eq!(&path, &Some(hashes(&model_path(index as usize, prefix))));
        let path = path.unwrap_or_default();
        prop_assert!(verify_inclusion(&leaves[index as usize], index, size, &path, &root));

        let old_root = model_mth(&d[..old as usize]);
        let expected = if old == 0 || old == size {
            vec![]
        } else {
            hashes(&model_proof(old as usize, prefix))
        };
        let proof = log.consistency_proof(old, size);
        prop_assert_eq!(&proof, &Some(expected));
        let proof = proof.unwrap_or_default();
        prop_assert!(verify_consistency(old, size, &old_root, &root, &proof));

        let mut cut_log = log.clone();
        cut_log.truncate(cut);
        prop_assert_eq!(cut_log.root(), model_mth(&d[..cut as usize]));
        for leaf in &leaves[cut as usize..] {
            cut_log.push_leaf(*leaf);
        }
        prop_assert_eq!(&cut_log, &log);
    }

    /// Arbitrary sizes, indices, hashes and proof lengths: verification
    /// returns false (a random 256-bit root is never hit) and never panics.
    #[test]
    fn verification_rejects_garbage(
        a in prop_oneof![0u64..200, any::<u64>(), Just(u64::MAX)],
        b in prop_oneof![0u64..200, any::<u64>(), Just(u64::MAX)],
        x in any::<[u8; 32]>(),
        y in any::<[u8; 32]>(),
        proof in proptest::collection::vec(any::<[u8; 32]>().prop_map(Hash32), 0..130),
    ) {
        prop_assume!(x != y && x != empty_root().0);
        let (x, y) = (Hash32(x), Hash32(y));
        prop_assert!(!verify_inclusion(&x, a, b, &proof, &y));
        prop_assert!(!verify_consistency(a, b, &x, &y, &proof));
    }
}
