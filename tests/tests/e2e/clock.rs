//! Clocks: nodes whose wall clocks are minutes apart (the clock nemesis:
//! each agent runs with its clock shifted) still order a client's writes
//! as the client made them, and the skew is shown where an operator looks.

use hangar_tests::*;

use crate::ops::scrape;

/// Five minutes, in milliseconds: an old machine without NTP.
const FIVE_MIN: i64 = 5 * 60 * 1000;

/// Node 1 on time, node 2 five minutes behind, node 3 five minutes ahead.
fn skewed_cluster() -> Cluster {
    Cluster::start_formed(
        3,
        &AgentOpts {
            clock_offsets_ms: vec![0, -FIVE_MIN, FIVE_MIN],
            ..AgentOpts::default()
        },
    )
}

fn endpoints(c: &Cluster) -> String {
    c.agents
        .iter()
        .map(|a| a.s3_endpoint())
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
#[ignore = "full tier: skewed clocks, over a minute"]
fn the_later_acknowledged_write_wins_whatever_the_nodes_clocks() {
    let c = skewed_cluster();
    let a = &c.agents[0];
    let key = a.bucket_with_key("test", "tester");
    let eps = endpoints(&c);
    let env = [("HANGAR_S3_ENDPOINTS", eps.as_str())];
    // 12 rounds: every ordered pair of nodes twice, each round a PUT/PUT,
    // PUT/DELETE, DELETE/PUT, PUT/Copy, Copy/PUT and two multipart
    // completions against PUTs.
    let out = a.boto3_ok(&key, "test", &env, &["sequential_order", "12"]);
    eprint!("{out}");
    let out = a.boto3_ok(&key, "test", &env, &["bucket_recreate", "6"]);
    eprint!("{out}");
}

#[test]
#[ignore = "full tier: waits for clock offsets to be measured, over a minute"]
fn clock_skew_is_measured_and_shown_in_status_metrics_and_logs() {
    let c = skewed_cluster();
    let ids: Vec<String> = c.agents.iter().map(|a| a.id.clone()).collect();
    // Whichever node answers, the slow node is behind and the fast one
    // ahead of the cluster, by about five minutes (pings on loopback: a
    // few milliseconds of error).
    for observer in &c.agents {
        let st = wait_for("every clock offset measured", DEADLINE, || {
            let st = observer.status()?;
            ids.iter()
                .all(|id| !node_in(&st, id).is_some_and(|n| n["clock_offset_ms"].is_null()))
                .then_some(st)
        });
        let off = |i: usize| {
            node_in(&st, &ids[i])
                .and_then(|n| n["clock_offset_ms"].as_i64())
                .expect("offset")
        };
        assert!(off(0).abs() < 2_000, "node 1 is on time: {st}");
        assert!(
            (off(1) + FIVE_MIN).abs() < 2_000,
            "node 2 is 5 min behind: {st}"
        );
        assert!(
            (off(2) - FIVE_MIN).abs() < 2_000,
            "node 3 is 5 min ahead: {st}"
        );
    }
    // `hangar status` says it plainly, with what to do.
    let out = c.agents[0].hangar(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let short = |i: usize| ids[i][..16].to_string();
    assert!(
        text.contains(&format!(
            "node {}'s clock is 5 min behind the cluster's: set up NTP",
            short(1)
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "node {}'s clock is 5 min ahead of the cluster's",
            short(2)
        )),
        "{text}"
    );
    assert!(text.contains("timedatectl set-ntp true"), "{text}");
    assert!(
        !text.contains(&format!("node {}'s clock", short(0))),
        "{text}"
    );
    // /metrics has every node's offset.
    let (_, metrics) = scrape(&c.agents[1], "/metrics").expect("scrape /metrics");
    let value = |i: usize| {
        let series = format!("hangar_node_clock_offset_seconds{{node=\"{}\"}} ", short(i));
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series.as_str())?.trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {series} in /metrics:\n{metrics}"))
    };
    assert!(value(0).abs() < 2.0);
    assert!((value(1) + 300.0).abs() < 2.0);
    assert!((value(2) - 300.0).abs() < 2.0);
    // The on-time node's log names the skewed peers once, not every ping.
    let log = c.agents[0].logs();
    let warned = |i: usize| {
        log.lines()
            .filter(|l| l.contains(&format!("peer {}'s clock is 5 min", short(i))))
            .count()
    };
    assert_eq!(warned(1), 1, "{log}");
    assert_eq!(warned(2), 1, "{log}");
}
