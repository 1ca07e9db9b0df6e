//! The object store's data model on top of the replicated tables and the
//! block store: buckets and their names, access keys and permissions,
//! objects, their versions and block references. `tables.rs` defines the
//! items; this file the operations the S3 API and the Admin service use;
//! `gc.rs` the cleanup of replaced versions.

pub mod gc;
pub mod lifecycle;
pub mod tables;
pub mod usage;

use std::sync::Arc;

use hangar_common::clock::timestamp_ms;
use hangar_common::crdt::{Flag, Lww, LwwMap};

use self::tables::*;
use crate::block::BlockManager;
use crate::db::{Db, TreeId};
use crate::net::Net;
use crate::table::{Latest, Table, TableError};

/// The protocol version from which nodes keep object versions.
pub(crate) const VERSIONING_PROTOCOL: u32 = 8;

/// The protocol version from which nodes keep tags, checksums and part
/// sizes (older ones would drop them when they merge an item).
pub(crate) const ATTRIBUTES_PROTOCOL: u32 = 9;

/// The protocol version from which nodes store a one-block object's block
/// with its item ([`ObjectData::Attached`]).
pub(crate) const ATTACHED_PROTOCOL: u32 = 10;

/// Default number of shards of a new bucket's object index.
pub const DEFAULT_SHARDS: u8 = 16;

/// Why a model operation failed; the S3 layer maps these to S3 errors.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Table(#[from] TableError),
    #[error("local metadata store: {0}")]
    Db(#[from] crate::db::DbError),
    #[error("bucket {0:?} is over its quota: {1}")]
    QuotaExceeded(String, String),
    #[error("bucket {0:?} does not exist")]
    NoSuchBucket(String),
    #[error("bucket name {0:?} is already taken")]
    BucketExists(String),
    #[error("bucket {0:?} is not empty: delete its objects first")]
    BucketNotEmpty(String),
    #[error(
        "invalid bucket name {0:?}: use 3 to 63 characters among lowercase letters, digits, '-' and '.', starting and ending with a letter or digit"
    )]
    InvalidBucketName(String),
    #[error("access key {0:?} does not exist")]
    NoSuchKey(String),
    #[error("{0}")]
    InvalidBucketState(String),
    #[error(
        "{count} node(s) run a version of Hangar that would drop {what}: upgrade every node first"
    )]
    Upgrade { count: usize, what: &'static str },
}

/// Whether `name` is a valid S3 bucket name (the DNS-compatible rules).
fn valid_bucket_name(name: &str) -> bool {
    let b = name.as_bytes();
    (3..=63).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'.')
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && !name.contains("..")
        && name.parse::<std::net::Ipv4Addr>().is_err()
}

pub struct Model {
    pub net: Arc<Net>,
    pub db: Db,
    pub buckets: Arc<Table<BucketTable>>,
    pub aliases: Arc<Table<BucketAliasTable>>,
    pub keys: Arc<Table<KeyTable>>,
    pub objects: Arc<Table<ObjectTable>>,
    pub versions: Arc<Table<VersionTable>>,
    pub uploads: Arc<Table<UploadTable>>,
    pub usage: Arc<Table<BucketUsageTable>>,
    pub refs: Arc<Table<BlockRefTable>>,
    pub blocks: Arc<BlockManager>,
    pub version_gc: TreeId,
    pub ref_gc: TreeId,
    pub workers: Arc<crate::worker::Workers>,
    pub lifecycle: lifecycle::LifecycleStats,
    /// Recently read access keys and buckets (by name), for the S3 hot path.
    pub key_cache: Arc<LookupCache<Key>>,
    pub bucket_cache: Arc<LookupCache<Bucket>>,
}

/// How long a looked-up access key or bucket is reused without asking the
/// replicas again: a change made on another node (a permission revoked, a
/// bucket's settings) applies here within this delay (plus the one round
/// trip of the read that brings it). Changes made through this node apply
/// at once.
pub const LOOKUP_TTL: std::time::Duration = std::time::Duration::from_secs(2);

/// Past this age a cached item is read again from the replicas in the
/// background while requests keep using the cached copy: an item in use
/// at least once a second never makes a request wait on the network.
pub const LOOKUP_REFRESH: std::time::Duration = std::time::Duration::from_secs(1);

/// Entries a lookup cache holds at most (it is emptied when full).
const LOOKUP_MAX: usize = 10_000;

/// An entry used within this delay is kept fresh by
/// [`Model::keep_warm_loop`], used or not: a key or bucket used even once
/// every few minutes never makes a request wait on the network.
pub const KEEP_WARM: std::time::Duration = std::time::Duration::from_secs(600);

/// Entries of each cache kept warm at most (the most recently used): the
/// background reads cost one quorum read per entry and second.
const KEEP_WARM_MAX: usize = 64;

/// What a lookup cache has for a name.
pub(crate) enum Cached<T> {
    /// Young enough to use as is.
    Fresh(T),
    /// Usable, but the caller should refresh it in the background (only
    /// one caller is told so at a time).
    Stale(T),
    /// Nothing usable: read from the replicas, and wait.
    Missing,
}

struct Entry<T> {
    /// When the value was read from the replicas.
    at: std::time::Instant,
    /// When a request last used it.
    used: std::time::Instant,
    value: T,
    refreshing: bool,
}

/// A short-lived cache of items found by name, refreshed in the
/// background while in use. Only found items are kept: something created
/// elsewhere is seen at once.
pub struct LookupCache<T> {
    map: std::sync::Mutex<std::collections::HashMap<String, Entry<T>>>,
    /// Lookups that had to wait for the replicas (metrics).
    waits: std::sync::atomic::AtomicU64,
}

impl<T> Default for LookupCache<T> {
    fn default() -> Self {
        LookupCache {
            map: Default::default(),
            waits: Default::default(),
        }
    }
}

impl<T: Clone> LookupCache<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Entry<T>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn lookup(&self, name: &str) -> Cached<T> {
        let mut m = self.lock();
        let Some(e) = m.get_mut(name) else {
            return Cached::Missing;
        };
        e.used = std::time::Instant::now();
        let age = e.at.elapsed();
        if age < LOOKUP_REFRESH || (age < LOOKUP_TTL && e.refreshing) {
            Cached::Fresh(e.value.clone())
        } else if age < LOOKUP_TTL {
            e.refreshing = true;
            Cached::Stale(e.value.clone())
        } else {
            Cached::Missing
        }
    }

    fn put(&self, name: &str, value: T) {
        let mut m = self.lock();
        if m.len() >= LOOKUP_MAX {
            m.clear();
        }
        let now = std::time::Instant::now();
        // A refresh keeps when the entry was last used.
        let used = m.get(name).map_or(now, |e| e.used);
        m.insert(
            name.to_string(),
            Entry {
                at: now,
                used,
                value,
                refreshing: false,
            },
        );
    }

    /// Entries to refresh now to keep them fresh: used within
    /// [`KEEP_WARM`], past [`LOOKUP_REFRESH`], not being refreshed (they
    /// are marked so), the most recently used first, at most `max`.
    fn due_for_refresh(&self, max: usize) -> Vec<(String, T)> {
        let mut m = self.lock();
        let mut due: Vec<(&String, &mut Entry<T>)> = m
            .iter_mut()
            .filter(|(_, e)| {
                !e.refreshing && e.used.elapsed() < KEEP_WARM && e.at.elapsed() >= LOOKUP_REFRESH
            })
            .collect();
        due.sort_by_key(|(_, e)| std::cmp::Reverse(e.used));
        due.truncate(max);
        due.into_iter()
            .map(|(name, e)| {
                e.refreshing = true;
                (name.clone(), e.value.clone())
            })
            .collect()
    }

    fn forget(&self, name: &str) {
        self.lock().remove(name);
    }

    /// A background refresh ended without a new value: the next lookup
    /// past the refresh age tries again.
    fn refresh_failed(&self, name: &str) {
        if let Some(e) = self.lock().get_mut(name) {
            e.refreshing = false;
        }
    }

    fn waited(&self) {
        self.waits
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Lookups that waited for the replicas since start.
    pub fn waits(&self) -> u64 {
        self.waits.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Make an entry look `age` old (tests).
    #[cfg(test)]
    fn age(&self, name: &str, age: std::time::Duration) {
        if let Some(e) = self.lock().get_mut(name)
            && let Some(at) = std::time::Instant::now().checked_sub(age)
        {
            e.at = at;
        }
    }

    /// Make an entry look last used `ago` (tests).
    #[cfg(test)]
    fn used_ago(&self, name: &str, ago: std::time::Duration) {
        if let Some(e) = self.lock().get_mut(name)
            && let Some(at) = std::time::Instant::now().checked_sub(ago)
        {
            e.used = at;
        }
    }
}

/// Read a live bucket by name from the replicas.
async fn read_bucket(
    aliases: &Arc<Table<BucketAliasTable>>,
    buckets: &Arc<Table<BucketTable>>,
    name: &str,
) -> Result<Option<Bucket>, ModelError> {
    let Some(alias) = aliases.get(name.as_bytes(), &[]).await? else {
        return Ok(None);
    };
    let Some(id) = alias.bucket.value else {
        return Ok(None);
    };
    Ok(buckets
        .get(id.as_bytes(), &[])
        .await?
        .filter(|b| !b.deleted.0))
}

/// Read a live bucket by id from the replicas.
async fn read_bucket_by_id(
    buckets: Arc<Table<BucketTable>>,
    id: BucketId,
) -> Result<Option<Bucket>, ModelError> {
    Ok(buckets
        .get(id.as_bytes(), &[])
        .await?
        .filter(|b| !b.deleted.0))
}

/// The bucket cache's entry for a bucket by id (no bucket name has `#`).
fn id_entry(id: &BucketId) -> String {
    format!("#{id}")
}

/// Read a live access key from the replicas.
async fn read_key(keys: &Arc<Table<KeyTable>>, id: &str) -> Result<Option<Key>, ModelError> {
    Ok(keys.get(id.as_bytes(), &[]).await?.filter(|k| !k.deleted.0))
}

/// Refresh `cache`'s entry `name` in the background with `read` (gone:
/// forgotten; failed: kept until it is too old).
fn refresh_in_background<T, F>(cache: Arc<LookupCache<T>>, name: String, read: F)
where
    T: Clone + Send + 'static,
    F: std::future::Future<Output = Result<Option<T>, ModelError>> + Send + 'static,
{
    tokio::spawn(async move {
        match read.await {
            Ok(Some(v)) => cache.put(&name, v),
            Ok(None) => cache.forget(&name),
            Err(e) => {
                tracing::debug!("background refresh of {name:?} failed: {e}");
                cache.refresh_failed(&name);
            }
        }
    });
}

impl Model {
    /// Refuse a write of `what` while a connected node runs a protocol
    /// older than `min` (it would drop the new fields when it merges).
    /// Whether a one-block object's block may travel with its item: every
    /// node known speaks [`ATTACHED_PROTOCOL`] (an older one could not
    /// decode the item, nor store the block).
    pub(crate) fn attach_blocks(&self) -> bool {
        self.net.peers_below(ATTACHED_PROTOCOL).is_empty()
    }

    pub(crate) fn require_protocol(&self, min: u32, what: &'static str) -> Result<(), ModelError> {
        let old = self.net.peers_below(min);
        if old.is_empty() {
            Ok(())
        } else {
            Err(ModelError::Upgrade {
                count: old.len(),
                what,
            })
        }
    }

    /// The live bucket called `name`, if any (possibly [`LOOKUP_TTL`] old;
    /// refreshed in the background while in use).
    pub(crate) async fn bucket_by_name(&self, name: &str) -> Result<Option<Bucket>, ModelError> {
        match self.bucket_cache.lookup(name) {
            Cached::Fresh(b) => return Ok(Some(b)),
            Cached::Stale(b) => {
                self.refresh_bucket(name, &b);
                return Ok(Some(b));
            }
            Cached::Missing => self.bucket_cache.waited(),
        }
        let b = self.bucket_by_name_fresh(name).await?;
        if let Some(b) = &b {
            self.bucket_cache.put(name, b.clone());
        }
        Ok(b)
    }

    /// The live bucket with id `id`, if any (cached like
    /// [`Model::bucket_by_name`]): what ListBuckets reads.
    pub(crate) async fn bucket_by_id(&self, id: &BucketId) -> Result<Option<Bucket>, ModelError> {
        let name = id_entry(id);
        match self.bucket_cache.lookup(&name) {
            Cached::Fresh(b) => return Ok(Some(b)),
            Cached::Stale(b) => {
                self.refresh_bucket(&name, &b);
                return Ok(Some(b));
            }
            Cached::Missing => self.bucket_cache.waited(),
        }
        let b = read_bucket_by_id(self.buckets.clone(), *id).await?;
        if let Some(b) = &b {
            self.bucket_cache.put(&name, b.clone());
        }
        Ok(b)
    }

    /// Read the bucket cache's entry `entry` (a name, or `#id`) again in
    /// the background; `cached` is what it holds.
    fn refresh_bucket(&self, entry: &str, cached: &Bucket) {
        let cache = self.bucket_cache.clone();
        if entry.starts_with('#') {
            let read = read_bucket_by_id(self.buckets.clone(), cached.id);
            refresh_in_background(cache, entry.to_string(), read);
        } else {
            let (aliases, buckets) = (self.aliases.clone(), self.buckets.clone());
            let name = entry.to_string();
            refresh_in_background(cache, entry.to_string(), async move {
                read_bucket(&aliases, &buckets, &name).await
            });
        }
    }

    /// Read the access key `id` again in the background.
    fn refresh_key(&self, id: &str) {
        let keys = self.keys.clone();
        let owned = id.to_string();
        refresh_in_background(self.key_cache.clone(), id.to_string(), async move {
            read_key(&keys, &owned).await
        });
    }

    /// Keep the keys and buckets in use fresh: every tenth of
    /// [`LOOKUP_REFRESH`], refresh the entries used within [`KEEP_WARM`]
    /// that are past it, so a request finds them fresh however rarely it
    /// comes (within that delay), and the bound on how stale they may be
    /// stays [`LOOKUP_TTL`].
    pub async fn keep_warm_loop(self: Arc<Self>) {
        loop {
            tokio::time::sleep(LOOKUP_REFRESH / 10).await;
            for (id, _) in self.key_cache.due_for_refresh(KEEP_WARM_MAX) {
                self.refresh_key(&id);
            }
            for (entry, b) in self.bucket_cache.due_for_refresh(KEEP_WARM_MAX) {
                self.refresh_bucket(&entry, &b);
            }
        }
    }

    /// Write a bucket item (settings changed) and forget its cached copy.
    pub(crate) async fn save_bucket(&self, b: &Bucket) -> Result<(), ModelError> {
        self.buckets.insert(b).await?;
        self.bucket_cache.forget(&b.name);
        self.bucket_cache.forget(&id_entry(&b.id));
        Ok(())
    }

    /// The live bucket called `name`, read from the replicas now.
    async fn bucket_by_name_fresh(&self, name: &str) -> Result<Option<Bucket>, ModelError> {
        read_bucket(&self.aliases, &self.buckets, name).await
    }

    pub(crate) async fn require_bucket(&self, name: &str) -> Result<Bucket, ModelError> {
        self.bucket_by_name(name)
            .await?
            .ok_or_else(|| ModelError::NoSuchBucket(name.to_string()))
    }

    /// Like [`Model::require_bucket`], read from the replicas now: for a
    /// change of its settings, whose registers must be timed above what
    /// they replace (a cached copy may be [`LOOKUP_TTL`] old).
    pub(crate) async fn require_bucket_fresh(&self, name: &str) -> Result<Bucket, ModelError> {
        self.bucket_by_name_fresh(name)
            .await?
            .ok_or_else(|| ModelError::NoSuchBucket(name.to_string()))
    }

    /// Make `object`'s version the current one of its key, ordered after
    /// every write of the key acknowledged before this call, whatever the
    /// nodes' clocks (see [`Table::insert_latest`]). A `null` version with
    /// blocks that a concurrent write replaced at once is queued for
    /// cleanup here, as a replica would queue it had it been current for a
    /// moment (a version of a versioned bucket stays, no longer current).
    pub(crate) async fn commit_object(&self, object: &mut Object) -> Result<(), ModelError> {
        self.commit_object_with(object, None).await
    }

    /// [`Model::commit_object`], with the block of an
    /// [`ObjectData::Attached`] version: each replica stores it before it
    /// applies the item, so block and item are durable on a write quorum
    /// after one round trip.
    pub(crate) async fn commit_object_with(
        &self,
        object: &mut Object,
        attached: Option<&crate::table::Attachment>,
    ) -> Result<(), ModelError> {
        let outcome = self.objects.insert_latest_with(object, attached).await?;
        if outcome == Latest::Superseded
            && !object.version.versioned
            && matches!(object.version.data, ObjectData::Blocks { .. })
        {
            self.forget_version(object.version.uuid);
        }
        Ok(())
    }

    /// Queue the cleanup of a version that no object refers to (a
    /// conditional write refused after its blocks were stored, or one a
    /// concurrent write replaced at once).
    pub(crate) fn forget_version(&self, uuid: VersionId) {
        if let Err(e) = self.db.insert(self.version_gc, &uuid, &[]) {
            tracing::warn!(
                "version {}: its blocks stay referenced: {e}",
                hex::encode(uuid)
            );
        }
    }

    /// Point a bucket name at a bucket (or at none), above whatever it
    /// pointed at, whatever the clocks.
    async fn set_alias(&self, name: &str, bucket: Option<BucketId>) -> Result<(), ModelError> {
        let mut alias = BucketAlias {
            name: name.to_string(),
            bucket: Lww::new(timestamp_ms(), self.net.id, bucket),
        };
        self.aliases.insert_latest(&mut alias).await?;
        Ok(())
    }

    /// Create a bucket; `owner` (an access key id) gets every permission.
    /// With `object_lock`, its versions can be locked (versioning is then
    /// enabled, for good).
    pub(crate) async fn create_bucket(
        &self,
        name: &str,
        owner: Option<&str>,
        object_lock: bool,
    ) -> Result<Bucket, ModelError> {
        if !valid_bucket_name(name) {
            return Err(ModelError::InvalidBucketName(name.to_string()));
        }
        if self.bucket_by_name_fresh(name).await?.is_some() {
            return Err(ModelError::BucketExists(name.to_string()));
        }
        let bucket = Bucket {
            id: new_bucket_id(),
            name: name.to_string(),
            created_ms: timestamp_ms(),
            shards: DEFAULT_SHARDS,
            deleted: Flag(false),
            website: Default::default(),
            cors: Default::default(),
            lifecycle: Default::default(),
            quotas: Default::default(),
            versioning: if object_lock {
                Lww::new(timestamp_ms(), self.net.id, Versioning::Enabled)
            } else {
                Default::default()
            },
            object_lock: Flag(object_lock),
            lock_default: Default::default(),
            tags: Default::default(),
            owner: owner.map(str::to_string),
            acl: Default::default(),
            policy: Default::default(),
            public_access_block: Default::default(),
        };
        self.buckets.insert(&bucket).await?;
        // The name by consensus: of several creators racing through several
        // nodes, exactly one gets it.
        let me = self.net.id;
        let taken = self
            .aliases
            .cas(
                name.as_bytes(),
                &[],
                None,
                |a| a.bucket.value == Some(bucket.id),
                |cur| match cur.and_then(|a| a.bucket.value) {
                    Some(other) => Err(other),
                    None => Ok(BucketAlias {
                        name: name.to_string(),
                        bucket: Lww::new(timestamp_ms(), me, Some(bucket.id)),
                    }),
                },
            )
            .await;
        let refused = match taken {
            Ok(Ok(_)) => None,
            Ok(Err(_)) => Some(ModelError::BucketExists(name.to_string())),
            Err(e) => Some(e.into()),
        };
        if let Some(e) = refused {
            // The bucket made for this attempt is no one's: mark it gone.
            let mut orphan = bucket;
            orphan.deleted = Flag(true);
            if let Err(err) = self.buckets.insert(&orphan).await {
                tracing::warn!("bucket {name:?}: an unused bucket item stays: {err}");
            }
            return Err(e);
        }
        if let Some(owner) = owner {
            self.set_permission(
                owner,
                &bucket,
                Permission {
                    read: true,
                    write: true,
                    owner: true,
                },
            )
            .await?;
        }
        Ok(bucket)
    }

    /// Delete an empty bucket.
    pub(crate) async fn delete_bucket(&self, name: &str) -> Result<(), ModelError> {
        let mut bucket = self.require_bucket_fresh(name).await?;
        // Any version kept, delete markers too, makes a bucket not empty.
        if self
            .lister(&bucket, "", None, 1)
            .next_any()
            .await?
            .is_some()
        {
            return Err(ModelError::BucketNotEmpty(name.to_string()));
        }
        self.set_alias(name, None).await?;
        bucket.deleted = Flag(true);
        self.save_bucket(&bucket).await?;
        Ok(())
    }

    /// Enable or suspend a bucket's versioning (a bucket never goes back
    /// to unversioned). Refused while a node of protocol 7 or older is
    /// connected: it could not decode a versioned bucket's items.
    pub(crate) async fn set_versioning(
        &self,
        name: &str,
        state: Versioning,
    ) -> Result<Bucket, ModelError> {
        // Read from the replicas, not the cache: the register must be
        // timed above the one it replaces.
        let mut bucket = self.require_bucket_fresh(name).await?;
        let old = self.net.peers_below(VERSIONING_PROTOCOL);
        if !old.is_empty() && bucket.versioning.value == Versioning::Unversioned {
            return Err(ModelError::InvalidBucketState(format!(
                "{} node(s) run a version of Hangar without versioning: upgrade every node first",
                old.len()
            )));
        }
        if bucket.object_lock.0 && state != Versioning::Enabled {
            return Err(ModelError::InvalidBucketState(
                "An Object Lock configuration is present on this bucket, so the versioning state cannot be changed.".into(),
            ));
        }
        if bucket.versioning.value != state {
            bucket.versioning.update(timestamp_ms(), self.net.id, state);
            self.save_bucket(&bucket).await?;
        }
        Ok(bucket)
    }

    /// Turn object lock on for a bucket (for good; its versioning must be
    /// enabled) and set its default retention (None: none).
    pub(crate) async fn set_object_lock(
        &self,
        name: &str,
        default: Option<DefaultRetention>,
    ) -> Result<Bucket, ModelError> {
        let mut bucket = self.require_bucket_fresh(name).await?;
        if !bucket.object_lock.0 {
            if bucket.versioning.value != Versioning::Enabled {
                return Err(ModelError::InvalidBucketState(
                    "Versioning must be 'Enabled' on the bucket to apply a Object Lock configuration"
                        .into(),
                ));
            }
            bucket.object_lock.raise();
        }
        bucket
            .lock_default
            .update(timestamp_ms(), self.net.id, default);
        self.save_bucket(&bucket).await?;
        Ok(bucket)
    }

    /// A live access key (possibly [`LOOKUP_TTL`] old; refreshed in the
    /// background while in use).
    pub(crate) async fn get_key(&self, id: &str) -> Result<Option<Key>, ModelError> {
        match self.key_cache.lookup(id) {
            Cached::Fresh(k) => return Ok(Some(k)),
            Cached::Stale(k) => {
                self.refresh_key(id);
                return Ok(Some(k));
            }
            Cached::Missing => self.key_cache.waited(),
        }
        let k = read_key(&self.keys, id).await?;
        if let Some(k) = &k {
            self.key_cache.put(id, k.clone());
        }
        Ok(k)
    }

    /// Create an access key with a fresh id and secret.
    pub(crate) async fn create_key(&self, name: &str) -> Result<Key, ModelError> {
        let id_bytes: [u8; 12] = rand::random();
        let secret: [u8; 32] = rand::random();
        let key = Key {
            id: format!("GK{}", hex::encode(id_bytes)),
            secret: hex::encode(secret),
            name: Lww::new(timestamp_ms(), self.net.id, name.to_string()),
            buckets: LwwMap::default(),
            deleted: Flag(false),
        };
        self.keys.insert(&key).await?;
        Ok(key)
    }

    pub(crate) async fn delete_key(&self, id: &str) -> Result<(), ModelError> {
        let mut key = self
            .get_key(id)
            .await?
            .ok_or_else(|| ModelError::NoSuchKey(id.to_string()))?;
        key.deleted = Flag(true);
        self.keys.insert(&key).await?;
        self.key_cache.forget(id);
        Ok(())
    }

    pub(crate) async fn set_permission(
        &self,
        key_id: &str,
        bucket: &Bucket,
        perm: Permission,
    ) -> Result<Key, ModelError> {
        // Read from the replicas, not the cache: the new register must be
        // timed above the one it replaces.
        let mut key = self
            .keys
            .get(key_id.as_bytes(), &[])
            .await?
            .filter(|k| !k.deleted.0)
            .ok_or_else(|| ModelError::NoSuchKey(key_id.to_string()))?;
        key.buckets
            .set(bucket.id, timestamp_ms(), self.net.id, perm);
        self.keys.insert(&key).await?;
        self.key_cache.forget(key_id);
        Ok(key)
    }

    /// A page of a version's block list (chunks after the index `after`),
    /// read from this node's replica when it holds the whole page — block
    /// lists never change once written, so a local copy is as good as a
    /// quorum's and saves a round trip — else from a read quorum. `size`
    /// (the object's) tells a complete last page.
    pub(crate) async fn version_page(
        &self,
        uuid: &VersionId,
        after: Option<&[u8]>,
        limit: usize,
        size: u64,
    ) -> Result<Vec<VersionChunk>, TableError> {
        use crate::table::data::storage_key;
        let prefix = storage_key(uuid, &[]);
        let after_key = after.map(|a| storage_key(uuid, a));
        if let Ok(raw) = self
            .versions
            .data
            .range_raw(&prefix, after_key.as_deref(), limit)
        {
            let items: Vec<VersionChunk> = raw
                .iter()
                .filter_map(|(_, v)| self.versions.data.decode(v).ok())
                .collect();
            let first = after
                .and_then(|a| <[u8; 4]>::try_from(a).ok())
                .map(|a| u32::from_be_bytes(a) + 1)
                .unwrap_or(0);
            let consecutive = items.iter().enumerate().all(|(i, c)| {
                u32::from_be_bytes(c.index) == first + i as u32
                    && !c.deleted.0
                    && !c.blocks.is_empty()
            });
            let complete = items.len() == limit
                || items
                    .last()
                    .and_then(|c| c.blocks.last())
                    .is_some_and(|b| b.offset + b.size as u64 == size);
            if !items.is_empty() && consecutive && complete {
                return Ok(items);
            }
        }
        self.versions.get_range(uuid, &[], after, limit).await
    }

    /// Objects of a bucket with keys starting with `prefix`, after `after`,
    /// in key order, at most `limit`, merged across the index shards.
    /// Deleted objects are skipped.
    async fn list_objects(
        &self,
        bucket: &Bucket,
        prefix: &str,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Object>, ModelError> {
        let mut lister = self.lister(bucket, prefix, after, limit);
        let mut out = Vec::new();
        while out.len() < limit {
            match lister.next().await? {
                Some(o) => out.push(o),
                None => break,
            }
        }
        Ok(out)
    }

    /// A cursor over a bucket's objects with keys starting with `prefix`,
    /// after `after`, in key order; `expected` is about how many the caller
    /// will take (it sizes the first reads).
    pub(crate) fn lister(
        &self,
        bucket: &Bucket,
        prefix: &str,
        after: Option<&[u8]>,
        expected: usize,
    ) -> ObjectLister<'_> {
        let shards = usize::from(bucket.shards.max(1));
        // Keys are spread over the shards by hash: each gives about its
        // share of `expected`. Reading half as much again and a few more
        // makes a second round trip rare (a shard's share of 1,000 keys is
        // 62 +- 8), at a small fraction of what reading `expected` from
        // every shard would cost.
        let first_page = (expected * 3 / (2 * shards) + 8).clamp(2, LIST_MAX_PAGE);
        let cursors = (0..bucket.shards.max(1))
            .map(|s| {
                let mut pk = bucket.id.as_bytes().to_vec();
                pk.push(s);
                ShardCursor {
                    pk,
                    buf: std::collections::VecDeque::new(),
                    after: after.map(<[u8]>::to_vec),
                    done: false,
                    page: first_page,
                }
            })
            .collect();
        ObjectLister {
            model: self,
            prefix: prefix.as_bytes().to_vec(),
            first_page,
            cursors,
        }
    }
}

/// The most items one read of one index shard asks for.
const LIST_MAX_PAGE: usize = 1000;

/// Items one read of a shard asks for after a skip over a folder.
const SKIP_PAGE: usize = 2;

/// Objects of a bucket in key order, merged from its index shards (see
/// [`Model::lister`]). Each shard is read in pages that double while the
/// caller keeps taking objects from it; [`ObjectLister::skip_past`] jumps
/// over a range of keys (a "folder" when listing with a delimiter) without
/// reading it, keeping what was read beyond it.
pub struct ObjectLister<'a> {
    model: &'a Model,
    prefix: Vec<u8>,
    first_page: usize,
    cursors: Vec<ShardCursor>,
}

impl ObjectLister<'_> {
    /// The next object whose current version holds data (deleted ones
    /// and those under a delete marker skipped), or None at the end.
    pub(crate) async fn next(&mut self) -> Result<Option<Object>, ModelError> {
        loop {
            match self.next_any().await? {
                Some(o) if o.live().is_none() => continue,
                next => return Ok(next),
            }
        }
    }

    /// The next object with any version kept (a delete marker too), or
    /// None at the end.
    pub(crate) async fn next_any(&mut self) -> Result<Option<Object>, ModelError> {
        loop {
            self.refill().await?;
            let best = self
                .cursors
                .iter()
                .enumerate()
                .filter_map(|(i, c)| c.buf.front().map(|o| (i, o.key.as_str())))
                .min_by(|a, b| a.1.cmp(b.1))
                .map(|(i, _)| i);
            let Some(i) = best else { return Ok(None) };
            let Some(obj) = self.cursors[i].buf.pop_front() else {
                return Ok(None);
            };
            if !obj.version.is_removed() {
                return Ok(Some(obj));
            }
        }
    }

    /// Skip every object whose key is at most `key`.
    pub(crate) fn skip_past(&mut self, key: &[u8]) {
        for c in &mut self.cursors {
            let had = !c.buf.is_empty();
            while c.buf.front().is_some_and(|o| o.key.as_bytes() <= key) {
                c.buf.pop_front();
            }
            if c.buf.is_empty() && !c.done {
                let jumped = c.after.as_deref().is_none_or(|a| a < key);
                if jumped {
                    c.after = Some(key.to_vec());
                }
                if had || jumped {
                    // What follows is elsewhere in the key space, often
                    // just the next folder of a delimiter listing: read a
                    // few keys, and double while the caller keeps taking
                    // them. Starting again at the first page's size read
                    // a hundred objects per shard for every folder.
                    c.page = SKIP_PAGE.min(self.first_page);
                }
            }
        }
    }

    /// Read every empty shard that has more, all at once (one round trip
    /// for all of them, not one each).
    async fn refill(&mut self) -> Result<(), ModelError> {
        let objects = &self.model.objects;
        let prefix = self.prefix.as_slice();
        let reads = self
            .cursors
            .iter()
            .enumerate()
            .filter(|(_, c)| c.buf.is_empty() && !c.done)
            .map(|(i, c)| async move {
                let items = objects
                    .get_range(&c.pk, prefix, c.after.as_deref(), c.page)
                    .await;
                (i, items)
            })
            .collect::<Vec<_>>();
        if reads.is_empty() {
            return Ok(());
        }
        for (i, items) in futures::future::join_all(reads).await {
            let items = items?;
            let c = &mut self.cursors[i];
            if items.len() < c.page {
                c.done = true;
            }
            if let Some(last) = items.last() {
                c.after = Some(last.key.as_bytes().to_vec());
            }
            c.buf.extend(items);
            c.page = (c.page * 2).min(LIST_MAX_PAGE);
        }
        Ok(())
    }
}

struct ShardCursor {
    pk: Vec<u8>,
    buf: std::collections::VecDeque<Object>,
    /// The last key read from this shard.
    after: Option<Vec<u8>>,
    done: bool,
    /// How many items the next read asks for.
    page: usize,
}

#[cfg(test)]
mod lookup_tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn entries_in_use_are_refreshed_once_and_expire_if_not() {
        let c: LookupCache<u32> = LookupCache::default();
        assert!(matches!(c.lookup("k"), Cached::Missing));
        c.put("k", 1);
        assert!(matches!(c.lookup("k"), Cached::Fresh(1)));
        // Past the refresh age: one caller refreshes, the others use it.
        c.age("k", Duration::from_millis(1500));
        assert!(matches!(c.lookup("k"), Cached::Stale(1)));
        assert!(matches!(c.lookup("k"), Cached::Fresh(1)));
        // The refresh lands: fresh again, with the new value.
        c.put("k", 2);
        assert!(matches!(c.lookup("k"), Cached::Fresh(2)));
        // A failed refresh: the next lookup past the age tries again.
        c.age("k", Duration::from_millis(1500));
        assert!(matches!(c.lookup("k"), Cached::Stale(2)));
        c.refresh_failed("k");
        assert!(matches!(c.lookup("k"), Cached::Stale(2)));
        // Never served past the TTL, refreshing or not.
        c.age("k", LOOKUP_TTL);
        assert!(matches!(c.lookup("k"), Cached::Missing));
        c.forget("k");
        assert!(matches!(c.lookup("k"), Cached::Missing));
    }

    #[test]
    fn entries_used_in_the_last_minutes_are_kept_warm_most_recent_first() {
        let c: LookupCache<u32> = LookupCache::default();
        for (i, name) in ["a", "b", "c", "d"].iter().enumerate() {
            c.put(name, i as u32);
        }
        // Young entries: nothing to do.
        assert!(c.due_for_refresh(10).is_empty());
        for name in ["a", "b", "c", "d"] {
            c.age(name, Duration::from_millis(1200));
        }
        c.used_ago("a", Duration::from_secs(30));
        c.used_ago("b", Duration::from_secs(5));
        c.used_ago("c", KEEP_WARM + Duration::from_secs(1));
        // c was not used for too long; the others, most recent first,
        // capped; a refresh under way is not asked again.
        let due: Vec<String> = c.due_for_refresh(2).into_iter().map(|(n, _)| n).collect();
        assert_eq!(due, ["d", "b"]);
        let due: Vec<String> = c.due_for_refresh(10).into_iter().map(|(n, _)| n).collect();
        assert_eq!(due, ["a"]);
        assert!(c.due_for_refresh(10).is_empty());
        // A refresh lands: fresh, and still counted as used when it was.
        c.put("a", 9);
        assert!(c.due_for_refresh(10).is_empty());
        c.age("a", Duration::from_millis(1200));
        let due: Vec<String> = c.due_for_refresh(10).into_iter().map(|(n, _)| n).collect();
        assert_eq!(due, ["a"]);
    }
}
