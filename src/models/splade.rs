//! SPLADE sparse encoder: the BERT encoder plus the masked-LM head, pooled as
//! w_j = max_t mask_t · log(1 + ReLU(logit_{t,j})).
//!
//! Two choices keep it exact and bounded:
//! - log(1 + ReLU(x)) is monotonic, so the max over tokens is taken on the raw logits and the
//!   activation applied once per (text, term), in f64, on the [batch, vocab] result. Padded
//!   positions are multiplied to 0 before the max; since ReLU clamps at 0 anyway, padding can
//!   never raise a weight.
//! - The [batch, seq, vocab] logits are never materialised whole: the sequence is cut into
//!   slices sized so that one slice's logits fit the memory budget, with a running max.

use super::bert::{read_config, BertEncoder, PaddedBatch};
use super::checkpoint::Checkpoint;
use super::identity::{ModelIdentity, ModelRole};
use super::manager::ResolvedModel;
use super::tokenize::{Encoded, TextTokenizer};
use super::{ModelError, SelectedDevice};
use crate::vectors::SparseVector;
use candle_core::{DType, Module, Tensor, D};
use candle_nn::{LayerNorm, Linear};
use candle_transformers::models::bert::{Config as BertConfig, HiddenAct};

/// BERT's masked-LM head: dense → activation → LayerNorm → vocabulary logits.
pub struct MlmHead {
    dense: Linear,
    activation: HiddenAct,
    layer_norm: LayerNorm,
    /// [hidden, vocab]: the decoder, transposed once at load for the matmul.
    decoder_t: Tensor,
    /// [vocab]
    bias: Tensor,
}

/// Where the tied decoder weight lives, by checkpoint layout.
const WORD_EMBEDDINGS: [&str; 2] = [
    "bert.embeddings.word_embeddings.weight",
    "embeddings.word_embeddings.weight",
];

impl MlmHead {
    /// Loads `cls.predictions.*`. The decoder weight is used when stored; otherwise it is tied
    /// to the word embeddings (as Hugging Face does with `tie_word_embeddings`). The bias is
    /// `cls.predictions.decoder.bias` or, as older checkpoints store it, `cls.predictions.bias`.
    pub fn load(checkpoint: &Checkpoint, config: &BertConfig) -> Result<Self, ModelError> {
        let vb = checkpoint.vb.pp("cls.predictions");
        let hidden = config.hidden_size;
        let vocab = config.vocab_size;
        let load_err = |what: &str| {
            ModelError::candle(format!(
                "{}: cannot load the MLM head's {what}",
                checkpoint.path.display()
            ))
        };
        let dense = candle_nn::linear(hidden, hidden, vb.pp("transform.dense"))
            .map_err(load_err("transform"))?;
        let layer_norm =
            candle_nn::layer_norm(hidden, config.layer_norm_eps, vb.pp("transform.LayerNorm"))
                .map_err(load_err("LayerNorm"))?;
        let decoder_name = if checkpoint.has("cls.predictions.decoder.weight") {
            "cls.predictions.decoder.weight"
        } else {
            WORD_EMBEDDINGS
                .iter()
                .copied()
                .find(|name| checkpoint.has(name))
                .ok_or_else(|| ModelError::Unsupported {
                    path: checkpoint.path.clone(),
                    message: "no MLM decoder weight and no word embeddings to tie it to"
                        .to_string(),
                })?
        };
        let decoder = checkpoint
            .vb
            .get((vocab, hidden), decoder_name)
            .map_err(load_err("decoder"))?;
        let bias_name = if checkpoint.has("cls.predictions.decoder.bias") {
            "cls.predictions.decoder.bias"
        } else {
            "cls.predictions.bias"
        };
        let bias = checkpoint
            .vb
            .get(vocab, bias_name)
            .map_err(load_err("decoder bias"))?;
        let decoder_t = decoder
            .t()
            .and_then(|t| t.contiguous())
            .map_err(load_err("decoder"))?;
        Ok(Self {
            dense,
            activation: config.hidden_act,
            layer_norm,
            decoder_t,
            bias,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.bias.dims1().unwrap_or(0)
    }

    fn transform(&self, hidden: &Tensor) -> candle_core::Result<Tensor> {
        let x = self.dense.forward(hidden)?;
        let x = match self.activation {
            HiddenAct::Gelu => x.gelu_erf()?,
            HiddenAct::GeluApproximate => x.gelu()?,
            HiddenAct::Relu => x.relu()?,
        };
        self.layer_norm.forward(&x)
    }

    /// Max over unmasked positions of the vocabulary logits (padding counts as 0), computed in
    /// sequence slices whose logits stay within `budget_bytes`. Returns [batch, vocab].
    pub fn max_logits(
        &self,
        hidden: &Tensor,
        mask: &Tensor,
        budget_bytes: usize,
    ) -> candle_core::Result<Tensor> {
        let (batch, seq, width) = hidden.dims3()?;
        let vocab = self.vocab_size();
        let transformed = self.transform(hidden)?;
        let mask = mask.to_dtype(transformed.dtype())?.unsqueeze(D::Minus1)?;
        let slice = slice_positions(batch, vocab, budget_bytes).min(seq.max(1));
        let mut running: Option<Tensor> = None;
        let mut start = 0;
        while start < seq {
            let len = slice.min(seq - start);
            let part = transformed
                .narrow(1, start, len)?
                .reshape((batch * len, width))?;
            let logits = part
                .matmul(&self.decoder_t)?
                .broadcast_add(&self.bias)?
                .reshape((batch, len, vocab))?
                .broadcast_mul(&mask.narrow(1, start, len)?)?
                .max(1)?;
            running = Some(match running {
                Some(acc) => acc.maximum(&logits)?,
                None => logits,
            });
            start += len;
        }
        match running {
            Some(acc) => acc.to_dtype(DType::F32),
            None => Tensor::zeros((batch, vocab), DType::F32, hidden.device()),
        }
    }
}

/// Sequence positions per slice so that batch × positions × vocab logits (and the masked copy
/// beside them) fit `budget_bytes`; at least one.
pub fn slice_positions(batch: usize, vocab: usize, budget_bytes: usize) -> usize {
    const BYTES_PER_LOGIT: usize = 4 * 2; // f32 logits + the masked product alive at once
    let per_position = batch.max(1) * vocab.max(1) * BYTES_PER_LOGIT;
    (budget_bytes / per_position).max(1)
}

/// A loaded SPLADE model.
pub struct SpladeEncoder {
    encoder: BertEncoder,
    head: MlmHead,
    tokenizer: TextTokenizer,
    device: SelectedDevice,
    max_terms: Option<usize>,
    logits_budget_bytes: usize,
    identity: ModelIdentity,
}

impl SpladeEncoder {
    /// `name`: the vector name in the points; `max_length`: `None` = the model's positions.
    pub fn load(
        name: &str,
        reference: &str,
        resolved: &ResolvedModel,
        device: &SelectedDevice,
        max_terms: Option<usize>,
        logits_budget_bytes: usize,
    ) -> Result<Self, ModelError> {
        let config = read_config(&resolved.dir)?;
        let weights = resolved.weights_file()?;
        let checkpoint = Checkpoint::open(&weights, device.dtype, &device.device)?;
        let encoder = BertEncoder::load(&checkpoint, &config)?;
        let head = MlmHead::load(&checkpoint, &config)?;
        let max_length = config.max_position_embeddings;
        let tokenizer = TextTokenizer::load(&resolved.dir.join("tokenizer.json"), max_length)?;
        let identity = ModelIdentity::new(
            ModelRole::Sparse,
            name,
            reference,
            resolved,
            &weights,
            "bert_mlm",
            config.vocab_size,
            max_length,
            device,
        )?;
        Ok(Self {
            encoder,
            head,
            tokenizer,
            device: device.clone(),
            max_terms,
            logits_budget_bytes,
            identity,
        })
    }

    pub fn identity(&self) -> &ModelIdentity {
        &self.identity
    }

    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// Changes the logits memory budget (tests use a tiny one to force slicing).
    pub fn set_logits_budget(&mut self, bytes: usize) {
        self.logits_budget_bytes = bytes;
    }

    /// Sparse vectors for already tokenised texts, in the given order. A non-finite weight is
    /// an error for the whole batch (the caller retries smaller batches, then falls back).
    pub fn encode(&self, items: &[&Encoded]) -> Result<Vec<SparseVector>, ModelError> {
        let batch = PaddedBatch::new(items, self.tokenizer.pad_id(), &self.device.device)?;
        let hidden = self.encoder.forward(&batch)?;
        let maxima = self
            .head
            .max_logits(&hidden, &batch.mask, self.logits_budget_bytes)
            .and_then(|t| t.to_vec2::<f32>())
            .map_err(ModelError::candle("SPLADE head failed"))?;
        maxima
            .into_iter()
            .map(|row| {
                if row.iter().any(|x| !x.is_finite()) {
                    return Err(ModelError::NonFinite);
                }
                let terms = row
                    .iter()
                    .enumerate()
                    .filter(|(_, x)| **x > 0.0)
                    .map(|(id, x)| (id as u32, (*x as f64).ln_1p() as f32))
                    .collect();
                Ok(SparseVector::from_weights(terms, self.max_terms))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_fit_the_budget() {
        assert_eq!(slice_positions(2, 10, 2 * 10 * 8 * 3), 3);
        assert_eq!(
            slice_positions(64, 30522, 1),
            1,
            "always at least one position"
        );
    }
}
