//! Moving data after a layout change, and dropping it where it no longer
//! belongs.
//!
//! When version `v` is applied, older versions stay live (see
//! `ClusterLayout::history`): writes go to a quorum of every live version,
//! reads to the oldest. Each node then:
//!
//! 1. **acks** `v` once it has written with `v` for longer than a table
//!    operation may take, so no write of its that skipped the new replicas is
//!    still in flight;
//! 2. once every node of the current layout (and every reachable node of
//!    older ones) has acked, runs a full anti-entropy round of every table,
//!    pushing its data to the nodes that hold it in `v`, and records **sync**
//!    `v` if the round reached a write quorum of each partition's new
//!    replicas (see `sync.rs` for why that is enough). A node of the current
//!    layout that is down holds step 2 until it returns, unless an operator
//!    counts it as acked (`hangar layout skip-dead`);
//! 3. when a read quorum of each partition's old replicas have synced, any
//!    node retires the older versions (`ClusterLayout::prune`): reads move to
//!    the new replicas, which now hold every acknowledged write;
//! 4. nodes then **drop** the partitions they no longer hold.
//!
//! Old owners thus delete data only after the transition completed, that
//! is after enough of them had their pushes acknowledged by the new owners.

use std::sync::Arc;
use std::time::Duration;

use tracing::info;

use super::TableEndpoint;
use crate::layout::LayoutManager;
use crate::net::Net;

/// How often the worker looks at the transition state.
const TICK: Duration = Duration::from_millis(500);

pub async fn transition_loop(
    net: Arc<Net>,
    layout: Arc<LayoutManager>,
    tables: Vec<Arc<dyn TableEndpoint>>,
    op_timeout: Duration,
) {
    loop {
        tokio::time::sleep(TICK).await;
        let l = layout.snapshot();
        if l.version == 0 {
            continue;
        }
        let me = net.id;
        let v = l.version;
        // 1. Ack once writes started with an older version are over.
        if l.ack.get(&me).copied().unwrap_or(0) < v
            && layout.adopted_for(v).is_some_and(|d| d >= op_timeout)
        {
            layout.set_ack(v);
            continue;
        }
        // 2. Push data for the new version once every writer acked it.
        if l.in_transition() && l.sync.get(&me).copied().unwrap_or(0) < v {
            let acked = |n: &hangar_common::NodeId| l.ack.get(n).copied().unwrap_or(0) >= v;
            let current_ok = l.roles.keys().all(acked);
            let older_ok = l
                .all_live_nodes()
                .iter()
                .filter(|n| net.is_up(n))
                .all(acked);
            if !(current_ok && older_ok) {
                continue;
            }
            let mut complete = true;
            for t in &tables {
                complete &= t.clone().full_sync().await;
            }
            if complete && layout.snapshot().version == v {
                info!("layout version {v}: this node has pushed its data to the new replicas");
                layout.set_sync(v);
            }
            continue;
        }
        // 4. Drop what this node no longer holds.
        if !l.in_transition() {
            // Storage work: off the async workers, which serve requests.
            let t = tables.clone();
            let dropped: usize =
                tokio::task::spawn_blocking(move || t.iter().map(|t| t.drop_unheld()).sum())
                    .await
                    .unwrap_or(0);
            if dropped > 0 {
                info!(
                    "layout version {v}: dropped {dropped} item(s) of partitions this node no longer holds"
                );
            }
        }
    }
}
