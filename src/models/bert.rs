//! The BERT-family encoder (MiniLM, BGE, E5, GTE-style BERT): token ids in, hidden states out.
//! Heads (pooling, later SPLADE and CrossEncoder) are separate; this type only encodes.
//!
//! For now this wraps candle-transformers' `BertModel`, which matches a float64 reference to
//! ~2e-7 on all-MiniLM-L6-v2. Weights come through [`Checkpoint`], which resolves legacy names.

use super::checkpoint::Checkpoint;
use super::tokenize::Encoded;
use super::ModelError;
use candle_core::{Device, Tensor};
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use std::path::Path;

/// A padded batch ready for the encoder.
pub struct PaddedBatch {
    pub input_ids: Tensor,
    pub type_ids: Tensor,
    /// [batch, seq] u32, 1 for real tokens.
    pub mask: Tensor,
    /// Real tokens per row.
    pub lengths: Vec<usize>,
}

impl PaddedBatch {
    /// Right-pads `items` to the longest one with `pad_id`.
    pub fn new(items: &[&Encoded], pad_id: u32, device: &Device) -> Result<Self, ModelError> {
        let seq = items.iter().map(|e| e.len()).max().unwrap_or(0).max(1);
        let rows = items.len();
        let mut ids = vec![pad_id; rows * seq];
        let mut types = vec![0u32; rows * seq];
        let mut mask = vec![0u32; rows * seq];
        for (row, item) in items.iter().enumerate() {
            let start = row * seq;
            ids[start..start + item.len()].copy_from_slice(&item.ids);
            types[start..start + item.len()].copy_from_slice(&item.type_ids);
            mask[start..start + item.len()].fill(1);
        }
        let tensor = |data: Vec<u32>| {
            Tensor::from_vec(data, (rows, seq), device)
                .map_err(ModelError::candle("cannot build the input batch"))
        };
        Ok(Self {
            input_ids: tensor(ids)?,
            type_ids: tensor(types)?,
            mask: tensor(mask)?,
            lengths: items.iter().map(|e| e.len()).collect(),
        })
    }
}

/// Reads a BERT `config.json`.
pub fn read_config(dir: &Path) -> Result<BertConfig, ModelError> {
    super::read_json(&dir.join("config.json"))
}

/// A loaded BERT encoder.
pub struct BertEncoder {
    model: BertModel,
    config: BertConfig,
}

impl BertEncoder {
    /// Loads the encoder from a checkpoint (with or without the `bert.` prefix).
    pub fn load(checkpoint: &Checkpoint, config: &BertConfig) -> Result<Self, ModelError> {
        let model =
            BertModel::load(checkpoint.vb.clone(), config).map_err(ModelError::candle(format!(
                "{}: weights do not match the BERT model described by its config.json",
                checkpoint.path.display()
            )))?;
        Ok(Self {
            model,
            config: config.clone(),
        })
    }

    pub fn hidden_size(&self) -> usize {
        self.config.hidden_size
    }

    pub fn max_position_embeddings(&self) -> usize {
        self.config.max_position_embeddings
    }

    /// Hidden states [batch, seq, hidden] for a padded batch.
    pub fn forward(&self, batch: &PaddedBatch) -> Result<Tensor, ModelError> {
        self.model
            .forward(&batch.input_ids, &batch.type_ids, Some(&batch.mask))
            .map_err(ModelError::candle("BERT forward failed"))
    }
}
