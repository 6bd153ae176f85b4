//! Run configuration: the TOML file ([`file`]), typed values ([`values`]) and the layered
//! resolver ([`resolve`]) that produces the effective [`RunConfig`] with its [`Provenance`].

pub mod file;
pub mod paths;
pub mod resolve;
pub mod values;

pub use resolve::{
    env_vars, load_file, parse_file, resolve, resolve_layers, ConfigError, DenseConfig,
    DenseModelConfig, Environment, EvalConfig, FusionConfig, GpuConfig, InputConfig, ModelsConfig,
    OutputConfig, Overrides, Provenance, RerankingConfig, RunConfig, ShardConfig, Source,
    SparseConfig, TelemetryConfig, DEFAULT_DENSE_MODEL, DEFAULT_RERANK_MODEL, DEFAULT_SPARSE_MODEL,
};
pub use values::{
    ByteSize, DeviceSpec, FusionMethod, LogFormat, Precision, ProgressMode, SparseFallback,
};

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

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
        assert_eq!(config.dense.models[0].model, resolve::DEFAULT_DENSE_MODEL);
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
            Some(&Source::Env("EMBED_COLLECTIONS_SPARSE"))
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
    fn missing_input_root_says_how_to_set_it() {
        let err =
            resolve_layers(None, Default::default(), &env(&[]), &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("--input"), "{err}");
    }
}
