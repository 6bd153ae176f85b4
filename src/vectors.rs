//! The vectors a run produces, as domain types shared by the models, the stages and the export.

use serde::Serialize;

/// A sparse vector over the model's vocabulary: ids sorted ascending, weights > 0.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SparseVector {
    pub indices: Vec<u32>,
    pub values: Vec<f32>,
}

impl SparseVector {
    /// Builds from (id, weight) pairs: keeps positive finite weights, the `max_terms` largest
    /// when capped (ties broken by lower id), sorted by id.
    pub fn from_weights(mut terms: Vec<(u32, f32)>, max_terms: Option<usize>) -> Self {
        terms.retain(|(_, w)| w.is_finite() && *w > 0.0);
        if let Some(cap) = max_terms.filter(|cap| *cap < terms.len()) {
            terms.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            terms.truncate(cap);
        }
        terms.sort_by_key(|(id, _)| *id);
        let (indices, values) = terms.into_iter().unzip();
        Self { indices, values }
    }

    pub fn len(&self) -> usize {
        self.indices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }
}

/// Where a point's sparse vector came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SparseSource {
    /// Live SPLADE inference.
    Splade,
    /// The chunk's metadata term weights, after inference failed for it.
    Metadata,
}

/// A chunk's sparse vector and its origin.
#[derive(Clone, Debug, PartialEq)]
pub struct SparsePoint {
    pub vector: SparseVector,
    pub source: SparseSource,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_weights_keeps_positive_sorted_and_caps_by_weight() {
        let terms = vec![
            (9, 0.5),
            (2, 3.0),
            (5, 0.0),
            (7, f32::NAN),
            (1, 3.0),
            (4, 1.0),
        ];
        let all = SparseVector::from_weights(terms.clone(), None);
        assert_eq!(all.indices, vec![1, 2, 4, 9]);
        assert_eq!(all.values, vec![3.0, 3.0, 1.0, 0.5]);
        let capped = SparseVector::from_weights(terms, Some(2));
        assert_eq!(capped.indices, vec![1, 2], "ties keep the lower id");
    }
}
