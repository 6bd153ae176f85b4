//! Property tests (fuzzing on the stable toolchain) for everything that parses what users
//! hand us: the chunk readers (JSONL, JSON, BEIR directories), the query and qrels readers,
//! and the configuration from a file, `--set` and `EMBED_COLLECTIONS__…` variables.
//!
//! Each property: no panic, whatever the bytes; an error names the file it is about; under
//! the `skip` policy a chunk file always reads, every non-blank line either a chunk or a
//! counted skip (nothing lost silently). Inputs are arbitrary bytes and, because random
//! bytes rarely get past the JSON parser, JSON built from a grammar with the fields the
//! readers look at. Every file under `tests/fuzz-corpus/<target>/` (earlier findings and
//! tricky cases) goes through the same checks on every run.
//!
//! CI runs proptest's default 256 cases per property (a few seconds each). Longer by hand:
//! `PROPTEST_CASES=20000 cargo test --release --test fuzz`.

use embed_collections::config::{self, Environment, Overrides};
use embed_collections::eval::read_qrels;
use embed_collections::input::{
    discover_collections, read_collection, read_queries, Collection, InputFormat,
    InvalidInputPolicy,
};
use proptest::prelude::*;
use std::path::{Path, PathBuf};

fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz-corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("{}: {err}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} holds no cases", dir.display());
    files
}

/// A chunk file with `bytes` is read under both policies without a panic; errors name it;
/// under `skip` it always reads, and for JSONL every non-blank line is a chunk or a skip.
fn check_chunk_file(bytes: &[u8], extension: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("fuzzed.{extension}"));
    std::fs::write(&path, bytes).unwrap();
    let collection = Collection {
        name: "fuzzed".to_string(),
        files: vec![path.clone()],
        dir: None,
    };
    if let Err(err) = read_collection(&collection, InvalidInputPolicy::Error) {
        let message = err.to_string();
        assert!(
            message.contains("fuzzed."),
            "error without its file: {message}"
        );
    }
    let read = read_collection(&collection, InvalidInputPolicy::Skip)
        .unwrap_or_else(|err| panic!("skip policy failed: {err}"));
    if extension == "jsonl" {
        let lines = bytes
            .strip_prefix(b"\xEF\xBB\xBF")
            .unwrap_or(bytes)
            .split(|b| *b == b'\n')
            .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
            .count();
        assert_eq!(
            read.chunks.len() + read.skipped.total(),
            lines,
            "every non-blank line is a chunk or a counted skip"
        );
    }
    for chunk in &read.chunks {
        assert!(!chunk.id.as_str().is_empty());
        assert!(serde_json::to_string(&chunk.metadata).is_ok());
    }
}

/// The same bytes as a BEIR dataset directory's `corpus.jsonl`, found by discovery.
fn check_beir_dir(bytes: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let dataset = dir.path().join("beir");
    std::fs::create_dir_all(dataset.join("qrels")).unwrap();
    std::fs::write(dataset.join("corpus.jsonl"), bytes).unwrap();
    std::fs::write(dataset.join("queries.jsonl"), bytes).unwrap();
    std::fs::write(dataset.join("qrels/test.tsv"), bytes).unwrap();
    let found = discover_collections(dir.path(), None, &InputFormat::ALL).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].files, [dataset.join("corpus.jsonl")]);
    read_collection(&found[0], InvalidInputPolicy::Skip).unwrap();
    check_queries_and_qrels(bytes);
}

fn check_queries_and_qrels(bytes: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let queries = dir.path().join("fuzzed-queries.jsonl");
    std::fs::write(&queries, bytes).unwrap();
    if let Err(err) = read_queries(&queries) {
        assert!(err.to_string().contains("fuzzed-queries.jsonl"), "{err}");
    }
    let qrels = dir.path().join("fuzzed-qrels.tsv");
    std::fs::write(&qrels, bytes).unwrap();
    if let Err(err) = read_qrels(&qrels) {
        assert!(err.to_string().contains("fuzzed-qrels.tsv"), "{err}");
    }
}

/// A config file with `text`, plus `--set` and environment settings: resolving never panics,
/// and a bad one is an error (a good one resolves to something `config` can print).
fn check_config(text: &[u8], sets: &[String], env: &[(String, String)]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fuzzed.toml");
    std::fs::write(&path, text).unwrap();
    let overrides = Overrides {
        set: sets.to_vec(),
        ..Overrides::default()
    };
    let environment = Environment::from_pairs(env.iter().cloned());
    if let Ok(config) = config::resolve(Some(&path), &environment, &overrides) {
        let _ = config::show::effective_toml(&config);
    }
}

/// JSON values of the shapes the readers look at: chunk objects with id, text, title and
/// metadata fields of every type, big and odd numbers, control and invisible characters.
fn json_value() -> impl Strategy<Value = String> {
    let text = prop_oneof![
        Just(String::new()),
        Just("\\u0000\\u200b".to_string()),
        Just("\\ud800".to_string()),
        "[ -~]{0,12}".prop_map(|s| s.replace(['"', '\\'], "")),
        "\\PC{0,8}".prop_map(|s| serde_json::to_string(&s)
            .unwrap()
            .trim_matches('"')
            .to_string()),
    ];
    let leaf = prop_oneof![
        Just("null".to_string()),
        Just("true".to_string()),
        Just("123456789012345678901234567890".to_string()),
        Just("-0".to_string()),
        Just("1e400".to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| f.to_string()),
        text.prop_map(|s| format!("\"{s}\"")),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec(
                (
                    prop_oneof![
                        Just("id"),
                        Just("_id"),
                        Just("chunk_id"),
                        Just("text"),
                        Just("title"),
                        Just("metadata"),
                        Just("keywords"),
                        Just("term_weights"),
                        Just("x"),
                    ],
                    inner
                ),
                0..5
            )
            .prop_map(|fields| {
                let body: Vec<String> =
                    fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
                format!("{{{}}}", body.join(","))
            }),
        ]
    })
}

fn jsonl_lines() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            4 => json_value(),
            1 => Just(String::new()),
            1 => "[ -~]{0,20}",
        ],
        0..6,
    )
    .prop_map(|lines| lines.join("\n").into_bytes())
}

fn setting_key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("input.root".to_string()),
        Just("gpu.memory_ceiling".to_string()),
        Just("rerank.candidates".to_string()),
        Just("fusion.rrf_k".to_string()),
        Just("dense.models".to_string()),
        Just("shard.split_bytes".to_string()),
        "[a-z_.]{0,16}",
    ]
}

fn setting_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("0".to_string()),
        Just("-1".to_string()),
        Just("1KiB".to_string()),
        Just("NaN".to_string()),
        Just("99999999999999999999".to_string()),
        Just("[1, \"a\"]".to_string()),
        "\\PC{0,10}",
    ]
}

fn toml_text() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200),
        prop::collection::vec(
            prop_oneof![
                Just("[input]".to_string()),
                Just("[gpu]".to_string()),
                Just("[[dense.models]]".to_string()),
                Just("[rerank]".to_string()),
                (setting_key(), setting_value()).prop_map(|(k, v)| {
                    let key = k.rsplit('.').next().unwrap_or("").to_string();
                    format!("{key} = {v}")
                }),
                (setting_key(), setting_value()).prop_map(|(k, v)| format!(
                    "{} = \"{}\"",
                    k,
                    v.replace('"', "")
                )),
            ],
            0..8,
        )
        .prop_map(|lines| lines.join("\n").into_bytes()),
    ]
}

proptest! {
    #[test]
    fn jsonl_reader_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        check_chunk_file(&bytes, "jsonl");
    }

    #[test]
    fn jsonl_reader_on_chunk_shaped_json(bytes in jsonl_lines()) {
        check_chunk_file(&bytes, "jsonl");
    }

    #[test]
    fn json_reader_on_chunk_shaped_json(value in json_value(), wrap in 0usize..3) {
        let text = match wrap {
            0 => value,
            1 => format!("[{value}]"),
            _ => format!("{{\"chunks\": [{value}, {value}]}}"),
        };
        check_chunk_file(text.as_bytes(), "json");
    }

    #[test]
    fn json_reader_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        check_chunk_file(&bytes, "json");
    }

    #[test]
    fn beir_directory_queries_and_qrels(bytes in jsonl_lines()) {
        check_beir_dir(&bytes);
    }

    #[test]
    fn qrels_reader_on_tsv_shaped_text(
        rows in prop::collection::vec(("[ -~]{0,6}", "[ -~]{0,6}", "-?[0-9]{0,20}"), 0..5),
        header in any::<bool>(),
    ) {
        let mut text = if header { "query-id\tcorpus-id\tscore\n".to_string() } else { String::new() };
        for (q, d, s) in rows {
            text.push_str(&format!("{q}\t{d}\t{s}\n"));
        }
        check_queries_and_qrels(text.as_bytes());
    }

    #[test]
    fn config_file_set_and_environment(
        text in toml_text(),
        sets in prop::collection::vec((setting_key(), setting_value()).prop_map(|(k, v)| format!("{k}={v}")), 0..3),
        env in prop::collection::vec(
            (setting_key(), setting_value()).prop_map(|(k, v)| {
                (format!("EMBED_COLLECTIONS__{}", k.replace('.', "__").to_uppercase()), v)
            }),
            0..3,
        ),
    ) {
        check_config(&text, &sets, &env);
    }
}

#[test]
fn regression_corpus_chunk_files() {
    for file in corpus("chunks") {
        let bytes = std::fs::read(&file).unwrap();
        check_chunk_file(&bytes, "jsonl");
        check_chunk_file(&bytes, "json");
        check_beir_dir(&bytes);
    }
}

#[test]
fn regression_corpus_queries_and_qrels() {
    for file in corpus("queries-qrels") {
        check_queries_and_qrels(&std::fs::read(&file).unwrap());
    }
}

#[test]
fn regression_corpus_configs() {
    for file in corpus("config") {
        let bytes = std::fs::read(&file).unwrap();
        check_config(&bytes, &[], &[]);
        // The same text as one `--set` value and one environment variable.
        let text = String::from_utf8_lossy(&bytes).to_string();
        check_config(
            b"",
            &[format!("gpu.memory_ceiling={text}")],
            &[("EMBED_COLLECTIONS__RERANK__CANDIDATES".to_string(), text)],
        );
    }
}
