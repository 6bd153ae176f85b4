//! The sparse stage: live SPLADE inference for every chunk, with a per-chunk, flagged fallback.
//!
//! A batch that fails (model error, non-finite output, out of memory) is split and retried down
//! to single chunks, so only the chunks that fail on their own fall back. A fallen-back chunk
//! gets a vector built from its metadata term weights — `metadata.sparse_features.term_weights`
//! (`[{term, weight}]`) or `metadata.search_keywords` (weight 1 each) — tokenised with the SPLADE
//! tokenizer, so the ids live in the same vocabulary space as real SPLADE vectors and the two
//! can be searched together. Each point says which it got (`"sparse_source"`); a chunk with
//! neither gets no sparse vector, and is counted.

use crate::batching::{BatchBudget, BatchStats};
use crate::config::{SparseConfig, SparseFallback};
use crate::dispatch::FaultInjector;
use crate::export::StageRun;
use crate::input::Chunk;
use crate::models::{run_encoded, ModelError, Replicas, SpladeEncoder};
use crate::stage::Stage;
use crate::vectors::{SparsePoint, SparseSource, SparseVector};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::time::Instant;
use tracing::{debug, warn};

/// What the stage produced for a collection.
pub struct SparseStageOutput {
    /// One entry per chunk, in chunk order; `None` when neither SPLADE nor metadata gave one.
    pub points: Vec<Option<SparsePoint>>,
    pub run: StageRun,
}

/// The reason recorded for a chunk whose inference failed.
pub(crate) fn failure_reason(err: &ModelError) -> &'static str {
    match err {
        ModelError::NonFinite => "non_finite",
        ModelError::Injected => "injected",
        ModelError::Interrupted => "interrupted",
        other if other.is_out_of_memory() => "out_of_memory",
        ModelError::Tokenize { .. } => "tokenization",
        _ => "inference_error",
    }
}

/// Runs SPLADE over a window of `chunks`; never fails the collection (see the module docs).
/// `offset` is the window's first chunk position in the collection (what a test's fault
/// injector sees).
#[allow(clippy::too_many_arguments)]
pub fn run_sparse(
    collection: &str,
    encoders: &Replicas<SpladeEncoder>,
    chunks: &[Chunk],
    offset: usize,
    budget: BatchBudget,
    config: &SparseConfig,
    fault: Option<&FaultInjector>,
    on_batch: &(dyn Fn(usize) + Sync),
) -> SparseStageOutput {
    let encoder = encoders.primary();
    let identity = encoder.identity();
    let span = tracing::info_span!("stage", stage = %Stage::Sparse, collection, model = %identity.name, device = %identity.device);
    let _entered = span.enter();
    let started = Instant::now();

    let texts: Vec<std::borrow::Cow<'_, str>> = chunks.iter().map(Chunk::embedding_text).collect();
    let refs: Vec<&str> = texts.iter().map(|t| t.as_ref()).collect();
    let mut results: Vec<Option<Result<SparseVector, &'static str>>> =
        (0..chunks.len()).map(|_| None).collect();
    let mut stats = BatchStats::default();
    let mut retries = 0;
    let mut truncated = 0;
    let mut dispatch = None;
    match encoder.tokenizer().encode_batch(&refs) {
        Ok(encodings) => {
            truncated = encodings.iter().filter(|e| e.truncated).count();
            let outcome = run_encoded(
                &encoders.workers(),
                &encodings,
                budget,
                fault,
                &|i| i + offset,
                on_batch,
            );
            match outcome {
                Ok(outcome) => {
                    stats = outcome.stats;
                    retries = outcome.dispatch.retries;
                    dispatch = Some(outcome.dispatch);
                    for (slot, result) in results.iter_mut().zip(outcome.results) {
                        *slot = Some(result.map_err(|err| failure_reason(&err)));
                    }
                }
                Err(err) => {
                    warn!("SPLADE batches could not be dispatched: {err}");
                    results
                        .iter_mut()
                        .for_each(|slot| *slot = Some(Err("inference_error")));
                }
            }
        }
        Err(err) => {
            let reason = failure_reason(&err);
            warn!("SPLADE tokenization failed for the collection: {err}");
            results
                .iter_mut()
                .for_each(|slot| *slot = Some(Err(reason)));
        }
    }

    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    let mut fallbacks = 0;
    let mut missing = 0;
    let points: Vec<Option<SparsePoint>> = results
        .into_iter()
        .zip(chunks)
        .map(|(result, chunk)| match result {
            Some(Ok(vector)) => Some(SparsePoint {
                vector,
                source: SparseSource::Splade,
            }),
            failed => {
                let reason = match failed {
                    Some(Err(reason)) => reason,
                    _ => "not_run",
                };
                *reasons.entry(reason.to_string()).or_default() += 1;
                let vector = match config.fallback {
                    SparseFallback::Metadata => {
                        metadata_vector(encoder, &chunk.metadata, config.max_terms)
                    }
                    SparseFallback::None => None,
                };
                match vector {
                    Some(vector) => {
                        fallbacks += 1;
                        Some(SparsePoint {
                            vector,
                            source: SparseSource::Metadata,
                        })
                    }
                    None => {
                        missing += 1;
                        None
                    }
                }
            }
        })
        .collect();

    let mut run = StageRun::new(&identity.name, &stats, truncated, started.elapsed());
    // Items count each chunk once, whatever the retries.
    run.items = chunks.len();
    if let Some(dispatch) = dispatch {
        run.record_dispatch(dispatch);
    }
    run.fallbacks = fallbacks;
    run.missing = missing;
    run.failure_reasons = reasons;
    if fallbacks + missing > 0 {
        warn!(fallbacks, missing, reasons = ?run.failure_reasons, "SPLADE failed for some chunks");
    }
    debug!(
        items = run.items,
        tokens = run.tokens,
        batches = run.batches,
        retries,
        fallbacks,
        missing,
        latency_s = format!("{:.2}", run.latency_s),
        "sparse window done"
    );
    SparseStageOutput { points, run }
}

/// Term weights from a chunk's metadata, as the chunker that produced it recorded them.
pub fn metadata_terms(metadata: &Map<String, Value>) -> Vec<(String, f32)> {
    let weighted = metadata
        .get("sparse_features")
        .and_then(|f| f.get("term_weights"))
        .and_then(Value::as_array);
    if let Some(entries) = weighted {
        return entries
            .iter()
            .filter_map(|entry| {
                let term = entry.get("term")?.as_str()?;
                let weight = entry.get("weight")?.as_f64()? as f32;
                Some((term.to_string(), weight))
            })
            .collect();
    }
    match metadata.get("search_keywords") {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(|term| (term.to_string(), 1.0))
            .collect(),
        Some(Value::String(list)) => list
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|term| (term.to_string(), 1.0))
            .collect(),
        _ => Vec::new(),
    }
}

/// A sparse vector in the SPLADE vocabulary from metadata terms: each term is tokenised and each
/// of its token ids takes the term's weight (the max over terms sharing an id, as SPLADE pools).
pub fn metadata_vector(
    encoder: &SpladeEncoder,
    metadata: &Map<String, Value>,
    max_terms: Option<usize>,
) -> Option<SparseVector> {
    let mut weights: BTreeMap<u32, f32> = BTreeMap::new();
    for (term, weight) in metadata_terms(metadata) {
        if !(weight.is_finite() && weight > 0.0) {
            continue;
        }
        let Ok(ids) = encoder.tokenizer().term_ids(&term) else {
            continue;
        };
        for id in ids {
            let slot = weights.entry(id).or_insert(0.0);
            *slot = slot.max(weight);
        }
    }
    let vector = SparseVector::from_weights(weights.into_iter().collect(), max_terms);
    (!vector.is_empty()).then_some(vector)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn term_weights_win_over_keywords() {
        let metadata = map(json!({
            "sparse_features": {"term_weights": [{"term": "vitamin", "weight": 0.8}, {"term": 5, "weight": 1}, {"weight": 2}]},
            "search_keywords": ["ignored"]
        }));
        assert_eq!(
            metadata_terms(&metadata),
            vec![("vitamin".to_string(), 0.8)]
        );
    }

    #[test]
    fn keywords_as_list_or_comma_string() {
        let list = map(json!({"search_keywords": ["a", "b c"]}));
        assert_eq!(metadata_terms(&list).len(), 2);
        let text = map(json!({"search_keywords": "a, b ,,c"}));
        let terms: Vec<String> = metadata_terms(&text).into_iter().map(|(t, _)| t).collect();
        assert_eq!(terms, ["a", "b", "c"]);
        assert!(metadata_terms(&map(json!({"other": 1}))).is_empty());
    }
}
