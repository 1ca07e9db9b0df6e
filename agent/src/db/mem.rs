//! In-memory engine, for unit tests of the layers above storage.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Mutex;

use super::{DbError, DbResult, Engine, TreeId, Tx, TxResult};

type Tree = BTreeMap<Vec<u8>, Vec<u8>>;

#[derive(Default)]
pub struct MemEngine {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    names: Vec<String>,
    trees: Vec<Tree>,
    transactions: u64,
}

impl MemEngine {
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }
}

fn tree(inner: &mut Inner, t: TreeId) -> DbResult<&mut Tree> {
    inner.trees.get_mut(t.0).ok_or(DbError::NoTree(t))
}

impl Engine for MemEngine {
    fn open_tree(&self, name: &str) -> DbResult<TreeId> {
        self.with(|i| {
            if let Some(pos) = i.names.iter().position(|n| n == name) {
                return Ok(TreeId(pos));
            }
            i.names.push(name.to_string());
            i.trees.push(Tree::new());
            Ok(TreeId(i.trees.len() - 1))
        })
    }

    fn get(&self, t: TreeId, key: &[u8]) -> DbResult<Option<Vec<u8>>> {
        self.with(|i| Ok(tree(i, t)?.get(key).cloned()))
    }

    fn insert(&self, t: TreeId, key: &[u8], value: &[u8]) -> DbResult<()> {
        self.with(|i| {
            tree(i, t)?.insert(key.to_vec(), value.to_vec());
            Ok(())
        })
    }

    fn remove(&self, t: TreeId, key: &[u8]) -> DbResult<()> {
        self.with(|i| {
            tree(i, t)?.remove(key);
            Ok(())
        })
    }

    fn range(
        &self,
        t: TreeId,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        reverse: bool,
        limit: usize,
    ) -> DbResult<Vec<(Vec<u8>, Vec<u8>)>> {
        self.with(|i| {
            let tr = tree(i, t)?;
            let range = tr.range::<[u8], _>((start, end));
            let pick = |(k, v): (&Vec<u8>, &Vec<u8>)| (k.clone(), v.clone());
            Ok(if reverse {
                range.rev().take(limit).map(pick).collect()
            } else {
                range.take(limit).map(pick).collect()
            })
        })
    }

    fn len(&self, t: TreeId) -> DbResult<usize> {
        self.with(|i| Ok(tree(i, t)?.len()))
    }

    fn transaction(
        &self,
        trees: &[TreeId],
        f: &mut dyn FnMut(&mut dyn Tx) -> TxResult<()>,
    ) -> DbResult<()> {
        self.with(|i| {
            let mut tx = MemTx {
                inner: i,
                trees,
                writes: Vec::new(),
            };
            f(&mut tx)?;
            let writes = std::mem::take(&mut tx.writes);
            i.transactions += 1;
            for (t, k, v) in writes {
                let tr = tree(i, t)?;
                match v {
                    Some(v) => tr.insert(k, v),
                    None => tr.remove(&k),
                };
            }
            Ok(())
        })
    }

    fn transactions(&self) -> u64 {
        self.with(|i| i.transactions)
    }

    fn snapshot(&self, _dir: &std::path::Path) -> DbResult<super::SnapshotStats> {
        Err(DbError::Aborted(
            "the in-memory engine (tests only) has nothing to snapshot".into(),
        ))
    }

    fn flush(&self) -> DbResult<()> {
        Ok(())
    }

    fn name(&self) -> &'static str {
        "memory"
    }
}

/// Writes are buffered and applied on commit; reads see them.
struct MemTx<'a> {
    inner: &'a mut Inner,
    /// The trees the transaction declared: like sled, no other.
    trees: &'a [TreeId],
    writes: Vec<(TreeId, Vec<u8>, Option<Vec<u8>>)>,
}

impl MemTx<'_> {
    fn declared(&self, t: TreeId) -> TxResult<()> {
        if self.trees.contains(&t) {
            Ok(())
        } else {
            Err(DbError::Undeclared(t))
        }
    }
}

impl Tx for MemTx<'_> {
    fn get(&mut self, t: TreeId, key: &[u8]) -> TxResult<Option<Vec<u8>>> {
        self.declared(t)?;
        if let Some((_, _, v)) = self
            .writes
            .iter()
            .rev()
            .find(|(tt, k, _)| *tt == t && k == key)
        {
            return Ok(v.clone());
        }
        Ok(tree(self.inner, t)?.get(key).cloned())
    }

    fn insert(&mut self, t: TreeId, key: &[u8], value: &[u8]) -> TxResult<()> {
        self.declared(t)?;
        tree(self.inner, t)?;
        self.writes.push((t, key.to_vec(), Some(value.to_vec())));
        Ok(())
    }

    fn remove(&mut self, t: TreeId, key: &[u8]) -> TxResult<()> {
        self.declared(t)?;
        tree(self.inner, t)?;
        self.writes.push((t, key.to_vec(), None));
        Ok(())
    }
}
