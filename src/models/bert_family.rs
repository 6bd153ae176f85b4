//! The BERT-family encoder (MiniLM, BGE, E5, GTE-style BERT, and RoBERTa / XLM-RoBERTa such as
//! bge-m3): token ids in, hidden states out. Heads (pooling, SPLADE, CrossEncoder) are separate;
//! this type only encodes.
//!
//! RoBERTa's layers are BERT's (same tensor names under `roberta.` instead of `bert.`); what
//! differs is in [`EncoderConfig`]: position ids start at `pad_token_id + 1` (2 for XLM-R), so a
//! model with 514 position embeddings reads 512 tokens, and there is one token type (the
//! tokenizer's segment ids for a pair are ignored, as Hugging Face's RoBERTa tokenizers never
//! pass them). The heads' tensor names differ too ([`super::architecture::Family`]).
//!
//! Two backends compute the same function:
//! - [`EncoderBackend::Packed`], our CPU encoder ([`super::packed`]): no padding work, fused
//!   kernels; the default on CPU in f32.
//! - [`EncoderBackend::Candle`]: candle tensors — our embeddings and attention mask, then
//!   candle-transformers' BERT layers — the path for CUDA and for f16, and the reference the
//!   packed encoder is compared with in tests and benchmarks. Weights come through
//!   [`WeightsFile`], which resolves legacy names.
//!
//! Why not candle-transformers' `BertModel` whole: its additive attention mask is
//! `(1 − mask) × f32::MIN` cast to the run dtype; in f16 that constant is −inf, and 0 × −inf
//! makes every score NaN — every f16 run (the default on a GPU) would be NaN. Our mask uses
//! −10 000 (BERT's original value): finite in every dtype, and exp(−10 000) is 0 in all of them.

use super::architecture::EncoderConfig;
use super::packed::PackedBert;
use super::tokenize::Encoded;
use super::weights_file::WeightsFile;
use super::ModelError;
use crate::config::CpuPrecision;
use crate::gpu::{EncoderMemoryModel, HeadMemory};
use candle_core::{DType, Device, Tensor};
use candle_nn::{Embedding, LayerNorm, Module};
use candle_transformers::models::bert::BertEncoder as BertLayers;

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

/// Which implementation runs the encoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncoderBackend {
    /// Our packed CPU encoder (f32).
    Packed,
    /// candle-transformers' BERT on candle tensors (any device and dtype).
    Candle,
}

impl EncoderBackend {
    /// Packed on the CPU in f32 (and bf16, where the packed encoder rounds its products'
    /// operands), candle everywhere else.
    pub fn for_device(device: &Device, dtype: candle_core::DType) -> Self {
        if device.is_cpu() && matches!(dtype, candle_core::DType::F32 | candle_core::DType::BF16) {
            EncoderBackend::Packed
        } else {
            EncoderBackend::Candle
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EncoderBackend::Packed => "packed",
            EncoderBackend::Candle => "candle",
        }
    }
}

/// A loaded BERT-family encoder.
pub enum BertFamilyEncoder {
    Candle {
        // Boxed: with `cuda` the candle model holds device handles and is twice PackedBert's size.
        model: Box<CandleBert>,
        config: EncoderConfig,
    },
    Packed(PackedBert),
}

/// The masking value added to the attention scores of padding keys (see the module docs).
const MASKED_SCORE: f64 = -10_000.0;

/// BERT on candle tensors: embeddings (word + position + token type, LayerNorm) and the mask
/// are ours; the layers are candle-transformers'.
pub struct CandleBert {
    /// The first position id (see [`EncoderConfig::position_offset`]).
    position_offset: usize,
    /// One token type only (RoBERTa): every token reads type 0, whatever the tokenizer said.
    single_type: bool,
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    norm: LayerNorm,
    layers: BertLayers,
}

impl CandleBert {
    fn load(checkpoint: &WeightsFile, config: &EncoderConfig) -> candle_core::Result<Self> {
        let prefix = super::packed::encoder_prefix(checkpoint, config.family);
        let vb = match prefix.strip_suffix('.') {
            Some(prefix) => checkpoint.vb.pp(prefix),
            None => checkpoint.vb.clone(),
        };
        let embeddings = vb.pp("embeddings");
        let hidden = config.hidden_size;
        Ok(Self {
            position_offset: config.position_offset,
            single_type: config.type_vocab_size == 1,
            word: candle_nn::embedding(
                config.vocab_size,
                hidden,
                embeddings.pp("word_embeddings"),
            )?,
            position: candle_nn::embedding(
                config.max_position_embeddings,
                hidden,
                embeddings.pp("position_embeddings"),
            )?,
            token_type: candle_nn::embedding(
                config.type_vocab_size,
                hidden,
                embeddings.pp("token_type_embeddings"),
            )?,
            norm: candle_nn::layer_norm(hidden, config.layer_norm_eps, embeddings.pp("LayerNorm"))?,
            layers: BertLayers::load(vb.pp("encoder"), &config.layers)?,
        })
    }

    /// Hidden states [batch, seq, hidden]; `mask` [batch, seq] u32, 1 for real tokens.
    fn forward(
        &self,
        input_ids: &Tensor,
        type_ids: &Tensor,
        mask: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let seq = input_ids.dim(1)?;
        // Right padding: a row's real tokens take the first positions; padded ones are masked.
        let first = self.position_offset as u32;
        let positions = Tensor::arange(first, first + seq as u32, input_ids.device())?;
        let type_ids = if self.single_type {
            type_ids.zeros_like()?
        } else {
            type_ids.clone()
        };
        let embedded = self
            .word
            .forward(input_ids)?
            .broadcast_add(&self.position.forward(&positions)?)?
            .add(&self.token_type.forward(&type_ids)?)?;
        let hidden = self.norm.forward(&embedded)?;
        // [batch, 1, 1, seq]: 0 for real keys, MASKED_SCORE for padding, in the run dtype.
        let additive = mask
            .to_dtype(DType::F32)?
            .affine(-MASKED_SCORE, MASKED_SCORE)?
            .to_dtype(hidden.dtype())?
            .unsqueeze(1)?
            .unsqueeze(1)?;
        self.layers.forward(&hidden, &additive)
    }
}

impl BertFamilyEncoder {
    /// Loads the encoder from a checkpoint (with or without the `bert.` / `roberta.` prefix).
    pub fn load(
        checkpoint: &WeightsFile,
        config: &EncoderConfig,
        backend: EncoderBackend,
    ) -> Result<Self, ModelError> {
        match backend {
            EncoderBackend::Packed => Ok(Self::Packed(PackedBert::load(checkpoint, config)?)),
            EncoderBackend::Candle => {
                let model =
                    CandleBert::load(checkpoint, config).map_err(ModelError::candle(format!(
                        "{}: weights do not match the {} model described by its config.json",
                        checkpoint.path.display(),
                        config.model_type
                    )))?;
                Ok(Self::Candle {
                    model: Box::new(model),
                    config: config.clone(),
                })
            }
        }
    }

    /// Sets the packed encoder's products (`None`: leave candle's, whose dtype is the
    /// weights'). Returns the label the model's identity records (`f32`, `bf16`, `int8`).
    pub fn use_products(&mut self, products: Option<CpuPrecision>) -> Option<&'static str> {
        let (Self::Packed(bert), Some(products)) = (self, products) else {
            return None;
        };
        match products {
            CpuPrecision::F32 => {}
            CpuPrecision::Bf16 => bert.use_bf16(),
            CpuPrecision::Int8 => {
                let grid = bert.use_int8();
                let kernel = super::packed::int8::Int8Kernel::detect();
                if kernel == super::packed::int8::Int8Kernel::Portable {
                    // Measured: the portable kernel makes the CrossEncoder ≈ 8× slower than f32.
                    tracing::warn!(
                        "int8 products on this CPU run the portable kernel (no AVX512-VNNI): correct, but several times slower than f32; precision \"f32\" is faster here"
                    );
                }
                tracing::info!(
                    kernel = kernel.name(),
                    source_grid_blocks = grid.source_blocks,
                    per_column_blocks = grid.per_column_blocks,
                    "int8 products: weight blocks found on their source INT8 grid are kept exactly, the others quantised per column"
                );
            }
        }
        Some(products.as_str())
    }

    pub fn hidden_size(&self) -> usize {
        match self {
            Self::Candle { config, .. } => config.hidden_size,
            Self::Packed(bert) => bert.shape().hidden,
        }
    }

    /// The longest sequence the encoder reads (its positions less the family's offset).
    pub fn usable_positions(&self) -> usize {
        match self {
            Self::Candle { config, .. } => config.usable_positions(),
            Self::Packed(bert) => bert.shape().usable_positions(),
        }
    }

    /// (hidden, heads, intermediate, layers, vocab, positions, token types).
    fn dims(&self) -> [usize; 7] {
        match self {
            Self::Candle { config: c, .. } => [
                c.hidden_size,
                c.num_attention_heads,
                c.intermediate_size,
                c.num_hidden_layers,
                c.vocab_size,
                c.max_position_embeddings,
                c.type_vocab_size,
            ],
            Self::Packed(bert) => {
                let s = bert.shape();
                [
                    s.hidden,
                    s.heads,
                    s.intermediate,
                    s.layers,
                    s.vocab,
                    s.max_positions,
                    s.type_vocab,
                ]
            }
        }
    }

    /// The activation-memory model of this encoder with `head` on top.
    pub fn memory_model(&self, head: HeadMemory, bytes_per_value: usize) -> EncoderMemoryModel {
        let [hidden, heads, intermediate, layers, ..] = self.dims();
        EncoderMemoryModel {
            hidden,
            intermediate,
            heads,
            layers,
            bytes_per_value,
            head,
        }
    }

    /// Bytes of the encoder's parameters at `bytes_per_value` (embeddings, layers, LayerNorms).
    pub fn weight_bytes(&self, bytes_per_value: usize) -> u64 {
        let [h, _, i, layers, vocab, positions, types] = self.dims();
        let embeddings = (vocab + positions + types) * h + 2 * h;
        let per_layer = 4 * h * h + 4 * h + 2 * h * i + i + h + 4 * h;
        ((embeddings + layers * per_layer) * bytes_per_value) as u64
    }

    /// Hidden states [batch, seq, hidden] for a padded batch (candle backend only).
    pub fn forward(&self, batch: &PaddedBatch) -> Result<Tensor, ModelError> {
        match self {
            Self::Candle { model, .. } => model
                .forward(&batch.input_ids, &batch.type_ids, &batch.mask)
                .map_err(ModelError::candle("BERT forward failed")),
            Self::Packed(_) => Err(ModelError::Device {
                device: "cpu".to_string(),
                message: "the packed encoder takes packed batches".to_string(),
            }),
        }
    }
}
