//! Request and response bodies, field for field as the clients of each API send and expect
//! them: text-embeddings-inference (`/embed`, `/embed_sparse`, `/rerank`, `/tokenize`, `/info`),
//! OpenAI (`/v1/embeddings`, `/v1/models`), Cohere/Jina rerank (`/v1/rerank`), and ours
//! (`/v1/query`). Unknown request fields are ignored, as those servers do (clients send
//! optional fields of newer API versions).

use serde::{Deserialize, Serialize};

/// A text or a list of texts (TEI's `inputs`, OpenAI's `input`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Texts {
    One(String),
    Many(Vec<String>),
}

impl Texts {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Texts::One(text) => vec![text],
            Texts::Many(texts) => texts,
        }
    }
}

/// OpenAI's `input`: a text, texts, or token ids (refused: the server tokenises itself, so
/// the vectors match the run's).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OpenAiInput {
    Texts(Texts),
    Tokens(serde_json::Value),
}

/// `POST /embed`.
#[derive(Debug, Deserialize)]
pub struct EmbedRequest {
    pub inputs: Texts,
    /// Cut inputs longer than the model's max length (default: yes, as the run does); `false`
    /// answers 422 for them instead.
    pub truncate: Option<bool>,
    /// TEI's `truncation_direction`: only `right` (the run's) is supported.
    pub truncation_direction: Option<String>,
    #[serde(default = "yes")]
    pub normalize: bool,
    /// `query` or `document`: which of the model's prompts to put before each input (default
    /// `document`, the prompt the run's points were made with).
    pub prompt_name: Option<String>,
    /// The dense model's vector name (default: the run's first dense model).
    pub model: Option<String>,
}

fn yes() -> bool {
    true
}

/// `POST /embed_sparse`.
#[derive(Debug, Deserialize)]
pub struct EmbedSparseRequest {
    pub inputs: Texts,
    pub truncate: Option<bool>,
    pub truncation_direction: Option<String>,
}

/// One non-zero of a sparse vector (TEI's `SparseValue`).
#[derive(Debug, Serialize)]
pub struct SparseValue {
    pub index: u32,
    pub value: f32,
}

/// `POST /rerank`.
#[derive(Debug, Deserialize)]
pub struct RerankRequest {
    pub query: String,
    pub texts: Vec<String>,
    pub truncate: Option<bool>,
    pub truncation_direction: Option<String>,
    /// The logit instead of the model's activated score.
    #[serde(default)]
    pub raw_scores: bool,
    #[serde(default)]
    pub return_text: bool,
}

/// One entry of `/rerank`'s answer.
#[derive(Debug, Serialize)]
pub struct Rank {
    pub index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    pub score: f32,
}

/// `POST /tokenize`.
#[derive(Debug, Deserialize)]
pub struct TokenizeRequest {
    pub inputs: Texts,
    #[serde(default = "yes")]
    pub add_special_tokens: bool,
    pub prompt_name: Option<String>,
    pub model: Option<String>,
}

/// One token of `/tokenize`'s answer (TEI's `SimpleToken`; offsets in bytes).
#[derive(Debug, Serialize)]
pub struct SimpleToken {
    pub id: u32,
    pub text: String,
    pub special: bool,
    pub start: Option<usize>,
    pub stop: Option<usize>,
}

/// `POST /v1/embeddings`.
#[derive(Debug, Deserialize)]
pub struct EmbeddingsRequest {
    pub input: OpenAiInput,
    pub model: Option<String>,
    /// `float` (default) or `base64` (little-endian f32, what the OpenAI SDK asks for).
    pub encoding_format: Option<String>,
    pub dimensions: Option<usize>,
    /// As `/embed`'s `prompt_name` (send it with the SDK's `extra_body`).
    pub prompt_name: Option<String>,
    pub truncate: Option<bool>,
}

#[derive(Debug, Serialize)]
pub struct EmbeddingsResponse {
    pub object: &'static str,
    pub data: Vec<EmbeddingItem>,
    pub model: String,
    pub usage: Usage,
}

#[derive(Debug, Serialize)]
pub struct EmbeddingItem {
    pub object: &'static str,
    /// A list of floats, or a base64 string of their little-endian bytes.
    pub embedding: serde_json::Value,
    pub index: usize,
}

#[derive(Debug, Serialize)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub total_tokens: usize,
}

impl Usage {
    pub fn tokens(tokens: usize) -> Self {
        Self {
            prompt_tokens: tokens,
            total_tokens: tokens,
        }
    }
}

/// A document of `/v1/rerank`: a string, or Cohere's `{"text": …}`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Document {
    Text(String),
    Object { text: String },
}

impl Document {
    pub fn into_text(self) -> String {
        match self {
            Document::Text(text) | Document::Object { text } => text,
        }
    }
}

/// `POST /v1/rerank` (Cohere and Jina).
#[derive(Debug, Deserialize)]
pub struct CohereRerankRequest {
    pub query: String,
    pub documents: Vec<Document>,
    pub model: Option<String>,
    pub top_n: Option<usize>,
    #[serde(default)]
    pub return_documents: bool,
    pub truncate: Option<bool>,
}

#[derive(Debug, Serialize)]
pub struct CohereRerankResponse {
    pub id: String,
    pub object: &'static str,
    pub model: String,
    pub results: Vec<CohereResult>,
    pub usage: Usage,
}

#[derive(Debug, Serialize)]
pub struct CohereResult {
    pub index: usize,
    pub relevance_score: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document: Option<DocumentText>,
}

#[derive(Debug, Serialize)]
pub struct DocumentText {
    pub text: String,
}

/// `POST /v1/query`.
#[derive(Debug, Deserialize)]
pub struct QueryRequest {
    pub query: String,
    /// The collection whose fusion to reproduce (with `fusion.method = "auto"`, each
    /// collection has its own).
    pub collection: Option<String>,
    /// Results the Qdrant request asks for (default `rerank.top_k`).
    pub limit: Option<usize>,
    pub truncate: Option<bool>,
}

/// `/v1/query`'s answer.
#[derive(Serialize)]
pub struct QueryResponse<'a> {
    /// sha256 of the query text, as `query_vectors.jsonl` records it.
    pub query_sha256: String,
    /// The query's named vectors, serialised as `query_vectors.jsonl`'s `vector`.
    pub vector: crate::export::wire::NamedVectors<'a>,
    /// The Qdrant Query API body that reproduces the run's fusion.
    pub qdrant: crate::fusion::qdrant::QueryBody<crate::export::wire::VectorRef<'a>>,
    pub fusion: crate::fusion::qdrant::FusionPlan,
    pub usage: Usage,
}
