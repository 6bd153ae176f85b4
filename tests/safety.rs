//! Issue 29, on the real binary: nothing outside the output is ever written (symbolic links in
//! the output directory are refused, an output never replaces an input), and every figure
//! printed is a measured one (qrels queries outside the query set are counted, not averaged
//! in as zeros; evaluation labels never climb above the working directory).

mod util;

use std::path::{Path, PathBuf};
use util::{binary, manifest, run, stderr};

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// A collection `docs` of three short chunks under `<dir>/in`.
fn input(dir: &Path) -> PathBuf {
    let root = dir.join("in");
    write(
        &root.join("docs/chunks.jsonl"),
        "{\"id\": \"a\", \"text\": \"Vitamin D supplements and bone health.\"}\n\
         {\"id\": \"b\", \"text\": \"Insulin resistance and obesity.\"}\n\
         {\"id\": \"c\", \"text\": \"Sparse retrieval with learned term weights.\"}\n",
    );
    root
}

fn dense_run(root: &Path, out: &Path) -> std::process::Command {
    let mut command = util::cpu_run(root, out);
    command.args(["--no-sparse", "--no-rerank"]);
    command
}

/// Finding 1: with `<output>/.embed-collections.lock` a link to another file, a run wrote its
/// pid into that file.
#[cfg(unix)]
#[test]
fn a_symlinked_lock_file_is_refused_and_its_target_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let root = input(tmp.path());
    let precious = tmp.path().join("precious.txt");
    write(&precious, "keep me\n");
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let lock = out.join(".embed-collections.lock");
    std::os::unix::fs::symlink(&precious, &lock).unwrap();
    let output = run(dense_run(&root, &out).arg("-q"), false);
    let message = stderr(&output);
    assert_ne!(output.status.code(), Some(0), "{message}");
    assert!(
        message.contains(&format!("{}: is a symbolic link", lock.display())),
        "{message}"
    );
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "keep me\n");
    assert!(
        !out.join("manifest.json").exists(),
        "nothing written without the lock"
    );
}

/// Finding 1: a collection's output directory that is a link would have the points, ranked
/// lists and query vectors written wherever it points.
#[cfg(unix)]
#[test]
fn a_symlinked_collection_output_directory_is_refused_and_its_target_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let root = input(tmp.path());
    let elsewhere = tmp.path().join("elsewhere");
    write(&elsewhere.join("points.jsonl"), "not ours\n");
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::os::unix::fs::symlink(&elsewhere, out.join("docs")).unwrap();
    let output = run(dense_run(&root, &out).arg("-q"), false);
    let message = stderr(&output);
    assert_ne!(output.status.code(), Some(0), "{message}");
    assert!(
        message.contains(&format!("{}", out.join("docs").display()))
            && message.contains("symbolic link"),
        "{message}"
    );
    assert_eq!(
        std::fs::read_to_string(elsewhere.join("points.jsonl")).unwrap(),
        "not ours\n"
    );
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 1);
    // `check` reports it too.
    let output = run(
        binary()
            .arg("check")
            .arg("--input")
            .arg(&root)
            .arg("--output")
            .arg(&out)
            .args(["--no-sparse", "--no-rerank", "--device", "cpu"]),
        false,
    );
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("symbolic link"), "{text}");
}

/// Finding 3: `embed-queries --queries q.jsonl --output q.jsonl` replaced the query file with
/// vectors, exit 0.
#[test]
fn embed_queries_refuses_to_overwrite_its_query_file() {
    let tmp = tempfile::tempdir().unwrap();
    let queries = tmp.path().join("q.jsonl");
    let text = "{\"_id\": \"q1\", \"text\": \"bone health\"}\n";
    write(&queries, text);
    let output = run(
        binary().current_dir(tmp.path()).args([
            "embed-queries",
            "--queries",
            "q.jsonl",
            "--output",
            "./q.jsonl",
            "--no-sparse",
            "--device",
            "cpu",
        ]),
        false,
    );
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{message}");
    assert!(
        message.contains("the output file (--output) ./q.jsonl is the same file as the input query file (--queries) q.jsonl"),
        "{message}"
    );
    assert_eq!(std::fs::read_to_string(&queries).unwrap(), text);
}

/// Finding 3: an output directory inside an input collection would be read back as its chunks
/// by the next run; it is refused before any work, naming both.
#[test]
fn an_output_inside_an_input_collection_is_refused_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let root = input(tmp.path());
    let out = root.join("docs/out");
    let output = run(dense_run(&root, &out).arg("-q"), false);
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{message}");
    assert!(
        message.contains(&format!(
            "{} is inside the input collection docs",
            out.display()
        )),
        "{message}"
    );
    assert!(!out.exists(), "nothing created");
    // `check` finds it too, without creating the output directory.
    let output = run(
        binary()
            .arg("check")
            .arg("--input")
            .arg(&root)
            .arg("--output")
            .arg(&out)
            .args(["--no-sparse", "--no-rerank", "--device", "cpu"]),
        false,
    );
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("is inside the input collection docs"),
        "{text}"
    );
    assert!(!out.exists(), "nothing created by check");
    // A metrics file that is the query file is refused the same way.
    let queries = tmp.path().join("q.jsonl");
    write(&queries, "{\"_id\": \"q1\", \"text\": \"bone health\"}\n");
    let output = run(
        dense_run(&root, &tmp.path().join("out"))
            .arg("--queries")
            .arg(&queries)
            .arg("--set")
            .arg(format!("telemetry.metrics_file={}", queries.display())),
        false,
    );
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("is the same file as the input query file"));
}

/// Finding 4: `merge --output <one of its shard directories>` was refused as "in use by
/// another run" (the merge's own pid) after the shard's lock file was rewritten. It is refused
/// as an overlap, before any lock: the shard's lock file is untouched.
#[test]
fn merge_into_one_of_its_shards_is_refused_before_any_lock() {
    let tmp = tempfile::tempdir().unwrap();
    let root = input(tmp.path());
    let out = tmp.path().join("out");
    for i in 0..2 {
        let shard = out.join(format!("shard-{i}-of-2"));
        write(&shard.join("manifest.json"), "{}\n");
        write(&shard.join(".embed-collections.lock"), "12345\n");
    }
    for target in [out.join("shard-0-of-2"), out.clone()] {
        let output = run(
            binary()
                .arg("merge")
                .arg("--input")
                .arg(&root)
                .arg("--output")
                .arg(&target)
                .arg(&out)
                .args(["--no-sparse", "--no-rerank", "--device", "cpu"]),
            false,
        );
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{message}");
        assert!(
            message.contains(&format!(
                "the output directory (--output) {}",
                target.display()
            )) && message.contains("the input shard directory"),
            "{message}"
        );
        assert!(!message.contains("in use by another"), "{message}");
        for i in 0..2 {
            let lock = out.join(format!("shard-{i}-of-2/.embed-collections.lock"));
            assert_eq!(std::fs::read_to_string(lock).unwrap(), "12345\n");
        }
    }
}

/// Findings 5 and 7: qrels whose only judged query is not in the query set printed nDCG@10
/// 0.0000 for every list; the label of a qrels file outside the working directory climbed
/// (`file:../../<…>/qrels.tsv`). Now: none judged is said, the manifest counts judged, missing
/// and unjudged queries, a partial overlap averages only the judged queries, and the label is
/// absolute.
#[test]
fn evaluation_counts_what_it_judged_and_labels_paths_without_climbing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = input(tmp.path());
    let queries = tmp.path().join("data/q.jsonl");
    write(
        &queries,
        "{\"_id\": \"q1\", \"text\": \"vitamin D and bone health\"}\n\
         {\"_id\": \"q2\", \"text\": \"insulin resistance\"}\n",
    );
    let qrels = tmp.path().join("data/qrels.tsv");
    let work = tmp.path().join("deep/er");
    std::fs::create_dir_all(&work).unwrap();
    let evaluate = |qrels_text: &str, out: &Path| {
        write(&qrels, qrels_text);
        let output = run(
            dense_run(&root, out).current_dir(&work).args([
                "--queries",
                "../../data/q.jsonl",
                "--qrels",
                "../../data/qrels.tsv",
            ]),
            true,
        );
        let evaluation = manifest(out)["collections"][0]["evaluation"].clone();
        (
            String::from_utf8_lossy(&output.stdout).into_owned(),
            evaluation,
        )
    };

    let (stdout, evaluation) = evaluate(
        "query-id\tcorpus-id\tscore\nq9\ta\t1\n",
        &tmp.path().join("none"),
    );
    assert!(
        stdout.contains("no query of the qrels is in the query set (1 qrels queries, e.g. q9)"),
        "{stdout}"
    );
    assert!(!stdout.contains("0.0000"), "no invented zeros: {stdout}");
    assert_eq!(evaluation["judged"], 0, "{evaluation}");
    assert_eq!(evaluation["missing"], 1, "{evaluation}");
    assert_eq!(evaluation["unjudged"], 2, "{evaluation}");
    assert_eq!(evaluation["lists"], serde_json::json!({}), "{evaluation}");
    let label = evaluation["qrels"].as_str().unwrap();
    assert_eq!(
        label,
        format!("file:{}", qrels.display()),
        "absolute, no climb"
    );

    // q1 judged (its answer a), q9 not in the query set: averaged over q1 alone.
    let (stdout, evaluation) = evaluate("q1\ta\t1\nq9\tb\t1\n", &tmp.path().join("some"));
    assert!(
        stdout.contains("1 qrels queries are not in the query set"),
        "{stdout}"
    );
    assert_eq!(
        (
            &evaluation["judged"],
            &evaluation["missing"],
            &evaluation["unjudged"]
        ),
        (&1.into(), &1.into(), &1.into()),
        "{evaluation}"
    );
    let dense = &evaluation["lists"]["dense"];
    assert_eq!(dense["queries"], 1, "{evaluation}");
    assert!(dense["recall_at_100"].as_f64() == Some(1.0), "{evaluation}");
}
