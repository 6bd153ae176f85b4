//! Ranking for queries: dense and sparse retrieval, fusion, CrossEncoder rerank, evaluation.
//!
//! Queries come from a file (`rerank.queries`, or the collection's own BEIR `queries.jsonl`) or,
//! without one, from **probe mode**: a fixed, seeded sample of chunks, each turned into a query
//! (its title, else a heading in its metadata, else its first sentence) whose right answer is the
//! chunk itself. Probe metrics (is the source chunk in the top 10, MRR@10) are a health check
//! that catches a broken model on every run; probe output is labelled `"source": "probe"`.
//!
//! Per query: each dense model retrieves its top `fusion.depth` by inner product (with its own
//! query prompt, from its own column block of the stored vectors), SPLADE retrieves its top
//! `fusion.depth` from an inverted index (metadata-fallback vectors included: they share the
//! vocabulary space), all the lists are fused with their weights, and the CrossEncoder scores
//! the top `rerank.candidates` fused candidates. A query whose pairs cannot all be scored is
//! marked failed with the reason and keeps only its fused list: no invented scores.

use super::reuse::{text_sha256, PairScores};
use super::search::Retrieved;
use crate::batching::{BatchBudget, BatchStats};
use crate::config::RunConfig;
use crate::dispatch::FaultInjector;
use crate::eval::{self, Metrics, Qrels};
use crate::export::StageRun;
use crate::fusion::auto::{self, Choice, MenuEntry};
use crate::fusion::{FusedHit, Fusion};
use crate::input::{Chunk, Query};
use crate::models::tokenize::Encoded;
use crate::models::{run_encoded, CrossEncoder, DenseEmbedder, PairScore, Replicas, SpladeEncoder};
use crate::ranking::blend::blend;
use crate::ranking::budget::{BudgetInputs, RerankPlan};
pub use crate::ranking::{QuerySet, QuerySource, QueryStatus, RankedCandidate, RankedQuery};
use crate::retrieval::Hit;
use crate::telemetry::progress::SharedProgress;
use crate::vectors::SparseVector;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// Seed of the probe sample: fixed, so probe queries are the same on every run.
const PROBE_SEED: &[u8] = b"embed-collections probe v1";
/// Probe query text is cut to this many characters.
const PROBE_QUERY_CHARS: usize = 300;

/// Picks the probe queries of a collection while its chunks stream past (see the module docs):
/// the `count` chunks with the smallest seeded hash of their id among those that give a probe
/// text. Only those `count` candidates are held, never the collection.
pub struct ProbeSampler {
    count: usize,
    /// Max-heap on (hash, position): the worst kept candidate is on top.
    kept: std::collections::BinaryHeap<ProbeCandidate>,
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct ProbeCandidate {
    hash: [u8; 32],
    position: usize,
    id: String,
    text: String,
}

impl ProbeSampler {
    pub fn new(count: usize) -> Self {
        Self {
            count,
            kept: std::collections::BinaryHeap::new(),
        }
    }

    /// Considers the chunk at `position` of the collection.
    pub fn offer(&mut self, position: usize, chunk: &Chunk) {
        if self.count == 0 {
            return;
        }
        let mut hasher = Sha256::new();
        hasher.update(PROBE_SEED);
        hasher.update(chunk.id.as_str().as_bytes());
        let hash: [u8; 32] = hasher.finalize().into();
        if self.kept.len() == self.count {
            match self.kept.peek() {
                Some(worst) if (hash, position) < (worst.hash, worst.position) => {}
                _ => return,
            }
        }
        let Some(text) = probe_text(chunk) else {
            return;
        };
        if self.kept.len() == self.count {
            self.kept.pop();
        }
        self.kept.push(ProbeCandidate {
            hash,
            position,
            id: chunk.id.as_str().to_string(),
            text,
        });
    }

    pub fn finish(self) -> QuerySet {
        let mut queries = Vec::new();
        let mut targets = Vec::new();
        for candidate in self.kept.into_sorted_vec() {
            queries.push(Query {
                id: format!("probe:{}", candidate.id),
                text: candidate.text,
            });
            targets.push(candidate.id);
        }
        QuerySet {
            source: QuerySource::Probe,
            queries,
            targets: Some(targets),
        }
    }
}

/// A chunk's title, else a heading from its metadata, else its first sentence.
fn probe_text(chunk: &Chunk) -> Option<String> {
    let heading = ["title", "heading", "section", "section_title"]
        .iter()
        .find_map(|key| chunk.metadata.get(*key).and_then(|v| v.as_str()));
    let text = match chunk
        .title
        .as_deref()
        .filter(|t| !t.trim().is_empty())
        .or(heading)
    {
        Some(title) => title.trim().to_string(),
        None => first_sentence(&chunk.text),
    };
    let text: String = text.chars().take(PROBE_QUERY_CHARS).collect();
    (!text.trim().is_empty()).then_some(text)
}

fn first_sentence(text: &str) -> String {
    let text = text.trim_start();
    let mut end = text.len();
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let boundary = c == '\n'
            || (matches!(c, '.' | '?' | '!')
                && chars.peek().is_none_or(|(_, next)| next.is_whitespace()));
        if boundary {
            end = i + c.len_utf8();
            break;
        }
    }
    text[..end].trim().to_string()
}

/// Query vectors made by the dense stage (each model with its query prompt) and the sparse
/// stage.
pub struct QueryVectors {
    /// Per dense model (config order): one vector per query, or why there are none.
    pub dense: Vec<Result<Vec<Vec<f32>>, String>>,
    /// One SPLADE vector per query (`None` where its encoding failed); `None` without sparse.
    pub sparse: Option<Vec<Option<SparseVector>>>,
}

/// The batch budget for encoding queries.
pub fn query_budget(config: &RunConfig) -> BatchBudget {
    BatchBudget {
        max_tokens: config.dense.batch_tokens,
        max_items: config.dense.max_batch_size,
    }
}

/// Dense query vectors with the model's query prompt.
pub fn encode_dense_queries(
    embedder: &Replicas<DenseEmbedder>,
    set: &QuerySet,
    budget: BatchBudget,
) -> Result<Vec<Vec<f32>>, String> {
    let texts: Vec<&str> = set.queries.iter().map(|q| q.text.as_str()).collect();
    embedder
        .embed_queries(&texts, budget)
        .map(|output| output.vectors)
        .map_err(|err| {
            warn!("dense query encoding failed: {err}");
            format!("dense query encoding failed: {err}")
        })
}

/// Fuses every query of `set` from the lists retrieval found ([`super::search::search`]; the
/// fusion stage's time includes the search's): each dense model's (config order, as
/// `query_vectors.dense`) and, when the sparse stage ran, the sparse one. Rerank comes after,
/// on the passages of the candidates ([`rerank_candidates`], [`rerank`]).
pub fn fuse_queries(
    collection: &str,
    set: &QuerySet,
    retrieved: Retrieved,
    query_vectors: &QueryVectors,
    config: &RunConfig,
    fusion: &Fusion,
) -> (Vec<RankedQuery>, StageRun) {
    let started = Instant::now();
    let retrieval_time = Duration::from_secs_f64(retrieved.report.seconds);
    let Retrieved {
        dense: retrieved_dense,
        sparse: retrieved_sparse,
        ..
    } = retrieved;
    let depth = config.fusion.depth;
    let texts: Vec<&str> = set.queries.iter().map(|q| q.text.as_str()).collect();
    let mut reasons: Vec<Option<String>> = vec![None; texts.len()];

    // Dense lists, per model with its query prompt: [model][query] → hits. A model whose
    // query encoding failed contributes empty lists and fails every query with its reason.
    let dense_hits: Vec<Vec<Vec<Hit>>> = retrieved_dense
        .into_iter()
        .zip(&query_vectors.dense)
        .map(|(hits, vectors)| match vectors {
            Ok(_) => hits,
            Err(reason) => {
                reasons.iter_mut().for_each(|r| *r = Some(reason.clone()));
                vec![Vec::new(); texts.len()]
            }
        })
        .collect();
    // Sparse lists; a query whose SPLADE encoding fails is ranked on dense alone.
    let sparse_hits: Option<Vec<Option<Vec<Hit>>>> = retrieved_sparse;

    let queries: Vec<RankedQuery> = set
        .queries
        .iter()
        .enumerate()
        .map(|(i, query)| {
            let sparse = sparse_hits.as_ref().and_then(|all| all[i].clone());
            let dense: Vec<Vec<Hit>> = dense_hits.iter().map(|model| model[i].clone()).collect();
            let fused = fuse_lists(fusion, &dense, sparse.as_deref(), depth);
            let ranked = unranked(&fused);
            let mut reason = reasons[i].clone();
            if reason.is_none() && sparse_hits.is_some() && sparse.is_none() {
                reason = Some("sparse query encoding failed; fused on dense alone".to_string());
            }
            RankedQuery {
                id: query.id.clone(),
                text_sha256: hex::encode(Sha256::digest(query.text.as_bytes())),
                status: if reasons[i].is_some() {
                    QueryStatus::Failed
                } else {
                    QueryStatus::Fused
                },
                reason,
                dense,
                sparse,
                fused,
                ranked,
            }
        })
        .collect();
    let fusion_stats = BatchStats {
        items: queries.len(),
        ..BatchStats::default()
    };
    let fusion_run = StageRun::new(
        fusion.method.as_str(),
        &fusion_stats,
        0,
        retrieval_time + started.elapsed(),
    );

    let failed = queries
        .iter()
        .filter(|q| q.status == QueryStatus::Failed)
        .count();
    info!(collection, queries = queries.len(), failed, "fusion done");
    (queries, fusion_run)
}

/// One query's lists fused by `fusion`, cut to `depth`.
pub fn fuse_lists(
    fusion: &Fusion,
    dense: &[Vec<Hit>],
    sparse: Option<&[Hit]>,
    depth: usize,
) -> Vec<FusedHit> {
    let dense: Vec<&[Hit]> = dense.iter().map(Vec::as_slice).collect();
    let mut fused = fusion.fuse(&dense, sparse);
    fused.truncate(depth);
    fused
}

/// The fused list as a final list, before (or without) rerank.
fn unranked(fused: &[FusedHit]) -> Vec<RankedCandidate> {
    fused
        .iter()
        .map(|hit| RankedCandidate {
            fused: hit.clone(),
            rerank: None,
            blend_score: None,
        })
        .collect()
}

/// Fuses every query again with `fusion` (the one `auto` chose), from the lists it holds.
pub fn refuse_queries(queries: &mut [RankedQuery], fusion: &Fusion, depth: usize) {
    for query in queries {
        query.fused = fuse_lists(fusion, &query.dense, query.sparse.as_deref(), depth);
        query.ranked = unranked(&query.fused);
    }
}

/// What `fusion.method = "auto"` did for a collection: the menu's choice, and the pairs the
/// CrossEncoder scored to judge it (kept, so the rerank stage does not score them again).
pub struct AutoFusion {
    pub menu: Vec<MenuEntry>,
    pub choice: Choice,
    /// Each entry's top [`auto::JUDGE_DEPTH`] per query (`tops[entry][query]`).
    pub tops: Vec<Vec<Vec<usize>>>,
    /// The pool's pairs: scored by the model, and taken from an earlier run (`--reuse`).
    pub scored: usize,
    pub reused: usize,
    pub seconds: f64,
    /// The pool's scores, by (query text, passage text) hash.
    pub scores: PairScores,
}

/// `fusion.method = "auto"` ([`crate::fusion::auto`]): pools every menu entry's top 10 per
/// query, scores the pool once with the CrossEncoder (pairs `earlier` holds are taken from it),
/// and chooses. `tops` are the menu's lists ([`auto_tops`]); `passages` holds the embedding text
/// of every pooled point ([`auto_pool`]).
#[allow(clippy::too_many_arguments)]
pub fn judge_fusions(
    ce: &Replicas<CrossEncoder>,
    set: &QuerySet,
    queries: &[RankedQuery],
    menu: Vec<MenuEntry>,
    tops: Vec<Vec<Vec<usize>>>,
    descriptions: &[String],
    passages: &std::collections::HashMap<usize, String>,
    config: &RunConfig,
    budget: BatchBudget,
    fault: Option<&FaultInjector>,
    earlier: Option<&PairScores>,
) -> AutoFusion {
    let started = Instant::now();
    let texts: Vec<&str> = set.queries.iter().map(|q| q.text.as_str()).collect();
    let query_hashes: Vec<[u8; 32]> = texts.iter().map(|t| text_sha256(t)).collect();
    // Every pooled (query, point) pair once.
    let mut pairs: Vec<(usize, usize)> = Vec::new();
    for q in 0..queries.len() {
        let mut pool: Vec<usize> = tops.iter().flat_map(|top| top[q].iter().copied()).collect();
        pool.sort_unstable();
        pool.dedup();
        pairs.extend(pool.into_iter().map(|point| (q, point)));
    }
    let passage = |point: usize| passages.get(&point).map_or("", String::as_str);
    // Each pooled passage hashed once (a point is pooled for many queries).
    let mut passage_hashes: std::collections::HashMap<usize, [u8; 32]> =
        std::collections::HashMap::new();
    for &(_, point) in &pairs {
        passage_hashes
            .entry(point)
            .or_insert_with(|| text_sha256(passage(point)));
    }
    let mut scores: std::collections::HashMap<(usize, usize), PairScore> =
        std::collections::HashMap::new();
    let mut todo: Vec<(usize, usize)> = Vec::new();
    let mut reused = 0;
    for &(q, point) in &pairs {
        match earlier.and_then(|e| e.get(&query_hashes[q], &passage_hashes[&point])) {
            Some(score) => {
                scores.insert((q, point), score);
                reused += 1;
            }
            None => todo.push((q, point)),
        }
    }
    let text_pairs: Vec<(&str, &str)> = todo
        .iter()
        .map(|&(q, point)| (texts[q], passage(point)))
        .collect();
    if let Ok(encodings) = ce.primary().tokenizer().encode_pairs(&text_pairs) {
        let shown = SharedProgress::new(
            config.telemetry.progress,
            "fusion auto",
            "pairs",
            encodings.len() as u64,
        );
        let outcome = run_encoded(
            &ce.workers(),
            &encodings,
            budget,
            fault,
            &|i| todo[i].0,
            &|n| shown.inc(n),
        );
        shown.finish();
        if let Ok(outcome) = outcome {
            for (&pair, result) in todo.iter().zip(outcome.results) {
                if let Ok(score) = result {
                    scores.insert(pair, score);
                }
            }
        }
    }
    let names: Vec<String> = menu.iter().map(|entry| entry.name.clone()).collect();
    // The judge's gain: the CrossEncoder's probability of relevance.
    let choice = auto::choose(&names, descriptions, &tops, |q, point| {
        scores
            .get(&(q, point))
            .map(|s| 1.0 / (1.0 + (-f64::from(s.logit)).exp()))
    });
    info!(
        chosen = %choice.name,
        queries = choice.queries,
        pairs = todo.len(),
        reused,
        "fusion auto: {}",
        choice.reason
    );
    let by_text = PairScores::from_pairs(
        scores
            .iter()
            .map(|(&(q, point), &score)| ((query_hashes[q], passage_hashes[&point]), score)),
    );
    AutoFusion {
        menu,
        choice,
        tops,
        scored: todo.len(),
        reused,
        seconds: started.elapsed().as_secs_f64(),
        scores: by_text,
    }
}

/// Every menu entry's top [`auto::JUDGE_DEPTH`] per query (nothing for a failed query).
pub fn auto_tops(
    menu: &[MenuEntry],
    queries: &[RankedQuery],
    depth: usize,
) -> Vec<Vec<Vec<usize>>> {
    menu.iter()
        .map(|entry| {
            queries
                .iter()
                .map(|query| {
                    if query.status == QueryStatus::Failed {
                        return Vec::new();
                    }
                    fuse_lists(&entry.fusion, &query.dense, query.sparse.as_deref(), depth)
                        .iter()
                        .take(auto::JUDGE_DEPTH)
                        .map(|hit| hit.index)
                        .collect()
                })
                .collect()
        })
        .collect()
}

/// The points `auto` pools: every point of the menu's lists ([`auto_tops`]), ascending and
/// without repeats.
pub fn auto_pool(tops: &[Vec<Vec<usize>>]) -> Vec<usize> {
    let mut pool: Vec<usize> = tops.iter().flatten().flatten().copied().collect();
    pool.sort_unstable();
    pool.dedup();
    pool
}

/// The points whose passages rerank needs: each rankable query's top `rerank.candidates`
/// fused candidates, ascending and without repeats.
pub fn rerank_candidates(queries: &[RankedQuery], candidates: usize) -> Vec<usize> {
    let mut needed: Vec<usize> = queries
        .iter()
        .filter(|q| q.status != QueryStatus::Failed)
        .flat_map(|q| q.fused.iter().take(candidates).map(|hit| hit.index))
        .collect();
    needed.sort_unstable();
    needed.dedup();
    needed
}

/// SPLADE vectors for queries; `None` for a query whose encoding failed.
pub fn encode_sparse_queries(
    encoders: &Replicas<SpladeEncoder>,
    set: &QuerySet,
    budget: BatchBudget,
) -> Vec<Option<SparseVector>> {
    let texts: Vec<&str> = set.queries.iter().map(|q| q.text.as_str()).collect();
    let texts = texts.as_slice();
    let Ok(encodings) = encoders.primary().tokenizer().encode_batch(texts) else {
        return vec![None; texts.len()];
    };
    match run_encoded(
        &encoders.workers(),
        &encodings,
        budget,
        None,
        &|i| i,
        &|_| {},
    ) {
        Ok(outcome) => outcome.results.into_iter().map(Result::ok).collect(),
        Err(_) => vec![None; texts.len()],
    }
}

/// A candidate position and its score, or why it has none.
type CandidateScore = (usize, Result<PairScore, String>);

/// What the rerank stage had spent before it started, for `rerank.budget`: the dense stage's
/// time and what the sparse stage and fusion took.
#[derive(Clone, Copy, Debug, Default)]
pub struct SpentBeforeRerank {
    pub dense_s: f64,
    pub sparse_s: f64,
    pub fusion_s: f64,
}

/// The rerank stage's outcome: its run (the pairs the model scored), the scores reused from
/// an earlier output, and the budget's plan when `rerank.budget` is set.
pub struct Reranked {
    pub run: StageRun,
    pub reused: usize,
    pub plan: Option<RerankPlan>,
}

/// One round of pairs through the CrossEncoder.
#[derive(Default)]
struct Round {
    model_s: f64,
    tokens: usize,
    items: usize,
    truncated: usize,
    stats: BatchStats,
    dispatch: Option<crate::dispatch::DispatchStats>,
}

impl Round {
    fn absorb(&mut self, other: Round) {
        self.model_s += other.model_s;
        self.tokens += other.tokens;
        self.items += other.items;
        self.truncated += other.truncated;
        self.stats.absorb(&other.stats);
        match (&mut self.dispatch, other.dispatch) {
            (Some(mine), Some(theirs)) => mine.absorb(&theirs),
            (mine @ None, theirs) => *mine = theirs,
            (Some(_), None) => {}
        }
    }
}

/// Runs the pairs at some candidate positions through the CrossEncoder.
struct RoundScorer<'a> {
    ce: &'a Replicas<CrossEncoder>,
    config: &'a RunConfig,
    budget: BatchBudget,
    fault: Option<&'a FaultInjector>,
    /// (query index, candidate position) of every pair.
    pairs: &'a [(usize, usize)],
    /// The pairs (indices into `pairs`) the model scores; `encodings[t]` is `todo[t]`'s.
    todo: &'a [usize],
    tokenized: bool,
}

impl RoundScorer<'_> {
    /// Scores the pairs at candidate positions `depths` into `scores` (indexed like
    /// `pairs`); their encodings are taken out of `encodings`.
    fn score(
        &self,
        depths: std::ops::Range<usize>,
        encodings: &mut [Encoded],
        scores: &mut [Option<Result<PairScore, String>>],
    ) -> Round {
        let (pairs, todo) = (self.pairs, self.todo);
        let chosen: Vec<usize> = (0..todo.len())
            .filter(|&t| self.tokenized && depths.contains(&pairs[todo[t]].1))
            .collect();
        let round_encodings: Vec<Encoded> = chosen
            .iter()
            .map(|&t| std::mem::take(&mut encodings[t]))
            .collect();
        let mut round = Round {
            tokens: round_encodings.iter().map(Encoded::len).sum(),
            items: chosen.len(),
            truncated: round_encodings.iter().filter(|e| e.truncated).count(),
            ..Round::default()
        };
        if chosen.is_empty() {
            return round;
        }
        let model_started = Instant::now();
        let shown = SharedProgress::new(
            self.config.telemetry.progress,
            "rerank",
            "pairs",
            chosen.len() as u64,
        );
        let outcome = run_encoded(
            &self.ce.workers(),
            &round_encodings,
            self.budget,
            self.fault,
            &|i| pairs[todo[chosen[i]]].0,
            &|n| shown.inc(n),
        );
        shown.finish();
        round.model_s = model_started.elapsed().as_secs_f64();
        match outcome {
            Ok(outcome) => {
                round.stats = outcome.stats;
                round.dispatch = Some(outcome.dispatch);
                for (&t, result) in chosen.iter().zip(outcome.results) {
                    scores[todo[t]] = Some(result.map_err(|err| err.to_string()));
                }
            }
            Err(err) => {
                for &t in &chosen {
                    scores[todo[t]] = Some(Err(err.to_string()));
                }
            }
        }
        round
    }
}

/// Scores each query's top fused candidates and orders them per `rerank.blend`
/// ([`crate::ranking::blend`]): all `rerank.candidates` of them, or with `rerank.budget` as many as the budget allows
/// ([`crate::ranking::budget`]: a floor round, then the planned depth). `passages` holds the
/// embedding text of every point [`rerank_candidates`] named. A pair `earlier` holds (a run
/// with `--reuse`) takes that score instead of going through the model, and so does one
/// `judged` holds (scored by `fusion.method = "auto"`).
#[allow(clippy::too_many_arguments)]
pub fn rerank(
    ce: &Replicas<CrossEncoder>,
    set: &QuerySet,
    queries: &mut [RankedQuery],
    passages: &std::collections::HashMap<usize, String>,
    config: &RunConfig,
    budget: BatchBudget,
    fault: Option<&FaultInjector>,
    earlier: Option<&PairScores>,
    judged: Option<&PairScores>,
    spent: SpentBeforeRerank,
) -> Reranked {
    let started = Instant::now();
    let texts: Vec<&str> = set.queries.iter().map(|q| q.text.as_str()).collect();
    let candidates = config.rerank.candidates;
    // (query index, candidate position) for every pair that may be scored.
    let pairs: Vec<(usize, usize)> = queries
        .iter()
        .enumerate()
        .filter(|(_, q)| q.status != QueryStatus::Failed)
        .flat_map(|(qi, q)| (0..q.fused.len().min(candidates)).map(move |ci| (qi, ci)))
        .collect();
    let text_pairs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|&(qi, ci)| {
            let passage = passages.get(&queries[qi].fused[ci].index);
            (texts[qi], passage.map_or("", String::as_str))
        })
        .collect();
    // Scores the earlier run made for the same texts; the rest go through the model.
    let mut scores: Vec<Option<Result<PairScore, String>>> = vec![None; pairs.len()];
    // Pairs `auto` scored while judging the fusions are not scored again either.
    let mut reused_pairs = vec![false; pairs.len()];
    let earlier = earlier.filter(|e| !e.is_empty());
    let judged = judged.filter(|j| !j.is_empty());
    if earlier.is_some() || judged.is_some() {
        let query_hashes: Vec<[u8; 32]> = texts.iter().map(|t| text_sha256(t)).collect();
        for (i, (&(qi, _), &(_, passage))) in pairs.iter().zip(&text_pairs).enumerate() {
            let passage = text_sha256(passage);
            let from_earlier = earlier.and_then(|e| e.get(&query_hashes[qi], &passage));
            reused_pairs[i] = from_earlier.is_some();
            scores[i] = from_earlier
                .or_else(|| judged.and_then(|j| j.get(&query_hashes[qi], &passage)))
                .map(Ok);
        }
    }
    let todo: Vec<usize> = (0..pairs.len()).filter(|&i| scores[i].is_none()).collect();
    // Every pair the model may score, tokenized once: the plan counts their tokens.
    let todo_pairs: Vec<(&str, &str)> = todo.iter().map(|&i| text_pairs[i]).collect();
    let mut encodings = match ce.primary().tokenizer().encode_pairs(&todo_pairs) {
        Ok(encodings) => encodings,
        Err(err) => {
            for &i in &todo {
                scores[i] = Some(Err(format!("pair tokenization failed: {err}")));
            }
            Vec::new()
        }
    };
    let tokenized = !encodings.is_empty() || todo.is_empty();

    let floor = match config.rerank.budget.fraction() {
        Some(_) => config.rerank.budget_floor(),
        None => candidates,
    };
    let scorer = RoundScorer {
        ce,
        config,
        budget,
        fault,
        pairs: &pairs,
        todo: &todo,
        tokenized,
    };
    let mut work = scorer.score(0..floor, &mut encodings, &mut scores);
    let mut plan = config.rerank.budget.fraction().map(|fraction| {
        // The tokens the model would score at each candidate position beyond the floor.
        let mut extension_tokens = vec![0; candidates.saturating_sub(floor)];
        for (t, &pair) in todo.iter().enumerate() {
            let position = pairs[pair].1;
            if position >= floor && tokenized {
                extension_tokens[position - floor] += encodings[t].len();
            }
        }
        let deepest = pairs.iter().map(|&(_, ci)| ci + 1).max().unwrap_or(0);
        extension_tokens.truncate(deepest.saturating_sub(floor));
        RerankPlan::plan(&BudgetInputs {
            budget: fraction,
            dense_s: spent.dense_s,
            spent_s: spent.sparse_s + spent.fusion_s,
            floor,
            candidates,
            floor_s: started.elapsed().as_secs_f64(),
            floor_model_s: work.model_s,
            floor_tokens: work.tokens,
            extension_tokens,
        })
    });
    let depth = plan.as_ref().map_or(candidates, |plan| plan.depth);
    let extension = scorer.score(floor..depth, &mut encodings, &mut scores);
    let extension_s = extension.model_s;
    work.absorb(extension);

    // Gather per query; any failed pair fails the query (partial scores would mislead).
    // Every query to the same depth: a score an earlier output gives for a deeper candidate
    // is left out too.
    let mut per_query: BTreeMap<usize, Vec<CandidateScore>> = BTreeMap::new();
    let mut reused = 0;
    for ((&(qi, ci), score), was_reused) in pairs.iter().zip(scores).zip(reused_pairs) {
        if let (true, Some(score)) = (ci < depth, score) {
            reused += usize::from(was_reused);
            per_query.entry(qi).or_default().push((ci, score));
        }
    }
    let mut failed_queries = 0;
    for (qi, scored) in per_query {
        let query = &mut queries[qi];
        if let Some((_, Err(reason))) = scored.iter().find(|(_, s)| s.is_err()) {
            query.status = QueryStatus::Failed;
            query.reason = Some(format!("rerank failed: {reason}"));
            failed_queries += 1;
            continue;
        }
        let mut reranked: Vec<RankedCandidate> = scored
            .into_iter()
            .filter_map(|(ci, score)| {
                score.ok().map(|score| RankedCandidate {
                    fused: query.fused[ci].clone(),
                    rerank: Some(score),
                    blend_score: None,
                })
            })
            .collect();
        blend(
            &mut reranked,
            config.rerank.blend,
            config.rerank.blend_weight,
        );
        query.ranked = reranked;
        query.status = QueryStatus::Ok;
    }
    let mut run = StageRun::new(
        &ce.primary().identity().name,
        &work.stats,
        work.truncated,
        started.elapsed(),
    );
    // The work done: reused scores went through no model.
    run.items = work.items;
    if let Some(dispatch) = work.dispatch {
        run.record_dispatch(dispatch);
    }
    run.missing = failed_queries;
    if failed_queries > 0 {
        run.failure_reasons
            .insert("failed_queries".to_string(), failed_queries);
    }
    if let Some(plan) = plan.as_mut() {
        plan.finish(extension_s, run.latency_s);
        info!(
            budget = plan.budget,
            depth = plan.depth,
            candidates = plan.candidates,
            outcome = ?plan.outcome,
            predicted_ratio = format!("{:.3}", plan.predicted_ratio),
            held = plan.held,
            "rerank budget"
        );
    }
    info!(
        pairs = run.items,
        reused,
        failed_queries,
        latency_s = format!("{:.2}", run.latency_s),
        "rerank done"
    );
    Reranked { run, reused, plan }
}

/// The evaluation name of each dense model's list: `dense` with one model, `dense:<vector
/// name>` with several.
pub fn dense_list_names(config: &RunConfig) -> Vec<String> {
    match config.dense.models.as_slice() {
        [_] => vec!["dense".to_string()],
        models => models.iter().map(|m| format!("dense:{}", m.name)).collect(),
    }
}

/// Metrics per list (each dense model's, sparse, fused, reranked) against `qrels`, doc ids =
/// chunk ids; `dense_names` as [`dense_list_names`].
pub fn evaluate_lists(
    qrels: &Qrels,
    queries: &[RankedQuery],
    chunk_ids: &[String],
    dense_names: &[String],
    reranked: bool,
) -> BTreeMap<String, Metrics> {
    let ids = |indices: &mut dyn Iterator<Item = usize>| -> Vec<String> {
        indices.filter_map(|i| chunk_ids.get(i).cloned()).collect()
    };
    let mut lists: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for query in queries {
        let mut put = |name: &str, ranking: Vec<String>| {
            lists
                .entry(name.to_string())
                .or_default()
                .insert(query.id.clone(), ranking);
        };
        for (name, hits) in dense_names.iter().zip(&query.dense) {
            put(name, ids(&mut hits.iter().map(|h| h.index)));
        }
        if let Some(sparse) = &query.sparse {
            put("sparse", ids(&mut sparse.iter().map(|h| h.index)));
        }
        put("fused", ids(&mut query.fused.iter().map(|h| h.index)));
        if reranked {
            // Reranked candidates first, then the rest of the fused list (as BEIR reranking is
            // evaluated); a failed query keeps its fused order.
            let head: Vec<usize> = query.ranked.iter().map(|c| c.fused.index).collect();
            let tail = query
                .fused
                .iter()
                .map(|h| h.index)
                .filter(|i| !head.contains(i));
            put("reranked", ids(&mut head.iter().copied().chain(tail)));
        }
    }
    lists
        .into_iter()
        .map(|(name, rankings)| (name, eval::evaluate(qrels, &rankings)))
        .collect()
}

/// The probe's qrels: each probe query's one right answer is its source chunk.
pub fn probe_qrels(set: &QuerySet) -> Option<Qrels> {
    let targets = set.targets.as_ref()?;
    Some(Qrels::from_triples(
        set.queries
            .iter()
            .zip(targets)
            .map(|(q, t)| (q.id.clone(), t.clone(), 1)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_streaming_probe_sample_equals_a_sort_of_the_whole_collection() {
        let chunk = |i: usize| {
            let id = crate::input::ChunkId(format!("c{i}"));
            Chunk {
                point_id: crate::input::point_id("c", &id),
                id,
                // Every seventh chunk gives no probe text (a blank heading, no title).
                title: None,
                text: format!("Sentence {i}. More."),
                metadata: if i.is_multiple_of(7) {
                    serde_json::json!({"heading": "  "})
                        .as_object()
                        .unwrap()
                        .clone()
                } else {
                    serde_json::Map::new()
                },
                location: crate::input::SourceLocation::line(std::path::Path::new("c.jsonl"), i),
            }
        };
        let chunks: Vec<Chunk> = (0..500).map(chunk).collect();
        for count in [0, 1, 32, 499, 600] {
            // Reference: sort every chunk by its seeded hash, keep the first `count` with text.
            let mut order: Vec<(Vec<u8>, usize)> = chunks
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let mut hasher = Sha256::new();
                    hasher.update(PROBE_SEED);
                    hasher.update(c.id.as_str().as_bytes());
                    (hasher.finalize().to_vec(), i)
                })
                .collect();
            order.sort();
            let expected: Vec<(String, String)> = order
                .iter()
                .filter_map(|&(_, i)| probe_text(&chunks[i]).map(|t| (chunks[i].id.0.clone(), t)))
                .take(count)
                .collect();
            let mut sampler = ProbeSampler::new(count);
            for (i, c) in chunks.iter().enumerate() {
                sampler.offer(i, c);
            }
            let set = sampler.finish();
            let got: Vec<(String, String)> = set
                .targets
                .unwrap()
                .into_iter()
                .zip(set.queries.into_iter().map(|q| q.text))
                .collect();
            assert_eq!(got, expected, "count {count}");
        }
    }

    #[test]
    fn first_sentence_stops_at_the_first_boundary() {
        assert_eq!(
            first_sentence("  Vitamin D matters. It is made in skin."),
            "Vitamin D matters."
        );
        assert_eq!(first_sentence("def f():\n    return 1"), "def f():");
        assert_eq!(first_sentence("no boundary at all"), "no boundary at all");
    }
}
