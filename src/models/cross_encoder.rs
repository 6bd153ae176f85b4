//! The CrossEncoder reranker: a (query, passage) pair through the encoder, then the sequence
//! classification head — dense + tanh on the first token ([CLS] / `<s>`; BERT's pooler, or
//! RoBERTa's `classifier.dense`) and the output layer — giving one logit per pair. The score is the logit through the model's activation, read from its config
//! (sentence-transformers `activation_fn`; default sigmoid for one label); both are exported.

use super::architecture::{checked_max_length, read_config};
use super::bert_family::{BertFamilyEncoder, PaddedBatch};
use super::identity::{ModelIdentity, ModelRole};
use super::manager::ResolvedModel;
use super::packed::{DenseLayer, PackedBatch, Threads};
use super::tokenize::{Encoded, TextTokenizer};
use super::weights_file::WeightsFile;
use super::{read_json, ModelError, SelectedDevice};
use crate::config::CpuPrecision;
use crate::gpu::{EncoderMemoryModel, HeadMemory};
use candle_core::{DType, Module};
use candle_nn::Linear;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// How a logit becomes a score.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScoreActivation {
    Identity,
    Sigmoid,
    Tanh,
}

impl ScoreActivation {
    pub fn apply(self, logit: f32) -> f32 {
        match self {
            ScoreActivation::Identity => logit,
            ScoreActivation::Sigmoid => 1.0 / (1.0 + (-logit).exp()),
            ScoreActivation::Tanh => logit.tanh(),
        }
    }

    /// From a sentence-transformers class path such as `torch.nn.modules.linear.Identity`.
    fn from_class_path(path: &str) -> Option<Self> {
        match path.rsplit('.').next()? {
            "Identity" => Some(Self::Identity),
            "Sigmoid" => Some(Self::Sigmoid),
            "Tanh" => Some(Self::Tanh),
            _ => None,
        }
    }
}

/// The parts of `config.json` candle's BERT config does not carry.
#[derive(Deserialize, Default)]
struct HeadConfig {
    #[serde(default)]
    id2label: BTreeMap<String, String>,
    num_labels: Option<usize>,
    #[serde(default)]
    sentence_transformers: Option<StSection>,
    /// Older CrossEncoder checkpoints.
    sbert_ce_default_activation_function: Option<String>,
}

#[derive(Deserialize, Default)]
struct StSection {
    activation_fn: Option<String>,
}

/// The activation and label count of a sequence-classification checkpoint.
fn head_config(dir: &Path) -> Result<(ScoreActivation, usize), ModelError> {
    let path = dir.join("config.json");
    let config: HeadConfig = read_json(&path)?;
    let labels = config.num_labels.unwrap_or(if config.id2label.is_empty() {
        1
    } else {
        config.id2label.len()
    });
    let declared = config
        .sentence_transformers
        .and_then(|st| st.activation_fn)
        .or(config.sbert_ce_default_activation_function);
    let activation = match declared {
        Some(class) => {
            ScoreActivation::from_class_path(&class).ok_or_else(|| ModelError::Unsupported {
                path: path.clone(),
                message: format!(
                    "CrossEncoder activation {class:?} is not supported (Identity, Sigmoid, Tanh)"
                ),
            })?
        }
        None => ScoreActivation::Sigmoid,
    };
    Ok((activation, labels))
}

/// A (logit, activated score) pair.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PairScore {
    pub logit: f32,
    pub score: f32,
}

/// The first-token dense + tanh layer and the one-logit output layer, per backend.
enum ClassifierHead {
    Packed {
        pooler: DenseLayer,
        classifier: DenseLayer,
    },
    Candle {
        pooler: Linear,
        classifier: Linear,
    },
}

/// A loaded CrossEncoder.
pub struct CrossEncoder {
    encoder: BertFamilyEncoder,
    head: ClassifierHead,
    threads: Threads,
    workers: usize,
    activation: ScoreActivation,
    tokenizer: TextTokenizer,
    device: SelectedDevice,
    identity: ModelIdentity,
}

impl CrossEncoder {
    /// `precision`: the stage's CPU products (`None`: as the device's dtype).
    pub fn load(
        reference: &str,
        resolved: &ResolvedModel,
        device: &SelectedDevice,
        max_length: Option<usize>,
        precision: Option<CpuPrecision>,
    ) -> Result<Self, ModelError> {
        let config = read_config(&resolved.dir)?;
        let (activation, labels) = head_config(&resolved.dir)?;
        if labels != 1 {
            return Err(ModelError::Unsupported {
                path: resolved.dir.join("config.json"),
                message: format!("a CrossEncoder with {labels} labels is not supported (one relevance logit expected)"),
            });
        }
        let weights = resolved.weights_file()?;
        let checkpoint = WeightsFile::open(&weights, device.weights_dtype(), &device.device)?;
        let mut encoder = BertFamilyEncoder::load(&checkpoint, &config, device.backend)?;
        let products = encoder.use_products(device.packed_products(precision)?);
        let hidden = config.hidden_size;
        let (pooler_name, classifier_name) = config.family.classifier_names();
        let head = match encoder {
            BertFamilyEncoder::Packed(_) => ClassifierHead::Packed {
                pooler: DenseLayer::load(&checkpoint, pooler_name, hidden, hidden)?,
                classifier: DenseLayer::load(&checkpoint, classifier_name, hidden, 1)?,
            },
            BertFamilyEncoder::Candle { .. } => {
                let head_err = |what: &str| {
                    ModelError::candle(format!("{}: cannot load the {what}", weights.display()))
                };
                ClassifierHead::Candle {
                    pooler: candle_nn::linear(hidden, hidden, checkpoint.vb.pp(pooler_name))
                        .map_err(head_err(pooler_name))?,
                    classifier: candle_nn::linear(hidden, 1, checkpoint.vb.pp(classifier_name))
                        .map_err(head_err(classifier_name))?,
                }
            }
        };
        let max_length =
            checked_max_length(&resolved.dir, max_length, None, config.usable_positions())?;
        let tokenizer = TextTokenizer::load(&resolved.dir.join("tokenizer.json"), max_length)?;
        let mut identity = ModelIdentity::new(
            ModelRole::Rerank,
            "rerank",
            reference,
            resolved,
            &weights,
            &format!("{}_sequence_classification", config.model_type),
            1,
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
            activation,
            tokenizer,
            device: device.clone(),
            identity,
        })
    }

    pub fn identity(&self) -> &ModelIdentity {
        &self.identity
    }

    pub fn activation(&self) -> ScoreActivation {
        self.activation
    }

    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// Runs batches on `workers` concurrent workers sharing this model, each pass on `threads`.
    pub fn set_parallelism(&mut self, workers: usize, threads: Threads) {
        self.workers = workers.max(1);
        self.threads = threads;
    }

    /// Activation-memory model and weight bytes, for planning batches under a device budget.
    pub fn memory_profile(&self) -> (EncoderMemoryModel, u64) {
        let bytes = self.device.dtype.size_in_bytes();
        (
            self.encoder.memory_model(HeadMemory::Classifier, bytes),
            self.encoder.weight_bytes(bytes),
        )
    }

    /// Concurrent batch workers the stage should run this model on.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// One logit per pair.
    fn logits(&self, items: &[&Encoded]) -> Result<Vec<f32>, ModelError> {
        match (&self.encoder, &self.head) {
            (BertFamilyEncoder::Packed(bert), ClassifierHead::Packed { pooler, classifier }) => {
                let batch = PackedBatch::new(items);
                let h = bert.shape().hidden;
                // Only the [CLS] rows reach the head.
                let cls: Vec<f32> = bert.forward_with(&batch, self.threads, |hidden| {
                    batch.offsets[..batch.sequences()]
                        .iter()
                        .flat_map(|&start| hidden[start * h..(start + 1) * h].iter().copied())
                        .collect()
                })?;
                let rows = batch.sequences();
                let mut pooled = vec![0f32; rows * h];
                pooler.apply(&cls, rows, &mut pooled, gemm::Parallelism::None);
                for row in pooled.chunks_exact_mut(h) {
                    for (v, b) in row.iter_mut().zip(&pooler.bias) {
                        *v = (*v + b).tanh();
                    }
                }
                let mut logits = vec![0f32; rows];
                classifier.apply(&pooled, rows, &mut logits, gemm::Parallelism::None);
                Ok(logits.into_iter().map(|l| l + classifier.bias[0]).collect())
            }
            (_, ClassifierHead::Candle { pooler, classifier }) => {
                let batch = PaddedBatch::new(items, self.tokenizer.pad_id(), &self.device.device)?;
                let hidden = self.encoder.forward(&batch)?;
                hidden
                    .narrow(1, 0, 1)
                    .and_then(|cls| cls.squeeze(1))
                    .and_then(|cls| pooler.forward(&cls))
                    .and_then(|pooled| pooled.tanh())
                    .and_then(|pooled| classifier.forward(&pooled))
                    .and_then(|logits| logits.squeeze(1))
                    .and_then(|logits| logits.to_dtype(DType::F32))
                    .and_then(|logits| logits.to_vec1::<f32>())
                    .map_err(ModelError::candle("CrossEncoder head failed"))
            }
            (BertFamilyEncoder::Candle { .. }, ClassifierHead::Packed { .. }) => {
                Err(ModelError::Device {
                    device: self.device.label.clone(),
                    message: "the packed classifier head needs the packed encoder".to_string(),
                })
            }
        }
    }

    /// Scores already tokenised pairs, in the given order.
    pub fn score(&self, items: &[&Encoded]) -> Result<Vec<PairScore>, ModelError> {
        let logits = self.logits(items)?;
        logits
            .into_iter()
            .map(|logit| {
                if logit.is_finite() {
                    Ok(PairScore {
                        logit,
                        score: self.activation.apply(logit),
                    })
                } else {
                    Err(ModelError::NonFinite)
                }
            })
            .collect()
    }
}

impl crate::models::Encoder for CrossEncoder {
    type Output = PairScore;

    fn identity(&self) -> &ModelIdentity {
        CrossEncoder::identity(self)
    }

    fn workers(&self) -> usize {
        CrossEncoder::workers(self)
    }

    fn memory_profile(&self) -> (EncoderMemoryModel, u64) {
        CrossEncoder::memory_profile(self)
    }

    fn forward(&self, items: &[&Encoded]) -> Result<Vec<Self::Output>, ModelError> {
        self.score(items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activation_from_config_forms() {
        let tmp = tempfile::tempdir().unwrap();
        let write = |text: &str| std::fs::write(tmp.path().join("config.json"), text).unwrap();
        write(
            r#"{"sentence_transformers": {"activation_fn": "torch.nn.modules.linear.Identity"}, "id2label": {"0": "LABEL_0"}}"#,
        );
        assert_eq!(
            head_config(tmp.path()).unwrap(),
            (ScoreActivation::Identity, 1)
        );
        write(r#"{"sbert_ce_default_activation_function": "torch.nn.modules.activation.Sigmoid"}"#);
        assert_eq!(head_config(tmp.path()).unwrap().0, ScoreActivation::Sigmoid);
        write(r#"{}"#);
        assert_eq!(
            head_config(tmp.path()).unwrap().0,
            ScoreActivation::Sigmoid,
            "default for one label"
        );
        write(r#"{"sentence_transformers": {"activation_fn": "torch.nn.Softmax"}}"#);
        assert!(head_config(tmp.path())
            .unwrap_err()
            .to_string()
            .contains("Softmax"));
    }

    #[test]
    fn sigmoid_and_identity() {
        assert_eq!(ScoreActivation::Identity.apply(-11.3), -11.3);
        assert!((ScoreActivation::Sigmoid.apply(0.0) - 0.5).abs() < 1e-7);
    }
}
