//! `embed-collections`: turn collections of text chunks into search-ready vectors.
//!
//! Data flows top to bottom through the modules:
//! [`config`] (what to do) → [`input`] (chunks, queries) → [`models`] (encoders) →
//! [`batching`] (token-budget plans) → [`pipeline`] (stages per collection, using
//! [`retrieval`], [`fusion`] and [`eval`]) → [`export`] (points, ranked lists, manifest).
//! [`telemetry`] sets up logging. [`engine`] holds every model of a run for a long-lived
//! process, and [`serve`] answers HTTP requests with it.

// Input and the environment never panic the tool: no unwrap or expect outside tests.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod batching;
pub mod bench;
pub mod cli;
pub mod config;
pub mod dispatch;
pub mod engine;
pub mod eval;
pub mod exit;
pub mod export;
pub mod files;
pub mod fusion;
pub mod gpu;
pub mod input;
pub mod interrupt;
pub mod layout;
pub mod models;
pub mod pid_lock;
pub mod pipeline;
pub mod ranking;
pub mod retrieval;
pub mod serve;
pub mod shard;
pub mod stage;
pub mod telemetry;
pub mod vectors;

/// The tool's version as recorded in manifests.
pub const TOOL_VERSION: &str = env!("CARGO_PKG_VERSION");
/// The tool's name as recorded in manifests.
pub const TOOL_NAME: &str = env!("CARGO_PKG_NAME");
