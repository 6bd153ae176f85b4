//! The HTTP routes: TEI's, OpenAI's, Cohere/Jina's rerank and `/v1/query`.
//!
//! Every inference route goes through [`handle`]: request id, API key, body size, readiness,
//! the request timeout, metrics and one log line (route, status, input count, latency; never
//! text). Inside, a route parses its body, checks its inputs in a fixed order (empty → 400, too
//! many → 422, no room → 429), tokenises on a blocking thread, and waits for its model's batcher.
//!
//! Prompts: `/embed`, `/tokenize` and `/v1/embeddings` put the dense model's *document* prompt
//! before each input unless the request says `"prompt_name": "query"` (TEI's field; with the
//! OpenAI SDK, through `extra_body`). That is what the run's points were made with, and what
//! TEI does with a model's default prompt. `/v1/query` always uses each model's *query*
//! prompt, as the run's query vectors do. SPLADE and the CrossEncoder have no prompts.

use super::batcher::BatchError;
use super::error::{ApiError, Flavor, Kind};
use super::wire::*;
use super::{App, Ready};
use crate::export::wire::{NamedVectors, VectorRef};
use crate::fusion::qdrant::query_body;
use crate::models::pooling::l2_normalize_in_place;
use crate::models::tokenize::Encoded;
use crate::models::{DenseEmbedder, Replicas, TextRole};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::OwnedSemaphorePermit;
use tracing::{debug, info, Instrument};

type AppState = State<Arc<App>>;
type Body = Result<Bytes, BytesRejection>;

/// Every route of the server.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        // TEI answers POST / with its model's task; huggingface_hub's InferenceClient posts there.
        .route("/", post(embed))
        .route("/embed", post(embed))
        .route("/embed_sparse", post(embed_sparse))
        .route("/rerank", post(rerank))
        .route("/tokenize", post(tokenize))
        .route("/v1/embeddings", post(openai_embeddings))
        .route("/v1/models", get(openai_models))
        .route("/v1/rerank", post(cohere_rerank))
        .route("/v1/query", post(query))
        .route("/health", get(health))
        .route("/info", get(info_route))
        .route("/metrics", get(metrics))
        .with_state(app)
}

/// What a route's work gets: the app, the loaded models, the body and the request id.
struct Request {
    app: Arc<App>,
    ready: Arc<Ready>,
    body: Bytes,
    id: String,
}

/// Runs `work` under the checks and bookkeeping every inference route shares.
async fn handle<F, Fut>(
    app: Arc<App>,
    route: &'static str,
    flavor: Flavor,
    headers: &HeaderMap,
    body: Body,
    work: F,
) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Result<Response, ApiError>>,
{
    let started = Instant::now();
    let id = app.next_request_id();
    let span = tracing::info_span!("request", id = %id, route);
    let outcome = async {
        app.check_key(headers)?;
        let body = body.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    Kind::PayloadTooLarge,
                    format!(
                        "the request body is larger than serve.payload_limit ({} bytes)",
                        app.settings.payload_limit.0
                    ),
                )
            } else {
                ApiError::validation("cannot read the request body")
            }
        })?;
        let ready = app.ready().ok_or_else(not_ready)?;
        let request = Request {
            app: Arc::clone(&app),
            ready,
            body,
            id: id.clone(),
        };
        match tokio::time::timeout(app.settings.request_timeout.0, work(request)).await {
            Ok(result) => result,
            Err(_) => Err(ApiError::new(
                Kind::Timeout,
                format!(
                    "the request took longer than serve.request_timeout ({})",
                    app.settings.request_timeout
                ),
            )),
        }
    }
    .instrument(span.clone())
    .await;
    let mut response = match outcome {
        Ok(response) => response,
        Err(error) => {
            app.metrics.count_failure(error.kind.as_str());
            error.into_response_as(flavor)
        }
    };
    let status = response.status().as_u16();
    app.metrics
        .observe_request(route, status, started.elapsed());
    span.in_scope(|| {
        info!(
            status,
            latency_ms = format!("{:.1}", started.elapsed().as_secs_f64() * 1e3),
            "request answered"
        )
    });
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

fn not_ready() -> ApiError {
    ApiError::new(
        Kind::Unhealthy,
        "the models are still loading (GET /health answers 200 once they are ready)",
    )
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|err| ApiError::validation(format!("invalid request body: {err}")))
}

/// A query text, checked: not empty.
fn checked_query(query: &str) -> Result<(), ApiError> {
    if query.is_empty() {
        return Err(ApiError::new(Kind::Empty, "`query` is an empty string").at("query"));
    }
    Ok(())
}

/// The texts of a request, checked: at least one, none empty, at most the client batch size.
fn checked_texts(
    app: &App,
    texts: Vec<String>,
    field: &'static str,
) -> Result<Vec<String>, ApiError> {
    if texts.is_empty() {
        return Err(ApiError::new(Kind::Empty, format!("`{field}` is empty")).at(field));
    }
    if let Some(at) = texts.iter().position(String::is_empty) {
        return Err(
            ApiError::new(Kind::Empty, format!("`{field}`[{at}] is an empty string")).at(field),
        );
    }
    let limit = app.settings.max_client_batch_size;
    if texts.len() > limit {
        return Err(ApiError::validation(format!(
            "{} inputs is more than serve.max_client_batch_size ({limit}); split the request",
            texts.len()
        ))
        .at(field));
    }
    debug!(inputs = texts.len(), "inputs accepted");
    Ok(texts)
}

fn check_direction(direction: Option<&str>) -> Result<(), ApiError> {
    match direction {
        None => Ok(()),
        Some(d) if d.eq_ignore_ascii_case("right") => Ok(()),
        Some(_) => Err(ApiError::validation(
            "only truncation_direction \"right\" is supported (the run truncates on the right)",
        )
        .at("truncation_direction")),
    }
}

/// `prompt_name`: `document` (default) or `query`.
fn text_role(prompt_name: Option<&str>) -> Result<TextRole, ApiError> {
    match prompt_name {
        None | Some("document") => Ok(TextRole::Document),
        Some("query") => Ok(TextRole::Query),
        Some(other) => Err(ApiError::validation(format!(
            "prompt_name {other:?} is not one of \"query\", \"document\""
        ))
        .at("prompt_name")),
    }
}

/// Refuses truncated inputs when the request asked for no truncation.
fn check_truncation(
    encodings: &[Encoded],
    truncate: bool,
    max_length: usize,
) -> Result<(), ApiError> {
    match encodings.iter().position(|e| e.truncated) {
        Some(at) if !truncate => Err(ApiError::validation(format!(
            "input {at} is longer than the model's max length ({max_length} tokens); \
             send a shorter text or \"truncate\": true"
        ))
        .at("truncate")),
        _ => Ok(()),
    }
}

fn backend(error: BatchError) -> ApiError {
    match error {
        BatchError::Model(message) => {
            ApiError::new(Kind::Backend, format!("the model failed: {message}"))
        }
        BatchError::Closed => ApiError::new(Kind::Unhealthy, error.to_string()),
    }
}

/// Runs blocking tokenisation off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|_| ApiError::new(Kind::Backend, "tokenisation failed"))?
}

fn tokenize_error(err: crate::models::ModelError) -> ApiError {
    ApiError::validation(format!("cannot tokenise the input: {err}"))
}

/// Tokenises `texts` for dense model `model` with the prompt of `role`.
async fn dense_encodings(
    model: Arc<Replicas<DenseEmbedder>>,
    texts: Vec<String>,
    role: TextRole,
    truncate: bool,
) -> Result<Vec<Encoded>, ApiError> {
    blocking(move || {
        let primary = model.primary();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let encodings = primary
            .tokenize(&refs, primary.prompt(role))
            .map_err(tokenize_error)?;
        check_truncation(&encodings, truncate, primary.identity().max_length)?;
        Ok(encodings)
    })
    .await
}

fn token_count(encodings: &[Encoded]) -> usize {
    encodings.iter().map(Encoded::len).sum()
}

impl Ready {
    /// The dense model a request names (its vector name or model id), else the first.
    fn dense_position(&self, model: Option<&str>) -> Result<usize, ApiError> {
        let Some(wanted) = model.filter(|m| !m.is_empty()) else {
            return Ok(0);
        };
        self.engine
            .dense()
            .iter()
            .position(|m| {
                let identity = m.primary().identity();
                identity.name == wanted || identity.model == wanted
            })
            .ok_or_else(|| {
                let names: Vec<String> = self
                    .engine
                    .dense()
                    .iter()
                    .map(|m| m.primary().identity().name.clone())
                    .collect();
                ApiError::new(
                    Kind::NotFound,
                    format!("no dense model {wanted:?} here; the models are {names:?}"),
                )
                .at("model")
            })
    }
}

/// Dense vectors for a checked request.
async fn dense_vectors(
    request: &Request,
    position: usize,
    texts: Vec<String>,
    role: TextRole,
    truncate: bool,
) -> Result<(Vec<Vec<f32>>, usize), ApiError> {
    let model = Arc::clone(&request.ready.engine.dense()[position]);
    let encodings = dense_encodings(model, texts, role, truncate).await?;
    let tokens = token_count(&encodings);
    let vectors = request.ready.dense[position]
        .submit(encodings)
        .await
        .map_err(backend)?;
    Ok((vectors, tokens))
}

async fn embed(State(app): AppState, headers: HeaderMap, body: Body) -> Response {
    handle(app, "/embed", Flavor::Tei, &headers, body, |request| async move {
        let req: EmbedRequest = parse(&request.body)?;
        check_direction(req.truncation_direction.as_deref())?;
        let texts = checked_texts(&request.app, req.inputs.into_vec(), "inputs")?;
        let _permit = request.app.admit(texts.len())?;
        let position = request.ready.dense_position(req.model.as_deref())?;
        let role = text_role(req.prompt_name.as_deref())?;
        let normalizes = request.ready.engine.dense()[position]
            .primary()
            .identity()
            .normalize
            == Some(true);
        if !req.normalize && normalizes {
            return Err(ApiError::validation(
                "this model's vectors are normalised (as the run's points); normalize: false is not available",
            )
            .at("normalize"));
        }
        let (mut vectors, _) =
            dense_vectors(&request, position, texts, role, req.truncate.unwrap_or(true)).await?;
        if req.normalize && !normalizes {
            vectors.iter_mut().for_each(|v| l2_normalize_in_place(v));
        }
        Ok(Json(vectors).into_response())
    })
    .await
}

async fn embed_sparse(State(app): AppState, headers: HeaderMap, body: Body) -> Response {
    handle(
        app,
        "/embed_sparse",
        Flavor::Tei,
        &headers,
        body,
        |request| async move {
            let req: EmbedSparseRequest = parse(&request.body)?;
            check_direction(req.truncation_direction.as_deref())?;
            let texts = checked_texts(&request.app, req.inputs.into_vec(), "inputs")?;
            let _permit = request.app.admit(texts.len())?;
            let vectors = sparse_vectors(&request, texts, req.truncate.unwrap_or(true))
                .await?
                .0;
            let body: Vec<Vec<SparseValue>> = vectors
                .into_iter()
                .map(|v| {
                    v.indices
                        .into_iter()
                        .zip(v.values)
                        .map(|(index, value)| SparseValue { index, value })
                        .collect()
                })
                .collect();
            Ok(Json(body).into_response())
        },
    )
    .await
}

/// SPLADE vectors for checked texts.
async fn sparse_vectors(
    request: &Request,
    texts: Vec<String>,
    truncate: bool,
) -> Result<(Vec<crate::vectors::SparseVector>, usize), ApiError> {
    let (Some(model), Some(batcher)) = (request.ready.engine.sparse(), &request.ready.sparse)
    else {
        return Err(ApiError::new(
            Kind::NotFound,
            "this server has no sparse model (sparse.enabled = false)",
        ));
    };
    let model = Arc::clone(model);
    let encodings = blocking(move || {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let primary = model.primary();
        let encodings = primary
            .tokenizer()
            .encode_batch(&refs)
            .map_err(tokenize_error)?;
        check_truncation(&encodings, truncate, primary.identity().max_length)?;
        Ok(encodings)
    })
    .await?;
    let tokens = token_count(&encodings);
    Ok((batcher.submit(encodings).await.map_err(backend)?, tokens))
}

/// CrossEncoder scores of (query, text) for each text with the text's position, best first
/// (ties by position: the activations are monotonic, so logits and scores give one order), and
/// the tokens they took.
async fn ranked_pairs(
    request: &Request,
    query: String,
    texts: Vec<String>,
    truncate: bool,
) -> Result<(Vec<(usize, crate::models::PairScore)>, usize), ApiError> {
    let (Some(model), Some(batcher)) =
        (request.ready.engine.cross_encoder(), &request.ready.rerank)
    else {
        return Err(ApiError::new(
            Kind::NotFound,
            "this server has no rerank model (rerank.enabled = false)",
        ));
    };
    let model = Arc::clone(model);
    let encodings = blocking(move || {
        let pairs: Vec<(&str, &str)> = texts.iter().map(|t| (query.as_str(), t.as_str())).collect();
        let primary = model.primary();
        let encodings = primary
            .tokenizer()
            .encode_pairs(&pairs)
            .map_err(tokenize_error)?;
        check_truncation(&encodings, truncate, primary.identity().max_length)?;
        Ok(encodings)
    })
    .await?;
    let tokens = token_count(&encodings);
    let scores = batcher.submit(encodings).await.map_err(backend)?;
    let mut ranked: Vec<(usize, crate::models::PairScore)> =
        scores.into_iter().enumerate().collect();
    ranked.sort_by(|(ia, a), (ib, b)| b.logit.total_cmp(&a.logit).then(ia.cmp(ib)));
    Ok((ranked, tokens))
}

async fn rerank(State(app): AppState, headers: HeaderMap, body: Body) -> Response {
    handle(
        app,
        "/rerank",
        Flavor::Tei,
        &headers,
        body,
        |request| async move {
            let req: RerankRequest = parse(&request.body)?;
            check_direction(req.truncation_direction.as_deref())?;
            checked_query(&req.query)?;
            let texts = checked_texts(&request.app, req.texts, "texts")?;
            let _permit = request.app.admit(texts.len())?;
            let kept = req.return_text.then(|| texts.clone());
            let (ranked, _) =
                ranked_pairs(&request, req.query, texts, req.truncate.unwrap_or(true)).await?;
            let ranks: Vec<Rank> = ranked
                .into_iter()
                .map(|(index, s)| Rank {
                    index,
                    text: kept.as_ref().map(|t| t[index].clone()),
                    score: if req.raw_scores { s.logit } else { s.score },
                })
                .collect();
            Ok(Json(ranks).into_response())
        },
    )
    .await
}

async fn tokenize(State(app): AppState, headers: HeaderMap, body: Body) -> Response {
    handle(
        app,
        "/tokenize",
        Flavor::Tei,
        &headers,
        body,
        |request| async move {
            let req: TokenizeRequest = parse(&request.body)?;
            let texts = checked_texts(&request.app, req.inputs.into_vec(), "inputs")?;
            let _permit = request.app.admit(texts.len())?;
            let position = request.ready.dense_position(req.model.as_deref())?;
            let role = text_role(req.prompt_name.as_deref())?;
            let model = Arc::clone(&request.ready.engine.dense()[position]);
            let add_special = req.add_special_tokens;
            let tokens = blocking(move || {
                let primary = model.primary();
                let prompt = primary.prompt(role).unwrap_or("");
                texts
                    .iter()
                    .map(|text| {
                        let prompted = format!("{prompt}{text}");
                        let tokens = primary
                            .tokenizer()
                            .tokens(&prompted, add_special)
                            .map_err(tokenize_error)?;
                        Ok(tokens
                            .into_iter()
                            .map(|t| SimpleToken {
                                id: t.id,
                                text: t.text,
                                special: t.special,
                                start: t.offsets.map(|o| o.0),
                                stop: t.offsets.map(|o| o.1),
                            })
                            .collect::<Vec<_>>())
                    })
                    .collect::<Result<Vec<_>, ApiError>>()
            })
            .await?;
            Ok(Json(tokens).into_response())
        },
    )
    .await
}

async fn openai_embeddings(State(app): AppState, headers: HeaderMap, body: Body) -> Response {
    handle(
        app,
        "/v1/embeddings",
        Flavor::OpenAi,
        &headers,
        body,
        |request| async move {
            let req: EmbeddingsRequest = parse(&request.body)?;
            let texts = match req.input {
                OpenAiInput::Texts(texts) => texts.into_vec(),
                OpenAiInput::Tokens(_) => return Err(ApiError::validation(
                    "`input` must be a string or a list of strings: token ids are not accepted \
                     (the server tokenises, so the vectors match the run's)",
                )
                .at("input")),
            };
            let base64 = match req.encoding_format.as_deref() {
                None | Some("float") => false,
                Some("base64") => true,
                Some(other) => {
                    return Err(ApiError::validation(format!(
                        "encoding_format {other:?} is not one of \"float\", \"base64\""
                    ))
                    .at("encoding_format"))
                }
            };
            let texts = checked_texts(&request.app, texts, "input")?;
            let position = request.ready.dense_position(req.model.as_deref())?;
            let identity = request.ready.engine.dense()[position]
                .primary()
                .identity()
                .clone();
            if let Some(dimensions) = req.dimensions.filter(|d| *d != identity.dim) {
                return Err(ApiError::validation(format!(
                "dimensions {dimensions} is not available: {} gives {}-dimensional vectors only",
                identity.name, identity.dim
            ))
                .at("dimensions"));
            }
            let role = text_role(req.prompt_name.as_deref())?;
            let _permit = request.app.admit(texts.len())?;
            let (vectors, tokens) = dense_vectors(
                &request,
                position,
                texts,
                role,
                req.truncate.unwrap_or(true),
            )
            .await?;
            let data = vectors
                .into_iter()
                .enumerate()
                .map(|(index, vector)| EmbeddingItem {
                    object: "embedding",
                    embedding: if base64 {
                        let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                        Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
                    } else {
                        json!(vector)
                    },
                    index,
                })
                .collect();
            Ok(Json(EmbeddingsResponse {
                object: "list",
                data,
                model: req.model.unwrap_or(identity.name),
                usage: Usage::tokens(tokens),
            })
            .into_response())
        },
    )
    .await
}

async fn openai_models(State(app): AppState, headers: HeaderMap) -> Response {
    handle(
        app,
        "/v1/models",
        Flavor::OpenAi,
        &headers,
        Ok(Bytes::new()),
        |request| async move {
            let data: Vec<Value> = request
                .ready
                .engine
                .identities()
                .iter()
                .map(|identity| {
                    json!({
                        "id": identity.name,
                        "object": "model",
                        "created": 0,
                        "owned_by": crate::TOOL_NAME,
                        "root": identity.model,
                        "role": identity.role,
                    })
                })
                .collect();
            Ok(Json(json!({"object": "list", "data": data})).into_response())
        },
    )
    .await
}

async fn cohere_rerank(State(app): AppState, headers: HeaderMap, body: Body) -> Response {
    handle(
        app,
        "/v1/rerank",
        Flavor::OpenAi,
        &headers,
        body,
        |request| async move {
            let req: CohereRerankRequest = parse(&request.body)?;
            checked_query(&req.query)?;
            let texts: Vec<String> = req.documents.into_iter().map(Document::into_text).collect();
            let texts = checked_texts(&request.app, texts, "documents")?;
            let _permit = request.app.admit(texts.len())?;
            let kept = req.return_documents.then(|| texts.clone());
            let (ranked, tokens) =
                ranked_pairs(&request, req.query, texts, req.truncate.unwrap_or(true)).await?;
            let mut results: Vec<CohereResult> = ranked
                .into_iter()
                .map(|(index, s)| CohereResult {
                    index,
                    relevance_score: s.score,
                    document: kept.as_ref().map(|t| DocumentText {
                        text: t[index].clone(),
                    }),
                })
                .collect();
            results.truncate(req.top_n.unwrap_or(usize::MAX));
            let model = request
                .ready
                .engine
                .cross_encoder()
                .map(|m| m.primary().identity().model.clone())
                .unwrap_or_default();
            Ok(Json(CohereRerankResponse {
                id: request.id.clone(),
                object: "rerank",
                model: req.model.unwrap_or(model),
                results,
                usage: Usage::tokens(tokens),
            })
            .into_response())
        },
    )
    .await
}

async fn query(State(app): AppState, headers: HeaderMap, body: Body) -> Response {
    handle(
        app,
        "/v1/query",
        Flavor::OpenAi,
        &headers,
        body,
        |request| async move {
            let req: QueryRequest = parse(&request.body)?;
            checked_query(&req.query)?;
            let _permit = request.app.admit(1)?;
            let truncate = req.truncate.unwrap_or(true);
            let dense = (0..request.ready.engine.dense().len()).map(|position| {
                dense_vectors(
                    &request,
                    position,
                    vec![req.query.clone()],
                    TextRole::Query,
                    truncate,
                )
            });
            let sparse = async {
                match request.ready.engine.sparse() {
                    Some(_) => sparse_vectors(&request, vec![req.query.clone()], truncate)
                        .await
                        .map(Some),
                    None => Ok(None),
                }
            };
            let (dense, sparse) = tokio::join!(futures_util::future::join_all(dense), sparse);
            let mut tokens = 0;
            let mut dense_vectors_kept = Vec::new();
            for (position, result) in dense.into_iter().enumerate() {
                let (mut vectors, used) = result?;
                tokens += used;
                let name = request.ready.engine.dense()[position]
                    .primary()
                    .identity()
                    .name
                    .clone();
                dense_vectors_kept.push((name, vectors.pop().unwrap_or_default()));
            }
            let sparse = sparse?;
            let sparse_name = request.app.config.sparse.name.clone();
            let sparse_vector = match sparse {
                Some((mut vectors, used)) => {
                    tokens += used;
                    vectors.pop()
                }
                None => None,
            };
            // The vectors exactly as `query_vectors.jsonl` writes them (one serialiser for both).
            let mut refs: Vec<(&str, VectorRef<'_>)> = dense_vectors_kept
                .iter()
                .map(|(name, v)| (name.as_str(), VectorRef::Dense(v)))
                .collect();
            if let Some(vector) = &sparse_vector {
                refs.push((sparse_name.as_str(), VectorRef::Sparse(vector)));
            }
            let limit = req.limit.unwrap_or(request.app.config.rerank.top_k).max(1);
            let (chosen, note) = request.app.fusion_for(req.collection.as_deref())?;
            let lists: Vec<(String, VectorRef<'_>)> = refs
                .iter()
                .map(|(name, vector)| (name.to_string(), *vector))
                .collect();
            let (qdrant, mut fusion) = query_body(
                &chosen,
                &lists,
                sparse_vector.is_some(),
                request.app.config.fusion.depth,
                limit,
            );
            if let Some(note) = note {
                fusion.exact = false;
                fusion.note = Some(note);
            }
            Ok(Json(QueryResponse {
                query_sha256: hex::encode(Sha256::digest(req.query.as_bytes())),
                vector: NamedVectors(refs.clone()),
                qdrant,
                fusion,
                usage: Usage::tokens(tokens),
            })
            .into_response())
        },
    )
    .await
}

async fn health(State(app): AppState) -> Response {
    let started = Instant::now();
    let response = if app.ready().is_some() {
        StatusCode::OK.into_response()
    } else {
        not_ready().into_response_as(Flavor::Tei)
    };
    app.metrics
        .observe_request("/health", response.status().as_u16(), started.elapsed());
    response
}

async fn metrics(State(app): AppState) -> Response {
    let text = app.metrics.render(app.in_flight(), app.ready().is_some());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn info_route(State(app): AppState, headers: HeaderMap) -> Response {
    handle(
        app,
        "/info",
        Flavor::Tei,
        &headers,
        Ok(Bytes::new()),
        |request| async move {
            let engine = &request.ready.engine;
            let first = engine.dense()[0].primary().identity();
            let models: Vec<Value> = engine
                .identities()
                .iter()
                .map(|m| {
                    json!({
                        "name": m.name, "role": m.role, "model": m.model, "revision": m.revision,
                        "architecture": m.architecture, "dim": m.dim, "max_length": m.max_length,
                        "pooling": m.pooling, "normalize": m.normalize,
                        "query_prompt": m.query_prompt, "document_prompt": m.document_prompt,
                        "dtype": m.dtype, "device": m.device, "weights_sha256": m.weights_sha256,
                        "tokenizer_sha256": m.tokenizer_sha256,
                    })
                })
                .collect();
            let settings = &request.app.settings;
            Ok(Json(json!({
                "model_id": first.model,
                "model_sha": first.revision,
                "model_dtype": first.dtype,
                "model_type": {"embedding": {"pooling": first.pooling}},
                "max_concurrent_requests": settings.max_concurrent_inputs,
                "max_input_length": first.max_length,
                "max_batch_tokens": settings.max_batch_tokens,
                "max_batch_requests": Value::Null,
                "max_client_batch_size": settings.max_client_batch_size,
                "auto_truncate": true,
                "tokenization_workers": tokio::runtime::Handle::current().metrics().num_workers(),
                "version": crate::TOOL_VERSION,
                "sha": option_env!("EMBED_COLLECTIONS_GIT_COMMIT"),
                "docker_label": Value::Null,
                "models": models,
            }))
            .into_response())
        },
    )
    .await
}

impl App {
    /// Takes `inputs` permits or answers 429 at once.
    fn admit(&self, inputs: usize) -> Result<OwnedSemaphorePermit, ApiError> {
        let count = u32::try_from(inputs).unwrap_or(u32::MAX);
        Arc::clone(&self.permits)
            .try_acquire_many_owned(count)
            .map_err(|_| {
                ApiError::new(
                    Kind::Overloaded,
                    format!(
                        "the server holds serve.max_concurrent_inputs ({}) inputs; retry later",
                        self.settings.max_concurrent_inputs
                    ),
                )
            })
    }
}
