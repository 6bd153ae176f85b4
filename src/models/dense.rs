//! The dense bi-encoder: tokenizer + BERT encoder + pooling (+ normalisation), configured from
//! the model's sentence-transformers files with per-run overrides from the config.

use super::bert::{read_config, BertEncoder, PaddedBatch};
use super::checkpoint::Checkpoint;
use super::identity::{ModelIdentity, ModelRole};
use super::manager::ResolvedModel;
use super::pooling::{l2_normalize, Pooling};
use super::sentence_transformers::SentenceTransformerInfo;
use super::tokenize::{Encoded, TextTokenizer};
use super::{ModelError, SelectedDevice};
use crate::batching::{
    plan_batches, run_in_input_order, BatchBudget, BatchSizeMismatch, BatchStats,
};
use crate::config::DenseModelConfig;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

/// Vectors in input order plus what it took to make them.
#[derive(Clone, Debug)]
pub struct DenseOutput {
    pub vectors: Vec<Vec<f32>>,
    pub stats: BatchStats,
    /// Texts cut at the max length.
    pub truncated: usize,
    pub elapsed: Duration,
}

impl From<BatchSizeMismatch> for ModelError {
    fn from(err: BatchSizeMismatch) -> Self {
        ModelError::Device {
            device: "batch".to_string(),
            message: err.to_string(),
        }
    }
}

/// A loaded sentence-embedding model.
pub struct DenseEmbedder {
    encoder: BertEncoder,
    tokenizer: TextTokenizer,
    pooling: Pooling,
    normalize: bool,
    document_prompt: Option<String>,
    query_prompt: Option<String>,
    device: SelectedDevice,
    identity: ModelIdentity,
}

impl DenseEmbedder {
    pub fn load(
        config: &DenseModelConfig,
        resolved: &ResolvedModel,
        device: &SelectedDevice,
    ) -> Result<Self, ModelError> {
        let st = SentenceTransformerInfo::read(&resolved.dir)?;
        let weights = resolved.weights_file()?;
        let checkpoint = Checkpoint::open(&weights, device.dtype, &device.device)?;
        let encoder = BertEncoder::load(&checkpoint, &read_config(&resolved.dir)?)?;
        // Sentence-transformers' default for a plain transformers checkpoint is mean pooling.
        let pooling = config.pooling.or(st.pooling).unwrap_or(Pooling::Mean);
        let normalize = config.normalize.unwrap_or(st.normalize);
        let max_length = config
            .max_length
            .or(st.max_seq_length)
            .unwrap_or(encoder.max_position_embeddings())
            .min(encoder.max_position_embeddings());
        let tokenizer = TextTokenizer::load(&resolved.dir.join("tokenizer.json"), max_length)?;
        let mut identity = ModelIdentity::new(
            ModelRole::Dense,
            &config.name,
            &config.model,
            resolved,
            &weights,
            "bert",
            encoder.hidden_size(),
            max_length,
            device,
        )?;
        identity.pooling = Some(pooling);
        identity.normalize = Some(normalize);
        Ok(Self {
            document_prompt: config
                .document_prompt
                .clone()
                .or_else(|| st.prompt("document").map(str::to_string)),
            query_prompt: config
                .query_prompt
                .clone()
                .or_else(|| st.prompt("query").map(str::to_string)),
            encoder,
            tokenizer,
            pooling,
            normalize,
            device: device.clone(),
            identity,
        })
    }

    pub fn identity(&self) -> &ModelIdentity {
        &self.identity
    }

    /// Embeds documents (chunks) with the document prompt, if any.
    pub fn embed_documents(
        &self,
        texts: &[&str],
        budget: BatchBudget,
    ) -> Result<DenseOutput, ModelError> {
        self.embed_with_prompt(texts, self.document_prompt.as_deref(), budget, &mut |_| {})
    }

    /// [`Self::embed_documents`], calling `on_batch` with the item count of each finished batch.
    pub fn embed_documents_observed(
        &self,
        texts: &[&str],
        budget: BatchBudget,
        on_batch: &mut dyn FnMut(usize),
    ) -> Result<DenseOutput, ModelError> {
        self.embed_with_prompt(texts, self.document_prompt.as_deref(), budget, on_batch)
    }

    /// Embeds queries with the query prompt, if any.
    pub fn embed_queries(
        &self,
        texts: &[&str],
        budget: BatchBudget,
    ) -> Result<DenseOutput, ModelError> {
        self.embed_with_prompt(texts, self.query_prompt.as_deref(), budget, &mut |_| {})
    }

    fn embed_with_prompt(
        &self,
        texts: &[&str],
        prompt: Option<&str>,
        budget: BatchBudget,
        on_batch: &mut dyn FnMut(usize),
    ) -> Result<DenseOutput, ModelError> {
        let started = Instant::now();
        let encodings = match prompt {
            Some(prompt) => {
                let prompted: Vec<String> = texts.iter().map(|t| format!("{prompt}{t}")).collect();
                let refs: Vec<&str> = prompted.iter().map(String::as_str).collect();
                self.tokenizer.encode_batch(&refs)?
            }
            None => self.tokenizer.encode_batch(texts)?,
        };
        let lengths: Vec<usize> = encodings.iter().map(Encoded::len).collect();
        let plan = plan_batches(&lengths, budget);
        let mut stats = BatchStats::default();
        let vectors = run_in_input_order(encodings.len(), &plan, |batch| {
            let items: Vec<&Encoded> = batch.iter().map(|&i| &encodings[i]).collect();
            let batch_lengths: Vec<usize> = items.iter().map(|e| e.len()).collect();
            stats.record(&batch_lengths);
            let vectors = self.embed_encoded(&items)?;
            on_batch(items.len());
            Ok::<_, ModelError>(vectors)
        })?;
        Ok(DenseOutput {
            vectors,
            stats,
            truncated: encodings.iter().filter(|e| e.truncated).count(),
            elapsed: started.elapsed(),
        })
    }

    /// One forward pass over already tokenised items.
    fn embed_encoded(&self, items: &[&Encoded]) -> Result<Vec<Vec<f32>>, ModelError> {
        let batch = PaddedBatch::new(items, self.tokenizer.pad_id(), &self.device.device)?;
        let hidden = self.encoder.forward(&batch)?;
        let pooled = self
            .pooling
            .pool(&hidden, &batch.mask, &batch.lengths)
            .map_err(ModelError::candle("pooling failed"))?;
        let pooled = if self.normalize {
            l2_normalize(&pooled).map_err(ModelError::candle("normalisation failed"))?
        } else {
            pooled
        };
        pooled.to_vec2::<f32>().map_err(ModelError::candle(
            "cannot read embeddings back from the device",
        ))
    }
}

/// sha256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String, ModelError> {
    let io_err = |source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io_err)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = file.read(&mut buffer).map_err(io_err)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hex::encode(hasher.finalize()))
}
