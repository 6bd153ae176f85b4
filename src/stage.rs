//! The pipeline stages, one label shared by logs, the manifest and errors.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A stage of the per-collection pipeline, in execution order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Dense,
    Sparse,
    Fusion,
    Rerank,
    Export,
}

impl Stage {
    pub const ALL: [Stage; 5] = [
        Stage::Dense,
        Stage::Sparse,
        Stage::Fusion,
        Stage::Rerank,
        Stage::Export,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Dense => "dense",
            Stage::Sparse => "sparse",
            Stage::Fusion => "fusion",
            Stage::Rerank => "rerank",
            Stage::Export => "export",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
