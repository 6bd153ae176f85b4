//! `embed-collections check`: everything a run would trip over, found without running a model
//! and reported all at once — inputs (every bad record, not just the first), query and qrels
//! files, model availability and loadability of their side files, the device, and whether the
//! output directory is writable.

use super::runner::discover;
use crate::config::RunConfig;
use crate::eval;
use crate::input::{self, InvalidInputPolicy};
use crate::models::bert::read_config;
use crate::models::sentence_transformers::SentenceTransformerInfo;
use crate::models::{select_devices, ModelManager};
use std::path::Path;

/// What kind of problem, which decides the exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ProblemClass {
    Input,
    Model,
    Output,
}

/// One thing that would go wrong. Warnings would not stop a run (records the `skip` policy
/// would skip); errors would.
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    pub class: ProblemClass,
    pub error: bool,
    pub message: String,
}

/// What `check` found.
#[derive(Debug, Default)]
pub struct CheckReport {
    pub problems: Vec<Problem>,
    pub collections: usize,
    pub chunks: usize,
    pub models: usize,
}

impl CheckReport {
    fn error(&mut self, class: ProblemClass, message: String) {
        self.problems.push(Problem {
            class,
            error: true,
            message,
        });
    }

    pub fn errors(&self) -> impl Iterator<Item = &Problem> {
        self.problems.iter().filter(|p| p.error)
    }
}

/// Checks a resolved configuration (the config itself already parsed and validated).
pub fn check(config: &RunConfig, manager: &ModelManager) -> CheckReport {
    let mut report = CheckReport::default();
    check_inputs(config, &mut report);
    check_models(config, manager, &mut report);
    // Every listed device, since a stage runs a replica on each.
    if let Err(err) = select_devices(&config.gpu.devices, config.gpu.precision) {
        report.error(ProblemClass::Model, err.to_string());
    }
    check_output(&config.output.dir, &mut report);
    report
}

fn check_inputs(config: &RunConfig, report: &mut CheckReport) {
    let collections = match discover(config) {
        Ok(collections) => collections,
        Err(err) => return report.error(ProblemClass::Input, err.to_string()),
    };
    report.collections = collections.len();
    let strict = config.input.on_invalid == InvalidInputPolicy::Error;
    for collection in &collections {
        // Read with `skip` so every bad record is found, then judge by the configured policy.
        match input::read_collection(collection, InvalidInputPolicy::Skip) {
            Ok(read) => {
                report.chunks += read.chunks.len();
                for (reason, location) in &read.skipped.examples {
                    report.problems.push(Problem {
                        class: ProblemClass::Input,
                        error: strict,
                        message: format!("{location}: {reason}"),
                    });
                }
                let unlisted = read
                    .skipped
                    .total()
                    .saturating_sub(read.skipped.examples.len());
                if unlisted > 0 {
                    report.problems.push(Problem {
                        class: ProblemClass::Input,
                        error: strict,
                        message: format!(
                            "collection {}: {unlisted} more bad records",
                            collection.name
                        ),
                    });
                }
            }
            Err(err) => report.error(ProblemClass::Input, err.to_string()),
        }
        if config.rerank.queries.is_none() {
            if let Some(path) = collection.own_file("queries.jsonl") {
                if let Err(err) = input::read_queries(&path) {
                    report.error(ProblemClass::Input, err.to_string());
                }
            }
        }
        if config.eval.qrels.is_none() {
            if let Some(path) = collection.own_file("qrels/test.tsv") {
                if let Err(err) = eval::read_qrels(&path) {
                    report.error(ProblemClass::Input, err.to_string());
                }
            }
        }
    }
    if let Some(path) = &config.rerank.queries {
        if let Err(err) = input::read_queries(path) {
            report.error(ProblemClass::Input, err.to_string());
        }
    }
    if let Some(path) = &config.eval.qrels {
        if let Err(err) = eval::read_qrels(path) {
            report.error(ProblemClass::Input, err.to_string());
        }
    }
}

fn check_models(config: &RunConfig, manager: &ModelManager, report: &mut CheckReport) {
    let base_dir = config.config_file.as_deref().and_then(Path::parent);
    let mut wanted: Vec<(String, String, Option<String>, bool)> = config
        .dense
        .models
        .iter()
        .map(|m| {
            (
                format!("dense model {:?}", m.name),
                m.model.clone(),
                m.revision.clone(),
                true,
            )
        })
        .collect();
    if config.sparse.enabled {
        wanted.push((
            "sparse model".into(),
            config.sparse.model.clone(),
            None,
            false,
        ));
    }
    if config.rerank.enabled {
        wanted.push((
            "rerank model".into(),
            config.rerank.model.clone(),
            None,
            false,
        ));
    }
    for (role, reference, revision, sentence_transformer) in wanted {
        let resolved = match manager.resolve(&reference, revision.as_deref(), base_dir) {
            Ok(resolved) => resolved,
            Err(err) => {
                report.error(ProblemClass::Model, format!("{role}: {err}"));
                continue;
            }
        };
        let mut problems = Vec::new();
        if let Err(err) = read_config(&resolved.dir) {
            problems.push(err.to_string());
        }
        if let Err(err) = resolved.weights_file() {
            problems.push(err.to_string());
        }
        let tokenizer = resolved.dir.join("tokenizer.json");
        if !tokenizer.is_file() {
            problems.push(format!(
                "{}: required model file is missing",
                tokenizer.display()
            ));
        }
        if sentence_transformer {
            if let Err(err) = SentenceTransformerInfo::read(&resolved.dir) {
                problems.push(err.to_string());
            }
        }
        if problems.is_empty() {
            report.models += 1;
        }
        for problem in problems {
            report.error(ProblemClass::Model, format!("{role}: {problem}"));
        }
    }
}

fn check_output(dir: &Path, report: &mut CheckReport) {
    let writable =
        std::fs::create_dir_all(dir).and_then(|_| tempfile::tempfile_in(dir).map(|_| ()));
    if let Err(err) = writable {
        report.error(
            ProblemClass::Output,
            format!("{}: output directory is not writable: {err}", dir.display()),
        );
    }
}
