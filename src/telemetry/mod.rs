//! Telemetry: logging ([`logging`]), metrics files ([`metrics`]), progress ([`progress`]) and
//! peak memory ([`memory`]).
//! Everything here carries ids, counts and timings — never chunk or query text.

pub mod logging;
pub mod memory;
pub mod metrics;
pub mod progress;

pub use logging::init_logging;
