//! The dense stage: every chunk through every configured bi-encoder.

use crate::batching::BatchBudget;
use crate::config::ProgressMode;
use crate::dispatch::FaultInjector;
use crate::export::StageRun;
use crate::input::Chunk;
use crate::models::{DenseEmbedder, ModelError, Replicas};
use crate::stage::Stage;
use crate::telemetry::progress::SharedProgress;
use tracing::info;

/// Embeds `chunks` (their `embedding_text`) with `embedder`; vectors in chunk order.
pub fn run_dense(
    collection: &str,
    embedder: &Replicas<DenseEmbedder>,
    chunks: &[Chunk],
    budget: BatchBudget,
    progress: ProgressMode,
    fault: Option<&FaultInjector>,
) -> Result<(Vec<Vec<f32>>, StageRun), ModelError> {
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
    let shown = SharedProgress::new(
        progress,
        format!("dense {collection}"),
        "chunks",
        refs.len() as u64,
    );
    let output = embedder.embed_documents_observed(&refs, budget, &|n| shown.inc(n), fault)?;
    shown.finish();
    let mut run = StageRun::new(
        &identity.name,
        &output.stats,
        output.truncated,
        output.elapsed,
    );
    run.record_dispatch(output.dispatch);
    info!(
        items = run.items,
        tokens = run.tokens,
        batches = run.batches,
        truncated = run.truncated,
        latency_s = format!("{:.2}", run.latency_s),
        tokens_per_s = format!("{:.0}", run.tokens_per_s),
        "dense stage done"
    );
    Ok((output.vectors, run))
}
