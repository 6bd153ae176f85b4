//! Every fusion function against two independent implementations of its published formula:
//! `scripts/reference/fusion_reference.py` (written from the definitions) and qdrant-client's
//! own fusion functions (what its local mode runs for `rrf` with k and weights, and `dbsf`),
//! over seeded random lists with ties. The same top 10 (up to exactly tied scores) and the
//! same scores for every document.

mod util;

use embed_collections::fusion::{Fusion, Method, Normalization};
use embed_collections::retrieval::Hit;
use serde_json::{json, Value};
use std::process::Command;
use util::{repo_root, run};

/// A small fixed pseudo-random sequence (the cases are the same on every run).
struct Sequence(u64);

impl Sequence {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One list: distinct indices from 0..pool with descending scores, some of them tied.
fn list(sequence: &mut Sequence, length: usize, pool: u64, scale: f32) -> Vec<Hit> {
    let mut indices: Vec<usize> = Vec::new();
    while indices.len() < length {
        let index = sequence.below(pool) as usize;
        if !indices.contains(&index) {
            indices.push(index);
        }
    }
    let mut score = scale;
    indices
        .into_iter()
        .map(|index| {
            // One step in four keeps the score: exact ties inside a list.
            if sequence.below(4) != 0 {
                score -= scale * (1 + sequence.below(50)) as f32 / 1000.0;
            }
            Hit { index, score }
        })
        .collect()
}

struct Case {
    fusion: Fusion,
    lists: Vec<Vec<Hit>>,
}

fn cases() -> Vec<Case> {
    let mut sequence = Sequence(20261207);
    let mut cases = Vec::new();
    let weight_sets: [&[f64]; 4] = [&[1.0, 1.0], &[1.0, 0.3], &[0.5, 2.0, 1.0], &[0.0, 1.0]];
    let methods = [
        (Method::Rrf, Normalization::MinMax),
        (Method::Dbsf, Normalization::MinMax),
        (Method::Convex, Normalization::MinMax),
        (Method::Convex, Normalization::ZScore),
        (Method::Convex, Normalization::None),
    ];
    for round in 0..6 {
        for weights in weight_sets {
            for (method, normalization) in methods {
                // Dense-like scores (cosines) and sparse-like ones (tens), lists of 20 to 100.
                let lists: Vec<Vec<Hit>> = weights
                    .iter()
                    .enumerate()
                    .map(|(i, _)| {
                        let length = 20 + sequence.below(81) as usize;
                        let scale = if i + 1 == weights.len() { 40.0 } else { 0.9 };
                        list(&mut sequence, length, 150, scale)
                    })
                    .collect();
                let k = [60.0, 2.0, 10.0][round % 3];
                cases.push(Case {
                    fusion: Fusion {
                        method,
                        rrf_k: k,
                        normalization,
                        dense_weights: weights[..weights.len() - 1].to_vec(),
                        sparse_weight: weights[weights.len() - 1],
                    },
                    lists,
                });
            }
        }
    }
    cases
}

/// `ours` (index, score, best first) and `theirs` have the same top 10 up to exactly tied
/// scores, and the same score for each document of ours.
fn same_top_10(label: &str, ours: &[(usize, f64)], theirs: &[(usize, f64)], tolerance: f64) {
    let theirs_by_index: std::collections::HashMap<usize, f64> = theirs.iter().copied().collect();
    assert_eq!(ours.len(), theirs.len(), "{label}: documents fused");
    for &(index, score) in ours {
        let other = theirs_by_index[&index];
        assert!(
            (score - other).abs() <= tolerance * score.abs().max(1.0),
            "{label}: document {index}: {score} vs {other}"
        );
    }
    let top = &ours[..10.min(ours.len())];
    let last = top.last().map_or(f64::NEG_INFINITY, |t| t.1);
    let margin = tolerance * last.abs().max(1.0);
    let above = |list: &[(usize, f64)]| -> std::collections::BTreeSet<usize> {
        list.iter()
            .take(10)
            .filter(|(_, s)| *s > last + margin)
            .map(|(i, _)| *i)
            .collect()
    };
    assert_eq!(
        above(top),
        above(theirs),
        "{label}: top 10 above the 10th score"
    );
    // Nothing outside our top 10 beats its 10th score in theirs.
    for &(index, score) in theirs.iter().skip(10) {
        if score > last + margin {
            assert!(
                top.iter().any(|t| t.0 == index),
                "{label}: {index} ({score}) missing"
            );
        }
    }
}

fn pairs(value: &Value) -> Vec<(usize, f64)> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_u64().unwrap() as usize, p[1].as_f64().unwrap()))
        .collect()
}

#[test]
fn every_fusion_equals_its_formula_and_qdrant_client() {
    let cases = cases();
    let input: Vec<Value> = cases
        .iter()
        .map(|case| {
            let mut weights = case.fusion.dense_weights.clone();
            weights.push(case.fusion.sparse_weight);
            json!({
                "lists": case.lists.iter().map(|l| l.iter().map(|h| json!([h.index, h.score as f64])).collect::<Vec<_>>()).collect::<Vec<_>>(),
                "weights": weights,
                "k": case.fusion.rrf_k,
                "method": case.fusion.method.as_str(),
                "normalization": case.fusion.normalization.as_str(),
            })
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cases.json");
    std::fs::write(&path, serde_json::to_vec(&input).unwrap()).unwrap();
    let output = run(
        Command::new(util::python())
            .arg(repo_root().join("scripts/reference/fusion_reference.py"))
            .arg(&path),
        true,
    );
    let results: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(results.len(), cases.len());
    let mut against_qdrant = 0;
    for (number, (case, result)) in cases.iter().zip(&results).enumerate() {
        let dense: Vec<&[Hit]> = case.lists[..case.lists.len() - 1]
            .iter()
            .map(Vec::as_slice)
            .collect();
        let sparse = case.lists.last().map(Vec::as_slice);
        let ours: Vec<(usize, f64)> = case
            .fusion
            .fuse(&dense, sparse)
            .iter()
            .map(|hit| (hit.index, hit.score))
            .collect();
        let label = format!(
            "case {number} ({} {} k={} weights {:?} {})",
            case.fusion.method.as_str(),
            case.fusion.normalization.as_str(),
            case.fusion.rrf_k,
            case.fusion.dense_weights,
            case.fusion.sparse_weight
        );
        same_top_10(&label, &ours, &pairs(&result["reference"]), 1e-9);
        if !result["qdrant"].is_null() {
            same_top_10(
                &format!("{label} vs qdrant-client"),
                &ours,
                &pairs(&result["qdrant"]),
                1e-9,
            );
            against_qdrant += 1;
        }
    }
    // RRF in every case (integer k), DBSF with unit weights.
    assert_eq!(
        against_qdrant,
        6 * 4 + 6,
        "cases compared with qdrant-client"
    );
}
