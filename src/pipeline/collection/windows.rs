//! The windows of a collection: read a window → dense (every model) → SPLADE → the window's
//! points and retrieval state appended to the work files → checkpoint (see
//! [`super`] and [`crate::pipeline::store`]).

use super::{check_interrupt, error_chain, Job, Stop, FAILED_IDS_SHOWN};
use crate::batching::BatchBudget;
use crate::export::{render_point, FailureClass, PointVectors, StageReport, StageRun, StageStatus};
use crate::input::{Chunk, ChunkStream};
use crate::models::{ModelError, ResidentModels};
use crate::pipeline::dense::run_dense;
use crate::pipeline::reuse::{self, PreviousCollection, WindowPlan};
use crate::pipeline::sparse::{run_sparse, SparseStageOutput};
use crate::pipeline::store::{Checkpoint, CollectionStore};
use crate::stage::Stage;
use crate::telemetry::{memory, progress::SharedProgress};
use std::borrow::Cow;
use tracing::{info, warn};

impl Job<'_> {
    /// The windows after the last checkpoint (see the module docs).
    pub(super) fn embed_windows(
        &self,
        models: &mut ResidentModels<'_>,
        store: &mut CollectionStore,
        total_chunks: usize,
        mut previous: Option<&mut PreviousCollection>,
    ) -> Result<(), Stop> {
        let config = self.config;
        let name = &self.collection.name;
        let mut stream = ChunkStream::open(self.collection, config.input.on_invalid);
        let consumed = store.checkpoint().chunks_consumed;
        for _ in 0..consumed {
            match stream.next() {
                Some(Ok(_)) => {}
                Some(Err(err)) => return Err(Stop::input(err)),
                None => {
                    return Err(Stop::input(format!(
                        "the input has fewer chunks than the checkpoint records ({consumed})"
                    )))
                }
            }
        }
        // Chunks this run embeds (all of them, or a shard's own): the consumed ones that are
        // ours became points or failed.
        let embedded = |checkpoint: &Checkpoint| checkpoint.points + checkpoint.failed_count;
        let remaining = total_chunks.saturating_sub(embedded(store.checkpoint())) as u64;
        let dense_progress = SharedProgress::new(
            config.telemetry.progress,
            format!("dense {name}"),
            "chunks",
            remaining,
        );
        let sparse_progress = config.sparse.enabled.then(|| {
            SharedProgress::new(
                config.telemetry.progress,
                format!("sparse {name}"),
                "chunks",
                remaining,
            )
        });
        let budget = BatchBudget {
            max_tokens: config.dense.batch_tokens,
            max_items: config.dense.max_batch_size,
        };
        loop {
            check_interrupt()?;
            let offset = stream.position();
            // Each chunk with its position in the input stream (a shard skips others' chunks).
            let mut window: Vec<Chunk> = Vec::new();
            let mut positions: Vec<usize> = Vec::new();
            while window.len() < config.input.window_chunks {
                let position = stream.position();
                match stream.next() {
                    None => break,
                    Some(Err(err)) => return Err(Stop::input(err)),
                    Some(Ok(chunk)) if self.owns(&chunk) => {
                        window.push(chunk);
                        positions.push(position);
                    }
                    Some(Ok(_)) => {}
                }
            }
            if window.is_empty() {
                break;
            }
            let window_index = store.checkpoint().windows;
            let span = tracing::info_span!("window", index = window_index, chunks = window.len());
            let _entered = span.enter();
            tracing::debug!(first_chunk = offset, "window started");

            // A run with --reuse: the earlier output's vectors for the chunks whose text and
            // model are unchanged.
            let texts: Vec<[u8; 32]> = window
                .iter()
                .map(|c| reuse::text_sha256(&c.embedding_text()))
                .collect();
            let mut plan = match self.ctx.reuse {
                Some(source) => Some(
                    WindowPlan::new(source, previous.as_deref_mut(), &window, &texts)
                        .map_err(|err| Stop::Failed(FailureClass::Input, error_chain(&err)))?,
                ),
                None => None,
            };

            // Dense: every model over the window (the chunks it has no reused vector for).
            let mut dense_runs = Vec::new();
            let mut dense_vectors = Vec::new();
            for index in 0..config.dense.models.len() {
                let todo = match &plan {
                    Some(plan) => plan.dense_todo(index),
                    None => (0..window.len()).collect(),
                };
                if todo.is_empty() {
                    dense_runs.push(StageRun::idle(&config.dense.models[index].name));
                    dense_vectors.push(scatter(Vec::new(), &todo, window.len(), reused_later));
                    continue;
                }
                let subset = subset(&window, &todo);
                let (result, peak) = memory::measure(|| {
                    let (_lease, budget, plan) =
                        self.ctx
                            .leasing
                            .lease_and_activate(models, Stage::Dense, index, budget)?;
                    let embedder = models.dense.get(index).ok_or_else(|| {
                        Stop::Failed(FailureClass::Model, "dense model not loaded".to_string())
                    })?;
                    let output = run_dense(
                        name,
                        embedder,
                        &subset,
                        offset,
                        budget,
                        &|n| dense_progress.inc(n),
                        self.ctx.faults.dense.as_deref(),
                    )
                    .map_err(|err| {
                        Stop::Failed(
                            FailureClass::Model,
                            format!("dense stage failed: {}", error_chain(&err)),
                        )
                    })?;
                    Ok::<_, Stop>((output, plan))
                });
                let (mut output, plan) = result?;
                output.run.peak_rss_bytes = peak;
                output.run.memory = Some(plan);
                dense_runs.push(output.run);
                dense_vectors.push(scatter(output.vectors, &todo, window.len(), reused_later));
            }
            let names: Vec<&str> = config
                .dense
                .models
                .iter()
                .map(|m| m.name.as_str())
                .collect();
            check_interrupt()?;

            // Sparse: SPLADE over the window (failures fall back per chunk, never fail it).
            let mut sparse = match &sparse_progress {
                Some(progress) => {
                    let todo = match &plan {
                        Some(plan) => plan.sparse_todo(),
                        None => (0..window.len()).collect(),
                    };
                    if todo.is_empty() {
                        Some(SparseStageOutput {
                            points: vec![None; window.len()],
                            run: StageRun::idle(&config.sparse.name),
                        })
                    } else {
                        let subset = subset(&window, &todo);
                        let (result, peak) = memory::measure(|| {
                            let (_lease, budget, plan) = self.ctx.leasing.lease_and_activate(
                                models,
                                Stage::Sparse,
                                0,
                                budget,
                            )?;
                            let encoder = models.sparse.as_ref().ok_or_else(|| {
                                Stop::Failed(
                                    FailureClass::Model,
                                    "sparse model not loaded".to_string(),
                                )
                            })?;
                            let mut output = run_sparse(
                                name,
                                encoder,
                                &subset,
                                offset,
                                budget,
                                &config.sparse,
                                self.ctx.faults.sparse.as_deref(),
                                &|n| progress.inc(n),
                            );
                            output.run.memory = Some(plan);
                            Ok::<_, Stop>(output)
                        });
                        let mut output = result?;
                        output.run.peak_rss_bytes = peak;
                        output.points = scatter(output.points, &todo, window.len(), || None);
                        Some(output)
                    }
                }
                None => None,
            };
            // Reused vectors into their places (counted first).
            let mut tally = plan.as_ref().map(WindowPlan::tally);
            if let Some(plan) = plan.as_mut() {
                plan.fill(&mut dense_vectors, sparse.as_mut().map(|s| &mut s.points));
            }
            check_interrupt()?;

            // The window's points, in input order, straight to the work files.
            let work_file = self.ctx.work_dir.join(name);
            let io_stop = |err: std::io::Error| Stop::output(&work_file, err);
            if names.len() != dense_vectors.len() {
                return Err(Stop::Failed(
                    FailureClass::Model,
                    "dense vectors missing for a configured model".to_string(),
                ));
            }
            let mut writer = store.window().map_err(io_stop)?;
            let mut line = Vec::new();
            let mut failed_ids = Vec::new();
            let mut changes = Vec::new();
            for (i, chunk) in window.iter().enumerate() {
                let dense: Option<Vec<(&str, &[f32])>> = names
                    .iter()
                    .zip(&dense_vectors)
                    .map(|(name, set)| match set.get(i) {
                        Some(Ok(v)) => Some((*name, v.as_slice())),
                        _ => None,
                    })
                    .collect();
                // A chunk is a point when every dense model embedded it.
                let Some(dense) = dense.filter(|d| !d.is_empty()) else {
                    failed_ids.push(chunk.id.as_str().to_string());
                    if let (Some(plan), Some(tally)) = (&plan, tally.as_mut()) {
                        plan.record_failed(i, chunk, &mut changes, &mut tally.changes)
                            .map_err(|err| Stop::Failed(FailureClass::Output, err.to_string()))?;
                    }
                    continue;
                };
                let sparse_point = sparse
                    .as_ref()
                    .and_then(|s| s.points.get(i).and_then(Option::as_ref));
                let vectors = PointVectors {
                    dense,
                    sparse: sparse_point.map(|p| (config.sparse.name.as_str(), p)),
                };
                line.clear();
                render_point(&mut line, name, chunk, &vectors, config.output.include_text)
                    .map_err(|err| Stop::Failed(FailureClass::Output, err.to_string()))?;
                if let (Some(plan), Some(tally)) = (&plan, tally.as_mut()) {
                    plan.record_point(i, chunk, &line, &mut changes, &mut tally.changes)
                        .map_err(|err| Stop::Failed(FailureClass::Output, err.to_string()))?;
                }
                let dense_rows: Vec<&[f32]> = vectors.dense.iter().map(|(_, v)| *v).collect();
                writer
                    .point(
                        &line,
                        &dense_rows,
                        sparse.as_ref().map(|_| sparse_point.map(|p| &p.vector)),
                        positions[i],
                        chunk.id.as_str(),
                        &hex::encode(texts[i]),
                    )
                    .map_err(io_stop)?;
            }
            if !changes.is_empty() {
                writer.changes(&changes).map_err(io_stop)?;
            }
            if !failed_ids.is_empty() {
                warn!(
                    failed = failed_ids.len(),
                    "chunks failed dense embedding even alone; no point written for them"
                );
            }
            let sparse_run = sparse.as_ref().map(|s| s.run.clone());
            writer
                .commit(stream.position(), |checkpoint| {
                    let dense = checkpoint
                        .stages
                        .entry(Stage::Dense)
                        .or_insert_with(|| StageReport::with_status(StageStatus::Ok, None));
                    absorb_runs(&mut dense.runs, dense_runs);
                    if let Some(run) = sparse_run {
                        let stage = checkpoint
                            .stages
                            .entry(Stage::Sparse)
                            .or_insert_with(|| StageReport::with_status(StageStatus::Ok, None));
                        absorb_runs(&mut stage.runs, vec![run]);
                    }
                    checkpoint.failed_count += failed_ids.len();
                    if let Some(tally) = tally {
                        checkpoint
                            .reuse
                            .get_or_insert_with(Default::default)
                            .absorb(&tally);
                    }
                    let room = FAILED_IDS_SHOWN.saturating_sub(checkpoint.failed_chunks.len());
                    checkpoint
                        .failed_chunks
                        .extend(failed_ids.into_iter().take(room));
                })
                .map_err(io_stop)?;
            info!(
                done = embedded(store.checkpoint()),
                total = total_chunks,
                input_position = stream.position(),
                "window committed"
            );
        }
        dense_progress.finish();
        if let Some(progress) = sparse_progress {
            progress.finish();
        }
        Ok(())
    }
}

/// The chunks at `todo` (all of them without a copy).
fn subset<'w>(window: &'w [Chunk], todo: &[usize]) -> Cow<'w, [Chunk]> {
    if todo.len() == window.len() {
        Cow::Borrowed(window)
    } else {
        Cow::Owned(todo.iter().map(|&i| window[i].clone()).collect())
    }
}

/// A subset's results (`todo[k]`'s result at `k`) spread over the whole window: `len` slots,
/// the others `empty()` (filled from the earlier output by [`WindowPlan::fill`]).
fn scatter<T>(results: Vec<T>, todo: &[usize], len: usize, empty: impl Fn() -> T) -> Vec<T> {
    if todo.len() == len {
        return results;
    }
    let mut all: Vec<T> = (0..len).map(|_| empty()).collect();
    for (result, &i) in results.into_iter().zip(todo) {
        all[i] = result;
    }
    all
}

/// The place of a dense vector the earlier output gives (never left so: a chunk either has a
/// reused vector or is embedded).
fn reused_later() -> Result<Vec<f32>, ModelError> {
    Err(ModelError::Item {
        message: "no vector: neither reused nor embedded".to_string(),
    })
}

/// Adds a window's runs (one per model, in model order) to the accumulated ones.
pub(in crate::pipeline) fn absorb_runs(runs: &mut Vec<StageRun>, window: Vec<StageRun>) {
    for (i, run) in window.into_iter().enumerate() {
        match runs.get_mut(i) {
            Some(total) => total.absorb(&run),
            None => runs.push(run),
        }
    }
}
