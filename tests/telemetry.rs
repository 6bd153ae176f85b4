//! Logs, metrics, privacy and the `check` command, through the real binary.

mod util;

use std::path::Path;
use util::{binary, run, stderr};

/// Every file under `dir`, with its text.
fn all_files(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(all_files(&path));
        } else {
            out.push((
                path.display().to_string(),
                String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned(),
            ));
        }
    }
    out
}

/// Two collections seeded with unique markers: one with its own queries and qrels (file
/// queries, rerank, evaluation), one without (probe queries made from titles).
fn seeded_input(root: &Path) {
    let judged = root.join("in/judged");
    std::fs::create_dir_all(judged.join("qrels")).unwrap();
    let chunks = [
        r#"{"_id": "d1", "title": "ZQXTITLEONE vitamin study", "text": "ZQXTEXTONE Vitamin D levels were measured in 300 adults.", "metadata": {"author": "ZQXMETAONE"}}"#,
        r#"{"_id": "d2", "title": "ZQXTITLETWO insulin trial", "text": "ZQXTEXTTWO Insulin lowered glucose in the treated group.", "metadata": {"email": "ZQXMETATWO@example.org"}}"#,
        r#"{"_id": "d3", "title": "", "text": "ZQXTEXTTHREE Tides follow the moon. More text follows here."}"#,
    ];
    std::fs::write(judged.join("corpus.jsonl"), chunks.join("\n")).unwrap();
    std::fs::write(
        judged.join("queries.jsonl"),
        "{\"_id\": \"q1\", \"text\": \"ZQXQUERYONE does vitamin D matter\"}\n",
    )
    .unwrap();
    std::fs::write(
        judged.join("qrels/test.tsv"),
        "query-id\tcorpus-id\tscore\nq1\td1\t1\n",
    )
    .unwrap();
    let probed = root.join("in/probed");
    std::fs::create_dir_all(&probed).unwrap();
    let chunks = [
        r#"{"id": "p1", "title": "ZQXPROBETITLE glaciers", "text": "ZQXPROBETEXT Glaciers move slowly."}"#,
        r#"{"id": "p2", "text": "ZQXPROBEFIRSTSENTENCE jazz began in New Orleans. It spread."}"#,
    ];
    std::fs::write(probed.join("chunks.jsonl"), chunks.join("\n")).unwrap();
}

const PRIVATE: [&str; 8] = [
    "ZQXTEXTONE",
    "ZQXTEXTTWO",
    "ZQXTEXTTHREE",
    "ZQXTITLEONE",
    "ZQXQUERYONE",
    "ZQXPROBETITLE",
    "ZQXPROBETEXT",
    "ZQXPROBEFIRSTSENTENCE",
];

#[test]
fn no_text_query_or_metadata_leaves_the_process_except_in_opted_in_payloads() {
    let tmp = tempfile::tempdir().unwrap();
    seeded_input(tmp.path());
    let config = tmp.path().join("run.toml");
    std::fs::write(
        &config,
        "[input]\nroot = \"in\"\n[output]\ndir = \"out\"\n[rerank]\ncandidates = 2\ntop_k = 2\n",
    )
    .unwrap();
    let output = run(binary().arg("--config").arg(&config).arg("-vv"), true);
    let mut places = all_files(&tmp.path().join("out"));
    places.push((
        "stdout".into(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    ));
    places.push(("stderr".into(), stderr(&output)));
    assert!(places
        .iter()
        .any(|(p, _)| p.ends_with("judged/rerank.jsonl")));
    assert!(
        places
            .iter()
            .any(|(p, _)| p.ends_with("probed/rerank.jsonl")),
        "probe ran"
    );
    assert!(places.iter().any(|(p, _)| p.ends_with("metrics.prom")));
    for (place, text) in &places {
        for marker in PRIVATE {
            assert!(!text.contains(marker), "{marker} leaked into {place}");
        }
        for marker in ["ZQXMETAONE", "ZQXMETATWO"] {
            if text.contains(marker) {
                assert!(
                    place.ends_with("points.jsonl"),
                    "metadata value {marker} leaked into {place}"
                );
            }
        }
    }

    // Opting in puts text into point payloads, and only there.
    std::fs::write(&config, "[input]\nroot = \"in\"\n[output]\ndir = \"out2\"\ninclude_text = true\n[rerank]\ncandidates = 2\ntop_k = 2\n").unwrap();
    let output = run(binary().arg("--config").arg(&config).arg("-vv"), true);
    let mut places = all_files(&tmp.path().join("out2"));
    places.push(("stderr".into(), stderr(&output)));
    assert!(places
        .iter()
        .any(|(p, t)| p.ends_with("judged/points.jsonl") && t.contains("ZQXTEXTONE")));
    for (place, text) in &places {
        for marker in PRIVATE {
            if text.contains(marker) {
                assert!(
                    place.ends_with("points.jsonl"),
                    "{marker} leaked into {place}"
                );
            }
        }
    }
}

#[test]
fn json_logs_parse_and_metrics_carry_the_expected_series() {
    let tmp = tempfile::tempdir().unwrap();
    seeded_input(tmp.path());
    let out = tmp.path().join("out");
    let output = run(
        binary()
            .arg("--input")
            .arg(tmp.path().join("in"))
            .arg("--output")
            .arg(&out)
            .arg("--no-rerank")
            .arg("--log-format")
            .arg("json")
            .arg("-v"),
        true,
    );
    let log = stderr(&output);
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() > 5);
    for line in &lines {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            value.get("level").is_some() && value.get("fields").is_some(),
            "{line}"
        );
    }
    assert!(lines.iter().any(|l| l.contains("\"dense stage done\"")));

    let metrics = std::fs::read_to_string(out.join("metrics.prom")).unwrap();
    for series in [
        "embed_collections_run_success 1",
        "embed_collections_points{collection=\"judged\"} 3",
        "embed_collections_chunks{collection=\"probed\"} 2",
        "embed_collections_stage_items{collection=\"judged\",stage=\"dense\",model=\"all-MiniLM-L6-v2\"} 3",
        "embed_collections_stage_status{collection=\"judged\",stage=\"rerank\",status=\"disabled\"} 1",
        "embed_collections_eval_mrr_at_10{collection=\"judged\",list=\"dense\"}",
    ] {
        assert!(metrics.contains(series), "missing {series} in\n{metrics}");
    }
    for line in metrics.lines().filter(|l| !l.starts_with('#')) {
        let (name, value) = line.rsplit_once(' ').unwrap();
        assert!(name.starts_with("embed_collections_"), "{line}");
        value
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("bad value in {line}"));
    }
}

#[test]
fn failed_run_still_writes_metrics_saying_so() {
    let tmp = tempfile::tempdir().unwrap();
    seeded_input(tmp.path());
    let config = tmp.path().join("run.toml");
    std::fs::write(&config, "[input]\nroot = \"in\"\n[output]\ndir = \"out\"\n[[dense.models]]\nmodel = \"nobody/absent\"\n").unwrap();
    let output = run(
        binary()
            .arg("--config")
            .arg(&config)
            .env("HF_HOME", tmp.path().join("hf")),
        false,
    );
    assert_eq!(output.status.code(), Some(1));
    let metrics = std::fs::read_to_string(tmp.path().join("out/metrics.prom")).unwrap();
    assert!(
        metrics.contains("embed_collections_run_success 0"),
        "{metrics}"
    );
}

#[test]
fn check_reports_every_problem_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("in");
    std::fs::create_dir_all(root.join("a")).unwrap();
    std::fs::create_dir_all(root.join("b")).unwrap();
    std::fs::write(root.join("a/x.jsonl"), "{\"id\": \"1\", \"text\": \"ok\"}\n{\"id\": \"2\", \"text\": \n{\"id\": \"3\", \"text\": \"\"}\n").unwrap();
    std::fs::write(
        root.join("b/y.jsonl"),
        "{\"id\": \"1\", \"text\": \"ok\"}\n{\"id\": \"1\", \"text\": \"again\"}\n",
    )
    .unwrap();
    let config = tmp.path().join("run.toml");
    std::fs::write(
        &config,
        "[input]\nroot = \"in\"\n[output]\ndir = \"out\"\n[sparse]\nmodel = \"nobody/no-splade\"\n",
    )
    .unwrap();
    let output = run(
        binary()
            .arg("check")
            .arg("--config")
            .arg(&config)
            .env("HF_HOME", tmp.path().join("hf")),
        false,
    );
    assert_eq!(output.status.code(), Some(3), "input problems come first");
    let stdout = String::from_utf8_lossy(&output.stdout);
    for expected in [
        "a/x.jsonl:2: malformed_json",
        "a/x.jsonl:3: empty_text",
        "b/y.jsonl:2: duplicate_id",
        "sparse model",
        "nobody/no-splade",
    ] {
        assert!(
            stdout.contains(expected),
            "{expected} not reported:\n{stdout}"
        );
    }
    assert!(stdout.contains("4 errors"), "{stdout}");
    assert!(
        !tmp.path().join("out/manifest.json").exists(),
        "check runs nothing"
    );

    let bad = tmp.path().join("bad.toml");
    std::fs::write(&bad, "[input]\nroot = \"in\"\nrooot = 1\n").unwrap();
    let output = run(binary().arg("check").arg("--config").arg(&bad), false);
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn help_documents_every_flag_variable_and_exit_code() {
    let output = run(binary().arg("--help"), true);
    let help = String::from_utf8_lossy(&output.stdout);
    for (var, _) in embed_collections::config::env_vars::ALL {
        assert!(help.contains(var), "--help does not mention {var}");
    }
    for flag in [
        "--config",
        "--input",
        "--output",
        "--collections",
        "--no-sparse",
        "--no-rerank",
        "--device",
        "--models-dir",
        "--log-format",
        "--quiet",
        "HF_HUB_OFFLINE",
        "Exit codes",
        "check",
        "eval",
    ] {
        assert!(help.contains(flag), "--help does not mention {flag}");
    }
    for generic in ["--set", "EMBED_COLLECTIONS__SECTION__KEY", "config"] {
        assert!(help.contains(generic), "--help does not mention {generic}");
    }
    let reference =
        std::fs::read_to_string(util::repo_root().join("docs/configuration.md")).unwrap();
    // The settings table is rendered from the one place the keys are declared.
    let table = embed_collections::config::keys::markdown_table();
    assert!(
        reference.contains(&table),
        "docs/configuration.md's settings table differs from src/config/keys.rs; the table should read:\n{table}"
    );
    for (var, setting) in embed_collections::config::env_vars::ALL {
        assert!(
            reference.contains(&format!("| `{var}` | `{setting}`")),
            "docs/configuration.md's variables table lacks {var}"
        );
    }
}

#[test]
fn config_prints_the_effective_settings_and_a_run_records_generic_overrides() {
    let tmp = tempfile::tempdir().unwrap();
    let quickstart = util::repo_root().join("configs/quickstart.toml");
    let output = run(
        binary()
            .arg("config")
            .arg("--config")
            .arg(&quickstart)
            .args(["--set", "rerank.candidates=20"])
            .env("EMBED_COLLECTIONS__RERANK__TOP_K", "5"),
        true,
    );
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        printed.contains("candidates = 20  # flag:--set"),
        "{printed}"
    );
    assert!(
        printed.contains("top_k = 5  # env:EMBED_COLLECTIONS__RERANK__TOP_K"),
        "{printed}"
    );
    assert!(
        printed.contains(&format!(
            "max_length = 256  # file:{}",
            quickstart.display()
        )),
        "{printed}"
    );
    // Its output is a config file that gives the same settings.
    let saved = tmp.path().join("effective.toml");
    std::fs::write(&saved, printed.as_bytes()).unwrap();
    let again = run(binary().arg("config").arg("--config").arg(&saved), true);
    let strip = |text: &str| -> Vec<String> {
        text.lines()
            .map(|line| line.split("  # ").next().unwrap_or(line).to_string())
            .collect()
    };
    assert_eq!(
        strip(&String::from_utf8_lossy(&again.stdout)),
        strip(&printed)
    );

    // A misspelt key is a configuration error naming the nearest key.
    let refused = run(
        binary()
            .arg("config")
            .arg("--config")
            .arg(&quickstart)
            .args(["--set", "rerank.candidate=20"]),
        false,
    );
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        stderr(&refused).contains("did you mean `rerank.candidates`"),
        "{}",
        stderr(&refused)
    );

    // A run records where generic overrides came from.
    let root = tmp.path().join("in");
    std::fs::create_dir_all(root.join("docs")).unwrap();
    std::fs::write(
        root.join("docs/chunks.jsonl"),
        "{\"id\": \"a\", \"text\": \"alpha\"}\n{\"id\": \"b\", \"text\": \"beta\"}\n",
    )
    .unwrap();
    let out = tmp.path().join("out");
    run(
        binary()
            .arg("--input")
            .arg(&root)
            .arg("--output")
            .arg(&out)
            .args(["--no-sparse", "--no-rerank", "--device", "cpu", "-q"])
            .args(["--set", "dense.max_batch_size=1"])
            .env("EMBED_COLLECTIONS__FUSION__DEPTH", "7"),
        true,
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    let config = &manifest["config"];
    assert_eq!(config["dense"]["max_batch_size"], 1);
    assert_eq!(config["fusion"]["depth"], 7);
    assert_eq!(config["provenance"]["dense.max_batch_size"], "flag:--set");
    assert_eq!(
        config["provenance"]["fusion.depth"],
        "env:EMBED_COLLECTIONS__FUSION__DEPTH"
    );
}
