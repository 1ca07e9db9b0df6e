//! The secure channel every Hangar connection runs on.
//!
//! Noise protocol `XXpsk0` (X25519, ChaCha20-Poly1305, BLAKE2s) from the
//! `snow` crate, with the cluster's 32-byte rpc secret as the pre-shared key:
//!
//! * `psk0` mixes the secret in before the very first message, so a client
//!   without it fails to authenticate its first 48 bytes and is dropped before
//!   the node has revealed anything, not even its static key;
//! * `XX` exchanges both static keys; a node's static public key *is* its
//!   [`NodeId`], so completing the handshake proves "I am node X", and a
//!   connection to `ID@HOST:PORT` checks that the other end is really `ID`.
//!
//! The two ends exchange a [`Hello`] inside the handshake (encrypted), which
//! carries the protocol versions each side speaks and what the connection is
//! for ([`ChannelKind`]). The responder then answers with an [`Admission`]
//! frame: accepted, or refused with a reason the initiator can show (an
//! incompatible protocol version, for instance).
//!
//! After the handshake, [`NoiseCodec`] carries frames of up to
//! [`MAX_FRAME_LEN`] bytes, each split into Noise messages of at most 64 KiB
//! (Noise's limit), over a `tokio_util` `Framed` TCP stream; tarpc's
//! MessagePack messages ride on top (see [`crate::rpc`]).

use std::io;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::{Decoder, Encoder, Framed};

use crate::ids::{NODE_ID_LEN, NodeId};

const NOISE_PARAMS: &str = "Noise_XXpsk0_25519_ChaChaPoly_BLAKE2s";
/// Noise's maximum message size.
const NOISE_MAX_MSG: usize = 65535;
const NOISE_TAG: usize = 16;
/// Largest plaintext one Noise message carries.
const CHUNK_PLAIN: usize = NOISE_MAX_MSG - NOISE_TAG;
/// Largest frame (one RPC message) accepted. Blocks travel one per call and
/// are a few MiB at most, so 64 MiB leaves room while bounding what a peer
/// can make us buffer.
pub const MAX_FRAME_LEN: usize = 64 << 20;
/// A handshake that takes longer than this is abandoned, so a client that
/// connects and stalls holds nothing for long.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Version of the wire protocol this build speaks. Bump on any change to
/// the RPC traits or their messages; keep [`MIN_PROTOCOL`] as the oldest
/// version this build can still talk to (the compatibility window that
/// makes rolling upgrades possible).
pub const PROTOCOL: u32 = 10;
pub const MIN_PROTOCOL: u32 = 2;

/// The cluster's shared secret: 32 bytes, written as 64 hex digits.
#[derive(Clone, PartialEq, Eq)]
pub struct RpcSecret(pub [u8; 32]);

impl std::fmt::Debug for RpcSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RpcSecret(..)")
    }
}

/// Why a string is not an rpc secret.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error(
        "rpc_secret must be 64 hex digits (32 bytes), got {0} characters; generate one with `openssl rand -hex 32`"
    )]
    Length(usize),
    #[error("rpc_secret must be hex digits (0-9, a-f)")]
    NotHex,
}

impl std::str::FromStr for RpcSecret {
    type Err = SecretError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.len() != 64 {
            return Err(SecretError::Length(s.len()));
        }
        let bytes = hex::decode(s).map_err(|_| SecretError::NotHex)?;
        let mut out = [0u8; 32];
        out.copy_from_slice(&bytes);
        Ok(RpcSecret(out))
    }
}

impl RpcSecret {
    pub fn generate() -> RpcSecret {
        RpcSecret(rand::random())
    }
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// A node's (or a console's) static Noise keypair.
#[derive(Clone)]
pub struct Keypair {
    pub private: [u8; 32],
    pub public: NodeId,
}

impl std::fmt::Debug for Keypair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keypair({:?})", self.public)
    }
}

impl Keypair {
    pub fn generate() -> Keypair {
        let params = NOISE_PARAMS.parse().expect("constant noise params parse");
        let kp = snow::Builder::new(params)
            .generate_keypair()
            .expect("x25519 key generation only fails without an OS RNG");
        let mut private = [0u8; 32];
        private.copy_from_slice(&kp.private);
        Keypair {
            private,
            public: NodeId::from_slice(&kp.public).expect("x25519 public keys are 32 bytes"),
        }
    }

    /// Serialised form kept in the metadata directory: private then public
    /// key, hex, one per line.
    pub fn to_file_contents(&self) -> String {
        format!("{}\n{}\n", hex::encode(self.private), self.public.to_hex())
    }

    pub fn from_file_contents(s: &str) -> Option<Keypair> {
        let mut lines = s.lines();
        let private = hex::decode(lines.next()?.trim()).ok()?;
        let public = lines.next()?.trim().parse().ok()?;
        Some(Keypair {
            private: private.try_into().ok()?,
            public,
        })
    }
}

/// What a connection is for. One port serves all of them; the responder
/// hands the channel to the matching tarpc service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChannelKind {
    /// Node to node: pings, gossip, table operations.
    Peer,
    /// Node to node, for block transfers, so they never delay pings.
    Bulk,
    /// Console to node.
    Admin,
}

/// Exchanged inside the handshake by both ends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Newest protocol version the sender speaks.
    pub protocol: u32,
    /// Oldest protocol version the sender still speaks.
    pub min_protocol: u32,
    /// Set by the initiator: what it wants the connection for.
    pub kind: ChannelKind,
    /// Software version, for display.
    pub agent_version: String,
    /// For nodes: the `host:port` other nodes should use to reach it.
    pub public_addr: Option<String>,
}

impl Hello {
    pub fn new(kind: ChannelKind, public_addr: Option<String>) -> Hello {
        Hello {
            protocol: PROTOCOL,
            min_protocol: MIN_PROTOCOL,
            kind,
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            public_addr,
        }
    }

    /// The protocol version both sides speak, if any: the highest version
    /// in the intersection of the two windows.
    pub fn common_protocol(&self, other: &Hello) -> Option<u32> {
        let hi = self.protocol.min(other.protocol);
        let lo = self.min_protocol.max(other.min_protocol);
        (hi >= lo).then_some(hi)
    }
}

/// The responder's verdict, sent as the first frame after the handshake.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Admission {
    Accepted { protocol: u32 },
    Refused { reason: String },
}

/// Why a secure connection could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("network error during handshake: {0}")]
    Io(#[from] io::Error),
    #[error("handshake timed out after {0:?}")]
    Timeout(Duration),
    #[error(
        "handshake failed: the other side does not share our rpc secret \
         (or is not a Hangar node): {0}"
    )]
    Auth(String),
    #[error(
        "the other side closed the connection during the handshake: it most likely \
         rejected our rpc secret (check rpc_secret / HANGAR_RPC_SECRET)"
    )]
    ClosedByPeer,
    #[error("expected node {expected} at this address but found node {found}")]
    WrongNode { expected: String, found: String },
    #[error("connection refused by the other side: {0}")]
    Refused(String),
    #[error("malformed handshake message: {0}")]
    Malformed(String),
}

/// An established, authenticated and encrypted connection.
pub struct SecureChannel {
    pub framed: Framed<TcpStream, NoiseCodec>,
    /// The other side's node id (its static key).
    pub remote: NodeId,
    /// What the other side said about itself.
    pub remote_hello: Hello,
    /// The protocol version agreed on.
    pub protocol: u32,
}

fn builder<'a>(
    keypair: &'a Keypair,
    secret: &'a RpcSecret,
) -> Result<snow::Builder<'a>, snow::Error> {
    let params = NOISE_PARAMS.parse().expect("constant noise params parse");
    snow::Builder::new(params)
        .local_private_key(&keypair.private)?
        .psk(0, &secret.0)
}

async fn write_hs(stream: &mut TcpStream, msg: &[u8]) -> io::Result<()> {
    let len =
        u16::try_from(msg.len()).map_err(|_| io::Error::other("handshake message too long"))?;
    let mut buf = Vec::with_capacity(msg.len() + 2);
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(msg);
    stream.write_all(&buf).await
}

async fn read_hs(stream: &mut TcpStream) -> Result<Vec<u8>, HandshakeError> {
    let mut len = [0u8; 2];
    match stream.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            return Err(HandshakeError::ClosedByPeer);
        }
        Err(e) => return Err(e.into()),
    }
    let mut msg = vec![0u8; u16::from_be_bytes(len) as usize];
    match stream.read_exact(&mut msg).await {
        Ok(_) => Ok(msg),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(HandshakeError::ClosedByPeer),
        Err(e) => Err(e.into()),
    }
}

fn auth<E: std::fmt::Display>(e: E) -> HandshakeError {
    HandshakeError::Auth(e.to_string())
}

fn remote_id(hs: &snow::HandshakeState) -> Result<NodeId, HandshakeError> {
    hs.get_remote_static()
        .and_then(NodeId::from_slice)
        .ok_or_else(|| {
            HandshakeError::Malformed(format!("remote static key is not {NODE_ID_LEN} bytes"))
        })
}

/// Open a secure channel as the initiator (the side that connected).
///
/// `expected`: when set, the handshake fails unless the other side's node
/// id is this one.
pub async fn initiate(
    stream: TcpStream,
    keypair: &Keypair,
    secret: &RpcSecret,
    expected: Option<NodeId>,
    hello: Hello,
) -> Result<SecureChannel, HandshakeError> {
    tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        initiate_inner(stream, keypair, secret, expected, hello),
    )
    .await
    .map_err(|_| HandshakeError::Timeout(HANDSHAKE_TIMEOUT))?
}

async fn initiate_inner(
    mut stream: TcpStream,
    keypair: &Keypair,
    secret: &RpcSecret,
    expected: Option<NodeId>,
    hello: Hello,
) -> Result<SecureChannel, HandshakeError> {
    let _ = stream.set_nodelay(true);
    let mut hs = builder(keypair, secret)
        .and_then(|b| b.build_initiator())
        .map_err(auth)?;
    let mut buf = vec![0u8; NOISE_MAX_MSG];
    let mut payload = vec![0u8; NOISE_MAX_MSG];

    // -> psk, e
    let n = hs.write_message(&[], &mut buf).map_err(auth)?;
    write_hs(&mut stream, &buf[..n]).await?;
    // <- e, ee, s, es  (+ responder's hello)
    let msg = read_hs(&mut stream).await?;
    let n = hs.read_message(&msg, &mut payload).map_err(auth)?;
    let remote_hello: Hello = rmp_serde::from_slice(&payload[..n])
        .map_err(|e| HandshakeError::Malformed(e.to_string()))?;
    let remote = remote_id(&hs)?;
    if let Some(expected) = expected
        && expected != remote
    {
        return Err(HandshakeError::WrongNode {
            expected: expected.short(),
            found: remote.short(),
        });
    }
    // -> s, se  (+ our hello)
    let ours = rmp_serde::to_vec(&hello).map_err(|e| HandshakeError::Malformed(e.to_string()))?;
    let n = hs.write_message(&ours, &mut buf).map_err(auth)?;
    write_hs(&mut stream, &buf[..n]).await?;

    let transport = hs.into_transport_mode().map_err(auth)?;
    let mut framed = Framed::new(stream, NoiseCodec::new(transport));
    let admission = match framed.next().await {
        Some(Ok(frame)) => rmp_serde::from_slice::<Admission>(&frame)
            .map_err(|e| HandshakeError::Malformed(e.to_string()))?,
        Some(Err(e)) => return Err(e.into()),
        None => return Err(HandshakeError::ClosedByPeer),
    };
    match admission {
        Admission::Accepted { protocol } => Ok(SecureChannel {
            framed,
            remote,
            remote_hello,
            protocol,
        }),
        Admission::Refused { reason } => Err(HandshakeError::Refused(reason)),
    }
}

/// Accept a secure channel as the responder (the side that listened).
///
/// `hello` is our own; `admit` decides, from the initiator's id and hello,
/// whether to serve it (returning the reason to refuse otherwise). Protocol
/// compatibility is checked here before `admit` is asked.
pub async fn respond(
    stream: TcpStream,
    keypair: &Keypair,
    secret: &RpcSecret,
    hello: Hello,
    admit: impl FnOnce(&NodeId, &Hello) -> Result<(), String>,
) -> Result<SecureChannel, HandshakeError> {
    tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        respond_inner(stream, keypair, secret, hello, admit),
    )
    .await
    .map_err(|_| HandshakeError::Timeout(HANDSHAKE_TIMEOUT))?
}

async fn respond_inner(
    mut stream: TcpStream,
    keypair: &Keypair,
    secret: &RpcSecret,
    hello: Hello,
    admit: impl FnOnce(&NodeId, &Hello) -> Result<(), String>,
) -> Result<SecureChannel, HandshakeError> {
    let _ = stream.set_nodelay(true);
    let mut hs = builder(keypair, secret)
        .and_then(|b| b.build_responder())
        .map_err(auth)?;
    let mut buf = vec![0u8; NOISE_MAX_MSG];
    let mut payload = vec![0u8; NOISE_MAX_MSG];

    // -> psk, e: fails here when the initiator lacks the secret.
    let msg = read_hs(&mut stream).await?;
    hs.read_message(&msg, &mut payload).map_err(auth)?;
    // <- e, ee, s, es (+ our hello)
    let ours = rmp_serde::to_vec(&hello).map_err(|e| HandshakeError::Malformed(e.to_string()))?;
    let n = hs.write_message(&ours, &mut buf).map_err(auth)?;
    write_hs(&mut stream, &buf[..n]).await?;
    // -> s, se (+ initiator's hello)
    let msg = read_hs(&mut stream).await?;
    let n = hs.read_message(&msg, &mut payload).map_err(auth)?;
    let remote_hello: Hello = rmp_serde::from_slice(&payload[..n])
        .map_err(|e| HandshakeError::Malformed(e.to_string()))?;
    let remote = remote_id(&hs)?;

    let transport = hs.into_transport_mode().map_err(auth)?;
    let mut framed = Framed::new(stream, NoiseCodec::new(transport));
    let verdict = match hello.common_protocol(&remote_hello) {
        None => Err(format!(
            "incompatible protocol versions: this node speaks {}..={}, the other side {}..={} (agent {}); upgrade the older one",
            hello.min_protocol,
            hello.protocol,
            remote_hello.min_protocol,
            remote_hello.protocol,
            remote_hello.agent_version
        )),
        Some(p) => admit(&remote, &remote_hello).map(|()| p),
    };
    let admission = match &verdict {
        Ok(protocol) => Admission::Accepted {
            protocol: *protocol,
        },
        Err(reason) => Admission::Refused {
            reason: reason.clone(),
        },
    };
    let frame =
        rmp_serde::to_vec(&admission).map_err(|e| HandshakeError::Malformed(e.to_string()))?;
    framed.send(Bytes::from(frame)).await?;
    match verdict {
        Ok(protocol) => Ok(SecureChannel {
            framed,
            remote,
            remote_hello,
            protocol,
        }),
        Err(reason) => Err(HandshakeError::Refused(reason)),
    }
}

/// Encrypts and decrypts frames on an established Noise session.
///
/// Wire format: a sequence of Noise messages, each prefixed by its length
/// as a big-endian u16. A frame's first message starts (in plaintext) with
/// the frame's total length as a big-endian u32; the frame continues over as
/// many messages as needed. TCP keeps them in order, which Noise's nonces
/// require.
pub struct NoiseCodec {
    state: snow::TransportState,
    /// Frame being reassembled and its expected length.
    pending: Option<(usize, BytesMut)>,
    scratch: Vec<u8>,
}

impl NoiseCodec {
    fn new(state: snow::TransportState) -> NoiseCodec {
        NoiseCodec {
            state,
            pending: None,
            scratch: vec![0u8; NOISE_MAX_MSG],
        }
    }
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

impl Decoder for NoiseCodec {
    type Item = BytesMut;
    type Error = io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, io::Error> {
        loop {
            if src.len() < 2 {
                return Ok(None);
            }
            let len = u16::from_be_bytes([src[0], src[1]]) as usize;
            if src.len() < 2 + len {
                src.reserve(2 + len - src.len());
                return Ok(None);
            }
            src.advance(2);
            let msg = src.split_to(len);
            let n = self
                .state
                .read_message(&msg, &mut self.scratch)
                .map_err(|e| invalid(format!("frame failed authentication: {e}")))?;
            let mut plain = &self.scratch[..n];
            let (expected, buf) = match self.pending.as_mut() {
                Some(p) => p,
                None => {
                    if plain.len() < 4 {
                        return Err(invalid("frame header too short"));
                    }
                    let total = plain.get_u32() as usize;
                    if total > MAX_FRAME_LEN {
                        return Err(invalid(format!(
                            "frame of {total} bytes exceeds the {MAX_FRAME_LEN} byte limit"
                        )));
                    }
                    self.pending
                        .insert((total, BytesMut::with_capacity(total.min(1 << 20))))
                }
            };
            if buf.len() + plain.len() > *expected {
                return Err(invalid("frame longer than announced"));
            }
            buf.put_slice(plain);
            if buf.len() == *expected {
                let (_, frame) = self.pending.take().expect("pending frame was just filled");
                return Ok(Some(frame));
            }
        }
    }
}

/// Two codecs of one session, as a completed handshake between two fresh
/// nodes leaves them (initiator, responder): for fuzzing and tests of the
/// frame decoder without sockets.
#[doc(hidden)]
pub fn codec_pair() -> Result<(NoiseCodec, NoiseCodec), snow::Error> {
    let secret = RpcSecret([7; 32]);
    let (a, b) = (Keypair::generate(), Keypair::generate());
    let mut i = builder(&a, &secret)?.build_initiator()?;
    let mut r = builder(&b, &secret)?.build_responder()?;
    let (mut m, mut p) = (vec![0u8; 1024], vec![0u8; 1024]);
    let n = i.write_message(&[], &mut m)?;
    r.read_message(&m[..n], &mut p)?;
    let n = r.write_message(&[], &mut m)?;
    i.read_message(&m[..n], &mut p)?;
    let n = i.write_message(&[], &mut m)?;
    r.read_message(&m[..n], &mut p)?;
    Ok((
        NoiseCodec::new(i.into_transport_mode()?),
        NoiseCodec::new(r.into_transport_mode()?),
    ))
}

impl NoiseCodec {
    /// Encrypt `plain` as one length-prefixed Noise message, whatever it
    /// holds (no frame header added): lets tests feed the decoder
    /// authenticated but arbitrary content.
    #[doc(hidden)]
    pub fn seal_raw(&mut self, plain: &[u8], dst: &mut BytesMut) -> Result<(), snow::Error> {
        let plain = &plain[..plain.len().min(CHUNK_PLAIN)];
        let n = self.state.write_message(plain, &mut self.scratch)?;
        dst.put_u16(n as u16);
        dst.put_slice(&self.scratch[..n]);
        Ok(())
    }
}

impl Encoder<Bytes> for NoiseCodec {
    type Error = io::Error;

    fn encode(&mut self, item: Bytes, dst: &mut BytesMut) -> Result<(), io::Error> {
        if item.len() > MAX_FRAME_LEN {
            return Err(invalid(format!(
                "frame of {} bytes exceeds the {MAX_FRAME_LEN} byte limit",
                item.len()
            )));
        }
        let mut first = Vec::with_capacity(CHUNK_PLAIN);
        first.extend_from_slice(&(item.len() as u32).to_be_bytes());
        let head = item.len().min(CHUNK_PLAIN - 4);
        first.extend_from_slice(&item[..head]);
        let chunks = std::iter::once(&first[..]).chain(item[head..].chunks(CHUNK_PLAIN));
        for chunk in chunks {
            let n = self
                .state
                .write_message(chunk, &mut self.scratch)
                .map_err(|e| io::Error::other(format!("encryption failed: {e}")))?;
            dst.reserve(n + 2);
            dst.put_u16(n as u16);
            dst.put_slice(&self.scratch[..n]);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    async fn pair(
        client_secret: RpcSecret,
        server_secret: RpcSecret,
        expected: impl FnOnce(NodeId) -> Option<NodeId>,
    ) -> (
        Result<SecureChannel, HandshakeError>,
        Result<SecureChannel, HandshakeError>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server_kp = Keypair::generate();
        let client_kp = Keypair::generate();
        let expected = expected(server_kp.public);
        let server = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            respond(
                s,
                &server_kp,
                &server_secret,
                Hello::new(ChannelKind::Peer, None),
                |_, _| Ok(()),
            )
            .await
        });
        let stream = TcpStream::connect(addr).await.unwrap();
        let client = initiate(
            stream,
            &client_kp,
            &client_secret,
            expected,
            Hello::new(ChannelKind::Admin, None),
        )
        .await;
        (client, server.await.unwrap())
    }

    #[tokio::test]
    async fn frames_of_any_size_cross_the_channel_intact() {
        let secret = RpcSecret::generate();
        let (c, s) = pair(secret.clone(), secret, Some).await;
        let mut c = c.unwrap();
        let mut s = s.unwrap();
        assert_eq!(s.remote_hello.kind, ChannelKind::Admin);
        for len in [
            0usize,
            1,
            CHUNK_PLAIN - 4,
            CHUNK_PLAIN - 3,
            CHUNK_PLAIN * 3 + 17,
            3 << 20,
        ] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            c.framed.send(Bytes::from(data.clone())).await.unwrap();
            let got = s.framed.next().await.unwrap().unwrap();
            assert_eq!(got.len(), len);
            assert!(got[..] == data[..]);
        }
    }

    #[tokio::test]
    async fn wrong_secret_is_refused_during_handshake() {
        let (c, s) = pair(RpcSecret::generate(), RpcSecret::generate(), |_| None).await;
        assert!(matches!(s, Err(HandshakeError::Auth(_))), "{:?}", s.err());
        assert!(
            matches!(
                c,
                Err(HandshakeError::ClosedByPeer) | Err(HandshakeError::Io(_))
            ),
            "{:?}",
            c.err()
        );
    }

    #[tokio::test]
    async fn connecting_to_the_wrong_node_id_fails() {
        let secret = RpcSecret::generate();
        let (c, _s) = pair(secret.clone(), secret, |_| Some(NodeId([7; 32]))).await;
        assert!(matches!(c, Err(HandshakeError::WrongNode { .. })));
    }

    #[test]
    fn protocol_windows_intersect_or_refuse() {
        let mut a = Hello::new(ChannelKind::Peer, None);
        let mut b = a.clone();
        a.min_protocol = 2;
        a.protocol = 4;
        b.min_protocol = 1;
        b.protocol = 3;
        assert_eq!(a.common_protocol(&b), Some(3));
        b.protocol = 1;
        assert_eq!(a.common_protocol(&b), None);
    }

    #[test]
    fn secrets_parse_only_from_64_hex_digits() {
        assert_eq!("ab".parse::<RpcSecret>(), Err(SecretError::Length(2)));
        assert_eq!(
            "zz".repeat(32).parse::<RpcSecret>(),
            Err(SecretError::NotHex)
        );
        let s = RpcSecret::generate();
        assert_eq!(s.to_hex().parse::<RpcSecret>(), Ok(s));
    }

    #[test]
    fn keypair_file_round_trips() {
        let kp = Keypair::generate();
        let back = Keypair::from_file_contents(&kp.to_file_contents()).unwrap();
        assert_eq!(back.private, kp.private);
        assert_eq!(back.public, kp.public);
        assert!(Keypair::from_file_contents("garbage").is_none());
    }
}
