//! Retrieval evaluation: BEIR qrels and ranked-list metrics.
//!
//! # Qrels
//!
//! [`read_qrels`] reads a BEIR `qrels/*.tsv` file: three tab-separated columns
//! `query-id`, `corpus-id`, `score` (an integer graded relevance). The first
//! non-blank row is skipped as a header when it has three columns and its third
//! column is not an integer (BEIR files start with `query-id\tcorpus-id\tscore`).
//! LF and CRLF line endings and a leading UTF-8 byte-order mark are accepted;
//! blank lines are ignored; fields are trimmed of surrounding spaces. A
//! repeated `(query, doc)` pair with the same score is accepted, one with a
//! different score is an error. Errors name `file:line` (1-based physical line).
//!
//! # Metrics
//!
//! The conventions follow BEIR, which computes nDCG and recall with
//! pytrec_eval (trec_eval), and MRR with its own code:
//!
//! * A ranking is a list of doc ids **in rank order**; it is never re-sorted.
//!   A doc id repeated in a ranking counts only at its first position and the
//!   repeats are dropped (later docs move up), as happens when a ranking is
//!   turned into the `{doc: score}` map that pytrec_eval takes.
//! * A doc is *relevant* when its qrels relevance is `> 0`; docs absent from
//!   the qrels have relevance 0.
//! * nDCG@k: `DCG = Σ_{i=1..k} gain_i / log2(i + 1)` with linear gain equal to
//!   the graded relevance (relevance `≤ 0` gives gain 0), as trec_eval's
//!   `ndcg_cut`. IDCG is the DCG of the query's qrels relevances sorted
//!   descending and cut at k. nDCG is 0 when IDCG is 0.
//! * Recall@k: relevant docs in the top k / all relevant docs of the query
//!   (0 when the query has none).
//! * MRR@k: 1 / rank of the first relevant doc within the top k, else 0.
//! * [`evaluate`] averages over the query ids present in the qrels, and only
//!   those: a qrels query without a ranking scores 0 on every metric (as
//!   `trec_eval -c`), rankings of queries not in the qrels are ignored. A qrels
//!   query whose judgments are all `≤ 0` is still counted (and scores 0). With
//!   no qrels queries every average is 0.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Errors while reading qrels. Messages name the file and, for content
/// problems, the 1-based line.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}: expected 3 tab-separated columns (query-id, corpus-id, score), found {found}", .path.display())]
    Columns {
        path: PathBuf,
        line: usize,
        found: usize,
    },
    #[error("{}:{line}: score {value:?} is not an integer", .path.display())]
    Score {
        path: PathBuf,
        line: usize,
        value: String,
    },
    #[error("{}:{line}: empty {column}", .path.display())]
    EmptyId {
        path: PathBuf,
        line: usize,
        column: &'static str,
    },
    #[error("{}:{line}: query {query:?} doc {doc:?} has score {score} but an earlier line gave {previous}", .path.display())]
    Conflict {
        path: PathBuf,
        line: usize,
        query: String,
        doc: String,
        previous: i32,
        score: i32,
    },
}

/// Relevance judgments: query id → (doc id → graded relevance).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Qrels {
    queries: BTreeMap<String, BTreeMap<String, i32>>,
}

impl Qrels {
    /// Empty qrels.
    pub fn new() -> Self {
        Self::default()
    }

    /// Build from `(query id, doc id, relevance)` triples; a later triple for
    /// the same pair replaces an earlier one.
    pub fn from_triples<I, Q, D>(triples: I) -> Self
    where
        I: IntoIterator<Item = (Q, D, i32)>,
        Q: Into<String>,
        D: Into<String>,
    {
        let mut qrels = Self::new();
        for (query, doc, rel) in triples {
            qrels.insert(query, doc, rel);
        }
        qrels
    }

    /// Set the relevance of `doc` for `query`, returning the previous value.
    pub fn insert(
        &mut self,
        query: impl Into<String>,
        doc: impl Into<String>,
        relevance: i32,
    ) -> Option<i32> {
        self.queries
            .entry(query.into())
            .or_default()
            .insert(doc.into(), relevance)
    }

    /// Query ids, sorted.
    pub fn query_ids(&self) -> impl Iterator<Item = &str> + '_ {
        self.queries.keys().map(String::as_str)
    }

    /// Judgments of one query (doc id → relevance).
    pub fn judgments(&self, query: &str) -> Option<&BTreeMap<String, i32>> {
        self.queries.get(query)
    }

    /// Number of queries.
    pub fn len(&self) -> usize {
        self.queries.len()
    }

    /// Whether there are no queries.
    pub fn is_empty(&self) -> bool {
        self.queries.is_empty()
    }

    /// Total number of `(query, doc)` judgments.
    pub fn judgment_count(&self) -> usize {
        self.queries.values().map(BTreeMap::len).sum()
    }
}

/// Read a BEIR qrels TSV file (see the module docs for the format).
pub fn read_qrels(path: &Path) -> Result<Qrels, EvalError> {
    let text = std::fs::read_to_string(path).map_err(|source| EvalError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_qrels(&text, path)
}

/// Parse qrels text; `path` is only used in error messages.
pub fn parse_qrels(text: &str, path: &Path) -> Result<Qrels, EvalError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut qrels = Qrels::new();
    let mut seen_row = false;
    for (index, raw) in text.split('\n').enumerate() {
        let line = index + 1;
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if raw.trim().is_empty() {
            continue;
        }
        let first_row = !seen_row;
        seen_row = true;
        let fields: Vec<&str> = raw.split('\t').map(str::trim).collect();
        if fields.len() != 3 {
            return Err(EvalError::Columns {
                path: path.to_path_buf(),
                line,
                found: fields.len(),
            });
        }
        let score = match fields[2].parse::<i32>() {
            Ok(score) => score,
            Err(_) if first_row => continue, // header row
            Err(_) => {
                return Err(EvalError::Score {
                    path: path.to_path_buf(),
                    line,
                    value: fields[2].to_string(),
                })
            }
        };
        for (column, value) in [("query-id", fields[0]), ("corpus-id", fields[1])] {
            if value.is_empty() {
                return Err(EvalError::EmptyId {
                    path: path.to_path_buf(),
                    line,
                    column,
                });
            }
        }
        if let Some(previous) = qrels.insert(fields[0], fields[1], score) {
            if previous != score {
                return Err(EvalError::Conflict {
                    path: path.to_path_buf(),
                    line,
                    query: fields[0].to_string(),
                    doc: fields[1].to_string(),
                    previous,
                    score,
                });
            }
        }
    }
    Ok(qrels)
}

/// Which qrels queries an evaluation could judge: the qrels and the query set must be about
/// the same queries. A qrels query that is not in the query set was never ranked; counting it
/// as 0 would report a measurement that was not made (a wrong qrels file or split looks like a
/// broken model), so it is left out of the averages and reported here instead.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Coverage {
    /// Queries both in the qrels and in the query set: what the averages are over.
    pub judged: usize,
    /// Qrels queries not in the query set (not in the averages).
    pub missing: usize,
    /// The first few of them (ids, sorted).
    pub missing_examples: Vec<String>,
    /// Queries of the set that the qrels do not judge.
    pub unjudged: usize,
}

/// How many missing query ids [`Coverage`] names.
pub const MISSING_EXAMPLES: usize = 5;

impl Coverage {
    /// The qrels measured against the ids of the query set.
    pub fn of<'a>(qrels: &Qrels, query_ids: impl IntoIterator<Item = &'a str>) -> Self {
        let set: HashSet<&str> = query_ids.into_iter().collect();
        let judged = qrels.query_ids().filter(|q| set.contains(q)).count();
        let missing: Vec<&str> = qrels.query_ids().filter(|q| !set.contains(q)).collect();
        Self {
            judged,
            missing: missing.len(),
            missing_examples: missing
                .iter()
                .take(MISSING_EXAMPLES)
                .map(|q| q.to_string())
                .collect(),
            unjudged: set.len() - judged,
        }
    }

    /// A line for the log and the table when something was not judged, else `None`.
    pub fn describe(&self) -> Option<String> {
        let examples = || {
            let more = if self.missing > self.missing_examples.len() {
                ", …"
            } else {
                ""
            };
            format!("{}{more}", self.missing_examples.join(", "))
        };
        if self.judged == 0 {
            Some(format!(
                "no query of the qrels is in the query set ({} qrels queries, e.g. {}); nothing                  was evaluated (a qrels file of another query set or split?)",
                self.missing,
                examples()
            ))
        } else if self.missing > 0 {
            Some(format!(
                "{} qrels queries are not in the query set and are left out of the averages                  (e.g. {}); {} judged",
                self.missing,
                examples(),
                self.judged
            ))
        } else {
            None
        }
    }
}

impl Qrels {
    /// The judgments of the queries in `query_ids` only.
    pub fn restricted_to<'a>(&self, query_ids: impl IntoIterator<Item = &'a str>) -> Qrels {
        let set: HashSet<&str> = query_ids.into_iter().collect();
        Qrels {
            queries: self
                .queries
                .iter()
                .filter(|(q, _)| set.contains(q.as_str()))
                .map(|(q, j)| (q.clone(), j.clone()))
                .collect(),
        }
    }
}

/// Mean metrics over the qrels queries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub ndcg_at_10: f64,
    pub recall_at_100: f64,
    pub mrr_at_10: f64,
    /// Number of queries averaged over (the qrels' query count).
    pub queries: usize,
}

/// The first `k` distinct doc ids of a ranking, in rank order.
fn distinct_top<S: AsRef<str>>(ranking: &[S], k: usize) -> Vec<&str> {
    let mut seen = HashSet::new();
    let mut top = Vec::with_capacity(k.min(ranking.len()));
    for doc in ranking {
        if top.len() >= k {
            break;
        }
        let doc = doc.as_ref();
        if seen.insert(doc) {
            top.push(doc);
        }
    }
    top
}

fn gain(judgments: &BTreeMap<String, i32>, doc: &str) -> f64 {
    match judgments.get(doc) {
        Some(&rel) if rel > 0 => f64::from(rel),
        _ => 0.0,
    }
}

/// Discount of 1-based rank `rank`: `log2(rank + 1)`.
fn discount(rank: usize) -> f64 {
    ((rank + 1) as f64).log2()
}

/// nDCG@k of one ranking (linear gains, see the module docs).
pub fn ndcg_at<S: AsRef<str>>(k: usize, judgments: &BTreeMap<String, i32>, ranking: &[S]) -> f64 {
    let ranked: Vec<f64> = distinct_top(ranking, k)
        .iter()
        .map(|doc| gain(judgments, doc))
        .collect();
    let judged: Vec<f64> = judgments
        .values()
        .map(|&rel| f64::from(rel.max(0)))
        .collect();
    ndcg_of_gains(k, &ranked, &judged)
}

/// nDCG@k from gains: `ranked` holds the gain of each ranked document in rank order (distinct
/// documents), `judged` the gain of every judged document (the ideal ranking sorts them). Gains
/// below zero count as zero; 0 when no judged document has a gain.
pub fn ndcg_of_gains(k: usize, ranked: &[f64], judged: &[f64]) -> f64 {
    let mut ideal: Vec<f64> = judged.iter().map(|&g| g.max(0.0)).collect();
    ideal.sort_unstable_by(|a, b| b.total_cmp(a));
    let dcg_of = |gains: &mut dyn Iterator<Item = f64>| -> f64 {
        gains
            .take(k)
            .enumerate()
            .map(|(i, gain)| gain.max(0.0) / discount(i + 1))
            .sum()
    };
    let idcg = dcg_of(&mut ideal.iter().copied());
    if idcg <= 0.0 {
        return 0.0;
    }
    dcg_of(&mut ranked.iter().copied()) / idcg
}

/// Recall@k of one ranking: relevant docs in the top k / all relevant docs.
pub fn recall_at<S: AsRef<str>>(k: usize, judgments: &BTreeMap<String, i32>, ranking: &[S]) -> f64 {
    let relevant = judgments.values().filter(|&&r| r > 0).count();
    if relevant == 0 {
        return 0.0;
    }
    let found = distinct_top(ranking, k)
        .iter()
        .filter(|doc| gain(judgments, doc) > 0.0)
        .count();
    found as f64 / relevant as f64
}

/// MRR@k of one ranking: 1 / rank of the first relevant doc in the top k, else 0.
pub fn mrr_at<S: AsRef<str>>(k: usize, judgments: &BTreeMap<String, i32>, ranking: &[S]) -> f64 {
    distinct_top(ranking, k)
        .iter()
        .position(|doc| gain(judgments, doc) > 0.0)
        .map_or(0.0, |i| 1.0 / (i + 1) as f64)
}

/// Mean nDCG@10, Recall@100 and MRR@10 over the qrels queries (see the module
/// docs for missing and extra queries).
pub fn evaluate(qrels: &Qrels, rankings: &BTreeMap<String, Vec<String>>) -> Metrics {
    let mut ndcg = 0.0;
    let mut recall = 0.0;
    let mut mrr = 0.0;
    for (query, judgments) in &qrels.queries {
        if let Some(ranking) = rankings.get(query) {
            ndcg += ndcg_at(10, judgments, ranking);
            recall += recall_at(100, judgments, ranking);
            mrr += mrr_at(10, judgments, ranking);
        }
    }
    let queries = qrels.len();
    let mean = |sum: f64| {
        if queries == 0 {
            0.0
        } else {
            sum / queries as f64
        }
    };
    Metrics {
        ndcg_at_10: mean(ndcg),
        recall_at_100: mean(recall),
        mrr_at_10: mean(mrr),
        queries,
    }
}

/// Render `(stage name, metrics)` rows as a fixed-width text table with four
/// decimals, one header line, one rule line and one line per row, each ending
/// in a newline.
pub fn format_table(rows: &[(String, Metrics)]) -> String {
    const HEADERS: [&str; 5] = ["stage", "nDCG@10", "Recall@100", "MRR@10", "queries"];
    let name_width = rows
        .iter()
        .map(|(name, _)| name.chars().count())
        .chain([HEADERS[0].len()])
        .max()
        .unwrap_or(0);
    let widths = [
        name_width,
        HEADERS[1].len().max(6),
        HEADERS[2].len().max(6),
        HEADERS[3].len().max(6),
        HEADERS[4].len(),
    ];
    let mut out = String::new();
    let line = |out: &mut String, cells: [&str; 5]| {
        let _ = write!(out, "{:<w$}", cells[0], w = widths[0]);
        for (cell, width) in cells.iter().zip(widths).skip(1) {
            let _ = write!(out, "  {cell:>width$}");
        }
        out.push('\n');
    };
    line(&mut out, HEADERS);
    let total = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
    out.push_str(&"-".repeat(total));
    out.push('\n');
    for (name, m) in rows {
        let ndcg = format!("{:.4}", m.ndcg_at_10);
        let recall = format!("{:.4}", m.recall_at_100);
        let mrr = format!("{:.4}", m.mrr_at_10);
        let queries = m.queries.to_string();
        line(&mut out, [name, &ndcg, &recall, &mrr, &queries]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn judgments(pairs: &[(&str, i32)]) -> BTreeMap<String, i32> {
        pairs.iter().map(|&(d, r)| (d.to_string(), r)).collect()
    }

    fn rankings(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        pairs
            .iter()
            .map(|(q, docs)| (q.to_string(), docs.iter().map(|d| d.to_string()).collect()))
            .collect()
    }

    fn assert_close(actual: f64, expected: f64) {
        assert!(
            (actual - expected).abs() < 1e-12,
            "actual {actual} expected {expected}"
        );
    }

    fn write_file(contents: &[u8]) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(contents).unwrap();
        file.flush().unwrap();
        file
    }

    #[test]
    fn ndcg_graded_gains_hand_computed() {
        // rel 2 at rank 1, rel 1 at rank 3; a third relevant doc (rel 1) unretrieved.
        let j = judgments(&[("a", 2), ("b", 1), ("c", 1), ("x", 0)]);
        let ranking = ["a", "x", "b", "y"];
        let dcg = 2.0 / 2f64.log2() + 1.0 / 4f64.log2(); // 2 + 0.5
        let idcg = 2.0 / 2f64.log2() + 1.0 / 3f64.log2() + 1.0 / 4f64.log2();
        assert_close(ndcg_at(10, &j, &ranking), dcg / idcg);
        assert_close(ndcg_at(10, &j, &ranking), 2.5 / (2.5 + 1.0 / 3f64.log2()));
        // Perfect order → 1.
        assert_close(ndcg_at(10, &j, &["a", "b", "c"]), 1.0);
        // Order matters: the ranking is not re-sorted.
        assert!(ndcg_at(10, &j, &["b", "c", "a"]) < 1.0);
    }

    #[test]
    fn ndcg_cut_applies_to_ranking_and_ideal() {
        let j = judgments(&[("a", 1), ("b", 1)]);
        // Only "b" at rank 2 is inside the cut of 2; ideal is two rel-1 docs.
        let got = ndcg_at(2, &j, &["x", "b", "a"]);
        assert_close(got, (1.0 / 3f64.log2()) / (1.0 + 1.0 / 3f64.log2()));
        // Relevant doc at rank 11 contributes nothing to nDCG@10.
        let mut ranking: Vec<String> = (0..10).map(|i| format!("n{i}")).collect();
        ranking.push("a".into());
        assert_close(ndcg_at(10, &j, &ranking), 0.0);
        // Ideal list is cut at k: with 12 rel-1 docs a perfect top 10 is 1.
        let many: BTreeMap<String, i32> = (0..12).map(|i| (format!("r{i}"), 1)).collect();
        let perfect: Vec<String> = (0..10).map(|i| format!("r{i}")).collect();
        assert_close(ndcg_at(10, &many, &perfect), 1.0);
    }

    #[test]
    fn ndcg_negative_relevance_is_zero_gain_and_no_relevant_is_zero() {
        let j = judgments(&[("a", -1), ("b", 1)]);
        assert_close(ndcg_at(10, &j, &["a", "b"]), 1.0 / 3f64.log2());
        let none = judgments(&[("a", 0), ("b", -2)]);
        assert_close(ndcg_at(10, &none, &["a", "b"]), 0.0);
        assert_close(recall_at(100, &none, &["a", "b"]), 0.0);
        assert_close(mrr_at(10, &none, &["a", "b"]), 0.0);
    }

    #[test]
    fn recall_counts_missing_docs() {
        let j = judgments(&[("a", 1), ("b", 2), ("c", 1), ("d", 0)]);
        // "a" and "c" retrieved, "b" missing; "d" is not relevant.
        assert_close(recall_at(100, &j, &["c", "d", "z", "a"]), 2.0 / 3.0);
        assert_close(recall_at(100, &j, &["z"]), 0.0);
        assert_close(recall_at(2, &j, &["c", "d", "a"]), 1.0 / 3.0);
    }

    #[test]
    fn mrr_rank_three_and_outside_cut() {
        let j = judgments(&[("a", 1), ("b", 0)]);
        assert_close(mrr_at(10, &j, &["b", "x", "a"]), 1.0 / 3.0);
        let mut ranking: Vec<String> = (0..10).map(|i| format!("n{i}")).collect();
        assert_close(mrr_at(10, &j, &ranking), 0.0);
        ranking.push("a".into()); // rank 11
        assert_close(mrr_at(10, &j, &ranking), 0.0);
        assert_close(mrr_at(11, &j, &ranking), 1.0 / 11.0);
    }

    #[test]
    fn duplicate_docs_count_once() {
        let j = judgments(&[("a", 1), ("b", 1)]);
        // The repeated "a" is dropped, so "b" is at rank 2.
        assert_close(mrr_at(10, &j, &["x", "x", "b"]), 1.0 / 2.0);
        assert_close(recall_at(2, &j, &["a", "a", "b"]), 1.0);
        assert_close(ndcg_at(10, &j, &["a", "a", "b"]), 1.0);
    }

    #[test]
    fn evaluate_missing_queries_score_zero_and_unknown_are_ignored() {
        let qrels = Qrels::from_triples([("q1", "a", 1), ("q2", "b", 1)]);
        let runs = rankings(&[("q1", &["a"]), ("q3", &["c", "d"])]);
        let m = evaluate(&qrels, &runs);
        assert_eq!(m.queries, 2);
        assert_close(m.ndcg_at_10, 0.5);
        assert_close(m.recall_at_100, 0.5);
        assert_close(m.mrr_at_10, 0.5);
        // Adding a perfect ranking for an unknown query changes nothing.
        let mut more = runs.clone();
        more.insert("q9".into(), vec!["a".into(), "b".into()]);
        assert_eq!(evaluate(&qrels, &more), m);
        // No rankings at all: everything 0 over the 2 queries.
        let empty = evaluate(&qrels, &BTreeMap::new());
        assert_eq!(empty.queries, 2);
        assert_close(
            empty.ndcg_at_10 + empty.recall_at_100 + empty.mrr_at_10,
            0.0,
        );
    }

    #[test]
    fn evaluate_empty_qrels_is_zero_not_nan() {
        let m = evaluate(&Qrels::new(), &rankings(&[("q", &["a"])]));
        assert_eq!(
            m,
            Metrics {
                ndcg_at_10: 0.0,
                recall_at_100: 0.0,
                mrr_at_10: 0.0,
                queries: 0
            }
        );
    }

    #[test]
    fn read_qrels_header_crlf_blank_lines() {
        let file = write_file(
            b"\xef\xbb\xbfquery-id\tcorpus-id\tscore\r\nq1\td1\t1\r\n\r\nq1\td2\t2\r\nq2\td3\t0\r\n  \nq1\td2\t2",
        );
        let qrels = read_qrels(file.path()).unwrap();
        assert_eq!(qrels.len(), 2);
        assert_eq!(qrels.judgment_count(), 3); // the repeated identical line counts once
        assert_eq!(qrels.query_ids().collect::<Vec<_>>(), ["q1", "q2"]);
        assert_eq!(
            qrels.judgments("q1").unwrap(),
            &judgments(&[("d1", 1), ("d2", 2)])
        );
        assert_eq!(qrels.judgments("q2").unwrap(), &judgments(&[("d3", 0)]));
        let expected = Qrels::from_triples([("q1", "d1", 1), ("q1", "d2", 2), ("q2", "d3", 0)]);
        assert_eq!(qrels, expected);
    }

    #[test]
    fn read_qrels_without_header_and_lf() {
        let file = write_file(b"q1\td1\t1\nq1\td2\t-1\n");
        let qrels = read_qrels(file.path()).unwrap();
        assert_eq!(
            qrels,
            Qrels::from_triples([("q1", "d1", 1), ("q1", "d2", -1)])
        );
    }

    #[test]
    fn read_qrels_errors_name_file_and_line() {
        let cases: [(&[u8], &str); 5] = [
            (
                b"query-id\tcorpus-id\tscore\nq1\td1\t1\n\nq1\td2\n",
                ":4: expected 3 tab-separated columns (query-id, corpus-id, score), found 2",
            ),
            (
                b"query-id\tcorpus-id\tscore\r\nq1\td1\t1\r\nq1\td2\t1.5\r\n",
                ":3: score \"1.5\" is not an integer",
            ),
            // A non-integer score is a header only on the first non-blank row.
            (
                b"\nq1\td1\t1\nquery-id\tcorpus-id\tscore\n",
                ":3: score \"score\" is not an integer",
            ),
            (b"q1\t\t1\n", ":1: empty corpus-id"),
            (
                b"q1\td1\t1\nq1\td1\t2\n",
                ":2: query \"q1\" doc \"d1\" has score 2 but an earlier line gave 1",
            ),
        ];
        for (contents, suffix) in cases {
            let file = write_file(contents);
            let err = read_qrels(file.path()).unwrap_err();
            let expected = format!("{}{suffix}", file.path().display());
            assert_eq!(err.to_string(), expected);
        }
    }

    #[test]
    fn read_qrels_missing_file_names_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope.tsv");
        let err = read_qrels(&path).unwrap_err();
        assert!(matches!(err, EvalError::Io { .. }));
        assert!(err
            .to_string()
            .starts_with(&format!("{}: ", path.display())));
    }

    #[test]
    fn format_table_layout() {
        let m = Metrics {
            ndcg_at_10: 0.123_456,
            recall_at_100: 1.0,
            mrr_at_10: 0.5,
            queries: 20,
        };
        let table = format_table(&[("dense".into(), m.clone()), ("dense+rerank".into(), m)]);
        let expected = "\
stage         nDCG@10  Recall@100  MRR@10  queries
--------------------------------------------------
dense          0.1235      1.0000  0.5000       20
dense+rerank   0.1235      1.0000  0.5000       20
";
        assert_eq!(table, expected);
    }

    #[derive(Deserialize)]
    struct Golden {
        qrels: Vec<(String, String, i32)>,
        rankings: BTreeMap<String, Vec<String>>,
        per_query: BTreeMap<String, [f64; 3]>,
        expected: Metrics,
    }

    /// Cross-check against scripts/reference/eval_reference.py.
    #[test]
    fn matches_python_reference_golden() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/eval_random.json");
        let text = std::fs::read_to_string(&path).unwrap();
        let golden: Golden = serde_json::from_str(&text).unwrap();
        let qrels = Qrels::from_triples(golden.qrels);
        assert_eq!(golden.per_query.len(), qrels.len());
        let empty: Vec<String> = Vec::new();
        for (query, [ndcg, recall, mrr]) in &golden.per_query {
            let j = qrels.judgments(query).unwrap();
            let ranking = golden.rankings.get(query).unwrap_or(&empty);
            let close = |a: f64, b: f64| (a - b).abs() <= 1e-9;
            assert!(close(ndcg_at(10, j, ranking), *ndcg), "ndcg {query}");
            assert!(close(recall_at(100, j, ranking), *recall), "recall {query}");
            assert!(close(mrr_at(10, j, ranking), *mrr), "mrr {query}");
        }
        let got = evaluate(&qrels, &golden.rankings);
        assert_eq!(got.queries, golden.expected.queries);
        assert!((got.ndcg_at_10 - golden.expected.ndcg_at_10).abs() <= 1e-9);
        assert!((got.recall_at_100 - golden.expected.recall_at_100).abs() <= 1e-9);
        assert!((got.mrr_at_10 - golden.expected.mrr_at_10).abs() <= 1e-9);
    }
    /// Finding 5 of issue 29: qrels whose only judged query is not in the query set gave a
    /// table of zeros. The coverage says what was judged; only judged queries are averaged.
    #[test]
    fn qrels_queries_outside_the_query_set_are_counted_not_averaged() {
        let qrels = Qrels::from_triples([("q1", "a", 1), ("q2", "b", 1), ("q9", "c", 1)]);
        let coverage = Coverage::of(&qrels, ["q1", "q2", "q3"]);
        assert_eq!(
            coverage,
            Coverage {
                judged: 2,
                missing: 1,
                missing_examples: vec!["q9".to_string()],
                unjudged: 1,
            }
        );
        let line = coverage.describe().unwrap();
        assert!(
            line.contains("1 qrels queries are not in the query set"),
            "{line}"
        );
        assert!(line.contains("q9"), "{line}");
        // q1 perfect, q2 missed: averaged over the two judged queries, not three.
        let ranked = rankings(&[("q1", &["a"]), ("q2", &["x"]), ("q3", &["a"])]);
        let judged = qrels.restricted_to(["q1", "q2", "q3"]);
        let metrics = evaluate(&judged, &ranked);
        assert_eq!(metrics.queries, 2);
        assert_close(metrics.ndcg_at_10, 0.5);

        let none = Coverage::of(&Qrels::from_triples([("q9", "c", 1)]), ["q1"]);
        assert_eq!((none.judged, none.missing, none.unjudged), (0, 1, 1));
        assert!(none
            .describe()
            .unwrap()
            .starts_with("no query of the qrels"));
        assert_eq!(Coverage::of(&qrels, ["q1", "q2", "q9"]).describe(), None);
    }
}
