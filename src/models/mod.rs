//! Models: finding them ([`manager`]), reading what sentence-transformers reads
//! ([`sentence_transformers`]), tokenising ([`tokenize`]), encoders ([`bert`]) and heads
//! ([`pooling`]). [`dense`] puts them together into the bi-encoder the dense stage uses.

pub use crate::config::aliases;
pub mod architecture;
pub mod bert_family;
pub mod cross_encoder;
pub mod decoder;
pub mod dense;
pub mod device;
pub mod encoder;
pub mod identity;
pub mod manager;
pub mod packed;
pub mod pooling;
pub mod replicas;
pub mod resident;
pub mod sentence_transformers;
pub mod splade;
pub mod tokenize;
pub mod weights_file;

use std::path::PathBuf;

pub use cross_encoder::{CrossEncoder, PairScore, ScoreActivation};
pub use dense::{DenseEmbedder, DenseItems, DenseOutput, TextRole};
pub use device::{select_device, select_devices, SelectedDevice};
pub use encoder::{run_encoded, run_encoder_batches, BatchResults, Encoder};
pub use identity::{ModelIdentity, ModelRole};
pub use manager::{ModelManager, ModelSource, ResolvedModel};
pub use pooling::Pooling;
pub use replicas::Replicas;
pub use resident::{LoadError, LoadedModels, ResidentModels};
pub use splade::SpladeEncoder;

/// Why a model could not be found, loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model {reference:?} not found{}; looked in: {}", if *.offline { " (HF_HUB_OFFLINE is set, so the Hub was not asked)" } else { "" }, searched.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    NotFound {
        reference: String,
        searched: Vec<PathBuf>,
        offline: bool,
    },
    #[error("model {reference:?}: download of {file} from the Hugging Face Hub failed")]
    Hub {
        reference: String,
        file: String,
        #[source]
        source: hf_hub::api::sync::ApiError,
    },
    #[error("{path}: required model file is missing")]
    MissingFile { path: PathBuf },
    #[error("{path}: cannot read")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: invalid JSON")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: {message}")]
    Unsupported { path: PathBuf, message: String },
    #[error("{path}: cannot load tokenizer: {message}")]
    Tokenizer { path: PathBuf, message: String },
    #[error("tokenization failed: {message}")]
    Tokenize { message: String },
    #[error("{context}")]
    Candle {
        context: String,
        #[source]
        source: candle_core::Error,
    },
    #[error("model produced non-finite values (NaN or infinity)")]
    NonFinite,
    /// A failure forced by a test's fault injector.
    #[error("failure injected (test)")]
    Injected,
    #[error("device {device}: {message}")]
    Device { device: String, message: String },
    /// This machine cannot run the CUDA build (driver, GPUs or libraries; see
    /// [`crate::gpu::runtime`]).
    #[error(transparent)]
    CudaRuntime(Box<crate::gpu::runtime::CudaRuntimeError>),
    /// The device ran out of memory for a batch (the batch is halved and retried).
    #[error("out of memory: {message}")]
    OutOfMemory { message: String },
    /// An item failed even in a batch of its own.
    #[error("{message}")]
    Item { message: String },
    /// A graceful stop (SIGINT/SIGTERM, [`crate::interrupt`]) came before the item was run.
    #[error("interrupted: the run was stopped before this item was processed")]
    Interrupted,
}

impl From<crate::gpu::runtime::CudaRuntimeError> for ModelError {
    fn from(err: crate::gpu::runtime::CudaRuntimeError) -> Self {
        ModelError::CudaRuntime(Box::new(err))
    }
}

impl ModelError {
    /// Whether this is an out-of-memory failure: ours, or CUDA's as candle reports it (the
    /// driver's `CUDA_ERROR_OUT_OF_MEMORY` / "out of memory", cuBLAS's
    /// `CUBLAS_STATUS_ALLOC_FAILED` when its workspace cannot be allocated).
    pub fn is_out_of_memory(&self) -> bool {
        match self {
            ModelError::OutOfMemory { .. } => true,
            ModelError::Candle { source, .. } => {
                let text = source.to_string().to_ascii_lowercase();
                ["out_of_memory", "out of memory", "alloc_failed"]
                    .iter()
                    .any(|marker| text.contains(marker))
            }
            _ => false,
        }
    }

    /// Classifies a batch error for [`crate::dispatch::run_batches`].
    pub fn as_batch_failure(self) -> crate::dispatch::BatchFailure<ModelError> {
        if self.is_out_of_memory() {
            crate::dispatch::BatchFailure::OutOfMemory(self)
        } else {
            crate::dispatch::BatchFailure::Other(self)
        }
    }

    /// An item's failure from a dispatch, as a model error.
    pub fn from_item(err: crate::dispatch::ItemError<ModelError>) -> Self {
        match err {
            crate::dispatch::ItemError::OutOfMemory(inner)
            | crate::dispatch::ItemError::Failed(inner) => inner,
            crate::dispatch::ItemError::Interrupted => ModelError::Interrupted,
            other => ModelError::Item {
                message: other.to_string(),
            },
        }
    }

    pub(crate) fn candle(context: impl Into<String>) -> impl FnOnce(candle_core::Error) -> Self {
        let context = context.into();
        move |source| ModelError::Candle { context, source }
    }
}

/// Reads and parses a JSON file.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(
    path: &std::path::Path,
) -> Result<T, ModelError> {
    let bytes = std::fs::read(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|source| ModelError::Json {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candle_error(message: &str) -> ModelError {
        ModelError::Candle {
            context: "BERT forward failed".to_string(),
            source: candle_core::Error::Msg(message.to_string()),
        }
    }

    #[test]
    fn cuda_out_of_memory_errors_are_recognised_and_others_are_not() {
        // The texts cudarc's DriverError and CublasError display, as candle passes them on.
        assert!(
            candle_error("DriverError(CUDA_ERROR_OUT_OF_MEMORY, \"out of memory\")")
                .is_out_of_memory()
        );
        assert!(candle_error("CublasError(CUBLAS_STATUS_ALLOC_FAILED)").is_out_of_memory());
        assert!(!candle_error("shape mismatch in matmul").is_out_of_memory());
        assert!(!ModelError::NonFinite.is_out_of_memory());
        assert!(matches!(
            candle_error("CUDA_ERROR_OUT_OF_MEMORY").as_batch_failure(),
            crate::dispatch::BatchFailure::OutOfMemory(_)
        ));
    }
}
