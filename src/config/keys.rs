//! Every setting, declared once: its key, default, dedicated flag, meaning and an example
//! value. The settings table of docs/configuration.md is rendered from here ([`markdown_table`]; a test keeps
//! the two in step), the generic overrides (`--set section.key=value`,
//! `EMBED_COLLECTIONS__SECTION__KEY=value`) accept exactly these keys, and
//! `embed-collections config` prints them in this order.

use super::env_vars;

/// One setting of the run configuration.
#[derive(Clone, Copy, Debug)]
pub struct Setting {
    /// `section.key`, as in the TOML file.
    pub key: &'static str,
    /// The default, as docs/configuration.md shows it.
    pub default: &'static str,
    /// The dedicated flag, if there is one (the generic `--set` always works).
    pub flag: Option<&'static str>,
    /// What it does (Markdown).
    pub meaning: &'static str,
    /// A valid, non-default value in TOML syntax (tests set every key to it).
    pub example: &'static str,
    /// A path: relative to the config file in the file, to the working directory elsewhere.
    pub path: bool,
    /// A secret: `embed-collections config` says whether it is set, never its value.
    pub secret: bool,
}

impl Setting {
    /// The TOML section and the key within it.
    pub fn split(&self) -> (&'static str, &'static str) {
        self.key.split_once('.').unwrap_or(("", self.key))
    }

    /// The generic environment variable: `EMBED_COLLECTIONS__SECTION__KEY`.
    pub fn env_var(&self) -> String {
        let (section, key) = self.split();
        format!(
            "{}_{}__{}",
            env_vars::PREFIX,
            section.to_ascii_uppercase(),
            key.to_ascii_uppercase()
        )
    }

    /// The dedicated environment variable, if there is one.
    pub fn dedicated_env(&self) -> Option<&'static str> {
        env_vars::ALL
            .iter()
            .find(|(_, key)| *key == self.key)
            .map(|(var, _)| *var)
    }
}

const fn setting(
    key: &'static str,
    default: &'static str,
    flag: Option<&'static str>,
    meaning: &'static str,
    example: &'static str,
) -> Setting {
    Setting {
        key,
        default,
        flag,
        meaning,
        example,
        path: false,
        secret: false,
    }
}

const fn path(
    key: &'static str,
    default: &'static str,
    flag: Option<&'static str>,
    meaning: &'static str,
    example: &'static str,
) -> Setting {
    Setting {
        path: true,
        ..setting(key, default, flag, meaning, example)
    }
}

const fn secret(
    key: &'static str,
    default: &'static str,
    flag: Option<&'static str>,
    meaning: &'static str,
    example: &'static str,
) -> Setting {
    Setting {
        secret: true,
        ..setting(key, default, flag, meaning, example)
    }
}

/// Every key of the configuration file, in file order. (`shard.spec`, which shard a process
/// is, is deliberately not among them: every shard reads the same file, so it comes only from
/// `--shard` or `EMBED_COLLECTIONS_SHARD`.)
pub const SETTINGS: &[Setting] = &[
    path("input.root", "— (required)", Some("--input"),
        "directory of collections, or one chunk file", r#""/data/collections""#),
    setting("input.collections", "all", Some("--collections"),
        "only these collection names", r#"["notes", "papers"]"#),
    setting("input.formats", r#"`["jsonl", "json"]`"#, None,
        "chunk file formats to read", r#"["jsonl"]"#),
    setting("input.on_invalid", "`error`", None,
        "`error`: a bad record fails its collection, naming file and line; `skip`: count and report it, keep going",
        r#""skip""#),
    // A few tens of MB of text and vectors at once, and a resumed run redoes at most this many.
    setting("input.window_chunks", "`10000`", Some("--window-chunks"),
        "chunks per streaming window (memory is bounded by a window; `--resume` continues after the last complete one)",
        "500"),
    path("output.dir", "— (required)", Some("--output"), "output directory", r#""/data/out""#),
    setting("output.include_text", "`false`", None,
        "copy chunk text and title into point payloads", "true"),
    setting("output.formats", r#"`["jsonl"]`"#, None,
        "formats of the points and query vectors: `jsonl` (one Qdrant point per line), `parquet` (`<collection>/points/part-NNNNN.parquet`, one part per window, and `query_vectors.parquet`: the format for large collections and columnar readers), or both; the manifest and ranked lists stay JSON",
        r#"["jsonl", "parquet"]"#),
    setting("output.parquet_dense", "`fixed_size_list`", None,
        "the Parquet type of dense vectors: `fixed_size_list` (`fixed_size_list<float32, dim>`: LanceDB vector search, DuckDB `FLOAT[dim]`, Polars `Array`) or `list` (`list<float32>`, for readers without fixed-size lists)",
        r#""list""#),
    path("output.reuse", "—", Some("--reuse"),
        "an earlier run's output (or `output.dir` itself): vectors of unchanged chunks are reused, and `<collection>/changes.jsonl` lists what to upsert and delete",
        r#""/data/out-yesterday""#),
    path("models.dir", "`~/.cache/embed-collections/models`", Some("--models-dir"),
        "where `fetch-models.sh` puts models (searched first)", r#""/models""#),
    setting("dense.models", "all-MiniLM-L6-v2", None,
        "one `[[dense.models]]` table per bi-encoder: `model` (HF id or path), `name` (vector name; default: last segment of `model`), `revision`, and overrides of the model's own `max_length`, `pooling` (`mean`, `cls`, `max`, `last_token`), `normalize`, `query_prompt`, `document_prompt`, `fusion_weight` (its list's weight in fusion; default `fusion.dense_weight`) and `precision` (its CPU products, as `rerank.precision`)",
        r#"[{ model = "BAAI/bge-small-en-v1.5", name = "bge" }]"#),
    setting("dense.batch_tokens", "`8192`", None,
        "padded tokens per batch (items × longest)", "4096"),
    setting("dense.max_batch_size", "`64`", None, "texts per batch at most", "16"),
    setting("sparse.enabled", "`true`", Some("--no-sparse"), "live SPLADE stage", "false"),
    setting("sparse.model", "`splade-tiny`", None,
        "a BERT masked-LM checkpoint (HF id or path)", r#""naver/splade-v3""#),
    setting("sparse.name", "`splade`", None, "sparse vector name in the points", r#""lexical""#),
    setting("sparse.max_terms", "all", None,
        "keep only the N largest weights per vector", "200"),
    setting("sparse.precision", "as `gpu.precision`", None,
        "the SPLADE encoder's CPU products: `f32`, `bf16` or `int8` (as `rerank.precision`)", r#""int8""#),
    setting("sparse.fallback", "`metadata`", None,
        "for chunks whose inference failed: `metadata` (their metadata term weights, flagged) or `none` (no sparse vector, counted)",
        r#""none""#),
    setting("fusion.method", "`rrf`", None,
        "`rrf` (Σ 1/(rank/weight + k), 1-based ranks: Qdrant's weighted RRF), `dbsf` (Qdrant's distribution-based score fusion), `convex` (Σ weight · normalised score, see `fusion.normalization`), `dense` or `sparse` (that list alone), or `auto` (chosen per collection from a menu of these, the CrossEncoder judging: needs `rerank.enabled`); the Qdrant request that reproduces it is in the manifest", r#""dbsf""#),
    setting("fusion.normalization", "`min_max`", None,
        "how `convex` normalises each list's scores: `min_max`, `z_score` or `none`", r#""z_score""#),
    setting("fusion.rrf_k", "`60`", None, "RRF's k", "61.0"),
    setting("fusion.depth", "`100`", None,
        "candidates taken from each of the dense and sparse lists", "150"),
    setting("fusion.dense_weight", "`1.0`", None, "weight of each dense model's list (unless its `fusion_weight` says otherwise)", "0.7"),
    setting("fusion.sparse_weight", "`1.0`", None, "weight of the sparse list", "0.3"),
    setting("fusion.retrieval", "`scan`", None,
        "how retrieval searches the stored vectors: `scan` (one pass in fixed-size blocks, memory independent of the collection) or `index` (every vector mapped and an inverted sparse index, while it fits `fusion.retrieval_memory`); the results are identical, the scan was faster in every measurement", r#""index""#),
    // The index is chosen only while it is small next to the models' own resident memory (a
    // few hundred MB on the CPU).
    setting("fusion.retrieval_memory", "`256MiB`", None,
        "the most memory `index` may take (estimated from the stored vectors); a larger index falls back to the scan, reported", r#""1GiB""#),
    setting("rerank.enabled", "`true`", Some("--no-rerank"),
        "CrossEncoder rerank of the fused candidates", "false"),
    setting("rerank.model", "ms-marco-MiniLM-L-12-v2", None,
        "BERT sequence-classification CrossEncoder (one label)",
        r#""cross-encoder/ms-marco-MiniLM-L-6-v2""#),
    path("rerank.queries", "the collection's own `queries.jsonl`, else probe", Some("--queries"),
        "query file (BEIR `queries.jsonl` or `{id, text}` JSONL) for every collection",
        r#""/data/queries.jsonl""#),
    setting("rerank.candidates", "`100`", Some("--candidates"), "pairs scored per query", "50"),
    setting("rerank.top_k", "`20`", None,
        "candidates kept in `rerank.jsonl` (at most `rerank.candidates`)", "10"),
    setting("rerank.batch_tokens", "`8192`", None, "padded tokens per batch", "4096"),
    setting("rerank.max_length", "the model's (512)", None,
        "pair truncation (longest first)", "256"),
    setting("rerank.probe_queries", "sized to the collection", None,
        "probe queries when there is no query file (`0`: no probe). Unset: enough that the probe's pairs cost ≈ 5 % of the dense stage (a pair ≈ 2 chunk embeddings), 4 to 32 (with 100 candidates: 4 below 20,000 chunks, 32 from 128,000)", "0"),
    setting("rerank.budget", "`off`", None,
        "the overhead allowed, as a fraction of the dense stage's time (`0.10` or `\"10%\"`: the +10 % rule), or `off`: sparse + fusion + rerank are planned to fit it by scoring fewer candidates for every query (never below `rerank.min_candidates`/`top_k`; the floor alone when even that does not fit, with a warning). Plan and outcome under the collection's `overhead.rerank_budget` in the manifest", "0.10"),
    // With a budget, at least this many candidates per query (or `top_k`, if larger).
    setting("rerank.min_candidates", "`10`", None,
        "with `rerank.budget`, the fewest candidates per query (the floor is this or `top_k`, the larger)", "20"),
    // On every judged set measured (BENCHMARKS.md "Fusion"), the convex blend at 0.3 kept the
    // final list within 0.005 of the best of the dense, sparse and fused lists, where `replace`
    // fell up to 0.06 below the fused list.
    setting("rerank.blend", "`convex`", None,
        "how the final list is made from the CrossEncoder's order and the fused order: `replace` (the CrossEncoder's order), `rrf` (reciprocal rank fusion of the two ranks, k = 60) or `convex` (`rerank.blend_weight` · min-max(logit) + the rest · min-max(fused score))", r#""rrf""#),
    setting("rerank.blend_weight", "`0.3`", None,
        "the CrossEncoder's weight in the `convex` blend, 0 to 1", "0.7"),
    setting("rerank.precision", "as `gpu.precision`", None,
        "the CrossEncoder's CPU products: `f32`, `bf16` (AVX512-BF16 CPUs) or `int8` (≈ 2× faster than f32 on AVX512-VNNI CPUs; elsewhere a portable kernel with the same results runs, several times slower than f32, and a warning says so; quality effect in BENCHMARKS.md); a GPU runs `gpu.precision`", r#""int8""#),
    path("eval.qrels", "the collection's own `qrels/test.tsv`", Some("--qrels"),
        "BEIR qrels TSV (header row and CRLF accepted)", r#""/data/qrels.tsv""#),
    setting("gpu.devices", "`auto`", Some("--device"),
        "`auto`, `cpu`, `cuda`, `cuda:0,1` (CUDA needs the `cuda` build feature)",
        r#""cuda:0,1""#),
    setting("gpu.memory_ceiling", "`12GiB`", Some("--memory-ceiling"),
        "per-device ceiling", r#""10GiB""#),
    setting("gpu.precision", "`auto`", Some("--precision"),
        "`auto` (f16 on CUDA, f32 on CPU), `f32`, `f16`, `bf16` (on the CPU: the packed encoder's layer products in bf16, AVX512-BF16 CPUs only; ≈ 1.5× faster, quality effect in BENCHMARKS.md)",
        r#""f16""#),
    setting("telemetry.log_format", "`text`", Some("--log-format"),
        "`text` or `json` log lines on stderr", r#""json""#),
    path("telemetry.metrics_file", "`<output.dir>/metrics.prom`", None,
        "Prometheus text file", r#""/data/metrics.prom""#),
    setting("telemetry.progress", "`auto`", Some("--quiet"),
        "`auto` (bars on a terminal, plain log lines otherwise), `lines`, `never` (`--quiet`)",
        r#""never""#),
    setting("shard.split_bytes", "`64MiB`", Some("--shard-split-bytes"),
        "in a sharded run, collections with more bytes of chunk files than this are split among the shards by chunk id; smaller ones go whole to one shard",
        r#""1GiB""#),
    setting("serve.listen", "`127.0.0.1:8080`", Some("--listen"),
        "`serve`: the address and port to listen on (`0.0.0.0:8080` to accept other hosts)",
        r#""0.0.0.0:9000""#),
    secret("serve.api_key", "none", None,
        "`serve`: the bearer token the inference routes require (`Authorization: Bearer …`); `/health` and `/metrics` stay open. Never printed",
        r#""change-me""#),
    path("serve.api_key_file", "none", Some("--api-key-file"),
        "`serve`: a file holding the API key (a mounted Kubernetes Secret); one of this and `serve.api_key`",
        r#""/run/secrets/api-key""#),
    setting("serve.max_batch_tokens", "`16384`", None,
        "`serve`: tokens of concurrent requests' inputs run as one batch", "8192"),
    setting("serve.max_client_batch_size", "`32`", None,
        "`serve`: inputs one request may carry (more: 422)", "64"),
    setting("serve.max_concurrent_inputs", "`512`", None,
        "`serve`: inputs accepted at once across requests (more: 429 at once)", "1024"),
    setting("serve.payload_limit", "`2MiB`", None,
        "`serve`: largest request body (more: 413)", r#""4MiB""#),
    setting("serve.request_timeout", "`60s`", None,
        "`serve`: longest a request may take, queue included (more: 504)", r#""10s""#),
    setting("serve.cors_origins", "none (no CORS headers)", None,
        "`serve`: origins a browser may call from", r#"["https://search.example.com"]"#),
];

/// The default of `setting` when the table writes it as one TOML value in backticks (`` `8192` ``,
/// `` `["jsonl"]` ``); `None` where it is prose ("all", "as `gpu.precision`", "— (required)")
/// or a path (derived from the home or the output directory).
pub fn literal_default(setting: &Setting) -> Option<&'static str> {
    if setting.path {
        return None;
    }
    let inner = setting.default.strip_prefix('`')?.strip_suffix('`')?;
    (!inner.contains('`')).then_some(inner)
}

/// The setting named `key`.
pub fn find(key: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.key == key)
}

/// The keys closest to a misspelt one, closest first: at most three within a few edits, and
/// the same key in other sections (`dense.max_terms` → `sparse.max_terms`).
pub fn nearest(key: &str) -> Vec<&'static str> {
    let mut scored: Vec<(usize, &'static str)> = SETTINGS
        .iter()
        .map(|s| (strsim::damerau_levenshtein(key, s.key), s.key))
        .filter(|(distance, _)| *distance <= 3)
        .collect();
    scored.sort();
    let mut near: Vec<&'static str> = scored.into_iter().take(3).map(|(_, key)| key).collect();
    let field = key.rsplit('.').next().unwrap_or(key);
    for setting in SETTINGS {
        if setting.split().1 == field && !near.contains(&setting.key) {
            near.push(setting.key);
        }
    }
    near
}

/// The settings table of docs/configuration.md.
pub fn markdown_table() -> String {
    let mut table =
        String::from("| key | default | flag | variable | meaning |\n|---|---|---|---|---|\n");
    for setting in SETTINGS {
        let code = |text: &str| format!("`{text}`");
        table.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            setting.key,
            setting.default,
            setting.flag.map(code).unwrap_or_default(),
            setting.dedicated_env().map(code).unwrap_or_default(),
            setting.meaning
        ));
    }
    table
}
