//! The object store's tables: buckets, bucket names, access keys, objects,
//! object versions' block lists, and block references.
//!
//! - `bucket`: one item per bucket, keyed by its random id.
//! - `bucket_alias`: bucket name -> id (names are global).
//! - `key`: access key id -> secret, name, per-bucket permissions.
//! - `object`: one item per (bucket, object key). A bucket's index is spread
//!   over `shards` partition keys (`bucket id ++ shard`), the shard being
//!   derived from the object key's hash, so a big bucket's metadata lands on
//!   many partitions rather than on `replication_factor` nodes; listings
//!   merge the shards in key order.
//! - `version`: the block list of an object version, in chunks of at most
//!   [`CHUNK_BLOCKS`] blocks (sort key: chunk index), each written once, so a
//!   big upload costs O(n) metadata writes, not O(n^2).
//! - `block_ref`: block hash -> versions using it; partitioned like the
//!   blocks themselves, so the nodes storing a block keep its reference
//!   count (a hook, in the same transaction).
//!
//! Deleting or replacing an object drops the old version from the object
//! item; hooks queue, on each replica, the version's block list for
//! deletion, then its block references: see `gc.rs`.

use hangar_common::crdt::{Crdt, Flag, Lww, LwwMap};
use hangar_common::hash::Hash;
use serde::{Deserialize, Serialize};

use crate::block::RcTrees;
use crate::db::{TreeId, Tx, TxResult};
use crate::table::{TableItem, TableSchema};

/// Blocks per version-table chunk.
pub const CHUNK_BLOCKS: usize = 256;

pub type BucketId = Hash;
pub type VersionId = [u8; 16];

// ---------------------------------------------------------------- buckets

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    pub id: BucketId,
    pub name: String,
    pub created_ms: u64,
    /// Object index shards (fixed at creation).
    pub shards: u8,
    pub deleted: Flag,
    #[serde(default)]
    pub website: Lww<Option<WebsiteConfig>>,
    #[serde(default)]
    pub cors: Lww<Option<Vec<CorsRule>>>,
    #[serde(default)]
    pub lifecycle: Lww<Option<Vec<LifecycleRule>>>,
    #[serde(default)]
    pub quotas: Lww<Quotas>,
}

impl Crdt for Bucket {
    fn merge(&mut self, other: &Self) {
        self.deleted.merge(&other.deleted);
        self.website.merge(&other.website);
        self.cors.merge(&other.cors);
        self.lifecycle.merge(&other.lifecycle);
        self.quotas.merge(&other.quotas);
        // Immutable fields: keep a deterministic choice.
        if (other.created_ms, &other.name) < (self.created_ms, &self.name) {
            self.created_ms = other.created_ms;
            self.name = other.name.clone();
            self.shards = other.shards;
        }
    }
}

impl TableItem for Bucket {
    fn partition_key(&self) -> &[u8] {
        self.id.as_bytes()
    }
    fn sort_key(&self) -> &[u8] {
        &[]
    }
    fn is_tombstone(&self) -> bool {
        self.deleted.0
    }
}

pub struct BucketTable;

/// A bucket served as a static website (`[s3_web]`).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WebsiteConfig {
    /// Appended to paths ending in `/` (`index.html`).
    pub index_suffix: Option<String>,
    /// Served with status 404 when a key is missing.
    pub error_key: Option<String>,
    /// Send every request elsewhere: (host, protocol).
    pub redirect_all: Option<(String, Option<String>)>,
    pub routing_rules: Vec<RoutingRule>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RoutingRule {
    pub if_prefix: Option<String>,
    pub if_error: Option<u16>,
    pub protocol: Option<String>,
    pub host: Option<String>,
    pub replace_prefix: Option<String>,
    pub replace_key: Option<String>,
    pub code: Option<u16>,
}

/// One CORS rule of a bucket.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CorsRule {
    pub id: Option<String>,
    pub origins: Vec<String>,
    pub methods: Vec<String>,
    pub headers: Vec<String>,
    pub expose: Vec<String>,
    pub max_age: Option<u64>,
}

/// One lifecycle rule: expire objects, abort stale multipart uploads.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LifecycleRule {
    pub id: Option<String>,
    pub enabled: bool,
    pub prefix: String,
    /// Delete objects this many days after their last write.
    pub expire_days: Option<u32>,
    /// Delete objects once this date (ms since the epoch) has passed.
    pub expire_date_ms: Option<u64>,
    /// Abort multipart uploads this many days after they started.
    pub abort_mpu_days: Option<u32>,
}

/// Limits on what a bucket may hold (`None`: unlimited).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Quotas {
    pub max_size: Option<u64>,
    pub max_objects: Option<u64>,
}
impl TableSchema for BucketTable {
    const NAME: &'static str = "bucket";
    type Item = Bucket;
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketAlias {
    pub name: String,
    pub bucket: Lww<Option<BucketId>>,
}

impl Crdt for BucketAlias {
    fn merge(&mut self, other: &Self) {
        self.bucket.merge(&other.bucket);
    }
}

impl TableItem for BucketAlias {
    fn partition_key(&self) -> &[u8] {
        self.name.as_bytes()
    }
    fn sort_key(&self) -> &[u8] {
        &[]
    }
    fn is_tombstone(&self) -> bool {
        self.bucket.value.is_none()
    }
    fn write_time(&self) -> Option<u64> {
        Some(self.bucket.timestamp.saturating_mul(1000))
    }
    fn set_write_time(&mut self, t: u64) {
        self.bucket.timestamp = t.div_ceil(1000);
    }
}

pub struct BucketAliasTable;
impl TableSchema for BucketAliasTable {
    const NAME: &'static str = "bucket_alias";
    type Item = BucketAlias;
}

// ---------------------------------------------------------------- keys

/// What a key may do on a bucket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Permission {
    pub read: bool,
    pub write: bool,
    pub owner: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Key {
    pub id: String,
    pub secret: String,
    pub name: Lww<String>,
    pub buckets: LwwMap<BucketId, Permission>,
    pub deleted: Flag,
}

impl Key {
    pub(crate) fn permission(&self, bucket: &BucketId) -> Permission {
        if self.deleted.0 {
            return Permission::default();
        }
        self.buckets.get(bucket).copied().unwrap_or_default()
    }
}

impl Crdt for Key {
    fn merge(&mut self, other: &Self) {
        self.name.merge(&other.name);
        self.buckets.merge(&other.buckets);
        self.deleted.merge(&other.deleted);
        if other.secret < self.secret {
            self.secret = other.secret.clone();
        }
    }
}

impl TableItem for Key {
    fn partition_key(&self) -> &[u8] {
        self.id.as_bytes()
    }
    fn sort_key(&self) -> &[u8] {
        &[]
    }
    fn is_tombstone(&self) -> bool {
        self.deleted.0
    }
}

pub struct KeyTable;
impl TableSchema for KeyTable {
    const NAME: &'static str = "key";
    type Item = Key;
}

// ---------------------------------------------------------------- objects

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMeta {
    pub size: u64,
    /// Without quotes.
    pub etag: String,
    pub content_type: Option<String>,
    /// `x-amz-meta-*` headers, names lowercase without the prefix.
    pub user_meta: Vec<(String, String)>,
    /// Standard headers given at upload and returned on reads
    /// (`cache-control`, `content-disposition`...), names lowercase.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ObjectData {
    /// The object was deleted.
    DeleteMarker,
    /// Small objects live in the object table itself.
    Inline {
        meta: ObjectMeta,
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
    /// Larger ones in blocks, listed in the version table.
    Blocks { meta: ObjectMeta },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectVersion {
    pub uuid: VersionId,
    /// Milliseconds since the epoch (Last-Modified).
    pub timestamp: u64,
    pub data: ObjectData,
    /// Microseconds within `timestamp`'s millisecond: two writes of a key
    /// one after the other within a millisecond must still be ordered.
    #[serde(default)]
    pub micros: u16,
    /// Written by a conditional write: the digest of the version it
    /// replaced (see [`crate::table::TableItem::replaced`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced: Option<u64>,
}

impl ObjectVersion {
    /// A version written now, timestamped by the node's hybrid clock.
    pub(crate) fn new(uuid: VersionId, data: ObjectData) -> ObjectVersion {
        let mut v = ObjectVersion {
            uuid,
            timestamp: 0,
            data,
            micros: 0,
            replaced: None,
        };
        v.set_time_us(hangar_common::clock::timestamp_us());
        v
    }

    /// The version's timestamp in microseconds.
    pub(crate) fn time_us(&self) -> u64 {
        self.timestamp * 1000 + u64::from(self.micros)
    }

    pub(crate) fn set_time_us(&mut self, us: u64) {
        self.timestamp = us / 1000;
        self.micros = (us % 1000) as u16;
    }

    /// The order of versions: last writer wins.
    fn order(&self) -> (u64, u16, VersionId) {
        (self.timestamp, self.micros, self.uuid)
    }
}

/// One object key of a bucket: its current version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Object {
    /// `bucket id ++ shard`.
    #[serde(with = "serde_bytes")]
    pub pk: Vec<u8>,
    pub key: String,
    /// The newest version (last writer wins, by timestamp then uuid).
    pub version: ObjectVersion,
}

/// Partition key of an object's shard of a bucket's index.
pub(crate) fn object_pk(bucket: &BucketId, shards: u8, key: &str) -> Vec<u8> {
    let shard = Hash::of(key.as_bytes()).0[0] % shards.max(1);
    let mut pk = bucket.as_bytes().to_vec();
    pk.push(shard);
    pk
}

impl Crdt for Object {
    fn merge(&mut self, other: &Self) {
        if other.version.order() > self.version.order() {
            self.version = other.version.clone();
        }
    }
}

impl TableItem for Object {
    fn partition_key(&self) -> &[u8] {
        &self.pk
    }
    fn sort_key(&self) -> &[u8] {
        self.key.as_bytes()
    }
    fn is_tombstone(&self) -> bool {
        self.version.data == ObjectData::DeleteMarker
    }
    fn write_time(&self) -> Option<u64> {
        Some(self.version.time_us())
    }
    fn set_write_time(&mut self, t: u64) {
        self.version.set_time_us(t);
    }
    fn replaced(&self) -> Option<u64> {
        self.version.replaced
    }
    fn set_replaced(&mut self, digest: Option<u64>) {
        self.version.replaced = digest;
    }
}

pub struct ObjectTable {
    /// Local queue of replaced versions whose block lists must go.
    pub version_gc: TreeId,
    /// Local counts per index shard (`bucket id ++ shard`): live objects
    /// and their bytes, as 2 big-endian u64.
    pub usage: TreeId,
}

/// Live objects and bytes an object item stands for.
fn live_size(o: Option<&Object>) -> (i64, i64) {
    match o.map(|o| &o.version.data) {
        Some(ObjectData::Inline { meta, .. } | ObjectData::Blocks { meta }) => {
            (1, meta.size as i64)
        }
        _ => (0, 0),
    }
}

/// Decode a local usage counter.
pub(crate) fn decode_usage(v: &[u8]) -> (u64, u64) {
    let n = |r: std::ops::Range<usize>| {
        v.get(r)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_be_bytes)
            .unwrap_or(0)
    };
    (n(0..8), n(8..16))
}

impl TableSchema for ObjectTable {
    const NAME: &'static str = "object";
    type Item = Object;

    fn hook_trees(&self) -> Vec<TreeId> {
        vec![self.version_gc, self.usage]
    }

    fn updated(&self, tx: &mut dyn Tx, old: Option<&Object>, new: Option<&Object>) -> TxResult<()> {
        // A version with blocks replaced by a newer one: queue its cleanup.
        // (No `new` means a local removal: tombstone collection or a
        // partition handed over, never a reason to delete data.)
        if let (Some(old), Some(new)) = (old, new)
            && old.version.uuid != new.version.uuid
            && matches!(old.version.data, ObjectData::Blocks { .. })
        {
            tx.insert(self.version_gc, &old.version.uuid, &[])?;
        }
        // Usage: a removal (tombstone collected, partition handed over)
        // or an arrival counts like any other change.
        let (o1, b1) = live_size(old);
        let (o2, b2) = live_size(new);
        if (o1, b1) != (o2, b2)
            && let Some(pk) = new.or(old).map(|o| o.pk.as_slice())
        {
            let (objects, bytes) = decode_usage(&tx.get(self.usage, pk)?.unwrap_or_default());
            let objects = (objects as i64 + o2 - o1).max(0) as u64;
            let bytes = (bytes as i64 + b2 - b1).max(0) as u64;
            let mut v = objects.to_be_bytes().to_vec();
            v.extend_from_slice(&bytes.to_be_bytes());
            tx.insert(self.usage, pk, &v)?;
        }
        Ok(())
    }
}

/// What one node holds of a bucket's index, per shard: published by that
/// node (the only writer of its item), read to estimate a bucket's usage.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketUsage {
    pub bucket: BucketId,
    #[serde(with = "serde_bytes")]
    pub node: Vec<u8>,
    pub timestamp: u64,
    /// shard -> (objects, bytes).
    pub shards: std::collections::BTreeMap<u8, (u64, u64)>,
}

impl Crdt for BucketUsage {
    fn merge(&mut self, other: &Self) {
        if (other.timestamp, &other.shards) > (self.timestamp, &self.shards) {
            self.timestamp = other.timestamp;
            self.shards = other.shards.clone();
        }
    }
}

impl TableItem for BucketUsage {
    fn partition_key(&self) -> &[u8] {
        self.bucket.as_bytes()
    }
    fn sort_key(&self) -> &[u8] {
        &self.node
    }
    fn is_tombstone(&self) -> bool {
        false
    }
}

pub struct BucketUsageTable;
impl TableSchema for BucketUsageTable {
    const NAME: &'static str = "bucket_usage";
    type Item = BucketUsage;
}

// ---------------------------------------------------------------- uploads

/// One uploaded part of a multipart upload. Each upload of a part gets its
/// own block list (`version`), so a part uploaded twice keeps both until
/// the upload ends.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Part {
    pub number: u32,
    pub timestamp: u64,
    pub version: VersionId,
    pub size: u64,
    /// MD5 of the part, hex, without quotes.
    pub etag: String,
}

/// An in-progress (or ended) multipart upload of a bucket.
///
/// `parts` only grows (merge is a union), so every replica ends up knowing
/// every block list ever uploaded for it; once `ended` (completed or
/// aborted), the hook queues every part's block list for deletion: a
/// completed object has its own block list referencing the same blocks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upload {
    pub bucket: BucketId,
    /// `key ++ 0x00 ++ upload id`: lists in key order, then upload order.
    #[serde(with = "serde_bytes")]
    pub sk: Vec<u8>,
    pub key: String,
    pub id: VersionId,
    pub created_ms: u64,
    pub content_type: Option<String>,
    pub user_meta: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub parts: std::collections::BTreeSet<Part>,
    pub ended: Flag,
}

/// Sort key of an upload in its bucket's upload list.
pub(crate) fn upload_sk(key: &str, id: &VersionId) -> Vec<u8> {
    let mut sk = key.as_bytes().to_vec();
    sk.push(0);
    sk.extend_from_slice(id);
    sk
}

impl Upload {
    /// The newest upload of each part number, in part order.
    pub(crate) fn current_parts(&self) -> Vec<&Part> {
        let mut by_number: std::collections::BTreeMap<u32, &Part> = Default::default();
        for p in &self.parts {
            let newer = by_number
                .get(&p.number)
                .is_none_or(|q| (p.timestamp, p.version) > (q.timestamp, q.version));
            if newer {
                by_number.insert(p.number, p);
            }
        }
        by_number.into_values().collect()
    }
}

impl Crdt for Upload {
    fn merge(&mut self, other: &Self) {
        self.parts.extend(other.parts.iter().cloned());
        self.ended.merge(&other.ended);
    }
}

impl TableItem for Upload {
    fn partition_key(&self) -> &[u8] {
        self.bucket.as_bytes()
    }
    fn sort_key(&self) -> &[u8] {
        &self.sk
    }
    fn is_tombstone(&self) -> bool {
        self.ended.0
    }
}

pub struct UploadTable {
    /// The same queue as the object table's: block lists to delete.
    pub version_gc: TreeId,
}

impl TableSchema for UploadTable {
    const NAME: &'static str = "upload";
    type Item = Upload;

    fn hook_trees(&self) -> Vec<TreeId> {
        vec![self.version_gc]
    }

    fn updated(&self, tx: &mut dyn Tx, old: Option<&Upload>, new: Option<&Upload>) -> TxResult<()> {
        // Every part block list of an ended upload goes, once per replica:
        // those already queued when the old state had ended are skipped.
        let Some(new) = new.filter(|n| n.ended.0) else {
            return Ok(());
        };
        let done = old.filter(|o| o.ended.0).map(|o| &o.parts);
        for p in &new.parts {
            if !done.is_some_and(|d| d.contains(p)) {
                tx.insert(self.version_gc, &p.version, &[])?;
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- versions

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockEntry {
    pub offset: u64,
    pub hash: Hash,
    pub size: u32,
}

/// Up to [`CHUNK_BLOCKS`] consecutive blocks of a version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionChunk {
    pub uuid: VersionId,
    /// Big-endian chunk index (the sort key).
    pub index: [u8; 4],
    pub blocks: Vec<BlockEntry>,
    pub deleted: Flag,
}

impl Crdt for VersionChunk {
    fn merge(&mut self, other: &Self) {
        self.deleted.merge(&other.deleted);
        if self.blocks.is_empty() {
            self.blocks = other.blocks.clone();
        }
    }
}

impl TableItem for VersionChunk {
    fn partition_key(&self) -> &[u8] {
        &self.uuid
    }
    fn sort_key(&self) -> &[u8] {
        &self.index
    }
    fn is_tombstone(&self) -> bool {
        self.deleted.0
    }
}

pub struct VersionTable {
    /// Local queue of deleted chunks whose block references must go.
    pub ref_gc: TreeId,
}

impl TableSchema for VersionTable {
    const NAME: &'static str = "version";
    type Item = VersionChunk;

    fn hook_trees(&self) -> Vec<TreeId> {
        vec![self.ref_gc]
    }

    fn updated(
        &self,
        tx: &mut dyn Tx,
        old: Option<&VersionChunk>,
        new: Option<&VersionChunk>,
    ) -> TxResult<()> {
        if let Some(new) = new
            && new.deleted.0
            && !old.is_some_and(|o| o.deleted.0)
        {
            let mut key = new.uuid.to_vec();
            key.extend_from_slice(&new.index);
            let hashes: Vec<Hash> = new.blocks.iter().map(|b| b.hash).collect();
            let enc = rmp_serde::to_vec(&hashes)
                .map_err(|e| crate::db::DbError::Aborted(e.to_string()))?;
            tx.insert(self.ref_gc, &key, &enc)?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- block refs

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockRef {
    pub block: Hash,
    pub version: VersionId,
    pub deleted: Flag,
}

impl Crdt for BlockRef {
    fn merge(&mut self, other: &Self) {
        self.deleted.merge(&other.deleted);
    }
}

impl TableItem for BlockRef {
    fn partition_key(&self) -> &[u8] {
        self.block.as_bytes()
    }
    fn sort_key(&self) -> &[u8] {
        &self.version
    }
    fn is_tombstone(&self) -> bool {
        self.deleted.0
    }
}

pub struct BlockRefTable {
    pub rc: RcTrees,
}

impl TableSchema for BlockRefTable {
    const NAME: &'static str = "block_ref";
    type Item = BlockRef;

    fn hook_trees(&self) -> Vec<TreeId> {
        vec![self.rc.rc, self.rc.queue]
    }

    fn updated(
        &self,
        tx: &mut dyn Tx,
        old: Option<&BlockRef>,
        new: Option<&BlockRef>,
    ) -> TxResult<()> {
        let was = old.is_some_and(|o| !o.deleted.0);
        let is = new.is_some_and(|n| !n.deleted.0);
        let block = new.or(old).map(|r| r.block);
        match (was, is, block) {
            (false, true, Some(b)) => self.rc.add(tx, &b, 1),
            (true, false, Some(b)) => self.rc.add(tx, &b, -1),
            _ => Ok(()),
        }
    }
}

/// A fresh random id for a version.
pub(crate) fn new_version_id() -> VersionId {
    rand::random()
}

/// A fresh random bucket id.
pub(crate) fn new_bucket_id() -> BucketId {
    Hash(rand::random())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{Db, mem::MemEngine};
    use crate::table::data::TableData;
    use std::sync::Arc;

    fn be(v: Option<Vec<u8>>) -> u64 {
        v.map(|b| u64::from_be_bytes(b.try_into().unwrap()))
            .unwrap_or(0)
    }

    /// Items as the previous format wrote them (before the fields this
    /// version added): they must still decode, the new fields defaulted.
    #[test]
    fn items_written_by_the_previous_format_still_decode() {
        #[derive(Serialize)]
        struct BucketV1 {
            id: BucketId,
            name: String,
            created_ms: u64,
            shards: u8,
            deleted: Flag,
        }
        #[derive(Serialize)]
        struct MetaV1 {
            size: u64,
            etag: String,
            content_type: Option<String>,
            user_meta: Vec<(String, String)>,
        }
        #[derive(Serialize)]
        enum DataV1 {
            #[allow(dead_code)]
            DeleteMarker,
            Blocks {
                meta: MetaV1,
            },
        }
        #[derive(Serialize)]
        struct VersionV1 {
            uuid: VersionId,
            timestamp: u64,
            data: DataV1,
        }
        #[derive(Serialize)]
        struct ObjectV1 {
            #[serde(with = "serde_bytes")]
            pk: Vec<u8>,
            key: String,
            version: VersionV1,
        }
        let old = BucketV1 {
            id: Hash::of(b"b"),
            name: "photos".into(),
            created_ms: 1,
            shards: 16,
            deleted: Flag(false),
        };
        let b: Bucket = rmp_serde::from_slice(&rmp_serde::to_vec_named(&old).unwrap()).unwrap();
        assert_eq!((b.name.as_str(), b.shards), ("photos", 16));
        assert_eq!(b.website.value, None);
        assert_eq!(b.quotas.value, Quotas::default());
        let old = ObjectV1 {
            pk: vec![1, 2],
            key: "k".into(),
            version: VersionV1 {
                uuid: [3; 16],
                timestamp: 42,
                data: DataV1::Blocks {
                    meta: MetaV1 {
                        size: 10,
                        etag: "e".into(),
                        content_type: None,
                        user_meta: Vec::new(),
                    },
                },
            },
        };
        let o: Object = rmp_serde::from_slice(&rmp_serde::to_vec_named(&old).unwrap()).unwrap();
        assert_eq!((o.version.timestamp, o.version.micros), (42, 0));
        match o.version.data {
            ObjectData::Blocks { meta } => {
                assert_eq!(meta.size, 10);
                assert!(meta.headers.is_empty());
            }
            d => panic!("decoded as {d:?}"),
        }
    }

    #[test]
    fn block_references_keep_the_refcount_in_step() {
        let db: Db = Arc::new(MemEngine::default());
        let rc = RcTrees {
            rc: db.open_tree("block_rc").unwrap(),
            queue: db.open_tree("block_resync").unwrap(),
            grace_ms: 1000,
            arrival_ms: 0,
        };
        let data = TableData::open(db.clone(), Arc::new(BlockRefTable { rc })).unwrap();
        let block = Hash::of(b"block");
        let r = |v: u8, deleted: bool| BlockRef {
            block,
            version: [v; 16],
            deleted: Flag(deleted),
        };
        data.update(&r(1, false)).unwrap();
        data.update(&r(2, false)).unwrap();
        data.update(&r(2, false)).unwrap();
        assert_eq!(be(db.get(rc.rc, block.as_bytes()).unwrap()), 2);
        data.update(&r(1, true)).unwrap();
        assert_eq!(be(db.get(rc.rc, block.as_bytes()).unwrap()), 1);
        data.update(&r(1, false)).unwrap();
        assert_eq!(
            be(db.get(rc.rc, block.as_bytes()).unwrap()),
            1,
            "a deletion is final"
        );
    }
}
