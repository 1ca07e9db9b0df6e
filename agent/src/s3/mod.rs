//! The S3 API: HTTP server, authentication, request routing, XML.
//! Only this module knows HTTP, XML and SigV4.

// Wired into the HTTP server as it lands.
#[allow(dead_code)]
pub mod chunked;
#[allow(dead_code)]
pub mod sigv4;
