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

/// Two of three nodes down and known to be: a write is refused at once
/// saying which replicas are away, and writes nothing, so it does not
/// come back once they return; a read is refused the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_quorum_writes_are_refused_saying_who_is_away_and_never_come_back() {
    let mut c = tokio::task::block_in_place(|| Cluster::start_formed(3, &opts(3_600_000)));
    let a = c.agents[0].admin().await;
    c.agents[1].kill();
    c.agents[2].kill();
    let away = [c.agents[1].id.clone(), c.agents[2].id.clone()];
    tokio::task::block_in_place(|| {
        wait_for("node 1 to see the other two down", DEADLINE, || {
            let st = c.agents[0].status()?;
            away.iter().all(|id| sees_down(&st, id)).then_some(())
        })
    });
    let err = a
        .debug_kv_put(ctx(), "lonely".into(), Some("v".into()))
        .await
        .expect("rpc")
        .expect_err("a write with 1 of 3 replicas must fail");
    let msg = err.to_string();
    assert!(
        msg.contains("only 1 of the 2 replicas needed")
            && msg.contains("refused before sending anything"),
        "{msg}"
    );
    for id in &away {
        assert!(msg.contains(&id[..16]), "the message names {id}: {msg}");
    }
    let err = a
        .debug_kv_get(ctx(), "lonely".into())
        .await
        .expect("rpc")
        .expect_err("no read quorum");
    assert!(err.to_string().contains("are connected"), "{err}");
    tokio::task::block_in_place(|| {
        c.agents[1].start();
        c.agents[2].start();
        wait_for_same_metadata(&c.agents, DEADLINE);
    });
    for agent in &c.agents {
        let got = agent
            .admin()
            .await
            .debug_kv_get(ctx(), "lonely".into())
            .await
            .expect("rpc")
            .expect("a read quorum again");
        assert_eq!(got, None, "a refused write came back on {}", agent.id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layout_change_under_continuous_writes_loses_nothing_and_moves_data_to_the_new_nodes() {
    let opts = opts(3_600_000);
    let c = tokio::task::block_in_place(|| Cluster::start_formed(3, &opts));
    let d = tokio::task::block_in_place(|| c.add_agent(&opts));
    let all: Vec<&Agent> = c.agents.iter().chain(std::iter::once(&d)).collect();

    // A writer that keeps going through node 2 for the whole test, and
    // reads each acknowledged write back through node 3 (read-after-write
    // must hold throughout the layout changes).
    let writer_client = c.agents[1].admin().await;
    let check_client = c.agents[2].admin().await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let writer = tokio::spawn(async move {
        let (mut acked, mut failed, mut stale_reads) = (Vec::new(), 0usize, Vec::new());
        let mut i = 0usize;
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            let (k, v) = (format!("w-{i}"), format!("v-{i}"));
            match writer_client
                .debug_kv_put(ctx(), k.clone(), Some(v.clone()))
                .await
            {
                Ok(Ok(())) => {
                    let read = check_client.debug_kv_get(ctx(), k.clone()).await;
                    if !matches!(&read, Ok(Ok(Some(got))) if *got == v) {
                        stale_reads.push((k.clone(), format!("{read:?}")));
                    }
                    acked.push((k, v));
                }
                _ => failed += 1,
            }
            i += 1;
        }
        (acked, failed, stale_reads)
    });

    // Version 2: a fourth node in a fourth zone.
    tokio::task::block_in_place(|| {
        c.agents[0].assign_role(&d.id, "dc4", "100G");
        c.agents[0].hangar_json(&["layout", "apply", "--version", "2"]);
        wait_for("the move to version 2 to complete", DEADLINE, || {
            transition_done(&all, 2)
        });
    });
    // Version 3: the first node leaves.
    let gone = c.agents[0].id.clone();
    tokio::task::block_in_place(|| {
        c.agents[1].hangar_json(&["layout", "remove", &gone]);
        c.agents[1].hangar_json(&["layout", "apply", "--version", "3"]);
        wait_for("the move to version 3 to complete", DEADLINE, || {
            transition_done(&all, 3)
        });
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (acked, failed, stale_reads) = writer.await.expect("writer");
    assert!(
        acked.len() >= 50,
        "the writer made progress: {} acked, {failed} failed",
        acked.len()
    );
    assert!(
        stale_reads.is_empty(),
        "read-after-write broke during the transition: {stale_reads:?}"
    );

    // Every acknowledged write is readable.
    let reader = c.agents[2].admin().await;
    for (k, v) in &acked {
        assert_eq!(
            get(&reader, k).await.as_deref(),
            Some(v.as_str()),
            "acknowledged write {k} lost"
        );
    }

    // Each key sits on exactly its partition's nodes in version 3, and the
    // node that left holds nothing.
    let view = tokio::task::block_in_place(|| c.agents[1].hangar_json(&["layout", "show"]));
    let assignment = view["layout"]["assignment"]
        .as_array()
        .expect("assignment")
        .clone();
    let keys: Vec<String> = acked.iter().map(|(k, _)| k.clone()).collect();
    let mut clients = Vec::new();
    for a in &all {
        clients.push((a.id.clone(), a.admin().await));
    }
    wait_for_async(
        "every key to sit on exactly its new replicas",
        DEADLINE,
        || async {
            for (id, cl) in &clients {
                let held = local(cl, &keys).await;
                for (k, v) in keys.iter().zip(held) {
                    let p = hangar_common::hash::partition_of(k.as_bytes());
                    let should = assignment[p].as_array()?.iter().any(|n| n == id.as_str());
                    if should != matches!(v, LocalValue::Value(_)) {
                        return None;
                    }
                }
            }
            Some(())
        },
    )
    .await;
    let removed = &clients[0].1;
    assert_eq!(
        table_stats(removed).await.items,
        0,
        "the removed node keeps no item"
    );
}
