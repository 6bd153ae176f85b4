//! Retrieval over stored vectors, both methods, at collection sizes no test embeds: time and
//! peak resident memory of the search alone (queries already encoded), as ranking runs it.
//! `scripts/bench-ranking.sh` drives it (one process per measurement, so each peak is its own)
//! and prints the table of BENCHMARKS.md.
//!
//!     ranking build POINTS_JSONL N DIR
//!         a run's work directory in DIR with N points: the vectors of a real output's
//!         `points.jsonl`, repeated in order until there are N (so repeats tie exactly)
//!     ranking search DIR QUERY_VECTORS_JSONL Q METHOD
//!         Q queries (that output's `query_vectors.jsonl`, repeated), METHOD `scan`|`index`:
//!         prints one JSON line: seconds, peak RSS during the search, RSS before it, and a
//!         digest of every hit (the methods must agree on it)
//!
//! Without arguments (`cargo bench` runs every bench) it prints this usage and measures nothing.

use embed_collections::config::RetrievalMethod;
use embed_collections::pipeline::search::{search, SearchSettings};
use embed_collections::pipeline::store::CollectionStore;
use embed_collections::telemetry::memory;
use embed_collections::vectors::SparseVector;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader};
use std::path::Path;

type Error = Box<dyn std::error::Error>;
/// A point's or a query's dense vectors (one per model) and sparse vector.
type Vectors = (Vec<Vec<f32>>, Option<SparseVector>);

/// Dense vectors (every array in `vector`, by name) and the sparse one of a points or query
/// vectors line.
fn vectors(line: &str) -> Result<Vectors, Error> {
    let value: Value = serde_json::from_str(line)?;
    let mut dense = Vec::new();
    let mut sparse = None;
    if let Some(map) = value["vector"].as_object() {
        for vector in map.values() {
            if let Some(array) = vector.as_array() {
                dense.push(
                    array
                        .iter()
                        .map(|x| x.as_f64().unwrap_or(0.0) as f32)
                        .collect(),
                );
            } else if vector.get("indices").is_some() {
                let numbers = |key: &str| -> Vec<f64> {
                    vector[key]
                        .as_array()
                        .map(|a| a.iter().filter_map(Value::as_f64).collect())
                        .unwrap_or_default()
                };
                sparse = Some(SparseVector {
                    indices: numbers("indices").into_iter().map(|x| x as u32).collect(),
                    values: numbers("values").into_iter().map(|x| x as f32).collect(),
                });
            }
        }
    }
    Ok((dense, sparse))
}

fn read_vectors(path: &Path) -> Result<Vec<Vectors>, Error> {
    let file = std::fs::File::open(path)?;
    let mut all = Vec::new();
    for line in BufReader::new(file).lines() {
        all.push(vectors(&line?)?);
    }
    Ok(all)
}

fn build(points: &Path, n: usize, dir: &Path) -> Result<(), Error> {
    let source = read_vectors(points)?;
    if source.is_empty() {
        return Err("no points".into());
    }
    let mut store = CollectionStore::open(dir, "bench", None)?;
    let window = 10_000;
    for first in (0..n).step_by(window) {
        let mut writer = store.window()?;
        for i in first..(first + window).min(n) {
            let (dense, sparse) = &source[i % source.len()];
            let dense: Vec<&[f32]> = dense.iter().map(Vec::as_slice).collect();
            writer.point(
                b"{}\n",
                &dense,
                Some(sparse.as_ref()),
                i,
                &format!("c{i}"),
                "0",
            )?;
        }
        writer.commit((first + window).min(n), |_| {})?;
    }
    Ok(())
}

fn measure(dir: &Path, queries: &Path, q: usize, method: &str) -> Result<(), Error> {
    let method = match method {
        "scan" => RetrievalMethod::Scan,
        "index" => RetrievalMethod::Index,
        other => return Err(format!("method {other:?}: scan or index").into()),
    };
    let source = read_vectors(queries)?;
    if source.is_empty() {
        return Err("no queries".into());
    }
    let chosen: Vec<_> = (0..q).map(|i| &source[i % source.len()]).collect();
    let models = chosen[0].0.len();
    let dense: Vec<Vec<Vec<f32>>> = (0..models)
        .map(|m| chosen.iter().map(|(d, _)| d[m].clone()).collect())
        .collect();
    let sparse: Vec<Option<SparseVector>> = chosen.iter().map(|(_, s)| s.clone()).collect();
    let dense_refs: Vec<&[Vec<f32>]> = dense.iter().map(Vec::as_slice).collect();

    let checkpoint = CollectionStore::read_checkpoint(dir)?;
    let state = CollectionStore::open(dir, "bench", Some(checkpoint))?.retrieval()?;
    let settings = SearchSettings {
        method,
        memory_budget: u64::MAX,
        depth: 100,
    };
    let before = current_rss();
    let (result, peak) = memory::measure(|| search(&state, &dense_refs, Some(&sparse), settings));
    let retrieved = result?;
    let mut digest = Sha256::new();
    let hits = retrieved
        .dense
        .iter()
        .flatten()
        .chain(retrieved.sparse.iter().flatten().flatten());
    for list in hits {
        for hit in list {
            digest.update((hit.index as u64).to_le_bytes());
            digest.update(hit.score.to_bits().to_le_bytes());
        }
    }
    println!(
        "{}",
        serde_json::json!({
            "points": state.ids.len(),
            "queries": q,
            "method": retrieved.report.method,
            "seconds": retrieved.report.seconds,
            "peak_rss_bytes": peak,
            "rss_before_bytes": before,
            "index_bytes": retrieved.report.index_bytes,
            "hits_sha256": hex::encode(digest.finalize()),
        })
    );
    Ok(())
}

fn current_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn main() -> Result<(), Error> {
    // `cargo bench` passes `--bench`; the rest are ours.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args[..] {
        ["build", points, n, dir] => build(Path::new(points), n.parse()?, Path::new(dir)),
        ["search", dir, queries, q, method] => {
            measure(Path::new(dir), Path::new(queries), q.parse()?, method)
        }
        _ => {
            eprintln!("usage: ranking build POINTS_JSONL N DIR | ranking search DIR QUERY_VECTORS_JSONL Q scan|index (see scripts/bench-ranking.sh)");
            Ok(())
        }
    }
}
