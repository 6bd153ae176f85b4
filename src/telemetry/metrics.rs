//! Prometheus text-format metrics (exposition format 0.0.4) for node_exporter's textfile
//! collector.
//!
//! [`render`] turns the run's outcome into a snapshot; [`write`] puts it in place atomically
//! (a temp file `.tmp-*.partial` beside the target, then a rename), so the collector, which reads
//! only `*.prom`, never sees a half-written file.
//!
//! Every family is a `gauge`: a batch job's textfile is a snapshot of its last run, not a
//! monotonic counter of a long-lived process. Families appear in the order of the table below,
//! each with one `# HELP` and one `# TYPE` line; a family with no samples in this run is left
//! out entirely. Samples within a family are sorted by their label values. Label values are
//! escaped per the format (`\\`, `\"`, `\n`).
//!
//! Labels carry ids and fixed vocabularies only — collection names, stage names, vector (model)
//! names, status and reason identifiers, ranked-list names. Never chunk or query text, never
//! file paths (the qrels and queries sources are not exported).
//!
//! # Series
//!
//! The names are a contract for dashboards and alerts; keep them stable.
//!
//! | Name (prefix `embed_collections_`) | Labels | Meaning |
//! |---|---|---|
//! | `run_info` | `run_id`, `status` | Always 1; carries the run id and its status (`ok`, `partial`, `failed`). |
//! | `run_start_timestamp_seconds` | — | Unix time the run started. |
//! | `run_end_timestamp_seconds` | — | Unix time the run finished. |
//! | `run_success` | — | 1 when the run status is `ok`, else 0 (what cron alerting keys on). |
//! | `collection_ok` | `collection` | 1 when the collection succeeded, else 0. |
//! | `chunks` | `collection` | Chunks read and kept. |
//! | `points` | `collection` | Points written. |
//! | `skipped_chunks` | `collection` | Chunks skipped, all reasons together (always present, 0 when none). |
//! | `skipped` | `collection`, `reason` | Chunks skipped for one reason (`malformed_json`, `empty_text`, …); only reasons that occurred. |
//! | `stage_status` | `collection`, `stage`, `status` | 1 for the stage's status (`ok`, `failed`, `disabled`, `not_available`, `skipped`); one sample per stage. |
//! | `stage_items` | `collection`, `stage`, `model` | Items the model processed (chunks, or query–chunk pairs for rerank). |
//! | `stage_tokens` | `collection`, `stage`, `model` | Tokens fed to the model (without padding). |
//! | `stage_batches` | `collection`, `stage`, `model` | Batches run. |
//! | `stage_latency_seconds` | `collection`, `stage`, `model` | Wall time the model's stage took. |
//! | `stage_items_per_second` | `collection`, `stage`, `model` | Items per second over that time. |
//! | `stage_tokens_per_second` | `collection`, `stage`, `model` | Tokens per second over that time. |
//! | `stage_retries` | `collection`, `stage`, `model` | Batches retried. |
//! | `stage_fallbacks` | `collection`, `stage`, `model` | Items served by a fallback instead of the model. |
//! | `stage_missing` | `collection`, `stage`, `model` | Items left without an output. |
//! | `stage_peak_rss_bytes` | `collection`, `stage`, `model` | Peak process RSS during the stage (CPU, Linux; absent when not measurable). |
//! | `stage_failures` | `collection`, `stage`, `model`, `reason` | Items the model failed on, by reason; only reasons that occurred. |
//! | `queries` | `collection` | Queries ranked (present only when ranking ran). |
//! | `failed_queries` | `collection` | Queries whose ranking failed (present only when ranking ran). |
//! | `eval_ndcg_at_10` | `collection`, `list` | nDCG@10 of a ranked list (`dense`, `sparse`, `fused`, `reranked`). |
//! | `eval_recall_at_100` | `collection`, `list` | Recall@100 of a ranked list. |
//! | `eval_mrr_at_10` | `collection`, `list` | MRR@10 of a ranked list. |
//! | `overhead_ratio` | `collection` | Time of sparse + fusion + rerank over the dense stage's (the rule: at most 0.10); absent when dense took no time. |
//! | `overhead_rerank_pairs` | `collection` | (query, passage) pairs the CrossEncoder scored. |
//! | `overhead_limit` | `collection` | The limit `overhead_ratio` is held to: `rerank.budget` when set, else the rule's 0.10. |
//! | `rerank_budget_depth` | `collection` | With `rerank.budget`: the candidates per query the plan chose. |
//! | `rerank_budget_predicted_ratio` | `collection` | With `rerank.budget`: the overhead ratio the plan predicted. |
//! | `rerank_budget_held` | `collection` | With `rerank.budget`: 1 when sparse + fusion + rerank stayed within it, else 0. |
//!
//! Skips are exported twice on purpose, in two families: `skipped_chunks` is the total and is
//! always present (so "no skips" reads as 0, not as an absent series), `skipped` splits it by
//! reason. Keeping the total out of the `reason` label means `sum by (collection) (skipped)`
//! never double-counts.
//!
//! Stages without model runs (fusion, export, or a disabled stage) have only `stage_status`.
//! Should two samples of one family carry the same labels (the same model twice in a stage),
//! the first one is kept: the format forbids duplicate series.

use crate::export::manifest::{CollectionReport, CollectionStatus, RunStatus, StageRun};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::Path;

/// Prefix of every metric name.
pub const PREFIX: &str = "embed_collections_";

/// Renders the run as Prometheus text exposition format 0.0.4, ending with a newline.
pub fn render(
    run_id: &str,
    status: RunStatus,
    started_unix: f64,
    finished_unix: f64,
    collections: &[CollectionReport],
) -> String {
    const C: &[&str] = &["collection"];
    const CSM: &[&str] = &["collection", "stage", "model"];
    const CL: &[&str] = &["collection", "list"];

    let mut run_info = Family::new(
        "run_info",
        "Information about the run; always 1.",
        &["run_id", "status"],
    );
    let mut run_start = Family::new(
        "run_start_timestamp_seconds",
        "Unix time the run started.",
        &[],
    );
    let mut run_end = Family::new(
        "run_end_timestamp_seconds",
        "Unix time the run finished.",
        &[],
    );
    let mut run_success = Family::new("run_success", "1 when the run status is ok, else 0.", &[]);
    let mut collection_ok = Family::new(
        "collection_ok",
        "1 when the collection succeeded, else 0.",
        C,
    );
    let mut chunks = Family::new("chunks", "Chunks read and kept.", C);
    let mut points = Family::new("points", "Points written.", C);
    let mut skipped_chunks =
        Family::new("skipped_chunks", "Chunks skipped, all reasons together.", C);
    let mut skipped = Family::new(
        "skipped",
        "Chunks skipped, by reason.",
        &["collection", "reason"],
    );
    let mut stage_status = Family::new(
        "stage_status",
        "1 for the stage's status.",
        &["collection", "stage", "status"],
    );
    let mut stage_items = Family::new("stage_items", "Items the model processed.", CSM);
    let mut stage_tokens = Family::new(
        "stage_tokens",
        "Tokens fed to the model, without padding.",
        CSM,
    );
    let mut stage_batches = Family::new("stage_batches", "Batches run.", CSM);
    let mut stage_latency = Family::new(
        "stage_latency_seconds",
        "Wall time of the model's stage.",
        CSM,
    );
    let mut stage_items_rate = Family::new(
        "stage_items_per_second",
        "Items per second over the stage's wall time.",
        CSM,
    );
    let mut stage_tokens_rate = Family::new(
        "stage_tokens_per_second",
        "Tokens per second over the stage's wall time.",
        CSM,
    );
    let mut stage_retries = Family::new("stage_retries", "Batches retried.", CSM);
    let mut stage_fallbacks = Family::new(
        "stage_fallbacks",
        "Items served by a fallback instead of the model.",
        CSM,
    );
    let mut stage_missing = Family::new("stage_missing", "Items left without an output.", CSM);
    let mut stage_peak_rss = Family::new(
        "stage_peak_rss_bytes",
        "Peak resident memory of the process during the stage (CPU, Linux).",
        CSM,
    );
    let mut stage_failures = Family::new(
        "stage_failures",
        "Items the model failed on, by reason.",
        &["collection", "stage", "model", "reason"],
    );
    let mut queries = Family::new("queries", "Queries ranked.", C);
    let mut failed_queries = Family::new("failed_queries", "Queries whose ranking failed.", C);
    let mut eval_ndcg = Family::new("eval_ndcg_at_10", "nDCG@10 of a ranked list.", CL);
    let mut eval_recall = Family::new("eval_recall_at_100", "Recall@100 of a ranked list.", CL);
    let mut eval_mrr = Family::new("eval_mrr_at_10", "MRR@10 of a ranked list.", CL);
    let mut overhead_ratio = Family::new(
        "overhead_ratio",
        "Time of sparse + fusion + rerank over the dense stage's (the rule: at most 0.10).",
        C,
    );
    let mut overhead_pairs = Family::new(
        "overhead_rerank_pairs",
        "(query, passage) pairs the CrossEncoder scored.",
        C,
    );
    let mut overhead_limit = Family::new(
        "overhead_limit",
        "The limit overhead_ratio is held to: rerank.budget when set, else the rule's 0.10.",
        C,
    );
    let mut budget_depth = Family::new(
        "rerank_budget_depth",
        "Candidates per query the rerank budget's plan chose.",
        C,
    );
    let mut budget_predicted = Family::new(
        "rerank_budget_predicted_ratio",
        "Overhead ratio the rerank budget's plan predicted.",
        C,
    );
    let mut budget_held = Family::new(
        "rerank_budget_held",
        "1 when sparse + fusion + rerank stayed within the rerank budget, else 0.",
        C,
    );

    run_info.push(vec![run_id.to_string(), snake_case(&status)], 1.0);
    run_start.push(Vec::new(), started_unix);
    run_end.push(Vec::new(), finished_unix);
    run_success.push(Vec::new(), flag(status == RunStatus::Ok));

    for report in collections {
        let name = report.name.as_str();
        let c = || vec![name.to_string()];
        collection_ok.push(c(), flag(report.status == CollectionStatus::Ok));
        chunks.push(c(), count(report.chunks));
        points.push(c(), count(report.points));
        skipped_chunks.push(c(), count(report.skipped.total));
        for (reason, n) in &report.skipped.by_reason {
            skipped.push(vec![name.to_string(), reason.clone()], count(*n));
        }

        for (stage, stage_report) in &report.stages {
            let stage = stage.as_str();
            stage_status.push(
                vec![
                    name.to_string(),
                    stage.to_string(),
                    snake_case(&stage_report.status),
                ],
                1.0,
            );
            for run in &stage_report.runs {
                let csm = || vec![name.to_string(), stage.to_string(), run.model.clone()];
                let StageRun {
                    items,
                    tokens,
                    batches,
                    retries,
                    fallbacks,
                    missing,
                    latency_s,
                    items_per_s,
                    tokens_per_s,
                    ..
                } = *run;
                stage_items.push(csm(), count(items));
                stage_tokens.push(csm(), count(tokens));
                stage_batches.push(csm(), count(batches));
                stage_latency.push(csm(), latency_s);
                stage_items_rate.push(csm(), items_per_s);
                stage_tokens_rate.push(csm(), tokens_per_s);
                stage_retries.push(csm(), count(retries));
                stage_fallbacks.push(csm(), count(fallbacks));
                stage_missing.push(csm(), count(missing));
                if let Some(bytes) = run.peak_rss_bytes {
                    stage_peak_rss.push(csm(), bytes as f64);
                }
                for (reason, n) in &run.failure_reasons {
                    let mut labels = csm();
                    labels.push(reason.clone());
                    stage_failures.push(labels, count(*n));
                }
            }
        }

        if let Some(ranking) = &report.ranking {
            queries.push(c(), count(ranking.queries));
            failed_queries.push(c(), count(ranking.failed_queries));
        }

        // Only the per-list numbers: `evaluation.qrels` names a file and stays out.
        if let Some(evaluation) = &report.evaluation {
            for (list, metrics) in &evaluation.lists {
                let cl = || vec![name.to_string(), list.clone()];
                eval_ndcg.push(cl(), metrics.ndcg_at_10);
                eval_recall.push(cl(), metrics.recall_at_100);
                eval_mrr.push(cl(), metrics.mrr_at_10);
            }
        }
        if let Some(overhead) = &report.overhead {
            if let Some(ratio) = overhead.ratio {
                overhead_ratio.push(c(), ratio);
            }
            overhead_pairs.push(c(), count(overhead.rerank_pairs));
            overhead_limit.push(c(), overhead.limit);
            if let Some(plan) = &overhead.rerank_budget {
                budget_depth.push(c(), count(plan.depth));
                budget_predicted.push(c(), plan.predicted_ratio);
                budget_held.push(c(), flag(plan.held));
            }
        }
    }

    let families = [
        run_info,
        run_start,
        run_end,
        run_success,
        collection_ok,
        chunks,
        points,
        skipped_chunks,
        skipped,
        stage_status,
        stage_items,
        stage_tokens,
        stage_batches,
        stage_latency,
        stage_items_rate,
        stage_tokens_rate,
        stage_retries,
        stage_fallbacks,
        stage_missing,
        stage_peak_rss,
        stage_failures,
        queries,
        failed_queries,
        eval_ndcg,
        eval_recall,
        eval_mrr,
        overhead_ratio,
        overhead_pairs,
        overhead_limit,
        budget_depth,
        budget_predicted,
        budget_held,
    ];

    let mut out = String::new();
    for family in families {
        family.render_into(&mut out);
    }
    out
}

/// Writes rendered metrics to `path` atomically (temp file beside it, fsync, rename).
pub fn write(path: &Path, text: &str) -> std::io::Result<()> {
    crate::export::write_atomic(path, text.as_bytes())
}

/// One metric family: its samples, each a list of label values (in `labels` order) and a value.
struct Family {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    samples: Vec<(Vec<String>, f64)>,
}

impl Family {
    fn new(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Self {
        Self {
            name,
            help,
            labels,
            samples: Vec::new(),
        }
    }

    fn push(&mut self, values: Vec<String>, value: f64) {
        debug_assert_eq!(values.len(), self.labels.len(), "{}", self.name);
        self.samples.push((values, value));
    }

    /// Appends HELP, TYPE and the sorted, de-duplicated samples; nothing when there are none.
    fn render_into(mut self, out: &mut String) {
        if self.samples.is_empty() {
            return;
        }
        // Stable: among equal label sets the first pushed stays first, and is the one kept.
        self.samples.sort_by(|a, b| a.0.cmp(&b.0));
        let before = self.samples.len();
        self.samples.dedup_by(|later, earlier| later.0 == earlier.0);
        if self.samples.len() != before {
            tracing::warn!(
                metric = self.name,
                dropped = before - self.samples.len(),
                "duplicate metric series dropped (first kept)"
            );
        }

        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "# HELP {PREFIX}{} {}",
            self.name,
            escape_help(self.help)
        );
        let _ = writeln!(out, "# TYPE {PREFIX}{} gauge", self.name);
        for (values, value) in &self.samples {
            out.push_str(PREFIX);
            out.push_str(self.name);
            if !self.labels.is_empty() {
                out.push('{');
                for (i, (label, v)) in self.labels.iter().zip(values).enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{label}=\"{}\"", escape_label_value(v));
                }
                out.push('}');
            }
            out.push(' ');
            out.push_str(&format_value(*value));
            out.push('\n');
        }
    }
}

fn count(n: usize) -> f64 {
    n as f64
}

fn flag(on: bool) -> f64 {
    if on {
        1.0
    } else {
        0.0
    }
}

/// The serde (snake_case) name of a unit enum variant, as the manifest spells it.
fn snake_case<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => "unknown".to_string(),
    }
}

/// A sample value as the format spells it: Go float syntax, `NaN`, `+Inf`, `-Inf`.
fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_string()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else {
        // Rust's shortest round-trip form: no exponent, parses as a Go float.
        format!("{value}")
    }
}

/// Label values escape backslash, double quote and line feed.
fn escape_label_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for ch in value.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            other => out.push(other),
        }
    }
    out
}

/// HELP text escapes backslash and line feed.
fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::Metrics;
    use crate::export::manifest::{
        EvaluationReport, FailureClass, RankingReport, SkippedSummary, StageReport, StageStatus,
    };
    use crate::stage::Stage;
    use std::collections::{BTreeMap, HashSet};

    const QRELS: &str = "file:/secret/data/qrels-private.tsv";

    fn stage_run(model: &str, items: usize, tokens: usize, latency_s: f64) -> StageRun {
        StageRun {
            model: model.to_string(),
            items,
            tokens,
            max_batch_tokens: 0,
            padded_tokens: tokens + 10,
            batches: 3,
            min_batch_size: 1,
            max_batch_size: 8,
            mean_batch_size: 4.5,
            truncated: 1,
            retries: 2,
            fallbacks: 0,
            missing: 0,
            failure_reasons: BTreeMap::new(),
            peak_rss_bytes: Some(1 << 30),
            dispatch: None,
            memory: None,
            latency_s,
            items_per_s: items as f64 / latency_s,
            tokens_per_s: tokens as f64 / latency_s,
        }
    }

    fn report(name: &str) -> CollectionReport {
        let dense = stage_run("dense", 12, 340, 0.5);
        let mut sparse = stage_run("splade", 12, 340, 2.0);
        sparse.fallbacks = 3;
        sparse.missing = 1;
        sparse.failure_reasons.insert("non_finite".to_string(), 4);
        let mut stages = BTreeMap::new();
        stages.insert(
            Stage::Dense,
            StageReport {
                status: StageStatus::Ok,
                detail: None,
                runs: vec![dense],
            },
        );
        stages.insert(
            Stage::Sparse,
            StageReport {
                status: StageStatus::Ok,
                detail: None,
                runs: vec![sparse],
            },
        );
        stages.insert(
            Stage::Rerank,
            StageReport::with_status(StageStatus::NotAvailable, Some("no model".to_string())),
        );
        let mut lists = BTreeMap::new();
        lists.insert(
            "dense".to_string(),
            Metrics {
                ndcg_at_10: 0.625,
                recall_at_100: 0.875,
                mrr_at_10: 0.5,
                queries: 4,
            },
        );
        lists.insert(
            "fused".to_string(),
            Metrics {
                ndcg_at_10: 0.75,
                recall_at_100: 1.0,
                mrr_at_10: 0.25,
                queries: 4,
            },
        );
        let mut by_reason = BTreeMap::new();
        by_reason.insert("empty_text".to_string(), 2);
        CollectionReport {
            name: name.to_string(),
            status: CollectionStatus::Ok,
            failure: None,
            error: None,
            files: 2,
            chunks: 12,
            skipped: SkippedSummary {
                total: 2,
                by_reason,
                examples: vec!["/secret/data/a.jsonl:3: empty_text".to_string()],
            },
            points: 12,
            failed_chunks: 0,
            failed_chunk_ids: Vec::new(),
            windows: 1,
            resumed_windows: 0,
            input_sha256: None,
            outputs: vec!["docs/points.jsonl".to_string()],
            stages,
            ranking: Some(RankingReport {
                queries_source: "file:/secret/data/queries.jsonl".to_string(),
                queries: 4,
                failed_queries: 1,
                fusion: "rrf k=60".to_string(),
                retrieval: None,
                qdrant: None,
                auto: None,
            }),
            evaluation: Some(EvaluationReport {
                qrels: QRELS.to_string(),
                coverage: Default::default(),
                lists,
            }),
            overhead: None,
            reuse: None,
        }
    }

    fn failed_report(name: &str) -> CollectionReport {
        let mut stages = BTreeMap::new();
        stages.insert(
            Stage::Dense,
            StageReport::with_status(StageStatus::Failed, Some("oom".to_string())),
        );
        stages.insert(
            Stage::Sparse,
            StageReport::with_status(StageStatus::Skipped, None),
        );
        CollectionReport {
            name: name.to_string(),
            status: CollectionStatus::Failed,
            failure: Some(FailureClass::Model),
            error: Some("dense failed".to_string()),
            files: 1,
            chunks: 5,
            skipped: SkippedSummary::default(),
            points: 0,
            failed_chunks: 0,
            failed_chunk_ids: Vec::new(),
            windows: 0,
            resumed_windows: 0,
            input_sha256: None,
            outputs: Vec::new(),
            stages,
            ranking: None,
            evaluation: None,
            overhead: None,
            reuse: None,
        }
    }

    type Labels = Vec<(String, String)>;

    #[derive(Debug)]
    struct Sample {
        name: String,
        labels: Labels,
        value: f64,
    }

    fn is_metric_name(name: &str) -> bool {
        let mut chars = name.chars();
        matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }

    fn is_label_name(name: &str) -> bool {
        let mut chars = name.chars();
        matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    }

    /// `{a="x",b="y"}` → labels and the rest of the line after `}`.
    fn parse_labels(text: &str) -> Result<(Labels, &str), String> {
        let mut rest = text.strip_prefix('{').ok_or("expected {")?;
        let mut labels = Vec::new();
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        loop {
            let eq = rest.find('=').ok_or("label without =")?;
            let name = &rest[..eq];
            if !is_label_name(name) || name.starts_with("__") {
                return Err(format!("bad label name {name:?}"));
            }
            rest = rest[eq + 1..]
                .strip_prefix('"')
                .ok_or("label value not quoted")?;
            let mut value = String::new();
            let mut chars = rest.char_indices();
            let end = loop {
                match chars.next() {
                    None => return Err("unterminated label value".to_string()),
                    Some((i, '"')) => break i,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, '\\')) => value.push('\\'),
                        Some((_, '"')) => value.push('"'),
                        Some((_, 'n')) => value.push('\n'),
                        other => return Err(format!("bad escape {other:?}")),
                    },
                    Some((_, '\n')) => return Err("raw newline in label value".to_string()),
                    Some((_, c)) => value.push(c),
                }
            };
            if labels.iter().any(|(n, _): &(String, String)| n == name) {
                return Err(format!("label {name} twice"));
            }
            labels.push((name.to_string(), value));
            rest = &rest[end + 1..];
            if let Some(after) = rest.strip_prefix('}') {
                return Ok((labels, after));
            }
            rest = rest.strip_prefix(',').ok_or("expected , or }")?;
        }
    }

    /// A strict parser for what [`render`] may emit: HELP/TYPE comments and `name{labels} value`
    /// lines, every family introduced by one HELP and one TYPE before its samples, families not
    /// interleaved, no duplicate series, a trailing newline.
    fn parse(text: &str) -> Result<Vec<Sample>, String> {
        if !text.ends_with('\n') {
            return Err("no trailing newline".to_string());
        }
        let mut helped = HashSet::new();
        let mut typed = HashSet::new();
        let mut finished: HashSet<String> = HashSet::new();
        let mut current: Option<String> = None;
        let mut series = HashSet::new();
        let mut samples = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let at = |msg: String| format!("line {}: {msg}: {line:?}", n + 1);
            if line.is_empty() {
                return Err(at("empty line".to_string()));
            }
            if let Some(comment) = line.strip_prefix("# ") {
                let (keyword, rest) = comment
                    .split_once(' ')
                    .ok_or_else(|| at("comment".into()))?;
                let (name, body) = rest.split_once(' ').ok_or_else(|| at("comment".into()))?;
                if !is_metric_name(name) {
                    return Err(at(format!("bad name {name}")));
                }
                if current.as_deref() != Some(name) {
                    if let Some(previous) = current.take() {
                        finished.insert(previous);
                    }
                    if finished.contains(name) {
                        return Err(at(format!("family {name} interleaved")));
                    }
                    current = Some(name.to_string());
                }
                match keyword {
                    "HELP" => {
                        if !helped.insert(name.to_string()) {
                            return Err(at(format!("HELP twice for {name}")));
                        }
                        if body.is_empty() {
                            return Err(at("empty HELP".to_string()));
                        }
                    }
                    "TYPE" => {
                        if !typed.insert(name.to_string()) {
                            return Err(at(format!("TYPE twice for {name}")));
                        }
                        if body != "gauge" {
                            return Err(at(format!("type {body}")));
                        }
                    }
                    other => return Err(at(format!("unknown comment {other}"))),
                }
                continue;
            }
            if line.starts_with('#') {
                return Err(at("stray comment".to_string()));
            }
            let name_end = line
                .find(['{', ' '])
                .ok_or_else(|| at("no value".to_string()))?;
            let name = &line[..name_end];
            if !is_metric_name(name) {
                return Err(at(format!("bad name {name:?}")));
            }
            let (labels, rest) = if line[name_end..].starts_with('{') {
                parse_labels(&line[name_end..]).map_err(at)?
            } else {
                (Vec::new(), &line[name_end..])
            };
            let value_text = rest
                .strip_prefix(' ')
                .ok_or_else(|| at("no space before value".to_string()))?;
            let value = match value_text {
                "NaN" => f64::NAN,
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v if v.contains(' ') => return Err(at("extra fields".to_string())),
                v => v
                    .parse::<f64>()
                    .map_err(|e| at(format!("value {v:?}: {e}")))?,
            };
            if current.as_deref() != Some(name) {
                return Err(at(format!("sample of {name} outside its family block")));
            }
            if !helped.contains(name) || !typed.contains(name) {
                return Err(at(format!("{name} without HELP and TYPE before it")));
            }
            if !series.insert((name.to_string(), labels.clone())) {
                return Err(at("duplicate series".to_string()));
            }
            samples.push(Sample {
                name: name.to_string(),
                labels,
                value,
            });
        }
        Ok(samples)
    }

    fn get(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let found: Vec<&Sample> = samples
            .iter()
            .filter(|s| {
                s.name == format!("{PREFIX}{name}")
                    && s.labels.len() == labels.len()
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.iter().any(|(a, b)| a == k && b == v))
            })
            .collect();
        assert!(found.len() <= 1, "{name} {labels:?} matched twice");
        found.first().map(|s| s.value)
    }

    fn render_two(status: RunStatus) -> String {
        render(
            "run-42",
            status,
            1_700_000_000.25,
            1_700_000_123.5,
            &[report("docs"), failed_report("wiki")],
        )
    }

    #[test]
    fn output_parses_strictly_and_is_sorted() {
        let text = render_two(RunStatus::Partial);
        let samples = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert!(samples.iter().all(|s| s.name.starts_with(PREFIX)));
        // Samples within each family are sorted by label values.
        for pair in samples.windows(2) {
            if pair[0].name == pair[1].name {
                let a: Vec<&String> = pair[0].labels.iter().map(|(_, v)| v).collect();
                let b: Vec<&String> = pair[1].labels.iter().map(|(_, v)| v).collect();
                assert!(a < b, "{pair:?} out of order");
            }
        }
        // Deterministic.
        assert_eq!(text, render_two(RunStatus::Partial));
    }

    #[test]
    fn the_parser_rejects_malformed_text() {
        let ok = "# HELP a_b x\n# TYPE a_b gauge\na_b{c=\"d\"} 1\n";
        assert!(parse(ok).is_ok());
        for bad in [
            "# HELP a_b x\n# TYPE a_b gauge\na_b{c=\"d\"} 1",
            "a_b 1\n",
            "# HELP a_b x\na_b 1\n",
            "# HELP a_b x\n# HELP a_b x\n# TYPE a_b gauge\na_b 1\n",
            "# HELP a_b x\n# TYPE a_b gauge\na_b{c=\"d\\q\"} 1\n",
            "# HELP a_b x\n# TYPE a_b gauge\na_b{c=\"d} 1\n",
            "# HELP a_b x\n# TYPE a_b gauge\na_b{c=\"d\"} one\n",
            "# HELP a_b x\n# TYPE a_b gauge\na_b{c=\"d\"} 1\na_b{c=\"d\"} 2\n",
            "# HELP 1a x\n# TYPE 1a gauge\n1a 1\n",
            "# HELP a x\n# TYPE a gauge\n# HELP b x\n# TYPE b gauge\nb 1\na 1\n",
        ] {
            assert!(parse(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn expected_series_have_the_right_values() {
        let text = render_two(RunStatus::Ok);
        let s = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));

        assert_eq!(
            get(&s, "run_info", &[("run_id", "run-42"), ("status", "ok")]),
            Some(1.0)
        );
        assert_eq!(
            get(&s, "run_start_timestamp_seconds", &[]),
            Some(1_700_000_000.25)
        );
        assert_eq!(
            get(&s, "run_end_timestamp_seconds", &[]),
            Some(1_700_000_123.5)
        );
        assert_eq!(get(&s, "run_success", &[]), Some(1.0));

        let docs = [("collection", "docs")];
        let wiki = [("collection", "wiki")];
        assert_eq!(get(&s, "collection_ok", &docs), Some(1.0));
        assert_eq!(get(&s, "collection_ok", &wiki), Some(0.0));
        assert_eq!(get(&s, "chunks", &docs), Some(12.0));
        assert_eq!(get(&s, "chunks", &wiki), Some(5.0));
        assert_eq!(get(&s, "points", &docs), Some(12.0));
        assert_eq!(get(&s, "points", &wiki), Some(0.0));
        assert_eq!(get(&s, "skipped_chunks", &docs), Some(2.0));
        assert_eq!(get(&s, "skipped_chunks", &wiki), Some(0.0));
        assert_eq!(
            get(
                &s,
                "skipped",
                &[("collection", "docs"), ("reason", "empty_text")]
            ),
            Some(2.0)
        );
        assert_eq!(s.iter().filter(|x| x.name.ends_with("_skipped")).count(), 1);

        let status = |stage: &str, status: &str| {
            get(
                &s,
                "stage_status",
                &[("collection", "docs"), ("stage", stage), ("status", status)],
            )
        };
        assert_eq!(status("dense", "ok"), Some(1.0));
        assert_eq!(status("sparse", "ok"), Some(1.0));
        assert_eq!(status("rerank", "not_available"), Some(1.0));
        assert_eq!(
            get(
                &s,
                "stage_status",
                &[
                    ("collection", "wiki"),
                    ("stage", "dense"),
                    ("status", "failed")
                ]
            ),
            Some(1.0)
        );
        assert_eq!(
            get(
                &s,
                "stage_status",
                &[
                    ("collection", "wiki"),
                    ("stage", "sparse"),
                    ("status", "skipped")
                ]
            ),
            Some(1.0)
        );
        // One status sample per stage.
        assert_eq!(
            s.iter()
                .filter(|x| x.name.ends_with("_stage_status"))
                .count(),
            5
        );

        let dense = [
            ("collection", "docs"),
            ("stage", "dense"),
            ("model", "dense"),
        ];
        let sparse = [
            ("collection", "docs"),
            ("stage", "sparse"),
            ("model", "splade"),
        ];
        assert_eq!(get(&s, "stage_items", &dense), Some(12.0));
        assert_eq!(get(&s, "stage_tokens", &dense), Some(340.0));
        assert_eq!(get(&s, "stage_batches", &dense), Some(3.0));
        assert_eq!(get(&s, "stage_latency_seconds", &dense), Some(0.5));
        assert_eq!(get(&s, "stage_items_per_second", &dense), Some(24.0));
        assert_eq!(get(&s, "stage_tokens_per_second", &dense), Some(680.0));
        assert_eq!(get(&s, "stage_retries", &dense), Some(2.0));
        assert_eq!(get(&s, "stage_fallbacks", &dense), Some(0.0));
        assert_eq!(get(&s, "stage_missing", &dense), Some(0.0));
        assert_eq!(get(&s, "stage_latency_seconds", &sparse), Some(2.0));
        assert_eq!(get(&s, "stage_items_per_second", &sparse), Some(6.0));
        assert_eq!(get(&s, "stage_fallbacks", &sparse), Some(3.0));
        assert_eq!(get(&s, "stage_missing", &sparse), Some(1.0));
        assert_eq!(
            get(
                &s,
                "stage_failures",
                &[
                    ("collection", "docs"),
                    ("stage", "sparse"),
                    ("model", "splade"),
                    ("reason", "non_finite")
                ]
            ),
            Some(4.0)
        );
        assert_eq!(
            s.iter()
                .filter(|x| x.name.ends_with("_stage_failures"))
                .count(),
            1
        );
        // Stages without runs have only a status.
        assert!(!s.iter().any(
            |x| x.name.ends_with("_stage_items") && x.labels.iter().any(|(_, v)| v == "rerank")
        ));

        assert_eq!(get(&s, "queries", &docs), Some(4.0));
        assert_eq!(get(&s, "failed_queries", &docs), Some(1.0));
        assert_eq!(get(&s, "queries", &wiki), None);

        let list = |l: &'static str| [("collection", "docs"), ("list", l)];
        assert_eq!(get(&s, "eval_ndcg_at_10", &list("dense")), Some(0.625));
        assert_eq!(get(&s, "eval_recall_at_100", &list("dense")), Some(0.875));
        assert_eq!(get(&s, "eval_mrr_at_10", &list("dense")), Some(0.5));
        assert_eq!(get(&s, "eval_ndcg_at_10", &list("fused")), Some(0.75));
        assert_eq!(get(&s, "eval_recall_at_100", &list("fused")), Some(1.0));
        assert_eq!(get(&s, "eval_mrr_at_10", &list("fused")), Some(0.25));
    }

    #[test]
    fn run_success_is_zero_unless_ok() {
        for status in [RunStatus::Partial, RunStatus::Failed] {
            let text = render_two(status);
            let s = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
            assert_eq!(get(&s, "run_success", &[]), Some(0.0), "{status:?}");
            let name = snake_case(&status);
            assert_eq!(
                get(&s, "run_info", &[("run_id", "run-42"), ("status", &name)]),
                Some(1.0)
            );
        }
        assert!(render_two(RunStatus::Partial).contains("status=\"partial\""));
    }

    #[test]
    fn label_values_are_escaped() {
        let name = "we\"ird\\na\nme";
        let text = render("r\"1", RunStatus::Ok, 0.0, 1.0, &[report(name)]);
        assert!(
            text.contains(r#"embed_collections_chunks{collection="we\"ird\\na\nme"} 12"#),
            "{text}"
        );
        assert!(text.contains(r#"run_id="r\"1""#), "{text}");
        let s = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(get(&s, "chunks", &[("collection", name)]), Some(12.0));
        assert_eq!(
            get(
                &s,
                "stage_items",
                &[("collection", name), ("stage", "dense"), ("model", "dense")]
            ),
            Some(12.0)
        );
    }

    #[test]
    fn no_paths_or_sources_leak() {
        let text = render_two(RunStatus::Ok);
        for secret in [QRELS, "/secret", "qrels", "queries.jsonl", "points.jsonl"] {
            assert!(!text.contains(secret), "{secret} in\n{text}");
        }
    }

    #[test]
    fn special_values_and_duplicates() {
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_value(3.0), "3");
        assert_eq!(format_value(1e-7).parse::<f64>().ok(), Some(1e-7));

        let mut twice = report("docs");
        if let Some(dense) = twice.stages.get_mut(&Stage::Dense) {
            let mut again = dense.runs[0].clone();
            again.items = 99;
            dense.runs.push(again);
        }
        let text = render("r", RunStatus::Ok, 0.0, 1.0, &[twice]);
        let s = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(
            get(
                &s,
                "stage_items",
                &[
                    ("collection", "docs"),
                    ("stage", "dense"),
                    ("model", "dense")
                ]
            ),
            Some(12.0)
        );
    }

    #[test]
    fn empty_run_still_has_run_series() {
        let text = render("r", RunStatus::Failed, 5.0, 6.0, &[]);
        let s = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(s.len(), 4);
        assert_eq!(get(&s, "run_success", &[]), Some(0.0));
    }

    #[test]
    fn write_replaces_the_file() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("sub").join("metrics.prom");
        write(&path, "old\n")?;
        let text = render_two(RunStatus::Ok);
        write(&path, &text)?;
        assert_eq!(std::fs::read_to_string(&path)?, text);
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap_or(dir.path()))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("metrics.prom")]);
        Ok(())
    }
}
