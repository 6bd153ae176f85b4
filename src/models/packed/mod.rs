//! The packed BERT encoder: our CPU implementation of the BERT forward pass (RoBERTa's too:
//! the same layers, with the position offset and single token type of [`EncoderConfig`]).
//!
//! "Packed" means that a batch is the concatenation of its sequences' real tokens — no padding
//! row is ever computed. Every position-wise step (embeddings, the Q/K/V, output and
//! feed-forward projections, LayerNorms, the SPLADE vocabulary projection) runs as one matrix
//! product over all the batch's tokens; attention runs per sequence and head on exactly its own
//! length, so no mask is needed either.
//!
//! Other choices, each measured (BENCHMARKS.md):
//! - Q, K and V are one fused [hidden, 3·hidden] projection; Q·Kᵀ and P·V read Q, K and V in place
//!   through strides (no head transposes, no copies); the 1/√d scale rides on the product.
//! - bias + GELU and bias + residual + LayerNorm are single fused passes ([`kernels`]).
//! - Scratch buffers are reused across batches (a pool, one per concurrent caller), so a steady
//!   run does not fault fresh pages in for every batch.
//! - Weights are stored transposed once at load, in the layout the product reads.
//!
//! The heads (pooling, the SPLADE MLM head, the CrossEncoder classifier) read the packed hidden
//! states through [`PackedBert::forward_with`] while the scratch is borrowed: zero copies.

pub mod bf16;
pub mod int8;
pub mod kernels;
mod weights;

use super::architecture::EncoderConfig;
use super::tokenize::Encoded;
use super::weights_file::WeightsFile;
use super::ModelError;
use candle_transformers::models::bert::HiddenAct;
use gemm::Parallelism;
use kernels::{MatRef, Rhs};
use rayon::prelude::*;
use std::sync::Mutex;
pub use weights::{encoder_prefix, tensor as weights_tensor, DenseLayer, LayerWeights};

/// The CPU's vector extensions the encoder can use, then which kernel variant runs
/// (`kernels: avx512`), for `embed-collections devices`.
pub fn cpu_extensions() -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! detect {
            ($($feature:tt),*) => {
                $(if std::arch::is_x86_feature_detected!($feature) {
                    found.push($feature.to_string());
                })*
            };
        }
        detect!(
            "avx2",
            "fma",
            "avx512f",
            "avx512bw",
            "avx512dq",
            "avx512vl",
            "avx512bf16",
            "avx512vnni",
            "avxvnni"
        );
    }
    found.push(format!("kernels: {}", kernels::kernel_level()));
    found.push(format!(
        "int8 kernel: {}",
        int8::Int8Kernel::detect().name()
    ));
    found
}

/// A batch as the concatenation of its sequences' tokens.
#[derive(Clone, Debug, Default)]
pub struct PackedBatch {
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
    /// Sequence `i` is tokens `offsets[i]..offsets[i + 1]`.
    pub offsets: Vec<usize>,
}

impl PackedBatch {
    pub fn new(items: &[&Encoded]) -> Self {
        let total = items.iter().map(|e| e.len()).sum();
        let mut batch = PackedBatch {
            ids: Vec::with_capacity(total),
            type_ids: Vec::with_capacity(total),
            offsets: Vec::with_capacity(items.len() + 1),
        };
        batch.offsets.push(0);
        for item in items {
            batch.ids.extend_from_slice(&item.ids);
            batch.type_ids.extend_from_slice(&item.type_ids);
            batch.offsets.push(batch.ids.len());
        }
        batch
    }

    pub fn sequences(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    pub fn tokens(&self) -> usize {
        self.ids.len()
    }

    /// Token range of sequence `i`.
    pub fn range(&self, i: usize) -> std::ops::Range<usize> {
        self.offsets[i]..self.offsets[i + 1]
    }
}

/// How many threads one forward pass may use. With several workers each running its own
/// batches, `Single` avoids every synchronisation inside a pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Threads {
    Single,
    /// Matrix products and attention split over the rayon pool's threads.
    Pool(usize),
}

impl Threads {
    pub fn parallelism(self) -> Parallelism {
        match self {
            Threads::Single | Threads::Pool(0) | Threads::Pool(1) => Parallelism::None,
            Threads::Pool(n) => Parallelism::Rayon(n),
        }
    }

    fn parallel(self) -> bool {
        matches!(self, Threads::Pool(n) if n > 1)
    }
}

/// Sizes of a BERT-family encoder.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub hidden: usize,
    pub heads: usize,
    pub intermediate: usize,
    pub layers: usize,
    /// Rows of the position embeddings.
    pub max_positions: usize,
    /// The first position id (RoBERTa: `pad_token_id + 1`).
    pub position_offset: usize,
    pub type_vocab: usize,
    pub vocab: usize,
    pub eps: f32,
    pub activation: HiddenAct,
}

impl Shape {
    fn head_dim(&self) -> usize {
        self.hidden / self.heads
    }

    /// The longest sequence the position embeddings cover.
    pub fn usable_positions(&self) -> usize {
        self.max_positions.saturating_sub(self.position_offset)
    }
}

/// Buffers of one forward pass, reused across batches.
#[derive(Default)]
struct Scratch {
    hidden: Vec<f32>,
    qkv: Vec<f32>,
    context: Vec<f32>,
    projected: Vec<f32>,
    intermediate: Vec<f32>,
}

thread_local! {
    /// Attention scores and row sums of the sequence a thread is working on.
    static ATTENTION_SCRATCH: std::cell::RefCell<(Vec<f32>, Vec<f32>)> = Default::default();
}

/// Resizes without keeping old contents meaningful (every kernel overwrites what it reads).
fn sized(buffer: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if buffer.len() < len {
        buffer.resize(len, 0.0);
    }
    &mut buffer[..len]
}

/// The encoder: weights in product layout plus a pool of scratch buffers.
pub struct PackedBert {
    shape: Shape,
    weights: weights::EncoderWeights,
    scratch: Mutex<Vec<Scratch>>,
}

impl PackedBert {
    pub fn load(checkpoint: &WeightsFile, config: &EncoderConfig) -> Result<Self, ModelError> {
        if !config
            .hidden_size
            .is_multiple_of(config.num_attention_heads)
        {
            return Err(ModelError::Unsupported {
                path: checkpoint.path.clone(),
                message: format!(
                    "hidden size {} is not a multiple of the {} attention heads",
                    config.hidden_size, config.num_attention_heads
                ),
            });
        }
        let shape = Shape {
            hidden: config.hidden_size,
            heads: config.num_attention_heads,
            intermediate: config.intermediate_size,
            layers: config.num_hidden_layers,
            max_positions: config.max_position_embeddings,
            position_offset: config.position_offset,
            type_vocab: config.type_vocab_size,
            vocab: config.vocab_size,
            eps: config.layer_norm_eps as f32,
            activation: config.hidden_act,
        };
        let weights = weights::EncoderWeights::load(checkpoint, &shape, config.family)?;
        Ok(Self {
            shape,
            weights,
            scratch: Mutex::new(Vec::new()),
        })
    }

    /// Runs the layers' matrix products in bf16 (see [`bf16`]); callers check
    /// [`bf16::supported`] first.
    pub fn use_bf16(&mut self) {
        self.weights.use_bf16();
    }

    /// Runs the layers' matrix products in INT8 (see [`int8`]); any CPU (VNNI where present).
    pub fn use_int8(&mut self) -> int8::GridReport {
        self.weights.use_int8()
    }

    pub fn shape(&self) -> &Shape {
        &self.shape
    }

    /// Bytes of the weights held.
    pub fn weight_bytes(&self) -> usize {
        self.weights.bytes()
    }

    /// The word embeddings [vocab, hidden] (the tied MLM decoder).
    pub fn word_embeddings(&self) -> &[f32] {
        &self.weights.word
    }

    /// Runs the encoder over `batch` and hands the packed hidden states [tokens, hidden] to
    /// `head` while the scratch buffer is borrowed.
    pub fn forward_with<R>(
        &self,
        batch: &PackedBatch,
        threads: Threads,
        head: impl FnOnce(&[f32]) -> R,
    ) -> Result<R, ModelError> {
        self.check_batch(batch)?;
        let mut scratch = self
            .scratch
            .lock()
            .map(|mut pool| pool.pop())
            .unwrap_or(None)
            .unwrap_or_default();
        self.forward_into(batch, threads, &mut scratch);
        let result = head(&scratch.hidden[..batch.tokens() * self.shape.hidden]);
        if let Ok(mut pool) = self.scratch.lock() {
            pool.push(scratch);
        }
        Ok(result)
    }

    fn check_batch(&self, batch: &PackedBatch) -> Result<(), ModelError> {
        let invalid = |message: String| ModelError::Device {
            device: "cpu".to_string(),
            message,
        };
        for i in 0..batch.sequences() {
            if batch.range(i).len() > self.shape.usable_positions() {
                return Err(invalid(format!(
                    "a sequence of {} tokens exceeds the model's {} positions",
                    batch.range(i).len(),
                    self.shape.usable_positions()
                )));
            }
        }
        if let Some(id) = batch
            .ids
            .iter()
            .find(|&&id| id as usize >= self.shape.vocab)
        {
            return Err(invalid(format!(
                "token id {id} is outside the vocabulary ({})",
                self.shape.vocab
            )));
        }
        // With one token type the segment ids are not read (see `embed`).
        if let Some(t) = batch
            .type_ids
            .iter()
            .find(|&&t| self.shape.type_vocab > 1 && t as usize >= self.shape.type_vocab)
        {
            return Err(invalid(format!(
                "token type {t} is outside the model's {} types",
                self.shape.type_vocab
            )));
        }
        Ok(())
    }

    fn forward_into(&self, batch: &PackedBatch, threads: Threads, scratch: &mut Scratch) {
        let s = &self.shape;
        let tokens = batch.tokens();
        let h = s.hidden;
        let par = threads.parallelism();
        let Scratch {
            hidden,
            qkv,
            context,
            projected,
            intermediate,
        } = scratch;
        let hidden = sized(hidden, tokens * h);
        self.embed(batch, hidden);
        for layer in &self.weights.layers {
            // Self-attention.
            let qkv = sized(qkv, tokens * 3 * h);
            layer.qkv.apply(hidden, tokens, qkv, par);
            add_bias(qkv, &layer.qkv.bias);
            let context = sized(context, tokens * h);
            self.attention(batch, qkv, context, threads);
            let projected = sized(projected, tokens * h);
            layer.attention_out.apply(context, tokens, projected, par);
            kernels::bias_residual_layer_norm(
                projected,
                &layer.attention_out.bias,
                hidden,
                &layer.attention_norm.0,
                &layer.attention_norm.1,
                s.eps,
            );
            // Feed-forward: the LayerNorm output becomes the layer's new hidden state.
            let intermediate = sized(intermediate, tokens * s.intermediate);
            layer.ffn_in.apply(projected, tokens, intermediate, par);
            activate(s.activation, intermediate, &layer.ffn_in.bias);
            layer.ffn_out.apply(intermediate, tokens, hidden, par);
            kernels::bias_residual_layer_norm(
                hidden,
                &layer.ffn_out.bias,
                projected,
                &layer.ffn_norm.0,
                &layer.ffn_norm.1,
                s.eps,
            );
        }
    }

    /// word + position + token-type embeddings, then LayerNorm. Positions start at the
    /// family's offset; a model with one token type reads type 0 for every token (RoBERTa's
    /// tokenizers mark a pair's segments, its model never sees them).
    fn embed(&self, batch: &PackedBatch, hidden: &mut [f32]) {
        let h = self.shape.hidden;
        let w = &self.weights;
        let single_type = self.shape.type_vocab == 1;
        for seq in 0..batch.sequences() {
            for (index, token) in batch.range(seq).enumerate() {
                let position = self.shape.position_offset + index;
                let id = batch.ids[token] as usize;
                let kind = if single_type {
                    0
                } else {
                    batch.type_ids[token] as usize
                };
                let row = &mut hidden[token * h..(token + 1) * h];
                let word = &w.word[id * h..(id + 1) * h];
                let pos = &w.position[position * h..(position + 1) * h];
                let typ = &w.token_type[kind * h..(kind + 1) * h];
                for (((out, a), b), c) in row.iter_mut().zip(word).zip(pos).zip(typ) {
                    *out = a + b + c;
                }
            }
        }
        kernels::bias_residual_layer_norm(
            hidden,
            &[],
            &[],
            &w.embedding_norm.0,
            &w.embedding_norm.1,
            self.shape.eps,
        );
    }

    /// Multi-head attention per sequence on its own length; writes [tokens, hidden] context.
    fn attention(&self, batch: &PackedBatch, qkv: &[f32], context: &mut [f32], threads: Threads) {
        let h = self.shape.hidden;
        // Split the context rows per sequence so sequences can run in parallel.
        let mut rows: Vec<(usize, &mut [f32])> = Vec::with_capacity(batch.sequences());
        let mut rest = context;
        for seq in 0..batch.sequences() {
            let (mine, tail) = rest.split_at_mut(batch.range(seq).len() * h);
            rows.push((seq, mine));
            rest = tail;
        }
        let run = |(seq, out): (usize, &mut [f32])| {
            let range = batch.range(seq);
            self.sequence_attention(&qkv[range.start * 3 * h..range.end * 3 * h], out);
        };
        if threads.parallel() {
            rows.into_par_iter().for_each(run);
        } else {
            rows.into_iter().for_each(run);
        }
    }

    /// Attention of one sequence: `qkv` [len, 3·hidden] → `out` [len, hidden].
    fn sequence_attention(&self, qkv: &[f32], out: &mut [f32]) {
        let h = self.shape.hidden;
        let d = self.shape.head_dim();
        let len = qkv.len() / (3 * h);
        let scale = 1.0 / (d as f32).sqrt();
        ATTENTION_SCRATCH.with_borrow_mut(|(scores, sums)| {
            // Every product below overwrites what it reads, so the buffers are reused instead
            // of allocating and zeroing [len, len] per sequence and layer.
            let scores = sized(scores, len * len);
            let sums = sized(sums, len);
            self.heads_attention(qkv, out, len, scale, scores, sums);
        });
    }

    fn heads_attention(
        &self,
        qkv: &[f32],
        out: &mut [f32],
        len: usize,
        scale: f32,
        scores: &mut [f32],
        sums: &mut [f32],
    ) {
        let h = self.shape.hidden;
        let d = self.shape.head_dim();
        for head in 0..self.shape.heads {
            let view = |part: usize| MatRef {
                data: &qkv[part * h + head * d..],
                rows: len,
                cols: d,
                row_stride: 3 * h,
            };
            kernels::matmul(
                view(0),
                Rhs::Transposed(view(1)),
                scores,
                len,
                scale,
                Parallelism::None,
            );
            // exp(s − max) and the row sums; 1/sum is applied to the [len, d] output, not to
            // the [len, len] probabilities.
            kernels::softmax_rows_unnormalised(scores, len, sums);
            kernels::matmul(
                MatRef::new(scores, len, len),
                Rhs::Plain(view(2)),
                &mut out[head * d..],
                h,
                1.0,
                Parallelism::None,
            );
            kernels::scale_rows(&mut out[head * d..], len, d, h, sums);
        }
    }
}

fn add_bias(x: &mut [f32], bias: &[f32]) {
    kernels::add_bias(x, bias);
}

/// `x = act(x + bias)` for the feed-forward activation.
pub fn activate(activation: HiddenAct, x: &mut [f32], bias: &[f32]) {
    match activation {
        HiddenAct::Gelu => kernels::bias_gelu(x, bias),
        HiddenAct::GeluApproximate => kernels::bias_gelu_tanh(x, bias),
        HiddenAct::Relu => kernels::bias_relu(x, bias),
    }
}
