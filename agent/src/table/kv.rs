//! `debug_kv`: a diagnostics table of string keys and values.
//!
//! It exists so that operators and the end-to-end tests can exercise the
//! replicated table layer (quorums, repair, anti-entropy, GC, layout
//! changes) on a real cluster through `hangar debug kv`, independently of the
//! object store's tables. Each key is its own partition key, so keys spread
//! over all partitions.

use hangar_common::NodeId;
use hangar_common::crdt::{Crdt, Lww};
use serde::{Deserialize, Serialize};

use super::{TableItem, TableSchema};

pub struct KvTable;

impl TableSchema for KvTable {
    const NAME: &'static str = "debug_kv";
    type Item = KvItem;
}

/// A key and its last-writer-wins value; `None` is a deletion (tombstone).
/// Timed in microseconds of the hybrid clock, and written in order
/// ([`super::Table::insert_latest`]) as object versions are.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvItem {
    pub key: String,
    pub value: Lww<Option<String>>,
    /// Written by a conditional write: the digest of the item it replaced
    /// (see [`TableItem::replaced`]); goes with `value`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced: Option<u64>,
}

impl KvItem {
    pub(crate) fn new(key: &str, value: Option<String>, timestamp: u64, writer: NodeId) -> KvItem {
        KvItem {
            key: key.to_string(),
            value: Lww::new(timestamp, writer, value),
            replaced: None,
        }
    }

    pub(crate) fn value(&self) -> Option<&str> {
        self.value.value.as_deref()
    }
}

impl Crdt for KvItem {
    fn merge(&mut self, other: &Self) {
        let before = self.value.clone();
        self.value.merge(&other.value);
        if self.value != before {
            self.replaced = other.replaced;
        }
    }
}

impl TableItem for KvItem {
    fn partition_key(&self) -> &[u8] {
        self.key.as_bytes()
    }
    fn sort_key(&self) -> &[u8] {
        &[]
    }
    fn is_tombstone(&self) -> bool {
        self.value.value.is_none()
    }
    fn write_time(&self) -> Option<u64> {
        Some(self.value.timestamp)
    }
    fn set_write_time(&mut self, t: u64) {
        self.value.timestamp = t;
    }
    fn replaced(&self) -> Option<u64> {
        self.replaced
    }
    fn set_replaced(&mut self, digest: Option<u64>) {
        self.replaced = digest;
    }
}
