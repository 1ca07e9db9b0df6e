//! Bucket usage (objects and bytes), for quotas and for operators.
//!
//! Each node counts, in the object table's hook, the live objects and bytes
//! of every index shard it stores (`object:usage`, local), and publishes
//! its counts per bucket to the replicated `bucket_usage` table every few
//! seconds when they changed. A bucket's usage is, for each of its shards,
//! the largest count among the nodes that currently store that shard (a
//! lagging replica counts less, never more), summed over shards. It trails
//! writes by a few seconds: quotas are soft limits.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;
use std::time::Duration;

use hangar_common::clock::timestamp_ms;
use hangar_common::hash::partition_of;
use tracing::warn;

use super::tables::*;
use super::{Model, ModelError};

/// A node's counts of a bucket, per index shard.
type Counts = BTreeMap<u8, [u64; USAGE_COUNTS]>;

/// What a bucket holds: object versions with data and their bytes (every
/// kept version counts), and of them those that are not current.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub objects: u64,
    pub bytes: u64,
    pub noncurrent_objects: u64,
    pub noncurrent_bytes: u64,
}

/// How often a node publishes its counts.
pub const PUBLISH_INTERVAL: Duration = Duration::from_secs(2);

impl Model {
    pub async fn usage_loop(self: Arc<Self>) {
        let mut published: BTreeMap<BucketId, Counts> = BTreeMap::new();
        loop {
            if let Err(e) = self.publish_usage(&mut published).await {
                warn!("publishing bucket usage failed, retried: {e}");
            }
            tokio::time::sleep(PUBLISH_INTERVAL).await;
        }
    }

    async fn publish_usage(
        &self,
        published: &mut BTreeMap<BucketId, Counts>,
    ) -> Result<(), ModelError> {
        let tree = self.objects.data.schema.usage;
        let rows = self
            .db
            .range(tree, Bound::Unbounded, Bound::Unbounded, false, usize::MAX)?;
        let mut now: BTreeMap<BucketId, Counts> = BTreeMap::new();
        for (pk, v) in rows {
            let (Some(id), Some(shard)) = (pk.get(..32), pk.get(32)) else {
                continue;
            };
            let Ok(id) = <[u8; 32]>::try_from(id) else {
                continue;
            };
            now.entry(hangar_common::hash::Hash(id))
                .or_default()
                .insert(*shard, decode_usage(&v));
        }
        for (bucket, shards) in &now {
            if published.get(bucket) == Some(shards) {
                continue;
            }
            let item = BucketUsage {
                bucket: *bucket,
                node: self.net.id.0.to_vec(),
                timestamp: timestamp_ms(),
                shards: shards.iter().map(|(s, c)| (*s, (c[0], c[1]))).collect(),
                noncurrent: shards
                    .iter()
                    .filter(|(_, c)| c[2] > 0 || c[3] > 0)
                    .map(|(s, c)| (*s, (c[2], c[3])))
                    .collect(),
            };
            self.usage.insert(&item).await?;
            published.insert(*bucket, shards.clone());
        }
        Ok(())
    }

    /// Refuse a write that would take a bucket over its quotas: `new_object`
    /// when the key does not exist yet, `added` the bytes it adds.
    pub(crate) async fn check_quotas(
        &self,
        bucket: &Bucket,
        new_object: bool,
        added: i64,
    ) -> Result<(), ModelError> {
        let q = bucket.quotas.value;
        if q.max_size.is_none() && q.max_objects.is_none() {
            return Ok(());
        }
        let Usage { objects, bytes, .. } = self.bucket_usage(bucket).await?;
        if let Some(max) = q.max_objects
            && new_object
            && objects >= max
        {
            return Err(ModelError::QuotaExceeded(
                bucket.name.clone(),
                format!("it holds {objects} objects, the most it may hold is {max}"),
            ));
        }
        if let Some(max) = q.max_size
            && added > 0
            && bytes.saturating_add(added as u64) > max
        {
            return Err(ModelError::QuotaExceeded(
                bucket.name.clone(),
                format!("it holds {bytes} bytes, {added} more would pass its limit of {max} bytes"),
            ));
        }
        Ok(())
    }

    /// A bucket's usage, a few seconds behind writes.
    pub(crate) async fn bucket_usage(&self, bucket: &Bucket) -> Result<Usage, ModelError> {
        let reports = self
            .usage
            .get_range(bucket.id.as_bytes(), &[], None, 10_000)
            .await?;
        let layout = self.usage.layout.current();
        let mut u = Usage::default();
        for shard in 0..bucket.shards.max(1) {
            let mut pk = bucket.id.as_bytes().to_vec();
            pk.push(shard);
            let holders = layout.read_set(partition_of(&pk));
            let best = reports
                .iter()
                .filter(|r| holders.iter().any(|n| n.0.as_slice() == r.node.as_slice()))
                .filter_map(|r| {
                    let live = r.shards.get(&shard)?;
                    Some((*live, r.noncurrent.get(&shard).copied().unwrap_or((0, 0))))
                })
                .max()
                .unwrap_or_default();
            u.objects += best.0.0;
            u.bytes += best.0.1;
            u.noncurrent_objects += best.1.0;
            u.noncurrent_bytes += best.1.1;
        }
        Ok(u)
    }
}
