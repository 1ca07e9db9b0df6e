//! The S3 API: HTTP server, authentication, request routing, XML.
//! Only this module knows HTTP, XML and SigV4.

pub mod access;
pub mod attributes;
pub mod bucket;
pub mod bucket_config;
pub mod checksum;
pub mod chunked;
pub mod conditional;
pub mod copy_delete;
pub mod cors;
pub mod endpoint;
pub mod error;
pub mod list;
pub mod metrics;
pub mod multipart;
pub mod object;
pub mod object_lock;
pub mod policy;
pub mod post;
pub mod server;
pub mod sigv2;
pub mod sigv4;
pub mod tagging;
pub mod versioning;
pub mod web;
pub mod xml;
