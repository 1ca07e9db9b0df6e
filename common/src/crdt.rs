//! Conflict-free replicated data types.
//!
//! A CRDT's `merge` is commutative, associative and idempotent: replicas that
//! have seen the same updates, in any order and any number of times, hold the
//! same value. That is what lets two operators stage layout changes on two
//! nodes and gossip them without a coordinator. The laws are checked by
//! property tests (timestamps drawn from a tiny range so ties really happen).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::NodeId;

/// Something replicas can merge.
///
/// Laws: `a.merge(b)` equals `b.merge(a)` (commutative), merging in any
/// grouping gives the same result (associative), and `a.merge(a)` is `a`
/// (idempotent).
pub trait Crdt {
    fn merge(&mut self, other: &Self);
}

/// Last-writer-wins register: the value with the greatest (timestamp,
/// writer) wins. Ties on both (only possible if one writer reused a
/// timestamp) fall back to comparing values, which keeps merge a total order
/// and therefore commutative.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lww<T> {
    pub timestamp: u64,
    pub writer: NodeId,
    pub value: T,
}

impl<T: Ord + Clone> Lww<T> {
    pub fn new(timestamp: u64, writer: NodeId, value: T) -> Self {
        Lww {
            timestamp,
            writer,
            value,
        }
    }

    /// Overwrite with a timestamp greater than the current one, so the
    /// update wins even against a replica whose clock runs ahead.
    pub fn update(&mut self, now: u64, writer: NodeId, value: T) {
        self.timestamp = now.max(self.timestamp + 1);
        self.writer = writer;
        self.value = value;
    }

    fn key(&self) -> (u64, &NodeId, &T) {
        (self.timestamp, &self.writer, &self.value)
    }
}

impl<T: Default + PartialEq> Lww<T> {
    /// Never written (for `skip_serializing_if`).
    pub fn is_unwritten(&self) -> bool {
        self.timestamp == 0 && self.value == T::default()
    }
}

/// A register never written: loses against any write.
impl<T: Default> Default for Lww<T> {
    fn default() -> Self {
        Lww {
            timestamp: 0,
            writer: NodeId([0; crate::ids::NODE_ID_LEN]),
            value: T::default(),
        }
    }
}

impl<T: Ord + Clone> Crdt for Lww<T> {
    fn merge(&mut self, other: &Self) {
        if other.key() > self.key() {
            *self = other.clone();
        }
    }
}

/// A map of last-writer-wins registers: keys are never removed, a removal
/// is a register holding a "removed" value (a tombstone), so a removal and a
/// concurrent older update merge the same way everywhere.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LwwMap<K: Ord, V> {
    pub entries: BTreeMap<K, Lww<V>>,
}

impl<K: Ord, V> Default for LwwMap<K, V> {
    fn default() -> Self {
        LwwMap {
            entries: BTreeMap::new(),
        }
    }
}

impl<K: Ord + Clone, V: Ord + Clone> LwwMap<K, V> {
    pub fn get(&self, k: &K) -> Option<&V> {
        self.entries.get(k).map(|r| &r.value)
    }

    pub fn set(&mut self, k: K, now: u64, writer: NodeId, v: V) {
        match self.entries.get_mut(&k) {
            Some(reg) => reg.update(now, writer, v),
            None => {
                self.entries.insert(k, Lww::new(now, writer, v));
            }
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.entries.iter().map(|(k, r)| (k, &r.value))
    }
}

impl<K: Ord + Clone, V: Ord + Clone> Crdt for LwwMap<K, V> {
    fn merge(&mut self, other: &Self) {
        for (k, reg) in &other.entries {
            match self.entries.get_mut(k) {
                Some(mine) => mine.merge(reg),
                None => {
                    self.entries.insert(k.clone(), reg.clone());
                }
            }
        }
    }
}

/// A flag that can only be raised: merge is logical OR.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Flag(pub bool);

impl Flag {
    pub fn raise(&mut self) {
        self.0 = true;
    }

    /// Never raised (for `skip_serializing_if`).
    pub fn is_unset(&self) -> bool {
        !self.0
    }
}

impl Crdt for Flag {
    fn merge(&mut self, other: &Self) {
        self.0 |= other.0;
    }
}

/// A value that can be deleted for good: once deleted on any replica, the
/// deletion (a tombstone) wins every merge. Values themselves merge as CRDTs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Deletable<T> {
    Present(T),
    Deleted,
}

impl<T> Deletable<T> {
    pub fn is_deleted(&self) -> bool {
        matches!(self, Deletable::Deleted)
    }
    pub fn as_option(&self) -> Option<&T> {
        match self {
            Deletable::Present(v) => Some(v),
            Deletable::Deleted => None,
        }
    }
}

impl<T: Crdt + Clone> Crdt for Deletable<T> {
    fn merge(&mut self, other: &Self) {
        match (&mut *self, other) {
            (Deletable::Deleted, _) => {}
            (_, Deletable::Deleted) => *self = Deletable::Deleted,
            (Deletable::Present(a), Deletable::Present(b)) => a.merge(b),
        }
    }
}

/// Milliseconds since the Unix epoch on this node's wall clock (see
/// [`crate::clock`]: timestamps that order writes come from its hybrid
/// clock instead).
pub fn now_msec() -> u64 {
    crate::clock::wall_ms()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn node() -> impl Strategy<Value = NodeId> {
        (0u8..3).prop_map(|b| NodeId([b; 32]))
    }

    fn lww() -> impl Strategy<Value = Lww<u8>> {
        (0u64..4, node(), 0u8..4).prop_map(|(t, n, v)| Lww::new(t, n, v))
    }

    fn map() -> impl Strategy<Value = LwwMap<u8, u8>> {
        proptest::collection::btree_map(0u8..4, lww(), 0..4).prop_map(|entries| LwwMap { entries })
    }

    fn deletable() -> impl Strategy<Value = Deletable<LwwMap<u8, u8>>> {
        prop_oneof![Just(Deletable::Deleted), map().prop_map(Deletable::Present)]
    }

    fn merged<T: Crdt + Clone>(a: &T, b: &T) -> T {
        let mut x = a.clone();
        x.merge(b);
        x
    }

    proptest! {
        #[test]
        fn lww_merge_is_commutative_associative_idempotent(a in lww(), b in lww(), c in lww()) {
            prop_assert_eq!(merged(&a, &b), merged(&b, &a));
            prop_assert_eq!(merged(&merged(&a, &b), &c), merged(&a, &merged(&b, &c)));
            prop_assert_eq!(merged(&a, &a), a);
        }

        #[test]
        fn lww_map_merge_is_commutative_associative_idempotent(a in map(), b in map(), c in map()) {
            prop_assert_eq!(merged(&a, &b), merged(&b, &a));
            prop_assert_eq!(merged(&merged(&a, &b), &c), merged(&a, &merged(&b, &c)));
            prop_assert_eq!(merged(&a, &a), a);
        }

        #[test]
        fn flag_merge_is_commutative_associative_idempotent(a: bool, b: bool, c: bool) {
            let (a, b, c) = (Flag(a), Flag(b), Flag(c));
            prop_assert_eq!(merged(&a, &b), merged(&b, &a));
            prop_assert_eq!(merged(&merged(&a, &b), &c), merged(&a, &merged(&b, &c)));
            prop_assert_eq!(merged(&a, &a), a);
        }

        #[test]
        fn deletable_merge_is_commutative_associative_idempotent(a in deletable(), b in deletable(), c in deletable()) {
            prop_assert_eq!(merged(&a, &b), merged(&b, &a));
            prop_assert_eq!(merged(&merged(&a, &b), &c), merged(&a, &merged(&b, &c)));
            prop_assert_eq!(merged(&a, &a), a.clone());
            if a.is_deleted() {
                prop_assert!(merged(&a, &b).is_deleted(), "a tombstone wins");
            }
        }

        #[test]
        fn lww_update_wins_over_what_it_replaced(a in lww(), now in 0u64..4, w in node(), v in 0u8..4) {
            let mut b = a.clone();
            b.update(now, w, v);
            prop_assert_eq!(merged(&a, &b).value, v);
        }
    }
}
