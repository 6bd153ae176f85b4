//! Sharded runs on the real binary and real models: three shard processes (`--shard i/3`) and
//! `merge` give the unsharded run's bytes (points, ranked lists, query vectors, evaluation)
//! with whole and split collections; a shard killed and resumed merges to the same bytes;
//! `--shard auto` reads the Kubernetes and Slurm variables; a missing, duplicated, unfinished
//! or foreign shard is refused naming it; the one-machine recipe (`deploy/shell/run-sharded.sh`)
//! gives the same bytes.

mod util;

use serde_json::Value;
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use util::{binary, copy_dir, manifest, repo_root, run, stderr};

const COLLECTIONS: [&str; 3] = ["notes-a", "notes-b", "scifact"];
/// What each collection's outputs are compared on.
const OUTPUT_FILES: [&str; 3] = ["points.jsonl", "rerank.jsonl", "query_vectors.jsonl"];

/// Three collections: `scifact` (the bundled 300 chunks, cut short, with their queries and
/// qrels, about 120 KB) is above `shard.split_bytes` and split by chunk id; `notes-a` and
/// `notes-b` (40 chunks each, ranked with probe queries) go whole to one shard each.
fn input_root(dir: &Path) -> PathBuf {
    let root = dir.join("in");
    let scifact = util::short_scifact(&root, "scifact");
    let corpus = std::fs::read_to_string(scifact.join("corpus.jsonl")).unwrap();
    let lines: Vec<&str> = corpus.lines().collect();
    for (name, range) in [("notes-a", 0..40), ("notes-b", 40..80)] {
        std::fs::create_dir_all(root.join(name)).unwrap();
        let mut text = lines[range].join("\n");
        text.push('\n');
        std::fs::write(root.join(name).join("chunks.jsonl"), text).unwrap();
    }
    root
}

/// A full run (dense, SPLADE, fusion, rerank, evaluation), kept small for two CPU cores.
fn write_config(dir: &Path, root: &Path) -> PathBuf {
    let path = dir.join("run.toml");
    let text = format!(
        "[input]\nroot = {root:?}\n\n[rerank]\ncandidates = 5\ntop_k = 5\nmax_length = 128\n\
         probe_queries = 8\n\n[shard]\nsplit_bytes = \"40000\"\n\n[gpu]\ndevices = \"cpu\"\n\n\
         [telemetry]\nlog_format = \"text\"\nprogress = \"never\"\n",
        root = root.display().to_string()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// An input and its config in a fresh directory.
struct Setup {
    tmp: tempfile::TempDir,
    config: PathBuf,
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let root = input_root(tmp.path());
    let config = write_config(tmp.path(), &root);
    Setup { tmp, config }
}

fn command(config: &Path, out: &Path) -> Command {
    let mut command = binary();
    command.arg("--config").arg(config).arg("--output").arg(out);
    command
}

fn merge(config: &Path, out: &Path, shards: &[&Path]) -> Command {
    let mut command = binary();
    command
        .arg("merge")
        .arg("--config")
        .arg(config)
        .arg("--output")
        .arg(out)
        .args(shards);
    command
}

/// Everything a merged run must reproduce: each collection's output files, and its chunk and
/// point counts and evaluation from the manifest.
#[derive(Debug, PartialEq)]
struct Outputs {
    files: Vec<(String, Vec<u8>)>,
    collections: Vec<Value>,
}

/// `dir`'s outputs; `tmp`, the test's directory, is replaced by `<tmp>` in the evaluation's
/// qrels label (an absolute path), so runs in different directories compare.
fn outputs(dir: &Path, tmp: &Path) -> Outputs {
    let mut files = Vec::new();
    for collection in COLLECTIONS {
        for file in OUTPUT_FILES {
            let path = dir.join(collection).join(file);
            let bytes = std::fs::read(&path)
                .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
            files.push((format!("{collection}/{file}"), bytes));
        }
    }
    let manifest = manifest(dir);
    assert_eq!(manifest["status"], "ok", "{manifest}");
    let collections = manifest["collections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            serde_json::json!({
                "name": c["name"],
                "status": c["status"],
                "chunks": c["chunks"],
                "points": c["points"],
                "evaluation": serde_json::from_str::<Value>(
                    &c["evaluation"].to_string().replace(&tmp.display().to_string(), "<tmp>"),
                )
                .unwrap(),
            })
        })
        .collect();
    Outputs { files, collections }
}

/// Names the first differing file instead of dumping megabytes of bytes.
fn assert_same_outputs(actual: &Outputs, expected: &Outputs, what: &str) {
    for ((name, bytes), (_, want)) in actual.files.iter().zip(&expected.files) {
        assert!(
            bytes == want,
            "{what}: {name} differs from the unsharded run's"
        );
    }
    assert_eq!(
        actual.collections, expected.collections,
        "{what}: the manifest's collections differ from the unsharded run's"
    );
}

/// The unsharded run's outputs, made once for every test.
fn reference() -> &'static Outputs {
    static REFERENCE: OnceLock<Outputs> = OnceLock::new();
    REFERENCE.get_or_init(|| {
        let setup = setup();
        let out = setup.tmp.path().join("unsharded");
        run(&mut command(&setup.config, &out), true);
        let reference = outputs(&out, setup.tmp.path());
        assert_eq!(
            reference.collections.len(),
            3,
            "{:?}",
            reference.collections
        );
        reference
    })
}

/// The documented rule, computed here independently: the first 8 bytes of sha256, big-endian,
/// modulo the shard count.
fn shard_of(key: &str, count: u64) -> u64 {
    let digest = Sha256::digest(key.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first) % count
}

fn point_ids(path: &Path) -> Vec<String> {
    util::read_jsonl(path)
        .iter()
        .map(|point| point["payload"]["chunk_id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn three_shard_processes_and_merge_equal_the_unsharded_run() {
    let setup = setup();
    let out = setup.tmp.path().join("out");
    // Three processes, in reverse order; shard 1 takes its index from the environment.
    for index in [2, 1, 0] {
        let mut shard = command(&setup.config, &out);
        if index == 1 {
            shard.env("EMBED_COLLECTIONS_SHARD", "1/3");
        } else {
            shard.arg("--shard").arg(format!("{index}/3"));
        }
        run(&mut shard, true);
    }

    // Each shard recorded itself and the partition, and embedded exactly its part.
    let corpus_ids: Vec<String> =
        util::read_jsonl(&repo_root().join("examples/collections/scifact-mini/corpus.jsonl"))
            .iter()
            .map(|chunk| chunk["_id"].as_str().unwrap().to_string())
            .collect();
    let mut split_points = 0;
    let mut whole_owners = Vec::new();
    for index in 0..3u64 {
        let dir = out.join(format!("shard-{index}-of-3"));
        let manifest = manifest(&dir);
        assert_eq!(manifest["status"], "ok");
        let shard = &manifest["shard"];
        assert_eq!(shard["index"], index);
        assert_eq!(shard["count"], 3);
        assert_eq!(
            shard["rule"],
            "whole-by-name-sha256-else-chunk-id-sha256/v1"
        );
        let partition = shard["partition"].as_array().unwrap();
        assert_eq!(partition.len(), 3, "{partition:?}");
        for entry in partition {
            let name = entry["name"].as_str().unwrap();
            if name == "scifact" {
                assert_eq!(entry["rule"], "split", "{entry}");
            } else {
                assert_eq!(entry["rule"], "whole", "{entry}");
                assert_eq!(entry["owner"], shard_of(name, 3), "{entry}");
            }
        }
        // The split collection: this shard's points are the chunks whose id falls to it, in
        // input order; every shard skipped ranking.
        let ids = point_ids(&dir.join("scifact/points.jsonl"));
        let expected: Vec<String> = corpus_ids
            .iter()
            .filter(|id| shard_of(id, 3) == index)
            .cloned()
            .collect();
        assert_eq!(ids, expected, "shard {index}'s part of scifact");
        split_points += ids.len();
        for collection in manifest["collections"].as_array().unwrap() {
            assert_eq!(collection["stages"]["rerank"]["status"], "skipped");
            let name = collection["name"].as_str().unwrap();
            if name != "scifact" {
                assert_eq!(shard_of(name, 3), index, "{name} embedded by shard {index}");
                whole_owners.push(name.to_string());
            }
        }
        assert!(!dir.join("scifact/rerank.jsonl").exists());
    }
    assert_eq!(
        split_points, 300,
        "every chunk of the split collection once"
    );
    whole_owners.sort();
    assert_eq!(whole_owners, ["notes-a", "notes-b"]);

    // The merge of the shared output directory equals the unsharded run.
    let merged = setup.tmp.path().join("merged");
    run(&mut merge(&setup.config, &merged, &[&out]), true);
    assert_same_outputs(
        &outputs(&merged, setup.tmp.path()),
        reference(),
        "3-shard merge",
    );
    let manifest = manifest(&merged);
    let from = manifest["merged_from"].as_array().unwrap();
    assert_eq!(from.len(), 3, "{from:?}");
    assert!(manifest.get("shard").is_none_or(Value::is_null));
}

/// Reads the child's stderr until a line holds every needle, then SIGKILLs it.
fn kill_at(mut command: Command, needles: &[&str]) {
    let mut child = command
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut seen = String::new();
    let mut killed = false;
    for line in BufReader::new(stderr).lines() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if needles.iter().all(|n| line.contains(n)) {
            child.kill().unwrap();
            killed = true;
            break;
        }
    }
    assert!(killed, "the shard ended before {needles:?}:\n{seen}");
    assert!(!child.wait().unwrap().success());
}

#[test]
fn a_shard_killed_and_resumed_merges_to_the_same_bytes() {
    let setup = setup();
    let out = setup.tmp.path().join("out");
    // Windows of 20 chunks: shard 0 is killed in the second window of the split collection.
    let windowed = |index: u32| {
        let mut shard = command(&setup.config, &out);
        shard
            .args(["--window-chunks", "20", "--shard"])
            .arg(format!("{index}/3"));
        shard
    };
    let victim = (0..3)
        .find(|&i| shard_of("notes-a", 3) != u64::from(i) && shard_of("notes-b", 3) != u64::from(i))
        .unwrap_or(0);
    kill_at(
        windowed(victim),
        &[
            "collection{name=scifact}",
            "window{index=1",
            "dense window done",
        ],
    );
    let dir = out.join(format!("shard-{victim}-of-3"));
    assert_eq!(manifest(&dir)["status"], "running");

    // The merge refuses the killed shard, naming it.
    let merged = setup.tmp.path().join("merged");
    for index in (0..3).filter(|&i| i != victim) {
        run(&mut windowed(index), true);
    }
    let refused = run(&mut merge(&setup.config, &merged, &[&out]), false);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    let message = stderr(&refused);
    assert!(
        message.contains(&format!("shard {victim}/3")) && message.contains("not finished"),
        "{message}"
    );

    run(windowed(victim).arg("--resume"), true);
    let resumed = manifest(&dir);
    assert_eq!(resumed["status"], "ok");
    assert_eq!(resumed["resumed_from"].as_array().map(Vec::len), Some(1));
    run(&mut merge(&setup.config, &merged, &[&out]), true);
    assert_same_outputs(
        &outputs(&merged, setup.tmp.path()),
        reference(),
        "merge after kill + resume",
    );
}

#[test]
fn the_one_machine_recipe_gives_the_unsharded_bytes() {
    let setup = setup();
    let out = setup.tmp.path().join("sharded");
    let mut script = Command::new("bash");
    script
        .arg(repo_root().join("deploy/shell/run-sharded.sh"))
        .arg("2")
        .arg(&setup.config)
        .arg(&out)
        .arg("-q")
        .env(
            "EMBED_COLLECTIONS_BIN",
            env!("CARGO_BIN_EXE_embed-collections"),
        )
        .env("EMBED_COLLECTIONS_MODELS_DIR", util::models_dir())
        .env("HF_HUB_OFFLINE", "1")
        .env("RUN_SHARDED_PARALLEL", "0");
    let output = script.output().unwrap();
    if !output.status.success() {
        let logs: Vec<String> = (0..2)
            .map(|i| {
                std::fs::read_to_string(out.join(format!("shard-{i}-of-2.log"))).unwrap_or_default()
            })
            .collect();
        panic!(
            "run-sharded.sh exited {:?}\n{}\n--- shard logs\n{}",
            output.status.code(),
            stderr(&output),
            logs.join("\n---\n")
        );
    }
    for index in 0..2 {
        assert!(out
            .join(format!("shard-{index}-of-2/manifest.json"))
            .is_file());
        assert!(out.join(format!("shard-{index}-of-2.log")).is_file());
    }
    assert_same_outputs(
        &outputs(&out.join("merged"), setup.tmp.path()),
        reference(),
        "run-sharded.sh 2",
    );
}

/// A one-collection input of five chunks, for the fast checks below (dense only).
fn tiny_input(dir: &Path) -> PathBuf {
    let root = dir.join("tiny");
    std::fs::create_dir_all(root.join("docs")).unwrap();
    let mut text = String::new();
    for i in 0..5 {
        text.push_str(&format!(
            "{{\"id\": \"c{i}\", \"text\": \"passage number {i} about topic {i}\"}}\n"
        ));
    }
    std::fs::write(root.join("docs/chunks.jsonl"), text).unwrap();
    root
}

fn tiny(root: &Path, out: &Path) -> Command {
    tiny_with(None, root, out, &["--no-sparse"])
}

/// A dense-only run (or `merge`, with `subcommand`) over the tiny input, with no scheduler
/// variables but the ones a test sets.
fn tiny_with(subcommand: Option<&str>, root: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut command = binary();
    command
        .args(subcommand)
        .arg("--input")
        .arg(root)
        .arg("--output")
        .arg(out)
        .args(["--no-rerank", "--device", "cpu", "-q"])
        .args(extra)
        .env_remove("JOB_COMPLETION_INDEX");
    for var in ["ID", "MIN", "MAX", "STEP", "COUNT"] {
        command.env_remove(format!("SLURM_ARRAY_TASK_{var}"));
    }
    command
}

fn shard_recorded(dir: &Path) -> (u64, u64) {
    let shard = &manifest(dir)["shard"];
    (
        shard["index"].as_u64().unwrap(),
        shard["count"].as_u64().unwrap(),
    )
}

#[test]
fn shard_auto_reads_kubernetes_and_slurm_variables() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tiny_input(tmp.path());
    let out = tmp.path().join("out");

    // Kubernetes Indexed Job: the index from JOB_COMPLETION_INDEX, the count from auto/N.
    run(
        tiny(&root, &out)
            .args(["--shard", "auto/2"])
            .env("JOB_COMPLETION_INDEX", "1"),
        true,
    );
    assert_eq!(shard_recorded(&out.join("shard-1-of-2")), (1, 2));

    // Slurm array --array=4-6: task 5 is shard 1 of 3.
    run(
        tiny(&root, &out)
            .args(["--shard", "auto"])
            .env("SLURM_ARRAY_TASK_ID", "5")
            .env("SLURM_ARRAY_TASK_MIN", "4")
            .env("SLURM_ARRAY_TASK_MAX", "6")
            .env("SLURM_ARRAY_TASK_STEP", "1")
            .env("SLURM_ARRAY_TASK_COUNT", "3"),
        true,
    );
    assert_eq!(shard_recorded(&out.join("shard-1-of-3")), (1, 3));
    // And through the environment variable.
    run(
        tiny(&root, &out)
            .env("EMBED_COLLECTIONS_SHARD", "auto")
            .env("SLURM_ARRAY_TASK_ID", "0")
            .env("SLURM_ARRAY_TASK_COUNT", "2"),
        true,
    );
    assert_eq!(shard_recorded(&out.join("shard-0-of-2")), (0, 2));

    // Each inconsistency is a usage error naming the variables, before anything runs.
    let refused_out = tmp.path().join("refused");
    // (--shard, scheduler variables, what the error must name)
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a [&'a str]);
    let cases: [Case; 5] = [
        (
            "auto/2",
            &[],
            &["JOB_COMPLETION_INDEX", "SLURM_ARRAY_TASK_ID"],
        ),
        ("auto", &[("JOB_COMPLETION_INDEX", "0")], &["auto/N"]),
        (
            "auto/2",
            &[("JOB_COMPLETION_INDEX", "0"), ("SLURM_ARRAY_TASK_ID", "0")],
            &["both"],
        ),
        (
            "auto/2",
            &[
                ("SLURM_ARRAY_TASK_ID", "1"),
                ("SLURM_ARRAY_TASK_COUNT", "3"),
            ],
            &["auto/2", "SLURM_ARRAY_TASK_COUNT=3"],
        ),
        (
            "auto/2",
            &[("JOB_COMPLETION_INDEX", "2")],
            &["JOB_COMPLETION_INDEX"],
        ),
    ];
    for (spec, vars, needles) in cases {
        let mut command = tiny(&root, &refused_out);
        command.args(["--shard", spec]).envs(vars.iter().copied());
        let output = run(&mut command, false);
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{spec} {vars:?}: {message}");
        for needle in needles {
            assert!(message.contains(needle), "{spec} {vars:?}: {message}");
        }
    }
    assert!(!refused_out.exists(), "a refused shard writes nothing");
}

#[test]
fn merge_refuses_missing_duplicated_unfinished_and_foreign_shards() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tiny_input(tmp.path());
    let out = tmp.path().join("out");
    for index in 0..2 {
        run(
            tiny(&root, &out).arg("--shard").arg(format!("{index}/2")),
            true,
        );
    }
    let shard0 = out.join("shard-0-of-2");
    let shard1 = out.join("shard-1-of-2");
    let merged = tmp.path().join("merged");
    let refused = |shards: &[&Path], needles: &[&str]| {
        let mut merge = tiny_with(Some("merge"), &root, &merged, &["--no-sparse"]);
        let output = run(merge.args(shards), false);
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{message}");
        for needle in needles {
            assert!(
                message.contains(needle),
                "expected {needle:?} in:\n{message}"
            );
        }
        // Shard-set problems are found before anything is written; the checks against the
        // merge's own models and input run after its run state is claimed, and then the
        // manifest says the merge failed.
        if merged.join("manifest.json").exists() {
            assert_eq!(manifest(&merged)["status"], "failed");
        }
        let _ = std::fs::remove_dir_all(&merged);
    };

    // Missing: only shard 0.
    refused(&[&shard0], &["1 of 2 shards missing", "shard-1-of-2"]);

    // Duplicated: a copy of shard 0 elsewhere.
    let copy = tmp.path().join("copy/shard-0-of-2");
    copy_dir(&shard0, &copy);
    refused(
        &[&shard0, &shard1, &copy],
        &["shard 0/2 is given twice", &copy.display().to_string()],
    );

    // Unfinished: a shard whose run failed.
    let failed = tmp.path().join("failed/shard-1-of-2");
    copy_dir(&shard1, &failed);
    let mut manifest = manifest(&failed);
    manifest["status"] = Value::from("failed");
    std::fs::write(failed.join("manifest.json"), manifest.to_string()).unwrap();
    refused(
        &[&shard0, &failed],
        &[
            "shard 1/2",
            &failed.display().to_string(),
            "not finished",
            "failed",
        ],
    );

    // Foreign: shard 1 of a run with SPLADE switched on.
    let other = tmp.path().join("other");
    run(
        &mut tiny_with(None, &root, &other, &["--shard", "1/2"]),
        true,
    );
    let foreign = other.join("shard-1-of-2");
    refused(&[&shard0, &foreign], &["shard 1/2", "sparse.enabled"]);

    // Foreign input: a chunk edited (same size) after the shards ran; the merge re-hashes it.
    let chunks = root.join("docs/chunks.jsonl");
    let text = std::fs::read_to_string(&chunks).unwrap();
    std::fs::write(
        &chunks,
        text.replace("passage number 3", "passage NUMBER 3"),
    )
    .unwrap();
    refused(&[&shard0, &shard1], &["docs", "read other input"]);

    // With the input restored, the same shards merge.
    std::fs::write(&chunks, text).unwrap();
    run(
        tiny_with(Some("merge"), &root, &merged, &["--no-sparse"]).arg(&out),
        true,
    );
    assert_eq!(util::read_jsonl(&merged.join("docs/points.jsonl")).len(), 5);
}
