//! SPLADE sparse encoder: the BERT-family encoder plus the masked-LM head, pooled as
//! w_j = max_t mask_t · log(1 + ReLU(logit_{t,j})).
//!
//! Two choices keep it exact and bounded:
//! - log(1 + ReLU(x)) is monotonic, so the max over tokens is taken on the raw logits and the
//!   activation applied once per (text, term), in f64, on the [batch, vocab] result. Padded
//!   positions are multiplied to 0 before the max; since ReLU clamps at 0 anyway, padding can
//!   never raise a weight.
//! - The [batch, seq, vocab] logits are never materialised whole: the sequence is cut into
//!   slices sized so that one slice's logits fit the memory budget, with a running max.

use super::architecture::{read_config, EncoderConfig};
use super::bert_family::{BertFamilyEncoder, PaddedBatch};
use super::identity::{ModelIdentity, ModelRole};
use super::manager::ResolvedModel;
use super::packed::kernels::{self, MatRef, Rhs};
use super::packed::{activate, DenseLayer, PackedBatch, Threads};
use super::tokenize::{Encoded, TextTokenizer};
use super::weights_file::WeightsFile;
use super::{ModelError, SelectedDevice};
use crate::config::CpuPrecision;
use crate::gpu::{EncoderMemoryModel, HeadMemory};
use crate::vectors::SparseVector;
use candle_core::{DType, Module, Tensor, D};
use candle_nn::{LayerNorm, Linear};
use candle_transformers::models::bert::HiddenAct;

/// The masked-LM head (BERT's `cls.predictions`, RoBERTa's `lm_head`): dense → activation →
/// LayerNorm → vocabulary logits.
pub struct MlmHead {
    dense: Linear,
    activation: HiddenAct,
    layer_norm: LayerNorm,
    /// [hidden, vocab]: the decoder, transposed once at load for the matmul.
    decoder_t: Tensor,
    /// [vocab]
    bias: Tensor,
}

impl MlmHead {
    /// Loads the family's MLM head (decoder and bias as [`decoder_names`] finds them).
    pub fn load(checkpoint: &WeightsFile, config: &EncoderConfig) -> Result<Self, ModelError> {
        let names = config.family.mlm_names();
        let hidden = config.hidden_size;
        let vocab = config.vocab_size;
        let load_err = |what: &str| {
            ModelError::candle(format!(
                "{}: cannot load the MLM head's {what}",
                checkpoint.path.display()
            ))
        };
        let dense = candle_nn::linear(hidden, hidden, checkpoint.vb.pp(names.dense))
            .map_err(load_err("transform"))?;
        let layer_norm = candle_nn::layer_norm(
            hidden,
            config.layer_norm_eps,
            checkpoint.vb.pp(names.layer_norm),
        )
        .map_err(load_err("LayerNorm"))?;
        let (decoder_name, bias_name) = decoder_names(checkpoint, config)?;
        let decoder = checkpoint
            .vb
            .get((vocab, hidden), &decoder_name)
            .map_err(load_err("decoder"))?;
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
            activation: config.family.mlm_activation(config.hidden_act),
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

/// The decoder weight and bias names: the head's decoder when stored, otherwise the word
/// embeddings it is tied to (as Hugging Face does with `tie_word_embeddings`); the bias is the
/// decoder's or, as older checkpoints (and RoBERTa's `lm_head.bias`) store it, the head's.
fn decoder_names(
    checkpoint: &WeightsFile,
    config: &EncoderConfig,
) -> Result<(String, &'static str), ModelError> {
    let names = config.family.mlm_names();
    let weight = if checkpoint.has(names.decoder) {
        names.decoder.to_string()
    } else {
        let word = format!(
            "{}embeddings.word_embeddings.weight",
            super::packed::encoder_prefix(checkpoint, config.family)
        );
        if !checkpoint.has(&word) {
            return Err(ModelError::Unsupported {
                path: checkpoint.path.clone(),
                message: "no MLM decoder weight and no word embeddings to tie it to".to_string(),
            });
        }
        word
    };
    let bias = if checkpoint.has(names.bias[0]) {
        names.bias[0]
    } else {
        names.bias[1]
    };
    Ok((weight, bias))
}

/// The MLM head over packed hidden states (the packed encoder's SPLADE path).
pub struct PackedMlmHead {
    transform: DenseLayer,
    activation: HiddenAct,
    norm: (Vec<f32>, Vec<f32>),
    eps: f32,
    /// [vocab, hidden] row-major, read transposed by the product.
    decoder: Vec<f32>,
    bias: Vec<f32>,
    hidden: usize,
}

/// Vocabulary columns per logits tile: wide enough to amortise the product's packing of the
/// hidden states, narrow enough that a tile of a large batch stays in cache.
const VOCAB_TILE: usize = 2048;

impl PackedMlmHead {
    pub fn load(checkpoint: &WeightsFile, config: &EncoderConfig) -> Result<Self, ModelError> {
        use super::packed::weights_tensor as tensor;
        let hidden = config.hidden_size;
        let vocab = config.vocab_size;
        let names = config.family.mlm_names();
        let (decoder_name, bias_name) = decoder_names(checkpoint, config)?;
        Ok(Self {
            transform: DenseLayer::load(checkpoint, names.dense, hidden, hidden)?,
            activation: config.family.mlm_activation(config.hidden_act),
            norm: (
                tensor(
                    checkpoint,
                    &format!("{}.weight", names.layer_norm),
                    &[hidden],
                )?,
                tensor(checkpoint, &format!("{}.bias", names.layer_norm), &[hidden])?,
            ),
            eps: config.layer_norm_eps as f32,
            decoder: tensor(checkpoint, &decoder_name, &[vocab, hidden])?,
            bias: tensor(checkpoint, bias_name, &[vocab])?,
            hidden,
        })
    }

    /// Per sequence, the max over its tokens of the vocabulary logits (bias included):
    /// [sequences][vocab]. Logits are computed in tiles of at most `tile_bytes` (rows × a vocab
    /// block) with a running max; the bias is added after the max (it is constant per term).
    pub fn max_logits(
        &self,
        hidden: &[f32],
        offsets: &[usize],
        tile_bytes: usize,
        threads: Threads,
    ) -> Vec<Vec<f32>> {
        let h = self.hidden;
        let vocab = self.bias.len();
        let tokens = hidden.len() / h;
        let par = threads.parallelism();
        let mut transformed = vec![0f32; tokens * h];
        self.transform.apply(hidden, tokens, &mut transformed, par);
        activate(self.activation, &mut transformed, &self.transform.bias);
        kernels::bias_residual_layer_norm(
            &mut transformed,
            &[],
            &[],
            &self.norm.0,
            &self.norm.1,
            self.eps,
        );
        let sequences = offsets.len().saturating_sub(1);
        let mut maxima = vec![vec![f32::NEG_INFINITY; vocab]; sequences];
        let columns = VOCAB_TILE.min(vocab).max(1);
        let rows_per_tile = (tile_bytes / (columns * 4)).clamp(1, tokens.max(1));
        let mut tile = vec![0f32; rows_per_tile * columns];
        for first_column in (0..vocab).step_by(columns) {
            let width = columns.min(vocab - first_column);
            for first_row in (0..tokens).step_by(rows_per_tile) {
                let rows = rows_per_tile.min(tokens - first_row);
                kernels::matmul(
                    MatRef {
                        data: &transformed[first_row * h..],
                        rows,
                        cols: h,
                        row_stride: h,
                    },
                    Rhs::Transposed(MatRef {
                        data: &self.decoder[first_column * h..],
                        rows: width,
                        cols: h,
                        row_stride: h,
                    }),
                    &mut tile,
                    width,
                    1.0,
                    par,
                );
                // Fold the tile's rows into their sequences' running maxima.
                for (seq, range) in offsets.windows(2).enumerate() {
                    let start = range[0].max(first_row);
                    let end = range[1].min(first_row + rows);
                    if start < end {
                        kernels::max_rows_into(
                            &mut maxima[seq][first_column..first_column + width],
                            &tile[(start - first_row) * width..(end - first_row) * width],
                        );
                    }
                }
            }
        }
        for (row, range) in maxima.iter_mut().zip(offsets.windows(2)) {
            if range[0] == range[1] {
                row.fill(0.0); // an empty sequence has no terms
            } else {
                kernels::add_bias(row, &self.bias);
            }
        }
        maxima
    }
}

/// Sequence positions per slice so that batch × positions × vocab logits (and the masked copy
/// beside them) fit `budget_bytes`; at least one.
pub fn slice_positions(batch: usize, vocab: usize, budget_bytes: usize) -> usize {
    const BYTES_PER_LOGIT: usize = 4 * 2; // f32 logits + the masked product alive at once
    let per_position = batch.max(1) * vocab.max(1) * BYTES_PER_LOGIT;
    (budget_bytes / per_position).max(1)
}

/// The MLM head in the form its encoder backend needs.
enum SpladeHead {
    Packed(PackedMlmHead),
    Candle(MlmHead),
}

/// A loaded SPLADE model.
pub struct SpladeEncoder {
    encoder: BertFamilyEncoder,
    head: SpladeHead,
    threads: Threads,
    workers: usize,
    tokenizer: TextTokenizer,
    device: SelectedDevice,
    max_terms: Option<usize>,
    logits_budget_bytes: usize,
    identity: ModelIdentity,
}

impl SpladeEncoder {
    /// `name`: the vector name in the points; `precision`: the stage's CPU products (`None`:
    /// as the device's dtype).
    pub fn load(
        name: &str,
        reference: &str,
        resolved: &ResolvedModel,
        device: &SelectedDevice,
        max_terms: Option<usize>,
        logits_budget_bytes: usize,
        precision: Option<CpuPrecision>,
    ) -> Result<Self, ModelError> {
        let config = read_config(&resolved.dir)?;
        let weights = resolved.weights_file()?;
        let checkpoint = WeightsFile::open(&weights, device.weights_dtype(), &device.device)?;
        let mut encoder = BertFamilyEncoder::load(&checkpoint, &config, device.backend)?;
        let products = encoder.use_products(device.packed_products(precision)?);
        let head = match encoder {
            BertFamilyEncoder::Packed(_) => {
                SpladeHead::Packed(PackedMlmHead::load(&checkpoint, &config)?)
            }
            BertFamilyEncoder::Candle { .. } => {
                SpladeHead::Candle(MlmHead::load(&checkpoint, &config)?)
            }
        };
        let max_length = config.usable_positions();
        let tokenizer = TextTokenizer::load(&resolved.dir.join("tokenizer.json"), max_length)?;
        let mut identity = ModelIdentity::new(
            ModelRole::Sparse,
            name,
            reference,
            resolved,
            &weights,
            &format!("{}_mlm", config.model_type),
            config.vocab_size,
            max_length,
            device,
        )?;
        if let Some(label) = products {
            identity.dtype = label.to_string();
        }
        Ok(Self {
            encoder,
            head,
            threads: device.threads_per_pass(),
            workers: device.workers,
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

    /// Runs batches on `workers` concurrent workers sharing this model, each pass on `threads`.
    pub fn set_parallelism(&mut self, workers: usize, threads: Threads) {
        self.workers = workers.max(1);
        self.threads = threads;
    }

    /// Activation-memory model (with the logits slices) and weight bytes, for planning batches.
    pub fn memory_profile(&self) -> (EncoderMemoryModel, u64) {
        let bytes = self.device.dtype.size_in_bytes();
        let vocab = self.identity.dim;
        let head = HeadMemory::MlmLogits {
            vocab,
            slice_tokens: (self.logits_budget_bytes / (vocab.max(1) * 4)).max(1),
        };
        let model = self.encoder.memory_model(head, bytes);
        let hidden = model.hidden;
        // The MLM head's transform, LayerNorm and bias, and a decoder the size of the word
        // embeddings (counted as if untied: a safe over-estimate).
        let head_values = hidden * hidden + 3 * hidden + vocab * hidden + vocab;
        let weights = self.encoder.weight_bytes(bytes) + (head_values * bytes) as u64;
        (model, weights)
    }

    /// Concurrent batch workers the stage should run this model on.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Per text, the max over its tokens of the vocabulary logits.
    fn max_logits(&self, items: &[&Encoded]) -> Result<Vec<Vec<f32>>, ModelError> {
        match (&self.encoder, &self.head) {
            (BertFamilyEncoder::Packed(bert), SpladeHead::Packed(head)) => {
                let batch = PackedBatch::new(items);
                bert.forward_with(&batch, self.threads, |hidden| {
                    head.max_logits(
                        hidden,
                        &batch.offsets,
                        self.logits_budget_bytes,
                        self.threads,
                    )
                })
            }
            (_, SpladeHead::Candle(head)) => {
                let batch = PaddedBatch::new(items, self.tokenizer.pad_id(), &self.device.device)?;
                let hidden = self.encoder.forward(&batch)?;
                head.max_logits(&hidden, &batch.mask, self.logits_budget_bytes)
                    .and_then(|t| t.to_vec2::<f32>())
                    .map_err(ModelError::candle("SPLADE head failed"))
            }
            (BertFamilyEncoder::Candle { .. }, SpladeHead::Packed(_)) => Err(ModelError::Device {
                device: self.device.label.clone(),
                message: "the packed SPLADE head needs the packed encoder".to_string(),
            }),
        }
    }

    /// Sparse vectors for already tokenised texts, in the given order. A non-finite weight is
    /// an error for the whole batch (the caller retries smaller batches, then falls back).
    pub fn encode(&self, items: &[&Encoded]) -> Result<Vec<SparseVector>, ModelError> {
        let maxima = self.max_logits(items)?;
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

impl crate::models::Encoder for SpladeEncoder {
    type Output = SparseVector;

    fn identity(&self) -> &ModelIdentity {
        SpladeEncoder::identity(self)
    }

    fn workers(&self) -> usize {
        SpladeEncoder::workers(self)
    }

    fn memory_profile(&self) -> (EncoderMemoryModel, u64) {
        SpladeEncoder::memory_profile(self)
    }

    fn forward(&self, items: &[&Encoded]) -> Result<Vec<Self::Output>, ModelError> {
        self.encode(items)
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
