//! Telemetry: logging ([`logging`]), metrics files ([`metrics`]) and progress ([`progress`]).
//! Everything here carries ids, counts and timings — never chunk or query text.

pub mod logging;
pub mod metrics;
pub mod progress;

pub use logging::init_logging;
