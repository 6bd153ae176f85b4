//! The architecture registry: which `config.json`s this build implements and what each
//! describes ([`Architecture`]: a BERT-family encoder's [`EncoderConfig`] or a decoder's
//! [`DecoderConfig`]), read and checked once ([`read_architecture`]) before any weights are.
//! The model families ([`super::bert`], [`super::decoder`], [`super::packed`]) and the
//! checkpoint reader depend on it; it depends on none of them.

use super::ModelError;
use crate::gpu::{EncoderMemoryModel, HeadMemory};
use candle_transformers::models::bert::{Config as BertConfig, HiddenAct};
use serde::Deserialize;
use std::path::Path;

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
    if is_decoder(model_type) {
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

/// Whether `model_type` is one of the decoders this module implements (listed with the
/// encoders in [`SUPPORTED_ARCHITECTURES`]).
pub fn is_decoder(model_type: &str) -> bool {
    matches!(model_type, "qwen3" | "qwen2")
}

fn default_rope_theta() -> f64 {
    10_000.0
}

fn default_rms_norm_eps() -> f64 {
    1e-6
}

/// `config.json` as Qwen2 and Qwen3 write it (the fields this module reads).
#[derive(Deserialize)]
struct RawDecoderConfig {
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    max_position_embeddings: usize,
    #[serde(default = "default_rope_theta")]
    rope_theta: f64,
    #[serde(default = "default_rms_norm_eps")]
    rms_norm_eps: f64,
    #[serde(default)]
    hidden_act: Option<String>,
    #[serde(default)]
    attention_bias: Option<bool>,
    #[serde(default)]
    rope_scaling: Option<serde_json::Value>,
    #[serde(default)]
    use_sliding_window: Option<bool>,
}

/// A checked decoder `config.json`.
#[derive(Clone, Debug, PartialEq)]
pub struct DecoderConfig {
    /// "qwen3" or "qwen2" (recorded as the model's architecture).
    pub model_type: &'static str,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub max_positions: usize,
    pub rope_theta: f64,
    pub eps: f64,
    /// Biases on the q, k, v projections (Qwen2 always; Qwen3 with `attention_bias`).
    pub qkv_bias: bool,
    /// A bias on the output projection (Qwen3 with `attention_bias`).
    pub output_bias: bool,
    /// Per-head RMSNorm of queries and keys before the rotation (Qwen3).
    pub qk_norm: bool,
}

impl DecoderConfig {
    /// Reads `value` (the parsed `config.json` at `path`) as `model_type`, refusing what this
    /// module does not implement rather than computing something else: an activation other
    /// than SiLU, rotary scaling, sliding-window attention, head counts that do not divide.
    pub fn from_json(
        path: &Path,
        model_type: &'static str,
        value: serde_json::Value,
    ) -> Result<Self, ModelError> {
        let raw: RawDecoderConfig =
            serde_json::from_value(value).map_err(|source| ModelError::Json {
                path: path.to_path_buf(),
                source,
            })?;
        let unsupported = |message: String| ModelError::Unsupported {
            path: path.to_path_buf(),
            message: format!("{model_type}: {message}"),
        };
        if let Some(act) = raw.hidden_act.as_deref().filter(|act| *act != "silu") {
            return Err(unsupported(format!(
                "hidden_act {act:?} is not implemented (only \"silu\")"
            )));
        }
        if let Some(scaling) = raw.rope_scaling.as_ref().filter(|s| !s.is_null()) {
            let kind = scaling
                .get("rope_type")
                .or_else(|| scaling.get("type"))
                .and_then(|v| v.as_str())
                .unwrap_or("unknown");
            if kind != "default" {
                return Err(unsupported(format!(
                    "rope_scaling {kind:?} is not implemented (only unscaled rotary embeddings)"
                )));
            }
        }
        if raw.use_sliding_window == Some(true) {
            return Err(unsupported(
                "sliding-window attention (use_sliding_window) is not implemented".to_string(),
            ));
        }
        let kv_heads = raw.num_key_value_heads.unwrap_or(raw.num_attention_heads);
        if raw.num_attention_heads == 0
            || kv_heads == 0
            || !raw.num_attention_heads.is_multiple_of(kv_heads)
        {
            return Err(unsupported(format!(
                "{} attention heads cannot share {kv_heads} key/value heads",
                raw.num_attention_heads
            )));
        }
        let head_dim = match raw.head_dim {
            Some(d) => d,
            None if raw.hidden_size.is_multiple_of(raw.num_attention_heads) => {
                raw.hidden_size / raw.num_attention_heads
            }
            None => {
                return Err(unsupported(format!(
                    "hidden size {} is not a multiple of the {} attention heads",
                    raw.hidden_size, raw.num_attention_heads
                )))
            }
        };
        if head_dim == 0 || !head_dim.is_multiple_of(2) {
            return Err(unsupported(format!(
                "head_dim {head_dim} is not even (rotary embeddings rotate pairs)"
            )));
        }
        let qwen3 = model_type == "qwen3";
        let attention_bias = raw.attention_bias.unwrap_or(false);
        Ok(Self {
            model_type,
            vocab_size: raw.vocab_size,
            hidden_size: raw.hidden_size,
            intermediate_size: raw.intermediate_size,
            layers: raw.num_hidden_layers,
            heads: raw.num_attention_heads,
            kv_heads,
            head_dim,
            max_positions: raw.max_position_embeddings,
            rope_theta: raw.rope_theta,
            eps: raw.rms_norm_eps,
            qkv_bias: !qwen3 || attention_bias,
            output_bias: qwen3 && attention_bias,
            qk_norm: qwen3,
        })
    }

    /// The activation-memory model (the gated MLP holds two intermediate activations, so it
    /// counts twice; the attention width is the query heads').
    pub fn memory_model(&self, bytes_per_value: usize) -> EncoderMemoryModel {
        EncoderMemoryModel {
            hidden: self.hidden_size.max(self.heads * self.head_dim),
            intermediate: 2 * self.intermediate_size,
            heads: self.heads,
            layers: self.layers,
            bytes_per_value,
            head: HeadMemory::Pooling,
        }
    }

    /// Bytes of the parameters at `bytes_per_value` (embeddings, layers, norms; no LM head).
    pub fn weight_bytes(&self, bytes_per_value: usize) -> u64 {
        let (h, i, d) = (self.hidden_size, self.intermediate_size, self.head_dim);
        let q = self.heads * d;
        let kv = self.kv_heads * d;
        let attention = h * q + 2 * h * kv + q * h + q + 2 * kv + h;
        let per_layer = attention + 3 * h * i + 2 * h + 2 * d;
        ((self.vocab_size * h + h + self.layers * per_layer) * bytes_per_value) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every model alias (`config::aliases`) names an architecture the loader accepts.
    #[test]
    fn aliases_have_supported_architectures() {
        for alias in crate::config::aliases::ALIASES {
            let supported = SUPPORTED_ARCHITECTURES
                .iter()
                .any(|(name, _)| *name == alias.model_type);
            assert!(supported, "{}: {}", alias.alias, alias.model_type);
        }
    }

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
