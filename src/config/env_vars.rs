//! Every environment variable the tool reads. Declared once here; docs/configuration.md lists them.

/// Prefix shared by all variables; an unknown variable with it is an error (typo guard).
pub const PREFIX: &str = "EMBED_COLLECTIONS_";
/// Generic variables, one per setting: `EMBED_COLLECTIONS__SECTION__KEY`.
pub const KEYED_PREFIX: &str = "EMBED_COLLECTIONS__";
/// `input.root`.
pub const INPUT: &str = "EMBED_COLLECTIONS_INPUT";
/// `output.dir`.
pub const OUTPUT: &str = "EMBED_COLLECTIONS_OUTPUT";
/// `input.collections`, comma-separated.
pub const COLLECTIONS: &str = "EMBED_COLLECTIONS_COLLECTIONS";
/// `sparse.enabled` (`1`/`0`, `true`/`false`, `yes`/`no`, `on`/`off`).
pub const SPARSE: &str = "EMBED_COLLECTIONS_SPARSE";
/// `rerank.enabled`.
pub const RERANK: &str = "EMBED_COLLECTIONS_RERANK";
/// `gpu.devices`.
pub const DEVICE: &str = "EMBED_COLLECTIONS_DEVICE";
/// `models.dir`; also read by `scripts/fetch-models.sh`.
pub const MODELS_DIR: &str = "EMBED_COLLECTIONS_MODELS_DIR";
/// `telemetry.log_format`.
pub const LOG_FORMAT: &str = "EMBED_COLLECTIONS_LOG_FORMAT";
/// `shard.spec`: `I/N`, `auto` or `auto/N`.
pub const SHARD: &str = "EMBED_COLLECTIONS_SHARD";
/// `shard.split_bytes`.
pub const SHARD_SPLIT_BYTES: &str = "EMBED_COLLECTIONS_SHARD_SPLIT_BYTES";

/// Variables of the repository's scripts and build (`build.rs` reads the git commit from
/// `EMBED_COLLECTIONS_GIT_COMMIT` where there is no `.git`; the ones it sets for the compiler,
/// which cargo also puts in the environment of what `cargo test` and `cargo run` start) and
/// the INT8 kernel override (`EMBED_COLLECTIONS_INT8_KERNEL=portable`, to compare or test the
/// fallback), not settings: the typo guard lets them pass.
pub const SCRIPTS: [&str; 9] = [
    "EMBED_COLLECTIONS_BIN",
    "EMBED_COLLECTIONS_PYTHON",
    "EMBED_COLLECTIONS_VENV",
    "EMBED_COLLECTIONS_CUDA_CACHE",
    "EMBED_COLLECTIONS_GIT_COMMIT",
    "EMBED_COLLECTIONS_VERSION_LINE",
    "EMBED_COLLECTIONS_CUDA_TOOLKIT",
    "EMBED_COLLECTIONS_CUDA_COMPUTE_CAP",
    "EMBED_COLLECTIONS_INT8_KERNEL",
];

/// The INT8 kernel override (one of [`SCRIPTS`]).
pub const INT8_KERNEL: &str = "EMBED_COLLECTIONS_INT8_KERNEL";

/// Variables of other tools that the run honours, read through the same snapshot: the Hugging
/// Face hub's cache and offline switch, `NO_COLOR`, and `RUST_LOG` (the log filter).
pub const OTHER_TOOLS: [&str; 5] = [
    "HF_HUB_CACHE",
    "HF_HOME",
    "HF_HUB_OFFLINE",
    "NO_COLOR",
    "RUST_LOG",
];

/// All of the above with the setting each one sets.
pub const ALL: [(&str, &str); 10] = [
    (INPUT, "input.root"),
    (OUTPUT, "output.dir"),
    (COLLECTIONS, "input.collections"),
    (SPARSE, "sparse.enabled"),
    (RERANK, "rerank.enabled"),
    (DEVICE, "gpu.devices"),
    (MODELS_DIR, "models.dir"),
    (LOG_FORMAT, "telemetry.log_format"),
    (SHARD, "shard.spec"),
    (SHARD_SPLIT_BYTES, "shard.split_bytes"),
];
