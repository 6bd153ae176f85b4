//! Evaluating an existing output directory (`embed-collections eval`): no model is loaded; the
//! `rerank.jsonl` of each collection is scored against qrels. Its lists hold the top
//! `rerank.top_k` candidates only, so Recall@100 is a recall at that depth here.

use crate::eval::{self, Coverage, Metrics, Qrels};
use crate::export::ranked::{read_ranked, RankedReadError};
use crate::export::RANKED_FILE;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Why an output directory could not be evaluated.
#[derive(Debug, thiserror::Error)]
pub enum EvaluateError {
    #[error("cannot read {}", .path.display())]
    ReadDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: no collection with a {RANKED_FILE} (run with fusion or rerank on first)", .0.display())]
    NothingRanked(PathBuf),
    #[error(transparent)]
    Ranked(#[from] RankedReadError),
}

impl crate::exit::Classified for EvaluateError {
    fn class(&self) -> crate::exit::ErrorClass {
        crate::exit::ErrorClass::Input
    }
}

/// One collection's metrics by list (`final`, `fused`), with the depth of the file's lists.
#[derive(Debug)]
pub struct OutputEvaluation {
    pub collection: String,
    pub depth: usize,
    pub failed_queries: usize,
    /// Which qrels queries the file's queries let it judge; `lists` is empty when none.
    pub coverage: Coverage,
    pub lists: BTreeMap<String, Metrics>,
}

/// Evaluates every collection of `output_dir` that has a ranked-list file (or only `only`).
pub fn evaluate_output(
    output_dir: &Path,
    qrels: &Qrels,
    only: Option<&[String]>,
) -> Result<Vec<OutputEvaluation>, EvaluateError> {
    let entries = std::fs::read_dir(output_dir).map_err(|source| EvaluateError::ReadDir {
        path: output_dir.to_path_buf(),
        source,
    })?;
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join(RANKED_FILE).is_file())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|name| only.is_none_or(|only| only.iter().any(|o| o == name)))
        .collect();
    names.sort();
    if names.is_empty() {
        return Err(EvaluateError::NothingRanked(output_dir.to_path_buf()));
    }
    names
        .into_iter()
        .map(|name| {
            let file = read_ranked(&output_dir.join(&name).join(RANKED_FILE))?;
            let ids = || file.final_order.keys().map(String::as_str);
            let coverage = Coverage::of(qrels, ids());
            let judged = qrels.restricted_to(ids());
            let lists = if coverage.judged == 0 {
                BTreeMap::new()
            } else {
                BTreeMap::from([
                    (
                        "final".to_string(),
                        eval::evaluate(&judged, &file.final_order),
                    ),
                    (
                        "fused".to_string(),
                        eval::evaluate(&judged, &file.fused_order),
                    ),
                ])
            };
            Ok(OutputEvaluation {
                collection: name,
                depth: file.depth,
                failed_queries: file.failed_queries,
                coverage,
                lists,
            })
        })
        .collect()
}
