//! The dense stage: one window of chunks through one bi-encoder.

use crate::batching::BatchBudget;
use crate::dispatch::FaultInjector;
use crate::export::StageRun;
use crate::input::Chunk;
use crate::models::{DenseEmbedder, ModelError, Replicas};
use crate::stage::Stage;
use tracing::debug;

/// What the dense stage made of a window: one vector per chunk, or why that chunk failed even
/// alone (it gets no point; the collection is reported partial).
pub struct DenseWindow {
    pub vectors: Vec<Result<Vec<f32>, ModelError>>,
    pub run: StageRun,
}

/// Embeds `chunks` (their `embedding_text`) with `embedder`; results in chunk order. `offset` is
/// the window's first chunk position in the collection (what a test's fault injector sees).
/// `Err` only when the stage could not run at all (no workers, tokenizer failure).
pub fn run_dense(
    collection: &str,
    embedder: &Replicas<DenseEmbedder>,
    chunks: &[Chunk],
    offset: usize,
    budget: BatchBudget,
    on_batch: &(dyn Fn(usize) + Sync),
    fault: Option<&FaultInjector>,
) -> Result<DenseWindow, ModelError> {
    let identity = embedder.primary().identity();
    let span = tracing::info_span!(
        "stage",
        stage = %Stage::Dense,
        collection,
        model = %identity.name,
        device = %identity.device
    );
    let _entered = span.enter();
    let texts: Vec<std::borrow::Cow<'_, str>> = chunks.iter().map(Chunk::embedding_text).collect();
    let refs: Vec<&str> = texts.iter().map(|t| t.as_ref()).collect();
    let output = embedder.embed_documents_observed(&refs, budget, on_batch, fault, offset)?;
    let mut run = StageRun::new(
        &identity.name,
        &output.stats,
        output.truncated,
        output.elapsed,
    );
    run.items = chunks.len();
    run.record_dispatch(output.dispatch);
    for result in &output.results {
        if let Err(err) = result {
            run.missing += 1;
            *run.failure_reasons
                .entry(super::sparse::failure_reason(err).to_string())
                .or_default() += 1;
        }
    }
    debug!(
        items = run.items,
        tokens = run.tokens,
        batches = run.batches,
        failed = run.missing,
        latency_s = format!("{:.2}", run.latency_s),
        "dense window done"
    );
    Ok(DenseWindow {
        vectors: output.results,
        run,
    })
}
