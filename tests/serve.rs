//! `embed-collections serve` as its users meet it: the real binary on loopback, real HTTP, the
//! real client libraries (`scripts/check-serve.py`: the openai SDK, huggingface_hub's
//! InferenceClient, qdrant-client, prometheus_client, an asyncio load generator on httpx),
//! bounded in time.
//!
//! - parity: a batch run's query vectors, points and rerank scores equal what the server answers
//!   for the same texts, and Qdrant queried with `/v1/query`'s body returns the run's fused list;
//! - every error status with its body, including 424 from a model that fails on one word and
//!   503 while the models load;
//! - no request text in the logs at trace level, nor in the metrics;
//! - load: no error below `serve.max_concurrent_inputs`, clean 429s above, flat RSS, and SIGTERM
//!   under load finishes every accepted request and exits 0;
//! - a request past `serve.request_timeout` answers 504.

mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use util::{binary, models_dir, poisoned_copy, repo_root, run, stderr};

const MINILM: &str = "sentence-transformers/all-MiniLM-L6-v2";
/// One WordPiece token in MiniLM's vocabulary, in no text of scifact-mini (checked below).
const POISONED_WORD: &str = "trombone";
/// `scripts/check-serve.py` puts it in every text it sends.
const MARKER: &str = "zqxmarker";

/// A running server: the child, its address and its log (stderr) file.
struct Server {
    child: Child,
    address: String,
    log: PathBuf,
}

impl Server {
    /// Starts `serve` on a free loopback port and waits for its "listening" line (not for the
    /// models: callers poll `/health`).
    fn start(dir: &Path, args: &[&str]) -> Server {
        let log = dir.join(format!("serve-{}.log", args.len()));
        let mut child = binary()
            .arg("serve")
            .arg("--config")
            .arg(repo_root().join("configs/quickstart.toml"))
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("the binary starts");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(at) = text.find("address=") {
                let address: String = text[at + "address=".len()..]
                    .chars()
                    .take_while(|c| !c.is_whitespace())
                    .collect();
                return Server {
                    child,
                    address,
                    log,
                };
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("serve exited ({status}) before listening:\n{text}");
            }
            assert!(Instant::now() < deadline, "no listening line:\n{text}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Polls `/health` until 200; returns whether a 503 (with the TEI error body) was seen.
    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(180);
        let mut saw_loading = false;
        loop {
            match request(&self.address, "GET", "/health", "") {
                Some((200, _)) => return saw_loading,
                Some((503, body)) => {
                    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
                    assert_eq!(body["error_type"], "unhealthy", "{body}");
                    saw_loading = true;
                }
                other => panic!("/health answered {other:?}"),
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("serve exited ({status}):\n{}", self.log_text());
            }
            assert!(Instant::now() < deadline, "not ready:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM (unless already sent) and returns the exit code.
    fn stop(&mut self, send: bool) -> Option<i32> {
        if send {
            let kill = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status()
                .unwrap();
            assert!(kill.success());
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(Instant::now() < deadline, "serve did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request over a plain socket: (status, body).
fn request(address: &str, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(address).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .ok()?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Some((status, body))
}

/// `scripts/check-serve.py MODE ARGS…`: its one JSON summary line.
fn check_serve(args: &[&str]) -> serde_json::Value {
    let output = run(
        Command::new(util::python())
            .arg(repo_root().join("scripts/check-serve.py"))
            .args(args),
        true,
    );
    serde_json::from_slice(&output.stdout).expect("one JSON summary line")
}

/// A models directory with the real models, MiniLM's `POISONED_WORD` row set to NaN.
fn models_with_poisoned_minilm(dir: &Path) -> PathBuf {
    let models = dir.join("models");
    poisoned_copy(MINILM, &models, POISONED_WORD);
    for entry in std::fs::read_dir(models_dir()).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() != "sentence-transformers" {
            std::os::unix::fs::symlink(entry.path(), models.join(entry.file_name())).unwrap();
        }
    }
    models
}

#[test]
fn the_server_answers_as_the_run_did_to_the_real_clients_and_every_error_has_its_status() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    let collection = util::short_scifact(&input, "scifact-mini");
    for file in ["corpus.jsonl", "queries.jsonl"] {
        let text = std::fs::read_to_string(collection.join(file)).unwrap();
        assert!(
            !text.contains(POISONED_WORD),
            "{file} holds {POISONED_WORD}"
        );
    }
    // The run the server must agree with: scifact-mini (cut short), its 50 queries, rerank of 10.
    let out = tmp.path().join("run");
    run(
        binary()
            .arg("--config")
            .arg(repo_root().join("configs/quickstart.toml"))
            .arg("--input")
            .arg(&input)
            .args(["--collections", "scifact-mini", "-q", "--output"])
            .arg(&out)
            .arg("--queries")
            .arg(collection.join("queries.jsonl"))
            .arg("--qrels")
            .arg(collection.join("qrels/test.tsv")),
        true,
    );

    let key_file = tmp.path().join("api-key");
    std::fs::write(&key_file, "test-key-123\n").unwrap();
    let models = models_with_poisoned_minilm(tmp.path());
    let mut server = Server::start(
        tmp.path(),
        &[
            "--api-key-file",
            key_file.to_str().unwrap(),
            "--models-dir",
            models.to_str().unwrap(),
            "-vv",
        ],
    );
    // Bound before the models load: 503 with its body, for /health and inference alike.
    let (status, body) = request(&server.address, "POST", "/embed", r#"{"inputs": "x"}"#).unwrap();
    let loading_seen_on_embed = status == 503;
    if loading_seen_on_embed {
        assert!(body.contains("\"error_type\":\"unhealthy\""), "{body}");
    }
    let loading_seen = server.wait_ready();
    assert!(
        loading_seen || loading_seen_on_embed,
        "no 503 while loading"
    );

    let summary = check_serve(&[
        "clients",
        &server.url(),
        out.to_str().unwrap(),
        collection.to_str().unwrap(),
        "test-key-123",
        POISONED_WORD,
    ]);
    assert_eq!(summary["query_vectors"], 50, "{summary}");
    // One implementation: the same bits, not merely close ones.
    assert_eq!(summary["query_vectors_identical"], 50, "{summary}");
    assert_eq!(summary["embed_points_compared"], 64, "{summary}");
    assert_eq!(summary["embed_max_abs_diff"], 0.0, "{summary}");
    assert_eq!(summary["embed_sparse_max_abs_diff"], 0.0, "{summary}");
    assert_eq!(summary["rerank_pairs_compared"], 100, "{summary}");
    assert_eq!(summary["rerank_max_abs_diff"], 0.0, "{summary}");
    assert_eq!(summary["qdrant_fused_equal"], 50, "{summary}");
    assert_eq!(summary["fusion_exact"], true, "{summary}");
    assert_eq!(
        summary["error_statuses"],
        serde_json::json!([400, 404, 413, 422, 424]),
        "{summary}"
    );

    assert_eq!(server.stop(true), Some(0), "{}", server.log_text());
    let log = server.log_text();
    assert!(log.contains("request answered"), "no request lines:\n{log}");
    assert!(
        log.contains("TRACE") || log.contains("DEBUG"),
        "not verbose"
    );
    for secret in [MARKER, POISONED_WORD, "test-key-123"] {
        assert!(!log.contains(secret), "{secret:?} in the log:\n{log}");
    }
}

#[test]
fn under_load_it_refuses_cleanly_above_the_limit_and_drains_on_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start(
        tmp.path(),
        &[
            "--no-rerank",
            "--set",
            "serve.max_concurrent_inputs=64",
            "--set",
            "serve.max_client_batch_size=8",
        ],
    );
    server.wait_ready();
    let pid = server.child.id().to_string();
    let summary = check_serve(&["load", &server.url(), &pid]);
    assert_eq!(summary["below_limit"]["statuses"]["200"], 32, "{summary}");
    assert!(
        summary["above_limit"]["statuses"]["429"].as_u64() > Some(0),
        "{summary}"
    );
    assert_eq!(summary["drained_after_sigterm"], 8, "{summary}");
    // The script sent SIGTERM: every accepted request finished, then the process exited 0.
    assert_eq!(server.stop(false), Some(0), "{}", server.log_text());
}

#[test]
fn a_request_past_the_timeout_answers_504() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start(
        tmp.path(),
        &[
            "--no-rerank",
            "--no-sparse",
            "--set",
            "serve.request_timeout=\"1ms\"",
        ],
    );
    server.wait_ready();
    let summary = check_serve(&["timeout", &server.url()]);
    assert_eq!(summary["timeout"], 504, "{summary}");
    assert_eq!(server.stop(true), Some(0));
}

#[test]
fn configuration_errors_are_refused_before_anything_loads() {
    let tmp = tempfile::tempdir().unwrap();
    let empty_key = tmp.path().join("empty-key");
    std::fs::write(&empty_key, "\n").unwrap();
    for (args, expected) in [
        (vec!["--listen", "not-an-address"], "serve.listen"),
        (
            vec!["--set", "serve.max_client_batch_size=0"],
            "serve.max_client_batch_size",
        ),
        (
            vec!["--set", "serve.cors_origins=[\"search.example.com\"]"],
            "serve.cors_origins",
        ),
        (
            vec!["--api-key-file", empty_key.to_str().unwrap()],
            "is empty",
        ),
        (
            vec!["--api-key-file", "/nonexistent/key"],
            "cannot read the API key file",
        ),
    ] {
        let output = binary()
            .arg("serve")
            .arg("--config")
            .arg(repo_root().join("configs/quickstart.toml"))
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains(expected),
            "{args:?}: {}",
            stderr(&output)
        );
    }
}
