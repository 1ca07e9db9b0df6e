//! Node identities.
//!
//! A node's identity is the public half of the X25519 static key it uses in
//! the Noise handshake (see [`crate::transport`]): proving possession of the
//! private half during the handshake is what proves "I am node X", so the id
//! needs no separate signature scheme. Shown to people as its first 16 hex
//! digits; any unique prefix names a node on the command line.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Length in bytes of a node id (an X25519 public key).
pub const NODE_ID_LEN: usize = 32;

/// A node's identity: its X25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub [u8; NODE_ID_LEN]);

impl NodeId {
    /// The first 16 hex digits, as shown in tables.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..8])
    }

    /// Full lowercase hex form.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Whether `prefix` (hex, any case) is a prefix of this id's hex form.
    pub fn matches_prefix(&self, prefix: &str) -> bool {
        let prefix = prefix.to_ascii_lowercase();
        !prefix.is_empty() && self.to_hex().starts_with(&prefix)
    }

    pub fn from_slice(bytes: &[u8]) -> Option<NodeId> {
        <[u8; NODE_ID_LEN]>::try_from(bytes).ok().map(NodeId)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.short())
    }
}

/// Why a string is not a node id.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NodeIdError {
    #[error("a node id is 64 hex digits, got {0} characters")]
    Length(usize),
    #[error("a node id is made of hex digits (0-9, a-f)")]
    NotHex,
}

impl FromStr for NodeId {
    type Err = NodeIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.len() != NODE_ID_LEN * 2 {
            return Err(NodeIdError::Length(s.len()));
        }
        let bytes = hex::decode(s).map_err(|_| NodeIdError::NotHex)?;
        NodeId::from_slice(&bytes).ok_or(NodeIdError::Length(s.len()))
    }
}

impl Serialize for NodeId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for NodeId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// `<node id>@<host:port>`: how an operator names a node to connect to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerAddr {
    pub id: NodeId,
    /// `host:port`; the host may be a name, resolved when connecting.
    pub addr: String,
}

/// Why a string is not `<node id>@<host:port>`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PeerAddrError {
    #[error("expected <node id>@<host>:<port>, with no '@' in {0:?}")]
    NoAt(String),
    #[error("bad node id in {0:?}: {1}")]
    Id(String, NodeIdError),
    #[error("expected <host>:<port> after '@' in {0:?}")]
    NoPort(String),
}

impl FromStr for PeerAddr {
    type Err = PeerAddrError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (id, addr) = s
            .split_once('@')
            .ok_or_else(|| PeerAddrError::NoAt(s.to_string()))?;
        let id = id
            .parse()
            .map_err(|e| PeerAddrError::Id(s.to_string(), e))?;
        match addr.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(PeerAddr {
                id,
                addr: addr.to_string(),
            }),
            _ => Err(PeerAddrError::NoPort(s.to_string())),
        }
    }
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.id, self.addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_id_round_trips_through_hex_and_rejects_garbage() {
        let id = NodeId([0xab; 32]);
        assert_eq!(id.to_hex().parse::<NodeId>(), Ok(id));
        assert_eq!(id.short(), "abababababababab");
        assert!(id.matches_prefix("ABAB"));
        assert!(!id.matches_prefix(""));
        assert_eq!("abc".parse::<NodeId>(), Err(NodeIdError::Length(3)));
        assert_eq!("zz".repeat(32).parse::<NodeId>(), Err(NodeIdError::NotHex));
    }

    #[test]
    fn peer_addr_parses_id_at_host_port() {
        let id = NodeId([1; 32]);
        let p: PeerAddr = format!("{id}@127.0.0.1:3901").parse().unwrap();
        assert_eq!(p.addr, "127.0.0.1:3901");
        let p: PeerAddr = format!("{id}@[::1]:3901").parse().unwrap();
        assert_eq!(p.addr, "[::1]:3901");
        assert!(matches!(
            format!("{id}@host").parse::<PeerAddr>(),
            Err(PeerAddrError::NoPort(_))
        ));
        assert!(matches!(
            "host:3901".parse::<PeerAddr>(),
            Err(PeerAddrError::NoAt(_))
        ));
    }
}
