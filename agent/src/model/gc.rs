//! Cleanup after an object version is replaced or deleted.
//!
//! The object table's hook queues, on each replica, the uuid of a replaced
//! version that had blocks (`version_gc`). This worker marks that version's
//! block-list chunks deleted; the version table's hook then queues each
//! deleted chunk's block hashes (`ref_gc`), and the worker marks those block
//! references deleted; the block reference table's hook lowers the blocks'
//! reference counts, and the block resync worker deletes blocks nobody
//! references after a grace delay. Every step is a replicated, idempotent
//! write, so replicas doing the same work twice is harmless, and a crash
//! in between resumes from the persistent queues.

use std::ops::Bound;
use std::sync::Arc;
use std::time::Duration;

use hangar_common::crdt::Flag;
use hangar_common::hash::Hash;
use tracing::{debug, warn};

use super::tables::{BlockRef, VersionId};
use super::{Model, ModelError};

const BATCH: usize = 32;

impl Model {
    pub async fn gc_loop(self: Arc<Self>) {
        loop {
            self.workers.gate(crate::worker::VERSION_GC).await;
            let worked = match self.gc_batch().await {
                Ok(n) => n,
                Err(e) => {
                    warn!("version cleanup: {e}");
                    0
                }
            };
            if worked == 0 {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }

    async fn gc_batch(&self) -> Result<usize, ModelError> {
        let mut done = 0;
        let versions = self.db.range(
            self.version_gc,
            Bound::Unbounded,
            Bound::Unbounded,
            false,
            BATCH,
        )?;
        for (key, _) in versions {
            let Ok(uuid) = VersionId::try_from(key.as_slice()) else {
                let _ = self.db.remove(self.version_gc, &key);
                continue;
            };
            match self.delete_version(uuid).await {
                Ok(()) => {
                    self.db.remove(self.version_gc, &key)?;
                    done += 1;
                }
                Err(e) => debug!(
                    "version {}: cleanup will be retried: {e}",
                    hex::encode(uuid)
                ),
            }
        }
        let refs = self.db.range(
            self.ref_gc,
            Bound::Unbounded,
            Bound::Unbounded,
            false,
            BATCH,
        )?;
        for (key, value) in refs {
            let (Some(uuid), Ok(hashes)) = (
                key.get(..16).and_then(|b| VersionId::try_from(b).ok()),
                rmp_serde::from_slice::<Vec<Hash>>(&value),
            ) else {
                let _ = self.db.remove(self.ref_gc, &key);
                continue;
            };
            let mut ok = true;
            for block in hashes {
                let r = BlockRef {
                    block,
                    version: uuid,
                    deleted: Flag(true),
                };
                if let Err(e) = self.refs.insert(&r).await {
                    debug!("block reference cleanup will be retried: {e}");
                    ok = false;
                    break;
                }
            }
            if ok {
                self.db.remove(self.ref_gc, &key)?;
                done += 1;
            }
        }
        Ok(done)
    }

    /// Mark every block-list chunk of a version deleted.
    /// Release a version no object will refer to (its upload failed after
    /// its block list was written): its references to `blocks` are marked
    /// deleted at once (before the resync worker would look for a block
    /// that never arrived), and its chunks too, which the usual chain
    /// follows. Best effort: logged.
    pub(crate) async fn release_version(&self, uuid: VersionId, blocks: &[Hash]) {
        let mut released = std::collections::BTreeSet::new();
        let mut result = Ok(());
        for block in blocks {
            if !released.insert(*block) {
                continue;
            }
            let r = BlockRef {
                block: *block,
                version: uuid,
                deleted: Flag(true),
            };
            if let Err(e) = self.refs.insert(&r).await {
                result = Err(e.into());
                break;
            }
        }
        if let Err(e) = result.and(self.delete_version(uuid).await) {
            warn!(
                "version {} of a failed upload: its blocks stay referenced: {e}",
                hex::encode(uuid)
            );
        }
    }

    async fn delete_version(&self, uuid: VersionId) -> Result<(), ModelError> {
        let mut after: Option<Vec<u8>> = None;
        loop {
            let chunks = self
                .versions
                .get_range(&uuid, &[], after.as_deref(), 64)
                .await?;
            let n = chunks.len();
            for mut c in chunks {
                after = Some(c.index.to_vec());
                if !c.deleted.0 {
                    c.deleted = Flag(true);
                    self.versions.insert(&c).await?;
                }
            }
            if n < 64 {
                return Ok(());
            }
        }
    }
}
