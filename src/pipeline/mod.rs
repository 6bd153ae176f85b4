//! The run: [`runner`] sequences it, [`collection`] takes one collection through its streaming
//! windows (`collection/windows.rs`) and ranking (`collection/retrieve.rs`), [`dense`], [`sparse`] and [`rank`] are the stages, [`store`] and
//! [`resume`] the crash-safe run state, [`state`] the output directory's lock and cleanup, [`merge`] the merge of a sharded run's
//! shards, [`convert`] a finished run's points in the other output format.

pub mod check;
pub mod collection;
pub mod convert;
pub mod dense;
pub mod devices;
pub mod evaluate;
pub mod inputs;
pub mod merge;
pub mod overlap;
pub mod queries;
pub mod rank;
pub mod resume;
pub mod reuse;
pub mod run_error;
pub mod runner;
pub mod search;
pub mod sparse;
pub mod state;
pub mod store;
pub mod stored_vectors;

pub use runner::{BatchRunner, RunError, RunOutcome};
