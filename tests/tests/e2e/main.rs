//! End-to-end tests: real agent processes on loopback. One test binary
//! (linking is what costs on small machines), one module per area.

mod access;
mod attributes;
mod clock;
mod cluster;
mod compat;
mod consensus;
mod console;
mod disks;
mod faults;
mod one_block;
mod ops;
mod s3;
mod security;
mod tables;
mod versioning;
