//! Per-partition hash-sum trees over a table's items, for anti-entropy.
//!
//! Every item contributes `BLAKE2b(storage key ++ hash of its encoding)`,
//! read as a 256-bit number. A partition is cut by the first two bytes of
//! `BLAKE2b(storage key)` (its path) into 256 groups of 256 buckets, and
//! the tree keeps, for the partition, each group and each bucket, the sum
//! (modulo 2^256) of the contributions under it; below a bucket it keeps
//! the items' own (storage key, value hash) leaves. A sum does not depend
//! on the order of the updates that made it, so two replicas holding the
//! same items hold the same tree, entry for entry (property-tested); two
//! that differ find where by descending only into groups and buckets
//! whose sums differ: three requests per differing region, whatever the
//! partition's size.
//!
//! What an update costs does not grow with the table: an item's change
//! rewrites its leaf and adds the difference of its contributions to
//! three 32-byte sums (a batch touches each sum once). The radix tree this
//! replaced (protocol 5 and before) stored in each inner node the hashes
//! of up to 256 children, so each change re-encoded and re-hashed nodes of
//! up to 8 KiB that grew with the table: a 1 KiB PUT's Merkle work grew
//! about tenfold between 20,000 and 1,000,000 objects in a bucket.
//!
//! The sums detect differences between honest replicas; they are not an
//! authenticator (sums of hashes can be made to collide by someone who
//! chooses the contributions, and the contributions here are hashes of
//! encodings that carry the agent's own timestamps and ids).
//!
//! Storage:
//! - `t:merkle_sums`: `[0, p]` -> the partition's sum, `[1, p, g]` -> a
//!   group's, `[2, p, g, b]` -> a bucket's (absent: zero);
//! - `t:merkle_leaves`: `[p] ++ path` -> value hash ++ storage key.

use std::collections::BTreeMap;

use hangar_common::hash::Hash;
use serde::{Deserialize, Serialize};

use crate::db::{Db, DbError, DbResult, TreeId, Tx, TxResult};

/// What one node of the tree holds, as sent to a peer comparing trees.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MerkleNode {
    /// A partition's groups or a group's buckets: (next path byte, sum),
    /// sorted, zero sums left out.
    Sums(Vec<(u8, Hash)>),
    /// A bucket's items: (storage key, hash of the item's encoding), in
    /// path order.
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
    /// damaged store: an error naming the entry, as for any corrupt
    /// Merkle entry, rather than a sum that silently stays wrong.
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

/// The keys of the sums on an item's way: its partition's, group's and
/// bucket's.
fn sum_keys(p: u8, path: &Hash) -> [Vec<u8>; 3] {
    [
        vec![0, p],
        vec![1, p, path.0[0]],
        vec![2, p, path.0[0], path.0[1]],
    ]
}

fn leaf_key(p: u8, path: &Hash) -> Vec<u8> {
    let mut k = Vec::with_capacity(33);
    k.push(p);
    k.extend_from_slice(&path.0);
    k
}

pub struct MerkleTree {
    pub sums: TreeId,
    pub leaves: TreeId,
}

impl MerkleTree {
    pub(crate) fn open(db: &Db, table: &str) -> DbResult<MerkleTree> {
        Ok(MerkleTree {
            sums: db.open_tree(&format!("{table}:merkle_sums"))?,
            leaves: db.open_tree(&format!("{table}:merkle_leaves"))?,
        })
    }

    /// The trees a fold writes.
    pub(crate) fn trees(&self) -> [TreeId; 2] {
        [self.sums, self.leaves]
    }

    /// Partition `p`'s sum (zero when it holds nothing).
    pub(crate) fn root(&self, db: &Db, p: u8) -> DbResult<Hash> {
        Ok(Sum::from_bytes(&[0, p], db.get(self.sums, &[0, p])?)?.to_hash())
    }

    /// The children of the node at `path`: `[p]` (a partition: its groups'
    /// sums), `[p, g]` (a group: its buckets' sums) or `[p, g, b]` (a
    /// bucket: its leaves).
    pub(crate) fn children(&self, db: &Db, path: &[u8]) -> DbResult<MerkleNode> {
        use std::ops::Bound;
        let (tree, prefix) = match path.len() {
            1 | 2 => {
                let mut prefix = vec![path.len() as u8];
                prefix.extend_from_slice(path);
                (self.sums, prefix)
            }
            3 => (self.leaves, path.to_vec()),
            n => {
                return Err(DbError::Engine(format!(
                    "no Merkle node has a path of {n} bytes"
                )));
            }
        };
        let end = crate::db::prefix_end(&prefix);
        let end = match &end {
            Some(e) => Bound::Excluded(e.as_slice()),
            None => Bound::Unbounded,
        };
        let entries = db.range(tree, Bound::Included(&prefix), end, false, usize::MAX)?;
        if tree == self.leaves {
            let leaves = entries
                .into_iter()
                .filter_map(|(_, v)| {
                    let (vh, key) = v.split_at_checked(32)?;
                    Some((key.to_vec(), Hash(<[u8; 32]>::try_from(vh).ok()?)))
                })
                .collect();
            return Ok(MerkleNode::Leaves(leaves));
        }
        let sums = entries
            .into_iter()
            .map(|(k, v)| {
                let sum = Sum::from_bytes(&k, Some(v))?;
                Ok((k.last().copied().unwrap_or_default(), sum.to_hash()))
            })
            .collect::<DbResult<_>>()?;
        Ok(MerkleNode::Sums(sums))
    }

    /// Reflect that item `key` now has encoding hash `value` (None: it was
    /// removed).
    #[cfg(test)]
    pub(crate) fn update_item(
        &self,
        tx: &mut dyn Tx,
        key: &[u8],
        value: Option<Hash>,
    ) -> TxResult<()> {
        self.update_items(tx, &[(key, value)])
    }

    /// Reflect several items' changes at once: each item's leaf, then each
    /// sum on their ways once, by the total of its items' changes.
    pub(crate) fn update_items(
        &self,
        tx: &mut dyn Tx,
        items: &[(&[u8], Option<Hash>)],
    ) -> TxResult<()> {
        let mut deltas: BTreeMap<Vec<u8>, Sum> = BTreeMap::new();
        for &(key, value) in items {
            let Some(&p) = key.first() else { continue };
            let path = Hash::of(key);
            let leaf = leaf_key(p, &path);
            let old = tx
                .get(self.leaves, &leaf)?
                .and_then(|v| <[u8; 32]>::try_from(v.get(..32)?).ok())
                .map(Hash);
            if old == value {
                continue;
            }
            let mut delta = Sum::default();
            if let Some(old) = &old {
                delta = delta.add(contribution(key, old).neg());
            }
            match &value {
                Some(vh) => {
                    let mut v = Vec::with_capacity(32 + key.len());
                    v.extend_from_slice(&vh.0);
                    v.extend_from_slice(key);
                    tx.insert(self.leaves, &leaf, &v)?;
                    delta = delta.add(contribution(key, vh));
                }
                None => tx.remove(self.leaves, &leaf)?,
            }
            for k in sum_keys(p, &path) {
                let d = deltas.entry(k).or_default();
                *d = d.add(delta);
            }
        }
        for (k, delta) in deltas {
            if delta.is_zero() {
                continue;
            }
            let sum = Sum::from_bytes(&k, tx.get(self.sums, &k)?)?.add(delta);
            if sum.is_zero() {
                tx.remove(self.sums, &k)?;
            } else {
                tx.insert(self.sums, &k, &sum.to_hash().0)?;
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

    fn apply(ops: &[(Vec<u8>, Option<u8>)]) -> (Db, MerkleTree) {
        let db: Db = Arc::new(MemEngine::default());
        let t = MerkleTree::open(&db, "t").unwrap();
        for (k, v) in ops {
            db.transaction(&t.trees(), &mut |tx| {
                t.update_item(tx, k, v.map(|b| Hash::of(&[b])))
            })
            .unwrap();
        }
        (db, t)
    }

    fn roots(db: &Db, t: &MerkleTree) -> Vec<Hash> {
        (0..=255u8).map(|p| t.root(db, p).unwrap()).collect()
    }

    /// Every entry of both trees.
    fn all_nodes(db: &Db, t: &MerkleTree) -> Vec<(Vec<u8>, Vec<u8>)> {
        let all = |tree| {
            db.range(
                tree,
                std::ops::Bound::Unbounded,
                std::ops::Bound::Unbounded,
                false,
                usize::MAX,
            )
            .unwrap()
        };
        let mut v = all(t.sums);
        v.extend(all(t.leaves));
        v
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
        /// The same final set of items gives the same trees, entry for
        /// entry, whatever the order and whatever was inserted and removed
        /// before.
        #[test]
        fn merkle_trees_are_equal_for_equal_contents(
            ops in proptest::collection::vec((key(), proptest::option::of(0u8..3)), 0..80),
            seed in any::<u64>(),
        ) {
            let (db1, t1) = apply(&ops);
            // Final state per key, then applied in a shuffled order, fresh.
            let mut last = std::collections::BTreeMap::new();
            for (k, v) in &ops {
                last.insert(k.clone(), *v);
            }
            let mut fin: Vec<(Vec<u8>, Option<u8>)> = last.into_iter().filter(|(_, v)| v.is_some()).collect();
            let mut s = seed;
            for i in (1..fin.len()).rev() {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                fin.swap(i, (s >> 33) as usize % (i + 1));
            }
            let (db2, t2) = apply(&fin);
            prop_assert_eq!(roots(&db1, &t1), roots(&db2, &t2));
            prop_assert_eq!(all_nodes(&db1, &t1), all_nodes(&db2, &t2));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Applying changes in batches of any size builds the same trees as
        /// applying them one at a time.
        #[test]
        fn batched_updates_build_the_same_trees(
            ops in proptest::collection::vec((key(), proptest::option::of(0u8..3)), 0..120),
            cuts in proptest::collection::vec(1usize..40, 1..10),
        ) {
            let (db1, t1) = apply(&ops);
            let db2: Db = Arc::new(MemEngine::default());
            let t2 = MerkleTree::open(&db2, "t").unwrap();
            let mut rest = &ops[..];
            let mut sizes = cuts.iter().cycle();
            while !rest.is_empty() {
                let n = (*sizes.next().unwrap()).min(rest.len());
                let (batch, tail) = rest.split_at(n);
                rest = tail;
                // Each key at most once per batch: its last change.
                let mut last = std::collections::BTreeMap::new();
                for (k, v) in batch {
                    last.insert(k.clone(), v.map(|b| Hash::of(&[b])));
                }
                let changes: Vec<(&[u8], Option<Hash>)> =
                    last.iter().map(|(k, v)| (k.as_slice(), *v)).collect();
                db2.transaction(&t2.trees(), &mut |tx| t2.update_items(tx, &changes))
                    .unwrap();
            }
            prop_assert_eq!(roots(&db1, &t1), roots(&db2, &t2));
            prop_assert_eq!(all_nodes(&db1, &t1), all_nodes(&db2, &t2));
        }
    }

    #[test]
    fn removing_every_item_leaves_no_node() {
        let ops: Vec<(Vec<u8>, Option<u8>)> = (0..50u8).map(|i| (vec![0, i], Some(1))).collect();
        let (db, t) = apply(&ops);
        assert_ne!(t.root(&db, 0).unwrap(), Hash::default());
        for (k, _) in &ops {
            db.transaction(&t.trees(), &mut |tx| t.update_item(tx, k, None))
                .unwrap();
        }
        assert!(all_nodes(&db, &t).is_empty());
        assert_eq!(t.root(&db, 0).unwrap(), Hash::default());
    }

    /// A peer asking for a node of no level, or a damaged sum in the
    /// store, gets an error naming it, not a panic nor a sum that stays
    /// silently wrong.
    #[test]
    fn bad_paths_and_damaged_sums_are_errors() {
        let (db, t) = apply(&[(vec![5, 1], Some(1))]);
        for path in [vec![], vec![5, 1, 2, 3], vec![0; 40]] {
            let e = t.children(&db, &path).unwrap_err().to_string();
            assert!(e.contains("no Merkle node"), "{path:?}: {e}");
        }
        db.insert(t.sums, &[0, 5], b"short").unwrap();
        assert!(
            t.root(&db, 5)
                .unwrap_err()
                .to_string()
                .contains("corrupt Merkle sum")
        );
        let e = db
            .transaction(&t.trees(), &mut |tx| {
                t.update_item(tx, &[5, 2], Some(Hash::of(b"x")))
            })
            .unwrap_err()
            .to_string();
        assert!(e.contains("corrupt Merkle sum"), "{e}");
        db.insert(t.sums, &[1, 5, 9], b"").unwrap();
        let e = t.children(&db, &[5]).unwrap_err().to_string();
        assert!(e.contains("corrupt Merkle sum"), "{e}");
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

    /// Descending from a partition through the group and bucket whose sums
    /// differ leads to the one item that differs.
    #[test]
    fn children_lead_from_a_partition_to_the_item_that_differs() {
        let ops: Vec<(Vec<u8>, Option<u8>)> = (0..200u16)
            .map(|i| ([vec![3], i.to_be_bytes().to_vec()].concat(), Some(1)))
            .collect();
        let (a, ta) = apply(&ops);
        let mut changed = ops.clone();
        changed[77].1 = Some(2);
        let (b, tb) = apply(&changed);
        assert_ne!(ta.root(&a, 3).unwrap(), tb.root(&b, 3).unwrap());
        let mut path = vec![3u8];
        for _ in 0..2 {
            let (MerkleNode::Sums(x), MerkleNode::Sums(y)) = (
                ta.children(&a, &path).unwrap(),
                tb.children(&b, &path).unwrap(),
            ) else {
                panic!("sums expected at {path:?}");
            };
            let differing: Vec<u8> = x
                .iter()
                .filter(|c| !y.contains(c))
                .map(|(byte, _)| *byte)
                .collect();
            assert_eq!(differing.len(), 1, "one child differs at {path:?}");
            path.push(differing[0]);
        }
        let (MerkleNode::Leaves(x), MerkleNode::Leaves(y)) = (
            ta.children(&a, &path).unwrap(),
            tb.children(&b, &path).unwrap(),
        ) else {
            panic!("leaves expected");
        };
        let differing: Vec<&Vec<u8>> = x
            .iter()
            .filter(|l| !y.contains(l))
            .map(|(k, _)| k)
            .collect();
        assert_eq!(differing, vec![&changed[77].0]);
    }
}
