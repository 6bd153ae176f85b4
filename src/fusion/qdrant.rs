//! The Qdrant Query API request that reproduces a fusion for one query: one prefetch per fused
//! named vector (each dense model, SPLADE) at the run's depth, fused as the run fuses, so
//! `POST /collections/{name}/points/query` with this body returns the run's fused list for the
//! query. Read from Qdrant's sources (`lib/segment/src/common/reciprocal_rank_fusion.rs`,
//! `score_fusion.rs`) and qdrant-client's local mode, which computes the same:
//!
//! - RRF: Qdrant's `rrf: {k, weights}` scores `Σ 1 / ((position + 1) / weight + k − 1)` with
//!   0-based positions, which is the run's `Σ 1 / (rank / weight + k)` with `k' = k + 1`: exact
//!   whenever `k` is an integer (Qdrant's k is).
//! - DBSF: Qdrant's `fusion: dbsf` normalises as the run does and has no weights: exact when
//!   every fused list's weight is 1.
//! - Dense or sparse alone over one list: a plain query on that vector, exact.
//! - Convex combination: Qdrant has no equivalent (its normalisations need each list's
//!   statistics, which a request cannot name); the body carries DBSF, the nearest, with
//!   `exact: false` and the reason, so a client never mistakes an approximation for the run's
//!   ranking.

use super::{Fusion, Method};
use serde::Serialize;
use serde_json::{json, Value};

/// The Query API request body; `V` is how a query vector is written (the vector itself, or a
/// placeholder naming it in the manifest).
#[derive(Clone, Debug, Serialize)]
pub struct QueryBody<V> {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub prefetch: Vec<Prefetch<V>>,
    pub query: Query<V>,
    /// The vector a plain (unfused) query searches.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub using: Option<String>,
    pub limit: usize,
    pub with_payload: bool,
}

/// The body's `query`: a fusion over the prefetches, or one vector.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum Query<V> {
    Fusion(Value),
    Vector(V),
}

/// One list to fuse: the query's vector for one named vector, searched to the run's depth.
#[derive(Clone, Debug, Serialize)]
pub struct Prefetch<V> {
    pub query: V,
    pub using: String,
    pub limit: usize,
}

/// How the body fuses, and whether Qdrant will reproduce the run's ranking exactly.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct FusionPlan {
    /// The run's fusion method (`rrf`, `dbsf`, `convex`, `dense`, `sparse`).
    pub method: String,
    /// The run's RRF k (1-based ranks), where RRF fuses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rrf_k: Option<f64>,
    /// Each fused list's weight by vector name.
    pub weights: serde_json::Map<String, Value>,
    /// Qdrant's ranking equals the run's fused list.
    pub exact: bool,
    /// Why not, when it does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The Query API body for one query's `lists` (vector name → the query's vector: dense first,
/// in config order, then sparse when the query has one; `has_sparse` says whether the last is
/// it), each prefetched to `depth`, asking for `limit` points.
pub fn query_body<V: Clone>(
    fusion: &Fusion,
    lists: &[(String, V)],
    has_sparse: bool,
    depth: usize,
    limit: usize,
) -> (QueryBody<V>, FusionPlan) {
    let dense_count = lists.len() - usize::from(has_sparse);
    let fused: Vec<&(String, V)> = match fusion.method {
        Method::Sparse if has_sparse => lists[dense_count..].iter().collect(),
        Method::Sparse | Method::Dense => lists[..dense_count].iter().collect(),
        _ => lists.iter().collect(),
    };
    let weights_used = fusion.fused_weights(has_sparse);
    let mut weights = serde_json::Map::new();
    for ((name, _), weight) in fused.iter().zip(&weights_used) {
        weights.insert(name.clone(), json!(weight));
    }
    let unit_weights = weights_used.iter().all(|&w| w == 1.0);
    let k = fusion.rrf_k;
    let rrf_fuses = matches!(fusion.method, Method::Rrf | Method::Dense | Method::Sparse);
    let mut plan = FusionPlan {
        method: fusion.method.as_str().to_string(),
        rrf_k: (rrf_fuses && fused.len() > 1).then_some(k),
        weights,
        exact: true,
        note: None,
    };
    let body = |prefetch: Vec<Prefetch<V>>, query: Query<V>, using: Option<String>| QueryBody {
        prefetch,
        query,
        using,
        limit,
        with_payload: true,
    };
    if let [(name, vector)] = fused.as_slice() {
        let only = body(
            Vec::new(),
            Query::Vector(vector.clone()),
            Some(name.clone()),
        );
        return (only, plan);
    }
    let prefetch: Vec<Prefetch<V>> = fused
        .iter()
        .map(|(name, vector)| Prefetch {
            query: vector.clone(),
            using: name.clone(),
            limit: depth,
        })
        .collect();
    let query = match fusion.method {
        Method::Rrf | Method::Dense | Method::Sparse => {
            if k.fract() != 0.0 {
                plan.exact = false;
                plan.note = Some(format!(
                    "Qdrant's RRF takes an integer k: the run's k = {k} is rounded, and the \
                     orders can differ"
                ));
            }
            let qdrant_k = (k.round() as u64).max(1) + 1;
            if unit_weights {
                json!({"rrf": {"k": qdrant_k}})
            } else {
                json!({"rrf": {"k": qdrant_k, "weights": weights_used}})
            }
        }
        Method::Dbsf => {
            if !unit_weights {
                plan.exact = false;
                plan.note = Some(
                    "Qdrant's DBSF has no list weights: with weights other than 1 the orders \
                     can differ"
                        .to_string(),
                );
            }
            json!({"fusion": "dbsf"})
        }
        Method::Convex => {
            plan.exact = false;
            plan.note = Some(format!(
                "Qdrant has no convex combination of {}-normalised scores; DBSF \
                 (distribution-based score fusion) is the nearest",
                fusion.normalization.as_str()
            ));
            json!({"fusion": "dbsf"})
        }
    };
    (body(prefetch, Query::Fusion(query), None), plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fusion::Normalization;

    fn fusion(method: Method, dense_weights: &[f64], sparse_weight: f64) -> Fusion {
        Fusion {
            method,
            rrf_k: 60.0,
            normalization: Normalization::MinMax,
            dense_weights: dense_weights.to_vec(),
            sparse_weight,
        }
    }

    fn lists(names: &[&str]) -> Vec<(String, String)> {
        names
            .iter()
            .map(|n| (n.to_string(), format!("${n}")))
            .collect()
    }

    #[test]
    fn equal_weight_rrf_is_qdrants_rrf_with_k_plus_one() {
        let lists = lists(&["minilm", "splade"]);
        let (body, plan) = query_body(&fusion(Method::Rrf, &[1.0], 1.0), &lists, true, 100, 10);
        let body = serde_json::to_value(&body).unwrap();
        assert!(plan.exact);
        // The run's 1/(rank + 60) is Qdrant's 1/(position + 1 + k' - 1) with k' = 61.
        assert_eq!(body["query"], json!({"rrf": {"k": 61}}));
        assert_eq!(body["prefetch"][1]["using"], "splade");
        assert_eq!(body["prefetch"][1]["query"], "$splade");
        assert_eq!(body["prefetch"][0]["limit"], 100);
        assert_eq!(body["limit"], 10);
        assert!(body.get("using").is_none());
    }

    #[test]
    fn weighted_rrf_carries_the_weights_in_prefetch_order() {
        let lists = lists(&["minilm", "bge", "splade"]);
        let (body, plan) = query_body(
            &fusion(Method::Rrf, &[1.0, 0.5], 2.0),
            &lists,
            true,
            100,
            10,
        );
        assert!(plan.exact);
        assert_eq!(
            serde_json::to_value(&body.query).unwrap(),
            json!({"rrf": {"k": 61, "weights": [1.0, 0.5, 2.0]}})
        );
        assert_eq!(plan.weights["bge"], json!(0.5));
    }

    #[test]
    fn inexact_fusions_say_why() {
        let lists = lists(&["minilm", "splade"]);
        let (body, plan) = query_body(&fusion(Method::Dbsf, &[1.0], 1.0), &lists, true, 100, 10);
        assert!(plan.exact);
        assert_eq!(
            serde_json::to_value(&body.query).unwrap(),
            json!({"fusion": "dbsf"})
        );
        let (_, plan) = query_body(&fusion(Method::Dbsf, &[1.0], 0.5), &lists, true, 100, 10);
        assert!(!plan.exact && plan.note.is_some());
        let (body, plan) = query_body(&fusion(Method::Convex, &[1.0], 1.0), &lists, true, 100, 10);
        assert!(!plan.exact && plan.note.is_some());
        assert_eq!(
            serde_json::to_value(&body.query).unwrap(),
            json!({"fusion": "dbsf"})
        );
        let mut fractional = fusion(Method::Rrf, &[1.0], 1.0);
        fractional.rrf_k = 60.5;
        assert!(!query_body(&fractional, &lists, true, 100, 10).1.exact);
        // Without a sparse list the sparse weight does not count.
        let (_, plan) = query_body(
            &fusion(Method::Dbsf, &[1.0], 0.5),
            &lists[..1],
            false,
            100,
            10,
        );
        assert!(plan.exact);
    }

    #[test]
    fn one_list_alone_is_a_plain_query() {
        let lists = lists(&["minilm", "splade"]);
        let (body, plan) = query_body(&fusion(Method::Sparse, &[1.0], 1.0), &lists, true, 100, 10);
        let body = serde_json::to_value(&body).unwrap();
        assert!(plan.exact);
        assert_eq!(body["query"], "$splade");
        assert_eq!(body["using"], "splade");
        assert!(body.get("prefetch").is_none());
        let (body, _) = query_body(&fusion(Method::Dense, &[1.0], 1.0), &lists, true, 100, 10);
        assert_eq!(body.using.as_deref(), Some("minilm"));
    }
}
