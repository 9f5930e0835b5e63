//! Pulse Edge: RTMP in, encrypted LL-HLS ladder out. Data flows one way:
//! ingest → media → hls → storage, with control beside them and delivery in
//! front of hls.

pub mod config;
pub mod control;
pub mod delivery;
pub mod hls;
pub mod httpd;
pub mod ingest;
pub mod logging;
pub mod media;
pub mod memory;
pub mod slots;
pub mod storage;
