//! The dense bi-encoder: tokenizer + BERT-family encoder + pooling (+ normalisation), configured from
//! the model's sentence-transformers files with per-run overrides from the config.

use super::architecture::{checked_max_length, read_architecture, Architecture};
use super::bert_family::{BertFamilyEncoder, PaddedBatch};
use super::decoder::Decoder;
use super::identity::{ModelIdentity, ModelRole};
use super::manager::ResolvedModel;
use super::packed::{PackedBatch, Threads};
use super::pooling::{l2_normalize, l2_normalize_in_place, Pooling};
use super::sentence_transformers::SentenceTransformerInfo;
use super::tokenize::{Encoded, TextTokenizer};
use super::weights_file::WeightsFile;
use super::{ModelError, Replicas, SelectedDevice};
use crate::batching::{BatchBudget, BatchStats};
use crate::config::{CpuPrecision, DenseModelConfig};
use crate::dispatch::{DispatchStats, FaultInjector};
use crate::gpu::{EncoderMemoryModel, HeadMemory};
use crate::models::run_encoded;
use std::time::{Duration, Instant};

/// Vectors in input order plus what it took to make them.
#[derive(Clone, Debug)]
pub struct DenseOutput {
    pub vectors: Vec<Vec<f32>>,
    pub stats: BatchStats,
    /// Texts cut at the max length.
    pub truncated: usize,
    pub elapsed: Duration,
    /// Workers, out-of-memory recoveries and retries.
    pub dispatch: DispatchStats,
}

/// Like [`DenseOutput`], but one result per text: a text that fails even alone fails only
/// itself (the runner reports it by id and writes no point for it).
pub struct DenseItems {
    pub results: Vec<Result<Vec<f32>, ModelError>>,
    pub stats: BatchStats,
    /// Texts cut at the max length.
    pub truncated: usize,
    pub elapsed: Duration,
    /// Workers, out-of-memory recoveries and retries.
    pub dispatch: DispatchStats,
}

/// The network under the pooling.
enum Backbone {
    /// BERT, RoBERTa, XLM-RoBERTa (packed on the CPU, candle elsewhere).
    Encoder(BertFamilyEncoder),
    /// Qwen3, Qwen2 (candle on every device).
    Decoder(Decoder),
}

impl Backbone {
    /// Hidden states [batch, seq, hidden] of a padded batch (not the packed encoder).
    fn forward(&self, batch: &PaddedBatch) -> Result<candle_core::Tensor, ModelError> {
        match self {
            Backbone::Encoder(encoder) => encoder.forward(batch),
            Backbone::Decoder(decoder) => decoder.forward(&batch.input_ids),
        }
    }
}

/// Which of a model's prompts a text gets: the query prompt for search queries, the document
/// prompt for the chunks the points are made of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TextRole {
    Query,
    Document,
}

/// A loaded sentence-embedding model.
pub struct DenseEmbedder {
    encoder: Backbone,
    tokenizer: TextTokenizer,
    pooling: Pooling,
    normalize: bool,
    document_prompt: Option<String>,
    query_prompt: Option<String>,
    device: SelectedDevice,
    threads: Threads,
    /// Concurrent batch workers sharing this model (CPU data parallelism).
    workers: usize,
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
        let checkpoint = WeightsFile::open(&weights, device.weights_dtype(), &device.device)?;
        let architecture = read_architecture(&resolved.dir)?;
        let (model_type, dim, positions) = (
            architecture.model_type(),
            architecture.hidden_size(),
            architecture.usable_positions(),
        );
        if let Some(expected) = config.expected_dim {
            if dim != expected {
                return Err(ModelError::Unsupported {
                    path: resolved.dir.join("config.json"),
                    message: format!(
                        "{} embeds to {dim} dimensions where its alias says {expected}",
                        config.model
                    ),
                });
            }
        }
        let stage_products = device.packed_products(config.precision)?;
        let (encoder, products) = match architecture {
            Architecture::Encoder(encoder_config) => {
                let mut encoder =
                    BertFamilyEncoder::load(&checkpoint, &encoder_config, device.backend)?;
                let products = encoder.use_products(stage_products);
                (Backbone::Encoder(encoder), products)
            }
            Architecture::Decoder(decoder_config) => {
                // The bf16 and int8 products are the packed BERT encoder's; on the CPU a
                // decoder runs candle in f32 (the checkpoint was opened in f32 for it).
                let asked = config.precision.filter(|p| *p != CpuPrecision::F32);
                if let (Some(asked), Some(_)) = (asked, stage_products) {
                    return Err(ModelError::Unsupported {
                        path: resolved.dir.join("config.json"),
                        message: format!(
                            "precision \"{}\" is implemented for BERT-family encoders; \
                             a {model_type} model runs in f32 on the CPU (set precision \
                             = \"f32\" or leave it unset)",
                            asked.as_str()
                        ),
                    });
                }
                let products = stage_products.map(|_| CpuPrecision::F32.as_str());
                (
                    Backbone::Decoder(Decoder::load(&checkpoint, &decoder_config)?),
                    products,
                )
            }
        };
        // Sentence-transformers' default for a plain transformers checkpoint is mean pooling.
        let pooling = config.pooling.or(st.pooling).unwrap_or(Pooling::Mean);
        let normalize = config.normalize.unwrap_or(st.normalize);
        let max_length = checked_max_length(
            &resolved.dir,
            config.max_length,
            st.max_seq_length,
            positions,
        )?;
        let tokenizer = TextTokenizer::load(&resolved.dir.join("tokenizer.json"), max_length)?;
        let mut identity = ModelIdentity::new(
            ModelRole::Dense,
            &config.name,
            &config.model,
            resolved,
            &weights,
            model_type,
            dim,
            max_length,
            device,
        )?;
        if let Some(label) = products {
            identity.dtype = label.to_string();
        }
        identity.pooling = Some(pooling);
        identity.normalize = Some(normalize);
        let document_prompt = config
            .document_prompt
            .clone()
            .or_else(|| st.prompt("document").map(str::to_string));
        let query_prompt = config
            .query_prompt
            .clone()
            .or_else(|| st.prompt("query").map(str::to_string));
        identity.query_prompt = query_prompt.clone();
        identity.document_prompt = document_prompt.clone();
        Ok(Self {
            document_prompt,
            query_prompt,
            encoder,
            tokenizer,
            pooling,
            normalize,
            device: device.clone(),
            threads: device.threads_per_pass(),
            workers: device.workers,
            identity,
        })
    }

    pub fn identity(&self) -> &ModelIdentity {
        &self.identity
    }

    /// Concurrent batch workers the stage runs this model on.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Activation-memory model and weight bytes, for planning batches under a device budget.
    pub fn memory_profile(&self) -> (EncoderMemoryModel, u64) {
        let bytes = self.device.dtype.size_in_bytes();
        match &self.encoder {
            Backbone::Encoder(encoder) => (
                encoder.memory_model(HeadMemory::Pooling, bytes),
                encoder.weight_bytes(bytes),
            ),
            Backbone::Decoder(decoder) => (
                decoder.config().memory_model(bytes),
                decoder.config().weight_bytes(bytes),
            ),
        }
    }

    /// Runs batches on `workers` concurrent workers sharing this model, each pass on `threads`.
    pub fn set_parallelism(&mut self, workers: usize, threads: Threads) {
        self.workers = workers.max(1);
        self.threads = threads;
    }

    /// Embeds documents (chunks) with the document prompt, if any, on this model's workers.
    pub fn embed_documents(
        &self,
        texts: &[&str],
        budget: BatchBudget,
    ) -> Result<DenseOutput, ModelError> {
        self.embed_with_prompt(
            &vec![self; self.workers],
            texts,
            self.document_prompt.as_deref(),
            budget,
            &|_| {},
            None,
        )
    }

    /// Embeds queries with the query prompt, if any, on this model's workers.
    pub fn embed_queries(
        &self,
        texts: &[&str],
        budget: BatchBudget,
    ) -> Result<DenseOutput, ModelError> {
        self.embed_with_prompt(
            &vec![self; self.workers],
            texts,
            self.query_prompt.as_deref(),
            budget,
            &|_| {},
            None,
        )
    }

    /// The prompt this model puts before texts of `role` (`None`: no prompt configured).
    pub fn prompt(&self, role: TextRole) -> Option<&str> {
        match role {
            TextRole::Query => self.query_prompt.as_deref(),
            TextRole::Document => self.document_prompt.as_deref(),
        }
    }

    /// Token ids of `texts` with `prompt` before each, truncated at the model's max length:
    /// the one tokenisation every caller (the batch stages, `embed-queries`, `serve`) uses.
    pub fn tokenize(
        &self,
        texts: &[&str],
        prompt: Option<&str>,
    ) -> Result<Vec<Encoded>, ModelError> {
        match prompt {
            Some(prompt) => {
                let prompted: Vec<String> = texts.iter().map(|t| format!("{prompt}{t}")).collect();
                let refs: Vec<&str> = prompted.iter().map(String::as_str).collect();
                self.tokenizer.encode_batch(&refs)
            }
            None => self.tokenizer.encode_batch(texts),
        }
    }

    /// The model's tokenizer (already set to truncate at its max length).
    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// Tokenises once, then runs the batches on `workers` (copies of this model).
    fn embed_with_prompt(
        &self,
        workers: &[&DenseEmbedder],
        texts: &[&str],
        prompt: Option<&str>,
        budget: BatchBudget,
        on_batch: &(dyn Fn(usize) + Sync),
        fault: Option<&FaultInjector>,
    ) -> Result<DenseOutput, ModelError> {
        let items =
            self.embed_items_with_prompt(workers, texts, prompt, budget, on_batch, fault, 0)?;
        // Without a per-item policy (queries, benchmarks, tests) any failed item fails all.
        let vectors = items.results.into_iter().collect::<Result<Vec<_>, _>>()?;
        Ok(DenseOutput {
            vectors,
            stats: items.stats,
            truncated: items.truncated,
            elapsed: items.elapsed,
            dispatch: items.dispatch,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn embed_items_with_prompt(
        &self,
        workers: &[&DenseEmbedder],
        texts: &[&str],
        prompt: Option<&str>,
        budget: BatchBudget,
        on_batch: &(dyn Fn(usize) + Sync),
        fault: Option<&FaultInjector>,
        fault_offset: usize,
    ) -> Result<DenseItems, ModelError> {
        let started = Instant::now();
        let encodings = self.tokenize(texts, prompt)?;
        let outcome = run_encoded(
            workers,
            &encodings,
            budget,
            fault,
            &|i| i + fault_offset,
            on_batch,
        )
        .map_err(|err| ModelError::Device {
            device: self.device.label.clone(),
            message: err.to_string(),
        })?;
        Ok(DenseItems {
            results: outcome.results,
            stats: outcome.stats,
            truncated: encodings.iter().filter(|e| e.truncated).count(),
            elapsed: started.elapsed(),
            dispatch: outcome.dispatch,
        })
    }

    /// One forward pass over already tokenised items.
    fn embed_encoded(&self, items: &[&Encoded]) -> Result<Vec<Vec<f32>>, ModelError> {
        if let Backbone::Encoder(BertFamilyEncoder::Packed(bert)) = &self.encoder {
            let batch = PackedBatch::new(items);
            let width = bert.shape().hidden;
            let mut pooled = bert.forward_with(&batch, self.threads, |hidden| {
                self.pooling.pool_packed(hidden, &batch.offsets, width)
            })?;
            if self.normalize {
                pooled.iter_mut().for_each(|v| l2_normalize_in_place(v));
            }
            return Ok(pooled);
        }
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

impl Replicas<DenseEmbedder> {
    /// Embeds documents on every replica's workers, calling `on_batch` with the item count of
    /// each finished batch (from any worker) and failing the batches `fault` picks (tests).
    pub fn embed_documents_observed(
        &self,
        texts: &[&str],
        budget: BatchBudget,
        on_batch: &(dyn Fn(usize) + Sync),
        fault: Option<&FaultInjector>,
        fault_offset: usize,
    ) -> Result<DenseItems, ModelError> {
        let primary = self.primary();
        primary.embed_items_with_prompt(
            &self.workers(),
            texts,
            primary.document_prompt.as_deref(),
            budget,
            on_batch,
            fault,
            fault_offset,
        )
    }

    /// Embeds queries on every replica's workers.
    pub fn embed_queries(
        &self,
        texts: &[&str],
        budget: BatchBudget,
    ) -> Result<DenseOutput, ModelError> {
        let primary = self.primary();
        primary.embed_with_prompt(
            &self.workers(),
            texts,
            primary.query_prompt.as_deref(),
            budget,
            &|_| {},
            None,
        )
    }
}

impl crate::models::Encoder for DenseEmbedder {
    type Output = Vec<f32>;

    fn identity(&self) -> &ModelIdentity {
        DenseEmbedder::identity(self)
    }

    fn workers(&self) -> usize {
        DenseEmbedder::workers(self)
    }

    fn memory_profile(&self) -> (EncoderMemoryModel, u64) {
        DenseEmbedder::memory_profile(self)
    }

    /// A vector with a NaN or infinity fails its batch, so the dispatcher retries the items
    /// in halves down to the one that fails alone (its chunk gets no point and is counted):
    /// a `null` must never reach a point file, which no vector database accepts.
    fn forward(&self, items: &[&Encoded]) -> Result<Vec<Self::Output>, ModelError> {
        let vectors = self.embed_encoded(items)?;
        if vectors.iter().flatten().any(|x| !x.is_finite()) {
            return Err(ModelError::NonFinite);
        }
        Ok(vectors)
    }
}
