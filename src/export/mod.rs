//! Everything the run writes: points ([`points`]), the manifest ([`manifest`]), their formats
//! ([`wire`]) and the atomic writer they share ([`atomic`]).

pub mod atomic;
pub mod manifest;
pub mod points;
pub mod query_vectors;
pub mod ranked;
pub mod wire;

pub use atomic::{write_atomic, AtomicFile};
pub use manifest::{
    CollectionReport, CollectionStatus, FailureClass, Manifest, RunStatus, StageReport, StageRun,
    StageStatus,
};
pub use points::{render_point, PointVectors};
pub use query_vectors::{write_query_vectors, QUERY_VECTORS_FILE};
pub use ranked::write_ranked;
pub use wire::SCHEMA_VERSION;

/// Name of each collection's point file.
pub const POINTS_FILE: &str = "points.jsonl";
/// Name of each collection's ranked-list file.
pub const RANKED_FILE: &str = "rerank.jsonl";
/// Name of the run manifest in the output directory.
pub const MANIFEST_FILE: &str = "manifest.json";
