//! What `--resume` checks before it continues a run: the run fingerprint (the effective
//! configuration that shapes the outputs, the models' identities and each input file's size and
//! content sha256) and the attempts so far, in `<output>/.work/run.json`.
//!
//! The input is identified by content, never by modification time: an edit that keeps the size
//! and restores the mtime (`cp -p`, `rsync -a`, `touch -r`) is a change, and identical content
//! with new inodes and mtimes (a pod retried on a fresh volume) is not. Each input file is
//! hashed once per run ([`InputHashes`]); shards and `merge` use the same hashes.
//!
//! A resumed run must produce byte-identical outputs to an uninterrupted one, so any change to
//! what the outputs depend on is refused, naming what changed. Settings that only change how a
//! run reports (telemetry, log format, progress), how it searches (`fusion.retrieval`,
//! `fusion.retrieval_memory`: the results are the same) or where things live (the output and models
//! directories, the config file's path) are not part of it.

use crate::config::RunConfig;
use crate::export::write_atomic;
use crate::input::{Collection, InputHashes};
use crate::models::ModelIdentity;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::path::Path;

pub const RUN_STATE_FILE: &str = "run.json";

pub use crate::export::manifest::Attempt;

/// `<output>/.work/run.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunState {
    pub fingerprint_sha256: String,
    pub fingerprint: Value,
    pub attempts: Vec<Attempt>,
}

/// Why a run cannot be resumed.
#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    #[error("cannot resume: {} changed since the interrupted run ({}); run without --resume to start afresh", .changes.len(), .changes.join("; "))]
    Changed { changes: Vec<String> },
    #[error("cannot read the run state {path}: {message}")]
    Unreadable { path: String, message: String },
}

/// The fingerprint of a run: what its outputs depend on (see the module docs).
pub fn fingerprint(
    config: &RunConfig,
    models: &[ModelIdentity],
    collections: &[Collection],
    hashes: &InputHashes,
) -> Value {
    let mut settings = serde_json::to_value(config).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut settings {
        for key in ["config_file", "provenance", "telemetry", "models"] {
            map.remove(key);
        }
        if let Some(Value::Object(output)) = map.get_mut("output") {
            output.remove("dir");
        }
        // How the stored vectors are searched changes no output byte.
        if let Some(Value::Object(fusion)) = map.get_mut("fusion") {
            fusion.remove("retrieval");
            fusion.remove("retrieval_memory");
        }
    }
    let input = input_fingerprint(collections, hashes);
    let models: Vec<Value> = models
        .iter()
        .map(|m| serde_json::to_value(m).unwrap_or(Value::Null))
        .collect();
    serde_json::json!({
        "tool_version": crate::TOOL_VERSION,
        "config": settings,
        "models": models,
        "input": input,
    })
}

/// The input part of the fingerprint: per collection, each file's size and sha256.
fn input_fingerprint(collections: &[Collection], hashes: &InputHashes) -> Value {
    let mut input = Map::new();
    for collection in collections {
        let mut files = Map::new();
        for file in &collection.files {
            let digest = hashes.get(file);
            files.insert(
                file.display().to_string(),
                serde_json::json!({
                    "bytes": digest.map(|d| d.bytes),
                    "sha256": digest.map(|d| d.sha256.as_str()),
                }),
            );
        }
        input.insert(collection.name.clone(), Value::Object(files));
    }
    Value::Object(input)
}

/// The part of a run fingerprint that must agree between the shards of a sharded run and
/// their merge, wherever each ran: without the shard's own index and count, the input root,
/// the devices, the window size (outputs do not depend on it) and the models' locations and
/// devices; the input as each collection's file count and total bytes (`merge` compares the
/// contents through each collection's `input_sha256`).
pub fn portable(fingerprint: &Value) -> Value {
    let mut portable = fingerprint.clone();
    let remove = |value: &mut Value, path: &[&str]| {
        let Some((last, parents)) = path.split_last() else {
            return;
        };
        let mut node = value;
        for key in parents {
            match node.get_mut(*key) {
                Some(next) => node = next,
                None => return,
            }
        }
        if let Value::Object(map) = node {
            map.remove(*last);
        }
    };
    for path in [
        &["config", "shard", "spec"][..],
        &["config", "input", "root"],
        &["config", "input", "window_chunks"],
        &["config", "gpu", "devices"],
        // The reused output may be mounted elsewhere on each machine; its manifest's sha256
        // (`reuse_manifest_sha256`) is what must agree.
        &["config", "output", "reuse"],
    ] {
        remove(&mut portable, path);
    }
    if let Some(Value::Array(models)) = portable.get_mut("models") {
        for model in models {
            remove(model, &["device"]);
            remove(model, &["source"]);
        }
    }
    if let Some(Value::Object(input)) = portable.get_mut("input") {
        for files in input.values_mut() {
            let (count, bytes) = match &*files {
                Value::Object(map) => (
                    map.len(),
                    map.values()
                        .filter_map(|f| f.get("bytes").and_then(Value::as_u64))
                        .sum::<u64>(),
                ),
                _ => (0, 0),
            };
            *files = serde_json::json!({"files": count, "bytes": bytes});
        }
    }
    portable
}

/// Each leaf that differs between two fingerprints, as `path: old → new`.
pub fn describe_differences(old: &Value, new: &Value) -> Vec<String> {
    let mut changes = Vec::new();
    differences("", old, new, &mut changes);
    changes
}

/// sha256 of the fingerprint's canonical JSON.
pub fn fingerprint_sha256(fingerprint: &Value) -> String {
    hex::encode(Sha256::digest(
        serde_json::to_vec(fingerprint).unwrap_or_default(),
    ))
}

/// The run state of an earlier run in `work_dir`, if there is one.
pub fn load(work_dir: &Path) -> Result<Option<RunState>, ResumeError> {
    let path = work_dir.join(RUN_STATE_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|err| ResumeError::Unreadable {
                    path: path.display().to_string(),
                    message: err.to_string(),
                })
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(ResumeError::Unreadable {
            path: path.display().to_string(),
            message: err.to_string(),
        }),
    }
}

pub fn save(work_dir: &Path, state: &RunState) -> std::io::Result<()> {
    crate::files::real_dir(work_dir)?;
    let mut bytes = serde_json::to_vec_pretty(state)?;
    bytes.push(b'\n');
    write_atomic(&work_dir.join(RUN_STATE_FILE), &bytes)
}

/// Checks that `current` may continue `earlier`; the error names every changed setting.
pub fn check(earlier: &RunState, current: &Value) -> Result<(), ResumeError> {
    if earlier.fingerprint_sha256 == fingerprint_sha256(current) {
        return Ok(());
    }
    let mut changes = Vec::new();
    differences("", &earlier.fingerprint, current, &mut changes);
    if changes.is_empty() {
        changes.push("the run fingerprint".to_string());
    }
    Err(ResumeError::Changed { changes })
}

/// Describes each leaf that differs between `old` and `new` as `path: old → new` (values
/// shortened; the fingerprint holds settings, model identities and file hashes, never text).
/// A value as JSON, cut to 60 characters.
fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 60 {
        format!("{}…", text.chars().take(60).collect::<String>())
    } else {
        text
    }
}

fn differences(path: &str, old: &Value, new: &Value, out: &mut Vec<String>) {
    const MAX: usize = 8;
    if out.len() >= MAX {
        return;
    }
    let join = |key: &str| {
        if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    };
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                match b.get(key) {
                    Some(other) => differences(&join(key), value, other, out),
                    None => out.push(format!("{} removed", join(key))),
                }
            }
            for key in b.keys().filter(|k| !a.contains_key(*k)) {
                out.push(format!("{} added", join(key)));
            }
        }
        // Element by element, then what one side has beyond the other (a model added to a
        // run shows as `models[1] added: {...}`, not as two long lists).
        (Value::Array(a), Value::Array(b)) => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                differences(&format!("{path}[{i}]"), x, y, out);
            }
            for (i, extra) in a.iter().enumerate().skip(b.len()) {
                out.push(format!("{path}[{i}] removed: {}", short(extra)));
            }
            for (i, extra) in b.iter().enumerate().skip(a.len()) {
                out.push(format!("{path}[{i}] added: {}", short(extra)));
            }
        }
        (a, b) if a != b => {
            out.push(format!("{path}: {} → {}", short(a), short(b)));
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_is_named_with_both_values() {
        let old = serde_json::json!({"config": {"dense": {"max_length": 256}, "x": [1, 2]}, "input": {"c": {"a.jsonl": {"bytes": 10}}}});
        let new = serde_json::json!({"config": {"dense": {"max_length": 128}, "x": [1, 2]}, "input": {"c": {"a.jsonl": {"bytes": 12}}, "d": {}}});
        let state = RunState {
            fingerprint_sha256: fingerprint_sha256(&old),
            fingerprint: old.clone(),
            attempts: Vec::new(),
        };
        assert!(check(&state, &old).is_ok());
        let err = check(&state, &new).unwrap_err().to_string();
        assert!(err.contains("config.dense.max_length: 256 → 128"), "{err}");
        assert!(err.contains("input.c.a.jsonl.bytes: 10 → 12"), "{err}");
        assert!(err.contains("input.d added"), "{err}");
    }

    #[test]
    fn a_list_that_grew_names_the_added_entry() {
        let one = serde_json::json!({"models": [{"role": "dense"}]});
        let two = serde_json::json!({"models": [{"role": "dense"}, {"role": "sparse"}]});
        assert_eq!(
            describe_differences(&one, &two),
            [r#"models[1] added: {"role":"sparse"}"#]
        );
        assert_eq!(
            describe_differences(&two, &one),
            [r#"models[1] removed: {"role":"sparse"}"#]
        );
    }

    #[test]
    fn the_portable_fingerprint_ignores_where_and_on_what_a_shard_ran() {
        let at = |root: &str, device: &str, sha: &str, spec: Value| {
            serde_json::json!({
                "config": {"input": {"root": root, "window_chunks": 5}, "gpu": {"devices": device, "precision": "f32"}, "shard": {"spec": spec, "split_bytes": 10}},
                "models": [{"name": "m", "device": device, "source": root, "weights_sha256": "ab"}],
                "input": {"c": {format!("{root}/c/a.jsonl"): {"bytes": 10, "sha256": sha}}},
            })
        };
        let one = portable(&at(
            "/a",
            "cpu",
            "1",
            serde_json::json!({"index": 0, "count": 3}),
        ));
        let other = portable(&at(
            "/b",
            "cuda:0",
            "2",
            serde_json::json!({"index": 2, "count": 3}),
        ));
        assert_eq!(one, other);
        assert_eq!(
            one["input"]["c"],
            serde_json::json!({"files": 1, "bytes": 10})
        );
        let mut changed = at("/a", "cpu", "1", Value::Null);
        changed["config"]["shard"]["split_bytes"] = 20.into();
        changed["models"][0]["weights_sha256"] = "cd".into();
        let changes = describe_differences(&one, &portable(&changed));
        assert!(
            changes.contains(&"config.shard.split_bytes: 10 → 20".to_string()),
            "{changes:?}"
        );
        assert!(
            changes
                .iter()
                .any(|c| c.starts_with("models[0].weights_sha256")),
            "{changes:?}"
        );
    }
    /// The input part of the fingerprint is content: a same-size edit with the mtime put back
    /// changes it (naming the file), an identical copy with a new inode and mtime does not.
    #[test]
    fn the_input_is_identified_by_content_not_by_its_timestamps() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("a.jsonl");
        std::fs::write(&file, "{\"id\": \"1\", \"text\": \"cat\"}\n").unwrap();
        let collections = [Collection {
            name: "c".to_string(),
            files: vec![file.clone()],
            dir: None,
        }];
        let input = |collections: &[Collection]| {
            let hashes = InputHashes::of(collections).unwrap();
            serde_json::json!({"input": input_fingerprint(collections, &hashes)})
        };
        let before = input(&collections);
        let state = RunState {
            fingerprint_sha256: fingerprint_sha256(&before),
            fingerprint: before,
            attempts: Vec::new(),
        };
        let mtime = std::fs::metadata(&file).unwrap().modified().unwrap();
        // Same length, other content, the modification time restored.
        std::fs::write(&file, "{\"id\": \"1\", \"text\": \"dog\"}\n").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        let err = check(&state, &input(&collections)).unwrap_err().to_string();
        assert!(
            err.contains(&format!("input.c.{}.sha256", file.display())),
            "{err}"
        );
        // Identical content in a new file (new inode, new mtime) resumes.
        std::fs::remove_file(&file).unwrap();
        std::fs::write(&file, "{\"id\": \"1\", \"text\": \"cat\"}\n").unwrap();
        check(&state, &input(&collections)).unwrap();
    }
}
