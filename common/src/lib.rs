//! hangar-common: what the agent and the console share.
//!
//! Node ids, the configuration file, the layout engine (pure partition
//! assignment math), the CRDTs the layout staging uses, the secure channel
//! (Noise over TCP) and the tarpc service traits with the types that cross the
//! wire. Nothing here does I/O on its own except [`transport`] and
//! [`rpc::connect`], which only drive a socket; nothing here knows sled, HTTP
//! or ratatui.

pub mod clock;
pub mod config;
pub mod crdt;
pub mod date;
pub mod events;
pub mod hash;
pub mod ids;
pub mod layout;
pub mod rpc;
pub mod sigv4;
pub mod size;
pub mod transport;

pub use ids::{NodeId, PeerAddr};
