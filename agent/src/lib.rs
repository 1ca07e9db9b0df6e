//! hangar-agent as a library: the daemon's layers, for the binary
//! (`main.rs`) and for fuzz targets and benchmarks that exercise one layer.
//!
//! Layers, each using only its own and those below (bottom first; the list
//! is [`layering::LAYERS`], and a test fails on an upward `crate::` path):
//! `db`, `fs`, `worker` (storage engine, file helpers, background work) ->
//! `net` (secure connections, membership) -> `layout` (the ring, gossiped)
//! -> `table` (replicated CRDT tables) -> `block` (the block store) ->
//! `model` (buckets, keys, objects) -> `s3` (the S3 API) -> `admin` (the
//! services consoles and peers call, events, `/metrics`) -> `node`
//! (startup checks and wiring).

pub mod admin;
pub mod block;
pub mod db;
pub mod fs;
pub mod fuzzing;
pub mod layering;
pub mod layout;
pub mod model;
pub mod net;
pub mod node;
pub mod s3;
pub mod table;
pub mod worker;
