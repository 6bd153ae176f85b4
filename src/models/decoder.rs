//! Decoder embedders (Qwen3, Qwen2: Qwen3-Embedding, jina-code-embeddings): token ids in, hidden
//! states out, on candle tensors (every device and dtype; the packed CPU encoder is BERT's).
//!
//! A layer is `x + attention(rms_norm(x))`, then `x + mlp(rms_norm(x))`, with
//! - rotary position embeddings (the rotate-half form, `rope_theta` from `config.json`) on
//!   queries and keys; Qwen3 first RMS-normalises every query and key head (`q_norm`, `k_norm`);
//! - grouped-query attention: `num_key_value_heads` key/value heads, each serving
//!   `num_attention_heads / num_key_value_heads` query heads; Qwen3's `head_dim` may differ from
//!   `hidden_size / num_attention_heads` (Qwen3-0.6B: 16 × 128 on a hidden size of 1024);
//! - a causal mask: a token sees itself and what comes before it;
//! - a SiLU-gated MLP, `down(silu(gate(x)) · up(x))`;
//! - biases on q, k, v for Qwen2, on all four projections where Qwen3's `attention_bias` says.
//!
//! Padding: batches are padded on the right ([`super::bert_family::PaddedBatch`]). Under the causal
//! mask a real token never sees a padding token (they all come after it), so every real token's
//! state is what the sequence alone gives, and last-token pooling reads position `length − 1`.
//! Models whose tokenizer pads on the left (Qwen3-Embedding) give the same vectors: there the
//! real tokens are shifted right, and rotary attention depends only on the distance between
//! positions. The tests compare both against the reference library.

use super::architecture::DecoderConfig;
use super::weights_file::WeightsFile;
use super::ModelError;
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Embedding, Linear, RmsNorm, VarBuilder};

/// Additive score of a key a query may not see (finite: the scores are f32 when it is added).
const CAUSAL_MASKED: f32 = -1e9;

struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    q_norm: Option<RmsNorm>,
    k_norm: Option<RmsNorm>,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

struct Layer {
    input_norm: RmsNorm,
    attention: Attention,
    post_attention_norm: RmsNorm,
    gate: Linear,
    up: Linear,
    down: Linear,
}

/// A loaded decoder.
pub struct Decoder {
    config: DecoderConfig,
    embed: Embedding,
    layers: Vec<Layer>,
    norm: RmsNorm,
    /// [max positions, head_dim / 2] rotary tables, in the run dtype.
    cos: Tensor,
    sin: Tensor,
}

fn linear(
    vb: VarBuilder,
    inputs: usize,
    outputs: usize,
    bias: bool,
) -> candle_core::Result<Linear> {
    if bias {
        candle_nn::linear(inputs, outputs, vb)
    } else {
        candle_nn::linear_no_bias(inputs, outputs, vb)
    }
}

impl Decoder {
    /// Loads the decoder from a checkpoint of the bare model or of its causal LM (`model.`).
    pub fn load(checkpoint: &WeightsFile, config: &DecoderConfig) -> Result<Self, ModelError> {
        Self::load_layers(checkpoint, config).map_err(ModelError::candle(format!(
            "{}: weights do not match the {} model described by its config.json",
            checkpoint.path.display(),
            config.model_type
        )))
    }

    fn load_layers(checkpoint: &WeightsFile, config: &DecoderConfig) -> candle_core::Result<Self> {
        let vb = if checkpoint.has("model.embed_tokens.weight") {
            checkpoint.vb.pp("model")
        } else {
            checkpoint.vb.clone()
        };
        let c = config;
        let (h, d) = (c.hidden_size, c.head_dim);
        let layers = (0..c.layers)
            .map(|index| {
                let vb = vb.pp(format!("layers.{index}"));
                let attn = vb.pp("self_attn");
                let mlp = vb.pp("mlp");
                let head_norm = |name: &str| -> candle_core::Result<Option<RmsNorm>> {
                    c.qk_norm
                        .then(|| candle_nn::rms_norm(d, c.eps, attn.pp(name)))
                        .transpose()
                };
                Ok(Layer {
                    input_norm: candle_nn::rms_norm(h, c.eps, vb.pp("input_layernorm"))?,
                    attention: Attention {
                        q: linear(attn.pp("q_proj"), h, c.heads * d, c.qkv_bias)?,
                        k: linear(attn.pp("k_proj"), h, c.kv_heads * d, c.qkv_bias)?,
                        v: linear(attn.pp("v_proj"), h, c.kv_heads * d, c.qkv_bias)?,
                        o: linear(attn.pp("o_proj"), c.heads * d, h, c.output_bias)?,
                        q_norm: head_norm("q_norm")?,
                        k_norm: head_norm("k_norm")?,
                        heads: c.heads,
                        kv_heads: c.kv_heads,
                        head_dim: d,
                    },
                    post_attention_norm: candle_nn::rms_norm(
                        h,
                        c.eps,
                        vb.pp("post_attention_layernorm"),
                    )?,
                    gate: linear(mlp.pp("gate_proj"), h, c.intermediate_size, false)?,
                    up: linear(mlp.pp("up_proj"), h, c.intermediate_size, false)?,
                    down: linear(mlp.pp("down_proj"), c.intermediate_size, h, false)?,
                })
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let (cos, sin) = rotary_tables(c, vb.dtype(), vb.device())?;
        Ok(Self {
            config: c.clone(),
            embed: candle_nn::embedding(c.vocab_size, h, vb.pp("embed_tokens"))?,
            layers,
            norm: candle_nn::rms_norm(h, c.eps, vb.pp("norm"))?,
            cos,
            sin,
        })
    }

    pub fn config(&self) -> &DecoderConfig {
        &self.config
    }

    /// Hidden states [batch, seq, hidden] of right-padded `input_ids` [batch, seq].
    pub fn forward(&self, input_ids: &Tensor) -> Result<Tensor, ModelError> {
        self.forward_layers(input_ids)
            .map_err(ModelError::candle(format!(
                "{} forward failed",
                self.config.model_type
            )))
    }

    fn forward_layers(&self, input_ids: &Tensor) -> candle_core::Result<Tensor> {
        let seq = input_ids.dim(1)?;
        let cos = self.cos.narrow(0, 0, seq)?;
        let sin = self.sin.narrow(0, 0, seq)?;
        let mask = causal_mask(seq, input_ids.device())?;
        let mut x = self.embed.forward(input_ids)?;
        for layer in &self.layers {
            let attended =
                layer
                    .attention
                    .forward(&layer.input_norm.forward(&x)?, &cos, &sin, &mask)?;
            x = (x + attended)?;
            let normed = layer.post_attention_norm.forward(&x)?;
            let gated = (candle_nn::ops::silu(&layer.gate.forward(&normed)?)?
                * layer.up.forward(&normed)?)?;
            x = (x + layer.down.forward(&gated)?)?;
        }
        self.norm.forward(&x)
    }
}

impl Attention {
    fn forward(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        mask: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let (batch, seq, _) = x.dims3()?;
        let d = self.head_dim;
        // [batch, heads, seq, head_dim], normalised per head (Qwen3) and rotated.
        let heads = |proj: &Linear, norm: &Option<RmsNorm>, count: usize, rotate: bool| {
            let mut t = proj.forward(x)?.reshape((batch, seq, count, d))?;
            if let Some(norm) = norm {
                t = norm.forward(&t)?;
            }
            let t = t.transpose(1, 2)?.contiguous()?;
            if rotate {
                candle_nn::rotary_emb::rope(&t, cos, sin)
            } else {
                Ok(t)
            }
        };
        let q = heads(&self.q, &self.q_norm, self.heads, true)?;
        let k = heads(&self.k, &self.k_norm, self.kv_heads, true)?;
        let v = heads(&self.v, &None, self.kv_heads, false)?;
        let group = self.heads / self.kv_heads;
        let k = candle_transformers::utils::repeat_kv(k, group)?.contiguous()?;
        let v = candle_transformers::utils::repeat_kv(v, group)?.contiguous()?;
        let dtype = q.dtype();
        // Scores and softmax in f32 whatever the run dtype (f16 scores overflow on long rows).
        let scores =
            (q.matmul(&k.t()?)?.to_dtype(DType::F32)? / (d as f64).sqrt())?.broadcast_add(mask)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(dtype)?;
        let context = probs
            .matmul(&v)?
            .transpose(1, 2)?
            .reshape((batch, seq, self.heads * d))?;
        self.o.forward(&context)
    }
}

/// [seq, seq] f32: 0 where the key is at or before the query, [`CAUSAL_MASKED`] after it.
fn causal_mask(seq: usize, device: &Device) -> candle_core::Result<Tensor> {
    let values: Vec<f32> = (0..seq)
        .flat_map(|query| (0..seq).map(move |key| if key > query { CAUSAL_MASKED } else { 0.0 }))
        .collect();
    Tensor::from_vec(values, (seq, seq), device)
}

/// cos and sin of position × θ^(−2i/head_dim), for every position and i < head_dim / 2.
fn rotary_tables(
    config: &DecoderConfig,
    dtype: DType,
    device: &Device,
) -> candle_core::Result<(Tensor, Tensor)> {
    let d = config.head_dim;
    let inverse: Vec<f32> = (0..d)
        .step_by(2)
        .map(|i| (1.0 / config.rope_theta.powf(i as f64 / d as f64)) as f32)
        .collect();
    let half = inverse.len();
    let inverse = Tensor::from_vec(inverse, (1, half), device)?;
    let positions = Tensor::arange(0u32, config.max_positions as u32, device)?
        .to_dtype(DType::F32)?
        .reshape((config.max_positions, 1))?;
    let angles = positions.matmul(&inverse)?;
    Ok((
        angles.cos()?.to_dtype(dtype)?,
        angles.sin()?.to_dtype(dtype)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qwen(model_type: &'static str, extra: serde_json::Value) -> Result<DecoderConfig, String> {
        let mut value = serde_json::json!({
            "vocab_size": 100, "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "max_position_embeddings": 64, "hidden_act": "silu"
        });
        for (key, v) in extra.as_object().unwrap() {
            value[key] = v.clone();
        }
        DecoderConfig::from_json(std::path::Path::new("config.json"), model_type, value)
            .map_err(|err| err.to_string())
    }

    #[test]
    fn qwen2_has_qkv_biases_and_qwen3_head_norms() {
        let qwen2 = qwen("qwen2", serde_json::json!({})).unwrap();
        assert!(qwen2.qkv_bias && !qwen2.output_bias && !qwen2.qk_norm);
        assert_eq!(qwen2.head_dim, 16);
        let qwen3 = qwen("qwen3", serde_json::json!({"head_dim": 24})).unwrap();
        assert!(!qwen3.qkv_bias && qwen3.qk_norm);
        assert_eq!((qwen3.head_dim, qwen3.kv_heads), (24, 2));
        let biased = qwen("qwen3", serde_json::json!({"attention_bias": true})).unwrap();
        assert!(biased.qkv_bias && biased.output_bias);
    }

    #[test]
    fn what_the_decoder_does_not_implement_is_refused_by_name() {
        let cases = [
            (
                serde_json::json!({"hidden_act": "gelu"}),
                "hidden_act \"gelu\"",
            ),
            (
                serde_json::json!({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}),
                "rope_scaling \"yarn\"",
            ),
            (
                serde_json::json!({"use_sliding_window": true}),
                "sliding-window",
            ),
            (
                serde_json::json!({"num_key_value_heads": 3}),
                "cannot share 3",
            ),
            (serde_json::json!({"head_dim": 15}), "head_dim 15"),
        ];
        for (extra, expected) in cases {
            let err = qwen("qwen3", extra).unwrap_err();
            assert!(err.contains(expected) && err.contains("qwen3"), "{err}");
        }
        // An explicit unscaled rotary setting is what the decoder computes.
        assert!(qwen(
            "qwen2",
            serde_json::json!({"rope_scaling": {"rope_type": "default"}})
        )
        .is_ok());
    }

    #[test]
    fn the_causal_mask_hides_only_later_keys() {
        let mask = causal_mask(3, &Device::Cpu)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert_eq!(
            mask,
            vec![
                vec![0.0, CAUSAL_MASKED, CAUSAL_MASKED],
                vec![0.0, 0.0, CAUSAL_MASKED],
                vec![0.0, 0.0, 0.0]
            ]
        );
    }
}
