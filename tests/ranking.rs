//! Retrieval, fusion, rerank and evaluation end to end on small real-model runs.

mod util;

use embed_collections::config::{self, DeviceSpec, Environment, Overrides};
use embed_collections::dispatch::Fault;
use embed_collections::models::ModelManager;
use embed_collections::pipeline::BatchRunner;
use serde_json::Value;
use std::path::{Path, PathBuf};
use util::{models_dir, read_jsonl};

/// A collection of 12 short chunks on distinct topics, and 3 queries with known answers.
fn fixture(root: &Path, with_queries: bool) {
    let dir = root.join("in/topics");
    std::fs::create_dir_all(&dir).unwrap();
    let topics = [
        ("berlin", "Berlin", "Berlin is the capital of Germany and has a population of about 3.7 million people."),
        ("insulin", "Insulin", "Insulin is a hormone made by the pancreas that lets cells take up glucose from the blood."),
        ("volcano", "Volcanoes", "A volcano is a rupture in the crust where lava, ash and gases escape from a magma chamber."),
        ("rust", "Rust language", "Rust is a programming language focused on memory safety without garbage collection."),
        ("coffee", "Coffee", "Coffee is brewed from roasted coffee beans, the seeds of berries from Coffea plants."),
        ("tides", "Tides", "Tides are the rise and fall of sea levels caused by the gravity of the Moon and the Sun."),
        ("photosynthesis", "Photosynthesis", "Photosynthesis lets plants turn light, water and carbon dioxide into sugar and oxygen."),
        ("chess", "Chess", "Chess is a board game for two players on a checkered board with sixty-four squares."),
        ("vaccines", "Vaccines", "Vaccines train the immune system to recognise a pathogen without causing the disease."),
        ("bridges", "Suspension bridges", "A suspension bridge hangs its deck from cables strung between towers."),
        ("jazz", "Jazz", "Jazz is a music genre that originated in New Orleans with swing and improvisation."),
        ("glaciers", "Glaciers", "Glaciers are dense bodies of ice that move slowly under their own weight."),
    ];
    let lines: Vec<String> = topics
        .iter()
        .map(|(id, title, text)| {
            serde_json::json!({"_id": id, "title": title, "text": text}).to_string()
        })
        .collect();
    std::fs::write(dir.join("corpus.jsonl"), lines.join("\n") + "\n").unwrap();
    if with_queries {
        let queries = [
            ("q1", "how many people live in berlin"),
            ("q2", "which hormone controls blood sugar"),
            ("q3", "what makes the sea level rise and fall"),
        ];
        let lines: Vec<String> = queries
            .iter()
            .map(|(id, text)| serde_json::json!({"_id": id, "text": text}).to_string())
            .collect();
        std::fs::write(dir.join("queries.jsonl"), lines.join("\n") + "\n").unwrap();
        std::fs::create_dir_all(dir.join("qrels")).unwrap();
        std::fs::write(
            dir.join("qrels/test.tsv"),
            "query-id\tcorpus-id\tscore\r\nq1\tberlin\t1\r\nq2\tinsulin\t1\r\nq3\ttides\t1\r\n",
        )
        .unwrap();
    }
}

fn run(
    root: &Path,
    config_text: &str,
    build: impl FnOnce(BatchRunner) -> BatchRunner,
) -> (PathBuf, Value) {
    let config_path = root.join("run.toml");
    std::fs::write(&config_path, config_text).unwrap();
    let flags = Overrides {
        input: Some(root.join("in")),
        output: Some(root.join("out")),
        device: Some(DeviceSpec::Cpu),
        models_dir: Some(models_dir()),
        ..Overrides::default()
    };
    let env = Environment::from_pairs([("HOME", "/nonexistent")]);
    let config = config::resolve(Some(&config_path), &env, &flags).unwrap();
    let manager = ModelManager::new(models_dir(), root.join("hf"), true);
    build(BatchRunner::new(config, manager)).run().unwrap();
    let out = root.join("out");
    let manifest =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    (out, manifest)
}

#[test]
fn full_ranking_reranks_every_query_and_evaluates_each_list() {
    let tmp = tempfile::tempdir().unwrap();
    fixture(tmp.path(), true);
    // The CrossEncoder's order alone (the default blends it with the fused order).
    let config = "[rerank]\ncandidates = 4\ntop_k = 3\nblend = \"replace\"\n";
    let (out, manifest) = run(tmp.path(), config, |r| r);
    let lines = read_jsonl(&out.join("topics/rerank.jsonl"));
    assert_eq!(lines.len(), 3);
    let expected = ["berlin", "insulin", "tides"];
    for (line, answer) in lines.iter().zip(expected) {
        assert_eq!(line["status"], "ok");
        assert_eq!(line["source"], "file");
        assert_eq!(line["query_sha256"].as_str().unwrap().len(), 64);
        let candidates = line["candidates"].as_array().unwrap();
        assert_eq!(candidates.len(), 3, "top_k kept");
        assert_eq!(
            candidates[0]["chunk_id"], answer,
            "the right chunk ranks first"
        );
        let logits: Vec<f64> = candidates
            .iter()
            .map(|c| c["rerank_logit"].as_f64().unwrap())
            .collect();
        assert!(
            logits.windows(2).all(|w| w[0] >= w[1]),
            "ordered by rerank logit: {logits:?}"
        );
        for (rank, c) in candidates.iter().enumerate() {
            assert_eq!(c["rank"], rank + 1);
            assert!(
                c["fused_rank"].as_u64().unwrap() <= 4,
                "only the top candidates are reranked"
            );
            assert_eq!(c["rerank_score"], c["rerank_logit"], "identity activation");
        }
    }
    let text = std::fs::read_to_string(out.join("topics/rerank.jsonl")).unwrap();
    assert!(
        !text.contains("hormone"),
        "query text must never be written"
    );

    let collection = &manifest["collections"][0];
    assert_eq!(collection["ranking"]["queries"], 3);
    assert_eq!(collection["ranking"]["failed_queries"], 0);
    assert!(collection["ranking"]["fusion"]
        .as_str()
        .unwrap()
        .starts_with("rrf k=60"));
    assert_eq!(
        collection["stages"]["rerank"]["runs"][0]["items"], 12,
        "3 queries × 4 candidates"
    );
    let lists = &collection["evaluation"]["lists"];
    for list in ["dense", "sparse", "fused", "reranked"] {
        assert_eq!(lists[list]["queries"], 3, "{list}");
    }
    assert_eq!(lists["reranked"]["mrr_at_10"], 1.0);
    assert!(collection["evaluation"]["qrels"]
        .as_str()
        .unwrap()
        .ends_with("qrels/test.tsv"));
    assert!(manifest["models"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["role"] == "rerank"));
}

#[test]
fn forced_rerank_failure_marks_the_query_failed_without_scores() {
    let tmp = tempfile::tempdir().unwrap();
    fixture(tmp.path(), true);
    // Every pair batch that holds query 1 runs out of memory, even alone: halving isolates it,
    // the others pass.
    let (out, manifest) = run(tmp.path(), "[rerank]\ncandidates = 4\ntop_k = 3\n", |r| {
        r.with_rerank_fault(Box::new(|queries: &[usize]| {
            queries.contains(&1).then_some(Fault::OutOfMemory)
        }))
    });
    let lines = read_jsonl(&out.join("topics/rerank.jsonl"));
    assert_eq!(lines[0]["status"], "ok");
    assert_eq!(lines[2]["status"], "ok");
    assert_eq!(lines[1]["status"], "failed");
    assert!(lines[1]["reason"]
        .as_str()
        .unwrap()
        .contains("rerank failed"));
    for candidate in lines[1]["candidates"].as_array().unwrap() {
        assert!(
            candidate.get("rerank_logit").is_none(),
            "no invented scores"
        );
        assert!(
            candidate.get("fused_rank").is_some(),
            "the real fused list is kept"
        );
    }
    let collection = &manifest["collections"][0];
    assert_eq!(collection["ranking"]["failed_queries"], 1);
    assert_eq!(
        collection["status"], "partial",
        "a failed query is a part not done: the collection is partial, not ok and not failed"
    );
    assert!(manifest["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|w| w.as_str().unwrap().contains("1 of 3 queries failed")));
}

#[test]
fn probe_mode_without_queries_checks_the_models() {
    let tmp = tempfile::tempdir().unwrap();
    fixture(tmp.path(), false);
    let (out, manifest) = run(
        tmp.path(),
        "[rerank]\nenabled = false\nprobe_queries = 8\n",
        |r| r,
    );
    let lines = read_jsonl(&out.join("topics/rerank.jsonl"));
    assert_eq!(lines.len(), 8);
    for line in &lines {
        assert_eq!(line["source"], "probe");
        assert_eq!(line["status"], "fused");
        let target = line["target_chunk_id"].as_str().unwrap();
        assert_eq!(line["query_id"], format!("probe:{target}"));
    }
    let collection = &manifest["collections"][0];
    assert_eq!(collection["ranking"]["queries_source"], "probe");
    assert_eq!(collection["evaluation"]["qrels"], "probe");
    // Titles find their own chunk among 12 distinct topics: a broken model would not.
    let dense = &collection["evaluation"]["lists"]["dense"];
    assert!(dense["recall_at_100"].as_f64().unwrap() == 1.0);
    assert!(dense["mrr_at_10"].as_f64().unwrap() > 0.8, "{dense}");
    assert_eq!(collection["stages"]["rerank"]["status"], "disabled");
}

/// Left to its default, the probe is sized to the collection: 12 chunks get the minimum of 4
/// queries (`config::probe_budget`), the same 4 a larger sample would start with.
#[test]
fn the_default_probe_is_sized_to_the_collection() {
    let tmp = tempfile::tempdir().unwrap();
    fixture(tmp.path(), false);
    let (out, _) = run(tmp.path(), "[rerank]\nenabled = false\n", |r| r);
    let sized: Vec<_> = read_jsonl(&out.join("topics/rerank.jsonl"))
        .iter()
        .map(|line| line["query_id"].clone())
        .collect();
    assert_eq!(sized.len(), embed_collections::config::PROBE_QUERIES_MIN);
    let tmp = tempfile::tempdir().unwrap();
    fixture(tmp.path(), false);
    let (out, _) = run(
        tmp.path(),
        "[rerank]\nenabled = false\nprobe_queries = 8\n",
        |r| r,
    );
    let eight: Vec<_> = read_jsonl(&out.join("topics/rerank.jsonl"))
        .iter()
        .map(|line| line["query_id"].clone())
        .collect();
    assert_eq!(eight.len(), 8);
    assert_eq!(
        sized[..],
        eight[..4],
        "a smaller probe is the start of a larger one"
    );
}

#[test]
fn dense_only_run_writes_no_ranked_file_but_evaluates_with_qrels() {
    let tmp = tempfile::tempdir().unwrap();
    fixture(tmp.path(), true);
    let (out, manifest) = run(
        tmp.path(),
        "[sparse]\nenabled = false\n[rerank]\nenabled = false\n",
        |r| r,
    );
    assert!(
        !out.join("topics/rerank.jsonl").exists(),
        "dense-only exports equal a run without the stages"
    );
    let collection = &manifest["collections"][0];
    let lists = collection["evaluation"]["lists"].as_object().unwrap();
    assert_eq!(lists.keys().collect::<Vec<_>>(), ["dense", "fused"]);
    assert_eq!(
        collection["ranking"]["fusion"],
        "dense only (sparse disabled)"
    );
    assert_eq!(
        lists["dense"], lists["fused"],
        "fusion degrades to the dense list"
    );
}

#[test]
fn eval_subcommand_scores_an_existing_output_directory() {
    let tmp = tempfile::tempdir().unwrap();
    fixture(tmp.path(), true);
    let (out, _) = run(tmp.path(), "[rerank]\ncandidates = 4\ntop_k = 3\n", |r| r);
    let qrels = tmp.path().join("in/topics/qrels/test.tsv");
    let output = util::run(
        util::binary()
            .arg("eval")
            .arg("--output")
            .arg(&out)
            .arg("--qrels")
            .arg(&qrels),
        true,
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        stdout.contains("topics (lists cut at 3 candidates; 0 failed queries)"),
        "{stdout}"
    );
    let final_row = stdout.lines().find(|l| l.starts_with("final")).unwrap();
    assert!(
        final_row.contains("1.0000"),
        "every answer ranks first after rerank: {final_row}"
    );

    let missing = util::run(
        util::binary()
            .arg("eval")
            .arg("--output")
            .arg(tmp.path())
            .arg("--qrels")
            .arg(&qrels),
        false,
    );
    assert_eq!(missing.status.code(), Some(3));
    assert!(util::stderr(&missing).contains("no collection with a rerank.jsonl"));
}

#[test]
fn probe_on_a_one_chunk_collection_does_not_crash() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("in/single");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("chunks.jsonl"),
        "{\"id\": \"only\", \"text\": \"A lone chunk about lighthouses. Nothing else.\"}\n",
    )
    .unwrap();
    let (out, manifest) = run(tmp.path(), "[rerank]\ntop_k = 1\ncandidates = 1\n", |r| r);
    let lines = read_jsonl(&out.join("single/rerank.jsonl"));
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["target_chunk_id"], "only");
    let lists = &manifest["collections"][0]["evaluation"]["lists"];
    for list in ["dense", "sparse", "fused", "reranked"] {
        assert_eq!(
            lists[list]["recall_at_100"], 1.0,
            "{list}: the only chunk is found"
        );
    }
}

/// `rerank.budget` on the bundled collection with file queries: a budget below the unbudgeted
/// run's overhead scores fewer pairs, records its plan, and the plan agrees with the recorded
/// times (checked from the manifest, not by timing the test).
#[test]
fn a_rerank_budget_scores_fewer_pairs_and_its_plan_agrees_with_the_recorded_times() {
    let tmp = tempfile::tempdir().unwrap();
    let collection = util::short_scifact(&tmp.path().join("in"), "scifact");
    let queries = std::fs::read_to_string(collection.join("queries.jsonl")).unwrap();
    let first: Vec<&str> = queries.lines().take(16).collect();
    std::fs::write(collection.join("queries.jsonl"), first.join("\n") + "\n").unwrap();
    let base = "[rerank]\ncandidates = 30\ntop_k = 5\nmax_length = 128\n";

    let (_, without) = run(tmp.path(), base, |r| r);
    let overhead = &without["collections"][0]["overhead"];
    assert!(
        overhead.get("rerank_budget").is_none(),
        "no budget, no plan"
    );
    assert_eq!(overhead["rerank_pairs"], 16 * 30);
    let unbudgeted = overhead["ratio"].as_f64().unwrap();
    // Between the floor's share (10 of 30 candidates) and all of it.
    let budget = 0.7 * unbudgeted;

    std::fs::remove_dir_all(tmp.path().join("out")).unwrap();
    let config = format!("{base}budget = {budget}\n");
    let (out, with) = run(tmp.path(), &config, |r| r);
    let collection = &with["collections"][0];
    let overhead = &collection["overhead"];
    let plan = &overhead["rerank_budget"];
    let f = |value: &Value| value.as_f64().unwrap();
    let n = |value: &Value| value.as_u64().unwrap() as usize;
    assert_eq!(f(&plan["budget"]), budget);
    assert_eq!(f(&overhead["limit"]), budget, "the budget is the limit");
    assert_eq!((n(&plan["floor"]), n(&plan["candidates"])), (10, 30));
    let depth = n(&plan["depth"]);
    assert!((10..30).contains(&depth), "depth {depth}: {plan}");
    let pairs = n(&overhead["rerank_pairs"]);
    assert_eq!(pairs, 16 * depth, "every query gets the same depth");
    assert!(pairs < 16 * 30, "fewer pairs than without a budget");
    // Only the planned depth was reranked.
    for line in read_jsonl(&out.join("scifact/rerank.jsonl")) {
        for candidate in line["candidates"].as_array().unwrap() {
            assert!(n(&candidate["fused_rank"]) <= depth);
        }
    }

    // The plan's inputs are the run's recorded times.
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * (1.0 + b.abs());
    assert!(close(
        f(&plan["allowed_s"]),
        budget * f(&overhead["dense_s"])
    ));
    assert!(close(
        f(&plan["spent_before_rerank_s"]),
        f(&overhead["sparse_s"]) + f(&overhead["fusion_s"])
    ));
    assert!(close(f(&plan["rerank_s"]), f(&overhead["rerank_s"])));
    // Its arithmetic: the cost per token from the floor round, the depth the deepest that fits
    // in PLAN_FILL of what was left.
    let per_token = f(&plan["seconds_per_1k_tokens"]) / 1000.0;
    assert!(close(
        per_token,
        f(&plan["floor_model_s"]) / f(&plan["floor_tokens"])
    ));
    assert!(close(
        f(&plan["predicted_extension_s"]),
        per_token * f(&plan["extension_tokens"])
    ));
    let left = f(&plan["allowed_s"]) - f(&plan["spent_before_rerank_s"]) - f(&plan["floor_s"]);
    match plan["outcome"].as_str().unwrap() {
        "limited" => {
            assert!(f(&plan["predicted_extension_s"]) <= 0.9 * left + 1e-9);
            assert!(f(&plan["plan_fill"]) == 0.9);
        }
        // A machine on which the floor alone took the budget: the floor only, said so.
        "floor_over_budget" => {
            assert!(left <= 0.0 && depth == 10);
            let warnings = with["warnings"].to_string();
            assert!(
                warnings.contains("only the floor was reranked"),
                "{warnings}"
            );
        }
        other => panic!("outcome {other}: {plan}"),
    }
    // The outcome: held is the recorded times against the budget, and where the deeper
    // round ran no slower than the floor's measured cost per token, the margin kept it.
    let spent = f(&plan["spent_before_rerank_s"]) + f(&plan["rerank_s"]);
    assert_eq!(
        plan["held"].as_bool().unwrap(),
        spent <= f(&plan["allowed_s"])
    );
    assert_eq!(
        overhead["within_limit"].as_bool().unwrap(),
        f(&overhead["ratio"]) <= budget
    );
    if plan["outcome"] == "limited" && f(&plan["extension_s"]) <= f(&plan["predicted_extension_s"])
    {
        assert_eq!(plan["held"], true, "{plan}");
    }
    let metrics = std::fs::read_to_string(out.join("metrics.prom")).unwrap();
    assert!(metrics.contains(&format!(
        "embed_collections_rerank_budget_depth{{collection=\"scifact\"}} {depth}"
    )));
}

/// `fusion.method = "auto"` with the real models: a dense model whose query prompt (300 words
/// of filler, more than its 128 tokens) leaves nothing of the query makes the same useless dense
/// list for every query; the CrossEncoder, judging the menu without labels, sees it and leaves
/// fusion for the sparse list alone. The rerank reuses the judge's scores. Then `rerank.blend =
/// "rrf"` over the same run (every vector and score reused) orders each query's candidates by
/// 1/(60 + CrossEncoder rank) + 1/(60 + fused rank).
#[test]
fn auto_fusion_leaves_a_useless_dense_list_and_the_rrf_blend_orders_by_both_ranks() {
    let tmp = tempfile::tempdir().unwrap();
    util::short_scifact(&tmp.path().join("in"), "scifact");
    let filler = "the weather report for the coastal region tomorrow morning ".repeat(30);
    let base = format!(
        "[[dense.models]]\nname = \"minilm\"\nmodel = \"sentence-transformers/all-MiniLM-L6-v2\"\n\
         max_length = 128\nquery_prompt = \"{filler}\"\n\
         [fusion]\nmethod = \"auto\"\n[rerank]\ncandidates = 10\ntop_k = 10\nmax_length = 128\n"
    );
    let (out, manifest) = run(tmp.path(), &base, |r| r);
    let collection = &manifest["collections"][0];
    let auto = &collection["ranking"]["auto"];
    assert_eq!(auto["name"], "sparse", "{auto:#}");
    assert_eq!(
        collection["ranking"]["fusion"], "auto: sparse alone",
        "{collection:#}"
    );
    let entry = |name: &str| {
        auto["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .unwrap()
            .clone()
    };
    let f = |value: &Value| value.as_f64().unwrap();
    // The labels agree with the judge (shown for comparison; the choice never saw them).
    assert!(f(&entry("dense")["labelled_ndcg_at_10"]) < 0.1, "{auto:#}");
    assert!(f(&entry("sparse")["labelled_ndcg_at_10"]) > 0.4, "{auto:#}");
    assert!(f(&entry("sparse")["interval"][0]) > 0.0);
    assert_eq!(auto["queries"], 50);
    // The fused list is the sparse list alone, and the request that reproduces it a plain
    // sparse query.
    let qdrant = &collection["ranking"]["qdrant"];
    assert_eq!(qdrant["request"]["using"], "splade", "{qdrant:#}");
    assert_eq!(qdrant["exact"], true);
    for line in read_jsonl(&out.join("scifact/rerank.jsonl")) {
        for candidate in line["candidates"].as_array().unwrap() {
            assert_eq!(candidate["fused_rank"], candidate["sparse_rank"], "{line}");
        }
    }
    // Every pair the rerank needed was in the judge's pool: none scored twice.
    let pooled = auto["pairs_scored"].as_u64().unwrap();
    assert!(pooled >= 50 * 10);
    assert_eq!(collection["stages"]["rerank"]["runs"][0]["items"], 0);

    let reused = tmp.path().join("first");
    std::fs::rename(&out, &reused).unwrap();
    let blended = format!(
        "{base}blend = \"rrf\"\n[output]\nreuse = \"{}\"\n",
        reused.display()
    );
    let (out, manifest) = run(tmp.path(), &blended, |r| r);
    assert_eq!(
        manifest["collections"][0]["ranking"]["auto"]["name"],
        "sparse"
    );
    let mut reordered = 0;
    for line in read_jsonl(&out.join("scifact/rerank.jsonl")) {
        let candidates = line["candidates"].as_array().unwrap();
        let mut by_logit: Vec<&Value> = candidates.iter().collect();
        by_logit.sort_by(|a, b| {
            f(&b["rerank_logit"])
                .total_cmp(&f(&a["rerank_logit"]))
                .then(a["fused_rank"].as_u64().cmp(&b["fused_rank"].as_u64()))
        });
        for candidate in candidates {
            let rerank_rank = 1 + by_logit
                .iter()
                .position(|c| c["chunk_id"] == candidate["chunk_id"])
                .unwrap();
            let expected =
                1.0 / (60.0 + rerank_rank as f64) + 1.0 / (60.0 + f(&candidate["fused_rank"]));
            assert!(
                (f(&candidate["blend_score"]) - expected).abs() < 1e-12,
                "{line}"
            );
        }
        for pair in candidates.windows(2) {
            assert!(f(&pair[0]["blend_score"]) >= f(&pair[1]["blend_score"]));
        }
        reordered += usize::from(
            candidates
                .iter()
                .map(|c| &c["chunk_id"])
                .ne(by_logit.iter().map(|c| &c["chunk_id"])),
        );
    }
    assert!(
        reordered > 0,
        "the blend differs from the CrossEncoder's order somewhere"
    );
}
