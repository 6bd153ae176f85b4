//! Parquet outputs on the real binary and real models: the parts and query vectors hold exactly
//! the JSONL's values and are read as documented by pyarrow, DuckDB, Polars, LanceDB and
//! Hugging Face `datasets` (scripts/check-parquet.py); a Parquet-only run writes the same
//! parts; `convert` both ways equals a run that wrote that format; a run killed after a part
//! and resumed writes the same parts (a torn temporary part and a stale part are not kept);
//! two shards merged write the unsharded run's parts.

mod util;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use util::{binary, manifest, run, run_until};

/// 300 short chunks in windows of 128: three parts (128, 128, 44).
const WINDOW: &str = "128";
const COLLECTION: &str = "scifact";

fn input_root(dir: &Path) -> PathBuf {
    let root = dir.join("in");
    util::short_scifact(&root, COLLECTION);
    root
}

/// A dense + SPLADE run with fusion (no rerank) in `formats`.
fn command(root: &Path, out: &Path, formats: &str) -> Command {
    let mut command = util::cpu_run(root, out);
    command
        .args(["--no-rerank", "-v", "--window-chunks", WINDOW])
        .arg("--set")
        .arg(format!("output.formats={formats}"))
        .env("EMBED_COLLECTIONS_LOG_FORMAT", "text");
    command
}

/// Every file a format writes for the collection, by relative name.
fn files(out: &Path, parquet: bool) -> Vec<(String, Vec<u8>)> {
    let dir = out.join(COLLECTION);
    let mut names: Vec<String> = if parquet {
        let mut parts: Vec<String> = std::fs::read_dir(dir.join("points"))
            .unwrap()
            .map(|e| format!("points/{}", e.unwrap().file_name().to_string_lossy()))
            .collect();
        parts.push("query_vectors.parquet".into());
        parts
    } else {
        vec!["points.jsonl".into(), "query_vectors.jsonl".into()]
    };
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let bytes =
                std::fs::read(dir.join(&name)).unwrap_or_else(|err| panic!("{name}: {err}"));
            (name, bytes)
        })
        .collect()
}

fn assert_same(actual: &[(String, Vec<u8>)], expected: &[(String, Vec<u8>)], what: &str) {
    let names = |files: &[(String, Vec<u8>)]| files.iter().map(|f| f.0.clone()).collect::<Vec<_>>();
    assert_eq!(names(actual), names(expected), "{what}: file names");
    for ((name, bytes), (_, want)) in actual.iter().zip(expected) {
        assert!(bytes == want, "{what}: {name} differs");
    }
}

/// The run that wrote both formats: (its directory, JSONL files, Parquet files).
struct Reference {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    out: PathBuf,
    jsonl: Vec<(String, Vec<u8>)>,
    parquet: Vec<(String, Vec<u8>)>,
}

fn reference() -> &'static Reference {
    static REFERENCE: OnceLock<Reference> = OnceLock::new();
    REFERENCE.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let root = input_root(tmp.path());
        let out = tmp.path().join("both");
        run(&mut command(&root, &out, r#"["jsonl","parquet"]"#), true);
        let jsonl = files(&out, false);
        let parquet = files(&out, true);
        Reference {
            _tmp: tmp,
            root,
            out,
            jsonl,
            parquet,
        }
    })
}

#[test]
fn parts_hold_the_jsonl_values_and_the_real_readers_read_them_as_documented() {
    let reference = reference();
    let names: Vec<&str> = reference.parquet.iter().map(|f| f.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "points/part-00000.parquet",
            "points/part-00001.parquet",
            "points/part-00002.parquet",
            "query_vectors.parquet"
        ]
    );
    // The manifest lists every part with its rows, bytes and sha256.
    let manifest = manifest(&reference.out);
    let files = manifest["files"].as_array().unwrap();
    let mut rows = Vec::new();
    for (name, bytes) in &reference.parquet {
        let path = format!("{COLLECTION}/{name}");
        let record = files
            .iter()
            .find(|f| f["path"] == path.as_str())
            .unwrap_or_else(|| panic!("{path} not in the manifest"));
        assert_eq!(record["bytes"].as_u64(), Some(bytes.len() as u64));
        assert!(record["lines"].is_null(), "{record}");
        use sha2::Digest;
        assert_eq!(record["sha256"], hex::encode(sha2::Sha256::digest(bytes)));
        rows.push(record["rows"].as_u64().unwrap());
    }
    assert_eq!(rows, [128, 128, 44, 50]);

    let output = Command::new(util::python())
        .arg(util::repo_root().join("scripts/check-parquet.py"))
        .arg(&reference.out)
        .arg(COLLECTION)
        .output()
        .unwrap();
    let text = util::stdout_and_stderr(&output);
    assert!(output.status.success(), "{text}");
    let summary: serde_json::Value = serde_json::from_str(
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .last()
            .unwrap(),
    )
    .unwrap_or_else(|err| panic!("{err}: {text}"));
    assert_eq!(summary["rows"], 300, "{summary}");
    assert_eq!(summary["values_equal_jsonl"], true);
    assert_eq!(summary["duckdb_type"], "FLOAT[384]");
    assert_eq!(summary["duckdb_top10_equal"], true);
    assert!(
        summary["rerank_dense_ranks_checked"].as_u64().unwrap() > 50,
        "{summary}"
    );
    assert_eq!(summary["polars_dtype"], "Array(Float32, shape=(384,))");
    assert_eq!(summary["lancedb_top10_equal"], true);
    assert_eq!(
        summary["datasets_feature"],
        "List(Value('float32'), length=384)"
    );
}

#[test]
fn a_parquet_only_run_writes_the_same_parts_and_convert_gives_back_the_jsonl() {
    let reference = reference();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("parquet");
    run(&mut command(&reference.root, &out, r#"["parquet"]"#), true);
    assert!(!out.join(COLLECTION).join("points.jsonl").exists());
    assert_same(&files(&out, true), &reference.parquet, "Parquet-only run");

    let converted = run(
        binary().arg("convert").arg(&out).args(["--to", "jsonl"]),
        true,
    );
    assert!(util::stdout_and_stderr(&converted).contains("300 points"));
    assert_same(&files(&out, false), &reference.jsonl, "convert --to jsonl");
    let listed: Vec<String> = manifest(&out)["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_string())
        .collect();
    assert!(
        listed.contains(&format!("{COLLECTION}/points.jsonl")),
        "{listed:?}"
    );
    // Done already: nothing to convert.
    let again = run(
        binary().arg("convert").arg(&out).args(["--to", "jsonl"]),
        true,
    );
    assert!(util::stdout_and_stderr(&again).contains("nothing to convert"));
}

#[test]
fn convert_to_parquet_equals_a_parquet_run_and_refuses_a_changed_source() {
    let reference = reference();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("jsonl");
    run(&mut command(&reference.root, &out, r#"["jsonl"]"#), true);
    assert!(!out.join(COLLECTION).join("points").exists());

    // A points file edited after the run is refused, naming it; nothing is written.
    let copy = tmp.path().join("edited");
    util::copy_dir(&out, &copy);
    let points = copy.join(COLLECTION).join("points.jsonl");
    let mut text = std::fs::read(&points).unwrap();
    text[20] ^= 1;
    std::fs::write(&points, text).unwrap();
    let refused = run(
        binary().arg("convert").arg(&copy).args(["--to", "parquet"]),
        false,
    );
    assert_eq!(refused.status.code(), Some(3));
    let message = util::stderr(&refused);
    assert!(
        message.contains("scifact/points.jsonl") && message.contains("changed after the run"),
        "{message}"
    );
    assert!(!copy.join(COLLECTION).join("points").exists());

    run(
        binary().arg("convert").arg(&out).args(["--to", "parquet"]),
        true,
    );
    assert_same(
        &files(&out, true),
        &reference.parquet,
        "convert --to parquet",
    );
}

#[test]
fn killed_after_a_part_and_resumed_the_parts_are_byte_identical() {
    let reference = reference();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("killed");
    let (mut child, seen) = run_until(
        command(&reference.root, &out, r#"["parquet"]"#),
        &["parquet part written"],
        1,
        |child| child.kill().unwrap(),
    );
    assert!(!child.wait().unwrap().success(), "{seen}");
    let parts = out.join(COLLECTION).join("points");
    // What a run killed while writing the next part leaves, and a part no checkpoint counts.
    std::fs::write(parts.join(".tmp-torn.partial"), b"PAR1 torn").unwrap();
    std::fs::write(parts.join("part-00003.parquet"), b"not a part").unwrap();
    run(
        command(&reference.root, &out, r#"["parquet"]"#).arg("--resume"),
        true,
    );
    assert!(!parts.join(".tmp-torn.partial").exists());
    assert_same(&files(&out, true), &reference.parquet, "killed and resumed");
}

#[test]
fn two_shards_merged_write_the_unsharded_runs_parts() {
    let reference = reference();
    let tmp = tempfile::tempdir().unwrap();
    let shards = tmp.path().join("shards");
    for shard in ["1/2", "0/2"] {
        run(
            command(&reference.root, &shards, r#"["parquet"]"#).args([
                "--shard",
                shard,
                "--shard-split-bytes",
                "1000",
            ]),
            true,
        );
    }
    let merged = tmp.path().join("merged");
    let mut merge = binary();
    merge
        .arg("merge")
        .arg("--input")
        .arg(&reference.root)
        .arg("--output")
        .arg(&merged)
        .args(["--device", "cpu", "--no-rerank", "--window-chunks", WINDOW])
        .args([
            "--set",
            r#"output.formats=["parquet"]"#,
            "--shard-split-bytes",
            "1000",
        ])
        .arg(&shards);
    run(&mut merge, true);
    assert_same(&files(&merged, true), &reference.parquet, "merged shards");
}
