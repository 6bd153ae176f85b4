//! Why a run could not start or finish ([`RunError`]), with the class (exit code) and hint of
//! each reason.

use super::merge::MergeError;
use super::overlap::Overlap;
use super::resume::ResumeError;
use super::reuse::ReuseError;
use super::state::StateError;
use crate::eval;
use crate::exit::{Classified, ErrorClass};
use crate::input::{HashError, InputError};
use crate::models::{LoadError, ModelError};
use std::path::PathBuf;

/// Why a run could not start or finish.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot use the output directory")]
    Output(#[source] StateError),
    #[error(transparent)]
    Resume(ResumeError),
    #[error("cannot discover collections")]
    Discover(#[source] InputError),
    #[error(transparent)]
    Model(LoadError),
    #[error("cannot use the configured devices (gpu.devices)")]
    Device(#[source] ModelError),
    #[error("cannot read the query file")]
    Queries(#[source] InputError),
    #[error("cannot read the qrels file")]
    Qrels(#[source] eval::EvalError),
    #[error(transparent)]
    Merge(MergeError),
    /// Problems found before any model was loaded (models, memory ceiling, output paths).
    #[error("cannot start the run:{}", .0.iter().map(|p| format!("\n  - {p}")).collect::<String>())]
    Preflight(Vec<String>),
    #[error(transparent)]
    Hash(HashError),
    #[error(transparent)]
    Reuse(ReuseError),
    /// An output would overwrite, or be written inside, an input.
    #[error("an output would overwrite an input:{}", .0.iter().map(|o| format!("\n  - {o}")).collect::<String>())]
    Overlap(Vec<Overlap>),
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot encode the queries: {0}")]
    Encode(String),
    #[error("interrupted")]
    Interrupted,
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Classified for RunError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Output(StateError::Busy { .. })
            | Self::Resume(_)
            | Self::Merge(_)
            | Self::Overlap(_)
            | Self::Reuse(_)
            | Self::Device(ModelError::CudaRuntime(_)) => ErrorClass::Config,
            Self::Read { .. }
            | Self::Hash(_)
            | Self::Discover(_)
            | Self::Queries(_)
            | Self::Qrels(_) => ErrorClass::Input,
            Self::Output(_)
            | Self::Model(_)
            | Self::Write { .. }
            | Self::Preflight(_)
            | Self::Device(_)
            | Self::Encode(_) => ErrorClass::Failure,
            Self::Interrupted => ErrorClass::Interrupted,
        }
    }

    fn hint(&self) -> Option<&'static str> {
        Some(match self {
            Self::Output(StateError::Busy { .. }) => "another run is writing this output directory; use another --output",
            Self::Output(_) | Self::Write { .. } => "check that output.dir is writable",
            Self::Resume(_) => "run with the same configuration, models and input, or without --resume",
            Self::Merge(_) => "merge the shards with the configuration, models and input they ran with (the same --config and flags)",
            Self::Read { .. } | Self::Hash(_) => "check that the input files are readable",
            Self::Overlap(_) => "an output must never be an input or inside one: choose another output path",
            Self::Reuse(_) => "--reuse takes an earlier run's output directory, unchanged since that run; run without --reuse to embed everything",
            Self::Discover(_) => "check [input] root and collections",
            Self::Queries(_) => "check rerank.queries (JSONL lines with `_id` or `id`, and `text`)",
            Self::Qrels(_) => "check eval.qrels (BEIR TSV: query-id, corpus-id, score)",
            Self::Model(_) => "run scripts/fetch-models.sh, or point models.dir / --models-dir at the fetched models",
            Self::Preflight(_) => "`embed-collections check` lists every problem; fix them, then run again",
            Self::Device(ModelError::CudaRuntime(_)) => "`embed-collections devices` reports what this machine has; or use --device cpu",
            Self::Device(_) => "use --device cpu, or a CUDA build (scripts/build-cuda.sh) on a machine with an NVIDIA GPU",
            Self::Encode(_) | Self::Interrupted => return None,
        })
    }
}
