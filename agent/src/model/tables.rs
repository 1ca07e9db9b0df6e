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
//! deletion, then its block references: see `gc.rs`. A one-block object's
//! block ([`ObjectData::Attached`]) is stored with the item, on the item's
//! replicas, and counted by the object table's hook: no block list, no
//! block reference, no cleanup queue.

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
    /// S3 versioning: never back to `Unversioned` once set.
    #[serde(default)]
    pub versioning: Lww<Versioning>,
    /// S3 object lock enabled (at creation, or on a versioned bucket
    /// later): never turned off.
    #[serde(default, skip_serializing_if = "Flag::is_unset")]
    pub object_lock: Flag,
    /// The retention new versions get when their write names none.
    #[serde(default, skip_serializing_if = "Lww::is_unwritten")]
    pub lock_default: Lww<Option<DefaultRetention>>,
    /// Bucket tags (`?tagging`), in the order given.
    #[serde(default, skip_serializing_if = "Lww::is_unwritten")]
    pub tags: Lww<Option<Tags>>,
    /// The access key that created the bucket: its S3 owner (None for
    /// buckets made before protocol 9, or by the operator's CLI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// S3 ACL grants beyond the owner's full control.
    #[serde(default, skip_serializing_if = "Lww::is_unwritten")]
    pub acl: Lww<Acl>,
    /// The bucket policy, as given (JSON).
    #[serde(default, skip_serializing_if = "Lww::is_unwritten")]
    pub policy: Lww<Option<String>>,
    /// S3 Block Public Access settings.
    #[serde(default, skip_serializing_if = "Lww::is_unwritten")]
    pub public_access_block: Lww<Option<PublicAccessBlock>>,
}

/// Who an ACL grant is for.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Grantee {
    /// An access key, by id.
    Key(String),
    /// Everyone, anonymous requests included.
    AllUsers,
    /// Any request signed with a valid key.
    AuthenticatedUsers,
}

/// What an ACL grant allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum AclPermission {
    Read,
    Write,
    ReadAcp,
    WriteAcp,
    FullControl,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Grant {
    pub grantee: Grantee,
    pub permission: AclPermission,
}

/// An S3 ACL: the grants beyond the owner's implicit full control.
pub type Acl = Vec<Grant>;

/// S3 Block Public Access settings of a bucket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PublicAccessBlock {
    /// Refuse ACLs that grant to everyone or to every authenticated key.
    pub block_public_acls: bool,
    /// Ignore such grants.
    pub ignore_public_acls: bool,
    /// Refuse policies that grant to everyone.
    pub block_public_policy: bool,
    /// Ignore what such policies grant.
    pub restrict_public_buckets: bool,
}

/// S3 tags: key-value pairs, keys unique, in the order given.
pub type Tags = Vec<(String, String)>;

/// An object lock retention mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum LockMode {
    /// Owners may shorten or remove it with `x-amz-bypass-governance-retention`.
    Governance,
    /// No one may shorten or remove it before its date.
    Compliance,
}

impl LockMode {
    pub fn s3_name(self) -> &'static str {
        match self {
            LockMode::Governance => "GOVERNANCE",
            LockMode::Compliance => "COMPLIANCE",
        }
    }

    pub fn parse(s: &str) -> Option<LockMode> {
        match s {
            "GOVERNANCE" => Some(LockMode::Governance),
            "COMPLIANCE" => Some(LockMode::Compliance),
            _ => None,
        }
    }
}

/// A bucket's default retention: a mode and a period (as given: days or
/// years).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DefaultRetention {
    pub mode: LockMode,
    pub days: Option<u32>,
    pub years: Option<u32>,
}

impl DefaultRetention {
    /// The retention date of a version written at `now_ms`.
    pub fn until(&self, now_ms: u64) -> u64 {
        let days = u64::from(self.days.unwrap_or(0)) + u64::from(self.years.unwrap_or(0)) * 365;
        now_ms.saturating_add(days * 86_400_000)
    }
}

/// A bucket's versioning state, as S3 has it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Versioning {
    /// Never enabled: one (`null`) version per key.
    #[default]
    Unversioned,
    /// Every write makes a new version; deletes add delete markers.
    Enabled,
    /// Versions kept stay; new writes replace the `null` version.
    Suspended,
}

impl Versioning {
    /// As `GetBucketVersioning` spells it (None: never enabled).
    pub fn s3_status(self) -> Option<&'static str> {
        match self {
            Versioning::Unversioned => None,
            Versioning::Enabled => Some("Enabled"),
            Versioning::Suspended => Some("Suspended"),
        }
    }
}

impl Crdt for Bucket {
    fn merge(&mut self, other: &Self) {
        self.deleted.merge(&other.deleted);
        self.website.merge(&other.website);
        self.cors.merge(&other.cors);
        self.lifecycle.merge(&other.lifecycle);
        self.quotas.merge(&other.quotas);
        self.versioning.merge(&other.versioning);
        self.object_lock.merge(&other.object_lock);
        self.lock_default.merge(&other.lock_default);
        self.tags.merge(&other.tags);
        self.acl.merge(&other.acl);
        self.policy.merge(&other.policy);
        self.public_access_block.merge(&other.public_access_block);
        self.owner = match (&self.owner, &other.owner) {
            (Some(a), Some(b)) => Some(a.min(b).clone()),
            (a, b) => a.clone().or_else(|| b.clone()),
        };
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
    /// Versioning: delete versions this many days after they stopped
    /// being current (a newer version or delete marker was written)...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noncurrent_days: Option<u32>,
    /// ... but keep this many of the newest non-current ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newer_noncurrent: Option<u32>,
    /// Versioning: delete a delete marker left alone (no older version).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub expired_marker: bool,
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
    /// The checksum the client gave (and Hangar verified) at upload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<StoredChecksum>,
    /// A multipart object's parts, in order (empty: one part).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<PartInfo>,
    /// The multipart upload that made it (a retried completion answers
    /// as the first did).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload: Option<VersionId>,
}

/// An S3 checksum algorithm (`x-amz-checksum-*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ChecksumAlgorithm {
    Crc32,
    Crc32c,
    Crc64Nvme,
    Sha1,
    Sha256,
}

/// A checksum kept with an object or a part: its algorithm and raw value.
/// `parts` > 0: a COMPOSITE checksum (the checksum of the parts'
/// checksums, shown with `-N`); else of the whole object (FULL_OBJECT).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StoredChecksum {
    pub algorithm: ChecksumAlgorithm,
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub parts: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// One part of a multipart object, as completed: GetObject's `partNumber`
/// and GetObjectAttributes read these.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartInfo {
    pub number: u32,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<StoredChecksum>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ObjectData {
    /// Nothing here: the object was deleted in a bucket without
    /// versioning, or this version was deleted for good (by version id).
    /// Kept as a tombstone so that a replica that missed the deletion
    /// cannot bring the version back.
    #[serde(rename = "DeleteMarker")]
    Removed,
    /// Small objects live in the object table itself.
    Inline {
        meta: ObjectMeta,
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
    /// Larger ones in blocks, listed in the version table.
    Blocks { meta: ObjectMeta },
    /// One block (up to the block size), kept on this item's replicas
    /// beside the item rather than on its hash's partition: the PUT sends
    /// block and item together (one round trip) and each replica applies
    /// the item only once the block is on its disk. Since protocol 10.
    Attached { meta: ObjectMeta, hash: Hash },
    /// An S3 delete marker: a DELETE without version id in a bucket with
    /// versioning. It is a version (listed, with an id) and makes GETs of
    /// the key answer 404 while it is the latest.
    #[serde(rename = "Marker")]
    DeleteMarker,
}

impl ObjectData {
    /// The object's metadata, for a version that holds data.
    pub(crate) fn meta(&self) -> Option<&ObjectMeta> {
        match self {
            ObjectData::Inline { meta, .. }
            | ObjectData::Blocks { meta }
            | ObjectData::Attached { meta, .. } => Some(meta),
            ObjectData::Removed | ObjectData::DeleteMarker => None,
        }
    }
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
    /// Written while the bucket's versioning was enabled: the version's S3
    /// id is its uuid, and it is kept beside the others. Otherwise it is
    /// the key's `null` version, which a later `null` write replaces.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub versioned: bool,
    /// Object lock: retention and legal hold.
    #[serde(default, skip_serializing_if = "VersionLock::is_empty")]
    pub lock: VersionLock,
    /// Object tags: given with the write, then changed in place by
    /// PutObjectTagging / DeleteObjectTagging (last writer wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Lww<Tags>>,
    /// The object ACL's grants (beyond the bucket owner's full control):
    /// given with the write, changed by PutObjectAcl.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acl: Option<Lww<Acl>>,
}

/// A version's object lock state. Each part only ever becomes stricter by
/// merging where S3 says no one may relax it: a COMPLIANCE date is the
/// latest ever set (merge takes the maximum), so no replica or race can
/// shorten it; GOVERNANCE retention and the legal hold are registers
/// (last writer wins) that owners may change.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionLock {
    /// COMPLIANCE retention until this date (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compliance_until: Option<u64>,
    /// GOVERNANCE retention until this date (None in the register: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub governance: Option<Lww<Option<u64>>>,
    /// Legal hold: on or off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legal_hold: Option<Lww<bool>>,
}

impl VersionLock {
    pub fn is_empty(&self) -> bool {
        *self == VersionLock::default()
    }

    fn merge(&mut self, other: &VersionLock) {
        self.compliance_until = self.compliance_until.max(other.compliance_until);
        merge_register(&mut self.governance, &other.governance);
        merge_register(&mut self.legal_hold, &other.legal_hold);
    }

    /// The retention to show: its mode and date (of a COMPLIANCE and a
    /// GOVERNANCE one, the later; COMPLIANCE on a tie).
    pub fn retention(&self) -> Option<(LockMode, u64)> {
        let governance = self.governance.as_ref().and_then(|g| g.value);
        match (self.compliance_until, governance) {
            (Some(c), Some(g)) if g > c => Some((LockMode::Governance, g)),
            (Some(c), _) => Some((LockMode::Compliance, c)),
            (None, Some(g)) => Some((LockMode::Governance, g)),
            (None, None) => None,
        }
    }

    pub fn legal_hold(&self) -> bool {
        self.legal_hold.as_ref().is_some_and(|h| h.value)
    }

    /// Why deleting the version at `now_ms` (wall clock) is refused, if it
    /// is; `bypass`: GOVERNANCE retention is bypassed.
    pub fn refuses_delete(&self, now_ms: u64, bypass: bool) -> Option<String> {
        if self.legal_hold() {
            return Some("the object version is under a legal hold".into());
        }
        if let Some(c) = self.compliance_until.filter(|c| *c > now_ms) {
            return Some(format!(
                "the object version is locked in COMPLIANCE mode until {}",
                hangar_common::date::iso8601(c)
            ));
        }
        match self.governance.as_ref().and_then(|g| g.value) {
            Some(g) if g > now_ms && !bypass => Some(format!(
                "the object version is locked in GOVERNANCE mode until {} (x-amz-bypass-governance-retention lets an owner delete it)",
                hangar_common::date::iso8601(g)
            )),
            _ => None,
        }
    }
}

/// Merge two optional registers (absent loses against any write).
fn merge_register<T: Ord + Clone>(a: &mut Option<Lww<T>>, b: &Option<Lww<T>>) {
    match (a.as_mut(), b) {
        (Some(x), Some(y)) => x.merge(y),
        (None, Some(y)) => *a = Some(y.clone()),
        (_, None) => {}
    }
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
            versioned: false,
            lock: VersionLock::default(),
            tags: None,
            acl: None,
        };
        v.set_time_us(hangar_common::clock::timestamp_us());
        v
    }

    /// The same, with the S3 id the bucket's versioning gives it.
    pub(crate) fn in_bucket(uuid: VersionId, data: ObjectData, bucket: &Bucket) -> ObjectVersion {
        let mut v = ObjectVersion::new(uuid, data);
        v.versioned = bucket.versioning.value == Versioning::Enabled;
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

    /// Where the version is kept in its object: its uuid, or None for the
    /// `null` version.
    pub(crate) fn slot(&self) -> Option<VersionId> {
        self.versioned.then_some(self.uuid)
    }

    /// The version's id as S3 clients see it (`null` for the null version).
    pub(crate) fn s3_id(&self) -> String {
        match self.slot() {
            Some(u) => hex::encode(u),
            None => "null".to_string(),
        }
    }

    /// Deleted for good (see [`ObjectData::Removed`]).
    pub(crate) fn is_removed(&self) -> bool {
        self.data == ObjectData::Removed
    }

    /// Merge two states of the version in one slot. Two writes (two
    /// uuids, in the `null` slot): the later wins. Two states of one
    /// version (timed again by its write, locked, deleted for good): the
    /// latest time, the locks merged, and deleted if either is, for good
    /// (a version's every state carries the same data, so nothing else
    /// differs).
    fn merge(&mut self, other: &ObjectVersion) {
        if self.uuid != other.uuid {
            if other.order() > self.order() {
                *self = other.clone();
            }
            return;
        }
        let removed = self.is_removed() || other.is_removed();
        let mut lock = self.lock.clone();
        lock.merge(&other.lock);
        let mut tags = self.tags.clone();
        merge_register(&mut tags, &other.tags);
        let mut acl = self.acl.clone();
        merge_register(&mut acl, &other.acl);
        let data = if removed {
            ObjectData::Removed
        } else {
            self.data.clone()
        };
        if (other.order(), other.replaced) > (self.order(), self.replaced) {
            let keep = std::mem::replace(&mut self.data, ObjectData::Removed);
            *self = ObjectVersion {
                data: keep,
                ..other.clone()
            };
        }
        self.data = data;
        if removed {
            self.replaced = None;
            self.lock = VersionLock::default();
            self.tags = None;
            self.acl = None;
        } else {
            self.lock = lock;
            self.tags = tags;
            self.acl = acl;
        }
    }

    /// The version's tags (none: empty).
    pub(crate) fn tag_set(&self) -> &[(String, String)] {
        self.tags.as_ref().map_or(&[], |t| t.value.as_slice())
    }

    /// This version, deleted for good (same order: it wins the merge with
    /// the version's other states, and loses against a later `null` write).
    pub(crate) fn removed(&self) -> ObjectVersion {
        let mut v = self.clone();
        v.data = ObjectData::Removed;
        v.replaced = None;
        v.lock = VersionLock::default();
        v.tags = None;
        v.acl = None;
        v
    }
}

/// Parse an S3 version id (`null` or what [`ObjectVersion::s3_id`] gave):
/// the slot it names. None: not an id Hangar gives.
pub(crate) fn parse_version_id(id: &str) -> Option<Option<VersionId>> {
    if id == "null" {
        return Some(None);
    }
    let bytes = hex::decode(id).ok()?;
    Some(Some(<VersionId>::try_from(bytes.as_slice()).ok()?))
}

/// One object key of a bucket: its versions. Without versioning there is
/// one (the `null` version); with it, every version kept and every one
/// deleted for good (as [`ObjectData::Removed`], so a replica that was
/// away cannot bring it back).
///
/// Merge is a union by slot (uuid, or `null`), the later write winning
/// within a slot: every replica that has seen the same writes holds the
/// same versions in the same order, whatever order they came in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Object {
    /// `bucket id ++ shard`.
    #[serde(with = "serde_bytes")]
    pub pk: Vec<u8>,
    pub key: String,
    /// The current version: the newest that is not [`ObjectData::Removed`]
    /// (else the newest of all). A write's item carries only its version.
    pub version: ObjectVersion,
    /// The other versions, newest first (empty without versioning).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub older: Vec<ObjectVersion>,
}

impl Object {
    /// An item holding one version (what a write sends).
    pub(crate) fn new(pk: Vec<u8>, key: String, version: ObjectVersion) -> Object {
        Object {
            pk,
            key,
            version,
            older: Vec::new(),
        }
    }

    /// Every version not deleted for good, newest first: what
    /// ListObjectVersions shows. The first is the latest.
    pub(crate) fn versions(&self) -> impl Iterator<Item = &ObjectVersion> {
        std::iter::once(&self.version)
            .chain(&self.older)
            .filter(|v| !v.is_removed())
    }

    /// The version in `slot`, unless deleted for good.
    pub(crate) fn find(&self, slot: Option<VersionId>) -> Option<&ObjectVersion> {
        self.versions().find(|v| v.slot() == slot)
    }

    /// The current version, if it holds data (not a delete marker).
    pub(crate) fn live(&self) -> Option<&ObjectVersion> {
        Some(&self.version).filter(|v| v.data.meta().is_some())
    }

    /// Put the versions in canonical order (see [`Object::version`]).
    fn normalise(&mut self, mut all: Vec<ObjectVersion>) {
        all.sort_by_key(|v| std::cmp::Reverse((v.order(), v.versioned)));
        let current = all.iter().position(|v| !v.is_removed()).unwrap_or(0);
        self.version = all.remove(current);
        self.older = all;
    }
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
        // Without versioning (the common case): one slot, one version.
        if self.older.is_empty()
            && other.older.is_empty()
            && self.version.slot() == other.version.slot()
        {
            self.version.merge(&other.version);
            return;
        }
        let mut all: Vec<ObjectVersion> = Vec::with_capacity(self.older.len() + 2);
        for v in std::iter::once(&self.version)
            .chain(&self.older)
            .chain(std::iter::once(&other.version))
            .chain(&other.older)
        {
            match all.iter_mut().find(|a| a.slot() == v.slot()) {
                Some(a) => a.merge(v),
                None => all.push(v.clone()),
            }
        }
        self.normalise(all);
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
        self.version.is_removed()
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
    fn same_current(&self, other: &Self) -> bool {
        self.version == other.version
    }
}

pub struct ObjectTable {
    /// Local queue of replaced versions whose block lists must go.
    pub version_gc: TreeId,
    /// Local counts per index shard (`bucket id ++ shard`): live objects
    /// and their bytes, as 2 big-endian u64.
    pub usage: TreeId,
    /// Reference counts of the blocks kept beside items.
    pub rc: RcTrees,
    /// Where those blocks are stored ([`TableSchema::attach`]).
    pub blocks: std::sync::Arc<crate::block::BlockManager>,
}

/// The blocks an item keeps beside it, by version.
fn attached_blocks(o: Option<&Object>) -> Vec<(VersionId, Hash)> {
    o.into_iter()
        .flat_map(Object::versions)
        .filter_map(|v| match &v.data {
            ObjectData::Attached { hash, .. } => Some((v.uuid, *hash)),
            _ => None,
        })
        .collect()
}

/// How an item's change moves the counts of the blocks kept beside it: -1
/// per version gone that kept one, +1 per version come.
fn attached_changes(old: Option<&Object>, new: Option<&Object>) -> Vec<(Hash, i64)> {
    let (before, after) = (attached_blocks(old), attached_blocks(new));
    let gone = before
        .iter()
        .filter(|b| !after.contains(b))
        .map(|b| (b.1, -1));
    let come = after
        .iter()
        .filter(|b| !before.contains(b))
        .map(|b| (b.1, 1));
    gone.chain(come).collect()
}

/// What an object item counts for in usage: versions holding data and
/// their bytes (every kept version counts), then those of them that are
/// not current.
fn live_size(o: Option<&Object>) -> [i64; USAGE_COUNTS] {
    let mut n = [0; USAGE_COUNTS];
    let Some(o) = o else { return n };
    for v in o.versions() {
        let Some(meta) = v.data.meta() else { continue };
        n[0] += 1;
        n[1] += meta.size as i64;
        if !std::ptr::eq(v, &o.version) {
            n[2] += 1;
            n[3] += meta.size as i64;
        }
    }
    n
}

/// Counts in a local usage counter: objects, bytes, non-current objects,
/// non-current bytes.
pub const USAGE_COUNTS: usize = 4;

/// Decode a local usage counter (big-endian u64s; counters written before
/// the non-current counts have two).
pub(crate) fn decode_usage(v: &[u8]) -> [u64; USAGE_COUNTS] {
    let mut out = [0; USAGE_COUNTS];
    for (i, o) in out.iter_mut().enumerate() {
        *o = v
            .get(i * 8..i * 8 + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_be_bytes)
            .unwrap_or(0);
    }
    out
}

impl TableSchema for ObjectTable {
    const NAME: &'static str = "object";
    type Item = Object;

    fn hook_trees(&self) -> Vec<TreeId> {
        let mut t = vec![self.version_gc, self.usage];
        t.extend(self.rc.trees());
        t
    }

    fn attach(&self, hash: &Hash, block: &[u8], local: bool) -> Result<(), String> {
        // The coordinator's copy stays in the page cache (a read soon
        // after the upload is served from memory), as with `block_put`.
        let cache = if local {
            crate::block::store::Cache::Keep
        } else {
            crate::block::store::Cache::Bypass
        };
        self.blocks
            .write_local(hash, block, cache)
            .map_err(|e| e.to_string())
    }

    fn updated(&self, tx: &mut dyn Tx, old: Option<&Object>, new: Option<&Object>) -> TxResult<()> {
        // Blocks kept beside the item: counted while a version holds them
        // here, whatever took the version away (a newer one, a deletion,
        // the partition handed over: the block follows the item, fetched
        // by its new replicas, so this copy may go after the grace delay).
        if let Some(o) = new.or(old) {
            let partition = crate::table::data::partition_of_key(&o.pk) as u8;
            for (hash, delta) in attached_changes(old, new) {
                self.rc.attach(tx, &hash, partition, delta)?;
            }
        }
        // A version with blocks gone from the object (replaced in its slot
        // or deleted for good): queue its cleanup. (No `new` means a local
        // removal: tombstone collection or a partition handed over, never
        // a reason to delete data.)
        if let (Some(old), Some(new)) = (old, new) {
            for v in old.versions() {
                if matches!(v.data, ObjectData::Blocks { .. })
                    && !new.versions().any(|n| n.uuid == v.uuid)
                {
                    tx.insert(self.version_gc, &v.uuid, &[])?;
                }
            }
        }
        // Usage: a removal (tombstone collected, partition handed over)
        // or an arrival counts like any other change.
        let before = live_size(old);
        let after = live_size(new);
        if before != after
            && let Some(pk) = new.or(old).map(|o| o.pk.as_slice())
        {
            let counts = decode_usage(&tx.get(self.usage, pk)?.unwrap_or_default());
            // Two counts while nothing is versioned: the counter's old form.
            let len = if counts[2..].iter().all(|c| *c == 0) && after[2..] == before[2..] {
                2
            } else {
                USAGE_COUNTS
            };
            let mut v = Vec::with_capacity(len * 8);
            for i in 0..len {
                let n = (counts[i] as i64 + after[i] - before[i]).max(0) as u64;
                v.extend_from_slice(&n.to_be_bytes());
            }
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
    /// shard -> (non-current versions, their bytes), where any.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub noncurrent: std::collections::BTreeMap<u8, (u64, u64)>,
}

impl Crdt for BucketUsage {
    fn merge(&mut self, other: &Self) {
        if (other.timestamp, &other.shards, &other.noncurrent)
            > (self.timestamp, &self.shards, &self.noncurrent)
        {
            self.timestamp = other.timestamp;
            self.shards = other.shards.clone();
            self.noncurrent = other.noncurrent.clone();
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
    /// The part's checksum (given by the client, or computed for an
    /// upload created with a checksum algorithm).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<StoredChecksum>,
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
    /// Object lock asked for at creation (`x-amz-object-lock-*`).
    #[serde(default, skip_serializing_if = "VersionLock::is_empty")]
    pub lock: VersionLock,
    /// Tags asked for at creation (`x-amz-tagging`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Tags,
    /// The checksum algorithm asked for at creation, and whether the
    /// object's checksum is of the full object (else COMPOSITE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<(ChecksumAlgorithm, bool)>,
    /// The ACL asked for at creation (`x-amz-acl`, `x-amz-grant-*`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acl: Acl,
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

    /// A version of key "k" in `slot` (None: the null version), written
    /// at `t`, holding data or (`marker`) a delete marker.
    fn ver(uuid: u8, t: u64, versioned: bool, marker: bool) -> ObjectVersion {
        ObjectVersion {
            uuid: [uuid; 16],
            timestamp: t,
            data: if marker {
                ObjectData::DeleteMarker
            } else {
                ObjectData::Inline {
                    meta: ObjectMeta {
                        size: 1,
                        etag: format!("e{uuid}"),
                        content_type: None,
                        user_meta: Vec::new(),
                        headers: Vec::new(),
                        checksum: None,
                        parts: Vec::new(),
                        upload: None,
                    },
                    bytes: vec![uuid],
                }
            },
            micros: 0,
            replaced: None,
            versioned,
            lock: VersionLock::default(),
            tags: None,
            acl: None,
        }
    }

    fn obj(v: ObjectVersion) -> Object {
        Object::new(vec![1], "k".into(), v)
    }

    fn merged(items: &[Object]) -> Object {
        let mut m = items[0].clone();
        for i in &items[1..] {
            m.merge(i);
        }
        m
    }

    fn ids(o: &Object) -> Vec<String> {
        o.versions().map(|v| v.s3_id()[..2].to_string()).collect()
    }

    #[test]
    fn versioned_writes_are_all_kept_newest_first_in_any_order_of_arrival() {
        let writes = [
            obj(ver(1, 10, false, false)), // the null version, before versioning
            obj(ver(2, 20, true, false)),
            obj(ver(3, 30, true, true)), // a delete marker
            obj(ver(4, 40, true, false)),
        ];
        let expected = merged(&writes);
        assert_eq!(ids(&expected), ["04", "03", "02", "nu"]);
        assert_eq!(expected.version.uuid, [4; 16], "the newest is current");
        // Every order of arrival, and duplicates, give the same item.
        let orders = [[0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1], [1, 3, 0, 2]];
        for order in orders {
            let items: Vec<Object> = order.iter().map(|&i| writes[i].clone()).collect();
            let mut m = merged(&items);
            assert_eq!(m, expected, "order {order:?}");
            m.merge(&writes[order[0]]);
            m.merge(&expected);
            assert_eq!(m, expected, "idempotent");
        }
    }

    #[test]
    fn a_null_write_replaces_the_null_version_wherever_it_is() {
        // Suspended versioning: a new null version replaces the old one
        // (older than a kept version) and is current.
        let m = merged(&[
            obj(ver(1, 10, false, false)),
            obj(ver(2, 20, true, false)),
            obj(ver(5, 50, false, false)),
        ]);
        assert_eq!(ids(&m), ["nu", "02"]);
        assert_eq!(m.version.uuid, [5; 16]);
        // Without versioning the item stays one version: the last write.
        let m = merged(&[obj(ver(7, 70, false, false)), obj(ver(6, 60, false, false))]);
        assert_eq!(m.older, Vec::new());
        assert_eq!(m.version.uuid, [7; 16]);
    }

    #[test]
    fn a_version_deleted_for_good_stays_deleted_and_the_next_is_current() {
        let v2 = ver(2, 20, true, false);
        let v3 = ver(3, 30, true, false);
        let gone = obj(v3.removed());
        let m = merged(&[obj(v2.clone()), obj(v3.clone()), gone.clone()]);
        assert_eq!(ids(&m), ["02"]);
        assert_eq!(m.version.uuid, [2; 16], "the next newest is current");
        assert!(!m.is_tombstone());
        // A replica that missed the deletion cannot bring it back, in
        // whichever order the states meet.
        let other = merged(&[gone, obj(v3.clone()), obj(v2.clone())]);
        assert_eq!(other, m);
        let mut again = m.clone();
        again.merge(&obj(v3));
        assert_eq!(again, m);
        // Every version gone: a tombstone.
        let all_gone = merged(&[m, obj(v2.removed())]);
        assert!(all_gone.is_tombstone());
        assert_eq!(all_gone.versions().count(), 0);
    }

    #[test]
    fn a_compliance_date_only_grows_and_locks_refuse_deletes_as_s3_does() {
        let n = hangar_common::NodeId([1; 32]);
        let lock = |c: Option<u64>, g: Option<u64>, hold: bool| VersionLock {
            compliance_until: c,
            governance: g.map(|g| Lww::new(1, n, Some(g))),
            legal_hold: hold.then(|| Lww::new(1, n, true)),
        };
        // Two replicas, one that saw a later COMPLIANCE date: whatever the
        // order, the later date holds (no race shortens it).
        let (mut a, b) = (lock(Some(10), None, false), lock(Some(20), None, false));
        a.merge(&b);
        let mut b2 = b.clone();
        b2.merge(&lock(Some(10), None, false));
        assert_eq!(
            (a.compliance_until, b2.compliance_until),
            (Some(20), Some(20))
        );
        let c = lock(Some(20), None, false);
        assert!(
            c.refuses_delete(15, true).is_some(),
            "no bypass of COMPLIANCE"
        );
        assert!(c.refuses_delete(25, false).is_none(), "free after its date");
        let g = lock(None, Some(30), false);
        assert!(g.refuses_delete(15, false).is_some());
        assert!(g.refuses_delete(15, true).is_none(), "GOVERNANCE bypassed");
        let h = lock(None, None, true);
        assert!(
            h.refuses_delete(15, true).is_some(),
            "a legal hold blocks even the bypass"
        );
        // A version's lock survives the version being timed again.
        let mut v1 = ver(2, 10, true, false);
        v1.lock = c.clone();
        let v2 = ver(2, 12, true, false);
        let m = merged(&[obj(v1.clone()), obj(v2.clone())]);
        assert_eq!(m.version.lock, c);
        assert_eq!(merged(&[obj(v2), obj(v1)]), m);
    }

    #[test]
    fn object_merge_is_a_crdt() {
        use proptest::prelude::*;
        // A uuid is one write: its slot and data are its own (0 and 1 are
        // null versions, 3 a delete marker); its time may differ (a write
        // timed again above a newer one), and it may be deleted.
        // Its lock may be set in any order (a COMPLIANCE date, a GOVERNANCE
        // register, a legal hold written at some time).
        let lock = (
            proptest::option::of(0u64..3),
            proptest::option::of((0u64..3, any::<bool>())),
        )
            .prop_map(|(c, hold)| VersionLock {
                compliance_until: c,
                governance: None,
                legal_hold: hold.map(|(t, on)| Lww::new(t, hangar_common::NodeId([1; 32]), on)),
            });
        // A lock is set, and a deletion by version id made, on a version
        // as read once its write is done, so at its final time (3 here);
        // earlier times are its write's rounds.
        let version = (0u8..4, 0u64..4, any::<bool>(), lock).prop_map(|(u, t, removed, lock)| {
            let mut v = ver(u, t + u64::from(u) * 2, u >= 2, u == 3);
            if t == 3 {
                v.lock = lock;
                if removed {
                    return v.removed();
                }
            }
            v
        });
        let item = proptest::collection::vec(version, 1..4).prop_map(|vs| {
            let items: Vec<Object> = vs.into_iter().map(obj).collect();
            merged(&items)
        });
        proptest!(|(a in item.clone(), b in item.clone(), c in item)| {
            let mut ab = a.clone();
            ab.merge(&b);
            let mut ba = b.clone();
            ba.merge(&a);
            prop_assert_eq!(&ab, &ba);
            let mut ab_c = ab.clone();
            ab_c.merge(&c);
            let mut bc = b.clone();
            bc.merge(&c);
            let mut a_bc = a.clone();
            a_bc.merge(&bc);
            prop_assert_eq!(&ab_c, &a_bc);
            let mut aa = a.clone();
            aa.merge(&a);
            prop_assert_eq!(aa, a);
        });
    }

    #[test]
    fn blocks_kept_beside_items_are_counted_while_a_version_holds_them() {
        let attached = |uuid: u8, t: u64, versioned: bool, block: &[u8]| {
            let mut v = ver(uuid, t, versioned, false);
            v.data = ObjectData::Attached {
                meta: v.data.meta().cloned().expect("meta"),
                hash: Hash::of(block),
            };
            obj(v)
        };
        let a = attached(1, 10, false, b"a");
        // Written: counted once; the same item again: nothing.
        assert_eq!(attached_changes(None, Some(&a)), vec![(Hash::of(b"a"), 1)]);
        assert_eq!(attached_changes(Some(&a), Some(&a)), vec![]);
        // Replaced in the null slot by another block: one down, one up.
        let b = merged(&[a.clone(), attached(2, 20, false, b"b")]);
        assert_eq!(
            attached_changes(Some(&a), Some(&b)),
            vec![(Hash::of(b"a"), -1), (Hash::of(b"b"), 1)]
        );
        // Replaced by an inline or deleted version: down.
        let gone = merged(&[b.clone(), obj(ver(3, 30, false, true))]);
        assert_eq!(
            attached_changes(Some(&b), Some(&gone)),
            vec![(Hash::of(b"b"), -1)]
        );
        // Versioned: each version counts, even with the same block.
        let v1 = attached(4, 40, true, b"c");
        let both = merged(&[v1.clone(), attached(5, 50, true, b"c")]);
        assert_eq!(
            attached_changes(Some(&v1), Some(&both)),
            vec![(Hash::of(b"c"), 1)]
        );
        // Removed locally (partition handed over): down, for each.
        assert_eq!(
            attached_changes(Some(&both), None),
            vec![(Hash::of(b"c"), -1), (Hash::of(b"c"), -1)]
        );
    }

    /// A store with the trees of the block reference counts.
    fn rc_trees() -> (Db, RcTrees) {
        let db: Db = Arc::new(MemEngine::default());
        let rc = RcTrees {
            rc: db.open_tree("block_rc").unwrap(),
            attached: db.open_tree("block_attached").unwrap(),
            queue: db.open_tree("block_resync").unwrap(),
            grace_ms: 1000,
            arrival_ms: 0,
        };
        (db, rc)
    }

    #[test]
    fn an_attached_count_at_zero_stays_as_a_mark_and_drops_the_reference() {
        let (db, rc) = rc_trees();
        let h = Hash::of(b"x");
        let step = |delta: i64| {
            db.transaction(&rc.trees(), &mut |tx| rc.attach(tx, &h, 7, delta))
                .unwrap()
        };
        let mark = |p: u8| {
            let mut k = h.as_bytes().to_vec();
            k.push(p);
            k
        };
        step(1);
        step(1);
        assert_eq!(be(db.get(rc.attached, &mark(7)).unwrap()), 2);
        assert_eq!(be(db.get(rc.rc, h.as_bytes()).unwrap()), 2);
        step(-1);
        step(-1);
        assert_eq!(
            db.get(rc.attached, &mark(7)).unwrap(),
            Some(0u64.to_be_bytes().to_vec()),
            "the mark stays, with the items' partition: resync hands the block to that partition's holders if they changed, and deletes it"
        );
        assert_eq!(db.get(rc.rc, h.as_bytes()).unwrap(), None);
        // The changes queued resync checks (one per due time).
        assert!(db.len(rc.queue).unwrap() >= 2);
    }

    #[test]
    fn block_references_keep_the_refcount_in_step() {
        let (db, rc) = rc_trees();
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
