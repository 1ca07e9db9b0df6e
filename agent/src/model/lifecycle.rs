//! The lifecycle worker: applies buckets' lifecycle rules (expire objects
//! by age or date, abort multipart uploads left unfinished).
//!
//! Every node runs it, and each bucket is handled by one node: the first
//! node that is up among the bucket's partition's read set, so a pass does
//! the work once in a healthy cluster and still happens when nodes are
//! down. If two nodes disagree for a moment (a node just went down), both
//! may expire the same object: a delete is idempotent in effect.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hangar_common::crdt::now_msec;
use hangar_common::hash::partition_of;
use tracing::{info, warn};

use super::tables::*;
use super::{Model, ModelError};

/// What the lifecycle worker has done since the agent started.
#[derive(Debug, Default)]
pub struct LifecycleStats {
    pub passes: AtomicU64,
    pub expired: AtomicU64,
    pub aborted: AtomicU64,
    pub last_pass_ms: AtomicU64,
}

/// Timing of the lifecycle worker.
#[derive(Clone, Copy, Debug)]
pub struct LifecycleTiming {
    /// Time between passes.
    pub interval: Duration,
    /// Length of a lifecycle "day" (86,400 s; shorter only in tests).
    pub day: Duration,
}

impl Model {
    pub async fn lifecycle_loop(self: Arc<Self>, timing: LifecycleTiming) {
        loop {
            tokio::time::sleep(timing.interval).await;
            self.workers.gate(crate::worker::LIFECYCLE).await;
            match self.lifecycle_pass(timing.day).await {
                Ok((0, 0)) => {}
                Ok((expired, aborted)) => info!(
                    "lifecycle: {expired} object(s) expired, {aborted} multipart upload(s) aborted"
                ),
                Err(e) => warn!("lifecycle pass failed, retried next time: {e}"),
            }
            self.lifecycle.passes.fetch_add(1, Ordering::Relaxed);
            self.lifecycle
                .last_pass_ms
                .store(now_msec(), Ordering::Relaxed);
        }
    }

    /// Whether this node handles `bucket`'s lifecycle.
    fn lifecycle_leader(
        &self,
        bucket: &Bucket,
        layout: &hangar_common::layout::cluster::ClusterLayout,
    ) -> bool {
        let p = partition_of(bucket.id.as_bytes());
        layout
            .read_set(p)
            .iter()
            .find(|n| **n == self.net.id || self.net.is_up(n))
            .is_some_and(|n| *n == self.net.id)
    }

    /// One pass over every bucket with rules; (objects expired, uploads
    /// aborted).
    async fn lifecycle_pass(&self, day: Duration) -> Result<(u64, u64), ModelError> {
        let layout = self.buckets.layout.current();
        let buckets = self.buckets.scan(100_000).await?;
        let day_ms = day.as_millis() as u64;
        let now = now_msec();
        let (mut expired, mut aborted) = (0, 0);
        for bucket in buckets {
            if bucket.deleted.0 || !self.lifecycle_leader(&bucket, &layout) {
                continue;
            }
            let Some(rules) = bucket.lifecycle.value.clone() else {
                continue;
            };
            for rule in rules.iter().filter(|r| r.enabled) {
                if rule.expire_days.is_some() || rule.expire_date_ms.is_some() {
                    expired += self.expire_objects(&bucket, rule, now, day_ms).await?;
                }
                if rule.noncurrent_days.is_some() || rule.expired_marker {
                    expired += self.expire_versions(&bucket, rule, now, day_ms).await?;
                }
                if let Some(days) = rule.abort_mpu_days {
                    aborted += self
                        .abort_uploads(&bucket, &rule.prefix, now, days as u64 * day_ms)
                        .await?;
                }
            }
        }
        self.lifecycle.expired.fetch_add(expired, Ordering::Relaxed);
        self.lifecycle.aborted.fetch_add(aborted, Ordering::Relaxed);
        Ok((expired, aborted))
    }

    async fn expire_objects(
        &self,
        bucket: &Bucket,
        rule: &LifecycleRule,
        now: u64,
        day_ms: u64,
    ) -> Result<u64, ModelError> {
        let due = |o: &Object| {
            let by_age = rule
                .expire_days
                .is_some_and(|d| o.version.timestamp + d as u64 * day_ms <= now);
            let by_date = rule.expire_date_ms.is_some_and(|d| d <= now);
            by_age || by_date
        };
        let mut after: Option<Vec<u8>> = None;
        let mut n = 0;
        loop {
            let page = self
                .list_objects(bucket, &rule.prefix, after.as_deref(), 1000)
                .await?;
            let last = page.len() < 1000;
            for o in page {
                after = Some(o.key.as_bytes().to_vec());
                if !due(&o) {
                    continue;
                }
                let gone = Object::new(o.pk.clone(), o.key.clone(), {
                    // Timed just after the version it expires: it replaces
                    // that version (or, with versioning, is the delete
                    // marker above it), never one written after it (a
                    // later write is timed above what it replaces, so above
                    // this one's time too).
                    let mut v = ObjectVersion::in_bucket(
                        new_version_id(),
                        if bucket.versioning.value == Versioning::Unversioned {
                            ObjectData::Removed
                        } else {
                            ObjectData::DeleteMarker
                        },
                        bucket,
                    );
                    v.set_time_us(o.version.time_us() + 1);
                    v
                });
                self.objects.insert(&gone).await?;
                n += 1;
            }
            if last {
                return Ok(n);
            }
        }
    }

    /// Versioning: delete the versions that have not been current for
    /// `noncurrent_days` (beyond the `newer_noncurrent` newest of them),
    /// and delete markers left with no version under them. A version stops
    /// being current when the next one is written: its time is the start.
    async fn expire_versions(
        &self,
        bucket: &Bucket,
        rule: &LifecycleRule,
        now: u64,
        day_ms: u64,
    ) -> Result<u64, ModelError> {
        let mut lister = self.lister(bucket, &rule.prefix, None, 1000);
        let mut n = 0;
        while let Some(o) = lister.next_any().await? {
            let versions: Vec<&ObjectVersion> = o.versions().collect();
            let mut gone: Vec<ObjectVersion> = Vec::new();
            if let Some(days) = rule.noncurrent_days {
                let keep = rule.newer_noncurrent.unwrap_or(0) as usize;
                for (i, pair) in versions.windows(2).enumerate() {
                    let (newer, v) = (pair[0], pair[1]);
                    if i >= keep && newer.timestamp + days as u64 * day_ms <= now {
                        gone.push(v.removed());
                    }
                }
            }
            // Lifecycle never deletes a locked version.
            let now_wall = hangar_common::clock::wall_ms();
            gone.retain(|g| {
                versions
                    .iter()
                    .find(|v| v.uuid == g.uuid)
                    .is_none_or(|v| v.lock.refuses_delete(now_wall, false).is_none())
            });
            if rule.expired_marker
                && o.version.data == ObjectData::DeleteMarker
                && versions.len() == gone.len() + 1
            {
                gone.push(o.version.removed());
            }
            for v in gone {
                self.objects
                    .insert(&Object::new(o.pk.clone(), o.key.clone(), v))
                    .await?;
                n += 1;
            }
        }
        Ok(n)
    }

    async fn abort_uploads(
        &self,
        bucket: &Bucket,
        prefix: &str,
        now: u64,
        age_ms: u64,
    ) -> Result<u64, ModelError> {
        let mut after: Option<Vec<u8>> = None;
        let mut n = 0;
        loop {
            let page = self
                .uploads
                .get_range(
                    bucket.id.as_bytes(),
                    prefix.as_bytes(),
                    after.as_deref(),
                    1000,
                )
                .await?;
            let last = page.len() < 1000;
            for mut u in page {
                after = Some(u.sk.clone());
                if u.ended.0 || u.created_ms + age_ms > now {
                    continue;
                }
                u.ended.raise();
                self.uploads.insert(&u).await?;
                n += 1;
            }
            if last {
                return Ok(n);
            }
        }
    }
}
