//! The points as their real consumer sees them: `scripts/check-qdrant.py` loads a run's points
//! into the Qdrant client (qdrant-client, local mode; installed in the project's Python venv by
//! `scripts/python-env.sh`), validates every point against the client's models, recomputes
//! every point id from the documented namespace, upserts them into a collection created from
//! the manifest, searches it, and checks that the Qdrant request the manifest gives for the
//! run's fusion (RRF, weighted RRF, DBSF, a list alone) returns the run's fused lists over the
//! exported query vectors.

mod util;

use std::process::Command;
use util::{binary, repo_root, run};

#[test]
fn every_point_loads_into_the_real_qdrant_client() {
    let out = tempfile::tempdir().unwrap();
    let input = tempfile::tempdir().unwrap();
    // The quickstart's models and fusion over the 300-abstract slice (cut short) with its own
    // 50 queries (the 2,000-abstract collection is the cli test's; this one needs every query,
    // not size).
    let collection = util::short_scifact(input.path(), "scifact-mini");
    // The quickstart without rerank into `output`, with `extra` arguments; then
    // check-qdrant.py's summary of it.
    let check = |output: &std::path::Path, extra: &[&std::ffi::OsStr]| -> serde_json::Value {
        run(
            binary()
                .arg("--config")
                .arg(repo_root().join("configs/quickstart.toml"))
                .arg("--input")
                .arg(input.path())
                .arg("--output")
                .arg(output)
                .args(["--no-rerank", "-q", "--collections", "scifact-mini"])
                .arg("--queries")
                .arg(collection.join("queries.jsonl"))
                .args(extra),
            true,
        );
        let check = run(
            Command::new(util::python())
                .arg(repo_root().join("scripts/check-qdrant.py"))
                .arg(output),
            true,
        );
        serde_json::from_slice(&check.stdout).expect("one JSON summary line")
    };
    let summary = check(out.path(), &[]);
    assert_eq!(summary["collection"], "scifact-mini");
    for key in [
        "points",
        "valid_points",
        "ids_recomputed",
        "in_qdrant",
        "points_with_sparse",
    ] {
        assert_eq!(summary[key], 300, "{key}: {summary}");
    }
    assert_eq!(summary["dense_vectors"], serde_json::json!(["minilm"]));
    assert_eq!(summary["sparse_vectors"], serde_json::json!(["splade"]));
    // Qdrant's hybrid RRF (k = 61 on 0-based positions) over the exported query vectors gives
    // the run's fused list for every one of the 50 bundled queries.
    assert_eq!(summary["fused_queries_equal_qdrant"], 50, "{summary}");
    assert_eq!(
        summary["qdrant_fusion"], r#"{"rrf": {"k": 61}}"#,
        "{summary}"
    );

    // The other fusions Qdrant has, over the same vectors (reused: only the ranking runs).
    for (settings, fusion) in [
        (
            &["fusion.sparse_weight=3.0", "fusion.rrf_k=5"][..],
            r#"{"rrf": {"k": 6, "weights": [1.0, 3.0]}}"#,
        ),
        (&["fusion.method=\"dbsf\""][..], r#"{"fusion": "dbsf"}"#),
        (&["fusion.method=\"sparse\""][..], "plain"),
    ] {
        let again = tempfile::tempdir().unwrap();
        let mut extra = vec![std::ffi::OsStr::new("--reuse"), out.path().as_os_str()];
        for setting in settings {
            extra.extend([std::ffi::OsStr::new("--set"), std::ffi::OsStr::new(setting)]);
        }
        let summary = check(again.path(), &extra);
        assert_eq!(summary["qdrant_fusion"], fusion, "{settings:?}: {summary}");
        assert_eq!(
            summary["fused_queries_equal_qdrant"], 50,
            "{settings:?}: {summary}"
        );
    }
}
