//! Hostile clients of the cluster port: garbage, truncated and replayed
//! handshakes, and a console with the wrong secret are refused without
//! effect on the agent.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use hangar_tests::*;

/// Send `bytes` to the agent's RPC port; whatever it answers, it must end
/// the connection without serving anything (at most the handshake reply).
fn refused(a: &Agent, bytes: &[u8]) -> usize {
    let mut s = TcpStream::connect(a.addr()).expect("connect to the agent");
    s.set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    let _ = s.write_all(bytes);
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            // Closed with unread input: a reset is a refusal too.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the agent kept a bad connection open: {e}"),
        }
    }
    got.len()
}

#[test]
#[ignore = "full tier: hostile handshakes with time-outs, about 20 s"]
fn bad_handshakes_and_wrong_secrets_are_refused_and_change_nothing() {
    let c = Cluster::single_node();
    let a = &c.agents[0];
    a.hangar_json(&["bucket", "create", "before"]);

    // Garbage, and a length prefix promising more than is sent.
    assert_eq!(refused(a, &[0x42; 64]), 0, "garbage gets no answer");
    assert_eq!(refused(a, &[0x00, 0x64, 1, 2, 3]), 0, "truncated handshake");

    // Replay the bytes a real console sent: recorded through a relay.
    let relay = TcpListener::bind("127.0.0.1:0").expect("relay");
    let relay_addr = relay.local_addr().expect("relay address");
    let upstream = a.addr();
    let recorder = std::thread::spawn(move || {
        let (mut client, _) = relay.accept().expect("console connects");
        let mut server = TcpStream::connect(upstream).expect("agent");
        let mut sent = Vec::new();
        let mut c2 = client.try_clone().expect("clone");
        let mut s2 = server.try_clone().expect("clone");
        let back = std::thread::spawn(move || {
            let _ = std::io::copy(&mut s2, &mut c2);
        });
        let mut buf = [0u8; 65536];
        loop {
            match client.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    sent.extend_from_slice(&buf[..n]);
                    if server.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = server.shutdown(std::net::Shutdown::Both);
        let _ = back.join();
        sent
    });
    let out = std::process::Command::new(console_bin())
        .args([
            "--rpc-host",
            &relay_addr.to_string(),
            "--rpc-secret",
            &a.secret.to_hex(),
            "status",
        ])
        .env_remove("HANGAR_CONFIG")
        .output()
        .expect("run hangar");
    assert!(out.status.success(), "the console works through the relay");
    let recorded = recorder.join().expect("recorder");
    assert!(recorded.len() > 100, "a handshake and a call were recorded");
    // The replay gets at most the handshake's second message: the third
    // cannot be valid for a new session, so no RPC is ever answered.
    let answered = refused(a, &recorded);
    assert!(
        answered < 1000,
        "a replayed session was served ({answered} bytes)"
    );

    // A console with the wrong secret: a clear error, nothing done.
    let wrong = hangar_common::transport::RpcSecret::generate();
    let out = std::process::Command::new(console_bin())
        .args([
            "--rpc-host",
            &a.addr(),
            "--rpc-secret",
            &wrong.to_hex(),
            "bucket",
            "create",
            "intruder",
        ])
        .env_remove("HANGAR_CONFIG")
        .output()
        .expect("run hangar");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the wrong secret was accepted");
    assert!(err.contains("secret") || err.contains("handshake"), "{err}");

    // The agent is unaffected and nothing was created.
    let list = a.hangar_json(&["bucket", "list"]);
    let names: Vec<&str> = list
        .as_array()
        .map(|l| l.iter().filter_map(|b| b["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["before"], "{list}");
}
