//! Per-partition hash sums over a table's items, for anti-entropy.
//!
//! Every item contributes `BLAKE2b(storage key ++ hash of its encoding)`,
//! read as a 256-bit number. A partition is cut by the first byte of
//! `BLAKE2b(storage key)` into 256 groups, and the store keeps, for each
//! partition and each group, the sum (modulo 2^256) of the contributions
//! under it. A sum does not depend on the order of the updates that made
//! it, so two replicas holding the same items hold the same sums, entry
//! for entry (property-tested). Two that differ compare the partition's
//! 256 group sums, then list the items of the groups whose sums differ:
//! their (storage key, value hash) pairs, read from the items themselves
//! by one pass over the partition (a repair, which is rare, pays the
//! reading; the writes, which are constant, pay nothing for it).
//!
//! What an update costs does not grow with the table: an item's change adds
//! the difference of its contributions to two 32-byte sums (a batch
//! touches each sum once), in a tree of at most 65,792 entries that stays
//! in the cache. What the sums hold for an item (its "folded" value hash)
//! travels in the item's entry of the work queue (see `data.rs`), so the
//! fold reads nothing per item. Protocol 6 also kept a sum per bucket of
//! 256 per group and a leaf per item, keyed by the key's hash: two more
//! entries per item in trees as big as the table, written at random
//! places; dropping them made 1 KiB PUTs 40-60 % faster and kept their rate
//! at 1,000,000 objects within 12 % of the start (doc/benchmarks.md). The
//! radix trees before (protocol 5) re-encoded and re-hashed inner nodes of
//! up to 8 KiB that grew with the table.
//!
//! The sums detect differences between honest replicas; they are not an
//! authenticator (sums of hashes can be made to collide by someone who
//! chooses the contributions, and the contributions here are hashes of
//! encodings that carry the agent's own timestamps and ids).
//!
//! Storage: `t:merkle_sums`: `[0, p]` -> the partition's sum, `[1, p, g]`
//! -> a group's (absent: zero).

use std::collections::BTreeMap;

use hangar_common::hash::Hash;
use serde::{Deserialize, Serialize};

use crate::db::{Db, DbError, DbResult, TreeId, Tx, TxResult};

/// Items read per storage read while listing a partition's leaves.
const LEAF_PAGE: usize = 1024;

/// What one node of the tree holds, as sent to a peer comparing trees.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MerkleNode {
    /// A partition's groups: (group, sum), sorted, zero sums left out.
    Sums(Vec<(u8, Hash)>),
    /// Some groups' items: (storage key, hash of the item's encoding), in
    /// key order.
    Leaves(Vec<(Vec<u8>, Hash)>),
}

impl MerkleNode {
    pub(crate) fn encode(&self) -> Vec<u8> {
        rmp_serde::to_vec(self).unwrap_or_default()
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<MerkleNode, DbError> {
        rmp_serde::from_slice(bytes)
            .map_err(|e| DbError::Engine(format!("corrupt Merkle node: {e}")))
    }
}

/// An item's entry in the Merkle work queue: the value hash the sums hold
/// for it (`folded`; none if they hold nothing) and the one it has now
/// (none: removed). A write that finds no entry takes `folded` from the
/// item it replaces (with no entry queued, the sums hold exactly that); a
/// write that finds one keeps its `folded`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Pending {
    pub folded: Option<Hash>,
    pub now: Option<Hash>,
}

impl Pending {
    /// One flag byte (bit 0: `folded` follows, bit 1: `now` follows), then
    /// the hashes present, in that order.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(65);
        out.push(u8::from(self.folded.is_some()) | (u8::from(self.now.is_some()) << 1));
        for h in [&self.folded, &self.now].into_iter().flatten() {
            out.extend_from_slice(&h.0);
        }
        out
    }

    pub(crate) fn decode(key: &[u8], b: &[u8]) -> Result<Pending, DbError> {
        let bad = || DbError::Engine(format!("corrupt Merkle queue entry at {key:?}"));
        let (&flags, mut rest) = b.split_first().ok_or_else(bad)?;
        if flags > 3 || rest.len() != 32 * flags.count_ones() as usize {
            return Err(bad());
        }
        let mut take = |present: bool| {
            present.then(|| {
                let (h, tail) = rest.split_at(32);
                rest = tail;
                Hash(<[u8; 32]>::try_from(h).unwrap_or_default())
            })
        };
        let folded = take(flags & 1 != 0);
        let now = take(flags & 2 != 0);
        Ok(Pending { folded, now })
    }
}

/// A 256-bit number, as four little-endian 64-bit limbs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Sum([u64; 4]);

impl Sum {
    fn from_hash(h: &Hash) -> Sum {
        let mut limbs = [0u64; 4];
        for (limb, bytes) in limbs.iter_mut().zip(h.0.chunks_exact(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(bytes);
            *limb = u64::from_le_bytes(b);
        }
        Sum(limbs)
    }

    /// A stored sum (absent: zero). A value of another length is a
    /// damaged store: an error naming the entry, rather than a sum that
    /// silently stays wrong.
    fn from_bytes(key: &[u8], b: Option<Vec<u8>>) -> Result<Sum, DbError> {
        match b {
            None => Ok(Sum::default()),
            Some(b) => <[u8; 32]>::try_from(b.as_slice())
                .map(|b| Sum::from_hash(&Hash(b)))
                .map_err(|_| {
                    DbError::Engine(format!(
                        "corrupt Merkle sum at {key:?}: {} bytes instead of 32",
                        b.len()
                    ))
                }),
        }
    }

    fn to_hash(self) -> Hash {
        let mut out = [0u8; 32];
        for (bytes, limb) in out.chunks_exact_mut(8).zip(self.0) {
            bytes.copy_from_slice(&limb.to_le_bytes());
        }
        Hash(out)
    }

    fn is_zero(&self) -> bool {
        self.0 == [0; 4]
    }

    /// `self + other` modulo 2^256.
    fn add(self, other: Sum) -> Sum {
        let mut out = [0u64; 4];
        let mut carry = false;
        for (i, o) in out.iter_mut().enumerate() {
            let (s1, c1) = self.0[i].overflowing_add(other.0[i]);
            let (s2, c2) = s1.overflowing_add(u64::from(carry));
            *o = s2;
            carry = c1 || c2;
        }
        Sum(out)
    }

    /// `-self` modulo 2^256.
    fn neg(self) -> Sum {
        Sum(self.0.map(|l| !l)).add(Sum([1, 0, 0, 0]))
    }
}

/// What an item with this storage key and value hash adds to the sums.
fn contribution(key: &[u8], value: &Hash) -> Sum {
    let mut buf = Vec::with_capacity(key.len() + 32);
    buf.extend_from_slice(key);
    buf.extend_from_slice(&value.0);
    Sum::from_hash(&Hash::of(&buf))
}

/// The group of an item: the first byte of its storage key's hash.
fn group_of(key: &[u8]) -> u8 {
    Hash::of(key).0[0]
}

pub struct MerkleTree {
    pub sums: TreeId,
    /// The table's items, listed for the leaves of differing groups.
    items: TreeId,
}

impl MerkleTree {
    pub(crate) fn open(db: &Db, table: &str, items: TreeId) -> DbResult<MerkleTree> {
        Ok(MerkleTree {
            sums: db.open_tree(&format!("{table}:merkle_sums"))?,
            items,
        })
    }

    /// Partition `p`'s sum (zero when it holds nothing).
    pub(crate) fn root(&self, db: &Db, p: u8) -> DbResult<Hash> {
        Ok(Sum::from_bytes(&[0, p], db.get(self.sums, &[0, p])?)?.to_hash())
    }

    /// The children of the node at `path`: `[p]` (a partition: its groups'
    /// sums) or `[p, g1, g2, ...]` (the items of partition `p` in those
    /// groups, read from the items themselves).
    pub(crate) fn children(&self, db: &Db, path: &[u8]) -> DbResult<MerkleNode> {
        use std::ops::Bound;
        let Some((&p, groups)) = path.split_first().filter(|(_, g)| g.len() <= 256) else {
            return Err(DbError::Engine(format!(
                "no Merkle node has a path of {} bytes",
                path.len()
            )));
        };
        if groups.is_empty() {
            let prefix = [1, p];
            let end = crate::db::prefix_end(&prefix);
            let end = match &end {
                Some(e) => Bound::Excluded(e.as_slice()),
                None => Bound::Unbounded,
            };
            let sums = db
                .range(
                    self.sums,
                    Bound::Included(&prefix[..]),
                    end,
                    false,
                    usize::MAX,
                )?
                .into_iter()
                .map(|(k, v)| {
                    let sum = Sum::from_bytes(&k, Some(v))?;
                    Ok((k.last().copied().unwrap_or_default(), sum.to_hash()))
                })
                .collect::<DbResult<_>>()?;
            return Ok(MerkleNode::Sums(sums));
        }
        let mut wanted = [false; 256];
        groups.iter().for_each(|g| wanted[usize::from(*g)] = true);
        let end = crate::db::prefix_end(&[p]);
        let mut after: Option<Vec<u8>> = None;
        let mut leaves = Vec::new();
        loop {
            let start = match &after {
                Some(a) => Bound::Excluded(a.as_slice()),
                None => Bound::Included(&[p][..]),
            };
            let end = match &end {
                Some(e) => Bound::Excluded(e.as_slice()),
                None => Bound::Unbounded,
            };
            let page = db.range(self.items, start, end, false, LEAF_PAGE)?;
            let full = page.len() == LEAF_PAGE;
            after = page.last().map(|(k, _)| k.clone());
            leaves.extend(
                page.into_iter()
                    .filter(|(k, _)| wanted[usize::from(group_of(k))])
                    .map(|(k, v)| {
                        let vh = Hash::of(&v);
                        (k, vh)
                    }),
            );
            if !full {
                return Ok(MerkleNode::Leaves(leaves));
            }
        }
    }

    /// Fold queued changes into the sums: each `(key, pending)` moves the
    /// item's contribution from `pending.folded` to `pending.now`; each
    /// sum on their ways changes once, by the total.
    pub(crate) fn update_items(&self, tx: &mut dyn Tx, items: &[(&[u8], Pending)]) -> TxResult<()> {
        let mut deltas: BTreeMap<[u8; 3], Sum> = BTreeMap::new();
        for &(key, pending) in items {
            let Some(&p) = key.first() else { continue };
            if pending.folded == pending.now {
                continue;
            }
            let mut delta = Sum::default();
            if let Some(old) = &pending.folded {
                delta = delta.add(contribution(key, old).neg());
            }
            if let Some(now) = &pending.now {
                delta = delta.add(contribution(key, now));
            }
            for k in [[0, p, 0], [1, p, group_of(key)]] {
                let d = deltas.entry(k).or_default();
                *d = d.add(delta);
            }
        }
        for (k, delta) in deltas {
            if delta.is_zero() {
                continue;
            }
            // `[0, p]` for a partition, `[1, p, g]` for a group.
            let k = if k[0] == 0 { &k[..2] } else { &k[..] };
            let sum = Sum::from_bytes(k, tx.get(self.sums, k)?)?.add(delta);
            if sum.is_zero() {
                tx.remove(self.sums, k)?;
            } else {
                tx.insert(self.sums, k, &sum.to_hash().0)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::mem::MemEngine;
    use proptest::prelude::*;
    use std::sync::Arc;

    /// A table's items and sums, kept as `data.rs` keeps them.
    struct Store {
        db: Db,
        t: MerkleTree,
        items: TreeId,
        /// What the sums hold per key.
        folded: BTreeMap<Vec<u8>, Hash>,
    }

    impl Store {
        fn new() -> Store {
            let db: Db = Arc::new(MemEngine::default());
            let items = db.open_tree("t:items").unwrap();
            let t = MerkleTree::open(&db, "t", items).unwrap();
            Store {
                db,
                t,
                items,
                folded: BTreeMap::new(),
            }
        }

        /// Write each item (`Some(b)`: value `[b]`; None: removed), then
        /// fold the batch's last change per key in one transaction.
        fn batch(&mut self, ops: &[(Vec<u8>, Option<u8>)]) {
            let mut last = BTreeMap::new();
            for (k, v) in ops {
                match v {
                    Some(b) => self.db.insert(self.items, k, &[*b]).unwrap(),
                    None => self.db.remove(self.items, k).unwrap(),
                }
                last.insert(k.clone(), v.map(|b| Hash::of(&[b])));
            }
            let changes: Vec<(&[u8], Pending)> = last
                .iter()
                .map(|(k, now)| {
                    let folded = self.folded.get(k).copied();
                    (k.as_slice(), Pending { folded, now: *now })
                })
                .collect();
            let t = &self.t;
            self.db
                .transaction(&[t.sums], &mut |tx| t.update_items(tx, &changes))
                .unwrap();
            for (k, now) in last {
                match now {
                    Some(h) => self.folded.insert(k, h),
                    None => self.folded.remove(&k),
                };
            }
        }

        fn roots(&self) -> Vec<Hash> {
            (0..=255u8)
                .map(|p| self.t.root(&self.db, p).unwrap())
                .collect()
        }

        /// Every stored sum.
        fn sums(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
            use std::ops::Bound::Unbounded;
            self.db
                .range(self.t.sums, Unbounded, Unbounded, false, usize::MAX)
                .unwrap()
        }
    }

    fn apply(ops: &[(Vec<u8>, Option<u8>)]) -> Store {
        let mut s = Store::new();
        for op in ops {
            s.batch(std::slice::from_ref(op));
        }
        s
    }

    fn key() -> impl Strategy<Value = Vec<u8>> {
        // Few partitions and many keys per partition.
        (0u8..2, 0u16..40).prop_map(|(p, k)| {
            let mut v = vec![p];
            v.extend_from_slice(&k.to_be_bytes());
            v
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// The same final set of items gives the same sums, entry for
        /// entry, whatever the order and whatever was inserted and removed
        /// before.
        #[test]
        fn merkle_sums_are_equal_for_equal_contents(
            ops in proptest::collection::vec((key(), proptest::option::of(0u8..3)), 0..80),
            seed in any::<u64>(),
        ) {
            let s1 = apply(&ops);
            // Final state per key, then applied in a shuffled order, fresh.
            let mut last = BTreeMap::new();
            for (k, v) in &ops {
                last.insert(k.clone(), *v);
            }
            let mut fin: Vec<(Vec<u8>, Option<u8>)> = last.into_iter().filter(|(_, v)| v.is_some()).collect();
            let mut r = seed;
            for i in (1..fin.len()).rev() {
                r = r.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                fin.swap(i, (r >> 33) as usize % (i + 1));
            }
            let s2 = apply(&fin);
            prop_assert_eq!(s1.roots(), s2.roots());
            prop_assert_eq!(s1.sums(), s2.sums());
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Folding changes in batches of any size (a key changed several
        /// times in a batch folds once, from what the sums held to its
        /// last value) gives the same sums as folding them one at a time.
        #[test]
        fn batched_updates_build_the_same_sums(
            ops in proptest::collection::vec((key(), proptest::option::of(0u8..3)), 0..120),
            cuts in proptest::collection::vec(1usize..40, 1..10),
        ) {
            let s1 = apply(&ops);
            let mut s2 = Store::new();
            let mut rest = &ops[..];
            let mut sizes = cuts.iter().cycle();
            while !rest.is_empty() {
                let n = (*sizes.next().unwrap()).min(rest.len());
                let (batch, tail) = rest.split_at(n);
                rest = tail;
                s2.batch(batch);
            }
            prop_assert_eq!(s1.roots(), s2.roots());
            prop_assert_eq!(s1.sums(), s2.sums());
        }
    }

    #[test]
    fn removing_every_item_leaves_no_sum() {
        let ops: Vec<(Vec<u8>, Option<u8>)> = (0..50u8).map(|i| (vec![0, i], Some(1))).collect();
        let mut s = apply(&ops);
        assert_ne!(s.t.root(&s.db, 0).unwrap(), Hash::default());
        let removals: Vec<_> = ops.iter().map(|(k, _)| (k.clone(), None)).collect();
        s.batch(&removals);
        assert!(s.sums().is_empty());
        assert_eq!(s.t.root(&s.db, 0).unwrap(), Hash::default());
    }

    /// A queue entry reads back as written; a damaged one is an error
    /// naming it, not a guess.
    #[test]
    fn queue_entries_round_trip_and_damaged_ones_are_errors() {
        let h = |b: u8| Some(Hash::of(&[b]));
        for (folded, now) in [(None, None), (h(1), None), (None, h(2)), (h(1), h(2))] {
            let e = Pending { folded, now };
            assert_eq!(Pending::decode(b"k", &e.encode()).unwrap(), e);
        }
        let mut both = Pending {
            folded: h(1),
            now: h(2),
        }
        .encode();
        both.pop();
        for bad in [&[][..], &[4][..], &[1, 0, 0][..], &both[..], &[2; 34][..]] {
            let e = Pending::decode(b"k", bad).unwrap_err().to_string();
            assert!(e.contains("corrupt Merkle queue entry"), "{bad:?}: {e}");
        }
    }

    /// A peer asking for a node of no level, or a damaged sum in the
    /// store, gets an error naming it, not a panic nor a sum that stays
    /// silently wrong.
    #[test]
    fn bad_paths_and_damaged_sums_are_errors() {
        let mut s = apply(&[(vec![5, 1], Some(1))]);
        for path in [vec![], vec![0; 300]] {
            let e = s.t.children(&s.db, &path).unwrap_err().to_string();
            assert!(e.contains("no Merkle node"), "{path:?}: {e}");
        }
        s.db.insert(s.t.sums, &[0, 5], b"short").unwrap();
        assert!(
            s.t.root(&s.db, 5)
                .unwrap_err()
                .to_string()
                .contains("corrupt Merkle sum")
        );
        let t = &s.t;
        let e =
            s.db.transaction(&[t.sums], &mut |tx| {
                let now = Some(Hash::of(b"x"));
                t.update_items(tx, &[(&[5, 2], Pending { folded: None, now })])
            })
            .unwrap_err()
            .to_string();
        assert!(e.contains("corrupt Merkle sum"), "{e}");
        s.db.insert(s.t.sums, &[1, 5, 9], b"").unwrap();
        let e = s.t.children(&s.db, &[5]).unwrap_err().to_string();
        assert!(e.contains("corrupt Merkle sum"), "{e}");
        // The test store itself still works after the damage is repaired.
        s.db.remove(s.t.sums, &[1, 5, 9]).unwrap();
        s.db.remove(s.t.sums, &[0, 5]).unwrap();
        s.batch(&[(vec![5, 1], None)]);
    }

    /// Sums carry across limbs and wrap at 2^256; adding a number's
    /// negation gives zero.
    #[test]
    fn sums_are_arithmetic_modulo_2_to_the_256() {
        let max = Sum([u64::MAX; 4]);
        assert_eq!(max.add(Sum([1, 0, 0, 0])), Sum::default());
        assert_eq!(
            Sum([u64::MAX, 0, 0, 0]).add(Sum([1, 0, 0, 0])),
            Sum([0, 1, 0, 0])
        );
        for b in [0u8, 1, 7, 255] {
            let s = Sum::from_hash(&Hash::of(&[b]));
            assert_eq!(Sum::from_hash(&s.to_hash()), s);
            assert!(s.add(s.neg()).is_zero());
        }
    }

    /// From a partition, the one group whose sum differs, then that
    /// group's leaves, lead to the one item that differs; other
    /// partitions' items are never listed. More items than one page of
    /// the partition's listing.
    #[test]
    fn children_lead_from_a_partition_to_the_item_that_differs() {
        let mut ops: Vec<(Vec<u8>, Option<u8>)> = (0..3000u16)
            .map(|i| ([vec![3], i.to_be_bytes().to_vec()].concat(), Some(1)))
            .collect();
        ops.extend((0..50u16).map(|i| ([vec![4], i.to_be_bytes().to_vec()].concat(), Some(1))));
        let a = apply(&ops);
        let mut changed = ops.clone();
        changed[2077].1 = Some(2);
        let b = apply(&changed);
        assert_ne!(a.t.root(&a.db, 3).unwrap(), b.t.root(&b.db, 3).unwrap());
        assert_eq!(a.t.root(&a.db, 4).unwrap(), b.t.root(&b.db, 4).unwrap());
        let (MerkleNode::Sums(x), MerkleNode::Sums(y)) = (
            a.t.children(&a.db, &[3]).unwrap(),
            b.t.children(&b.db, &[3]).unwrap(),
        ) else {
            panic!("sums expected");
        };
        assert_eq!(x.len(), 256, "3,000 items fill every group");
        let differing: Vec<u8> = x
            .iter()
            .filter(|c| !y.contains(c))
            .map(|(g, _)| *g)
            .collect();
        assert_eq!(differing.len(), 1, "one group differs");
        let path = [3, differing[0]];
        let (MerkleNode::Leaves(x), MerkleNode::Leaves(y)) = (
            a.t.children(&a.db, &path).unwrap(),
            b.t.children(&b.db, &path).unwrap(),
        ) else {
            panic!("leaves expected");
        };
        assert!(x.iter().all(|(k, _)| k[0] == 3 && group_of(k) == path[1]));
        let differing: Vec<&Vec<u8>> = x
            .iter()
            .filter(|l| !y.contains(l))
            .map(|(k, _)| k)
            .collect();
        assert_eq!(differing, vec![&changed[2077].0]);
        // Every group at once lists the whole partition, in key order.
        let all: Vec<u8> = std::iter::once(3).chain(0..=255).collect();
        let MerkleNode::Leaves(every) = a.t.children(&a.db, &all).unwrap() else {
            panic!("leaves expected");
        };
        let keys: Vec<&Vec<u8>> = every.iter().map(|(k, _)| k).collect();
        let expected: Vec<&Vec<u8>> = ops.iter().take(3000).map(|(k, _)| k).collect();
        assert_eq!(keys, expected);
    }
}
