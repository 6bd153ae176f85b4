//! Faults a test forces on batches ([`FaultInjector`]), so recovery and fallbacks are exercised
//! without relying on chance; [`crate::models::run_encoder_batches`] applies them.

/// A fault a test forces on a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The batch fails (an inference error).
    Fail,
    /// The batch runs out of memory (the worker halves its budget and retries).
    OutOfMemory,
}

/// Decides, from a batch's item indices (chunks; queries for rerank), whether to fail it: the
/// way tests exercise recovery and fallbacks without relying on chance.
pub type FaultInjector = dyn Fn(&[usize]) -> Option<Fault> + Send + Sync;
