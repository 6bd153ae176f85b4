//! `embed-collections check`: everything a run would trip over, found without running a model
//! and reported all at once — inputs (every bad record, not just the first), query and qrels
//! files, model availability and loadability of their side files, the device, and whether the
//! output directory is writable.

use super::inputs::{config_inputs, discover, run_outputs};
use crate::config::RunConfig;
use crate::eval;
use crate::gpu::LeaseOptions;
use crate::input::Collection;
use crate::input::{self, InvalidInputPolicy};
use crate::models::architecture::{
    checked_max_length, read_architecture, read_config, Architecture,
};
use crate::models::sentence_transformers::SentenceTransformerInfo;
use crate::models::tokenize::TextTokenizer;
use crate::models::weights_file::inspect_weights;
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
    // An output that is an input: before the writability probe, which writes in the output.
    let metrics = config
        .telemetry
        .metrics_file
        .clone()
        .unwrap_or_else(|| config.output.dir.join(crate::export::METRICS_FILE));
    let outputs = run_outputs(&config.output.dir, metrics);
    let overlaps = super::overlap::overlaps(&outputs, &config_inputs(config, true));
    if overlaps.is_empty() {
        check_output(&config.output.dir, &mut report);
    }
    for overlap in overlaps {
        report.error(ProblemClass::Output, overlap.to_string());
    }
    check_reuse(config, &mut report);
    report
}

/// `--reuse`: the earlier output has a manifest (its files' hashes are checked by the run, which
/// reads them anyway). The output directory itself may have none yet (a first run).
fn check_reuse(config: &RunConfig, report: &mut CheckReport) {
    let Some(dir) = &config.output.reuse else {
        return;
    };
    let manifest = dir.join(crate::export::MANIFEST_FILE);
    // In place, a first run has nothing to reuse yet, and that is fine.
    let in_place = crate::files::same_dir(dir, &config.output.dir);
    if !manifest.is_file() && !in_place {
        report.error(
            ProblemClass::Input,
            format!(
                "output.reuse: {} has no {}; --reuse takes an earlier run's output directory",
                config.display_path(dir).display(),
                crate::export::MANIFEST_FILE
            ),
        );
    }
}

fn check_inputs(config: &RunConfig, report: &mut CheckReport) {
    let collections = match discover(config) {
        Ok(collections) => collections,
        Err(err) => return report.error(ProblemClass::Input, err.to_string()),
    };
    report.collections = collections.len();
    for problem in collection_output_problems(&config.output.dir, &collections) {
        report.error(ProblemClass::Output, problem);
    }
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

/// A model a run would load: what it is for, its reference, and the max length it is asked for.
struct WantedModel {
    role: String,
    reference: String,
    revision: Option<String>,
    sentence_transformer: bool,
    max_length: Option<usize>,
    /// The hidden size a model alias promises.
    expected_dim: Option<usize>,
}

fn wanted_models(config: &RunConfig) -> Vec<WantedModel> {
    let mut wanted: Vec<WantedModel> = config
        .dense
        .models
        .iter()
        .map(|m| WantedModel {
            role: format!("dense model {:?}", m.name),
            reference: m.model.clone(),
            revision: m.revision.clone(),
            sentence_transformer: true,
            max_length: m.max_length,
            expected_dim: m.expected_dim,
        })
        .collect();
    if config.sparse.enabled {
        wanted.push(WantedModel {
            role: "sparse model".into(),
            reference: config.sparse.model.clone(),
            revision: None,
            sentence_transformer: false,
            max_length: None,
            expected_dim: None,
        });
    }
    if config.rerank.enabled {
        wanted.push(WantedModel {
            role: "rerank model".into(),
            reference: config.rerank.model.clone(),
            revision: None,
            sentence_transformer: false,
            max_length: config.rerank.max_length,
            expected_dim: None,
        });
    }
    wanted
}

/// Every check of the configured models that needs no forward pass: each resolves, its
/// `config.json`, weights header and embedding shapes, tokenizer and sentence-transformers
/// files parse, the configured max length fits its positions, and the memory ceiling holds
/// its weights plus the smallest batch budget a stage runs with. Returns the problems (each
/// naming the model's role) and how many models passed. `check` reports them; a run refuses
/// to start on any of them, before a model is loaded (a model that cannot be found is left
/// to the loader there, whose error says how to fetch it).
pub fn model_problems(config: &RunConfig, manager: &ModelManager) -> ModelProblems {
    let base_dir = config.config_file.as_deref().and_then(Path::parent);
    let mut found = ModelProblems::default();
    for wanted in wanted_models(config) {
        let role = &wanted.role;
        let resolved =
            match manager.resolve(&wanted.reference, wanted.revision.as_deref(), base_dir) {
                Ok(resolved) => resolved,
                Err(err) => {
                    found.unresolved.push(format!("{role}: {err}"));
                    continue;
                }
            };
        let mut problems = Vec::new();
        // Dense models may be decoders; the sparse and rerank heads need an encoder.
        let architecture = if wanted.sentence_transformer {
            read_architecture(&resolved.dir)
        } else {
            read_config(&resolved.dir).map(Architecture::Encoder)
        }
        .map_err(|err| problems.push(err.to_string()));
        let st = if wanted.sentence_transformer {
            SentenceTransformerInfo::read(&resolved.dir)
                .map_err(|err| problems.push(err.to_string()))
                .ok()
        } else {
            None
        };
        let mut max_length = None;
        if let Ok(architecture) = &architecture {
            if let Some(expected) = wanted
                .expected_dim
                .filter(|d| *d != architecture.hidden_size())
            {
                problems.push(format!(
                    "{}: embeds to {} dimensions where its alias says {expected}",
                    resolved.dir.join("config.json").display(),
                    architecture.hidden_size()
                ));
            }
            match checked_max_length(
                &resolved.dir,
                wanted.max_length,
                st.as_ref().and_then(|st| st.max_seq_length),
                architecture.usable_positions(),
            ) {
                Ok(length) => max_length = Some(length),
                Err(err) => problems.push(err.to_string()),
            }
            match resolved.weights_file() {
                Ok(weights) => match inspect_weights(&weights, architecture) {
                    Ok(bytes) => {
                        if let Some(problem) = ceiling_problem(config, bytes) {
                            problems.push(problem);
                        }
                    }
                    Err(err) => problems.push(err.to_string()),
                },
                Err(err) => problems.push(err.to_string()),
            }
        }
        let tokenizer = resolved.dir.join("tokenizer.json");
        if !tokenizer.is_file() {
            problems.push(format!(
                "{}: required model file is missing",
                tokenizer.display()
            ));
        } else if let Err(err) = TextTokenizer::load(&tokenizer, max_length.unwrap_or(512)) {
            problems.push(err.to_string());
        }
        if problems.is_empty() {
            found.passed += 1;
        }
        found.problems.extend(
            problems
                .into_iter()
                .map(|problem| format!("{role}: {problem}")),
        );
    }
    found
}

/// What [`model_problems`] found.
#[derive(Debug, Default)]
pub struct ModelProblems {
    /// Models that could not be found (or fetched).
    pub unresolved: Vec<String>,
    /// Problems of the models that were found.
    pub problems: Vec<String>,
    /// Models without a problem.
    pub passed: usize,
}

/// The memory ceiling against one copy of a model's weights: every stage needs its weights
/// resident plus at least the lease's smallest batch budget.
fn ceiling_problem(config: &RunConfig, weight_bytes: u64) -> Option<String> {
    let ceiling = config.gpu.memory_ceiling.0;
    let floor = LeaseOptions::default().min_budget_bytes;
    let needed = weight_bytes.saturating_add(floor);
    let mib = |bytes: u64| format!("{:.1} MiB", bytes as f64 / f64::from(1u32 << 20));
    (ceiling < needed).then(|| {
        format!(
            "gpu.memory_ceiling {} is less than the model needs: its weights ({}) plus the {} \
             the smallest batch budget takes; raise gpu.memory_ceiling to at least {}MiB",
            config.gpu.memory_ceiling,
            mib(weight_bytes),
            mib(floor),
            needed.div_ceil(1 << 20),
        )
    })
}

fn check_models(config: &RunConfig, manager: &ModelManager, report: &mut CheckReport) {
    let found = model_problems(config, manager);
    report.models += found.passed;
    for problem in found.unresolved.into_iter().chain(found.problems) {
        report.error(ProblemClass::Model, problem);
    }
}

/// Where a collection's files go, checked before any model runs: a file in the place of its
/// directory, or a directory that cannot be written, would otherwise fail the collection only
/// after all its embedding was done.
pub fn collection_output_problems(output_dir: &Path, collections: &[Collection]) -> Vec<String> {
    let mut problems = Vec::new();
    for collection in collections {
        let dir = match crate::export::collection_dir(output_dir, &collection.name) {
            Ok(dir) => dir,
            Err(err) => {
                problems.push(err.to_string());
                continue;
            }
        };
        match std::fs::symlink_metadata(&dir) {
            Ok(meta) if meta.file_type().is_symlink() => problems.push(format!(
                "{}: collection {:?} writes its files here, but it is a symbolic link; the \
                 tool never writes through a link (remove it)",
                dir.display(),
                collection.name
            )),
            Ok(meta) if !meta.is_dir() => problems.push(format!(
                "{}: collection {:?} writes its files here, but it is a file, not a directory",
                dir.display(),
                collection.name
            )),
            Ok(_) => {
                if let Err(err) = tempfile::tempfile_in(&dir) {
                    problems.push(format!(
                        "{}: collection {:?}'s output directory is not writable: {err}",
                        dir.display(),
                        collection.name
                    ));
                }
            }
            Err(_) => {}
        }
    }
    problems
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
