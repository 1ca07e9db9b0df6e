//! The replicated table layer on a real 3-node, RF 3 cluster, through the
//! `debug_kv` diagnostics table.

use hangar_common::rpc::{AdminClient, LocalValue};
use hangar_tests::*;

/// Options for table tests: anti-entropy's periodic run is pushed far away
/// (an hour), so that whatever converges in these tests converged through
/// writes, read repair or the sync that runs when a peer comes back.
fn opts(gc_delay_ms: u64) -> AgentOpts {
    AgentOpts {
        extra: format!(
            "[tables]\nsync_interval_ms = 3600000\ngc_delay_ms = {gc_delay_ms}\nop_timeout_ms = 3000\n"
        ),
        ..AgentOpts::default()
    }
}

async fn put(c: &AdminClient, k: &str, v: Option<&str>) {
    c.debug_kv_put(ctx(), k.to_string(), v.map(str::to_string))
        .await
        .expect("rpc")
        .unwrap_or_else(|e| panic!("put {k}: {e}"));
}

async fn get(c: &AdminClient, k: &str) -> Option<String> {
    c.debug_kv_get(ctx(), k.to_string())
        .await
        .expect("rpc")
        .unwrap_or_else(|e| panic!("get {k}: {e}"))
}

async fn local(c: &AdminClient, keys: &[String]) -> Vec<LocalValue> {
    c.debug_kv_local(ctx(), keys.to_vec())
        .await
        .expect("rpc")
        .expect("local read")
}

async fn table_stats(c: &AdminClient) -> hangar_common::rpc::TableStats {
    let st = c.status(ctx()).await.expect("status");
    st.tables
        .into_iter()
        .find(|t| t.table == "debug_kv")
        .expect("debug_kv stats")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_succeed_with_a_node_down_and_anti_entropy_repairs_it_when_back() {
    let mut c = tokio::task::block_in_place(|| Cluster::start_formed(3, &opts(3_600_000)));
    let a = c.agents[0].admin().await;
    let b = c.agents[1].admin().await;

    c.agents[2].kill();
    let dead = c.agents[2].id.clone();
    tokio::task::block_in_place(|| {
        wait_for("node 1 to see node 3 down", DEADLINE, || {
            c.agents[0]
                .status()
                .is_some_and(|st| sees_down(&st, &dead))
                .then_some(())
        })
    });
    let keys: Vec<String> = (0..200).map(|i| format!("key-{i}")).collect();
    for (i, k) in keys.iter().enumerate() {
        put(&a, k, Some(&format!("value-{i}"))).await;
    }
    // Read-after-write through another node, with one replica gone.
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(
            get(&b, k).await.as_deref(),
            Some(format!("value-{i}").as_str())
        );
    }

    // Back: nothing reads these keys, yet the node gets every one of them.
    tokio::task::block_in_place(|| c.agents[2].start());
    let cc = c.agents[2].admin().await;
    wait_for_async(
        "the returning node to receive every missed item",
        DEADLINE,
        || async {
            let got = local(&cc, &keys).await;
            got.iter()
                .enumerate()
                .all(|(i, v)| *v == LocalValue::Value(format!("value-{i}")))
                .then_some(())
        },
    )
    .await;
    assert!(table_stats(&a).await.items_pushed + table_stats(&b).await.items_pushed >= 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_to_one_key_converge_everywhere() {
    let c = tokio::task::block_in_place(|| Cluster::start_formed(3, &opts(3_600_000)));
    let clients = [
        c.agents[0].admin().await,
        c.agents[1].admin().await,
        c.agents[2].admin().await,
    ];
    for round in 0..20 {
        let k = format!("contended-{round}");
        let (x, y) = (clients[0].clone(), clients[1].clone());
        let (k1, k2) = (k.clone(), k.clone());
        let w1 = tokio::spawn(async move { put(&x, &k1, Some("from-a")).await });
        let w2 = tokio::spawn(async move { put(&y, &k2, Some("from-b")).await });
        w1.await.expect("writer a");
        w2.await.expect("writer b");
        let keys = vec![k.clone()];
        let agreed = wait_for_async("all replicas to hold the same value", DEADLINE, || async {
            let mut vals = Vec::new();
            for cl in &clients {
                vals.push(local(cl, &keys).await.remove(0));
            }
            (vals.iter().all(|v| *v == vals[0])).then(|| vals[0].clone())
        })
        .await;
        let LocalValue::Value(winner) = agreed else {
            panic!("expected a value everywhere, got {agreed:?}");
        };
        assert!(winner == "from-a" || winner == "from-b", "{winner}");
        for cl in &clients {
            assert_eq!(get(cl, &k).await.as_deref(), Some(winner.as_str()));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_propagate_and_tombstones_go_only_once_every_replica_holds_them() {
    let mut c = tokio::task::block_in_place(|| Cluster::start_formed(3, &opts(500)));
    let a = c.agents[0].admin().await;
    let b = c.agents[1].admin().await;
    let keys: Vec<String> = (0..20).map(|i| format!("doomed-{i}")).collect();
    for k in &keys {
        put(&a, k, Some("v")).await;
    }
    // Node 3 misses the deletions.
    c.agents[2].kill();
    for k in &keys {
        put(&a, k, None).await;
        assert_eq!(
            get(&b, k).await,
            None,
            "a delete is visible at once through another node"
        );
    }
    // Collection is attempted, and blocked by the missing replica...
    wait_for_async(
        "GC to try and be blocked by the dead node",
        DEADLINE,
        || async { (table_stats(&a).await.gc_blocked >= keys.len() as u64).then_some(()) },
    )
    .await;
    // ...so the tombstones are still there on the live replicas.
    for cl in [&a, &b] {
        let held = local(cl, &keys).await;
        assert!(
            held.iter().all(|v| *v == LocalValue::Tombstone),
            "tombstones kept: {held:?}"
        );
    }
    // The node returns: it gets the tombstones, and then they all go.
    tokio::task::block_in_place(|| c.agents[2].start());
    let cc = c.agents[2].admin().await;
    wait_for_async(
        "tombstones to be collected on every replica",
        DEADLINE,
        || async {
            for cl in [&a, &b, &cc] {
                if local(cl, &keys)
                    .await
                    .iter()
                    .any(|v| *v != LocalValue::Absent)
                {
                    return None;
                }
                if table_stats(cl).await.gc_queue != 0 {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    for k in &keys {
        assert_eq!(
            get(&cc, k).await,
            None,
            "a collected item does not come back"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_quorum_writes_fail_saying_how_many_replicas_answered() {
    let mut c = tokio::task::block_in_place(|| Cluster::start_formed(3, &opts(3_600_000)));
    let a = c.agents[0].admin().await;
    c.agents[1].kill();
    c.agents[2].kill();
    let err = a
        .debug_kv_put(ctx(), "lonely".into(), Some("v".into()))
        .await
        .expect("rpc")
        .expect_err("a write with 1 of 3 replicas must fail");
    let msg = err.to_string();
    assert!(msg.contains("1 of the 2 needed replicas answered"), "{msg}");
    let err = a
        .debug_kv_get(ctx(), "lonely".into())
        .await
        .expect("rpc")
        .expect_err("no read quorum");
    assert!(err.to_string().contains("quorum not reached"), "{err}");
}
