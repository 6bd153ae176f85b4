//! Retrieval's two methods on the real binary and models: the streaming scan (default) and the
//! in-memory index give byte-identical ranked lists, query vectors and evaluation, on the
//! bundled collection (cut short, its own 50 queries and qrels, CrossEncoder rerank) and on a
//! generated collection full of exact ties with 300 queries; an index over
//! `fusion.retrieval_memory` falls back to the scan; the manifest says which method ran and why.

mod util;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use util::{manifest, read_jsonl, run};

/// The outputs that must not depend on the method.
const COMPARED: [&str; 2] = ["rerank.jsonl", "query_vectors.jsonl"];

fn command(root: &Path, out: &Path) -> Command {
    util::cpu_run(root, out)
}

/// The single collection's retrieval report and evaluation.
fn ranking(out: &Path) -> (Value, Value) {
    let manifest = manifest(out);
    let collection = &manifest["collections"][0];
    (
        collection["ranking"]["retrieval"].clone(),
        collection["evaluation"].clone(),
    )
}

fn assert_same_outputs(collection: &str, actual: &Path, expected: &Path) {
    for file in COMPARED {
        let read = |dir: &Path| {
            std::fs::read(dir.join(collection).join(file))
                .unwrap_or_else(|err| panic!("{}/{collection}/{file}: {err}", dir.display()))
        };
        assert!(
            read(actual) == read(expected),
            "{collection}/{file} of {} differs from {}'s",
            actual.display(),
            expected.display()
        );
    }
    let (_, actual_eval) = ranking(actual);
    let (_, expected_eval) = ranking(expected);
    assert!(actual_eval["lists"].is_object(), "evaluated: {actual_eval}");
    assert_eq!(actual_eval, expected_eval, "the evaluation");
}

#[test]
fn scan_and_index_rank_the_bundled_collection_identically() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("in");
    util::short_scifact(&root, "scifact");
    let rerank = [
        "--set",
        "rerank.candidates=10",
        "--set",
        "rerank.top_k=5",
        "--set",
        "rerank.max_length=128",
    ];

    // The default: the scan.
    let scan = tmp.path().join("scan");
    run(command(&root, &scan).args(rerank), true);
    let (retrieval, _) = ranking(&scan);
    assert_eq!(retrieval["method"], "scan", "{retrieval}");
    assert_eq!(retrieval["reason"], "fusion.retrieval = scan");
    assert_eq!(retrieval["queries"], 50);
    assert_eq!(retrieval["points"], 300);

    // The index on the same vectors (reused, so no chunk is embedded again and the rerank
    // scores of the same pairs are taken over; a different candidate would be scored anew
    // and change the bytes).
    let index = tmp.path().join("index");
    run(
        command(&root, &index)
            .args(rerank)
            .args(["--set", "fusion.retrieval=index", "--reuse"])
            .arg(&scan),
        true,
    );
    let (retrieval, _) = ranking(&index);
    assert_eq!(retrieval["method"], "index", "{retrieval}");
    assert!(
        retrieval["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("fusion.retrieval = index; the index")),
        "{retrieval}"
    );
    assert!(
        retrieval["index_bytes"].as_u64() > Some(300 * 4 * 384),
        "the index holds at least the dense rows: {retrieval}"
    );
    assert_same_outputs("scifact", &index, &scan);
}

/// 40 distinct passages, each three times under different ids (so every query meets exact
/// ties, dense and sparse), 300 queries (more than the index threshold), qrels naming the
/// first copy of the passage each query was made from.
fn tied_collection(root: &Path) -> PathBuf {
    let dir = root.join("ties");
    std::fs::create_dir_all(dir.join("qrels")).unwrap();
    let subjects = [
        "glaciers",
        "volcanoes",
        "insulin",
        "bridges",
        "coffee",
        "tides",
        "jazz",
        "chess",
        "vaccines",
        "rivers",
    ];
    let aspects = ["history", "chemistry", "economics", "geography"];
    let mut corpus = String::new();
    let mut passages = Vec::new();
    for subject in subjects {
        for aspect in aspects {
            passages.push(format!(
                "The {aspect} of {subject} explained in plain words."
            ));
        }
    }
    for copy in 0..3 {
        for (p, text) in passages.iter().enumerate() {
            let record = serde_json::json!({"_id": format!("p{p}-c{copy}"), "text": text});
            corpus.push_str(&format!("{record}\n"));
        }
    }
    std::fs::write(dir.join("corpus.jsonl"), corpus).unwrap();
    let mut queries = String::new();
    let mut qrels = String::from("query-id\tcorpus-id\tscore\n");
    let words = [
        "what is",
        "tell me about",
        "explain",
        "facts on",
        "basics of",
    ];
    for q in 0..300 {
        let p = (q * 7) % passages.len();
        let (subject, aspect) = (subjects[p / aspects.len()], aspects[p % aspects.len()]);
        let text = format!(
            "{} the {aspect} of {subject} {}",
            words[q % words.len()],
            q / 40
        );
        queries.push_str(&format!(
            "{}\n",
            serde_json::json!({"_id": format!("q{q}"), "text": text})
        ));
        qrels.push_str(&format!("q{q}\tp{p}-c0\t1\n"));
    }
    std::fs::write(dir.join("queries.jsonl"), queries).unwrap();
    std::fs::write(dir.join("qrels/test.tsv"), qrels).unwrap();
    dir
}

#[test]
fn scan_and_index_break_ties_identically_and_a_small_budget_forces_the_scan() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("in");
    tied_collection(&root);

    // The index, asked for: it fits the default budget.
    let index = tmp.path().join("index");
    run(
        command(&root, &index).args(["--no-rerank", "--set", "fusion.retrieval=index"]),
        true,
    );
    let (retrieval, _) = ranking(&index);
    assert_eq!(retrieval["method"], "index", "{retrieval}");
    assert_eq!(retrieval["queries"], 300);

    // The same with a budget the index does not fit: the scan, same bytes.
    let scan = tmp.path().join("scan");
    run(
        command(&root, &scan).args([
            "--no-rerank",
            "--set",
            "fusion.retrieval=index",
            "--set",
            "fusion.retrieval_memory=1KiB",
        ]),
        true,
    );
    let (retrieval, _) = ranking(&scan);
    assert_eq!(retrieval["method"], "scan", "{retrieval}");
    assert!(
        retrieval["reason"]
            .as_str()
            .is_some_and(|r| r.contains("over fusion.retrieval_memory")),
        "{retrieval}"
    );
    assert_eq!(retrieval["memory_budget_bytes"], 1024);
    assert_same_outputs("ties", &scan, &index);

    // The ties are real: the three copies of a passage hold adjacent dense ranks, in input
    // order (lower point first), in some query's candidates.
    let lines = read_jsonl(&scan.join("ties/rerank.jsonl"));
    let tied = lines.iter().any(|line| {
        let candidates = line["candidates"].as_array().unwrap();
        let rank_of = |id: &str| {
            candidates
                .iter()
                .find(|c| c["chunk_id"] == id)
                .and_then(|c| c["dense_rank"].as_u64())
        };
        (0..40).any(|p| {
            let ranks: Vec<Option<u64>> = (0..3).map(|c| rank_of(&format!("p{p}-c{c}"))).collect();
            matches!(ranks[..], [Some(a), Some(b), Some(c)] if b == a + 1 && c == b + 1)
        })
    });
    assert!(tied, "no query met a three-way tie in order");
}
