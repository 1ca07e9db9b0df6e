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
//! tree is updated incrementally, one item at a time, inside the same
//! storage transaction that dequeues the item's change.

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
    pub(crate) fn update_item(
        &self,
        tx: &mut dyn Tx,
        key: &[u8],
        value: Option<Hash>,
    ) -> TxResult<()> {
        let Some(&partition) = key.first() else {
            return Ok(());
        };
        let path = Hash::of(key);
        self.update_rec(tx, &mut vec![partition], 0, &path, key, value)?;
        Ok(())
    }

    fn update_rec(
        &self,
        tx: &mut dyn Tx,
        node_key: &mut Vec<u8>,
        depth: usize,
        path: &Hash,
        key: &[u8],
        value: Option<Hash>,
    ) -> TxResult<Hash> {
        if depth >= path.0.len() {
            return Err(DbError::Engine(
                "Merkle path exhausted (hash collision?)".into(),
            ));
        }
        let node = self.read(tx, node_key)?;
        let new = match node {
            MerkleNode::Empty => match value {
                None => return Ok(Hash::default()),
                Some(vh) => MerkleNode::Leaf(key.to_vec(), vh),
            },
            MerkleNode::Leaf(k, vh) if k == key => match value {
                None => MerkleNode::Empty,
                Some(nvh) if nvh == vh => return Ok(MerkleNode::Leaf(k, vh).hash()),
                Some(nvh) => MerkleNode::Leaf(k, nvh),
            },
            MerkleNode::Leaf(k, vh) => match value {
                None => return Ok(MerkleNode::Leaf(k, vh).hash()),
                Some(_) => {
                    // Two items under this prefix: push the existing leaf one
                    // level down, then insert the new item beside it.
                    let other = Hash::of(&k).0[depth];
                    let leaf = MerkleNode::Leaf(k, vh);
                    node_key.push(other);
                    let h_other = self.write(tx, node_key, &leaf)?;
                    node_key.pop();
                    let mut children = vec![(other, h_other)];
                    let mine = path.0[depth];
                    node_key.push(mine);
                    let h_mine = self.update_rec(tx, node_key, depth + 1, path, key, value)?;
                    node_key.pop();
                    set_child(&mut children, mine, h_mine);
                    MerkleNode::Intermediate(children)
                }
            },
            MerkleNode::Intermediate(mut children) => {
                let mine = path.0[depth];
                node_key.push(mine);
                let h = self.update_rec(tx, node_key, depth + 1, path, key, value)?;
                node_key.pop();
                set_child(&mut children, mine, h);
                match children.as_slice() {
                    [] => MerkleNode::Empty,
                    [(only, _)] => {
                        // One child left: if it is a leaf, it moves up here
                        // (canonical shape).
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
        };
        self.write(tx, node_key, &new)
    }
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
