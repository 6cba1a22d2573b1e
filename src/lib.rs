//! deltaglider_proxy: an S3 storage appliance for single-host NAS boxes.
//!
//! Rooms, with one-way doors (see `docs/architecture.md`):
//! `s3` (HTTP, auth, XML) → `gateway` (routing, policy) → `engine` (object
//! format, stages) → `storage` (filesystem). `server` wires them together;
//! `config` is read by `server` only.

pub mod admin;
pub mod audit;
pub mod config;
pub mod configdb;
pub mod engine;
pub mod failpoint;
pub mod fuse;
pub mod gateway;
pub mod listener;
pub mod logging;
pub mod metrics;
pub mod open;
pub mod ops;
pub mod reload;
pub mod s3;
pub mod server;
pub mod storage;
pub mod tls;
