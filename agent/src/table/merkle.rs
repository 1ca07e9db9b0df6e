//! Per-partition Merkle trees over a table's items, for anti-entropy.
//!
//! Each partition has a radix tree keyed by the BLAKE2 hash of the items'
//! storage keys, one byte per level. The shape is canonical, a function of
//! the set of (key, value hash) pairs only, whatever the order of updates:
//! a subtree with no item is absent, a subtree with one item is a leaf, a
//! subtree with more is an intermediate node listing its children's hashes.
//! So two replicas holding the same items have the same root hash, and two
//! replicas that differ find where by descending only into children whose
//! hashes differ: the work of a sync is proportional to the difference
//! times the depth (about log256 of the partition's size), not to the size.
//!
//! Nodes are stored in the `t:merkle` tree under `[partition] ++ path`; the
//! tree is updated incrementally, a batch of items at a time, inside the
//! same storage transaction that dequeues their changes; each node on the
//! batch's paths is written once.

use hangar_common::hash::Hash;
use serde::{Deserialize, Serialize};

use crate::db::{Db, DbError, DbResult, TreeId, Tx, TxResult};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MerkleNode {
    Empty,
    /// Children by next path byte, sorted, with their hashes.
    Intermediate(Vec<(u8, Hash)>),
    /// One item: its storage key and the hash of its encoding.
    Leaf(Vec<u8>, Hash),
}

impl MerkleNode {
    pub(crate) fn hash(&self) -> Hash {
        match self {
            MerkleNode::Empty => Hash::default(),
            n => Hash::of(&rmp_serde::to_vec(n).unwrap_or_default()),
        }
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        match self {
            MerkleNode::Empty => Vec::new(),
            n => rmp_serde::to_vec(n).unwrap_or_default(),
        }
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<MerkleNode, DbError> {
        if bytes.is_empty() {
            return Ok(MerkleNode::Empty);
        }
        rmp_serde::from_slice(bytes)
            .map_err(|e| DbError::Engine(format!("corrupt Merkle node: {e}")))
    }
}

pub struct MerkleTree {
    pub tree: TreeId,
}

/// Key of the root node of partition `p`.
pub(crate) fn root_key(p: u8) -> Vec<u8> {
    vec![p]
}

impl MerkleTree {
    pub(crate) fn open(db: &Db, table: &str) -> DbResult<MerkleTree> {
        Ok(MerkleTree {
            tree: db.open_tree(&format!("{table}:merkle"))?,
        })
    }

    pub(crate) fn node(&self, db: &Db, key: &[u8]) -> DbResult<MerkleNode> {
        match db.get(self.tree, key)? {
            Some(b) => MerkleNode::decode(&b),
            None => Ok(MerkleNode::Empty),
        }
    }

    fn read(&self, tx: &mut dyn Tx, key: &[u8]) -> TxResult<MerkleNode> {
        match tx.get(self.tree, key)? {
            Some(b) => MerkleNode::decode(&b),
            None => Ok(MerkleNode::Empty),
        }
    }

    fn write(&self, tx: &mut dyn Tx, key: &[u8], node: &MerkleNode) -> TxResult<Hash> {
        match node {
            MerkleNode::Empty => {
                tx.remove(self.tree, key)?;
                Ok(Hash::default())
            }
            n => {
                // Encoded once, for both the store and the hash.
                let bytes = n.encode();
                tx.insert(self.tree, key, &bytes)?;
                Ok(Hash::of(&bytes))
            }
        }
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

    /// Reflect several items' changes at once (each key at most once).
    /// Every node on their paths is read and written once, however many of
    /// the items pass through it: updating item by item rewrote (and
    /// encoded and hashed) a partition's root, up to 256 children, once
    /// per item.
    pub(crate) fn update_items(
        &self,
        tx: &mut dyn Tx,
        items: &[(&[u8], Option<Hash>)],
    ) -> TxResult<()> {
        let mut changes: Vec<Change> = items
            .iter()
            .filter(|(key, _)| !key.is_empty())
            .map(|&(key, value)| Change {
                path: Hash::of(key),
                key,
                value,
            })
            .collect();
        // By partition, then by path: each node's changes are a run.
        changes.sort_by(|a, b| (a.key[0], a.path).cmp(&(b.key[0], b.path)));
        for run in changes.chunk_by(|a, b| a.key[0] == b.key[0]) {
            self.update_rec(tx, &mut vec![run[0].key[0]], 0, run)?;
        }
        Ok(())
    }

    /// Apply `changes` (sorted by path) to the children of the node at
    /// `node_key`, one subtree per next path byte, updating `children`.
    fn update_children(
        &self,
        tx: &mut dyn Tx,
        node_key: &mut Vec<u8>,
        depth: usize,
        changes: &[Change],
        children: &mut Vec<(u8, Hash)>,
    ) -> TxResult<()> {
        for run in changes.chunk_by(|a, b| a.path.0[depth] == b.path.0[depth]) {
            let byte = run[0].path.0[depth];
            node_key.push(byte);
            let h = self.update_rec(tx, node_key, depth + 1, run)?;
            node_key.pop();
            set_child(children, byte, h);
        }
        Ok(())
    }

    /// Apply `changes` (sorted by path, all under `node_key`) to the
    /// subtree at `node_key`, `depth` bytes down; returns its new hash.
    fn update_rec(
        &self,
        tx: &mut dyn Tx,
        node_key: &mut Vec<u8>,
        depth: usize,
        changes: &[Change],
    ) -> TxResult<Hash> {
        if depth >= 32 {
            return Err(DbError::Engine(
                "Merkle path exhausted (hash collision?)".into(),
            ));
        }
        let node = self.read(tx, node_key)?;
        let original = node.clone();
        let new = match node {
            MerkleNode::Intermediate(mut children) => {
                self.update_children(tx, node_key, depth, changes, &mut children)?;
                match children.as_slice() {
                    [] => MerkleNode::Empty,
                    [(only, _)] => {
                        // One child left: if it is a leaf, it moves up here
                        // (canonical shape). Children were updated first, so
                        // a leaf left alone further down has moved up to it.
                        node_key.push(*only);
                        let child = self.read(tx, node_key)?;
                        let pulled = if let MerkleNode::Leaf(..) = child {
                            tx.remove(self.tree, node_key)?;
                            Some(child)
                        } else {
                            None
                        };
                        node_key.pop();
                        pulled.unwrap_or(MerkleNode::Intermediate(children))
                    }
                    _ => MerkleNode::Intermediate(children),
                }
            }
            old => {
                // Empty or one leaf: no node below. What the subtree holds
                // after the changes decides its shape.
                let mut items: Vec<(Hash, Vec<u8>, Hash)> = changes
                    .iter()
                    .filter_map(|c| c.value.map(|v| (c.path, c.key.to_vec(), v)))
                    .collect();
                if let MerkleNode::Leaf(k, vh) = &old
                    && !changes.iter().any(|c| c.key == k.as_slice())
                {
                    let path = Hash::of(k);
                    let at = items.partition_point(|(p, _, _)| *p < path);
                    items.insert(at, (path, k.clone(), *vh));
                }
                match items.len() {
                    0 => MerkleNode::Empty,
                    1 => {
                        let (_, k, vh) = items.remove(0);
                        MerkleNode::Leaf(k, vh)
                    }
                    _ => {
                        // Several: an intermediate node over new subtrees,
                        // built from these items as insertions.
                        let inserts: Vec<Change> = items
                            .iter()
                            .map(|(path, k, vh)| Change {
                                path: *path,
                                key: k,
                                value: Some(*vh),
                            })
                            .collect();
                        let mut children = Vec::new();
                        self.update_children(tx, node_key, depth, &inserts, &mut children)?;
                        MerkleNode::Intermediate(children)
                    }
                }
            }
        };
        if new == original {
            Ok(new.hash())
        } else {
            self.write(tx, node_key, &new)
        }
    }
}

/// One item's change, with the path of its key.
struct Change<'a> {
    path: Hash,
    key: &'a [u8],
    value: Option<Hash>,
}

fn set_child(children: &mut Vec<(u8, Hash)>, byte: u8, h: Hash) {
    let pos = children.binary_search_by_key(&byte, |(b, _)| *b);
    match (pos, h == Hash::default()) {
        (Ok(i), true) => {
            children.remove(i);
        }
        (Ok(i), false) => children[i].1 = h,
        (Err(_), true) => {}
        (Err(i), false) => children.insert(i, (byte, h)),
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
            db.transaction(&[t.tree], &mut |tx| {
                t.update_item(tx, k, v.map(|b| Hash::of(&[b])))
            })
            .unwrap();
        }
        (db, t)
    }

    fn roots(db: &Db, t: &MerkleTree) -> Vec<Hash> {
        (0..=255u8)
            .map(|p| t.node(db, &root_key(p)).unwrap().hash())
            .collect()
    }

    fn all_nodes(db: &Db, t: &MerkleTree) -> Vec<(Vec<u8>, Vec<u8>)> {
        db.range(
            t.tree,
            std::ops::Bound::Unbounded,
            std::ops::Bound::Unbounded,
            false,
            usize::MAX,
        )
        .unwrap()
    }

    fn key() -> impl Strategy<Value = Vec<u8>> {
        // Few partitions and many keys per partition, so trees get deep.
        (0u8..2, 0u16..40).prop_map(|(p, k)| {
            let mut v = vec![p];
            v.extend_from_slice(&k.to_be_bytes());
            v
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// The same final set of items gives the same trees, node for node,
        /// whatever the order and whatever was inserted and removed before.
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
        /// Applying changes in batches of any size builds the same nodes as
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
                db2.transaction(&[t2.tree], &mut |tx| t2.update_items(tx, &changes))
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
        assert_ne!(t.node(&db, &root_key(0)).unwrap(), MerkleNode::Empty);
        for (k, _) in &ops {
            db.transaction(&[t.tree], &mut |tx| t.update_item(tx, k, None))
                .unwrap();
        }
        assert!(all_nodes(&db, &t).is_empty());
    }
}
