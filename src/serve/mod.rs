//! `embed-collections serve`: the run's models at query time, over HTTP.
//!
//! One process holds every model of a run configuration (each dense model, SPLADE, the
//! CrossEncoder; [`crate::engine::Engine`]) and answers text-embeddings-inference, OpenAI and
//! Cohere/Jina-style routes plus `/v1/query` ([`routes`]). Start-up binds the address first and
//! answers `/health` with 503 while the models load and warm up, then 200: an orchestrator's
//! readiness probe sees "starting", not "refused".
//!
//! Inputs of concurrent requests share batches ([`batcher`]); admission is one permit per input
//! (`serve.max_concurrent_inputs`), refused with 429 at once when they are taken. SIGTERM or
//! SIGINT stops accepting connections, lets every accepted request finish, then stops the
//! model threads and returns (exit 0).

pub mod batcher;
pub mod error;
pub mod metrics;
pub mod routes;
pub mod wire;

use crate::batching::BatchBudget;
use crate::config::{RunConfig, Secret, ServeConfig};
use crate::engine::{Engine, EngineError};
use crate::models::tokenize::Encoded;
use crate::models::ModelManager;
use batcher::Batcher;
use error::{ApiError, Kind};
use metrics::Metrics;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;
use tokio::sync::Semaphore;
use tracing::{error, info};

/// Why the server could not start or stopped on its own.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot read the API key file {}", path.display())]
    ApiKeyFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the API key file {} is empty", path.display())]
    EmptyApiKey { path: PathBuf },
    #[error("cannot listen on {address}")]
    Bind {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot load the models")]
    Engine(#[from] EngineError),
    #[error("cannot start the model threads or the async runtime")]
    Runtime(#[source] std::io::Error),
    #[error("the models' warm-up failed: {0}")]
    WarmUp(String),
}

/// The shared state of the routes.
pub struct App {
    pub settings: ServeConfig,
    pub config: RunConfig,
    /// sha256 of the API key: requests are compared against it in constant time.
    key_digest: Option<[u8; 32]>,
    ready: OnceLock<Arc<Ready>>,
    permits: Arc<Semaphore>,
    pub metrics: Arc<Metrics>,
    next_id: AtomicU64,
    /// `fusion.method = "auto"`: each collection's chosen fusion, from the run's manifest.
    pub auto_fusions: std::collections::BTreeMap<String, crate::fusion::Fusion>,
}

/// The loaded models and their batchers, set once warm.
pub struct Ready {
    pub engine: Engine,
    pub dense: Vec<Batcher<Vec<f32>>>,
    pub sparse: Option<Batcher<crate::vectors::SparseVector>>,
    pub rerank: Option<Batcher<crate::models::PairScore>>,
}

impl Ready {
    fn close(&self) {
        self.dense.iter().for_each(Batcher::close);
        if let Some(batcher) = &self.sparse {
            batcher.close();
        }
        if let Some(batcher) = &self.rerank {
            batcher.close();
        }
    }
}

impl App {
    fn new(config: RunConfig, key: Option<Secret>) -> Self {
        let settings = config.serve.clone();
        Self {
            permits: Arc::new(Semaphore::new(settings.max_concurrent_inputs)),
            key_digest: key.map(|k| Sha256::digest(k.0.as_bytes()).into()),
            settings,
            config,
            ready: OnceLock::new(),
            metrics: Arc::new(Metrics::default()),
            next_id: AtomicU64::new(1),
            auto_fusions: std::collections::BTreeMap::new(),
        }
    }

    /// The fusion `/v1/query` reproduces for `collection`: the configured one, or with
    /// `fusion.method = "auto"` the collection's choice as the run's manifest records it (the
    /// only collection's when none is named). `Err`: the collection has no recorded choice.
    pub fn fusion_for(
        &self,
        collection: Option<&str>,
    ) -> Result<(crate::fusion::Fusion, Option<String>), ApiError> {
        if self.config.fusion.method != crate::config::FusionMethod::Auto {
            return Ok((self.config.fusion(), None));
        }
        let choice = match collection {
            Some(name) => self.auto_fusions.get(name).ok_or_else(|| {
                ApiError::new(
                    Kind::NotFound,
                    format!(
                        "fusion.method is auto and the run's manifest in {} records no choice for collection {name:?}",
                        self.config.output.dir.display()
                    ),
                )
            })?,
            None if self.auto_fusions.len() == 1 => {
                self.auto_fusions.values().next().ok_or_else(|| {
                    ApiError::new(Kind::NotFound, "no recorded fusion choice")
                })?
            }
            None => {
                return Ok((
                    self.config.fusion(),
                    Some(format!(
                        "fusion.method is auto and the query names no collection (of {} with a recorded choice): this is the baseline, RRF; name the collection for its choice",
                        self.auto_fusions.len()
                    )),
                ))
            }
        };
        Ok((choice.clone(), None))
    }

    pub fn ready(&self) -> Option<Arc<Ready>> {
        self.ready.get().cloned()
    }

    /// Inputs accepted and not answered yet.
    pub fn in_flight(&self) -> usize {
        self.settings
            .max_concurrent_inputs
            .saturating_sub(self.permits.available_permits())
    }

    fn next_request_id(&self) -> String {
        format!("req-{:08x}", self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    /// `Authorization: Bearer <key>` when a key is set. Both sides are hashed first, so the
    /// comparison takes the same time whatever the token's length and content.
    fn check_key(&self, headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
        let Some(expected) = &self.key_digest else {
            return Ok(());
        };
        let given = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|token| -> [u8; 32] { Sha256::digest(token.trim().as_bytes()).into() });
        let matches = given.is_some_and(|digest| {
            digest
                .iter()
                .zip(expected)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
        });
        if matches {
            Ok(())
        } else {
            Err(ApiError::new(
                Kind::Unauthorized,
                "missing or wrong API key (send Authorization: Bearer <key>)",
            ))
        }
    }
}

/// Reads `serve.api_key` or the file `serve.api_key_file` names (trimmed).
fn api_key(settings: &ServeConfig) -> Result<Option<Secret>, ServeError> {
    if let Some(key) = &settings.api_key {
        return Ok(Some(key.clone()));
    }
    let Some(path) = &settings.api_key_file else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path).map_err(|source| ServeError::ApiKeyFile {
        path: path.clone(),
        source,
    })?;
    let key = text.trim();
    if key.is_empty() {
        return Err(ServeError::EmptyApiKey { path: path.clone() });
    }
    Ok(Some(Secret(key.to_string())))
}

/// Serves until SIGTERM or SIGINT (then returns `Ok`), or until loading the models fails.
pub fn serve(config: RunConfig, manager: ModelManager) -> Result<(), ServeError> {
    let key = api_key(&config.serve)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("serve")
        .build()
        .map_err(ServeError::Runtime)?;
    runtime.block_on(run(config, manager, key))
}

async fn run(
    config: RunConfig,
    manager: ModelManager,
    key: Option<Secret>,
) -> Result<(), ServeError> {
    let address = config.serve.listen.clone();
    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .map_err(|source| ServeError::Bind {
            address: address.clone(),
            source,
        })?;
    let local = listener
        .local_addr()
        .map_or_else(|_| address.clone(), |a| a.to_string());
    info!(address = %local, auth = key.is_some(), "listening; loading the models (GET /health answers 503 until they are ready)");
    let mut app = App::new(config, key);
    app.auto_fusions = auto_fusions(&app.config);
    let app = Arc::new(app);
    let router = routes::router(Arc::clone(&app)).layer(axum::extract::DefaultBodyLimit::max(
        usize::try_from(app.settings.payload_limit.0).unwrap_or(usize::MAX),
    ));
    let router = match cors(&app.settings.cors_origins) {
        Some(layer) => router.layer(layer),
        None => router,
    };

    let (failed_tx, failed_rx) = tokio::sync::oneshot::channel::<ServeError>();
    let loader = {
        let app = Arc::clone(&app);
        let manager = manager.clone();
        tokio::spawn(async move {
            match load(&app, manager).await {
                Ok(ready) => {
                    let _ = app.ready.set(ready);
                    info!(address = %local, "ready");
                }
                Err(err) => {
                    let _ = failed_tx.send(err);
                }
            }
        })
    };
    let failure = Arc::new(std::sync::Mutex::new(None));
    let shutdown = {
        let failure = Arc::clone(&failure);
        async move {
            tokio::select! {
                signal = stop_signal() => info!(signal, "stopping: no new connections; finishing the accepted requests"),
                Ok(err) = failed_rx => {
                    error!("{err}");
                    *failure.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(err);
                }
            }
        }
    };
    let served = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await;
    loader.abort();
    if let Some(ready) = app.ready() {
        ready.close();
    }
    if let Some(err) = failure
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
    {
        return Err(err);
    }
    served.map_err(ServeError::Runtime)?;
    info!("stopped");
    Ok(())
}

/// The first SIGTERM or SIGINT.
async fn stop_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            },
            _ => {
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}

fn cors(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let origins: Vec<axum::http::HeaderValue> =
        origins.iter().filter_map(|o| o.parse().ok()).collect();
    Some(
        tower_http::cors::CorsLayer::new()
            .allow_origin(origins)
            .allow_methods([axum::http::Method::GET, axum::http::Method::POST])
            .allow_headers([
                axum::http::header::AUTHORIZATION,
                axum::http::header::CONTENT_TYPE,
            ]),
    )
}

/// Loads every model, starts one batcher per model and runs one input through each.
async fn load(app: &App, manager: ModelManager) -> Result<Arc<Ready>, ServeError> {
    let started = Instant::now();
    let config = app.config.clone();
    let engine = tokio::task::spawn_blocking(move || Engine::load(&config, &manager))
        .await
        .map_err(|err| ServeError::WarmUp(err.to_string()))??;
    let max_tokens = app.settings.max_batch_tokens;
    let budget = |max_items| BatchBudget {
        max_tokens,
        max_items,
    };
    let dense_budget = budget(app.config.dense.max_batch_size);
    let metrics = &app.metrics;
    let mut dense = Vec::new();
    for model in engine.dense() {
        let label = model.primary().identity().name.clone();
        dense.push(
            Batcher::start(
                label,
                Arc::clone(model),
                dense_budget,
                max_tokens,
                Arc::clone(metrics),
            )
            .map_err(ServeError::Runtime)?,
        );
    }
    let sparse = match engine.sparse() {
        Some(model) => Some(
            Batcher::start(
                app.config.sparse.name.clone(),
                Arc::clone(model),
                dense_budget,
                max_tokens,
                Arc::clone(metrics),
            )
            .map_err(ServeError::Runtime)?,
        ),
        None => None,
    };
    let rerank = match engine.cross_encoder() {
        Some(model) => Some(
            Batcher::start(
                "rerank".to_string(),
                Arc::clone(model),
                budget(app.config.dense.max_batch_size),
                max_tokens,
                Arc::clone(metrics),
            )
            .map_err(ServeError::Runtime)?,
        ),
        None => None,
    };
    let ready = Ready {
        engine,
        dense,
        sparse,
        rerank,
    };
    warm_up(&ready).await?;
    info!(
        models = ready.engine.identities().len(),
        seconds = format!("{:.1}", started.elapsed().as_secs_f64()),
        "models loaded and warmed up"
    );
    Ok(Arc::new(ready))
}

/// One short input through every model, so the first request does not pay for lazy set-up
/// (thread pools, kernel selection, first allocations).
async fn warm_up(ready: &Ready) -> Result<(), ServeError> {
    let fail = |err: String| ServeError::WarmUp(err);
    const TEXT: &str = "warm-up";
    for (model, batcher) in ready.engine.dense().iter().zip(&ready.dense) {
        let encodings = model
            .primary()
            .tokenize(&[TEXT], None)
            .map_err(|e| fail(e.to_string()))?;
        batcher
            .submit(encodings)
            .await
            .map_err(|e| fail(e.to_string()))?;
    }
    if let (Some(model), Some(batcher)) = (ready.engine.sparse(), &ready.sparse) {
        let encodings: Vec<Encoded> = model
            .primary()
            .tokenizer()
            .encode_batch(&[TEXT])
            .map_err(|e| fail(e.to_string()))?;
        batcher
            .submit(encodings)
            .await
            .map_err(|e| fail(e.to_string()))?;
    }
    if let (Some(model), Some(batcher)) = (ready.engine.cross_encoder(), &ready.rerank) {
        let encodings = model
            .primary()
            .tokenizer()
            .encode_pairs(&[(TEXT, TEXT)])
            .map_err(|e| fail(e.to_string()))?;
        batcher
            .submit(encodings)
            .await
            .map_err(|e| fail(e.to_string()))?;
    }
    Ok(())
}

/// `fusion.method = "auto"`: the fusion each collection of the run in `output.dir` chose (its
/// manifest's `ranking.auto.name`, looked up in the menu this configuration makes). Nothing
/// when the method is fixed, or the manifest is missing or unreadable (logged: `/v1/query`
/// then answers with the baseline, or 404 for a named collection).
fn auto_fusions(config: &RunConfig) -> std::collections::BTreeMap<String, crate::fusion::Fusion> {
    let mut choices = std::collections::BTreeMap::new();
    if config.fusion.method != crate::config::FusionMethod::Auto {
        return choices;
    }
    let path = config.output.dir.join("manifest.json");
    let manifest: serde_json::Value = match std::fs::read(&path)
        .map_err(|err| err.to_string())
        .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|err| err.to_string()))
    {
        Ok(manifest) => manifest,
        Err(err) => {
            tracing::warn!(path = %path.display(), "fusion.method is auto but the run's manifest cannot be read ({err}): /v1/query answers with the baseline fusion");
            return choices;
        }
    };
    let menu = crate::fusion::auto::menu(&config.fusion(), config.sparse.enabled);
    let collections = manifest["collections"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for collection in collections {
        let (Some(name), Some(chosen)) = (
            collection["name"].as_str(),
            collection["ranking"]["auto"]["name"].as_str(),
        ) else {
            continue;
        };
        if let Some(entry) = menu.iter().find(|entry| entry.name == chosen) {
            info!(
                collection = name,
                fusion = chosen,
                "fusion auto: the run's choice"
            );
            choices.insert(name.to_string(), entry.fusion.clone());
        }
    }
    choices
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{resolve, Environment, Overrides};
    use crate::fusion::Method;

    fn app(out: &std::path::Path, method: &str) -> App {
        let flags = Overrides {
            input: Some(".".into()),
            output: Some(out.to_path_buf()),
            set: vec![format!("fusion.method=\"{method}\"")],
            ..Overrides::default()
        };
        let config = resolve(
            None,
            &Environment::from_pairs(Vec::<(String, String)>::new()),
            &flags,
        )
        .unwrap();
        let mut app = App::new(config, None);
        app.auto_fusions = auto_fusions(&app.config);
        app
    }

    #[test]
    fn query_follows_each_collections_auto_choice() {
        let out = tempfile::tempdir().unwrap();
        let manifest = serde_json::json!({"collections": [
            {"name": "docs", "ranking": {"auto": {"name": "sparse"}}},
            {"name": "wiki", "ranking": {"auto": {"name": "dbsf"}}},
            {"name": "old", "ranking": {"fusion": "rrf k=60"}},
        ]});
        std::fs::write(out.path().join("manifest.json"), manifest.to_string()).unwrap();
        let app = app(out.path(), "auto");
        let method = |name: Option<&str>| app.fusion_for(name).map(|(f, note)| (f.method, note));
        assert_eq!(method(Some("docs")).unwrap(), (Method::Sparse, None));
        assert_eq!(method(Some("wiki")).unwrap().0, Method::Dbsf);
        let unknown = app.fusion_for(Some("old")).unwrap_err();
        assert_eq!(unknown.kind.status(), axum::http::StatusCode::NOT_FOUND);
        // Two choices and no collection named: the baseline, said so.
        let (fusion, note) = app.fusion_for(None).unwrap();
        assert_eq!(fusion.method, Method::Rrf);
        assert!(note.unwrap().contains("name the collection"));

        // A fixed method ignores the manifest.
        let fixed = self::app(out.path(), "dbsf");
        assert!(fixed.auto_fusions.is_empty());
        assert_eq!(
            fixed.fusion_for(Some("docs")).unwrap().0.method,
            Method::Dbsf
        );
    }

    #[test]
    fn one_recorded_choice_needs_no_collection_and_no_manifest_gives_the_baseline() {
        let out = tempfile::tempdir().unwrap();
        let none = app(out.path(), "auto");
        assert!(none.auto_fusions.is_empty());
        assert_eq!(
            none.fusion_for(Some("docs")).unwrap_err().kind.status(),
            axum::http::StatusCode::NOT_FOUND
        );
        let manifest = serde_json::json!({"collections": [
            {"name": "docs", "ranking": {"auto": {"name": "convex:0.3"}}},
        ]});
        std::fs::write(out.path().join("manifest.json"), manifest.to_string()).unwrap();
        let one = app(out.path(), "auto");
        let (fusion, note) = one.fusion_for(None).unwrap();
        assert_eq!((fusion.method, note), (Method::Convex, None));
        assert_eq!(fusion.dense_weights, [0.3]);
    }
}
