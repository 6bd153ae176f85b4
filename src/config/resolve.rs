//! One resolver merges the layers — built-in defaults < config file < environment < flags — into
//! the effective [`RunConfig`], and records in [`Provenance`] where each value came from.
//!
//! Nothing here reads the process environment directly: callers pass an [`Environment`]
//! snapshot, so tests can layer settings without touching global state.

use super::aliases::{self, AliasRole};
use super::env_vars;
use super::environment::Environment;
use super::error::ConfigError;
use super::file::{keyed_value, load_file, FileLayer, KeyedSetting};
use super::keys;
use super::provenance::{Provenance, Source};
use super::run_config::*;
use super::values::{
    ByteSize, DeviceSpec, FusionMethod, LogFormat, Precision, ProgressMode, RerankBudget,
    ValueError,
};
use crate::input::InputFormat;
use crate::shard::ShardRequest;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Command-line flags that override settings (the highest layer).
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub input: Option<PathBuf>,
    pub output: Option<PathBuf>,
    pub collections: Option<Vec<String>>,
    pub no_sparse: bool,
    pub no_rerank: bool,
    pub device: Option<DeviceSpec>,
    pub models_dir: Option<PathBuf>,
    pub log_format: Option<LogFormat>,
    /// `--window-chunks`.
    pub window_chunks: Option<usize>,
    /// `--reuse`.
    pub reuse: Option<PathBuf>,
    /// `--shard`.
    pub shard: Option<ShardRequest>,
    /// `--shard-split-bytes`.
    pub shard_split_bytes: Option<ByteSize>,
    /// `--quiet`: no progress display.
    pub quiet: bool,
    /// `--precision`.
    pub precision: Option<Precision>,
    /// `--memory-ceiling`.
    pub memory_ceiling: Option<ByteSize>,
    /// `--candidates`.
    pub candidates: Option<usize>,
    /// `--queries`.
    pub queries: Option<PathBuf>,
    /// `--qrels`.
    pub qrels: Option<PathBuf>,
    /// `--listen` (`serve`).
    pub listen: Option<String>,
    /// `--api-key-file` (`serve`).
    pub api_key_file: Option<PathBuf>,
    /// `--set section.key=value`, in command-line order (a later one for the same key wins).
    pub set: Vec<String>,
}

/// Picks the highest layer present for each key and remembers which one it was.
struct Layers {
    provenance: BTreeMap<String, Source>,
    /// The config file, if one was given, and its settings.
    file: Option<PathBuf>,
    file_layer: FileLayer,
    /// Directory that relative paths in the file are resolved against.
    file_dir: PathBuf,
    /// `EMBED_COLLECTIONS__SECTION__KEY` variables by key.
    env_keyed: BTreeMap<String, KeyedSetting>,
    /// `--set` assignments by key.
    set_keyed: BTreeMap<String, KeyedSetting>,
}

impl Layers {
    /// The effective value of `key`: the flag (dedicated or `--set`), else the environment
    /// (dedicated variable or `EMBED_COLLECTIONS__SECTION__KEY`), else the file, else the
    /// default. A key given by both forms in one layer is an error, not a silent choice.
    fn pick<T: serde::de::DeserializeOwned>(
        &mut self,
        key: &str,
        default: T,
        env: Option<(&'static str, T)>,
        flag: Option<(&'static str, T)>,
    ) -> Result<T, ConfigError> {
        let set = match self.set_keyed.get(key) {
            Some(setting) => Some(setting.typed::<T>()?),
            None => None,
        };
        let env_generic = match self.env_keyed.get(key) {
            Some(setting) => Some((setting.origin.clone(), setting.typed::<T>()?)),
            None => None,
        };
        let twice = |first: String, second: String| ConfigError::Twice {
            key: key.to_string(),
            first,
            second,
        };
        let flag = match (flag, set) {
            (Some((flag, _)), Some(_)) => return Err(twice(flag.to_string(), "--set".to_string())),
            (Some((flag, value)), None) => Some((Source::Flag(flag), value)),
            (None, Some(value)) => Some((Source::Flag("--set"), value)),
            (None, None) => None,
        };
        let env = match (env, env_generic) {
            (Some((var, _)), Some((generic, _))) => {
                let generic = match generic {
                    Source::Env(name) => name,
                    other => other.to_string(),
                };
                return Err(twice(var.to_string(), generic));
            }
            (Some((var, value)), None) => Some((Source::Env(var.to_string()), value)),
            (None, Some((origin, value))) => Some((origin, value)),
            (None, None) => None,
        };
        let from_file = match &self.file {
            Some(path) => self
                .file_layer
                .typed::<T>(key, path, &self.file_dir)?
                .map(|value| (value, Source::File(path.clone()))),
            None => None,
        };
        let (value, source) = if let Some(flagged) = flag {
            (flagged.1, flagged.0)
        } else if let Some(from_env) = env {
            (from_env.1, from_env.0)
        } else if let Some(in_file) = from_file {
            in_file
        } else {
            (default, Source::Default)
        };
        self.provenance.insert(key.to_string(), source);
        Ok(value)
    }

    /// [`Self::pick`] with the default the key table declares (`` `8192` ``, `` `12GiB` ``):
    /// the one place a literal default is written, read as the setting's type.
    fn declared<T: serde::de::DeserializeOwned>(
        &mut self,
        key: &str,
        env: Option<(&'static str, T)>,
        flag: Option<(&'static str, T)>,
    ) -> Result<T, ConfigError> {
        let declared = keys::find(key).and_then(keys::literal_default);
        let default = declared
            .ok_or_else(|| "the key table declares no literal default".to_string())
            .and_then(|text| keyed_value(key, text)?.typed::<T>())
            .map_err(|message| ConfigError::Invalid {
                key: key.to_string(),
                origin: Source::Default,
                message,
            })?;
        self.pick(key, default, env, flag)
    }

    fn source(&self, key: &str) -> Source {
        self.provenance.get(key).cloned().unwrap_or(Source::Default)
    }

    fn invalid(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            key: key.to_string(),
            origin: self.source(key),
            message: message.into(),
        }
    }
}

/// The settings of the commands that load models but read no collection and write no output
/// directory (`serve`, `embed-queries`): `input.root` and `output.dir` may be absent (they
/// are set to `.` when they are, and nothing reads them).
pub fn resolve_for_models(
    config_file: Option<&Path>,
    env: &Environment,
    flags: &Overrides,
) -> Result<RunConfig, ConfigError> {
    let mut flags = flags.clone();
    let file = config_file.map(load_file).transpose()?;
    let has = |from_file: bool, var: &str| from_file || env.raw_value(var).is_some();
    if flags.input.is_none()
        && !has(
            file.as_ref().is_some_and(|f| f.has("input.root")),
            env_vars::INPUT,
        )
    {
        flags.input = Some(PathBuf::from("."));
    }
    if flags.output.is_none()
        && !has(
            file.as_ref().is_some_and(|f| f.has("output.dir")),
            env_vars::OUTPUT,
        )
    {
        flags.output = Some(PathBuf::from("."));
    }
    resolve_layers(config_file, file.unwrap_or_default(), env, &flags)
}

/// The `--set section.key=value` assignments: key → value (a later one for a key wins).
fn set_assignments(set: &[String]) -> Result<BTreeMap<String, KeyedSetting>, ConfigError> {
    let mut keyed = BTreeMap::new();
    for assignment in set {
        let error = |message: String| ConfigError::Keyed {
            origin: Source::Flag("--set"),
            setting: assignment.clone(),
            message,
        };
        let (key, raw) = assignment
            .split_once('=')
            .ok_or_else(|| error("expected section.key=value".to_string()))?;
        let key = key.trim();
        let text = keyed_value(key, raw.trim()).map_err(error)?;
        keyed.insert(
            key.to_string(),
            KeyedSetting {
                origin: Source::Flag("--set"),
                written: assignment.clone(),
                text,
            },
        );
    }
    Ok(keyed)
}

/// Resolves the effective configuration from all layers.
pub fn resolve(
    config_file: Option<&Path>,
    env: &Environment,
    flags: &Overrides,
) -> Result<RunConfig, ConfigError> {
    let file = match config_file {
        Some(path) => load_file(path)?,
        None => FileLayer::default(),
    };
    resolve_layers(config_file, file, env, flags)
}

/// Resolves from an already parsed file (or [`FileLayer::default`] for none).
pub fn resolve_layers(
    config_file: Option<&Path>,
    file: FileLayer,
    env: &Environment,
    flags: &Overrides,
) -> Result<RunConfig, ConfigError> {
    if let Some(var) = env.not_unicode.first() {
        return Err(ConfigError::EnvNotUnicode { var: var.clone() });
    }
    if let Some(var) = env.unknown_vars() {
        let known: Vec<&str> = env_vars::ALL.iter().map(|(var, _)| *var).collect();
        return Err(ConfigError::UnknownEnv {
            var,
            known: known.join(", "),
        });
    }
    let mut layers = Layers {
        env_keyed: env.keyed()?,
        set_keyed: set_assignments(&flags.set)?,
        provenance: BTreeMap::new(),
        file: config_file.map(Path::to_path_buf),
        file_layer: file,
        file_dir: config_file
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_default(),
    };

    // [input]
    let root = layers.pick(
        "input.root",
        None,
        env.path(env_vars::INPUT).map(|(v, p)| (v, Some(p))),
        flags.input.clone().map(|p| ("--input", Some(p))),
    )?;
    let root = root.ok_or(ConfigError::Missing {
        key: "input.root",
        hint: "set [input] root in the config file, EMBED_COLLECTIONS_INPUT, or --input",
    })?;
    let collections = layers.pick(
        "input.collections",
        None,
        env.list(env_vars::COLLECTIONS).map(|(v, l)| (v, Some(l))),
        flags
            .collections
            .clone()
            .map(|l| ("--collections", Some(l))),
    )?;
    let formats: Vec<InputFormat> = layers.declared("input.formats", None, None)?;
    let on_invalid = layers.declared("input.on_invalid", None, None)?;

    let window_chunks: usize = layers.declared(
        "input.window_chunks",
        None,
        flags.window_chunks.map(|n| ("--window-chunks", n)),
    )?;
    if window_chunks == 0 {
        return Err(layers.invalid(
            "input.window_chunks",
            "must be at least 1 (chunks per streaming window)",
        ));
    }

    // [shard]
    let shard_request = layers.pick(
        "shard.spec",
        None,
        env.parsed(env_vars::SHARD, |value| {
            value
                .parse::<ShardRequest>()
                .map_err(|err| ValueError(err.to_string()))
        })?
        .map(|(var, request)| (var, Some(request))),
        flags.shard.map(|request| ("--shard", Some(request))),
    )?;
    let shard_spec = match shard_request {
        Some(request) => Some(
            request
                .resolve(|name| env.scheduler_var(name))
                .map_err(|err| layers.invalid("shard.spec", err.to_string()))?,
        ),
        None => None,
    };
    let split_bytes: ByteSize = layers.declared(
        "shard.split_bytes",
        env.value::<ByteSize>(env_vars::SHARD_SPLIT_BYTES)?,
        flags.shard_split_bytes.map(|b| ("--shard-split-bytes", b)),
    )?;

    // [output]
    let out_dir = layers.pick(
        "output.dir",
        None,
        env.path(env_vars::OUTPUT).map(|(v, p)| (v, Some(p))),
        flags.output.clone().map(|p| ("--output", Some(p))),
    )?;
    let out_dir = out_dir.ok_or(ConfigError::Missing {
        key: "output.dir",
        hint: "set [output] dir in the config file, EMBED_COLLECTIONS_OUTPUT, or --output",
    })?;
    let include_text = layers.declared("output.include_text", None, None)?;
    let mut output_formats: Vec<crate::config::OutputFormat> =
        layers.declared("output.formats", None, None)?;
    let parquet_dense = layers.declared("output.parquet_dense", None, None)?;
    let reuse = layers.pick(
        "output.reuse",
        None,
        None,
        flags.reuse.clone().map(|p| ("--reuse", Some(p))),
    )?;

    // [models]
    let models_dir = layers.pick(
        "models.dir",
        env.default_models_dir(),
        env.path(env_vars::MODELS_DIR),
        flags.models_dir.clone().map(|p| ("--models-dir", p)),
    )?;

    // [dense]
    let dense_models = layers.pick(
        "dense.models",
        vec![DenseModelEntry::for_model(DEFAULT_DENSE_MODEL)],
        None,
        None,
    )?;
    let dense_models: Vec<DenseModelConfig> = dense_models
        .into_iter()
        .map(|m| {
            let alias = aliases::for_role(&m.model, AliasRole::Dense)
                .map_err(|err| layers.invalid("dense.models", err.to_string()))?;
            // An alias supplies its model card's settings; the config's own win.
            Ok(match alias {
                Some(alias) => DenseModelConfig {
                    name: m.name.unwrap_or_else(|| alias.alias.to_string()),
                    model: alias.hub_id.to_string(),
                    revision: m.revision,
                    max_length: m.max_length.or(Some(alias.max_length)),
                    pooling: m.pooling.or(alias.pooling),
                    normalize: m.normalize.or(alias.normalize),
                    query_prompt: m
                        .query_prompt
                        .or_else(|| alias.query_prompt.map(str::to_string)),
                    document_prompt: m.document_prompt,
                    fusion_weight: m.fusion_weight,
                    expected_dim: Some(alias.dim),
                    precision: m.precision,
                },
                None => DenseModelConfig {
                    name: m.name.unwrap_or_else(|| default_vector_name(&m.model)),
                    model: m.model,
                    revision: m.revision,
                    max_length: m.max_length,
                    pooling: m.pooling,
                    normalize: m.normalize,
                    query_prompt: m.query_prompt,
                    document_prompt: m.document_prompt,
                    fusion_weight: m.fusion_weight,
                    expected_dim: None,
                    precision: m.precision,
                },
            })
        })
        .collect::<Result<_, ConfigError>>()?;
    let batch_tokens: usize = layers.declared("dense.batch_tokens", None, None)?;
    let max_batch_size: usize = layers.declared("dense.max_batch_size", None, None)?;

    // [sparse]
    let sparse_enabled: bool = layers.declared(
        "sparse.enabled",
        env.bool(env_vars::SPARSE)?,
        flags.no_sparse.then_some(("--no-sparse", false)),
    )?;
    let sparse_model: String = layers.declared("sparse.model", None, None)?;
    let sparse_model = match aliases::for_role(&sparse_model, AliasRole::Sparse)
        .map_err(|err| layers.invalid("sparse.model", err.to_string()))?
    {
        Some(alias) => alias.hub_id.to_string(),
        None => sparse_model,
    };
    let sparse_name: String = layers.declared("sparse.name", None, None)?;
    let max_terms = layers.pick("sparse.max_terms", None, None, None)?;
    let fallback = layers.declared("sparse.fallback", None, None)?;
    let sparse_precision = layers.pick("sparse.precision", None, None, None)?;

    // [fusion]
    let method: FusionMethod = layers.declared("fusion.method", None, None)?;
    let normalization = layers.declared("fusion.normalization", None, None)?;
    let rrf_k: f64 = layers.declared("fusion.rrf_k", None, None)?;
    let depth: usize = layers.declared("fusion.depth", None, None)?;
    let dense_weight: f64 = layers.declared("fusion.dense_weight", None, None)?;
    let sparse_weight: f64 = layers.declared("fusion.sparse_weight", None, None)?;

    let retrieval = layers.declared("fusion.retrieval", None, None)?;
    let retrieval_memory: ByteSize = layers.declared("fusion.retrieval_memory", None, None)?;

    // [rerank]
    let rerank_enabled: bool = layers.declared(
        "rerank.enabled",
        env.bool(env_vars::RERANK)?,
        flags.no_rerank.then_some(("--no-rerank", false)),
    )?;
    let rerank_model = layers.pick("rerank.model", DEFAULT_RERANK_MODEL.to_string(), None, None)?;
    let queries = layers.pick(
        "rerank.queries",
        None,
        None,
        flags.queries.clone().map(|p| ("--queries", Some(p))),
    )?;
    let candidates: usize = layers.declared(
        "rerank.candidates",
        None,
        flags.candidates.map(|n| ("--candidates", n)),
    )?;
    let top_k: usize = layers.declared("rerank.top_k", None, None)?;
    let rerank_batch_tokens: usize = layers.declared("rerank.batch_tokens", None, None)?;
    let rerank_max_length = layers.pick("rerank.max_length", None, None, None)?;
    let rerank_alias = aliases::for_role(&rerank_model, AliasRole::Rerank)
        .map_err(|err| layers.invalid("rerank.model", err.to_string()))?;
    let (rerank_model, rerank_max_length) = match rerank_alias {
        Some(alias) => (
            alias.hub_id.to_string(),
            rerank_max_length.or(Some(alias.max_length)),
        ),
        None => (rerank_model, rerank_max_length),
    };
    let probe_queries = layers.pick("rerank.probe_queries", None, None, None)?;
    let rerank_precision = layers.pick("rerank.precision", None, None, None)?;
    let rerank_budget: RerankBudget = layers.declared("rerank.budget", None, None)?;
    let min_candidates: usize = layers.declared("rerank.min_candidates", None, None)?;
    let blend = layers.declared("rerank.blend", None, None)?;
    let blend_weight: f64 = layers.declared("rerank.blend_weight", None, None)?;

    // [eval]
    let qrels = layers.pick(
        "eval.qrels",
        None,
        None,
        flags.qrels.clone().map(|p| ("--qrels", Some(p))),
    )?;

    // [gpu]
    let devices: DeviceSpec = layers.declared(
        "gpu.devices",
        env.value(env_vars::DEVICE)?,
        flags.device.clone().map(|d| ("--device", d)),
    )?;
    let memory_ceiling: ByteSize = layers.declared(
        "gpu.memory_ceiling",
        None,
        flags.memory_ceiling.map(|b| ("--memory-ceiling", b)),
    )?;
    let precision: Precision = layers.declared(
        "gpu.precision",
        None,
        flags.precision.map(|p| ("--precision", p)),
    )?;

    // [telemetry]
    let log_format = layers.declared(
        "telemetry.log_format",
        env.value(env_vars::LOG_FORMAT)?,
        flags.log_format.map(|f| ("--log-format", f)),
    )?;
    let metrics_file = layers.pick("telemetry.metrics_file", None, None, None)?;
    let progress = layers.declared(
        "telemetry.progress",
        None,
        flags.quiet.then_some(("--quiet", ProgressMode::Never)),
    )?;

    // [serve]
    let listen: String = layers.declared(
        "serve.listen",
        None,
        flags.listen.clone().map(|l| ("--listen", l)),
    )?;
    let api_key = layers.pick("serve.api_key", None, None, None)?;
    let api_key_file = layers.pick(
        "serve.api_key_file",
        None,
        None,
        flags
            .api_key_file
            .clone()
            .map(|p| ("--api-key-file", Some(p))),
    )?;
    let serve_batch_tokens: usize = layers.declared("serve.max_batch_tokens", None, None)?;
    let max_client_batch_size: usize =
        layers.declared("serve.max_client_batch_size", None, None)?;
    let max_concurrent_inputs: usize =
        layers.declared("serve.max_concurrent_inputs", None, None)?;
    let payload_limit: ByteSize = layers.declared("serve.payload_limit", None, None)?;
    let request_timeout = layers.declared("serve.request_timeout", None, None)?;
    let cors_origins = layers.pick("serve.cors_origins", Vec::<String>::new(), None, None)?;
    if api_key.is_some() && api_key_file.is_some() {
        return Err(layers.invalid(
            "serve.api_key_file",
            "set either serve.api_key or serve.api_key_file, not both",
        ));
    }
    if listen.parse::<std::net::SocketAddr>().is_err() {
        return Err(layers.invalid(
            "serve.listen",
            format!("{listen:?} is not an address and port such as 127.0.0.1:8080"),
        ));
    }
    for (key, value) in [
        ("serve.max_batch_tokens", serve_batch_tokens),
        ("serve.max_client_batch_size", max_client_batch_size),
        ("serve.max_concurrent_inputs", max_concurrent_inputs),
    ] {
        if value == 0 {
            return Err(layers.invalid(key, "must be greater than 0"));
        }
    }
    if max_client_batch_size > max_concurrent_inputs {
        return Err(layers.invalid(
            "serve.max_client_batch_size",
            format!(
                "{max_client_batch_size} inputs per request can never be accepted with \
                 serve.max_concurrent_inputs = {max_concurrent_inputs}"
            ),
        ));
    }
    if let Some(origin) = cors_origins
        .iter()
        .find(|o| !(o.starts_with("http://") || o.starts_with("https://")) || o.ends_with('/'))
    {
        return Err(layers.invalid(
            "serve.cors_origins",
            format!("{origin:?} is not an origin such as https://search.example.com"),
        ));
    }

    // Values each layer can parse but that make no sense together or at all.
    if formats.is_empty() {
        return Err(layers.invalid("input.formats", "at least one format is needed"));
    }
    if output_formats.is_empty() {
        return Err(layers.invalid("output.formats", "at least one format is needed"));
    }
    // One order whatever the order given: the fingerprint and the manifest compare equal.
    output_formats.sort();
    output_formats.dedup();
    if dense_models.is_empty() {
        return Err(layers.invalid("dense.models", "at least one dense model is needed"));
    }
    for (index, model) in dense_models.iter().enumerate() {
        if model.model.trim().is_empty() {
            return Err(layers.invalid("dense.models", format!("models[{index}].model is empty")));
        }
        if !is_vector_name(&model.name) {
            return Err(layers.invalid(
                "dense.models",
                format!(
                    "models[{index}].name {:?} must be non-empty and use only letters, digits, '-', '_' or '.'",
                    model.name
                ),
            ));
        }
        if dense_models[..index]
            .iter()
            .any(|other| other.name == model.name)
        {
            return Err(layers.invalid(
                "dense.models",
                format!(
                    "vector name {:?} is used twice; give each model a distinct name",
                    model.name
                ),
            ));
        }
        if model.max_length == Some(0) {
            return Err(layers.invalid(
                "dense.models",
                format!("models[{index}].max_length must be > 0"),
            ));
        }
    }
    if dense_models.iter().any(|m| m.name == sparse_name) {
        return Err(layers.invalid(
            "sparse.name",
            format!("{sparse_name:?} is already a dense vector name"),
        ));
    }
    // A Parquet file has one column per vector beside its own columns.
    if output_formats.contains(&crate::config::OutputFormat::Parquet) {
        let reserved = super::values::PARQUET_COLUMNS;
        if let Some(model) = dense_models
            .iter()
            .find(|m| reserved.contains(&m.name.as_str()))
        {
            return Err(layers.invalid(
                "dense.models",
                format!(
                    "the vector name {:?} is a column of the Parquet files (output.formats); name the model otherwise",
                    model.name
                ),
            ));
        }
        if reserved.contains(&sparse_name.as_str()) {
            return Err(layers.invalid(
                "sparse.name",
                format!("{sparse_name:?} is a column of the Parquet files (output.formats)"),
            ));
        }
    }
    for (key, value) in [
        ("dense.batch_tokens", batch_tokens),
        ("dense.max_batch_size", max_batch_size),
        ("fusion.depth", depth),
        ("rerank.candidates", candidates),
        ("rerank.top_k", top_k),
        ("rerank.batch_tokens", rerank_batch_tokens),
    ] {
        if value == 0 {
            return Err(layers.invalid(key, "must be greater than 0"));
        }
    }
    if rerank_max_length.is_some_and(|n| n < 8) {
        return Err(layers.invalid("rerank.max_length", "must be at least 8 tokens"));
    }
    if max_terms == Some(0) {
        return Err(layers.invalid(
            "sparse.max_terms",
            "must be greater than 0 (omit it to keep all terms)",
        ));
    }
    if top_k > candidates {
        return Err(layers.invalid(
            "rerank.top_k",
            format!("top_k ({top_k}) cannot exceed rerank.candidates ({candidates})"),
        ));
    }
    if !(rrf_k.is_finite() && rrf_k > 0.0) {
        return Err(layers.invalid("fusion.rrf_k", "must be a positive number"));
    }
    if method == FusionMethod::Auto && !rerank_enabled {
        return Err(layers.invalid(
            "fusion.method",
            "`auto` judges the fusions with the CrossEncoder: it needs rerank.enabled = true",
        ));
    }
    if !(blend_weight.is_finite() && (0.0..=1.0).contains(&blend_weight)) {
        return Err(layers.invalid("rerank.blend_weight", "must be a number from 0 to 1"));
    }
    for (key, weight) in [
        ("fusion.dense_weight", dense_weight),
        ("fusion.sparse_weight", sparse_weight),
    ] {
        if !(weight.is_finite() && weight >= 0.0) {
            return Err(layers.invalid(key, "must be a finite number ≥ 0"));
        }
    }
    for model in &dense_models {
        if model
            .fusion_weight
            .is_some_and(|weight| !(weight.is_finite() && weight >= 0.0))
        {
            return Err(layers.invalid(
                "dense.models",
                format!("{}: fusion_weight must be a finite number ≥ 0", model.name),
            ));
        }
    }
    if let DeviceSpec::Cuda(ordinals) = &devices {
        if ordinals.is_empty() {
            return Err(layers.invalid("gpu.devices", "no CUDA device listed"));
        }
    }

    Ok(RunConfig {
        config_file: config_file.map(Path::to_path_buf),
        input: InputConfig {
            root,
            collections,
            formats,
            on_invalid,
            window_chunks,
        },
        output: OutputConfig {
            dir: out_dir,
            include_text,
            formats: output_formats,
            parquet_dense,
            reuse,
        },
        models: ModelsConfig { dir: models_dir },
        dense: DenseConfig {
            models: dense_models,
            batch_tokens,
            max_batch_size,
        },
        sparse: SparseConfig {
            enabled: sparse_enabled,
            model: sparse_model,
            name: sparse_name,
            max_terms,
            fallback,
            precision: sparse_precision,
        },
        fusion: FusionConfig {
            method,
            normalization,
            rrf_k,
            depth,
            dense_weight,
            sparse_weight,
            retrieval,
            retrieval_memory,
        },
        rerank: RerankingConfig {
            enabled: rerank_enabled,
            model: rerank_model,
            queries,
            candidates,
            top_k,
            batch_tokens: rerank_batch_tokens,
            max_length: rerank_max_length,
            probe_queries,
            precision: rerank_precision,
            budget: rerank_budget,
            min_candidates,
            blend,
            blend_weight,
        },
        eval: EvalConfig { qrels },
        gpu: GpuConfig {
            devices,
            memory_ceiling,
            precision,
        },
        telemetry: TelemetryConfig {
            log_format,
            metrics_file,
            progress,
        },
        shard: ShardConfig {
            spec: shard_spec,
            split_bytes,
        },
        serve: ServeConfig {
            listen,
            api_key,
            api_key_file,
            max_batch_tokens: serve_batch_tokens,
            max_client_batch_size,
            max_concurrent_inputs,
            payload_limit,
            request_timeout,
            cors_origins,
        },
        provenance: Provenance(layers.provenance),
    })
}

/// `sentence-transformers/all-MiniLM-L6-v2` → `all-MiniLM-L6-v2`.
fn default_vector_name(model: &str) -> String {
    model
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(model)
        .to_string()
}

/// Vector names become JSON keys and Qdrant vector names: keep them plain.
fn is_vector_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}
