//! Out-of-memory recovery and data parallelism through the real pipeline on the CPU (DESIGN §5):
//! an injected OOM halves and retries with nothing lost or duplicated; an item that still fails
//! alone fails the dense stage loudly; N workers give the same vectors as one.

mod util;

use embed_collections::batching::BatchBudget;
use embed_collections::config::{
    self, DenseModelConfig, DeviceSpec, Environment, Overrides, Precision,
};
use embed_collections::dispatch::Fault;
use embed_collections::models::packed::Threads;
use embed_collections::models::{select_device, DenseEmbedder, ModelManager};
use embed_collections::pipeline::BatchRunner;
use std::path::Path;
use util::{max_abs_diff, models_dir, read_jsonl};

const TEXTS: [&str; 7] = [
    "Vitamin D supplements and bone health in older adults.",
    "Transformers encode text into dense vectors.",
    "A short one.",
    "Insulin resistance is associated with obesity and type 2 diabetes in many cohorts.",
    "Sparse retrieval with learned term weights.",
    "Rerankers score query and passage pairs jointly.",
    "The weather is nice today.",
];

/// A one-collection dense-only run with small batches; returns the output dir.
fn run_dense(
    root: &Path,
    fault: Option<Box<embed_collections::dispatch::FaultInjector>>,
) -> Result<std::path::PathBuf, String> {
    let collection = root.join("in/notes");
    std::fs::create_dir_all(&collection).unwrap();
    let lines: Vec<String> = TEXTS
        .iter()
        .enumerate()
        .map(|(i, t)| serde_json::json!({"id": format!("c{i}"), "text": t}).to_string())
        .collect();
    std::fs::write(collection.join("chunks.jsonl"), lines.join("\n")).unwrap();
    let out = root.join("out");
    let flags = Overrides {
        input: Some(root.join("in")),
        output: Some(out.clone()),
        no_sparse: true,
        no_rerank: true,
        device: Some(DeviceSpec::Cpu),
        models_dir: Some(models_dir()),
        ..Overrides::default()
    };
    let config = config::resolve_layers(
        None,
        Default::default(),
        &Environment::from_pairs([("HOME", "/nonexistent")]),
        &flags,
    )
    .unwrap();
    let manager = ModelManager::new(models_dir(), root.join("hf"), true);
    let mut runner = BatchRunner::new(config, manager);
    if let Some(fault) = fault {
        runner = runner.with_dense_fault(fault);
    }
    let outcome = runner.run().map_err(|err| err.to_string())?;
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    if manifest["collections"][0]["status"] != "ok" {
        return Err(format!(
            "collection status {}",
            manifest["collections"][0]["status"]
        ));
    }
    drop(outcome);
    Ok(out)
}

fn vectors(out: &Path) -> Vec<(String, Vec<f32>)> {
    read_jsonl(&out.join("notes/points.jsonl"))
        .into_iter()
        .map(|p| {
            (
                p["chunk_id"].as_str().unwrap().to_string(),
                serde_json::from_value(p["vector"]["minilm"].clone())
                    .or_else(|_| serde_json::from_value(p["vector"]["dense"].clone()))
                    .unwrap_or_else(|_| {
                        let (_, v) = p["vector"].as_object().unwrap().iter().next().unwrap();
                        serde_json::from_value(v.clone()).unwrap()
                    }),
            )
        })
        .collect()
}

#[test]
fn injected_oom_halves_and_retries_without_losing_or_duplicating() {
    let clean = tempfile::tempdir().unwrap();
    let expected = vectors(&run_dense(clean.path(), None).unwrap());
    let tmp = tempfile::tempdir().unwrap();
    // Any batch of more than two chunks "runs out of memory".
    let out = run_dense(
        tmp.path(),
        Some(Box::new(|items: &[usize]| {
            (items.len() > 2).then_some(Fault::OutOfMemory)
        })),
    )
    .unwrap();
    let got = vectors(&out);
    assert_eq!(got.len(), TEXTS.len(), "one point per chunk");
    for ((id_a, a), (id_b, b)) in got.iter().zip(&expected) {
        assert_eq!(id_a, id_b, "same chunks in the same order");
        assert!(max_abs_diff(a, b) < 1e-5);
    }
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    let dispatch = &manifest["collections"][0]["stages"]["dense"]["runs"][0]["dispatch"];
    assert!(dispatch["oom_events"].as_u64().unwrap() > 0, "{dispatch}");
    assert!(dispatch["halvings"].as_u64().unwrap() > 0);
    assert!(dispatch["min_budget_tokens"].as_u64().unwrap() < 8192);
    assert_eq!(dispatch["failed_items"], 0);
}

#[test]
fn an_item_that_fails_alone_fails_the_dense_stage_loudly() {
    let tmp = tempfile::tempdir().unwrap();
    let result = run_dense(
        tmp.path(),
        Some(Box::new(|items: &[usize]| {
            items.contains(&3).then_some(Fault::OutOfMemory)
        })),
    );
    let message = result.expect_err("dense has no fallback");
    assert!(!message.is_empty());
}

#[test]
fn several_workers_give_the_same_vectors_as_one() {
    let model = "sentence-transformers/all-MiniLM-L6-v2";
    let manager = ModelManager::new(models_dir(), std::env::temp_dir().join("no-hf-cache"), true);
    let resolved = manager.resolve(model, None, None).unwrap();
    let device = select_device(&DeviceSpec::Cpu, Precision::F32).unwrap();
    let config = DenseModelConfig::for_model("minilm", model);
    let mut one = DenseEmbedder::load(&config, &resolved, &device).unwrap();
    one.set_parallelism(1, Threads::Pool(2));
    let mut three = DenseEmbedder::load(&config, &resolved, &device).unwrap();
    three.set_parallelism(3, Threads::Single);
    let budget = BatchBudget {
        max_tokens: 64,
        max_items: 2,
    };
    let a = one.embed_documents(&TEXTS, budget).unwrap();
    let b = three.embed_documents(&TEXTS, budget).unwrap();
    assert!(b.dispatch.per_worker.len() == 3);
    assert!(
        b.dispatch
            .per_worker
            .iter()
            .filter(|w| w.batches > 0)
            .count()
            > 1,
        "work was shared: {:?}",
        b.dispatch.per_worker
    );
    assert_eq!(a.vectors.len(), TEXTS.len());
    for (x, y) in a.vectors.iter().zip(&b.vectors) {
        assert!(max_abs_diff(x, y) < 1e-6);
    }
}
