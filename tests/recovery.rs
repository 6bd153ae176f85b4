//! Out-of-memory recovery and data parallelism through the real pipeline on the CPU:
//! an injected OOM halves and retries with nothing lost or duplicated; an item that still fails
//! alone fails the dense stage loudly; N workers give the same vectors as one.

mod util;

use embed_collections::batching::BatchBudget;
use embed_collections::config::{
    self, DenseModelConfig, DeviceSpec, Environment, Overrides, Precision,
};
use embed_collections::dispatch::Fault;
use embed_collections::gpu::{DeviceId, MemoryProbe, ScriptedProbe};
use embed_collections::models::packed::Threads;
use embed_collections::models::{
    select_device, DenseEmbedder, ModelManager, Replicas, ResolvedModel, SelectedDevice,
};
use embed_collections::pipeline::BatchRunner;
use std::path::Path;
use util::{manifest, max_abs_diff, models_dir, read_jsonl};

const TEXTS: [&str; 7] = [
    "Vitamin D supplements and bone health in older adults.",
    "Transformers encode text into dense vectors.",
    "A short one.",
    "Insulin resistance is associated with obesity and type 2 diabetes in many cohorts.",
    "Sparse retrieval with learned term weights.",
    "Rerankers score query and passage pairs jointly.",
    "The weather is nice today.",
];

/// A one-collection dense-only run; returns the output dir.
fn run_dense(
    root: &Path,
    fault: Option<Box<embed_collections::dispatch::FaultInjector>>,
) -> Result<std::path::PathBuf, String> {
    run_dense_with(root, fault, None)
}

fn run_dense_with(
    root: &Path,
    fault: Option<Box<embed_collections::dispatch::FaultInjector>>,
    probe: Option<Box<dyn MemoryProbe>>,
) -> Result<std::path::PathBuf, String> {
    let mut runner = fixture_runner(root, None);
    if let Some(fault) = fault {
        runner = runner.with_dense_fault(fault);
    }
    if let Some(probe) = probe {
        runner = runner.with_memory_probe(probe);
    }
    runner.run().map_err(|err| err.to_string())?;
    let out = root.join("out");
    let manifest = manifest(&out);
    if manifest["collections"][0]["status"] != "ok" {
        return Err(format!(
            "collection status {}: {}",
            manifest["collections"][0]["status"], manifest["collections"][0]["error"]
        ));
    }
    Ok(out)
}

/// Writes the TEXTS collection under `root/in` and a runner over it into `root/out`, CPU,
/// its own lock dir: dense only without `config_toml`, else with that config file.
fn fixture_runner(root: &Path, config_toml: Option<&str>) -> BatchRunner {
    let collection = root.join("in/notes");
    std::fs::create_dir_all(&collection).unwrap();
    let lines: Vec<String> = TEXTS
        .iter()
        .enumerate()
        .map(|(i, t)| serde_json::json!({"id": format!("c{i}"), "text": t}).to_string())
        .collect();
    std::fs::write(collection.join("chunks.jsonl"), lines.join("\n")).unwrap();
    let flags = Overrides {
        input: Some(root.join("in")),
        output: Some(root.join("out")),
        no_sparse: config_toml.is_none(),
        no_rerank: config_toml.is_none(),
        device: Some(DeviceSpec::Cpu),
        models_dir: Some(models_dir()),
        ..Overrides::default()
    };
    let (file, layer) = match config_toml {
        Some(text) => {
            let path = root.join("run.toml");
            std::fs::write(&path, text).unwrap();
            let layer = config::load_file(&path).unwrap();
            (Some(path), layer)
        }
        None => (None, Default::default()),
    };
    let config = config::resolve_layers(
        file.as_deref(),
        layer,
        &Environment::from_pairs([("HOME", "/nonexistent")]),
        &flags,
    )
    .unwrap();
    let manager = ModelManager::new(models_dir(), root.join("hf"), true);
    BatchRunner::new(config, manager).with_lock_dir(root.join("locks"))
}

/// (chunk id, dense vector) per point of a dense-only run (its one named vector).
fn vectors(out: &Path) -> Vec<(String, Vec<f32>)> {
    read_jsonl(&out.join("notes/points.jsonl"))
        .into_iter()
        .map(|p| {
            let named = p["vector"].as_object().unwrap();
            assert_eq!(named.len(), 1, "a dense-only point has one vector");
            let vector = named.values().next().unwrap().clone();
            (
                p["payload"]["chunk_id"].as_str().unwrap().to_string(),
                serde_json::from_value(vector).unwrap(),
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

/// What loading all-MiniLM-L6-v2 on the CPU in f32 takes.
fn minilm_on_cpu() -> (DenseModelConfig, ResolvedModel, SelectedDevice) {
    let model = "sentence-transformers/all-MiniLM-L6-v2";
    let manager = ModelManager::new(models_dir(), std::env::temp_dir().join("no-hf-cache"), true);
    let resolved = manager.resolve(model, None, None).unwrap();
    let device = select_device(&DeviceSpec::Cpu, Precision::F32).unwrap();
    (
        DenseModelConfig::for_model("minilm", model),
        resolved,
        device,
    )
}

#[test]
fn several_workers_give_the_same_vectors_as_one() {
    let (config, resolved, device) = minilm_on_cpu();
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

#[test]
fn one_replica_per_device_gives_the_same_vectors_as_one_model() {
    // Two devices' worth of replicas, here two CPU copies with one worker each: the code path a
    // stage takes with two GPUs (a copy of the weights per device, a worker per copy).
    let (config, resolved, device) = minilm_on_cpu();
    let single = DenseEmbedder::load(&config, &resolved, &device).unwrap();
    let replicas = Replicas::load(&[device.clone(), device.clone()], |device| {
        let mut copy = DenseEmbedder::load(&config, &resolved, device)?;
        copy.set_parallelism(1, Threads::Single);
        Ok(copy)
    })
    .unwrap();
    let workers = replicas.workers();
    assert_eq!(workers.len(), 2, "one worker per replica");
    assert!(
        !std::ptr::eq(workers[0], workers[1]),
        "each worker has its own copy"
    );
    let budget = BatchBudget {
        max_tokens: 64,
        max_items: 2,
    };
    let expected = single.embed_documents(&TEXTS, budget).unwrap();
    let got = replicas
        .embed_documents_observed(&TEXTS, budget, &|_| {}, None, 0)
        .unwrap();
    assert_eq!(got.dispatch.per_worker.len(), 2);
    let got: Vec<Vec<f32>> = got.results.into_iter().map(Result::unwrap).collect();
    assert_eq!(got.len(), TEXTS.len());
    for (x, y) in expected.vectors.iter().zip(&got) {
        assert!(max_abs_diff(x, y) < 1e-6);
    }
}

const MIB: u64 = 1 << 20;

#[test]
fn injected_memory_readings_bound_every_planned_batch() {
    let clean = tempfile::tempdir().unwrap();
    let clean_out = run_dense(clean.path(), None).unwrap();
    let roomy = manifest(&clean_out)["collections"][0]["stages"]["dense"]["runs"][0].clone();
    let tmp = tempfile::tempdir().unwrap();
    // 96 MiB free, exclusive stages (as on a GPU): the stage leases before its weights
    // (~87 MiB) are uploaded, so they come off the budget and leave a few MiB for activations.
    let probe = ScriptedProbe::new().with_constant(DeviceId::Cpu, 16 << 30, 96 * MIB);
    fixture_runner(tmp.path(), None)
        .with_memory_probe(Box::new(probe))
        .with_exclusive_models()
        .run()
        .unwrap();
    let out = tmp.path().join("out");
    let run = manifest(&out)["collections"][0]["stages"]["dense"]["runs"][0].clone();
    let memory = &run["memory"];
    assert_eq!(memory["device"], "cpu");
    assert_eq!(memory["budget_bytes"], 96 * MIB);
    assert!(
        memory["weights_bytes"].as_u64().unwrap() > 80 * MIB,
        "{memory}"
    );
    let planned = memory["max_tokens"].as_u64().unwrap();
    assert!(
        planned < roomy["memory"]["max_tokens"].as_u64().unwrap(),
        "a small budget plans smaller batches: {memory}"
    );
    assert!(
        run["max_batch_tokens"].as_u64().unwrap() <= planned,
        "{run}"
    );
    // The budget, not the spreading over workers, split the input: its batches' padded tokens
    // alone exceed one planned batch, so one batch of all of it would too.
    assert!(
        run["padded_tokens"].as_u64().unwrap() > planned,
        "the input needs more than one batch of the planned size: {run}"
    );
    for ((id_a, a), (id_b, b)) in vectors(&out).iter().zip(&vectors(&clean_out)) {
        assert_eq!(id_a, id_b);
        assert!(max_abs_diff(a, b) < 1e-5, "batching never changes a vector");
    }
}

#[test]
fn every_stage_leases_and_releases_its_device_with_memory_readings() {
    let tmp = tempfile::tempdir().unwrap();
    let probe = ScriptedProbe::new().with_constant(DeviceId::Cpu, 16 << 30, 8 << 30);
    let out = run_dense_with(tmp.path(), None, Some(Box::new(probe))).unwrap();
    let leases = manifest(&out)["leases"].as_array().unwrap().clone();
    let kinds: Vec<(&str, &str)> = leases
        .iter()
        .map(|e| (e["stage"].as_str().unwrap(), e["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(kinds, [("dense", "leased"), ("dense", "released")]);
    assert_eq!(leases[0]["device"], "cpu");
    assert_eq!(leases[0]["memory"]["free_bytes"], 8u64 << 30);
}

#[test]
fn a_device_without_memory_fails_the_dense_stage_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let probe = ScriptedProbe::new().with_constant(DeviceId::Cpu, 16 << 30, 10 * MIB);
    let message = run_dense_with(tmp.path(), None, Some(Box::new(probe))).unwrap_err();
    assert!(message.contains("\"failed\""), "{message}");
    assert!(message.contains("cpu"), "names the device: {message}");
    assert!(
        message.contains("MiB") || message.contains("bytes") || message.contains("memory"),
        "says why: {message}"
    );
}

/// A full run (dense, sparse, fusion, rerank) over the fixture with two queries.
fn run_full(root: &Path, exclusive: bool) -> std::path::PathBuf {
    let mut runner = fixture_runner(
        root,
        Some("[rerank]\ncandidates = 3\ntop_k = 3\nmax_length = 64\n"),
    );
    std::fs::write(
        root.join("in/notes/queries.jsonl"),
        "{\"_id\": \"q1\", \"text\": \"vitamin D and bones\"}\n{\"_id\": \"q2\", \"text\": \"learned sparse retrieval\"}\n",
    )
    .unwrap();
    if exclusive {
        runner = runner.with_exclusive_models();
    }
    runner.run().unwrap();
    root.join("out")
}

#[test]
fn exclusive_stages_load_one_model_at_a_time_and_change_nothing() {
    let resident = tempfile::tempdir().unwrap();
    let exclusive = tempfile::tempdir().unwrap();
    let a = run_full(resident.path(), false);
    let b = run_full(exclusive.path(), true);
    for file in ["notes/points.jsonl", "notes/rerank.jsonl"] {
        let (x, y) = (read_jsonl(&a.join(file)), read_jsonl(&b.join(file)));
        assert_eq!(x.len(), y.len(), "{file}");
        for (p, q) in x.iter().zip(&y) {
            // Same ids, candidates and orders; vectors equal within float noise.
            assert_eq!(p["payload"]["chunk_id"], q["payload"]["chunk_id"], "{file}");
            if let (Some(v), Some(w)) = (p["vector"].as_object(), q["vector"].as_object()) {
                let names = |m: &serde_json::Map<String, serde_json::Value>| {
                    m.keys().cloned().collect::<Vec<_>>()
                };
                assert_eq!(names(v), names(w), "every vector in both modes: {file}");
                let dense = |x: &serde_json::Value| -> Vec<f32> {
                    serde_json::from_value(x.clone()).unwrap()
                };
                let (x, y) = (dense(&v["all-MiniLM-L6-v2"]), dense(&w["all-MiniLM-L6-v2"]));
                assert_eq!(x.len(), 384);
                assert!(max_abs_diff(&x, &y) < 1e-5, "{file}");
            }
            assert_eq!(p["query_id"], q["query_id"], "{file}");
            if let (Some(c), Some(d)) = (p["candidates"].as_array(), q["candidates"].as_array()) {
                let ids = |v: &Vec<serde_json::Value>| {
                    v.iter().map(|c| c["chunk_id"].clone()).collect::<Vec<_>>()
                };
                assert_eq!(ids(c), ids(d), "{file}");
            }
        }
    }
    let manifest = manifest(&b);
    assert_eq!(manifest["collections"][0]["status"], "ok");
    // Exclusive stages lease before uploading, so the plan subtracts the weights; resident
    // models are already out of the free-memory reading and count 0.
    let weights = |m: &serde_json::Value, stage: &str| {
        m["collections"][0]["stages"][stage]["runs"][0]["memory"]["weights_bytes"]
            .as_u64()
            .unwrap()
    };
    let resident_manifest = self::manifest(&a);
    for stage in ["dense", "sparse", "rerank"] {
        assert!(
            weights(&manifest, stage) > 1 << 20,
            "{stage}: weights counted"
        );
        assert_eq!(weights(&resident_manifest, stage), 0, "{stage}: resident");
    }
    let stages: Vec<&str> = manifest["leases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "leased")
        .map(|e| e["stage"].as_str().unwrap())
        .collect();
    // The one window's dense and sparse stages, then the queries' dense and sparse encoding
    // (once per collection, after the last window), then rerank: one model at a time.
    assert_eq!(
        stages,
        ["dense", "sparse", "dense", "sparse", "rerank"],
        "one lease per stage run, in order"
    );
    let models = manifest["models"].as_array().unwrap();
    assert_eq!(
        models.len(),
        3,
        "every model listed although loaded per stage"
    );
}
