//! Hostile but fair input through the real binary and the real models: a model that produces
//! NaN, names that would leave the output directory, a huge chunk, output and model problems
//! found before any model runs, and the weak spots (exit code of a partial run, discovery of
//! selected collections past broken entries, tokenizer logging at trace level, environment
//! variables that are not UTF-8).

mod util;

use embed_collections::models::tokenize::TextTokenizer;
use std::path::Path;
use util::{
    binary, copy_dir, manifest, models_dir, poisoned_copy, read_jsonl, run, stderr,
    stdout_and_stderr,
};

const MINILM: &str = "sentence-transformers/all-MiniLM-L6-v2";
const SPLADE: &str = "splade-tiny";
const CROSS_ENCODER: &str = "cross-encoder/ms-marco-MiniLM-L-12-v2";

/// A word no other chunk or query uses: its token's embedding row is what gets poisoned.
const POISONED_WORD: &str = "zebra";

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn chunks(ids_and_texts: &[(&str, &str)]) -> String {
    ids_and_texts
        .iter()
        .map(|(id, text)| format!("{}\n", serde_json::json!({"id": id, "text": text})))
        .collect()
}

fn dense_only(command: &mut std::process::Command) -> &mut std::process::Command {
    command.args(["--no-sparse", "--no-rerank", "--device", "cpu"])
}

/// Finding 1: a NaN inside an otherwise valid model. Every stage detects it per item: the
/// dense chunks holding the word fail alone (no point, ids in the manifest, run partial, exit
/// 4), SPLADE falls back for them (counted as non-finite), and the CrossEncoder fails the
/// query whose pairs hold it while the other query is reranked; no `null` anywhere, never
/// status ok.
#[test]
fn a_model_producing_nan_fails_the_items_it_touches_alone_and_never_writes_null() {
    let tmp = tempfile::tempdir().unwrap();
    let poisoned = tmp.path().join("poisoned");
    for reference in [MINILM, SPLADE, CROSS_ENCODER] {
        poisoned_copy(reference, &poisoned, POISONED_WORD);
    }
    let corpus = [
        (
            "a",
            "Vitamin D supplements and bone health in older adults.",
        ),
        ("b", "The zebra has black and white stripes."),
        ("c", "Insulin resistance is associated with obesity."),
        ("d", "Sparse retrieval with learned term weights."),
        ("e", "A zebra crossing helps pedestrians."),
        ("f", "Rerankers score query and passage pairs jointly."),
    ];
    write(&tmp.path().join("in/docs.jsonl"), &chunks(&corpus));
    let out = tmp.path().join("out");
    let output = run(
        binary()
            .env("EMBED_COLLECTIONS_MODELS_DIR", &poisoned)
            .arg("--input")
            .arg(tmp.path().join("in"))
            .arg("--output")
            .arg(&out)
            .args(["--device", "cpu", "--no-rerank", "-q"]),
        false,
    );
    assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
    let points = std::fs::read_to_string(out.join("docs/points.jsonl")).unwrap();
    assert!(!points.contains("null"), "no null in any vector");
    let ids: Vec<String> = read_jsonl(&out.join("docs/points.jsonl"))
        .iter()
        .map(|p| p["payload"]["chunk_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["a", "c", "d", "f"]);
    let manifest = manifest(&out);
    assert_eq!(manifest["status"], "partial");
    let collection = &manifest["collections"][0];
    assert_eq!(collection["status"], "partial");
    assert_eq!(collection["failed_chunks"], 2);
    assert_eq!(
        collection["failed_chunk_ids"],
        serde_json::json!(["b", "e"])
    );
    let text = serde_json::to_string(&manifest).unwrap();
    assert!(
        text.contains("non_finite"),
        "SPLADE's non-finite fallbacks are counted: {text}"
    );
    let metrics = std::fs::read_to_string(out.join("metrics.prom")).unwrap();
    assert!(
        metrics.contains("embed_collections_run_success 0"),
        "{metrics}"
    );

    // Only the CrossEncoder poisoned: the query holding the word fails rerank, the other is
    // reranked.
    let rerank_only = tmp.path().join("rerank-only");
    for reference in [MINILM, SPLADE] {
        copy_dir(&models_dir().join(reference), &rerank_only.join(reference));
    }
    copy_dir(
        &poisoned.join(CROSS_ENCODER),
        &rerank_only.join(CROSS_ENCODER),
    );
    let queries = tmp.path().join("queries.jsonl");
    write(
        &queries,
        "{\"_id\": \"q1\", \"text\": \"bone health vitamin\"}\n{\"_id\": \"q2\", \"text\": \"zebra stripes\"}\n",
    );
    let out = tmp.path().join("out-rerank");
    let output = run(
        binary()
            .env("EMBED_COLLECTIONS_MODELS_DIR", &rerank_only)
            .arg("--input")
            .arg(tmp.path().join("in"))
            .arg("--output")
            .arg(&out)
            .arg("--queries")
            .arg(&queries)
            .args([
                "--device",
                "cpu",
                "--candidates",
                "2",
                "--set",
                "rerank.top_k=2",
                "-q",
            ]),
        false,
    );
    assert_ne!(output.status.code(), Some(0), "{}", stderr(&output));
    let ranked = read_jsonl(&out.join("docs/rerank.jsonl"));
    let q1 = ranked.iter().find(|r| r["query_id"] == "q1").unwrap();
    assert_eq!(q1["status"], "ok", "{q1}");
    assert!(q1["candidates"][0]["rerank_logit"].is_f64(), "{q1}");
    let q2 = ranked.iter().find(|r| r["query_id"] == "q2").unwrap();
    assert_ne!(q2["status"], "ok", "{q2}");
    let text = std::fs::read_to_string(out.join("docs/rerank.jsonl")).unwrap();
    assert!(!text.contains("null"), "{text}");
    assert_ne!(self::manifest(&out)["status"], "ok");
}

/// Issue 29, finding 6: a collection in which every chunk failed (a model producing NaN
/// everywhere) was reported `partial` with 0 points. It is `failed`, and a run whose only
/// collection failed exits 1, as documented.
#[test]
fn a_collection_whose_every_chunk_failed_is_failed_not_partial() {
    let tmp = tempfile::tempdir().unwrap();
    let poisoned = tmp.path().join("poisoned");
    poisoned_copy(MINILM, &poisoned, POISONED_WORD);
    let corpus = [
        ("a", "The zebra has black and white stripes."),
        ("b", "A zebra crossing helps pedestrians."),
    ];
    write(&tmp.path().join("in/docs.jsonl"), &chunks(&corpus));
    let out = tmp.path().join("out");
    let output = run(
        dense_only(
            binary()
                .env("EMBED_COLLECTIONS_MODELS_DIR", &poisoned)
                .arg("--input")
                .arg(tmp.path().join("in"))
                .arg("--output")
                .arg(&out)
                .arg("-q"),
        ),
        false,
    );
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let manifest = manifest(&out);
    assert_eq!(manifest["status"], "failed", "{manifest}");
    let collection = &manifest["collections"][0];
    assert_eq!(collection["status"], "failed", "{collection}");
    assert_eq!(collection["failure"], "model", "{collection}");
    assert_eq!(collection["failed_chunks"], 2, "{collection}");
    assert!(
        collection["error"]
            .as_str()
            .is_some_and(|e| e.contains("every chunk (2) failed")),
        "{collection}"
    );
    assert!(
        !out.join("docs/points.jsonl").exists(),
        "no empty points file left looking like an output"
    );
}

/// Finding 2: names that would leave the output directory or collide with the run's files are
/// refused at discovery (exit 3, the file named), before any model loads.
#[test]
fn collection_names_that_escape_or_collide_are_refused_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let good = chunks(&[("a", "some text")]);

    // A flat input file named `...jsonl` would be the collection `..`.
    let dots = tmp.path().join("flat/...jsonl");
    write(&dots, &good);
    let out = tmp.path().join("flat/out");
    let output = run(
        dense_only(binary().arg("--input").arg(&dots).arg("--output").arg(&out)),
        false,
    );
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(stderr(&output).contains("...jsonl"), "{}", stderr(&output));
    assert!(stderr(&output).contains("cannot be a collection name"));
    assert!(
        !tmp.path().join("flat/points.jsonl").exists(),
        "nothing written outside"
    );

    // A collection directory named like the run's own files, or with a newline in its name.
    for name in [
        "manifest.json",
        "metrics.prom",
        "shard-0-of-2",
        "two\nlines",
    ] {
        let root = tmp.path().join(format!("named-{}", name.len()));
        write(&root.join(name).join("a.jsonl"), &good);
        let output = run(
            dense_only(
                binary()
                    .arg("--input")
                    .arg(&root)
                    .arg("--output")
                    .arg(root.join("out")),
            ),
            false,
        );
        assert_eq!(
            output.status.code(),
            Some(3),
            "{name:?}: {}",
            stderr(&output)
        );
        let message = stderr(&output);
        assert!(
            message.contains("cannot be a collection name"),
            "{name:?}: {message}"
        );
        assert!(
            !message.contains("two\nlines"),
            "the name is escaped in the error: {message}"
        );
        assert!(!root.join("out").join(name).join("points.jsonl").exists());
    }
}

/// Finding 3: one huge chunk is cut before tokenisation, to a prefix that tokenises to the
/// same ids as the whole text (checked against the tokenizers library on the whole text).
#[test]
fn a_huge_text_tokenises_to_the_ids_of_the_whole_text() {
    let tokenizer_file = models_dir().join(MINILM).join("tokenizer.json");
    let ours = TextTokenizer::load(&tokenizer_file, 256).unwrap();
    let mut reference = tokenizers::Tokenizer::from_file(&tokenizer_file).unwrap();
    reference.with_padding(None);
    reference
        .with_truncation(Some(tokenizers::TruncationParams {
            max_length: 256,
            ..Default::default()
        }))
        .unwrap();
    let words = "Insulin resistance is associated with obesity and type 2 diabetes in cohorts. ";
    let cases = [
        // Ordinary prose, 4 MB.
        words.repeat(50_000),
        // Long whitespace runs: the first prefix holds too few tokens and is grown.
        format!("{}{}", "word     ".repeat(100), " ".repeat(20_000)).repeat(50) + &words.repeat(10),
        // No whitespace at all (CJK): cut at a character boundary.
        "糖尿病と肥満の関係".repeat(100_000),
    ];
    for text in &cases {
        let ours = ours.encode_batch(&[text.as_str()]).unwrap();
        let whole = reference.encode(text.as_str(), true).unwrap();
        assert_eq!(
            ours[0].ids,
            whole.get_ids(),
            "ids of a {}-byte text",
            text.len()
        );
        assert!(ours[0].truncated, "the cut is counted as truncation");
        assert_eq!(ours[0].ids.len(), 256);
    }
    // A short text is untouched.
    let short = ours.encode_batch(&["short text"]).unwrap();
    assert!(!short[0].truncated);
}

/// Finding 3, end to end: a 20 MB chunk gets the vector of its first 300 words (both are
/// truncated by the tokenizer at the model's max length; only the first is cut beforehand).
#[test]
fn a_huge_chunk_gets_the_vector_of_its_beginning() {
    let tmp = tempfile::tempdir().unwrap();
    let sentence = "Vitamin D supplements and bone health in older adults were studied. ";
    let huge = sentence.repeat(300_000);
    let beginning = sentence.repeat(30);
    write(
        &tmp.path().join("in/docs.jsonl"),
        &chunks(&[("huge", &huge), ("beginning", &beginning)]),
    );
    let out = tmp.path().join("out");
    run(
        dense_only(
            binary()
                .arg("--input")
                .arg(tmp.path().join("in"))
                .arg("--output")
                .arg(&out)
                .arg("-q"),
        ),
        true,
    );
    let points = read_jsonl(&out.join("docs/points.jsonl"));
    assert_eq!(points.len(), 2);
    let vector = |point: &serde_json::Value| point["vector"].as_object().unwrap().clone();
    assert_eq!(vector(&points[0]), vector(&points[1]));
}

/// Finding 4: a file where a collection's directory goes fails the run before any model
/// loads; `check` finds it too, and a truncated weights file and a ceiling below the weights.
#[test]
fn output_and_model_problems_are_found_before_any_model_runs() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        &tmp.path().join("in/docs.jsonl"),
        &chunks(&[("a", "some text")]),
    );
    let out = tmp.path().join("out");
    write(
        &out.join("docs"),
        "a file where the collection's directory goes",
    );
    let base = |command: &mut std::process::Command, check: bool| {
        if check {
            command.arg("check");
        }
        command
            .arg("--input")
            .arg(tmp.path().join("in"))
            .arg("--output")
            .arg(&out)
            .args(["--no-sparse", "--no-rerank", "--device", "cpu"]);
    };
    let mut command = binary();
    base(&mut command, false);
    let output = run(&mut command, false);
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(message.contains("cannot start the run"), "{message}");
    assert!(
        message.contains("it is a file, not a directory"),
        "{message}"
    );
    assert_eq!(manifest(&out)["status"], "failed");
    assert!(manifest(&out)["models"]
        .as_array()
        .is_none_or(|m| m.is_empty()));

    let mut command = binary();
    base(&mut command, true);
    let output = run(&mut command, false);
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(stdout.contains("it is a file, not a directory"), "{stdout}");
    std::fs::remove_file(out.join("docs")).unwrap();

    // A truncated weights file, and a max length beyond the model's positions.
    let models = tmp.path().join("models");
    copy_dir(&models_dir().join(MINILM), &models.join(MINILM));
    let weights = models.join(MINILM).join("model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
    let mut command = binary();
    base(&mut command, true);
    let output = run(command.env("EMBED_COLLECTIONS_MODELS_DIR", &models), false);
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        stdout.contains("model.safetensors: not a valid safetensors file"),
        "{stdout}"
    );

    // A ceiling below the weights, in check and in the run (which then loads nothing).
    for check in [true, false] {
        let mut command = binary();
        base(&mut command, check);
        let output = run(command.args(["--memory-ceiling", "1KiB"]), false);
        let all = stdout_and_stderr(&output);
        assert!(
            all.contains("gpu.memory_ceiling 1024B is less than the model needs"),
            "{all}"
        );
    }
}

/// Finding 5: a configured max length beyond the model's positions is an error, not a clamp.
#[test]
fn a_max_length_beyond_the_models_positions_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        &tmp.path().join("in/docs.jsonl"),
        &chunks(&[("a", "some text")]),
    );
    let config = tmp.path().join("run.toml");
    write(
        &config,
        &format!(
            "[input]\nroot = \"in\"\n[output]\ndir = \"out\"\n[[dense.models]]\nmodel = \"{MINILM}\"\nmax_length = 100000\n[sparse]\nenabled = false\n[rerank]\nenabled = false\n[gpu]\ndevices = \"cpu\"\n"
        ),
    );
    for check in [true, false] {
        let mut command = binary();
        if check {
            command.arg("check");
        }
        let output = run(command.arg("--config").arg(&config), false);
        let all = stdout_and_stderr(&output);
        assert!(
            all.contains("max_length 100000 is more than the model's 512 position embeddings"),
            "{all}"
        );
    }
}

/// An architecture we do not implement (here a DeBERTa-v2 config over BERT-named weights,
/// which would otherwise load and give wrong vectors) is refused by name, in check and in a run,
/// before any model runs.
#[test]
fn an_unimplemented_architecture_is_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        &tmp.path().join("in/docs.jsonl"),
        &chunks(&[("a", "some text")]),
    );
    let models = tmp.path().join("models");
    copy_dir(&models_dir().join(MINILM), &models.join(MINILM));
    let config_path = models.join(MINILM).join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config_path).unwrap()).unwrap();
    config["model_type"] = "deberta-v2".into();
    config["architectures"] = serde_json::json!(["DebertaV2Model"]);
    std::fs::write(&config_path, config.to_string()).unwrap();
    for check in [true, false] {
        let mut command = binary();
        if check {
            command.arg("check");
        }
        let output = run(
            command
                .arg("--input")
                .arg(tmp.path().join("in"))
                .arg("--output")
                .arg(tmp.path().join("out"))
                .args(["--no-sparse", "--no-rerank", "--device", "cpu"])
                .env("EMBED_COLLECTIONS_MODELS_DIR", &models),
            false,
        );
        let all = stdout_and_stderr(&output);
        assert!(
            all.contains(r#"model_type "deberta-v2" (DebertaV2Model): this architecture is not implemented; supported: bert (BertModel"#),
            "{all}"
        );
        assert!(!tmp.path().join("out/docs/points.jsonl").exists());
    }
}

/// Finding 5: a partial run (one collection's input bad, another done) exits 4, as documented.
#[test]
fn a_partial_run_exits_4() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        &tmp.path().join("in/good.jsonl"),
        &chunks(&[("a", "some text")]),
    );
    write(
        &tmp.path().join("in/bad.jsonl"),
        "{\"id\": \"b\", \"text\": \n",
    );
    let out = tmp.path().join("out");
    let output = run(
        dense_only(
            binary()
                .arg("--input")
                .arg(tmp.path().join("in"))
                .arg("--output")
                .arg(&out)
                .arg("-q"),
        ),
        false,
    );
    assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
    assert_eq!(manifest(&out)["status"], "partial");
}

/// Finding 5: broken entries elsewhere under the root do not stop `--collections good`.
#[test]
fn selected_collections_run_past_a_symlink_loop_elsewhere() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("in");
    write(&root.join("good.jsonl"), &chunks(&[("a", "some text")]));
    write(&root.join("other/a.jsonl"), &chunks(&[("b", "more text")]));
    std::os::unix::fs::symlink("loop", root.join("other/loop")).unwrap();
    std::os::unix::fs::symlink("selfie", root.join("selfie")).unwrap();
    let out = tmp.path().join("out");
    let with = |only: Option<&str>| {
        let mut command = binary();
        dense_only(
            command
                .arg("--input")
                .arg(&root)
                .arg("--output")
                .arg(&out)
                .arg("-q"),
        );
        if let Some(only) = only {
            command.args(["--collections", only]);
        }
        command.output().unwrap()
    };
    let output = with(Some("good"));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(read_jsonl(&out.join("good/points.jsonl")).len(), 1);
    // Without a selection every entry counts, and the loop is named.
    let output = with(None);
    assert_eq!(output.status.code(), Some(3));
    let message = stderr(&output);
    assert!(
        message.contains("Too many levels of symbolic links"),
        "{message}"
    );
}

/// Finding 5: at RUST_LOG=trace the tokenizers library would log every character of a chunk.
#[test]
fn trace_logging_never_shows_chunk_text() {
    let tmp = tempfile::tempdir().unwrap();
    let secret = "Quixotically";
    write(
        &tmp.path().join("in/docs.jsonl"),
        &chunks(&[("a", &format!("{secret} xylophones"))]),
    );
    for filter in ["trace", "tokenizers=trace,trace"] {
        let output = run(
            dense_only(
                binary()
                    .env("RUST_LOG", filter)
                    .arg("--input")
                    .arg(tmp.path().join("in"))
                    .arg("--output")
                    .arg(tmp.path().join("out")),
            ),
            true,
        );
        let logs = stderr(&output);
        assert!(logs.contains("DEBUG"), "debug and trace logging are on");
        for leak in [
            secret,
            "xylophones",
            "Replacing char 'Q'",
            "Replacing char 'x'",
        ] {
            assert!(!logs.contains(leak), "{filter}: {leak:?} in the logs");
        }
    }
}

#[test]
fn non_utf8_environment_variables_never_panic() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let tmp = tempfile::tempdir().unwrap();
    let not_utf8 = OsStr::from_bytes(b"caf\xe9");
    // Someone else's variable: none of our business, so the command runs.
    let output = run(
        binary()
            .current_dir(tmp.path())
            .args(["config", "--input", ".", "--output", "out"])
            .env("SOMEONE_ELSES_VARIABLE", not_utf8),
        true,
    );
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("[output]"),
        "{}",
        stdout_and_stderr(&output)
    );
    // One of ours: refused by name as a configuration error, not read as something else.
    let output = run(
        binary()
            .current_dir(tmp.path())
            .args(["config", "--input", "."])
            .env("EMBED_COLLECTIONS_OUTPUT", not_utf8),
        false,
    );
    let message = stdout_and_stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{message}");
    assert!(
        message.contains("environment variable EMBED_COLLECTIONS_OUTPUT is not valid UTF-8"),
        "{message}"
    );
    assert!(!message.contains("panicked"), "{message}");
}
