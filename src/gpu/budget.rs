//! A memory model of a BERT-style encoder's forward pass, to size batches from a byte budget
//! before the first batch runs (instead of discovering the size by running out of memory).
//!
//! The estimate is deliberately conservative: it counts every activation that can be live at
//! the peak of one layer, plus the head, plus a margin for allocator fragmentation and backend
//! workspaces. Inference keeps no autograd graph, so a layer's activations are freed before the
//! next layer runs: the peak is one layer's, whatever the depth. Out-of-memory errors that slip
//! through anyway are handled by halving (see [`crate::dispatch`]).

use crate::batching::BatchBudget;
use crate::stage::Stage;
use serde::{Deserialize, Serialize};

/// What sits on top of the encoder, which decides the head's share of the peak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadMemory {
    /// Dense bi-encoders: pooling over tokens into one vector per item.
    Pooling,
    /// SPLADE: masked-LM logits over the vocabulary, computed `slice_tokens` tokens at a time,
    /// then max-pooled into one vocabulary-sized vector per item.
    MlmLogits { vocab: usize, slice_tokens: usize },
    /// CrossEncoders: a classifier over the first token.
    Classifier,
}

/// The architecture numbers that decide activation memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EncoderMemoryModel {
    pub hidden: usize,
    pub intermediate: usize,
    pub heads: usize,
    /// Not part of the activation peak (one layer is live at a time); used by
    /// [`EncoderMemoryModel::encoder_weights_bytes`].
    pub layers: usize,
    /// 4 for f32, 2 for f16/bf16.
    pub bytes_per_value: usize,
    pub head: HeadMemory,
}

/// The largest batch shape a budget allows, from [`EncoderMemoryModel::max_tokens_within`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchCapacity {
    /// The token budget for the planner (items × longest padded tokens per batch), at least 1.
    /// It can be below `longest`: then the longest items run alone (a planner never drops an
    /// item) while short items are not packed so densely that their per-item costs overflow.
    pub max_tokens: usize,
    /// Items per batch when every item has the longest length: `max_tokens / longest`, at
    /// least 1 (an item always runs).
    pub items_at_longest: usize,
    /// `false` when even one item of the longest length is estimated over budget: it will be
    /// tried anyway (alone) and may fail with out-of-memory, which the caller should warn about.
    pub one_item_fits: bool,
}

/// Integer tensors of the inputs (ids, type ids, attention mask, as up to 64-bit values, plus
/// the extended attention mask): bytes per token, whatever the float precision.
const INPUT_BYTES_PER_TOKEN: u128 = 32;
/// Margin for allocator fragmentation, backend workspaces and copies the model does not count:
/// the estimate is multiplied by MARGIN_NUM / MARGIN_DEN.
const MARGIN_NUM: u128 = 5;
const MARGIN_DEN: u128 = 4;
/// Largest token budget searched, so a huge budget cannot make the search overflow.
const MAX_TOKENS_SEARCHED: usize = 1 << 40;

impl EncoderMemoryModel {
    /// Conservative peak activation bytes of one forward pass over `items` sequences padded to
    /// `longest` tokens. Values per padded token (tokens = items × longest):
    ///
    /// - hidden states: 4 × hidden (layer input kept for the residual, attention output, its
    ///   projection, the layer-norm output);
    /// - Q, K, V: 3 × hidden, twice (the projections and their head-split contiguous copies);
    /// - feed-forward: 2 × intermediate (before and after the activation function);
    ///
    /// plus attention scores items × heads × longest² × 2 (scores and softmax output), plus the
    /// head:
    ///
    /// - pooling: 1 × hidden per token (mask-weighted copy) and 2 × hidden per item;
    /// - MLM logits: 1 × hidden per token (the transform), min(slice_tokens, tokens) × vocab × 2
    ///   (a logits slice and its activated copy) and 2 × vocab per item (the max-pooled vector
    ///   and a copy);
    /// - classifier: 2 × hidden per item;
    ///
    /// all × bytes per value, plus the integer inputs, then × 5/4 margin. Saturates at
    /// `u64::MAX` rather than overflowing.
    pub fn bytes_for_batch(&self, items: usize, longest: usize) -> u64 {
        // u128 with saturation: absurd shapes give u64::MAX (never fits), not a wrapped number.
        let mul = |a: u128, b: u128| a.saturating_mul(b);
        let items = items as u128;
        let longest = longest as u128;
        let tokens = mul(items, longest);
        let hidden = self.hidden as u128;
        let intermediate = self.intermediate as u128;
        let per_token = 4 * hidden + 2 * 3 * hidden + 2 * intermediate;
        let attention = mul(
            mul(mul(items, self.heads as u128), mul(longest, longest)),
            2,
        );
        let head = match self.head {
            HeadMemory::Pooling => mul(tokens, hidden).saturating_add(mul(items, 2 * hidden)),
            HeadMemory::MlmLogits {
                vocab,
                slice_tokens,
            } => {
                let vocab = vocab as u128;
                let slice = tokens.min(slice_tokens.max(1) as u128);
                mul(tokens, hidden)
                    .saturating_add(mul(slice, vocab * 2))
                    .saturating_add(mul(items, 2 * vocab))
            }
            HeadMemory::Classifier => mul(items, 2 * hidden),
        };
        let values = mul(tokens, per_token)
            .saturating_add(attention)
            .saturating_add(head);
        let bytes = mul(values, self.bytes_per_value as u128)
            .saturating_add(mul(tokens, INPUT_BYTES_PER_TOKEN));
        let with_margin = mul(bytes, MARGIN_NUM) / MARGIN_DEN;
        u64::try_from(with_margin).unwrap_or(u64::MAX)
    }

    /// The largest token budget T such that **every** batch a token-budget planner
    /// ([`crate::batching::plan_batches`]) can form under it stays within `budget_bytes`: any
    /// batch of items no longer than `longest` with items × its longest ≤ T — except an item
    /// longer than T, which runs alone and fits when `one_item_fits`.
    ///
    /// Checking only full batches at `longest` is not enough: attention grows with the square
    /// of the length, but per-item costs (an MLM head's vocabulary-sized output) grow with the
    /// item count, which is largest for short items. So T is checked against every length.
    pub fn max_tokens_within(&self, budget_bytes: u64, longest: usize) -> BatchCapacity {
        let longest = longest.max(1);
        let fits = |tokens: usize| self.worst_bytes(tokens, longest) <= budget_bytes;
        let mut best = 1;
        if fits(1) {
            // Exponential search for an upper bound, then binary search: worst_bytes grows
            // with the token budget.
            let mut high = 2;
            while high <= MAX_TOKENS_SEARCHED && fits(high) {
                best = high;
                high *= 2;
            }
            let mut low = best;
            let mut high = high.min(MAX_TOKENS_SEARCHED + 1);
            while high - low > 1 {
                let middle = low + (high - low) / 2;
                if fits(middle) {
                    low = middle;
                } else {
                    high = middle;
                }
            }
            best = low;
        }
        BatchCapacity {
            max_tokens: best,
            items_at_longest: (best / longest).max(1),
            one_item_fits: self.bytes_for_batch(1, longest) <= budget_bytes,
        }
    }

    /// The most bytes a batch under a token budget of `tokens` can need, over every length up
    /// to `longest` at which a batch of more than one item can form (items longer than the
    /// budget run alone and are `one_item_fits`'s business).
    fn worst_bytes(&self, tokens: usize, longest: usize) -> u64 {
        (1..=longest.min(tokens))
            .map(|length| self.bytes_for_batch(tokens / length, length))
            .max()
            .unwrap_or(0)
    }

    /// A rough size of the encoder layers' weights (attention 4 × hidden², feed-forward
    /// 2 × hidden × intermediate, per layer; embeddings and head excluded). For planning before
    /// a model is loaded; once loaded, a memory reading after loading is the better number.
    pub fn encoder_weights_bytes(&self) -> u64 {
        let hidden = self.hidden as u128;
        let per_layer = 4 * hidden * hidden + 2 * hidden * self.intermediate as u128;
        let bytes = per_layer * self.layers as u128 * self.bytes_per_value as u128;
        u64::try_from(bytes).unwrap_or(u64::MAX)
    }
}

/// What one stage needs to know to lease and plan.
#[derive(Clone, Debug)]
pub struct StageNeeds {
    pub stage: Stage,
    /// Where the model's replicas sit (`cpu`, `cuda:N`), one per replica.
    pub device_labels: Vec<String>,
    pub model: EncoderMemoryModel,
    /// Weights the stage will upload under this lease: 0 when they are already resident (the
    /// free-memory reading then excludes them already; counting them again would plan less).
    pub weights_bytes: u64,
    pub max_length: usize,
    pub workers: usize,
    pub configured: BatchBudget,
}

/// What the stage was allowed, for the manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageMemory {
    pub device: String,
    /// min(ceiling, free memory at lease).
    pub budget_bytes: u64,
    /// The model's weights, resident during the stage.
    pub weights_bytes: u64,
    /// Workers sharing the device's budget (CPU workers share the host's memory).
    pub workers: usize,
    /// The batch token budget (items × longest) planned from the memory model, at most the
    /// configured one.
    pub max_tokens: usize,
    /// Whether one item at the model's max length fits; if not, such items are tried alone and
    /// fail with out-of-memory if they must.
    pub one_item_fits: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batching::{plan_batches, BatchBudget};

    /// all-MiniLM-L6-v2 in f32.
    const MINILM: EncoderMemoryModel = EncoderMemoryModel {
        hidden: 384,
        intermediate: 1536,
        heads: 12,
        layers: 6,
        bytes_per_value: 4,
        head: HeadMemory::Pooling,
    };

    /// A SPLADE-like masked-LM in f32.
    const SPLADE: EncoderMemoryModel = EncoderMemoryModel {
        hidden: 128,
        intermediate: 512,
        heads: 2,
        layers: 2,
        bytes_per_value: 4,
        head: HeadMemory::MlmLogits {
            vocab: 30522,
            slice_tokens: 2048,
        },
    };

    #[test]
    fn estimate_is_monotonic_in_items_and_length() {
        for model in [MINILM, SPLADE] {
            for longest in [1, 7, 64, 256] {
                let mut previous = 0;
                for items in 0..70 {
                    let bytes = model.bytes_for_batch(items, longest);
                    assert!(bytes >= previous, "{items} × {longest}");
                    previous = bytes;
                }
            }
            for items in [1, 8] {
                let mut previous = 0;
                for longest in 0..600 {
                    let bytes = model.bytes_for_batch(items, longest);
                    assert!(bytes >= previous, "{items} × {longest}");
                    previous = bytes;
                }
            }
        }
    }

    #[test]
    fn estimate_counts_attention_quadratically_and_the_head() {
        // Doubling the length at a fixed item count more than doubles the estimate.
        let short = MINILM.bytes_for_batch(4, 256);
        let long = MINILM.bytes_for_batch(4, 512);
        assert!(long > 2 * short, "{short} {long}");
        let pooling = EncoderMemoryModel {
            head: HeadMemory::Pooling,
            ..SPLADE
        };
        assert!(SPLADE.bytes_for_batch(8, 128) > pooling.bytes_for_batch(8, 128) + 8 * 30522 * 4);
    }

    #[test]
    fn planned_batches_never_exceed_the_budget() {
        // Varied lengths, short ones included: per-item head costs make many short items the
        // worst case for the MLM head.
        let mut lengths: Vec<usize> = (0..400).map(|i| 1 + (i * 37 + i * i) % 300).collect();
        lengths.extend((0..3000).map(|i| 1 + i % 3));
        let longest = *lengths.iter().max().unwrap();
        let mut below_longest = 0;
        for model in [MINILM, SPLADE] {
            for budget in [150u64 << 20, 600 << 20, 4 << 30] {
                let capacity = model.max_tokens_within(budget, longest);
                assert!(capacity.one_item_fits);
                assert!(model.worst_bytes(capacity.max_tokens, longest) <= budget);
                assert!(
                    model.worst_bytes(capacity.max_tokens + 1, longest) > budget,
                    "the largest budget that fits"
                );
                if capacity.max_tokens < longest {
                    below_longest += 1;
                }
                let plan = plan_batches(
                    &lengths,
                    BatchBudget {
                        max_tokens: capacity.max_tokens,
                        max_items: usize::MAX,
                    },
                );
                for batch in &plan {
                    let batch_longest = batch.iter().map(|&i| lengths[i]).max().unwrap();
                    let bytes = model.bytes_for_batch(batch.len(), batch_longest);
                    assert!(bytes <= budget, "{batch:?}: {bytes} > {budget}");
                }
            }
        }
        assert!(
            below_longest > 0,
            "a budget where short items bind was tested"
        );
    }

    #[test]
    fn larger_budgets_allow_larger_batches() {
        let mut previous = 0;
        for megabytes in [10u64, 50, 100, 500, 1000, 4000] {
            let capacity = SPLADE.max_tokens_within(megabytes << 20, 256);
            assert!(capacity.max_tokens >= previous);
            previous = capacity.max_tokens;
        }
        assert!(previous > 256);
    }

    #[test]
    fn tiny_budget_gives_one_item_flagged_as_not_fitting() {
        let capacity = MINILM.max_tokens_within(1024, 128);
        assert_eq!(capacity.items_at_longest, 1);
        assert!(capacity.max_tokens <= 128);
        assert!(!capacity.one_item_fits);
        let exact = MINILM.bytes_for_batch(1, 128);
        let capacity = MINILM.max_tokens_within(exact, 128);
        assert_eq!(capacity.items_at_longest, 1);
        assert!(capacity.one_item_fits);
        let capacity = MINILM.max_tokens_within(MINILM.bytes_for_batch(2, 128), 128);
        assert_eq!(capacity.items_at_longest, 2);
    }

    #[test]
    fn huge_budget_does_not_overflow() {
        let capacity = MINILM.max_tokens_within(u64::MAX, 512);
        assert!(capacity.one_item_fits);
        assert!(capacity.items_at_longest >= 1 << 20);
        assert!(MINILM.bytes_for_batch(usize::MAX, usize::MAX) == u64::MAX);
        assert!(MINILM.encoder_weights_bytes() > 40 << 20);
    }
}
