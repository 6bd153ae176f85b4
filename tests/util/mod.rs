//! Shared test harness: where the fetched models are, the built binary, numeric helpers.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// The models fetched by `scripts/fetch-models.sh` (same default as the binary). Tests that need
/// real models fail with a hint rather than skip: a skipped parity test proves nothing.
pub fn models_dir() -> PathBuf {
    let dir = match std::env::var_os("EMBED_COLLECTIONS_MODELS_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache")
                });
            cache.join("embed-collections").join("models")
        }
    };
    let marker = dir.join("sentence-transformers/all-MiniLM-L6-v2/.complete");
    assert!(
        marker.is_file(),
        "real models not found under {}; run scripts/fetch-models.sh (or scripts/test.sh) first",
        dir.display()
    );
    dir
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The run manifest (`manifest.json`) of an output directory.
pub fn manifest(dir: &Path) -> serde_json::Value {
    let path = dir.join("manifest.json");
    serde_json::from_slice(&std::fs::read(&path).unwrap())
        .unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// A run of the binary over `input` into `output` on the CPU; callers add their flags.
pub fn cpu_run(input: &Path, output: &Path) -> Command {
    let mut command = binary();
    command
        .arg("--input")
        .arg(input)
        .arg("--output")
        .arg(output)
        .args(["--device", "cpu"]);
    command
}

/// The `embed-collections` binary with a clean, test-controlled environment.
pub fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_embed-collections"));
    for (key, _) in std::env::vars() {
        if key.starts_with("EMBED_COLLECTIONS_") {
            command.env_remove(key);
        }
    }
    command
        .env("EMBED_COLLECTIONS_MODELS_DIR", models_dir())
        .env("HF_HUB_OFFLINE", "1")
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG");
    command
}

/// Runs a command and returns its output, printing everything when `expect_ok` does not hold.
pub fn run(command: &mut Command, expect_ok: bool) -> Output {
    let output = command.output().expect("binary runs");
    if output.status.success() != expect_ok {
        panic!(
            "command {:?} exited {:?}\n--- stdout\n{}\n--- stderr\n{}",
            command,
            output.status.code(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    output
}

/// A directory tree copied file by file (model directories, shard directories).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// stdout then stderr, for a message that `check` prints on one and a run on the other.
pub fn stdout_and_stderr(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The project's Python (with the real consumers: qdrant-client, the OpenAI SDK…), made ready by
/// `scripts/python-env.sh`.
pub fn python() -> String {
    let output = Command::new(repo_root().join("scripts/python-env.sh"))
        .output()
        .expect("scripts/python-env.sh runs");
    assert!(output.status.success(), "{}", stderr(&output));
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn read_jsonl(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()))
        .lines()
        .map(|line| serde_json::from_str(line).expect("valid JSON line"))
        .collect()
}

pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "dimensions differ");
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb).max(1e-12)
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "dimensions differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

pub fn norm(a: &[f32]) -> f64 {
    a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt()
}

/// A committed tiny checkpoint (`tests/models/NAME`), resolved as a local path (never the Hub).
pub fn tiny_model(name: &str) -> embed_collections::models::ResolvedModel {
    let dir = repo_root().join("tests/models").join(name);
    let manager = embed_collections::models::ModelManager::new(
        std::env::temp_dir().join("no-models-dir"),
        std::env::temp_dir().join("no-hf-cache"),
        true,
    );
    manager.resolve(dir.to_str().unwrap(), None, None).unwrap()
}

/// The CPU in f32 with the given encoder backend.
pub fn cpu_device(
    backend: embed_collections::models::bert_family::EncoderBackend,
) -> embed_collections::models::SelectedDevice {
    use embed_collections::config::{DeviceSpec, Precision};
    let mut device = embed_collections::models::select_device(&DeviceSpec::Cpu, Precision::F32)
        .expect("the CPU is always available");
    device.backend = backend;
    device
}

/// A copy of model `reference` under `models`, with the word-embedding row of `word` set to
/// NaN (the weights file rewritten with candle): a valid file whose forward pass is NaN for
/// exactly the texts holding that word.
pub fn poisoned_copy(reference: &str, models: &Path, word: &str) {
    let source = models_dir().join(reference);
    let target = models.join(reference);
    copy_dir(&source, &target);
    let tokenizer = tokenizers::Tokenizer::from_file(source.join("tokenizer.json")).unwrap();
    let row = tokenizer.token_to_id(word).expect("the word is one token") as usize;
    let weights = target.join("model.safetensors");
    let device = candle_core::Device::Cpu;
    let mut tensors = candle_core::safetensors::load(&weights, &device).unwrap();
    let name = tensors
        .keys()
        .find(|name| name.ends_with("embeddings.word_embeddings.weight"))
        .cloned()
        .unwrap();
    let table = &tensors[&name];
    let (rows, width) = table.dims2().unwrap();
    let mut values = table
        .to_dtype(candle_core::DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    values[row * width..(row + 1) * width].fill(f32::NAN);
    let poisoned = candle_core::Tensor::from_vec(values, (rows, width), &device)
        .unwrap()
        .to_dtype(table.dtype())
        .unwrap();
    tensors.insert(name, poisoned);
    std::fs::remove_file(&weights).unwrap();
    candle_core::safetensors::save(&tensors, &weights).unwrap();
}

/// Spawns the run and reads its stderr until a line contains every one of `needles` (the
/// `occurrence`-th such line), then calls `act` on the child. Returns the stderr seen.
pub fn run_until(
    mut command: Command,
    needles: &[&str],
    occurrence: usize,
    act: impl FnOnce(&mut Child),
) -> (Child, String) {
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut seen = String::new();
    let mut matches = 0;
    let mut act = Some(act);
    for line in BufReader::new(stderr).lines() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if needles.iter().all(|n| line.contains(n)) {
            matches += 1;
            if matches == occurrence {
                if let Some(act) = act.take() {
                    act(&mut child);
                }
                break;
            }
        }
    }
    assert!(
        act.is_none(),
        "the run ended before {needles:?} (#{occurrence}):\n{seen}"
    );
    (child, seen)
}

/// Words kept of each abstract in [`short_scifact`].
const SHORT_WORDS: usize = 40;

/// The bundled collection (`scifact-mini`: its 300 abstracts, 50 queries and qrels) with each
/// abstract cut to its first 40 words, written as a BEIR directory `dir/NAME`. The fixture of the
/// tests that run the binary many times: the models and every code path are the same, the model
/// work is about a third (on two CPU cores that is most of the test suite's time). Returns the
/// collection directory.
pub fn short_scifact(dir: &Path, name: &str) -> PathBuf {
    let bundled = repo_root().join("examples/collections/scifact-mini");
    let collection = dir.join(name);
    std::fs::create_dir_all(collection.join("qrels")).unwrap();
    let corpus: String = read_jsonl(&bundled.join("corpus.jsonl"))
        .into_iter()
        .map(|mut record| {
            let text = record["text"].as_str().unwrap_or_default();
            let short: Vec<&str> = text.split_whitespace().take(SHORT_WORDS).collect();
            record["text"] = serde_json::Value::String(short.join(" "));
            format!("{record}\n")
        })
        .collect();
    std::fs::write(collection.join("corpus.jsonl"), corpus).unwrap();
    std::fs::copy(
        bundled.join("queries.jsonl"),
        collection.join("queries.jsonl"),
    )
    .unwrap();
    std::fs::copy(
        bundled.join("qrels/test.tsv"),
        collection.join("qrels/test.tsv"),
    )
    .unwrap();
    collection
}
