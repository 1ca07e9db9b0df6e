//! `hangar demo`: a throwaway three-node cluster on loopback, with a bucket,
//! a key and a little data, and the console opened on it; quitting stops
//! the agents and removes their data. For newcomers to see every view with
//! one command.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use hangar_common::layout::NodeRole;
use hangar_common::layout::cluster::StagedRole;
use hangar_common::rpc::{AdminClient, PermissionChange};
use hangar_common::transport::RpcSecret;
use hangar_common::{NodeId, PeerAddr};

use crate::conn::{Target, ctx};

/// The demo's agents and their directory; dropping it (quit, error or
/// panic) stops them and removes everything.
struct Demo {
    dir: PathBuf,
    children: Vec<Child>,
}

impl Drop for Demo {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

/// `hangar-agent` next to this program, else on the PATH.
fn agent_program() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("hangar-agent")))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("hangar-agent"))
}

struct Node {
    rpc: String,
    s3: u16,
    config: PathBuf,
}

fn write_config(dir: &Path, i: usize, secret: &RpcSecret) -> anyhow::Result<Node> {
    let d = dir.join(format!("node{i}"));
    std::fs::create_dir_all(&d)?;
    let (rpc, s3, web) = (free_port()?, free_port()?, free_port()?);
    let config = d.join("hangar.toml");
    std::fs::write(
        &config,
        format!(
            "metadata_dir = {meta:?}\ndata_dir = {data:?}\nreplication_factor = 3\n\
             rpc_bind_addr = \"127.0.0.1:{rpc}\"\nrpc_public_addr = \"127.0.0.1:{rpc}\"\n\
             rpc_secret = \"{secret}\"\nping_interval_ms = 500\n\
             [s3_api]\napi_bind_addr = \"127.0.0.1:{s3}\"\n\
             [s3_web]\nbind_addr = \"127.0.0.1:{web}\"\n",
            meta = d.join("meta"),
            data = d.join("data"),
            secret = secret.to_hex(),
        ),
    )?;
    Ok(Node {
        rpc: format!("127.0.0.1:{rpc}"),
        s3,
        config,
    })
}

async fn connect(addr: &str, secret: &RpcSecret) -> anyhow::Result<(AdminClient, NodeId)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match hangar_common::rpc::connect_admin(addr, None, secret, Duration::from_secs(2)).await {
            Ok(c) => return Ok(c),
            Err(e) if Instant::now() > deadline => bail!("agent at {addr} did not start: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

pub async fn run() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("hangar-demo-{}", std::process::id()));
    let mut demo = Demo {
        dir: dir.clone(),
        children: Vec::new(),
    };
    let secret = RpcSecret::generate();
    let agent = agent_program();
    eprintln!("Starting a 3-node demo cluster in {} ...", dir.display());
    let mut nodes = Vec::new();
    for i in 1..=3 {
        let n = write_config(&dir, i, &secret)?;
        let log = std::fs::File::create(dir.join(format!("node{i}.log")))?;
        let child = Command::new(&agent)
            .arg("run")
            .arg("--config")
            .arg(&n.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", agent.display()))?;
        demo.children.push(child);
        nodes.push(n);
    }
    let mut ids = Vec::new();
    for n in &nodes {
        ids.push(connect(&n.rpc, &secret).await?.1);
    }
    let (first, _) = connect(&nodes[0].rpc, &secret).await?;
    let e = |e: tarpc::client::RpcError| anyhow!("{e}");
    for (n, id) in nodes.iter().zip(&ids).skip(1) {
        let peer = PeerAddr {
            id: *id,
            addr: n.rpc.clone(),
        };
        first
            .connect_node(ctx(), peer)
            .await
            .map_err(e)?
            .map_err(|e| anyhow!("{e}"))?;
    }
    let roles: Vec<(NodeId, StagedRole)> = ids
        .iter()
        .zip(["house-a", "house-b", "house-c"])
        .map(|(id, zone)| {
            (
                *id,
                StagedRole::Set(NodeRole {
                    zone: zone.into(),
                    capacity: Some(10_000_000_000),
                }),
            )
        })
        .collect();
    first
        .layout_stage(ctx(), roles)
        .await
        .map_err(e)?
        .map_err(|e| anyhow!("{e}"))?;
    first
        .layout_apply(ctx(), 1)
        .await
        .map_err(e)?
        .map_err(|e| anyhow!("{e}"))?;
    first
        .bucket_create(ctx(), "demo".into())
        .await
        .map_err(e)?
        .map_err(|e| anyhow!("{e}"))?;
    let key = first
        .key_create(ctx(), "demo".into())
        .await
        .map_err(e)?
        .map_err(|e| anyhow!("{e}"))?;
    let all = PermissionChange {
        read: true,
        write: true,
        owner: true,
    };
    first
        .bucket_allow(ctx(), "demo".into(), key.access_key_id.clone(), all, true)
        .await
        .map_err(e)?
        .map_err(|e| anyhow!("{e}"))?;
    let secret_key = key.secret_access_key.clone().unwrap_or_default();
    for i in 0..20 {
        let body = format!("demo object {i}\n").repeat(200 * (i + 1));
        put_object(
            nodes[0].s3,
            &key.access_key_id,
            &secret_key,
            &format!("demo/file-{i:02}.txt"),
            body.as_bytes(),
        )
        .await
        .context("writing demo data")?;
    }
    eprintln!(
        "S3 endpoint http://127.0.0.1:{} · key {} · secret {secret_key}",
        nodes[0].s3, key.access_key_id
    );
    let target = Target {
        addr: nodes[0].rpc.clone(),
        expected: Some(ids[0]),
        secret,
    };
    let session = crate::tui::Session {
        quit_question: Some(vec![
            "Quit the demo?".into(),
            "Its three agents stop and their data is deleted.".into(),
        ]),
        note: Some(format!(
            "Demo S3 endpoint http://127.0.0.1:{} · key {} · secret {secret_key}",
            nodes[0].s3, key.access_key_id
        )),
    };
    let res = crate::tui::run(target, session).await;
    drop(demo);
    eprintln!("Demo cluster stopped and removed.");
    res
}

/// One signed S3 PUT (SigV4, unsigned payload) over a plain connection:
/// enough to give the demo some objects without an S3 client.
async fn put_object(
    port: u16,
    key_id: &str,
    secret: &str,
    key: &str,
    body: &[u8],
) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    let host = format!("127.0.0.1:{port}");
    let path = format!("/demo/{key}");
    let mut head = format!("PUT {path} HTTP/1.1\r\n");
    for (name, value) in
        hangar_common::sigv4::sign(key_id, secret, "hangar", "PUT", &host, &path, now.as_secs())
    {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    let mut s = tokio::net::TcpStream::connect(&host).await?;
    s.write_all(head.as_bytes()).await?;
    s.write_all(body).await?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).await?;
    let status = String::from_utf8_lossy(&resp);
    if !status.starts_with("HTTP/1.1 200") {
        bail!(
            "PUT {key}: {}",
            status.lines().next().unwrap_or("no answer")
        );
    }
    Ok(())
}
