//! The Qdrant Query API request that reproduces the run's hybrid fusion for one query: one
//! prefetch per named vector (each dense model and SPLADE) at the run's depth, fused as the run
//! fuses, so `POST /collections/{name}/points/query` with this body returns the run's fused
//! list for the query.
//!
//! Qdrant's reciprocal rank fusion scores a point `Σ 1 / (position/weight + k' − 1)` over
//! the lists, with 1-based positions (its `Rrf {k, weights}`; read from qdrant-client's local
//! implementation, which mirrors the server). The run's RRF is `Σ weight / (k + rank)`. With
//! every weight 1 the two agree exactly when `k' = k + 1`, an integer. Other settings (weights
//! other than 1, a fractional k, convex fusion) have no exact Qdrant equivalent today: the
//! body then carries the nearest fusion Qdrant has and `exact: false` with the reason, so a
//! client never mistakes an approximation for the run's ranking.

use crate::config::{FusionMethod, RunConfig};
use crate::export::wire::VectorRef;
use serde::Serialize;
use serde_json::{json, Value};

/// The Query API request body.
#[derive(Debug, Serialize)]
pub struct QueryBody<'a> {
    pub prefetch: Vec<Prefetch<'a>>,
    pub query: Value,
    pub limit: usize,
    pub with_payload: bool,
}

/// One list to fuse: the query's vector for one named vector, searched to the run's depth.
#[derive(Debug, Serialize)]
pub struct Prefetch<'a> {
    /// Serialised as the points and `query_vectors.jsonl` serialise it.
    pub query: VectorRef<'a>,
    pub using: &'a str,
    pub limit: usize,
}

/// How the body fuses, and whether Qdrant will reproduce the run's ranking exactly.
#[derive(Debug, Serialize)]
pub struct FusionPlan {
    /// `rrf` or `convex`, as the run's `fusion.method`.
    pub method: &'static str,
    /// The run's `fusion.rrf_k`.
    pub rrf_k: f64,
    /// Each list's weight by vector name.
    pub weights: serde_json::Map<String, Value>,
    /// Qdrant's ranking equals the run's fused list.
    pub exact: bool,
    /// Why not, when it does not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The Query API body for `vectors` (vector name → the query's vector, as `/v1/query` returns
/// them: dense first, in config order, then sparse), asking for `limit` points.
pub fn query_body<'a>(
    config: &RunConfig,
    vectors: &[(&'a str, VectorRef<'a>)],
    limit: usize,
) -> (QueryBody<'a>, FusionPlan) {
    let depth = config.fusion.depth;
    let prefetch: Vec<Prefetch<'a>> = vectors
        .iter()
        .map(|(name, vector)| Prefetch {
            query: *vector,
            using: name,
            limit: depth,
        })
        .collect();
    let mut weights = serde_json::Map::new();
    for model in &config.dense.models {
        weights.insert(model.name.clone(), json!(model.weight(&config.fusion)));
    }
    if vectors.iter().any(|(name, _)| *name == config.sparse.name) {
        weights.insert(
            config.sparse.name.clone(),
            json!(config.fusion.sparse_weight),
        );
    }
    let unit_weights = weights.values().all(|w| w.as_f64() == Some(1.0));
    let k = config.fusion.rrf_k;
    let (query, method, exact, note) = match config.fusion.method {
        FusionMethod::Rrf if unit_weights && k.fract() == 0.0 => {
            (json!({"rrf": {"k": k as u64 + 1}}), "rrf", true, None)
        }
        FusionMethod::Rrf => (
            json!({"rrf": {"k": (k.round() as u64).max(1) + 1}}),
            "rrf",
            false,
            Some(
                "Qdrant's RRF weighs a list by dividing positions (1/(position/weight + k − 1)), \
                 the run multiplies scores (weight/(k + rank)), and takes an integer k: with \
                 these weights or this k the orders can differ"
                    .to_string(),
            ),
        ),
        FusionMethod::Convex => (
            json!({"fusion": "dbsf"}),
            "convex",
            false,
            Some(
                "Qdrant has no convex combination of raw scores; DBSF (distribution-based \
                 score fusion) is the nearest"
                    .to_string(),
            ),
        ),
    };
    let body = QueryBody {
        prefetch,
        query,
        limit,
        with_payload: true,
    };
    (
        body,
        FusionPlan {
            method,
            rrf_k: k,
            weights,
            exact,
            note,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{resolve, Environment, Overrides};
    use crate::vectors::SparseVector;

    fn config(set: &[&str]) -> RunConfig {
        let flags = Overrides {
            input: Some(".".into()),
            output: Some("out".into()),
            set: set.iter().map(|s| s.to_string()).collect(),
            ..Overrides::default()
        };
        resolve(
            None,
            &Environment::from_pairs(Vec::<(String, String)>::new()),
            &flags,
        )
        .unwrap()
    }

    #[test]
    fn equal_weight_rrf_is_qdrants_rrf_with_k_plus_one() {
        let config = config(&[]);
        let sparse = SparseVector {
            indices: vec![3],
            values: vec![1.0],
        };
        let vectors = vec![
            ("all-MiniLM-L6-v2", VectorRef::Dense(&[0.5, 0.5])),
            ("splade", VectorRef::Sparse(&sparse)),
        ];
        let (body, plan) = query_body(&config, &vectors, 10);
        let body = serde_json::to_value(&body).unwrap();
        assert!(plan.exact);
        // The run's 1/(60 + rank) is Qdrant's 1/(rank + k' - 1) with k' = 61.
        assert_eq!(body["query"], json!({"rrf": {"k": 61}}));
        assert_eq!(body["prefetch"][1]["using"], "splade");
        assert_eq!(body["prefetch"][0]["limit"], 100);
        assert_eq!(body["limit"], 10);
    }

    #[test]
    fn weights_or_convex_fusion_are_marked_inexact() {
        let vectors = vec![("all-MiniLM-L6-v2", VectorRef::Dense(&[1.0]))];
        let (_, plan) = query_body(&config(&["fusion.sparse_weight=0.5"]), &vectors, 10);
        // The sparse list is not in `vectors`, so its weight does not count.
        assert!(plan.exact);
        let empty = SparseVector {
            indices: vec![],
            values: vec![],
        };
        let vectors = vec![
            ("all-MiniLM-L6-v2", VectorRef::Dense(&[1.0])),
            ("splade", VectorRef::Sparse(&empty)),
        ];
        let (_, plan) = query_body(&config(&["fusion.sparse_weight=0.5"]), &vectors, 10);
        assert!(!plan.exact && plan.note.is_some());
        let (body, plan) = query_body(&config(&["fusion.method=\"convex\""]), &vectors, 10);
        assert!(!plan.exact);
        assert_eq!(body.query, json!({"fusion": "dbsf"}));
    }
}
