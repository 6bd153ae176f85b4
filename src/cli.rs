//! The command line. Flags override the environment, which overrides the config file.

use crate::config::{DeviceSpec, LogFormat, Overrides};
use clap::Parser;
use std::path::PathBuf;

const AFTER_HELP: &str = "\
Settings are layered: built-in defaults < config file < environment < flags.
The manifest records where each effective setting came from.

Every setting also takes --set section.key=value (a flag) and
EMBED_COLLECTIONS__SECTION__KEY=value (the environment), e.g. --set rerank.candidates=50 or
EMBED_COLLECTIONS__RERANK__CANDIDATES=50; `embed-collections config` prints the effective
settings with their origins.

Environment:
  EMBED_COLLECTIONS_INPUT        input.root
  EMBED_COLLECTIONS_OUTPUT       output.dir
  EMBED_COLLECTIONS_COLLECTIONS  input.collections (comma-separated)
  EMBED_COLLECTIONS_SPARSE       sparse.enabled (1/0, true/false, yes/no, on/off)
  EMBED_COLLECTIONS_RERANK       rerank.enabled
  EMBED_COLLECTIONS_DEVICE       gpu.devices (auto, cpu, cuda:0,1)
  EMBED_COLLECTIONS_MODELS_DIR   models.dir (where scripts/fetch-models.sh puts models)
  EMBED_COLLECTIONS_LOG_FORMAT   telemetry.log_format (text, json)
  EMBED_COLLECTIONS_SHARD        shard.spec (I/N, auto, auto/N)
  EMBED_COLLECTIONS_SHARD_SPLIT_BYTES  shard.split_bytes (e.g. 64MiB)
  JOB_COMPLETION_INDEX           --shard auto: the shard (Kubernetes Indexed Job)
  SLURM_ARRAY_TASK_ID, _MIN, _STEP, _COUNT  --shard auto: the shard and count (Slurm array)
  HF_HOME, HF_HUB_CACHE          Hugging Face cache location
  HF_HUB_OFFLINE=1               never contact the Hugging Face Hub
  RUST_LOG                       log filter (overrides -v/-q)

Exit codes:
  0  ok
  1  failure (model load/run, output I/O, unexpected)
  2  usage or configuration error (nothing ran), the output directory is in use by
     another run, or --resume found a changed configuration, model or input
  3  input error (a collection could not be read, and nothing else was done)
  4  partial failure (some collections, chunks or queries failed; see manifest.json)
  130 interrupted by SIGINT/SIGTERM at a batch boundary; --resume continues";

/// Embed collections of text chunks into dense and SPLADE vectors, retrieve and rerank for
/// queries, and write Qdrant-ready JSONL points, ranked lists and a run manifest.
#[derive(Debug, Parser)]
#[command(
    name = "embed-collections",
    version = env!("EMBED_COLLECTIONS_VERSION_LINE"),
    about,
    after_help = AFTER_HELP,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub run: RunArgs,
}

/// The flags of a run (also taken by `check`).
#[derive(Clone, Debug, clap::Args)]
pub struct RunArgs {
    /// Run configuration (TOML); relative paths in it are relative to the file
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Input root: a directory of collections, or one chunk file [input.root]
    #[arg(long, value_name = "PATH")]
    pub input: Option<PathBuf>,

    /// Output directory [output.dir]
    #[arg(short, long, value_name = "DIR")]
    pub output: Option<PathBuf>,

    /// Only these collections, comma-separated [input.collections]
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    pub collections: Option<Vec<String>>,

    /// Skip the SPLADE sparse stage (dense-only points) [sparse.enabled = false]
    #[arg(long)]
    pub no_sparse: bool,

    /// Skip the CrossEncoder rerank stage [rerank.enabled = false]
    #[arg(long)]
    pub no_rerank: bool,

    /// Devices: auto, cpu, cuda or cuda:0,1 [gpu.devices]
    #[arg(long, value_name = "DEVICES")]
    pub device: Option<DeviceSpec>,

    /// Directory of fetched models [models.dir]
    #[arg(long, value_name = "DIR")]
    pub models_dir: Option<PathBuf>,

    /// Chunks per streaming window [input.window_chunks]
    #[arg(long, value_name = "N")]
    pub window_chunks: Option<usize>,

    /// Continue the interrupted run in the output directory: finished windows are kept, the
    /// configuration, models and input must be unchanged (a mismatch is an error naming it)
    #[arg(long)]
    pub resume: bool,

    /// Reuse the vectors of unchanged chunks from an earlier run's output (this output
    /// directory itself, or another, read-only is fine) and write <collection>/changes.jsonl
    /// [output.reuse]
    #[arg(long, value_name = "DIR")]
    pub reuse: Option<PathBuf>,

    /// Embed only shard I of N (0-based) into <output>/shard-I-of-N/; `auto` reads the index
    /// from JOB_COMPLETION_INDEX (Kubernetes; give the count: auto/N) or the Slurm array
    /// variables. `merge` then ranks the shards' vectors [shard.spec]
    #[arg(long, value_name = "I/N|auto|auto/N")]
    pub shard: Option<crate::shard::ShardRequest>,

    /// Collections above this many bytes of chunk files are split among shards by chunk id;
    /// smaller ones go whole to one shard [shard.split_bytes]
    #[arg(long, value_name = "SIZE")]
    pub shard_split_bytes: Option<crate::config::ByteSize>,

    /// Numeric precision: auto, f32, f16 or bf16 [gpu.precision]
    #[arg(long, value_name = "PRECISION")]
    pub precision: Option<crate::config::Precision>,

    /// Per-device memory ceiling, e.g. 10GiB [gpu.memory_ceiling]
    #[arg(long, value_name = "SIZE")]
    pub memory_ceiling: Option<crate::config::ByteSize>,

    /// CrossEncoder pairs scored per query [rerank.candidates]
    #[arg(long, value_name = "N")]
    pub candidates: Option<usize>,

    /// Query file for every collection (BEIR queries.jsonl or {id, text} JSONL) [rerank.queries]
    #[arg(long, value_name = "FILE")]
    pub queries: Option<PathBuf>,

    /// BEIR qrels TSV for every collection [eval.qrels]
    #[arg(long, value_name = "FILE")]
    pub qrels: Option<PathBuf>,

    /// Set any setting by its key: --set rerank.top_k=10 (repeatable; the value in TOML
    /// syntax, a bare word is a string: --set gpu.devices=cuda:0,1, lists as ["a", "b"]);
    /// also EMBED_COLLECTIONS__SECTION__KEY=value
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,

    /// Log format on stderr: text or json [telemetry.log_format]
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,

    /// More logging (-v debug, -vv trace)
    #[arg(short, long, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Only warnings and errors; no progress and no summary table
    #[arg(short, long)]
    pub quiet: bool,
}

/// Commands besides the default run.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Evaluate an existing output directory's ranked lists against qrels (no model is loaded)
    Eval(EvalArgs),
    /// Validate config, inputs, query/qrels files, models and the output directory without
    /// running a model; report every problem at once (takes the same flags as a run)
    Check(RunArgs),
    /// Print the effective settings as TOML, each value with its origin (default, file, env,
    /// flag), and run nothing; saved as a file, it reproduces the run (takes a run's flags)
    Config(RunArgs),
    /// Serve the run's models over HTTP: TEI-compatible (/embed, /embed_sparse, /rerank,
    /// /tokenize, /info, /health, /metrics), OpenAI-compatible (/v1/embeddings, /v1/models),
    /// Cohere/Jina rerank (/v1/rerank) and /v1/query (a query's named vectors and the Qdrant
    /// request that reproduces the run's fusion); until SIGTERM or SIGINT
    Serve(ServeArgs),
    /// Embed a query file with the run's models (every dense model with its query prompt, and
    /// SPLADE) into JSONL lines like query_vectors.jsonl: id, the text's sha256, named vectors
    EmbedQueries(EmbedQueriesArgs),
    /// Measure encoder throughput on a JSONL file of texts ({"text": …}, plus "query" for
    /// rerank); prints one JSON line per repetition (counts and timings, never text)
    Bench(BenchArgs),
    /// Merge the shards of a sharded run (`--shard I/N`): checks that every shard 0..N-1 is
    /// there once, complete and from the same config, models and input, then runs retrieval,
    /// fusion, rerank and evaluation over the merged vectors (no chunk is embedded again) and
    /// writes the outputs an unsharded run writes. Takes the run's flags (the same --config)
    Merge(MergeArgs),
    /// Convert a finished run's points and query vectors to the other format (JSONL to
    /// Parquet parts, or back), checked against the manifest's hashes, without loading a
    /// model; the manifest lists the new files
    Convert(ConvertArgs),
    /// Report what this machine offers the run: the CPU's vector extensions and, for the CUDA
    /// build, the driver, the CUDA libraries found (paths, versions) and each GPU (name,
    /// compute capability, memory); exit 2 with one error saying what is missing or too old
    Devices(DevicesArgs),
    /// Fetch the real models into the models directory (the installed wheel's
    /// `python -m embed_collections.fetch_models`, or scripts/fetch-models.sh in a checkout)
    FetchModels(FetchModelsArgs),
}

#[derive(Debug, clap::Args)]
pub struct DevicesArgs {
    /// Print the report as one JSON object
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct FetchModelsArgs {
    /// Where to put them (default: EMBED_COLLECTIONS_MODELS_DIR, else
    /// ~/.cache/embed-collections/models)
    #[arg(long, value_name = "DIR")]
    pub models_dir: Option<std::path::PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Run configuration: the one the points were made with (models, prompts, truncation,
    /// fusion) plus its [serve] section
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Address and port to listen on [serve.listen] (default 127.0.0.1:8080)
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<String>,

    /// File holding the API key the inference routes require [serve.api_key_file]
    #[arg(long, value_name = "FILE")]
    pub api_key_file: Option<PathBuf>,

    /// No SPLADE model [sparse.enabled = false]
    #[arg(long)]
    pub no_sparse: bool,

    /// No CrossEncoder [rerank.enabled = false]
    #[arg(long)]
    pub no_rerank: bool,

    /// Devices: auto, cpu, cuda or cuda:0,1 [gpu.devices]
    #[arg(long, value_name = "DEVICES")]
    pub device: Option<DeviceSpec>,

    /// Directory of fetched models [models.dir]
    #[arg(long, value_name = "DIR")]
    pub models_dir: Option<PathBuf>,

    /// Any setting by its key, as for a run
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,

    /// Only warnings and errors
    #[arg(short, long)]
    pub quiet: bool,

    /// More log detail (-v debug, -vv trace); never request text at any level
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, clap::Args)]
pub struct EmbedQueriesArgs {
    /// Run configuration: the one the points were made with (models, prompts, truncation)
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Query file: BEIR queries.jsonl or {id, text} JSONL
    #[arg(long, value_name = "FILE")]
    pub queries: PathBuf,

    /// Where to write the query vectors (JSONL, one line per query; written atomically)
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,

    /// No SPLADE vectors [sparse.enabled = false]
    #[arg(long)]
    pub no_sparse: bool,

    /// Devices: auto, cpu, cuda or cuda:0,1 [gpu.devices]
    #[arg(long, value_name = "DEVICES")]
    pub device: Option<DeviceSpec>,

    /// Directory of fetched models [models.dir]
    #[arg(long, value_name = "DIR")]
    pub models_dir: Option<PathBuf>,

    /// Any setting by its key, as for a run
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,

    /// Only warnings and errors
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, clap::Args)]
pub struct MergeArgs {
    /// Shard output directories (shard-I-of-N), or directories holding them
    #[arg(required = true, value_name = "SHARD_DIR")]
    pub shards: Vec<PathBuf>,

    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Which encoder to measure
    #[arg(long, value_enum, default_value = "dense")]
    pub model: crate::bench::BenchModel,

    /// Model reference (default: the run's default model for that stage)
    #[arg(long = "model-ref", value_name = "REF")]
    pub model_ref: Option<String>,

    /// JSONL texts file
    #[arg(long, value_name = "FILE")]
    pub texts: PathBuf,

    /// Use only the first N texts
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,

    /// Items per batch (batches are length-sorted)
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,

    /// Max tokens per text (default: the model's)
    #[arg(long, value_name = "N")]
    pub max_length: Option<usize>,

    /// Encoder implementation: packed (ours, default on CPU) or candle (candle-transformers)
    #[arg(long, default_value = "packed", value_parser = ["packed", "candle"])]
    pub backend: String,

    /// Concurrent batch workers (default: 1 with --threads, else the number of CPU threads)
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,

    /// Threads per forward pass (default: 1 when several workers run, else all)
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

    /// Repetitions (the model is loaded once)
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,

    /// The packed encoder's products: f32, bf16 (needs AVX512-BF16) or int8 (any CPU; VNNI
    /// kernels where present)
    #[arg(long, default_value = "f32")]
    pub precision: crate::config::CpuPrecision,

    /// Models directory (default: as for a run)
    #[arg(long, value_name = "DIR")]
    pub models_dir: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct ConvertArgs {
    /// Output directory of a finished run
    #[arg(value_name = "OUTPUT_DIR")]
    pub output: PathBuf,

    /// The format to write: parquet (points/part-NNNNN.parquet and query_vectors.parquet) or
    /// jsonl (points.jsonl and query_vectors.jsonl)
    #[arg(long, value_name = "FORMAT")]
    pub to: crate::config::OutputFormat,
}

#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// Output directory of an earlier run (holding <collection>/rerank.jsonl)
    #[arg(short, long, value_name = "DIR")]
    pub output: PathBuf,

    /// BEIR qrels TSV (query-id, corpus-id, score; header row and CRLF accepted)
    #[arg(long, value_name = "FILE")]
    pub qrels: PathBuf,

    /// Only these collections, comma-separated
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    pub collections: Option<Vec<String>>,
}

impl RunArgs {
    /// The flags that override settings.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            input: self.input.clone(),
            output: self.output.clone(),
            collections: self.collections.clone(),
            no_sparse: self.no_sparse,
            no_rerank: self.no_rerank,
            device: self.device.clone(),
            models_dir: self.models_dir.clone(),
            log_format: self.log_format,
            window_chunks: self.window_chunks,
            reuse: self.reuse.clone(),
            shard: self.shard,
            shard_split_bytes: self.shard_split_bytes,
            quiet: self.quiet,
            precision: self.precision,
            memory_ceiling: self.memory_ceiling,
            candidates: self.candidates,
            queries: self.queries.clone(),
            qrels: self.qrels.clone(),
            listen: None,
            api_key_file: None,
            set: self.set.clone(),
        }
    }

    pub fn verbosity(&self) -> i8 {
        if self.quiet {
            -1
        } else {
            self.verbose.min(2) as i8
        }
    }
}
