//! hangar-agent as a library: the daemon's layers, for the binary
//! (`main.rs`) and for fuzz targets and benchmarks that exercise one layer.
//!
//! Layers, each depending only on those below (see ARCHITECTURE.md):
//! `net` (secure connections, membership) -> `layout` (the ring, gossiped)
//! -> `table` (replicated CRDT tables) and `block` (the block store) ->
//! `model` (buckets, keys, objects) -> `s3` (the S3 API) and `admin` (the
//! services consoles and peers call). `node` holds startup checks.

pub mod admin;
pub mod block;
pub mod db;
pub mod events;
pub mod fuzzing;
pub mod layout;
pub mod metrics;
pub mod model;
pub mod net;
pub mod node;
pub mod s3;
pub mod table;
pub mod worker;
