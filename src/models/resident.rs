//! The models resident on the run's devices, and the one place they are loaded and unloaded.
//!
//! Every model is loaded once at the start of a run (so a missing or broken model fails the run
//! before any collection, and the manifest lists them all). On GPUs — and on the CPU when a test
//! asks — stages are exclusive: making one stage's models resident first unloads every other
//! stage's, so one model at a time sits on a device. On the CPU they stay resident (small,
//! shared by the workers).

use super::encoder::Encoder;
use super::{
    CrossEncoder, DenseEmbedder, ModelError, ModelIdentity, ModelManager, Replicas, SelectedDevice,
    SpladeEncoder,
};
use crate::batching::BatchBudget;
use crate::config::RunConfig;
use crate::gpu::StageNeeds;
use crate::stage::Stage;
use std::collections::BTreeMap;
use std::path::Path;
use tracing::info;

/// Largest SPLADE logits slice on the CPU (see [`ResidentModels::load_sparse`]).
const CPU_LOGITS_BUDGET: u64 = 256 << 20;

/// A model that could not be loaded, named as the config names it.
#[derive(Debug, thiserror::Error)]
#[error("cannot load model {name:?}")]
pub struct LoadError {
    pub name: String,
    #[source]
    pub source: Box<ModelError>,
}

/// Maps a model error to the load error naming the model.
fn model_error(name: &str) -> impl FnOnce(ModelError) -> LoadError {
    let name = name.to_string();
    move |source| LoadError {
        name,
        source: Box::new(source),
    }
}

/// `cpu` or `cuda:0,cuda:1`: the devices a stage's replicas sit on, for logs.
pub fn device_labels(devices: &[SelectedDevice]) -> String {
    devices
        .iter()
        .map(|d| d.label.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

// `StageNeeds` lives in `gpu` (what the planner reads); how a loaded model fills it, here.
impl StageNeeds {
    /// The needs of `models` (one replica per device) running `stage` with the configured
    /// batch budget, their weights counted as not yet uploaded.
    pub fn for_model<M: Encoder>(
        stage: Stage,
        models: &Replicas<M>,
        configured: BatchBudget,
    ) -> Self {
        let primary = models.primary();
        let (memory, weights_bytes) = primary.memory_profile();
        Self {
            stage,
            device_labels: models
                .replicas()
                .iter()
                .map(|m| m.identity().device.clone())
                .collect(),
            model: memory,
            weights_bytes,
            max_length: primary.identity().max_length,
            workers: models.workers().len(),
            configured,
        }
    }
}

/// Every stage's models, owned by their holder ([`ResidentModels::into_models`]).
pub struct LoadedModels {
    pub dense: Vec<Replicas<DenseEmbedder>>,
    pub sparse: Option<Replicas<SpladeEncoder>>,
    pub cross_encoder: Option<Replicas<CrossEncoder>>,
}

/// The models resident now (all of them on the CPU; the current stage's in exclusive mode).
pub struct ResidentModels<'a> {
    config: &'a RunConfig,
    manager: &'a ModelManager,
    devices: &'a [SelectedDevice],
    exclusive: bool,
    pub dense: Vec<Replicas<DenseEmbedder>>,
    pub sparse: Option<Replicas<SpladeEncoder>>,
    pub cross_encoder: Option<Replicas<CrossEncoder>>,
    /// What each model needs of a device (memory model, weights, replicas), recorded at the
    /// first load, so a stage can lease its devices *before* its weights are uploaded.
    profiles: BTreeMap<(Stage, usize), StageNeeds>,
}

impl<'a> ResidentModels<'a> {
    /// Loads every configured model once (see the module docs) and returns their identities
    /// for the manifest. `exclusive_cpu`: exclusive stages on the CPU too (tests).
    pub fn load_all(
        config: &'a RunConfig,
        manager: &'a ModelManager,
        devices: &'a [SelectedDevice],
        exclusive_cpu: bool,
    ) -> Result<(Self, Vec<ModelIdentity>), LoadError> {
        let exclusive = exclusive_cpu || devices.iter().any(|d| !d.device.is_cpu());
        Self::load_with(config, manager, devices, exclusive)
    }

    /// Loads every configured model once and keeps all of them resident on every device,
    /// GPUs included: a long-lived process (`serve`) answers any route at any time, so no
    /// stage may unload another's models.
    pub fn load_every_stage(
        config: &'a RunConfig,
        manager: &'a ModelManager,
        devices: &'a [SelectedDevice],
    ) -> Result<(Self, Vec<ModelIdentity>), LoadError> {
        Self::load_with(config, manager, devices, false)
    }

    /// The loaded models, owned: (dense models in config order, SPLADE, CrossEncoder).
    pub fn into_models(self) -> LoadedModels {
        LoadedModels {
            dense: self.dense,
            sparse: self.sparse,
            cross_encoder: self.cross_encoder,
        }
    }

    fn load_with(
        config: &'a RunConfig,
        manager: &'a ModelManager,
        devices: &'a [SelectedDevice],
        exclusive: bool,
    ) -> Result<(Self, Vec<ModelIdentity>), LoadError> {
        let mut models = Self {
            config,
            manager,
            devices,
            exclusive,
            dense: Vec::new(),
            sparse: None,
            cross_encoder: None,
            profiles: BTreeMap::new(),
        };
        let mut identities = Vec::new();
        // `activate` is what the stages call: in exclusive mode it unloads the other stages'
        // models before loading this one's.
        for stage in [Stage::Dense, Stage::Sparse, Stage::Rerank] {
            models.activate(stage)?;
            identities.extend(models.identities(stage));
            models.record_profiles(stage);
        }
        Ok((models, identities))
    }

    fn record_profiles(&mut self, stage: Stage) {
        /// Each model's needs; the configured budget is filled in by `needs`.
        fn of<M: Encoder>(stage: Stage, models: &[Replicas<M>]) -> Vec<StageNeeds> {
            let unset = BatchBudget {
                max_tokens: 0,
                max_items: 0,
            };
            models
                .iter()
                .map(|m| StageNeeds::for_model(stage, m, unset))
                .collect()
        }
        let needs = match stage {
            Stage::Dense => of(stage, &self.dense),
            Stage::Sparse => of(stage, self.sparse.as_slice()),
            Stage::Rerank => of(stage, self.cross_encoder.as_slice()),
            _ => Vec::new(),
        };
        for (index, needs) in needs.into_iter().enumerate() {
            self.profiles.insert((stage, index), needs);
        }
    }

    /// What the `index`-th model of `stage` needs of its devices, to lease them before
    /// [`Self::activate`] uploads its weights. Weights already resident count 0: the lease's
    /// free-memory reading excludes them already. `None` for a model not configured.
    pub fn needs(&self, stage: Stage, index: usize, configured: BatchBudget) -> Option<StageNeeds> {
        let mut needs = self.profiles.get(&(stage, index))?.clone();
        let resident = match stage {
            Stage::Dense => self.dense.len() > index,
            Stage::Sparse => self.sparse.is_some(),
            Stage::Rerank => self.cross_encoder.is_some(),
            _ => false,
        };
        if resident {
            needs.weights_bytes = 0;
        }
        needs.configured = configured;
        Some(needs)
    }

    /// The identities of `stage`'s resident models.
    pub fn identities(&self, stage: Stage) -> Vec<ModelIdentity> {
        fn identity<M: Encoder>(m: &Replicas<M>) -> ModelIdentity {
            m.primary().identity().clone()
        }
        match stage {
            Stage::Dense => self.dense.iter().map(identity).collect(),
            Stage::Sparse => self.sparse.iter().map(identity).collect(),
            Stage::Rerank => self.cross_encoder.iter().map(identity).collect(),
            _ => Vec::new(),
        }
    }

    /// Whether stages hold their devices exclusively (GPUs, or a test on the CPU).
    pub fn exclusive(&self) -> bool {
        self.exclusive
    }

    /// Model paths in the config are relative to the config file.
    fn model_base_dir(&self) -> Option<&Path> {
        self.config.config_file.as_deref().and_then(Path::parent)
    }

    /// Makes `stage`'s models resident; in exclusive mode first unloads every other stage's.
    pub fn activate(&mut self, stage: Stage) -> Result<(), LoadError> {
        let devices = self.devices;
        let models = self;
        if models.exclusive {
            let unloaded = [
                (stage != Stage::Dense && !models.dense.is_empty(), "dense"),
                (stage != Stage::Sparse && models.sparse.is_some(), "sparse"),
                (
                    stage != Stage::Rerank && models.cross_encoder.is_some(),
                    "rerank",
                ),
            ];
            if stage != Stage::Dense {
                models.dense.clear();
            }
            if stage != Stage::Sparse {
                models.sparse = None;
            }
            if stage != Stage::Rerank {
                models.cross_encoder = None;
            }
            for (_, kind) in unloaded.iter().filter(|(was, _)| *was) {
                info!(stage = kind, devices = %device_labels(devices), "model unloaded (exclusive stages)");
            }
        }
        match stage {
            Stage::Dense if models.dense.is_empty() => models.dense = models.load_dense(devices)?,
            Stage::Sparse if models.sparse.is_none() => {
                models.sparse = models.load_sparse(devices)?
            }
            Stage::Rerank if models.cross_encoder.is_none() => {
                models.cross_encoder = models.load_cross_encoder(devices)?
            }
            _ => {}
        }
        Ok(())
    }

    fn load_dense(
        &self,
        devices: &[SelectedDevice],
    ) -> Result<Vec<Replicas<DenseEmbedder>>, LoadError> {
        let config = &self.config;
        let base_dir = self.model_base_dir();
        let mut dense = Vec::new();
        for model in &config.dense.models {
            let resolved = self
                .manager
                .resolve(&model.model, model.revision.as_deref(), base_dir)
                .map_err(model_error(&model.name))?;
            let embedder = Replicas::load(devices, |device| {
                DenseEmbedder::load(model, &resolved, device)
            })
            .map_err(model_error(&model.name))?;
            let id = embedder.primary().identity();
            info!(name = %id.name, model = %id.model, dim = id.dim, max_length = id.max_length,
                devices = %device_labels(devices), dtype = %id.dtype, "dense model loaded");
            dense.push(embedder);
        }
        Ok(dense)
    }

    fn load_sparse(
        &self,
        devices: &[SelectedDevice],
    ) -> Result<Option<Replicas<SpladeEncoder>>, LoadError> {
        let config = &self.config;
        let base_dir = self.model_base_dir();
        let sparse = if config.sparse.enabled {
            let name = &config.sparse.name;
            let resolved = self
                .manager
                .resolve(&config.sparse.model, None, base_dir)
                .map_err(model_error(name))?;
            // One slice of SPLADE logits may take an eighth of the device ceiling; on the CPU at
            // most 256 MiB: the ceiling is a GPU budget, and bigger slices only raise peak RSS
            // (2.8 GB vs 0.9 GB for dense on the quickstart) without speeding anything up.
            let ceiling_share = config.gpu.memory_ceiling.0 / 8;
            let share = if devices.iter().all(|d| d.device.is_cpu()) {
                ceiling_share.min(CPU_LOGITS_BUDGET)
            } else {
                ceiling_share
            };
            let logits_budget = usize::try_from(share).unwrap_or(usize::MAX);
            let encoder = Replicas::load(devices, |device| {
                SpladeEncoder::load(
                    name,
                    &config.sparse.model,
                    &resolved,
                    device,
                    config.sparse.max_terms,
                    logits_budget,
                    config.sparse.precision,
                )
            })
            .map_err(model_error(name))?;
            let id = encoder.primary().identity();
            info!(name = %id.name, model = %id.model, vocab = id.dim, max_length = id.max_length,
                devices = %device_labels(devices), "sparse model loaded");
            Some(encoder)
        } else {
            None
        };
        Ok(sparse)
    }

    fn load_cross_encoder(
        &self,
        devices: &[SelectedDevice],
    ) -> Result<Option<Replicas<CrossEncoder>>, LoadError> {
        let config = &self.config;
        let base_dir = self.model_base_dir();
        let cross_encoder = if config.rerank.enabled {
            let resolved = self
                .manager
                .resolve(&config.rerank.model, None, base_dir)
                .map_err(model_error("rerank"))?;
            let ce = Replicas::load(devices, |device| {
                CrossEncoder::load(
                    &config.rerank.model,
                    &resolved,
                    device,
                    config.rerank.max_length,
                    config.rerank.precision,
                )
            })
            .map_err(model_error("rerank"))?;
            let primary = ce.primary();
            info!(model = %primary.identity().model, max_length = primary.identity().max_length,
                activation = ?primary.activation(), devices = %device_labels(devices),
                "rerank model loaded");
            Some(ce)
        } else {
            None
        };
        Ok(cross_encoder)
    }
}
