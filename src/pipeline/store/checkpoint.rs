//! The checkpoint format (`checkpoint.json`): how far a collection got and the byte lengths of
//! its work files at the last complete window.

use crate::export::manifest::ReuseReport;
use crate::export::{CollectionReport, StageReport};
use crate::stage::Stage;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How far a collection got.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Windows are being embedded; `windows` of them are complete.
    Windows,
    /// Every window is done and `points.jsonl` is in place; ranking and export remain.
    Embedded,
    /// Everything is written; `report` is the collection's final report.
    Done,
}

/// Byte lengths of the data files at the last complete window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileLengths {
    pub points: u64,
    pub dense: u64,
    pub sparse_nnz: u64,
    pub sparse_indices: u64,
    pub sparse_values: u64,
    pub docs: u64,
    #[serde(default)]
    pub hashes: u64,
    #[serde(default)]
    pub changes: u64,
}

/// The collection's progress, as last committed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The run fingerprint's hash; a checkpoint of another configuration is never continued.
    pub fingerprint: String,
    pub phase: Phase,
    /// Complete windows.
    pub windows: usize,
    /// Chunks of the input stream consumed by those windows.
    pub chunks_consumed: usize,
    /// Points written (chunks consumed minus chunks that failed dense embedding).
    pub points: usize,
    /// Width of the rows of `dense.f32` (the sum of `dense_dims`).
    pub dense_dim: usize,
    /// Each dense model's dimension, in config order (a row is their vectors side by side).
    #[serde(default)]
    pub dense_dims: Vec<usize>,
    pub lengths: FileLengths,
    /// Dense and sparse stage reports accumulated over the complete windows.
    pub stages: BTreeMap<Stage, StageReport>,
    /// Ids of chunks that failed dense embedding even alone (first few), and their count.
    pub failed_chunks: Vec<String>,
    pub failed_count: usize,
    /// The final report, once the phase is `Done`.
    pub report: Option<CollectionReport>,
    /// A run with `--reuse`: its counts over the complete windows.
    #[serde(default)]
    pub reuse: Option<ReuseReport>,
    /// Parquet parts written (`<collection>/points/part-NNNNN.parquet`), the points they hold
    /// and the bytes of `points.partial` those points' lines take: the next part starts there.
    #[serde(default)]
    pub parts: usize,
    #[serde(default)]
    pub parts_rows: usize,
    #[serde(default)]
    pub parts_offset: u64,
}

impl Checkpoint {
    pub fn new(fingerprint: &str) -> Self {
        Self {
            fingerprint: fingerprint.to_string(),
            phase: Phase::Windows,
            windows: 0,
            chunks_consumed: 0,
            points: 0,
            dense_dim: 0,
            dense_dims: Vec::new(),
            lengths: FileLengths::default(),
            stages: BTreeMap::new(),
            failed_chunks: Vec::new(),
            failed_count: 0,
            report: None,
            reuse: None,
            parts: 0,
            parts_rows: 0,
            parts_offset: 0,
        }
    }
}
