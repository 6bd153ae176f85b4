//! The per-collection pipeline: [`runner::BatchRunner`] reads each collection and runs the
//! stages in order (dense now; sparse, fusion and rerank land in later versions), then exports.

pub mod check;
pub mod dense;
pub mod devices;
pub mod evaluate;
pub mod rank;
pub mod runner;
pub mod sparse;

pub use runner::{BatchRunner, RunError, RunOutcome};
