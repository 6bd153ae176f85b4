//! Run configuration: the TOML file ([`file`]), the environment ([`environment`]), typed values
//! ([`values`]) and the layered resolver ([`resolve`]) that produces the effective
//! [`RunConfig`] ([`run_config`]) with its [`Provenance`] ([`provenance`]), or a
//! [`ConfigError`] ([`error`]).

pub mod aliases;
pub mod env_vars;
pub mod environment;
pub mod error;
pub mod file;
pub mod keys;
pub mod paths;
pub mod provenance;
pub mod resolve;
pub mod run_config;
pub mod show;
pub mod values;

pub use environment::Environment;
pub use error::ConfigError;
pub use file::{load_file, parse_file, FileLayer};
pub use provenance::{Provenance, Source};
pub use resolve::{resolve, resolve_for_models, resolve_layers, Overrides};
pub use run_config::{
    probe_budget, DenseConfig, DenseModelConfig, EvalConfig, FusionConfig, GpuConfig, InputConfig,
    ModelsConfig, OutputConfig, RerankingConfig, RunConfig, ServeConfig, ShardConfig, SparseConfig,
    TelemetryConfig, DEFAULT_DENSE_MODEL, DEFAULT_RERANK_MODEL, DEFAULT_SPARSE_MODEL,
    PROBE_COST_SHARE, PROBE_PAIR_COST, PROBE_QUERIES_MAX, PROBE_QUERIES_MIN,
};
pub use values::{
    ByteSize, CpuPrecision, DeviceSpec, FusionMethod, LogFormat, OutputFormat, ParquetDense,
    Pooling, Precision, ProgressMode, RerankBlend, RerankBudget, RetrievalMethod, Secret,
    SparseFallback, Timeout, PARQUET_COLUMNS,
};

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    #[test]
    fn the_default_probe_is_sized_to_the_collection() {
        // 100 candidates: a pair costs 2 chunk embeddings, the probe 5 % of the dense stage,
        // so one query per 4,000 chunks, between 4 and 32.
        assert_eq!(probe_budget(0, 100), PROBE_QUERIES_MIN);
        assert_eq!(probe_budget(19_999, 100), 4);
        assert_eq!(probe_budget(20_000, 100), 5);
        assert_eq!(probe_budget(64_000, 100), 16);
        assert_eq!(probe_budget(128_000, 100), PROBE_QUERIES_MAX);
        assert_eq!(probe_budget(10_000_000, 100), PROBE_QUERIES_MAX);
        // Fewer candidates afford more queries.
        assert_eq!(probe_budget(64_000, 10), PROBE_QUERIES_MAX);
        let cost = |chunks: usize, candidates: usize| {
            (probe_budget(chunks, candidates) * candidates) as f64 * PROBE_PAIR_COST
        };
        // Between the bounds, the pairs' cost is within one query of the share.
        for chunks in [30_000, 77_777, 100_000] {
            let share = cost(chunks, 100) / chunks as f64;
            assert!(share <= PROBE_COST_SHARE && share > PROBE_COST_SHARE - 200.0 / chunks as f64);
        }
    }

    const BASE: &str = r#"
[input]
root = "collections"

[output]
dir = "out"

[sparse]
enabled = true
"#;

    fn env(pairs: &[(&str, &str)]) -> Environment {
        let mut all = vec![("HOME", "/home/user")];
        all.extend_from_slice(pairs);
        Environment::from_pairs(all.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    fn resolve_text(
        text: &str,
        env: &Environment,
        flags: &Overrides,
    ) -> Result<RunConfig, ConfigError> {
        let path = Path::new("/etc/runs/run.toml");
        let file = parse_file(path, text)?;
        resolve_layers(Some(path), file, env, flags)
    }

    #[test]
    fn defaults_enable_sparse_and_rerank() {
        let flags = Overrides {
            input: Some("in".into()),
            output: Some("out".into()),
            ..Overrides::default()
        };
        let config = resolve_layers(None, Default::default(), &env(&[]), &flags).unwrap();
        assert!(config.sparse.enabled);
        assert!(config.rerank.enabled);
        assert_eq!(config.rerank.candidates, 100);
        assert_eq!(config.rerank.top_k, 20);
        assert_eq!(config.fusion.rrf_k, 60.0);
        assert_eq!(config.gpu.memory_ceiling, ByteSize(12 << 30));
        assert_eq!(config.dense.models[0].model, DEFAULT_DENSE_MODEL);
        assert_eq!(config.dense.models[0].name, "all-MiniLM-L6-v2");
        assert_eq!(
            config.models.dir,
            PathBuf::from("/home/user/.cache/embed-collections/models")
        );
        assert_eq!(
            config.provenance.get("sparse.enabled"),
            Some(&Source::Default)
        );
        assert_eq!(
            config.provenance.get("input.root"),
            Some(&Source::Flag("--input"))
        );
    }

    #[test]
    fn other_tools_variables_come_from_the_snapshot() {
        let none = Environment::from_pairs([("HOME", "/home/u")]);
        assert_eq!(
            none.hf_hub_cache(),
            Path::new("/home/u/.cache/huggingface/hub")
        );
        assert!(!none.hf_hub_offline() && !none.no_color() && !none.int8_kernel_portable());
        assert_eq!(none.rust_log(), None);
        let set = Environment::from_pairs([
            ("HOME", "/home/u"),
            ("HF_HOME", "/hf"),
            ("HF_HUB_OFFLINE", " Yes "),
            ("NO_COLOR", ""),
            ("RUST_LOG", "debug"),
            ("EMBED_COLLECTIONS_INT8_KERNEL", "portable"),
            ("UNRELATED", "x"),
        ]);
        assert_eq!(set.hf_hub_cache(), Path::new("/hf/hub"));
        assert!(set.hf_hub_offline() && set.no_color() && set.int8_kernel_portable());
        assert_eq!(set.rust_log(), Some("debug"));
        assert_eq!(
            set.raw_value("UNRELATED"),
            None,
            "only the variables the tool reads are kept"
        );
        let cache = Environment::from_pairs([
            ("HF_HOME", "/hf"),
            ("HF_HUB_CACHE", "/cache"),
            ("HF_HUB_OFFLINE", "0"),
        ]);
        assert_eq!(cache.hf_hub_cache(), Path::new("/cache"));
        assert!(!cache.hf_hub_offline());
    }

    #[test]
    fn output_formats_default_to_jsonl_sort_and_refuse_a_vector_named_as_a_column() {
        let config = resolve_text(BASE, &env(&[]), &Overrides::default()).unwrap();
        assert_eq!(config.output.formats, [crate::config::OutputFormat::Jsonl]);
        let both = format!("{BASE}\n[output]\n");
        assert!(
            resolve_text(&both, &env(&[]), &Overrides::default()).is_err(),
            "[output] twice"
        );
        let text = BASE.replace(
            "dir = \"out\"",
            "dir = \"out\"\nformats = [\"parquet\", \"jsonl\", \"parquet\"]\nparquet_dense = \"list\"",
        );
        let config = resolve_text(&text, &env(&[]), &Overrides::default()).unwrap();
        use crate::config::OutputFormat::{Jsonl, Parquet};
        assert_eq!(config.output.formats, [Jsonl, Parquet]);
        assert_eq!(
            config.output.parquet_dense,
            crate::config::ParquetDense::List
        );
        let empty = BASE.replace("dir = \"out\"", "dir = \"out\"\nformats = []");
        let err = resolve_text(&empty, &env(&[]), &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("output.formats"), "{err}");
        let clash = text.replace("enabled = true", "enabled = true\nname = \"metadata\"");
        let err = resolve_text(&clash, &env(&[]), &Overrides::default()).unwrap_err();
        assert!(
            err.to_string().contains("sparse.name") && err.to_string().contains("Parquet"),
            "{err}"
        );
        // Without Parquet the name is free.
        let jsonl = clash.replace(
            "formats = [\"parquet\", \"jsonl\", \"parquet\"]",
            "formats = [\"jsonl\"]",
        );
        assert!(resolve_text(&jsonl, &env(&[]), &Overrides::default()).is_ok());
    }

    #[test]
    fn layers_override_in_order_file_env_flag() {
        let file_only = resolve_text(BASE, &env(&[]), &Overrides::default()).unwrap();
        assert!(file_only.sparse.enabled);
        assert_eq!(
            file_only.provenance.get("sparse.enabled"),
            Some(&Source::File("/etc/runs/run.toml".into()))
        );

        let env_off = env(&[("EMBED_COLLECTIONS_SPARSE", "0")]);
        let with_env = resolve_text(BASE, &env_off, &Overrides::default()).unwrap();
        assert!(!with_env.sparse.enabled, "environment beats the file");
        assert_eq!(
            with_env.provenance.get("sparse.enabled"),
            Some(&Source::Env("EMBED_COLLECTIONS_SPARSE".to_string()))
        );

        // The flag beats the environment even when the environment says the opposite.
        let env_on = env(&[
            ("EMBED_COLLECTIONS_SPARSE", "yes"),
            ("EMBED_COLLECTIONS_OUTPUT", "/env/out"),
        ]);
        let flags = Overrides {
            no_sparse: true,
            output: Some("/flag/out".into()),
            ..Overrides::default()
        };
        let with_flag = resolve_text(BASE, &env_on, &flags).unwrap();
        assert!(!with_flag.sparse.enabled);
        assert_eq!(
            with_flag.provenance.get("sparse.enabled"),
            Some(&Source::Flag("--no-sparse"))
        );
        assert_eq!(with_flag.output.dir, PathBuf::from("/flag/out"));

        let env_out = resolve_text(BASE, &env_on, &Overrides::default()).unwrap();
        assert!(env_out.sparse.enabled);
        assert_eq!(env_out.output.dir, PathBuf::from("/env/out"));
    }

    #[test]
    fn file_paths_are_relative_to_the_config_file() {
        let config = resolve_text(BASE, &env(&[]), &Overrides::default()).unwrap();
        assert_eq!(config.input.root, PathBuf::from("/etc/runs/collections"));
        assert_eq!(config.output.dir, PathBuf::from("/etc/runs/out"));
    }

    #[test]
    fn unknown_key_names_key_file_and_line() {
        let text = format!("{BASE}\n[rerank]\ntopk = 5\n");
        let err = resolve_text(&text, &env(&[]), &Overrides::default()).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("/etc/runs/run.toml"), "{message}");
        assert!(message.contains("topk"), "{message}");
        assert!(message.contains("line 12"), "{message}");
    }

    #[test]
    fn unknown_section_is_an_error() {
        let text = format!("{BASE}\n[sparce]\nenabled = false\n");
        let message = resolve_text(&text, &env(&[]), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(message.contains("sparce"), "{message}");
    }

    #[test]
    fn bad_value_in_file_names_key_and_line() {
        let text = format!("{BASE}\n[gpu]\ndevices = \"tpu:0\"\n");
        let message = resolve_text(&text, &env(&[]), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(message.contains("line 12"), "{message}");
        assert!(message.contains("tpu:0"), "{message}");

        let text = format!("{BASE}\n[fusion]\nmethod = \"bm25\"\n");
        let message = resolve_text(&text, &env(&[]), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("bm25") && message.contains("line 12"),
            "{message}"
        );
    }

    #[test]
    fn bad_env_value_names_the_variable() {
        let message = resolve_text(
            BASE,
            &env(&[("EMBED_COLLECTIONS_RERANK", "maybe")]),
            &Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(message.contains("EMBED_COLLECTIONS_RERANK"), "{message}");
        assert!(message.contains("maybe"), "{message}");
    }

    #[test]
    fn unknown_env_variable_is_an_error() {
        let message = resolve_text(
            BASE,
            &env(&[("EMBED_COLLECTIONS_SPARES", "0")]),
            &Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(message.contains("EMBED_COLLECTIONS_SPARES"), "{message}");
        // What build.rs sets for the compiler reaches processes `cargo test` starts: not a typo.
        let build: Vec<(&str, &str)> = [
            "EMBED_COLLECTIONS_GIT_COMMIT",
            "EMBED_COLLECTIONS_VERSION_LINE",
        ]
        .iter()
        .map(|var| {
            (
                *var,
                option_env!("EMBED_COLLECTIONS_VERSION_LINE").unwrap_or("x"),
            )
        })
        .collect();
        resolve_text(BASE, &env(&build), &Overrides::default()).unwrap();
    }

    /// An alias resolves to its hub id and model-card settings; the config's own settings win;
    /// an alias in the wrong role names the key.
    #[test]
    fn model_aliases_resolve_with_their_settings() {
        let text = format!(
            "{BASE}\n[[dense.models]]\nmodel = \"bge-small-en\"\n\
             [[dense.models]]\nmodel = \"all-minilm-l6\"\nname = \"mini\"\nmax_length = 128\n\
             [rerank]\nmodel = \"bge-reranker-v2-m3\"\n"
        );
        let config = resolve_text(&text, &env(&[]), &Overrides::default()).unwrap();
        let bge = &config.dense.models[0];
        assert_eq!(
            (
                bge.name.as_str(),
                bge.model.as_str(),
                bge.max_length,
                bge.expected_dim
            ),
            (
                "bge-small-en",
                "BAAI/bge-small-en-v1.5",
                Some(512),
                Some(384)
            )
        );
        assert_eq!(bge.pooling, Some(Pooling::Cls));
        assert_eq!(
            bge.query_prompt.as_deref(),
            Some("Represent this sentence for searching relevant passages: ")
        );
        let mini = &config.dense.models[1];
        assert_eq!(
            (mini.name.as_str(), mini.model.as_str(), mini.max_length),
            ("mini", "sentence-transformers/all-MiniLM-L6-v2", Some(128))
        );
        assert_eq!(config.rerank.model, "BAAI/bge-reranker-v2-m3");
        assert_eq!(config.rerank.max_length, Some(512));

        for (extra, key, message) in [
            (
                "[[dense.models]]\nmodel = \"splade-v3\"\n",
                "dense.models",
                "is a sparse model",
            ),
            (
                "[rerank]\nmodel = \"qwen3-embedding-0.6b\"\n",
                "rerank.model",
                "is a dense model",
            ),
        ] {
            let text = format!("{BASE}\n{extra}");
            let err = resolve_text(&text, &env(&[]), &Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(key) && err.contains(message), "{err}");
        }
    }

    #[test]
    fn invalid_combination_names_key_and_origin() {
        let text = format!("{BASE}\n[rerank]\ncandidates = 10\ntop_k = 20\n");
        let message = resolve_text(&text, &env(&[]), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with("rerank.top_k (from file:/etc/runs/run.toml)"),
            "{message}"
        );
    }

    #[test]
    fn duplicate_vector_names_are_rejected() {
        let text = format!(
            "{BASE}\n[[dense.models]]\nmodel = \"a/m\"\n[[dense.models]]\nmodel = \"b/m\"\n"
        );
        let message = resolve_text(&text, &env(&[]), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(message.contains("\"m\" is used twice"), "{message}");
    }

    #[test]
    fn the_api_key_is_never_printed_and_serve_settings_are_checked() {
        let config = resolve_text(BASE, &env(&[]), &set(&["serve.api_key=\"hunter2\""])).unwrap();
        let printed = show::effective_toml(&config).unwrap();
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(
            printed.contains("# api_key: set, never printed  # flag:--set"),
            "{printed}"
        );
        assert!(!format!("{config:?}").contains("hunter2"));
        for (assignment, key) in [
            ("serve.listen=\"localhost\"", "serve.listen"),
            (
                "serve.max_concurrent_inputs=0",
                "serve.max_concurrent_inputs",
            ),
            (
                "serve.cors_origins=[\"https://a.example/\"]",
                "serve.cors_origins",
            ),
            ("serve.request_timeout=\"0s\"", "serve.request_timeout"),
        ] {
            let err = resolve_text(BASE, &env(&[]), &set(&[assignment])).unwrap_err();
            assert!(err.to_string().contains(key), "{assignment}: {err}");
        }
        let both = resolve_text(
            BASE,
            &env(&[]),
            &set(&["serve.api_key=\"k\"", "serve.api_key_file=\"/k\""]),
        )
        .unwrap_err();
        assert!(both.to_string().contains("not both"), "{both}");
        let more_than_accepted = resolve_text(
            BASE,
            &env(&[]),
            &set(&[
                "serve.max_client_batch_size=100",
                "serve.max_concurrent_inputs=50",
            ]),
        )
        .unwrap_err();
        assert!(more_than_accepted
            .to_string()
            .contains("can never be accepted"));
    }

    #[test]
    fn missing_input_root_says_how_to_set_it() {
        let err =
            resolve_layers(None, Default::default(), &env(&[]), &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("--input"), "{err}");
    }

    /// `--set` assignments as the command line gives them.
    fn set(assignments: &[&str]) -> Overrides {
        Overrides {
            set: assignments.iter().map(|a| a.to_string()).collect(),
            ..Overrides::default()
        }
    }

    /// The effective value of `key` as JSON, nulls inside tables left out (as in the file).
    fn effective(config: &RunConfig, key: &str) -> serde_json::Value {
        // A secret serialises redacted; its value is what counts here.
        if key == "serve.api_key" {
            return serde_json::json!(config.serve.api_key.as_ref().map(|k| k.0.clone()));
        }
        let (section, field) = key.split_once('.').unwrap();
        let mut value = serde_json::to_value(config).unwrap()[section][field].clone();
        if let serde_json::Value::Array(items) = &mut value {
            for item in items {
                if let serde_json::Value::Object(fields) = item {
                    fields.retain(|_, v| !v.is_null());
                }
            }
        }
        value
    }

    #[test]
    fn every_key_is_settable_by_set_and_by_the_environment() {
        for setting in keys::SETTINGS {
            let want = serde_json::to_value(
                file::keyed_value(setting.key, setting.example)
                    .unwrap_or_else(|err| panic!("{}: {err}", setting.key))
                    .value,
            )
            .unwrap();
            let assignment = format!("{}={}", setting.key, setting.example);
            let by_flag = resolve_text(BASE, &env(&[]), &set(&[&assignment]))
                .unwrap_or_else(|err| panic!("--set {assignment}: {err}"));
            assert_eq!(
                by_flag.provenance.get(setting.key),
                Some(&Source::Flag("--set")),
                "{assignment}"
            );
            assert_eq!(effective(&by_flag, setting.key), want, "--set {assignment}");

            let var = setting.env_var();
            let by_env = resolve_text(
                BASE,
                &env(&[(var.as_str(), setting.example)]),
                &Overrides::default(),
            )
            .unwrap_or_else(|err| panic!("{var}: {err}"));
            assert_eq!(
                by_env.provenance.get(setting.key),
                Some(&Source::Env(var.clone())),
                "{var}"
            );
            assert_eq!(effective(&by_env, setting.key), want, "{var}");
        }
    }

    #[test]
    fn the_documented_default_is_the_effective_default() {
        // Every default the table writes as one TOML value is what a run with nothing set
        // gets; the others (computed, or absent) are prose.
        let config = resolve_text(BASE, &env(&[]), &Overrides::default()).unwrap();
        let mut literal = 0;
        for setting in keys::SETTINGS {
            let Some(default) = keys::literal_default(setting) else {
                continue;
            };
            if config.provenance.get(setting.key) != Some(&Source::Default) {
                continue; // BASE sets it
            }
            literal += 1;
            // Set to the documented default, the setting takes the value it has unset.
            let assignment = format!("{}={default}", setting.key);
            let set_to_it = resolve_text(BASE, &env(&[]), &set(&[&assignment]))
                .unwrap_or_else(|err| panic!("{assignment}: {err}"));
            assert_eq!(
                effective(&set_to_it, setting.key),
                effective(&config, setting.key),
                "{}: the documented default is not the effective one",
                setting.key
            );
        }
        assert!(literal >= 30, "{literal} literal defaults");
        // The benchmarks load the default SPLADE model by this name.
        let sparse = keys::find("sparse.model").and_then(keys::literal_default);
        assert_eq!(sparse, Some(DEFAULT_SPARSE_MODEL));
    }

    #[test]
    fn the_key_table_covers_every_effective_setting() {
        let config = resolve_text(BASE, &env(&[]), &Overrides::default()).unwrap();
        let mut resolved: Vec<&str> = config
            .provenance
            .iter()
            .map(|(key, _)| key)
            .filter(|key| *key != "shard.spec")
            .collect();
        let mut declared: Vec<&str> = keys::SETTINGS.iter().map(|s| s.key).collect();
        resolved.sort();
        declared.sort();
        assert_eq!(declared, resolved);
        // Every dedicated variable sets a declared key.
        for (var, key) in env_vars::ALL {
            assert!(
                key == "shard.spec" || keys::find(key).is_some(),
                "{var} sets undeclared {key}"
            );
        }
    }

    #[test]
    fn precedence_is_flag_over_env_over_file_over_default() {
        let file = format!("{BASE}\n[rerank]\ncandidates = 30\n");
        let generic = env(&[("EMBED_COLLECTIONS__RERANK__CANDIDATES", "40")]);
        let flag = Overrides {
            candidates: Some(50),
            ..Overrides::default()
        };
        let pick = |text: &str, env: &Environment, flags: &Overrides| {
            let config = resolve_text(text, env, flags).unwrap();
            let source = config.provenance.get("rerank.candidates").cloned();
            (config.rerank.candidates, source.unwrap())
        };
        assert_eq!(pick(BASE, &env(&[]), &Overrides::default()).0, 100);
        assert_eq!(
            pick(&file, &env(&[]), &Overrides::default()),
            (30, Source::File("/etc/runs/run.toml".into()))
        );
        assert_eq!(
            pick(&file, &generic, &Overrides::default()),
            (
                40,
                Source::Env("EMBED_COLLECTIONS__RERANK__CANDIDATES".to_string())
            )
        );
        assert_eq!(
            pick(&file, &generic, &flag),
            (50, Source::Flag("--candidates"))
        );
        assert_eq!(
            pick(&file, &generic, &set(&["rerank.candidates=60"])),
            (60, Source::Flag("--set"))
        );
        // --set beats a dedicated variable; a later --set beats an earlier one.
        let config = resolve_text(
            BASE,
            &env(&[("EMBED_COLLECTIONS_SPARSE", "0")]),
            &set(&["sparse.enabled=false", "sparse.enabled=true"]),
        )
        .unwrap();
        assert!(config.sparse.enabled);
        // Environment booleans as the dedicated variables take them.
        let config = resolve_text(
            BASE,
            &env(&[("EMBED_COLLECTIONS__SPARSE__ENABLED", "0")]),
            &Overrides::default(),
        )
        .unwrap();
        assert!(!config.sparse.enabled);
    }

    #[test]
    fn generic_overrides_reject_unknown_keys_bad_values_and_doubles() {
        let error = |env_pairs: &[(&str, &str)], flags: &Overrides| {
            resolve_text(BASE, &env(env_pairs), flags)
                .unwrap_err()
                .to_string()
        };
        let message = error(&[], &set(&["rerank.topk=5"]));
        assert!(
            message.contains("unknown setting `rerank.topk`; did you mean `rerank.top_k`?"),
            "{message}"
        );
        let message = error(&[], &set(&["dense.max_terms=5"]));
        assert!(message.contains("`sparse.max_terms`"), "{message}");
        let message = error(&[], &set(&["fusion.rrf_k=abc"]));
        assert!(
            message.contains("fusion.rrf_k=abc (from flag:--set)") && message.contains("f64"),
            "{message}"
        );
        let message = error(&[], &set(&["gpu.precision=f64"]));
        assert!(message.contains("`f16`"), "{message}");
        let message = error(&[], &set(&["rerank.candidates"]));
        assert!(message.contains("section.key=value"), "{message}");
        let message = error(
            &[("EMBED_COLLECTIONS__RERANK__CANDIDATES", "many")],
            &Overrides::default(),
        );
        assert!(
            message.contains("env:EMBED_COLLECTIONS__RERANK__CANDIDATES")
                && message.contains("many"),
            "{message}"
        );
        let message = error(&[("EMBED_COLLECTIONS__RERANK", "1")], &Overrides::default());
        assert!(message.contains("SECTION__KEY"), "{message}");
        let message = error(
            &[("EMBED_COLLECTIONS__SHARD__SPEC", "0/2")],
            &Overrides::default(),
        );
        assert!(
            message.contains("unknown setting `shard.spec`"),
            "{message}"
        );
        let flags = Overrides {
            no_rerank: true,
            ..set(&["rerank.enabled=true"])
        };
        let message = error(&[], &flags);
        assert!(
            message.contains("rerank.enabled is set by both --no-rerank and --set"),
            "{message}"
        );
        let message = error(
            &[
                ("EMBED_COLLECTIONS_DEVICE", "cpu"),
                ("EMBED_COLLECTIONS__GPU__DEVICES", "cpu"),
            ],
            &Overrides::default(),
        );
        assert!(
            message.contains("set by both EMBED_COLLECTIONS_DEVICE"),
            "{message}"
        );
        // A cross-key check still names the key and where the value came from.
        let message = error(&[], &set(&["rerank.top_k=500"]));
        assert!(
            message.starts_with("rerank.top_k (from flag:--set)"),
            "{message}"
        );
    }

    /// The value lines of `config` output, without the origin comments.
    fn values_only(text: &str) -> Vec<String> {
        text.lines()
            .filter(|line| !line.starts_with("# Effective") && !line.starts_with("# ("))
            .map(|line| match line.find("  # ") {
                Some(at) => line[..at].to_string(),
                None => line.to_string(),
            })
            .collect()
    }

    #[test]
    fn printed_settings_fed_back_give_the_same_settings() {
        let tmp = tempfile::tempdir().unwrap();
        // Every key away from its default, from every kind of layer.
        let assignments: Vec<String> = keys::SETTINGS
            .iter()
            // serve.api_key is never printed (so it cannot round-trip), and it excludes
            // serve.api_key_file.
            .filter(|s| {
                s.key != "rerank.candidates"
                    && s.key != "sparse.enabled"
                    && s.key != "serve.api_key"
            })
            .map(|s| format!("{}={}", s.key, s.example))
            .collect();
        let assignments: Vec<&str> = assignments.iter().map(String::as_str).collect();
        let flags = Overrides {
            candidates: Some(70),
            ..set(&assignments)
        };
        let first =
            resolve_text(BASE, &env(&[("EMBED_COLLECTIONS_SPARSE", "off")]), &flags).unwrap();
        let printed = show::effective_toml(&first).unwrap();
        assert!(
            printed.contains("candidates = 70  # flag:--candidates"),
            "{printed}"
        );
        assert!(
            printed.contains("enabled = false  # env:EMBED_COLLECTIONS_SPARSE"),
            "{printed}"
        );
        assert!(printed.contains("top_k = 10  # flag:--set"), "{printed}");

        let saved = tmp.path().join("elsewhere/effective.toml");
        std::fs::create_dir_all(saved.parent().unwrap()).unwrap();
        std::fs::write(&saved, &printed).unwrap();
        let again = resolve(Some(&saved), &env(&[]), &Overrides::default()).unwrap();
        let reprinted = show::effective_toml(&again).unwrap();
        assert_eq!(values_only(&reprinted), values_only(&printed));
        assert!(reprinted.contains(&format!("# file:{}", saved.display())));

        // Defaults and unset values round-trip too.
        let plain = resolve_text(BASE, &env(&[]), &Overrides::default()).unwrap();
        let printed = show::effective_toml(&plain).unwrap();
        assert!(
            printed.contains("# max_terms: not set, so all  # default"),
            "{printed}"
        );
        std::fs::write(&saved, &printed).unwrap();
        let again = resolve(Some(&saved), &env(&[]), &Overrides::default()).unwrap();
        assert_eq!(
            values_only(&show::effective_toml(&again).unwrap()),
            values_only(&printed)
        );
    }
}
