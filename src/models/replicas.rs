//! One copy of a model per device of a stage (data parallelism): with N leased GPUs,
//! N replicas, each fed by its own batch worker; on the CPU one copy shared by one worker per
//! thread. The stage dispatches to [`Replicas::workers`] and gets results back in input order
//! ([`crate::models::run_encoder_batches`]), so the output does not depend on how many devices
//! ran it.

use super::encoder::Encoder;
use super::{ModelError, SelectedDevice};

/// A model loaded once per device: never empty, the same model and settings on every device.
pub struct Replicas<M> {
    models: Vec<M>,
}

impl<M: Encoder> Replicas<M> {
    /// Loads one copy per device with `load`, in device order; the first error stops.
    pub fn load(
        devices: &[SelectedDevice],
        mut load: impl FnMut(&SelectedDevice) -> Result<M, ModelError>,
    ) -> Result<Self, ModelError> {
        let models = devices
            .iter()
            .map(&mut load)
            .collect::<Result<Vec<M>, _>>()?;
        if models.is_empty() {
            return Err(ModelError::Device {
                device: "(none)".to_string(),
                message: "no device to load the model on".to_string(),
            });
        }
        Ok(Self { models })
    }

    /// The first copy: identity, tokenizer and memory profile are the same for all.
    pub fn primary(&self) -> &M {
        &self.models[0]
    }

    pub fn replicas(&self) -> &[M] {
        &self.models
    }

    /// One entry per batch worker: each copy repeated by its own worker count.
    pub fn workers(&self) -> Vec<&M> {
        self.models
            .iter()
            .flat_map(|model| std::iter::repeat_n(model, model.workers().max(1)))
            .collect()
    }
}
