//! `--reuse` on the real binary and models: a run over an edited corpus that reuses an earlier
//! output equals a fresh run byte for byte (points, ranked lists, query vectors, evaluation),
//! embeds only the changed and new chunks and scores only the new (query, passage) pairs
//! (counted),
//! and writes the changes a vector store must apply (checked with the real Qdrant client); a
//! changed model setting recomputes that model's vectors only; a corrupted earlier output is
//! refused by name; an interrupted, read-only earlier output counts for its complete windows.

mod util;

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use util::{binary, manifest, read_jsonl, repo_root, run, run_until, stdout_and_stderr};

/// The output files a reused run must give as a fresh run does.
const COMPARED: [&str; 4] = [
    "points.jsonl",
    "rerank.jsonl",
    "query_vectors.jsonl",
    "chunk_hashes.jsonl",
];

/// Version 1 of the corpus (the bundled 300 SciFact abstracts, cut short) and version 2: edited texts, an
/// edited title, a metadata-only edit, two deletions, two additions and a moved chunk. The
/// chunk ids of each kind of change, as this test made them.
struct Corpora {
    _dir: tempfile::TempDir,
    v1: PathBuf,
    v2: PathBuf,
    v1_records: Vec<Value>,
    v2_records: Vec<Value>,
    text_edited: Vec<String>,
    metadata_edited: Vec<String>,
    added: Vec<String>,
    deleted: Vec<String>,
}

fn id(record: &Value) -> String {
    record["_id"].as_str().unwrap().to_string()
}

fn write_root(dir: &Path, records: &[Value]) -> PathBuf {
    std::fs::create_dir_all(dir.join("docs")).unwrap();
    let text: String = records.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(dir.join("docs/chunks.jsonl"), text).unwrap();
    dir.to_path_buf()
}

fn corpora() -> &'static Corpora {
    static CORPORA: OnceLock<Corpora> = OnceLock::new();
    CORPORA.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let short = util::short_scifact(dir.path(), "short");
        let v1_records = read_jsonl(&short.join("corpus.jsonl"));
        let mut v2 = v1_records.clone();
        let mut text_edited = Vec::new();
        for (i, edit) in [(5, "text"), (50, "text"), (100, "title")] {
            let old = v2[i][edit].as_str().unwrap_or_default().to_string();
            v2[i][edit] = Value::String(format!("{old} (revised)"));
            text_edited.push(id(&v2[i]));
        }
        v2[120]["metadata"] = serde_json::json!({"reviewed": true});
        let metadata_edited = vec![id(&v2[120])];
        let deleted = vec![id(&v2.remove(201)), id(&v2.remove(200))];
        let moved = v2.remove(10);
        v2.push(moved);
        let mut added = Vec::new();
        for (n, text) in ["Stem cells divide.", "Proteins fold."].iter().enumerate() {
            let record = serde_json::json!({"_id": format!("new-{n}"), "title": "", "text": text});
            added.push(id(&record));
            v2.insert(150 + n, record);
        }
        Corpora {
            v1: write_root(&dir.path().join("v1"), &v1_records),
            v2: write_root(&dir.path().join("v2"), &v2),
            v1_records,
            v2_records: v2,
            text_edited,
            metadata_edited,
            added,
            deleted,
            _dir: dir,
        }
    })
}

/// A full run (dense, SPLADE, fusion over 16 probe queries, rerank of their top 5) of `root`
/// into `out`.
fn command(root: &Path, out: &Path, window: &str) -> Command {
    with_run_flags(binary(), root, out, window)
}

/// [`command`]'s flags on `command` (a run, or a `merge` with its shard directories).
fn with_run_flags(mut command: Command, root: &Path, out: &Path, window: &str) -> Command {
    command
        .arg("--input")
        .arg(root)
        .arg("--output")
        .arg(out)
        .args(["--device", "cpu", "--window-chunks", window])
        .args([
            "--set",
            "rerank.probe_queries=16",
            "--set",
            "rerank.candidates=5",
        ])
        .args(["--set", "rerank.top_k=5", "--set", "rerank.max_length=128"])
        .env("EMBED_COLLECTIONS_LOG_FORMAT", "text");
    command
}

/// Names the first differing file instead of dumping megabytes.
fn assert_same_outputs(actual: &Path, expected: &Path) {
    for file in COMPARED {
        let read = |dir: &Path| {
            std::fs::read(dir.join("docs").join(file))
                .unwrap_or_else(|err| panic!("{}/docs/{file}: {err}", dir.display()))
        };
        assert!(
            read(actual) == read(expected),
            "docs/{file} of {} differs from {}'s",
            actual.display(),
            expected.display()
        );
    }
    let evaluation = |dir: &Path| manifest(dir)["collections"][0]["evaluation"].clone();
    assert_eq!(evaluation(actual), evaluation(expected));
}

/// The runs the tests compare: A (v1), F (v2 fresh) and B (v2 reusing A), made once.
struct Runs {
    dir: tempfile::TempDir,
    a: PathBuf,
    fresh: PathBuf,
    b: PathBuf,
}

fn runs() -> &'static Runs {
    static RUNS: OnceLock<Runs> = OnceLock::new();
    RUNS.get_or_init(|| {
        let corpora = corpora();
        let dir = tempfile::tempdir().unwrap();
        let (a, fresh, b) = (
            dir.path().join("a"),
            dir.path().join("fresh"),
            dir.path().join("b"),
        );
        run(command(&corpora.v1, &a, "100").arg("-q"), true);
        run(command(&corpora.v2, &fresh, "100").arg("-q"), true);
        let output = run(command(&corpora.v2, &b, "100").arg("--reuse").arg(&a), true);
        let summary = String::from_utf8_lossy(&output.stdout);
        assert!(
            summary.contains("reuse: 295 chunks reused, 5 embedded (2 new, 3 text changed)"),
            "the summary says what was reused:\n{summary}"
        );
        Runs { dir, a, fresh, b }
    })
}

#[test]
fn a_reusing_run_equals_a_fresh_one_and_embeds_only_what_changed() {
    let corpora = corpora();
    let runs = runs();
    assert_same_outputs(&runs.b, &runs.fresh);

    let b = manifest(&runs.b);
    let collection = &b["collections"][0];
    let reuse = &collection["reuse"];
    let changed = corpora.text_edited.len() + corpora.added.len();
    let total = corpora.v2_records.len();
    assert_eq!(reuse["embedded"], changed, "{reuse}");
    assert_eq!(reuse["reused"], total - changed, "{reuse}");
    assert_eq!(reuse["embedded_because"]["new"], corpora.added.len());
    assert_eq!(
        reuse["embedded_because"]["text_changed"],
        corpora.text_edited.len()
    );
    for vectors in ["all-MiniLM-L6-v2", "splade"] {
        assert_eq!(reuse["vectors"][vectors]["computed"], changed, "{reuse}");
    }
    // Only the changed chunks went through the models: the stages' item counts say so.
    for stage in ["dense", "sparse"] {
        let items: u64 = collection["stages"][stage]["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["items"].as_u64().unwrap())
            .sum();
        assert_eq!(items, changed as u64, "{stage}");
    }

    // Rerank: a pair's earlier score is reused when the query and the passage are unchanged,
    // computed here from the two runs' lists (each holds every scored candidate: top_k =
    // candidates).
    let scored = |out: &Path| -> Vec<(String, String)> {
        read_jsonl(&out.join("docs/rerank.jsonl"))
            .iter()
            .filter(|line| line["status"] == "ok")
            .flat_map(|line| {
                line["candidates"].as_array().unwrap().iter().map(|c| {
                    (
                        line["query_sha256"].as_str().unwrap().to_string(),
                        c["chunk_id"].as_str().unwrap().to_string(),
                    )
                })
            })
            .collect()
    };
    let earlier: BTreeSet<(String, String)> = scored(&runs.a).into_iter().collect();
    let now = scored(&runs.b);
    let changed_text: BTreeSet<&String> =
        corpora.text_edited.iter().chain(&corpora.added).collect();
    let reusable = now
        .iter()
        .filter(|pair| earlier.contains(*pair) && !changed_text.contains(&pair.1))
        .count();
    assert!(
        reusable > 0 && reusable < now.len(),
        "{reusable} of {}",
        now.len()
    );
    assert_eq!(
        reuse["rerank_pairs"],
        serde_json::json!({"reused": reusable, "computed": now.len() - reusable}),
        "{reuse}"
    );
    assert_eq!(
        collection["stages"]["rerank"]["runs"][0]["items"],
        now.len() - reusable,
        "only the new pairs went through the CrossEncoder"
    );

    // The changes, exactly: the edited texts and the metadata edit updated, the additions
    // added, the deletions deleted; the moved chunk and every other one unchanged.
    let changes = read_jsonl(&runs.b.join("docs/changes.jsonl"));
    let of = |kind: &str| -> BTreeSet<String> {
        changes
            .iter()
            .filter(|c| c["change"] == kind)
            .map(|c| c["chunk_id"].as_str().unwrap().to_string())
            .collect()
    };
    let set = |ids: &[String]| ids.iter().cloned().collect::<BTreeSet<_>>();
    let updated: BTreeSet<String> = corpora
        .text_edited
        .iter()
        .chain(&corpora.metadata_edited)
        .cloned()
        .collect();
    assert_eq!(of("updated"), updated);
    assert_eq!(of("added"), set(&corpora.added));
    assert_eq!(of("deleted"), set(&corpora.deleted));
    let reasons: BTreeMap<String, String> = changes
        .iter()
        .filter(|c| c["change"] == "updated")
        .map(|c| {
            (
                c["chunk_id"].as_str().unwrap().to_string(),
                c["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(reasons[&corpora.metadata_edited[0]], "payload_changed");
    assert_eq!(reasons[&corpora.text_edited[0]], "text_changed");
    assert_eq!(
        reuse["changes"],
        serde_json::json!({"added": 2, "updated": 4, "deleted": 2, "unchanged": total - 6})
    );
    assert!(collection["outputs"]
        .as_array()
        .unwrap()
        .contains(&Value::from("docs/changes.jsonl")));
    assert_eq!(corpora.v1_records.len(), 300);
}

#[test]
fn the_changes_patch_a_qdrant_collection_into_the_new_runs() {
    let runs = runs();
    let python = util::python();
    let check = run(
        Command::new(python)
            .arg(repo_root().join("scripts/check-changes.py"))
            .arg(&runs.a)
            .arg(&runs.b),
        true,
    );
    let summary: Value = serde_json::from_slice(&check.stdout).expect("one JSON summary line");
    assert_eq!(summary["patched_equals_new"], true, "{summary}");
    assert_eq!(summary["deleted"], 2, "{summary}");
}

#[test]
fn reusing_the_output_directory_itself_gives_the_same_bytes() {
    let corpora = corpora();
    let runs = runs();
    let out = runs.dir.path().join("in-place");
    util::copy_dir(&runs.a, &out);
    run(
        command(&corpora.v2, &out, "100")
            .arg("-q")
            .arg("--reuse")
            .arg(&out),
        true,
    );
    assert_same_outputs(&out, &runs.fresh);
    assert_eq!(
        std::fs::read(out.join("docs/changes.jsonl")).unwrap(),
        std::fs::read(runs.b.join("docs/changes.jsonl")).unwrap()
    );
    assert!(
        !out.join(".reuse-previous").exists(),
        "the earlier output is removed once the run has finished"
    );
}

#[test]
fn a_changed_model_setting_recomputes_that_models_vectors_only() {
    let corpora = corpora();
    let runs = runs();
    let prompt = r#"--set=dense.models=[{model = "sentence-transformers/all-MiniLM-L6-v2", name = "all-MiniLM-L6-v2", document_prompt = "passage: "}]"#;
    let changed = runs.dir.path().join("prompt-reused");
    let output = run(
        command(&corpora.v2, &changed, "100")
            .arg(prompt)
            .arg("--reuse")
            .arg(&runs.fresh),
        true,
    );
    let fresh = runs.dir.path().join("prompt-fresh");
    run(
        command(&corpora.v2, &fresh, "100").arg(prompt).arg("-q"),
        true,
    );
    assert_same_outputs(&changed, &fresh);

    let reuse = &manifest(&changed)["collections"][0]["reuse"];
    let total = corpora.v2_records.len();
    assert_eq!(reuse["vectors"]["all-MiniLM-L6-v2"]["computed"], total);
    assert_eq!(reuse["vectors"]["splade"]["reused"], total, "{reuse}");
    assert_eq!(reuse["embedded_because"]["model_changed"], total);
    assert_eq!(reuse["changes"]["updated"], total);
    let log = stdout_and_stderr(&output);
    assert!(
        log.contains("every all-MiniLM-L6-v2 vector is recomputed")
            && log.contains("document_prompt"),
        "the warning names the model and the setting:\n{log}"
    );
}

#[test]
fn a_corrupted_or_foreign_earlier_output_is_refused_by_name() {
    let corpora = corpora();
    let runs = runs();
    let corrupted = runs.dir.path().join("corrupted");
    util::copy_dir(&runs.a, &corrupted);
    let points = corrupted.join("docs/points.jsonl");
    let mut bytes = std::fs::read(&points).unwrap();
    let at = bytes.iter().position(|b| *b == b'7').unwrap();
    bytes[at] = b'8';
    std::fs::write(&points, bytes).unwrap();
    let out = runs.dir.path().join("from-corrupted");
    let output = run(
        command(&corpora.v2, &out, "100")
            .arg("-q")
            .arg("--reuse")
            .arg(&corrupted),
        false,
    );
    let log = stdout_and_stderr(&output);
    assert!(
        log.contains("docs/points.jsonl")
            && log.contains("sha256")
            && log.contains("manifest.json"),
        "names the file and the manifest:\n{log}"
    );
    assert!(!out.join("docs/points.jsonl").exists());

    // Another run's manifest over these points: the hashes do not match either.
    let foreign = runs.dir.path().join("foreign");
    util::copy_dir(&runs.a, &foreign);
    std::fs::copy(
        runs.fresh.join("manifest.json"),
        foreign.join("manifest.json"),
    )
    .unwrap();
    let output = run(
        command(&corpora.v2, &out, "100")
            .arg("-q")
            .arg("--reuse")
            .arg(&foreign),
        false,
    );
    assert!(
        stdout_and_stderr(&output).contains("docs/points.jsonl"),
        "{}",
        stdout_and_stderr(&output)
    );

    // Not an output at all.
    let output = run(
        command(&corpora.v2, &out, "100")
            .arg("-q")
            .arg("--reuse")
            .arg(&corpora.v1),
        false,
    );
    assert_eq!(output.status.code(), Some(2), "a configuration error");
    assert!(stdout_and_stderr(&output).contains("manifest.json"));
}

#[test]
fn an_interrupted_read_only_output_counts_for_its_complete_windows() {
    let corpora = corpora();
    let runs = runs();
    let interrupted = runs.dir.path().join("interrupted");
    // Windows of 50: killed once the second is committed, so 100 chunks have points.
    let mut first = command(&corpora.v1, &interrupted, "50");
    first.arg("-v");
    let (mut child, _) = run_until(first, &["window committed"], 2, |child| {
        child.kill().unwrap()
    });
    child.wait().unwrap();
    let read_only = |dir: &Path, read_only: bool| {
        use std::os::unix::fs::PermissionsExt;
        for entry in walk(dir) {
            let mode = match (entry.is_dir(), read_only) {
                (true, true) => 0o555,
                (true, false) => 0o755,
                (false, true) => 0o444,
                (false, false) => 0o644,
            };
            std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(mode)).unwrap();
        }
    };
    read_only(&interrupted, true);
    let out = runs.dir.path().join("after-interrupted");
    let result = std::panic::catch_unwind(|| {
        run(
            command(&corpora.v2, &out, "100")
                .arg("-q")
                .arg("--reuse")
                .arg(&interrupted),
            true,
        )
    });
    read_only(&interrupted, false);
    result.unwrap();
    assert_same_outputs(&out, &runs.fresh);

    // What the interrupted run finished, computed here: its first 100 chunks, less those whose
    // text changed since.
    let committed = manifest_points(&interrupted);
    assert!(committed >= 100, "at least two windows were committed");
    let edited: BTreeSet<&String> = corpora.text_edited.iter().collect();
    let v2_ids: BTreeSet<String> = corpora.v2_records.iter().map(id).collect();
    let reusable = corpora.v1_records[..committed]
        .iter()
        .map(id)
        .filter(|i| !edited.contains(i) && v2_ids.contains(i))
        .count();
    let reuse = &manifest(&out)["collections"][0]["reuse"];
    assert_eq!(reuse["reused"], reusable, "{reuse}");
    assert_eq!(
        reuse["embedded"],
        corpora.v2_records.len() - reusable,
        "{reuse}"
    );
}

/// Points the interrupted run committed (its checkpoint).
fn manifest_points(out: &Path) -> usize {
    let checkpoint: Value =
        serde_json::from_slice(&std::fs::read(out.join(".work/docs/checkpoint.json")).unwrap())
            .unwrap();
    checkpoint["points"].as_u64().unwrap() as usize
}

/// Every file and directory under `dir`, files first (so a directory is made read-only last).
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    let mut seen = Vec::new();
    while let Some(next) = dirs.pop() {
        for entry in std::fs::read_dir(&next).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
        seen.push(next);
    }
    files.extend(seen.into_iter().rev());
    files
}

#[test]
fn shards_reusing_an_earlier_output_merge_to_the_unsharded_reusing_runs_bytes() {
    let corpora = corpora();
    let runs = runs();
    // Three shards of the edited corpus, the collection split by chunk id, each reusing A.
    let shards = runs.dir.path().join("sharded");
    for index in 0..3 {
        run(
            command(&corpora.v2, &shards, "100")
                .arg("-q")
                .args(["--set", "shard.split_bytes=\"10000\"", "--shard"])
                .arg(format!("{index}/3"))
                .arg("--reuse")
                .arg(&runs.a),
            true,
        );
    }
    let shard_reuse: Vec<Value> = (0..3)
        .map(|i| {
            manifest(&shards.join(format!("shard-{i}-of-3")))["collections"][0]["reuse"].clone()
        })
        .collect();
    let deleted: u64 = shard_reuse
        .iter()
        .map(|r| r["changes"]["deleted"].as_u64().unwrap())
        .sum();
    assert_eq!(
        deleted, 2,
        "each deletion recorded by one shard: {shard_reuse:?}"
    );

    // A merge without the shards' --reuse is refused: it would not know the changes.
    let merged = runs.dir.path().join("merged");
    let mut merge = binary();
    merge.arg("merge").arg(&shards);
    let refused = run(
        with_run_flags(merge, &corpora.v2, &merged, "100").args([
            "--set",
            "shard.split_bytes=\"10000\"",
            "-q",
        ]),
        false,
    );
    let message = stdout_and_stderr(&refused);
    assert_eq!(refused.status.code(), Some(2), "{message}");
    assert!(message.contains("reuse_manifest_sha256"), "{message}");

    let mut merge = binary();
    merge.arg("merge").arg(&shards);
    run(
        with_run_flags(merge, &corpora.v2, &merged, "100")
            .args(["--set", "shard.split_bytes=\"10000\"", "-q", "--reuse"])
            .arg(&runs.a),
        true,
    );
    assert_same_outputs(&merged, &runs.fresh);
    assert_eq!(
        std::fs::read(merged.join("docs/changes.jsonl")).unwrap(),
        std::fs::read(runs.b.join("docs/changes.jsonl")).unwrap(),
        "the merged changes are the unsharded reusing run's"
    );
    // The same counts, the rerank scores reused included (ranking runs in the merge).
    assert_eq!(
        manifest(&merged)["collections"][0]["reuse"],
        manifest(&runs.b)["collections"][0]["reuse"]
    );
}
