//! The points as their real consumer sees them: `scripts/check-qdrant.py` loads a run's points
//! into the Qdrant client (qdrant-client, local mode; installed in the project's Python venv by
//! `scripts/python-env.sh`), validates every point against the client's models, recomputes
//! every point id from the documented namespace, upserts them into a collection created from
//! the manifest, searches it, and checks that Qdrant's own RRF over the exported query vectors
//! returns the run's fused lists.

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
    run(
        binary()
            .arg("--config")
            .arg(repo_root().join("configs/quickstart.toml"))
            .arg("--input")
            .arg(input.path())
            .arg("--output")
            .arg(out.path())
            .args(["--no-rerank", "-q", "--collections", "scifact-mini"])
            .arg("--queries")
            .arg(collection.join("queries.jsonl")),
        true,
    );
    let python = util::python();
    let check = run(
        Command::new(python)
            .arg(repo_root().join("scripts/check-qdrant.py"))
            .arg(out.path()),
        true,
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&check.stdout).expect("one JSON summary line");
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
    assert_eq!(summary["fused_queries_equal_qdrant_rrf"], 50, "{summary}");
}
