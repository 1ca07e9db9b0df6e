//! Fault injection between real agents: every node reaches every other only
//! through a TCP proxy of the harness, which can delay, throttle or cut each
//! link, one way or both.
//!
//! Each agent binds its RPC to its own loopback address (127.0.1.N) and
//! opens its connections from there (`rpc_bind_outgoing`), and tells the
//! others to reach it at its proxy (127.0.0.1:P). A connection arriving at
//! node B's proxy from 127.0.1.A is the link A -> B: its bytes A to B are
//! the "up" direction, B to A "down". With both nodes' proxies, every
//! direction of every link is under control. Processes are paused, killed
//! and restarted through [`crate::Agent`].

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use hangar_common::transport::RpcSecret;

use crate::{Agent, AgentOpts, Cluster, free_port};

/// What a link does to the bytes crossing it, one direction.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Shape {
    /// Added one-way delay.
    pub delay: Duration,
    /// Up to this much more, at random per chunk (order is kept).
    pub jitter: Duration,
    /// Bytes per second, `None` for unlimited.
    pub rate: Option<u64>,
    /// Nothing gets through: connections are cut and refused.
    pub cut: bool,
}

/// Shapes by (from, to) node index.
type Rules = HashMap<(usize, usize), Shape>;

/// The proxies of a cluster and their rules.
pub struct Net {
    rules: Arc<Mutex<Rules>>,
    /// Bumped on every change, so running connections re-read the rules
    /// (and cut links close at once).
    changed: watch::Sender<u64>,
    _rt: tokio::runtime::Runtime,
}

fn lock(r: &Mutex<Rules>) -> std::sync::MutexGuard<'_, Rules> {
    r.lock().unwrap_or_else(|p| p.into_inner())
}

impl Net {
    /// Shape the link from `a` to `b` (one direction).
    pub fn shape(&self, a: usize, b: usize, s: Shape) {
        lock(&self.rules).insert((a, b), s);
        self.changed.send_modify(|v| *v += 1);
    }

    /// The same shape both ways between `a` and `b`.
    pub fn shape_both(&self, a: usize, b: usize, s: Shape) {
        self.shape(a, b, s);
        self.shape(b, a, s);
    }

    /// Cut node `n` off from every other (both ways).
    pub fn partition(&self, n: usize, nodes: usize) {
        for o in (0..nodes).filter(|o| *o != n) {
            let mut r = lock(&self.rules);
            for k in [(n, o), (o, n)] {
                r.entry(k).or_default().cut = true;
            }
        }
        self.changed.send_modify(|v| *v += 1);
    }

    /// Every link back to normal.
    pub fn heal(&self) {
        lock(&self.rules).clear();
        self.changed.send_modify(|v| *v += 1);
    }

    /// The shape of the link from `a` to `b`.
    pub fn get(&self, a: usize, b: usize) -> Shape {
        lock(&self.rules).get(&(a, b)).copied().unwrap_or_default()
    }
}

/// Forward one direction of a connection, shaping it by the rule of
/// link `(from, to)`.
async fn pump(
    mut src: tokio::net::tcp::OwnedReadHalf,
    mut dst: tokio::net::tcp::OwnedWriteHalf,
    net: Arc<NetInner>,
    from: usize,
    to: usize,
) {
    let mut buf = vec![0u8; 64 << 10];
    let mut changed = net.changed.subscribe();
    // Chunks wait in a queue until their release time, so a delayed link
    // still carries data at full rate (a long pipe, not a slow one).
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(tokio::time::Instant, Vec<u8>)>(256);
    let writer_net = net.clone();
    let writer = tokio::spawn(async move {
        while let Some((at, chunk)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            let shape = writer_net.get(from, to);
            if shape.cut {
                break;
            }
            if let Some(rate) = shape.rate.filter(|r| *r > 0) {
                let secs = chunk.len() as f64 / rate as f64;
                tokio::time::sleep(Duration::from_secs_f64(secs)).await;
            }
            if dst.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = dst.shutdown().await;
    });
    let mut last = tokio::time::Instant::now();
    loop {
        let n = tokio::select! {
            r = src.read(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
            _ = changed.changed() => {
                if net.get(from, to).cut {
                    break;
                }
                continue;
            }
        };
        let shape = net.get(from, to);
        if shape.cut {
            break;
        }
        let jitter = if shape.jitter.is_zero() {
            Duration::ZERO
        } else {
            shape.jitter.mul_f64(rand_unit())
        };
        let at = (tokio::time::Instant::now() + shape.delay + jitter).max(last);
        last = at;
        if tx.send((at, buf[..n].to_vec())).await.is_err() {
            break;
        }
    }
    drop(tx);
    // A cut link drops what is in flight.
    if net.get(from, to).cut {
        writer.abort();
    } else {
        let _ = writer.await;
    }
}

/// A cheap random number in [0, 1) for jitter (no crate needed).
fn rand_unit() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// What the proxy tasks share.
struct NetInner {
    rules: Arc<Mutex<Rules>>,
    changed: watch::Sender<u64>,
}

impl NetInner {
    fn get(&self, a: usize, b: usize) -> Shape {
        lock(&self.rules).get(&(a, b)).copied().unwrap_or_default()
    }
}

async fn proxy(
    listener: TcpListener,
    to: usize,
    target: SocketAddr,
    net: Arc<NetInner>,
    by_ip: Arc<HashMap<IpAddr, usize>>,
) {
    loop {
        let Ok((client, peer)) = listener.accept().await else {
            continue;
        };
        let Some(&from) = by_ip.get(&peer.ip()) else {
            // Not a node (a console): pass through unshaped.
            tokio::spawn(async move {
                if let Ok(upstream) = TcpStream::connect(target).await {
                    let (mut a, mut b) = (client, upstream);
                    let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
                }
            });
            continue;
        };
        if net.get(from, to).cut || net.get(to, from).cut {
            drop(client);
            continue;
        }
        let net = net.clone();
        tokio::spawn(async move {
            let Ok(upstream) = TcpStream::connect(target).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = upstream.set_nodelay(true);
            let (cr, cw) = client.into_split();
            let (ur, uw) = upstream.into_split();
            let up = tokio::spawn(pump(cr, uw, net.clone(), from, to));
            let down = tokio::spawn(pump(ur, cw, net, to, from));
            // When one direction ends, the other goes too.
            tokio::select! {
                _ = up => {}
                _ = down => {}
            }
        });
    }
}

/// A cluster whose nodes talk only through fault proxies.
pub struct FaultyCluster {
    pub cluster: Cluster,
    pub net: Net,
}

impl FaultyCluster {
    /// Start `n` agents behind proxies, connected and given a layout with
    /// one zone per node (`dcN`).
    pub fn start_formed(n: usize, opts: &AgentOpts) -> FaultyCluster {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("proxy runtime");
        let rules = Arc::new(Mutex::new(Rules::new()));
        let (changed, _) = watch::channel(0);
        let inner = Arc::new(NetInner {
            rules: rules.clone(),
            changed: changed.clone(),
        });
        let secret = RpcSecret::generate();
        let ips: Vec<String> = (0..n).map(|i| format!("127.0.1.{}", i + 1)).collect();
        let by_ip: Arc<HashMap<IpAddr, usize>> = Arc::new(
            ips.iter()
                .enumerate()
                .filter_map(|(i, ip)| Some((ip.parse().ok()?, i)))
                .collect(),
        );
        let mut agents = Vec::new();
        for (i, ip) in ips.iter().enumerate() {
            let proxy_port = free_port();
            let mut agent = Agent::new(
                &secret,
                &AgentOpts {
                    rpc_ip: Some(ip.clone()),
                    public_addr: Some(format!("127.0.0.1:{proxy_port}")),
                    ..opts.clone()
                },
            );
            agent.clock_offset_ms = opts.clock_offsets_ms.get(i).copied().unwrap_or(0);
            let target: SocketAddr = agent.addr().parse().expect("agent address");
            let listener = rt
                .block_on(TcpListener::bind(("127.0.0.1", proxy_port)))
                .expect("bind a proxy port");
            rt.spawn(proxy(listener, i, target, inner.clone(), by_ip.clone()));
            agents.push(agent);
        }
        for a in &mut agents {
            a.start();
        }
        let cluster = Cluster { secret, agents };
        cluster.form();
        FaultyCluster {
            cluster,
            net: Net {
                rules,
                changed,
                _rt: rt,
            },
        }
    }
}
