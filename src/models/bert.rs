//! The BERT-family encoder (MiniLM, BGE, E5, GTE-style BERT, and RoBERTa / XLM-RoBERTa such as
//! bge-m3): token ids in, hidden states out. Heads (pooling, SPLADE, CrossEncoder) are separate;
//! this type only encodes.
//!
//! RoBERTa's layers are BERT's (same tensor names under `roberta.` instead of `bert.`); what
//! differs is in [`EncoderConfig`]: position ids start at `pad_token_id + 1` (2 for XLM-R), so a
//! model with 514 position embeddings reads 512 tokens, and there is one token type (the
//! tokenizer's segment ids for a pair are ignored, as Hugging Face's RoBERTa tokenizers never
//! pass them). The heads' tensor names differ too ([`Family`]).
//!
//! Two backends compute the same function:
//! - [`EncoderBackend::Packed`], our CPU encoder ([`super::packed`]): no padding work, fused
//!   kernels; the default on CPU in f32.
//! - [`EncoderBackend::Candle`]: candle tensors — our embeddings and attention mask, then
//!   candle-transformers' BERT layers — the path for CUDA and for f16, and the reference the
//!   packed encoder is compared with in tests and benchmarks. Weights come through
//!   [`Checkpoint`], which resolves legacy names.
//!
//! Why not candle-transformers' `BertModel` whole: its additive attention mask is
//! `(1 − mask) × f32::MIN` cast to the run dtype; in f16 that constant is −inf, and 0 × −inf
//! makes every score NaN — every f16 run (the default on a GPU) would be NaN. Our mask uses
//! −10 000 (BERT's original value): finite in every dtype, and exp(−10 000) is 0 in all of them.

use super::checkpoint::Checkpoint;
use super::decoder::DecoderConfig;
use super::packed::PackedBert;
use super::tokenize::Encoded;
use super::ModelError;
use crate::config::CpuPrecision;
use crate::gpu::{EncoderMemoryModel, HeadMemory};
use candle_core::{DType, Device, Tensor};
use candle_nn::{Embedding, LayerNorm, Module};
use candle_transformers::models::bert::{
    BertEncoder as BertLayers, Config as BertConfig, HiddenAct,
};
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

/// The architectures this build implements, by `config.json`'s `model_type`, with the
/// `architectures` entries (heads) seen in the checkpoints it was verified on. The decoders
/// ([`super::decoder`]) embed only (dense); an embedding model is stored as the bare model
/// or as the causal LM it was trained from (the LM head is not read).
pub const SUPPORTED_ARCHITECTURES: &[(&str, &[&str])] = &[
    (
        "bert",
        &[
            "BertModel",
            "BertForMaskedLM",
            "BertForSequenceClassification",
        ],
    ),
    (
        "roberta",
        &[
            "RobertaModel",
            "RobertaForMaskedLM",
            "RobertaForSequenceClassification",
        ],
    ),
    (
        "xlm-roberta",
        &[
            "XLMRobertaModel",
            "XLMRobertaForMaskedLM",
            "XLMRobertaForSequenceClassification",
        ],
    ),
    ("qwen3", &["Qwen3Model", "Qwen3ForCausalLM"]),
    ("qwen2", &["Qwen2Model", "Qwen2ForCausalLM"]),
];

/// The two encoder layouts: where the task models keep the encoder and their heads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Bert,
    /// RoBERTa and XLM-RoBERTa.
    Roberta,
}

/// Tensor names of a masked-LM head (SPLADE).
pub struct MlmNames {
    pub dense: &'static str,
    pub layer_norm: &'static str,
    /// The decoder when stored; otherwise it is tied to the word embeddings.
    pub decoder: &'static str,
    /// The decoder's bias, or where older checkpoints keep it.
    pub bias: [&'static str; 2],
}

impl Family {
    /// The encoder's prefix inside a task checkpoint (a bare encoder has none).
    pub fn task_prefix(self) -> &'static str {
        match self {
            Family::Bert => "bert.",
            Family::Roberta => "roberta.",
        }
    }

    /// The sequence-classification head: (the dense + tanh layer on the first token, the
    /// output layer). BERT's first layer is the pooler; RoBERTa's is the head's own dense.
    pub fn classifier_names(self) -> (&'static str, &'static str) {
        match self {
            Family::Bert => ("bert.pooler.dense", "classifier"),
            Family::Roberta => ("classifier.dense", "classifier.out_proj"),
        }
    }

    pub fn mlm_names(self) -> MlmNames {
        match self {
            Family::Bert => MlmNames {
                dense: "cls.predictions.transform.dense",
                layer_norm: "cls.predictions.transform.LayerNorm",
                decoder: "cls.predictions.decoder.weight",
                bias: ["cls.predictions.decoder.bias", "cls.predictions.bias"],
            },
            Family::Roberta => MlmNames {
                dense: "lm_head.dense",
                layer_norm: "lm_head.layer_norm",
                decoder: "lm_head.decoder.weight",
                bias: ["lm_head.decoder.bias", "lm_head.bias"],
            },
        }
    }

    /// The MLM head's activation: BERT's follows `hidden_act`, RoBERTa's is always GELU (erf).
    pub fn mlm_activation(self, hidden_act: HiddenAct) -> HiddenAct {
        match self {
            Family::Bert => hidden_act,
            Family::Roberta => HiddenAct::Gelu,
        }
    }
}

/// A checked encoder `config.json`: the layer sizes (candle's BERT config, which RoBERTa's
/// layers share) and what the family changes.
#[derive(Clone, Debug)]
pub struct EncoderConfig {
    pub layers: BertConfig,
    /// `model_type`: "bert", "roberta" or "xlm-roberta" (recorded as the model's architecture).
    pub model_type: &'static str,
    pub family: Family,
    /// The first position id: 0 for BERT, `pad_token_id + 1` for RoBERTa.
    pub position_offset: usize,
}

impl std::ops::Deref for EncoderConfig {
    type Target = BertConfig;

    fn deref(&self) -> &BertConfig {
        &self.layers
    }
}

impl EncoderConfig {
    /// The longest sequence the position embeddings cover (514 − 2 = 512 for XLM-R).
    pub fn usable_positions(&self) -> usize {
        self.layers
            .max_position_embeddings
            .saturating_sub(self.position_offset)
    }
}

/// What a model's `config.json` describes, once its architecture is known to be implemented.
#[derive(Clone, Debug)]
pub enum Architecture {
    Encoder(EncoderConfig),
    Decoder(DecoderConfig),
}

impl Architecture {
    pub fn model_type(&self) -> &'static str {
        match self {
            Architecture::Encoder(config) => config.model_type,
            Architecture::Decoder(config) => config.model_type,
        }
    }

    pub fn hidden_size(&self) -> usize {
        match self {
            Architecture::Encoder(config) => config.hidden_size,
            Architecture::Decoder(config) => config.hidden_size,
        }
    }

    /// The longest sequence the model reads.
    pub fn usable_positions(&self) -> usize {
        match self {
            Architecture::Encoder(config) => config.usable_positions(),
            Architecture::Decoder(config) => config.max_positions,
        }
    }
}

/// Reads a model's `config.json`, after checking that it describes an architecture we
/// implement: an XLM-RoBERTa checkpoint read as BERT would load and give wrong vectors (other
/// position ids); a decoder's (Qwen) would fail on a field it does not share, with an error
/// that says nothing of the architecture.
pub fn read_architecture(dir: &Path) -> Result<Architecture, ModelError> {
    let path = dir.join("config.json");
    let value: serde_json::Value = super::read_json(&path)?;
    let model_type = check_architecture(&path, &value)?;
    if super::decoder::is_decoder(model_type) {
        return Ok(Architecture::Decoder(DecoderConfig::from_json(
            &path, model_type, value,
        )?));
    }
    let layers: BertConfig = serde_json::from_value(value).map_err(|source| ModelError::Json {
        path: path.clone(),
        source,
    })?;
    let family = if model_type == "bert" {
        Family::Bert
    } else {
        Family::Roberta
    };
    let position_offset = match family {
        Family::Bert => 0,
        Family::Roberta => layers.pad_token_id + 1,
    };
    if position_offset >= layers.max_position_embeddings {
        return Err(ModelError::Unsupported {
            path,
            message: format!(
                "pad_token_id {} leaves no position of the {} max_position_embeddings",
                layers.pad_token_id, layers.max_position_embeddings
            ),
        });
    }
    Ok(Architecture::Encoder(EncoderConfig {
        layers,
        model_type,
        family,
        position_offset,
    }))
}

/// Reads the `config.json` of a BERT-family encoder (what the sparse and rerank stages run);
/// a decoder is refused by name: it embeds, but has no masked-LM or classification head here.
pub fn read_config(dir: &Path) -> Result<EncoderConfig, ModelError> {
    match read_architecture(dir)? {
        Architecture::Encoder(config) => Ok(config),
        Architecture::Decoder(config) => Err(ModelError::Unsupported {
            path: dir.join("config.json"),
            message: format!(
                "{} is a decoder: it runs as a dense embedding model only; SPLADE and \
                 CrossEncoder models must be BERT-family encoders (bert, roberta, xlm-roberta)",
                config.model_type
            ),
        }),
    }
}

/// The checkpoint's `model_type` when we implement it (from `architectures` when it has none).
/// An unsupported one (or none, with no known architecture either) is an error that names what
/// the checkpoint is and lists what is supported.
pub fn check_architecture(
    path: &Path,
    config: &serde_json::Value,
) -> Result<&'static str, ModelError> {
    let model_type = config.get("model_type").and_then(|v| v.as_str());
    let architectures: Vec<&str> = config
        .get("architectures")
        .and_then(|v| v.as_array())
        .map(|list| list.iter().filter_map(|a| a.as_str()).collect())
        .unwrap_or_default();
    let known = match model_type {
        Some(model_type) => SUPPORTED_ARCHITECTURES
            .iter()
            .find(|(name, _)| *name == model_type),
        // Old checkpoints may lack model_type; their architectures say what they are.
        None => SUPPORTED_ARCHITECTURES.iter().find(|(_, heads)| {
            !architectures.is_empty() && architectures.iter().all(|a| heads.contains(a))
        }),
    };
    if let Some((name, _)) = known {
        return Ok(name);
    }
    let what = match (model_type, architectures.is_empty()) {
        (Some(model_type), true) => format!("model_type {model_type:?}"),
        (Some(model_type), false) => {
            format!("model_type {model_type:?} ({})", architectures.join(", "))
        }
        (None, false) => format!("no model_type, architectures {}", architectures.join(", ")),
        (None, true) => "no model_type and no architectures".to_string(),
    };
    let listed = SUPPORTED_ARCHITECTURES
        .iter()
        .map(|(name, heads)| format!("{name} ({})", heads.join(", ")))
        .collect::<Vec<_>>()
        .join("; ");
    Err(ModelError::Unsupported {
        path: path.to_path_buf(),
        message: format!("{what}: this architecture is not implemented; supported: {listed}"),
    })
}

/// The max length a model runs at: the configured one (`requested`), else the model's own
/// default (sentence-transformers' `max_seq_length`, capped at the positions), else its
/// positions. A configured length beyond the model's position embeddings is an error rather
/// than a silent clamp: the user asked for text the model cannot see.
pub fn checked_max_length(
    dir: &Path,
    requested: Option<usize>,
    model_default: Option<usize>,
    positions: usize,
) -> Result<usize, ModelError> {
    match requested {
        Some(0) => Err(ModelError::Unsupported {
            path: dir.join("config.json"),
            message: "max_length 0 leaves no room for any token".to_string(),
        }),
        Some(length) if length > positions => Err(ModelError::Unsupported {
            path: dir.join("config.json"),
            message: format!(
                "max_length {length} is more than the model's {positions} position embeddings \
                 (max_position_embeddings); set max_length to {positions} or less"
            ),
        }),
        Some(length) => Ok(length),
        None => Ok(model_default.unwrap_or(positions).min(positions)),
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
pub enum BertEncoder {
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
    fn load(checkpoint: &Checkpoint, config: &EncoderConfig) -> candle_core::Result<Self> {
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

impl BertEncoder {
    /// Loads the encoder from a checkpoint (with or without the `bert.` / `roberta.` prefix).
    pub fn load(
        checkpoint: &Checkpoint,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn config_error(config: serde_json::Value) -> Option<String> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
        read_config(dir.path()).err().map(|err| err.to_string())
    }

    fn bert() -> serde_json::Value {
        serde_json::json!({
            "architectures": ["BertModel"], "model_type": "bert", "vocab_size": 100,
            "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2,
            "intermediate_size": 16, "hidden_act": "gelu", "max_position_embeddings": 32,
            "type_vocab_size": 2, "layer_norm_eps": 1e-12, "pad_token_id": 0,
            "hidden_dropout_prob": 0.1, "initializer_range": 0.02
        })
    }

    #[test]
    fn bert_configs_load_with_or_without_model_type() {
        assert_eq!(config_error(bert()), None);
        let mut old = bert();
        old.as_object_mut().unwrap().remove("model_type");
        assert_eq!(config_error(old), None);
    }

    /// DeBERTa has BERT-like tensor names, so without this check it would load and embed
    /// wrongly (it has relative attention).
    #[test]
    fn an_unknown_encoder_is_refused_by_name_with_what_is_supported() {
        let mut deberta = bert();
        deberta["model_type"] = "deberta-v2".into();
        deberta["architectures"] = serde_json::json!(["DebertaV2Model"]);
        let message = config_error(deberta).unwrap();
        assert!(
            message.contains(
                r#"model_type "deberta-v2" (DebertaV2Model): this architecture is not implemented"#
            ),
            "{message}"
        );
        assert!(
            message.contains(
                "supported: bert (BertModel, BertForMaskedLM, BertForSequenceClassification); \
                 roberta (RobertaModel, "
            ),
            "{message}"
        );
    }

    /// RoBERTa-family positions start after the padding id; BERT's at 0.
    #[test]
    fn the_family_sets_the_position_offset() {
        let dir = tempfile::tempdir().unwrap();
        let read = |config: serde_json::Value| {
            std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
            read_config(dir.path()).unwrap()
        };
        let config = read(bert());
        assert_eq!((config.family, config.position_offset), (Family::Bert, 0));
        assert_eq!(config.usable_positions(), 32);
        let mut xlmr = bert();
        xlmr["model_type"] = "xlm-roberta".into();
        xlmr["pad_token_id"] = 1.into();
        let config = read(xlmr.clone());
        assert_eq!(
            (config.family, config.position_offset),
            (Family::Roberta, 2)
        );
        assert_eq!(
            (config.model_type, config.usable_positions()),
            ("xlm-roberta", 30)
        );
        // Architectures alone identify an old config.
        xlmr.as_object_mut().unwrap().remove("model_type");
        xlmr["architectures"] = serde_json::json!(["RobertaForMaskedLM"]);
        assert_eq!(read(xlmr.clone()).model_type, "roberta");
        xlmr["pad_token_id"] = 31.into();
        std::fs::write(dir.path().join("config.json"), xlmr.to_string()).unwrap();
        let err = read_config(dir.path()).unwrap_err().to_string();
        assert!(err.contains("pad_token_id 31 leaves no position"), "{err}");
    }

    /// A decoder's config used to fail as "invalid JSON" on `hidden_act: silu`; now it reads
    /// as a decoder, and the stages that need an encoder refuse it by name.
    #[test]
    fn a_decoder_reads_as_a_decoder_and_encoder_stages_refuse_it() {
        let qwen = serde_json::json!({
            "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_act": "silu",
            "vocab_size": 100, "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "head_dim": 24, "max_position_embeddings": 64, "rope_theta": 1000000
        });
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), qwen.to_string()).unwrap();
        match read_architecture(dir.path()).unwrap() {
            Architecture::Decoder(config) => {
                assert_eq!((config.model_type, config.head_dim), ("qwen3", 24))
            }
            other => panic!("read as {other:?}"),
        }
        let message = config_error(qwen).unwrap();
        assert!(
            message.contains("qwen3 is a decoder: it runs as a dense embedding model only"),
            "{message}"
        );
        assert!(!message.contains("invalid JSON"), "{message}");

        let mut unnamed = bert();
        unnamed.as_object_mut().unwrap().remove("model_type");
        unnamed["architectures"] = serde_json::json!(["ElectraModel"]);
        let message = config_error(unnamed).unwrap();
        assert!(
            message.contains("no model_type, architectures ElectraModel"),
            "{message}"
        );
    }
}
