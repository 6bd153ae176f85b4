//! Tokenisation with the model's `tokenizer.json`, with its baked-in padding and truncation
//! replaced: real tokenizer files often pad to a fixed 128 or truncate at a length that is not
//! the model's. We truncate at the model's max length and pad ourselves per batch.

use super::ModelError;
use std::path::Path;
use tokenizers::{
    EncodeInput, Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy,
};

/// Texts tokenised per call of the tokenizers library (see `TextTokenizer::encode_batch`).
const TOKENIZE_GROUP: usize = 512;

/// Token ids of one text (no padding).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encoded {
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
    /// The text was longer than the max length and was cut.
    pub truncated: bool,
}

impl Encoded {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// A tokenizer truncating at the model's max length, never padding.
pub struct TextTokenizer {
    inner: Tokenizer,
    max_length: usize,
    pad_id: u32,
}

impl TextTokenizer {
    pub fn load(path: &Path, max_length: usize) -> Result<Self, ModelError> {
        let mut inner = Tokenizer::from_file(path).map_err(|err| ModelError::Tokenizer {
            path: path.to_path_buf(),
            message: err.to_string(),
        })?;
        // Padding id before we drop the file's padding settings; [PAD] is 0 in BERT vocabularies.
        let pad_id = inner
            .get_padding()
            .map(|p| p.pad_id)
            .or_else(|| inner.token_to_id("[PAD]"))
            .unwrap_or(0);
        inner.with_padding(None);
        inner
            .with_truncation(Some(TruncationParams {
                max_length,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|err| ModelError::Tokenizer {
                path: path.to_path_buf(),
                message: err.to_string(),
            })?;
        Ok(Self {
            inner,
            max_length,
            pad_id,
        })
    }

    pub fn max_length(&self) -> usize {
        self.max_length
    }

    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// Encodes (query, passage) pairs with special tokens; the pair is truncated longest-first
    /// to the max length, and type ids mark the segments (0 query, 1 passage).
    pub fn encode_pairs(&self, pairs: &[(&str, &str)]) -> Result<Vec<Encoded>, ModelError> {
        let inputs: Vec<EncodeInput> = pairs.iter().map(|(a, b)| (*a, *b).into()).collect();
        self.encode_inputs(inputs)
    }

    /// Vocabulary ids of a term, without special tokens (for metadata term weights).
    pub fn term_ids(&self, term: &str) -> Result<Vec<u32>, ModelError> {
        self.inner
            .encode(term, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|err| ModelError::Tokenize {
                message: err.to_string(),
            })
    }

    /// Encodes texts with special tokens, in parallel; output order = input order.
    pub fn encode_batch(&self, texts: &[&str]) -> Result<Vec<Encoded>, ModelError> {
        let inputs: Vec<EncodeInput> = texts.iter().map(|t| (*t).into()).collect();
        self.encode_inputs(inputs)
    }

    fn encode_inputs(&self, inputs: Vec<EncodeInput<'_>>) -> Result<Vec<Encoded>, ModelError> {
        let mut encoded = Vec::with_capacity(inputs.len());
        let mut inputs = inputs.into_iter();
        // The library's encodings carry token strings, offsets and masks (~100 bytes a token):
        // converting them group by group keeps that transient cost to one group, not a window.
        loop {
            let group: Vec<EncodeInput<'_>> = inputs.by_ref().take(TOKENIZE_GROUP).collect();
            if group.is_empty() {
                break;
            }
            let encodings =
                self.inner
                    .encode_batch(group, true)
                    .map_err(|err| ModelError::Tokenize {
                        message: err.to_string(),
                    })?;
            encoded.extend(encodings.into_iter().map(|e| Encoded {
                ids: e.get_ids().to_vec(),
                type_ids: e.get_type_ids().to_vec(),
                truncated: !e.get_overflowing().is_empty(),
            }));
        }
        Ok(encoded)
    }
}
