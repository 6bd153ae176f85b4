//! Tokenisation with the model's `tokenizer.json`, with its baked-in padding and truncation
//! replaced: real tokenizer files often pad to a fixed 128 or truncate at a length that is not
//! the model's. We truncate at the model's max length and pad ourselves per batch.

use super::ModelError;
use rayon::prelude::*;
use std::path::Path;
use tokenizers::{
    EncodeInput, Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy,
};

/// Texts tokenised per call of the tokenizers library (see `TextTokenizer::encode_batch`).
const TOKENIZE_GROUP: usize = 512;

/// Bytes of text looked at per token of the max length before tokenising (see
/// [`TextTokenizer::bounded`]). WordPiece and BPE tokens of real text average 3–6 bytes, so
/// 16 is a wide margin; a text that needs more (long whitespace runs) gets a longer prefix.
const PREFIX_BYTES_PER_TOKEN: usize = 16;

/// Token ids of one text (no padding).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
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

/// One token of [`TextTokenizer::tokens`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub id: u32,
    /// The vocabulary's string for it (`##ing`, `[CLS]`).
    pub text: String,
    pub special: bool,
    /// Byte range in the input text; `None` for special tokens.
    pub offsets: Option<(usize, usize)>,
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
        // Padding id before we drop the file's padding settings; [PAD] is 0 in BERT
        // vocabularies, <pad> 1 in RoBERTa's.
        let pad_id = inner
            .get_padding()
            .map(|p| p.pad_id)
            .or_else(|| inner.token_to_id("[PAD]"))
            .or_else(|| inner.token_to_id("<pad>"))
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
        let bounded: Vec<(&str, &str)> = pairs
            .par_iter()
            .map(|(a, b)| Ok((self.bounded(a)?, self.bounded(b)?)))
            .collect::<Result<_, ModelError>>()?;
        let inputs: Vec<EncodeInput> = bounded.iter().map(|(a, b)| (*a, *b).into()).collect();
        self.encode_inputs(inputs)
    }

    /// The prefix of `text` that tokenises to the same first `max_length` tokens as the whole
    /// text: the tokenizers library tokenises all of a text before truncating it, so without
    /// this one 50 MB chunk costs a minute and gigabytes. The cut falls before a whitespace
    /// character (a word is never split, so the tokens before it do not change) at
    /// [`PREFIX_BYTES_PER_TOKEN`] × max length bytes; it is kept when that prefix alone
    /// already overflows the max length, otherwise a four times longer one is tried. A text
    /// with no whitespace near the cut is cut at a character boundary: its last word then
    /// lies past the max length anyway, or is one WordPiece cannot split (over 100 characters,
    /// `[UNK]` whole or cut).
    pub fn bounded<'t>(&self, text: &'t str) -> Result<&'t str, ModelError> {
        let mut budget = self
            .max_length
            .max(1)
            .saturating_mul(PREFIX_BYTES_PER_TOKEN);
        while text.len() > budget {
            let prefix = cut_before_whitespace(text, budget);
            let encoding = self
                .inner
                .encode(prefix, true)
                .map_err(|err| ModelError::Tokenize {
                    message: err.to_string(),
                })?;
            if !encoding.get_overflowing().is_empty() {
                return Ok(prefix);
            }
            budget = budget.saturating_mul(4);
        }
        Ok(text)
    }

    /// The tokens of one text as the model sees them (after truncation), with their byte
    /// offsets into `text` (`None` for special tokens); for `serve`'s `/tokenize`.
    pub fn tokens(&self, text: &str, add_special_tokens: bool) -> Result<Vec<Token>, ModelError> {
        let bounded = self.bounded(text)?;
        let encoding = self
            .inner
            .encode(bounded, add_special_tokens)
            .map_err(|err| ModelError::Tokenize {
                message: err.to_string(),
            })?;
        let special = encoding.get_special_tokens_mask();
        Ok(encoding
            .get_ids()
            .iter()
            .zip(encoding.get_tokens())
            .zip(encoding.get_offsets())
            .enumerate()
            .map(|(i, ((&id, token), &(start, stop)))| {
                let is_special = special.get(i).is_some_and(|&m| m == 1);
                Token {
                    id,
                    text: token.clone(),
                    special: is_special,
                    offsets: (!is_special).then_some((start, stop)),
                }
            })
            .collect())
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
        let bounded: Vec<&str> = texts
            .par_iter()
            .map(|text| self.bounded(text))
            .collect::<Result<_, _>>()?;
        let inputs: Vec<EncodeInput> = bounded.iter().map(|t| (*t).into()).collect();
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

/// `text` cut to at most `budget` bytes, before the last whitespace character in them (at a
/// character boundary when there is none).
fn cut_before_whitespace(text: &str, budget: usize) -> &str {
    if text.len() <= budget {
        return text;
    }
    let mut end = budget;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let head = &text[..end];
    match head.rfind(char::is_whitespace) {
        Some(at) if at > 0 => &head[..at],
        _ => head,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_fall_before_whitespace_and_on_character_boundaries() {
        assert_eq!(cut_before_whitespace("alpha beta gamma", 12), "alpha beta");
        assert_eq!(cut_before_whitespace("alpha beta", 100), "alpha beta");
        // No whitespace: a character boundary (é is two bytes).
        assert_eq!(cut_before_whitespace("ééé", 3), "é");
        assert_eq!(cut_before_whitespace(" leading", 4), " lea");
    }
}
