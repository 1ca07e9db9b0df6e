//! One module per view: what it draws. Shared pieces (node rows, tables
//! with a selection, cells) are in `draw.rs`; the keys of every view are
//! in one table (`keys.rs`).

mod buckets;
mod cluster;
mod events;
mod layout;
mod what_if;
mod workers;
