//! A minimal S3 client for the benchmarks: HTTP/1.1 over one connection,
//! SigV4 with `UNSIGNED-PAYLOAD` (`hangar_common::sigv4`), so the client costs little
//! next to the server.

// Shared by several benchmarks, each using part of it.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use hangar_tests::S3Key;

pub const MIB: usize = 1 << 20;

/// `len` bytes that no compressor shrinks (splitmix64 from `seed`): what
/// photos, videos and encrypted backups look like to a store. Garage
/// compresses blocks with zstd by default, so a body of one repeated byte
/// measured its compressor, not its write path, and deduplication made
/// most blocks of a big object free for both stores.
pub fn incompressible(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Make `body` unique to object `n`: its number written at the start of
/// every 4 KiB, so no block of it (whatever the block size) equals a
/// block of another object or another block of the same one.
pub fn stamp(body: &mut [u8], n: u64) {
    for (j, piece) in body.chunks_mut(4096).enumerate() {
        let tag = (n << 20 | j as u64).to_le_bytes();
        let k = piece.len().min(8);
        piece[..k].copy_from_slice(&tag[..k]);
    }
}

/// A figure of `/proc/<pid>/status` (kB for sizes, a count for `Threads:`).
pub fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Bytes of the files under `p`, recursively.
pub fn dir_bytes(p: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(p) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let path = e.path();
            if path.is_dir() {
                dir_bytes(&path)
            } else {
                e.metadata().map(|m| m.len()).unwrap_or(0)
            }
        })
        .sum()
}

/// SigV4 headers for a request with an unsigned payload.
pub fn sign(key: &S3Key, method: &str, host: &str, path: &str) -> Vec<(String, String)> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    hangar_common::sigv4::sign(&key.id, &key.secret, "hangar", method, host, path, now)
}

/// One keep-alive HTTP/1.1 connection to the S3 endpoint.
pub struct Conn {
    pub stream: BufReader<TcpStream>,
    host: String,
    key: S3Key,
}

impl Conn {
    pub async fn open(port: u16, key: &S3Key) -> Conn {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect to S3");
        let _ = stream.set_nodelay(true);
        Conn {
            stream: BufReader::new(stream),
            host: format!("127.0.0.1:{port}"),
            key: key.clone(),
        }
    }

    pub async fn send_head(&mut self, method: &str, path: &str, len: usize) {
        self.send_head_with(method, path, len, &[]).await
    }

    /// [`Conn::send_head`] with `extra` (unsigned) headers.
    pub async fn send_head_with(
        &mut self,
        method: &str,
        path: &str,
        len: usize,
        extra: &[(&str, &str)],
    ) {
        let mut head = format!("{method} {path} HTTP/1.1\r\ncontent-length: {len}\r\n");
        for (k, v) in sign(&self.key, method, &self.host, path) {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        for (k, v) in extra {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        self.stream
            .get_mut()
            .write_all(head.as_bytes())
            .await
            .expect("send request");
    }

    /// A request without a body (GET, HEAD, DELETE, a listing).
    pub async fn call(&mut self, method: &str, path: &str) -> (u16, usize, Duration) {
        let start = Instant::now();
        self.send_head(method, path, 0).await;
        self.response_to(start, method != "HEAD").await
    }

    /// Read a response; returns (status, body length, time to first body byte).
    pub async fn response(&mut self, start: Instant) -> (u16, usize, Duration) {
        self.response_to(start, true).await
    }

    /// Read a response's status line and headers: (status, content length).
    async fn read_head(&mut self) -> (u16, usize) {
        let mut line = String::new();
        self.stream.read_line(&mut line).await.expect("status line");
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut len = 0usize;
        loop {
            line.clear();
            self.stream.read_line(&mut line).await.expect("header");
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        (status, len)
    }

    /// Read a response, its body only if `body` (a HEAD answer has none).
    async fn response_to(&mut self, start: Instant, body: bool) -> (u16, usize, Duration) {
        let (status, len) = self.read_head().await;
        if !body {
            return (status, 0, start.elapsed());
        }
        let mut ttfb = start.elapsed();
        let mut buf = vec![0u8; 256 * 1024];
        let mut left = len;
        let mut first = true;
        while left > 0 {
            let want = left.min(buf.len());
            let n = self.stream.read(&mut buf[..want]).await.expect("body");
            if n == 0 {
                break;
            }
            if first {
                ttfb = start.elapsed();
                first = false;
            }
            left -= n;
        }
        (status, len - left, ttfb)
    }

    pub async fn put(&mut self, path: &str, data: &[u8]) -> u16 {
        self.put_with(path, data, &[]).await
    }

    /// A PUT with `extra` headers (`if-none-match: *`...).
    pub async fn put_with(&mut self, path: &str, data: &[u8], extra: &[(&str, &str)]) -> u16 {
        let start = Instant::now();
        self.send_head_with("PUT", path, data.len(), extra).await;
        for chunk in data.chunks(MIB) {
            self.stream
                .get_mut()
                .write_all(chunk)
                .await
                .expect("send body");
        }
        self.response(start).await.0
    }

    pub async fn get(&mut self, path: &str) -> (u16, usize, Duration) {
        let start = Instant::now();
        self.send_head("GET", path, 0).await;
        self.response(start).await
    }

    /// A GET whose (small) body is returned: (status, body).
    pub async fn get_text(&mut self, path: &str) -> (u16, String) {
        self.send_head("GET", path, 0).await;
        let (status, len) = self.read_head().await;
        let mut body = vec![0u8; len];
        self.stream.read_exact(&mut body).await.expect("body");
        (status, String::from_utf8_lossy(&body).into_owned())
    }
}

/// PUT then GET objects of `size` bytes with `clients` concurrent
/// connections, each phase at least `count` requests and at least `min`
/// long (a phase of under a second swings by a fifth between runs on a
/// busy 2-core machine); the GETs cycle over the objects written: (PUT
/// MB/s, GET MB/s, PUT requests/s, GET time to first byte, median).
pub async fn throughput(
    port: u16,
    key: &S3Key,
    tag: &str,
    size: usize,
    count: usize,
    clients: usize,
    min: Duration,
) -> (f64, f64, f64, Duration) {
    let data = Arc::new(incompressible(size, size as u64));
    // Distinct content per object and per block, so nothing is
    // deduplicated or compressed away; names distinct per case, so no
    // case replaces another's objects (their blocks would be garbage that
    // a rebalance measured after does not move; `tag` tells rounds of
    // the same case apart). `written`: the objects
    // the PUT phase stored (none while it runs).
    let run = |written: Arc<Vec<usize>>| {
        let data = data.clone();
        let key = key.clone();
        let tag = tag.to_string();
        async move {
            let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let start = Instant::now();
            let mut tasks = Vec::new();
            for _ in 0..clients {
                let (data, key, next) = (data.clone(), key.clone(), next.clone());
                let (written, tag) = (written.clone(), tag.clone());
                tasks.push(tokio::spawn(async move {
                    let mut c = Conn::open(port, &key).await;
                    let (mut ttfb, mut put) = (Vec::new(), Vec::new());
                    let mut body = data.to_vec();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i >= count && start.elapsed() >= min {
                            break;
                        }
                        if written.is_empty() {
                            let path = format!("/bench/{tag}s{size}x{clients}-{i}");
                            stamp(&mut body, i as u64);
                            let st = c.put(&path, &body).await;
                            assert_eq!(st, 200, "PUT {path}");
                            put.push(i);
                        } else {
                            let path = format!(
                                "/bench/{tag}s{size}x{clients}-{}",
                                written[i % written.len()]
                            );
                            let (st, _, t) = c.get(&path).await;
                            assert_eq!(st, 200, "GET {path}");
                            ttfb.push(t);
                        }
                    }
                    (ttfb, put)
                }));
            }
            let (mut ttfb, mut put) = (Vec::new(), Vec::new());
            for t in tasks {
                let (t, p) = t.await.expect("client task");
                ttfb.extend(t);
                put.extend(p);
            }
            (start.elapsed(), ttfb, put)
        }
    };
    let (put_t, _, written) = run(Arc::new(Vec::new())).await;
    let puts = written.len();
    let (get_t, mut ttfb, _) = run(Arc::new(written)).await;
    ttfb.sort();
    (
        (size * puts) as f64 / put_t.as_secs_f64() / 1e6,
        (size * ttfb.len()) as f64 / get_t.as_secs_f64() / 1e6,
        puts as f64 / put_t.as_secs_f64(),
        ttfb.get(ttfb.len() / 2).copied().unwrap_or_default(),
    )
}

/// The median of a sample (the upper of the middle two for an even
/// count); `None` for an empty one.
pub fn median<T: Copy + PartialOrd>(v: &[T]) -> Option<T> {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v.get(v.len() / 2).copied()
}
