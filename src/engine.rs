//! The models a long-lived process holds, and the one path from texts to vectors and scores
//! that every front end shares.
//!
//! A text becomes a vector in two steps, whoever asks: the model's own tokenisation with its
//! prompt and truncation ([`DenseEmbedder::tokenize`], the SPLADE and CrossEncoder tokenizers),
//! then the token-budget plan run on the model's workers ([`run`], which is
//! [`crate::models::run_encoded`]: length-sorted batches, out-of-memory halving, one result per
//! item in input order). The batch pipeline calls them per window and `embed-queries` per
//! file; `serve` ([`crate::serve`]) calls them with batches cut across concurrent requests.
//!
//! What [`Engine`] adds is ownership: a batch run loads its models per stage and, on GPUs,
//! unloads one stage's before the next ([`ResidentModels`]); a server must answer any route at
//! any time, so the engine holds every stage's models at once, shared by reference count with
//! the threads that run them.

use crate::batching::BatchBudget;
use crate::config::RunConfig;
use crate::dispatch::DispatchError;
use crate::models::tokenize::Encoded;
use crate::models::{
    run_encoded, select_devices, CrossEncoder, DenseEmbedder, Encoder, LoadError, LoadedModels,
    ModelError, ModelIdentity, ModelManager, Replicas, ResidentModels, SelectedDevice,
    SpladeEncoder,
};
use std::sync::Arc;

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("no usable device")]
    Device(#[source] ModelError),
    #[error(transparent)]
    Load(#[from] LoadError),
}

/// Every model of a run configuration, resident together: the dense models in config order
/// (their vector names), SPLADE and the CrossEncoder where the configuration enables them.
pub struct Engine {
    dense: Vec<Arc<Replicas<DenseEmbedder>>>,
    sparse: Option<Arc<Replicas<SpladeEncoder>>>,
    cross_encoder: Option<Arc<Replicas<CrossEncoder>>>,
    identities: Vec<ModelIdentity>,
    devices: Vec<SelectedDevice>,
}

impl Engine {
    /// Selects the configured devices and loads every model on them, as a run does (the same
    /// resolution, precision and checks), but keeps all of them resident.
    pub fn load(config: &RunConfig, manager: &ModelManager) -> Result<Self, EngineError> {
        let devices = select_devices(&config.gpu.devices, config.gpu.precision)
            .map_err(EngineError::Device)?;
        let (resident, identities) = ResidentModels::load_every_stage(config, manager, &devices)?;
        let LoadedModels {
            dense,
            sparse,
            cross_encoder,
        } = resident.into_models();
        Ok(Self {
            dense: dense.into_iter().map(Arc::new).collect(),
            sparse: sparse.map(Arc::new),
            cross_encoder: cross_encoder.map(Arc::new),
            identities,
            devices,
        })
    }

    /// The dense models, in config order.
    pub fn dense(&self) -> &[Arc<Replicas<DenseEmbedder>>] {
        &self.dense
    }

    /// The position of the dense model whose vector name is `name`.
    pub fn dense_position(&self, name: &str) -> Option<usize> {
        self.dense
            .iter()
            .position(|m| m.primary().identity().name == name)
    }

    pub fn sparse(&self) -> Option<&Arc<Replicas<SpladeEncoder>>> {
        self.sparse.as_ref()
    }

    pub fn cross_encoder(&self) -> Option<&Arc<Replicas<CrossEncoder>>> {
        self.cross_encoder.as_ref()
    }

    /// Every loaded model's identity (weights and tokenizer hashes, prompts, dtype, device).
    pub fn identities(&self) -> &[ModelIdentity] {
        &self.identities
    }

    pub fn devices(&self) -> &[SelectedDevice] {
        &self.devices
    }
}

/// Runs tokenised items through `models`' workers under `budget`: one result per item, in
/// input order (an item that fails alone gets its error; the others their values).
pub fn run<M: Encoder>(
    models: &Replicas<M>,
    encodings: &[Encoded],
    budget: BatchBudget,
) -> Result<Vec<Result<M::Output, ModelError>>, DispatchError> {
    run_encoded(&models.workers(), encodings, budget, None, &|i| i, &|_| {})
        .map(|outcome| outcome.results)
}
