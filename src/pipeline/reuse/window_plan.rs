//! What one window takes from the earlier output, and what it must embed.

use super::{change_line, parse_point, ChangeLine, PreviousCollection, ReuseError, ReuseSource};
use crate::export::manifest::{ChangeCounts, ReuseReport, VectorReuse};
use crate::vectors::SparsePoint;
use sha2::{Digest, Sha256};

/// What one window takes from the earlier output, and what it must embed.
pub struct WindowPlan {
    /// Per chunk: its earlier point, if it has one.
    entries: Vec<Option<usize>>,
    /// Per chunk: its text differs from its earlier point's.
    text_changed: Vec<bool>,
    /// Per chunk: sha256 of its earlier point's line.
    previous_lines: Vec<Option<[u8; 32]>>,
    /// `[dense model][chunk]`: the reused vector.
    dense: Vec<Vec<Option<Vec<f32>>>>,
    /// Per chunk: the reused sparse point (empty without a sparse stage).
    sparse: Vec<Option<SparsePoint>>,
    dense_names: Vec<String>,
    sparse_name: Option<String>,
    /// Per chunk: some model computes a vector for it (fixed before [`Self::fill`] moves the
    /// reused vectors out).
    computed: Vec<bool>,
}

impl WindowPlan {
    /// Looks each chunk of `window` (its text hashes `texts`) up in `previous` (none: every
    /// chunk is new).
    ///
    /// # Errors
    ///
    /// An earlier point that cannot be read back.
    pub fn new(
        source: &ReuseSource,
        previous: Option<&mut PreviousCollection>,
        window: &[crate::input::Chunk],
        texts: &[[u8; 32]],
    ) -> Result<Self, ReuseError> {
        let n = window.len();
        let mut plan = Self {
            entries: vec![None; n],
            text_changed: vec![false; n],
            previous_lines: vec![None; n],
            dense: vec![vec![None; n]; source.dense.len()],
            sparse: if source.sparse.is_some() {
                vec![None; n]
            } else {
                Vec::new()
            },
            dense_names: source.dense.iter().map(|m| m.name.clone()).collect(),
            sparse_name: source.sparse.as_ref().map(|m| m.name.clone()),
            computed: Vec::new(),
        };
        let Some(previous) = previous else {
            plan.computed = vec![true; n];
            return Ok(plan);
        };
        for (i, chunk) in window.iter().enumerate() {
            let Some(entry) = previous.find(chunk.id.as_str()) else {
                continue;
            };
            plan.entries[i] = Some(entry);
            let line = previous.line(entry)?;
            plan.previous_lines[i] = Some(Sha256::digest(&line).into());
            if !previous.same_text(entry, &texts[i]) {
                plan.text_changed[i] = true;
                continue;
            }
            let mut vectors = parse_point(&line).map_err(|reason| ReuseError::Malformed {
                path: previous.points_shown.clone(),
                reason: format!("point {}: {reason}", entry + 1),
            })?;
            for (model, matched) in source.dense.iter().enumerate() {
                if let Ok(earlier) = &matched.previous {
                    plan.dense[model][i] = vectors.dense.remove(earlier);
                }
            }
            if let Some(Ok(earlier)) = source.sparse.as_ref().map(|m| &m.previous) {
                plan.sparse[i] = vectors.splade(earlier);
            }
        }
        plan.computed = (0..n)
            .map(|i| {
                plan.dense.iter().any(|v| v[i].is_none())
                    || (!plan.sparse.is_empty() && plan.sparse[i].is_none())
            })
            .collect();
        Ok(plan)
    }

    /// The chunks dense model `model` must embed.
    pub fn dense_todo(&self, model: usize) -> Vec<usize> {
        (0..self.entries.len())
            .filter(|&i| self.dense.get(model).is_none_or(|v| v[i].is_none()))
            .collect()
    }

    /// The chunks SPLADE must encode.
    pub fn sparse_todo(&self) -> Vec<usize> {
        (0..self.entries.len())
            .filter(|&i| self.sparse.get(i).is_none_or(Option::is_none))
            .collect()
    }

    /// Whether any model computes a vector for chunk `i`.
    fn computed(&self, i: usize) -> bool {
        self.computed[i]
    }

    /// The window's reuse counts (changes are counted as they are recorded).
    pub fn tally(&self) -> ReuseReport {
        let mut tally = ReuseReport::default();
        for i in 0..self.entries.len() {
            if !self.computed(i) {
                tally.reused += 1;
                continue;
            }
            tally.embedded += 1;
            let why = match (self.entries[i], self.text_changed[i]) {
                (None, _) => "new",
                (Some(_), true) => "text_changed",
                (Some(_), false) => "model_changed",
            };
            *tally.embedded_because.entry(why.to_string()).or_default() += 1;
        }
        let count = |name: &str, reused: usize, total: usize| {
            (
                name.to_string(),
                VectorReuse {
                    reused,
                    computed: total - reused,
                },
            )
        };
        let n = self.entries.len();
        for (name, vectors) in self.dense_names.iter().zip(&self.dense) {
            let (key, value) = count(name, vectors.iter().flatten().count(), n);
            tally.vectors.insert(key, value);
        }
        if let Some(name) = &self.sparse_name {
            let (key, value) = count(name, self.sparse.iter().flatten().count(), n);
            tally.vectors.insert(key, value);
        }
        tally
    }

    /// Moves the reused vectors into the window's results (the places the models left).
    pub fn fill(
        &mut self,
        dense: &mut [Vec<Result<Vec<f32>, crate::models::ModelError>>],
        sparse: Option<&mut Vec<Option<SparsePoint>>>,
    ) {
        for (results, reused) in dense.iter_mut().zip(&mut self.dense) {
            for (result, vector) in results.iter_mut().zip(reused.iter_mut()) {
                if let Some(vector) = vector.take() {
                    *result = Ok(vector);
                }
            }
        }
        if let Some(points) = sparse {
            for (point, reused) in points.iter_mut().zip(self.sparse.iter_mut()) {
                if let Some(reused) = reused.take() {
                    *point = Some(reused);
                }
            }
        }
    }

    /// Records chunk `i`'s point (its rendered `line`) in the changes: added, updated, or
    /// nothing when it equals the earlier point.
    pub fn record_point(
        &self,
        i: usize,
        chunk: &crate::input::Chunk,
        line: &[u8],
        out: &mut Vec<u8>,
        counts: &mut ChangeCounts,
    ) -> serde_json::Result<()> {
        let (change, reason) = match self.previous_lines[i] {
            None => ("added", None),
            Some(earlier) if earlier == <[u8; 32]>::from(Sha256::digest(line)) => {
                counts.unchanged += 1;
                return Ok(());
            }
            Some(_) if self.text_changed[i] => ("updated", Some("text_changed")),
            Some(_) if self.computed(i) => ("updated", Some("model_changed")),
            Some(_) => ("updated", Some("payload_changed")),
        };
        change_line(
            out,
            counts,
            &ChangeLine {
                change,
                point_id: chunk.point_id,
                chunk_id: chunk.id.as_str(),
                reason,
            },
        )
    }

    /// Records chunk `i`, which has no point this time: its earlier point is deleted.
    pub fn record_failed(
        &self,
        i: usize,
        chunk: &crate::input::Chunk,
        out: &mut Vec<u8>,
        counts: &mut ChangeCounts,
    ) -> serde_json::Result<()> {
        if self.entries[i].is_none() {
            return Ok(());
        }
        change_line(
            out,
            counts,
            &ChangeLine {
                change: "deleted",
                point_id: chunk.point_id,
                chunk_id: chunk.id.as_str(),
                reason: Some("failed"),
            },
        )
    }
}
