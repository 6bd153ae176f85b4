//! Ranking a collection over its retrieval state: queries encoded by the dense and SPLADE
//! models, dense and sparse retrieval, fusion, CrossEncoder rerank of the candidates (their
//! passages read again from the input), evaluation.

use super::{check_interrupt, error_chain, Job, RankingInputs, Stop};
use crate::batching::BatchBudget;
use crate::config::{FusionMethod, RunConfig};
use crate::eval::Coverage;
use crate::export::manifest::{
    AutoReport, EvaluationReport, QdrantReport, RankingReport, VectorReuse,
};
use crate::export::{CollectionReport, FailureClass, StageReport, StageRun, StageStatus};
use crate::fusion::auto;
use crate::fusion::qdrant::query_body;
use crate::fusion::Fusion;
use crate::input::ChunkStream;
use crate::models::ResidentModels;
use crate::pipeline::rank::{
    auto_pool, auto_tops, dense_list_names, encode_dense_queries, encode_sparse_queries,
    evaluate_lists, fuse_queries, judge_fusions, query_budget, refuse_queries, rerank,
    rerank_candidates, AutoFusion, QueryVectors, SpentBeforeRerank,
};
use crate::pipeline::search;
use crate::pipeline::store::CollectionStore;
use crate::ranking::budget::RerankPlan;
use crate::ranking::{QuerySet, QuerySource, QueryStatus, RankedQuery};
use crate::stage::Stage;
use crate::telemetry::memory;
use crate::vectors::SparseVector;
use std::collections::{BTreeMap, HashMap, HashSet};
use tracing::{info, warn};

impl Job<'_> {
    /// Queries, retrieval, fusion, rerank and evaluation over the complete windows.
    pub(super) fn rank(
        &self,
        models: &mut ResidentModels<'_>,
        store: &CollectionStore,
        inputs: RankingInputs,
        spent: SpentBeforeRerank,
    ) -> Result<Ranked, Stop> {
        let config = self.config;
        let name = &self.collection.name;
        let state = store.retrieval().map_err(|err| {
            Stop::Failed(
                FailureClass::Output,
                format!("cannot read the retrieval state: {err}"),
            )
        })?;
        let RankingInputs { set, qrels } = inputs;
        let mut warnings = Vec::new();
        let mut rerank_reuse = None;
        let mut rerank_plan = None;
        let mut retrieval_report = None;
        let mut auto_fusion: Option<AutoFusion> = None;
        let dense_names: Vec<String> = config.dense.models.iter().map(|m| m.name.clone()).collect();
        let sparse_ran = config.sparse.enabled;
        let (result, peak) = memory::measure(|| {
            // Query vectors: the primary dense model with its query prompt, and SPLADE.
            let leasing = &self.ctx.leasing;
            // Every dense model encodes the queries (they are exported for searching the
            // points too) and retrieves from its own column block.
            let mut dense_all = Vec::new();
            for index in 0..config.dense.models.len() {
                let _lease = leasing.lease_and_activate(
                    models,
                    Stage::Dense,
                    index,
                    query_budget(config),
                )?;
                let encoded = match models.dense.get(index) {
                    Some(embedder) => (
                        embedder.primary().identity().name.clone(),
                        encode_dense_queries(embedder, &set, query_budget(config)),
                    ),
                    None => (String::new(), Err("dense model not loaded".to_string())),
                };
                dense_all.push(encoded);
            }
            let dense: Vec<DenseQueryVectors> = dense_all
                .iter()
                .map(|(_, vectors)| vectors.clone())
                .collect();
            let sparse = if config.sparse.enabled {
                let _lease =
                    leasing.lease_and_activate(models, Stage::Sparse, 0, query_budget(config))?;
                models
                    .sparse
                    .as_ref()
                    .map(|encoder| encode_sparse_queries(encoder, &set, query_budget(config)))
            } else {
                None
            };
            check_interrupt()?;
            let query_vectors = QueryVectors { dense, sparse };
            let dense_queries: Vec<&[Vec<f32>]> = query_vectors
                .dense
                .iter()
                .map(|vectors| vectors.as_deref().unwrap_or_default())
                .collect();
            let retrieved = search::search(
                &state,
                &dense_queries,
                query_vectors.sparse.as_deref(),
                search::SearchSettings::of(config),
            )
            .map_err(|err| {
                Stop::Failed(
                    FailureClass::Output,
                    format!("cannot read the stored vectors: {err}"),
                )
            })?;
            retrieval_report = Some(retrieved.report.clone());
            let configured_fusion = config.fusion();
            let (mut queries, mut fusion_run) = fuse_queries(
                name,
                &set,
                retrieved,
                &query_vectors,
                config,
                &configured_fusion,
            );

            let rerank_run = if config.rerank.enabled {
                let configured = BatchBudget {
                    max_tokens: config.rerank.batch_tokens,
                    max_items: config.dense.max_batch_size,
                };
                match leasing.lease_and_activate(models, Stage::Rerank, 0, configured) {
                    Ok((_lease, budget, plan)) => match models.cross_encoder.as_ref() {
                        Some(ce) => {
                            // --reuse: the earlier run's scores of unchanged pairs.
                            let earlier = match self.ctx.reuse {
                                Some(source) => Some(
                                    source
                                        .pair_scores(name)
                                        .map_err(|err| Stop::input(error_chain(&err)))?,
                                ),
                                None => None,
                            };
                            let mut passages = HashMap::new();
                            if config.fusion.method == FusionMethod::Auto {
                                let menu = auto::menu(&configured_fusion, sparse_ran);
                                let descriptions: Vec<String> = menu
                                    .iter()
                                    .map(|entry| entry.fusion.describe(&dense_names, sparse_ran))
                                    .collect();
                                let tops = auto_tops(&menu, &queries, config.fusion.depth);
                                passages = self.passages(&auto_pool(&tops), &state.positions)?;
                                let judged = judge_fusions(
                                    ce,
                                    &set,
                                    &queries,
                                    menu,
                                    tops,
                                    &descriptions,
                                    &passages,
                                    config,
                                    budget,
                                    self.ctx.faults.rerank.as_deref(),
                                    earlier.as_ref(),
                                );
                                let chosen = &judged.menu[judged.choice.chosen].fusion;
                                if *chosen != configured_fusion {
                                    refuse_queries(&mut queries, chosen, config.fusion.depth);
                                }
                                fusion_run.latency_s += judged.seconds;
                                auto_fusion = Some(judged);
                            }
                            let needed: Vec<usize> =
                                rerank_candidates(&queries, config.rerank.candidates)
                                    .into_iter()
                                    .filter(|point| !passages.contains_key(point))
                                    .collect();
                            if !needed.is_empty() {
                                passages.extend(self.passages(&needed, &state.positions)?);
                            }
                            let spent = SpentBeforeRerank {
                                fusion_s: fusion_run.latency_s,
                                ..spent
                            };
                            let reranked = rerank(
                                ce,
                                &set,
                                &mut queries,
                                &passages,
                                config,
                                budget,
                                self.ctx.faults.rerank.as_deref(),
                                earlier.as_ref(),
                                auto_fusion.as_ref().map(|judged| &judged.scores),
                                spent,
                            );
                            let mut run = reranked.run;
                            if earlier.is_some() {
                                rerank_reuse = Some(VectorReuse {
                                    reused: reranked.reused,
                                    computed: run.items,
                                });
                            }
                            if let Some(reason) = reranked
                                .plan
                                .as_ref()
                                .and_then(RerankPlan::over_budget_reason)
                            {
                                warn!(collection = %name, "{reason}");
                                warnings.push(format!("collection {name}: {reason}"));
                            }
                            rerank_plan = reranked.plan;
                            run.memory = Some(plan);
                            Some(run)
                        }
                        None => None,
                    },
                    // A rerank that cannot get its device is reported; the fused lists stand.
                    Err(Stop::Failed(_, message)) => {
                        warnings.push(format!("collection {name}: rerank not run: {message}"));
                        None
                    }
                    Err(stop) => return Err(stop),
                }
            } else {
                None
            };
            check_interrupt()?;
            let exported = ExportedQueryVectors {
                dense: dense_all,
                sparse: query_vectors.sparse,
            };
            Ok((queries, fusion_run, rerank_run, exported))
        });
        let (queries, mut fusion_run, mut rerank_run, query_vectors) = result?;
        // Ranking is one measurement: the CrossEncoder dominates it when it runs.
        match rerank_run.as_mut() {
            Some(run) => run.peak_rss_bytes = peak,
            None => fusion_run.peak_rss_bytes = peak,
        }
        let failed = queries
            .iter()
            .filter(|q| q.status == QueryStatus::Failed)
            .count();
        if failed > 0 {
            warnings.push(format!(
                "collection {name}: {failed} of {} queries failed (see rerank.jsonl for the reasons)",
                queries.len()
            ));
        }
        let fusion = match &auto_fusion {
            Some(judged) => {
                let chosen = &judged.menu[judged.choice.chosen].fusion;
                format!("auto: {}", chosen.describe(&dense_names, sparse_ran))
            }
            None => fusion_description(config),
        };
        let chosen = auto_fusion.as_ref().map_or_else(
            || config.fusion(),
            |j| j.menu[j.choice.chosen].fusion.clone(),
        );
        let qdrant = qdrant_report(config, &chosen);
        let auto = auto_fusion.as_ref().map(|judged| {
            let mut choice = judged.choice.clone();
            if let Some((_, qrels)) = &qrels {
                // For comparison only: the choice above did not see the labels.
                for (entry, top) in choice.entries.iter_mut().zip(&judged.tops) {
                    let rankings: BTreeMap<String, Vec<String>> = queries
                        .iter()
                        .zip(top)
                        .map(|(query, top)| {
                            let ids = top.iter().filter_map(|&i| state.ids.get(i).cloned());
                            (query.id.clone(), ids.collect())
                        })
                        .collect();
                    let ids = queries.iter().map(|q| q.id.as_str());
                    let metrics = crate::eval::evaluate(&qrels.restricted_to(ids), &rankings);
                    entry.labelled_ndcg_at_10 = (metrics.queries > 0).then_some(metrics.ndcg_at_10);
                }
            }
            AutoReport {
                judge: config.rerank.model.clone(),
                pairs_scored: judged.scored,
                pairs_reused: judged.reused,
                seconds: judged.seconds,
                choice,
            }
        });
        let report = RankingReport {
            queries_source: match &set.source {
                QuerySource::File(path) => format!("file:{}", config.display_path(path).display()),
                QuerySource::Probe => "probe".to_string(),
            },
            queries: queries.len(),
            failed_queries: failed,
            fusion,
            retrieval: retrieval_report,
            qdrant,
            auto,
        };
        let evaluation = qrels.map(|(label, qrels)| {
            // Only what was ranked is judged: qrels queries outside the query set are counted
            // and named, never averaged in as zeros.
            let ids = || queries.iter().map(|q| q.id.as_str());
            let coverage = Coverage::of(&qrels, ids());
            if let Some(line) = coverage.describe() {
                warn!(qrels = %label, judged = coverage.judged, missing = coverage.missing, "{line}");
                warnings.push(format!("collection {name}: evaluation against {label}: {line}"));
            }
            let lists = if coverage.judged == 0 {
                BTreeMap::new()
            } else {
                evaluate_lists(
                    &qrels.restricted_to(ids()),
                    &queries,
                    &state.ids,
                    &dense_list_names(config),
                    rerank_run.is_some(),
                )
            };
            for (list, metrics) in &lists {
                info!(list = %list, ndcg_at_10 = format!("{:.4}", metrics.ndcg_at_10), recall_at_100 = format!("{:.4}", metrics.recall_at_100),
                    mrr_at_10 = format!("{:.4}", metrics.mrr_at_10), queries = metrics.queries, qrels = %label, "evaluation");
            }
            EvaluationReport {
                qrels: label,
                coverage,
                lists,
            }
        });
        Ok(Ranked {
            set,
            queries,
            ids: state.ids,
            fusion_run,
            rerank_run,
            report,
            evaluation,
            warnings,
            query_vectors,
            rerank_reuse,
            rerank_plan,
        })
    }

    /// The embedding texts of the points `needed` (point indices), from a second pass over the
    /// input; `positions[point]` is its position in the input stream.
    fn passages(
        &self,
        needed: &[usize],
        positions: &[usize],
    ) -> Result<HashMap<usize, String>, Stop> {
        let mut wanted: HashMap<usize, usize> = HashMap::new();
        for &point in needed {
            if let Some(&position) = positions.get(point) {
                wanted.insert(position, point);
            }
        }
        let mut passages = HashMap::with_capacity(wanted.len());
        let last = wanted.keys().copied().max();
        let stream = ChunkStream::open(self.collection, self.config.input.on_invalid);
        for (position, chunk) in stream.enumerate() {
            let chunk = chunk.map_err(Stop::input)?;
            if let Some(&point) = wanted.get(&position) {
                passages.insert(point, chunk.embedding_text().into_owned());
            }
            if Some(position) >= last {
                break;
            }
        }
        let missing: HashSet<&usize> = needed
            .iter()
            .filter(|p| !passages.contains_key(p))
            .collect();
        if !missing.is_empty() {
            return Err(Stop::input(format!(
                "{} rerank candidates are no longer in the input (was it changed during the run?)",
                missing.len()
            )));
        }
        Ok(passages)
    }
}

/// What ranking produced for a collection.
pub(super) struct Ranked {
    pub(super) set: QuerySet,
    pub(super) queries: Vec<RankedQuery>,
    /// Chunk id of each point.
    pub(super) ids: Vec<String>,
    pub(super) fusion_run: StageRun,
    pub(super) rerank_run: Option<StageRun>,
    pub(super) report: RankingReport,
    pub(super) evaluation: Option<EvaluationReport>,
    pub(super) warnings: Vec<String>,
    pub(super) query_vectors: ExportedQueryVectors,
    /// A run with `--reuse`: the rerank scores taken from the earlier output and computed.
    pub(super) rerank_reuse: Option<VectorReuse>,
    /// `rerank.budget`'s plan and outcome.
    pub(super) rerank_plan: Option<RerankPlan>,
}

/// Whether a run fuses lists (and writes `rerank.jsonl`): with sparse, with rerank, or with
/// several dense models.
pub(super) fn fusion_runs(config: &RunConfig) -> bool {
    config.sparse.enabled || config.rerank.enabled || config.dense.models.len() > 1
}

/// What the fusion was, for the manifest and summary: the method and each list's weight.
fn fusion_description(config: &RunConfig) -> String {
    if !config.sparse.enabled && config.dense.models.len() == 1 {
        return "dense only (sparse disabled)".to_string();
    }
    let names: Vec<String> = config.dense.models.iter().map(|m| m.name.clone()).collect();
    config.fusion().describe(&names, config.sparse.enabled)
}

/// The Qdrant request that reproduces `fusion` over the run's named vectors, with
/// `$query_vectors.<name>` for each query vector, asking for `rerank.top_k` points.
fn qdrant_report(config: &RunConfig, fusion: &Fusion) -> Option<QdrantReport> {
    let mut lists: Vec<(String, String)> = config
        .dense
        .models
        .iter()
        .map(|m| (m.name.clone(), format!("$query_vectors.{}", m.name)))
        .collect();
    if config.sparse.enabled {
        let name = config.sparse.name.clone();
        lists.push((name.clone(), format!("$query_vectors.{name}")));
    }
    let (body, plan) = query_body(
        fusion,
        &lists,
        config.sparse.enabled,
        config.fusion.depth,
        config.rerank.top_k,
    );
    let request = serde_json::to_value(&body).ok()?;
    Some(QdrantReport { plan, request })
}

/// One dense model's query vectors, or why there are none.
pub(super) type DenseQueryVectors = Result<Vec<Vec<f32>>, String>;

/// The queries' vectors as `query_vectors.jsonl` exports them: per dense model (vector name,
/// one vector per query or why there are none), and SPLADE's per query.
pub(super) struct ExportedQueryVectors {
    pub(super) dense: Vec<(String, DenseQueryVectors)>,
    pub(super) sparse: Option<Vec<Option<SparseVector>>>,
}

/// Fusion and rerank stage reports: `ok` with their runs when they ran, else `skipped` (asked
/// for, nothing to rank) or `disabled`.
pub(super) fn insert_ranking_stages(
    report: &mut CollectionReport,
    ranked: Option<&Ranked>,
    config: &RunConfig,
) {
    let fusion_on = fusion_runs(config);
    let not_run = |enabled: bool| {
        StageReport::with_status(
            if enabled {
                StageStatus::Skipped
            } else {
                StageStatus::Disabled
            },
            None,
        )
    };
    let fusion = match ranked {
        Some(ranked) if fusion_on => StageReport {
            status: StageStatus::Ok,
            detail: None,
            runs: vec![ranked.fusion_run.clone()],
        },
        _ => not_run(fusion_on),
    };
    let rerank = match ranked.and_then(|r| r.rerank_run.as_ref()) {
        Some(run) => StageReport {
            status: StageStatus::Ok,
            detail: None,
            runs: vec![run.clone()],
        },
        None => not_run(config.rerank.enabled),
    };
    report.stages.insert(Stage::Fusion, fusion);
    report.stages.insert(Stage::Rerank, rerank);
}
