//! Everything the run writes: points ([`points`], and in Parquet [`parquet`]), the manifest ([`manifest`]), their formats
//! ([`wire`]) and the atomic writer they share ([`atomic`]).

pub mod atomic;
pub mod manifest;
pub mod parquet;
pub mod points;
pub mod query_vectors;
pub mod ranked;
pub mod wire;

pub use atomic::{write_atomic, AtomicFile};
pub use manifest::{
    CollectionReport, CollectionStatus, FailureClass, Manifest, OverheadReport, RunStatus,
    StageReport, StageRun, StageStatus, OVERHEAD_LIMIT,
};
pub use points::{render_point, PointVectors};
pub use query_vectors::{render_query_vectors, write_query_vectors, QUERY_VECTORS_FILE};
pub use ranked::write_ranked;
pub use wire::SCHEMA_VERSION;

/// Name of each collection's point file.
pub const POINTS_FILE: &str = "points.jsonl";
/// Name of each collection's ranked-list file.
pub const RANKED_FILE: &str = "rerank.jsonl";
pub use crate::layout::{MANIFEST_FILE, METRICS_FILE, TOP_LEVEL_FILES};

/// `<output_dir>/<collection>`, the one directory a collection's files go to. A name that is
/// not one plain path component (`..`, `a/b`, an absolute path) is refused: discovery already
/// validates names ([`crate::input::validate_collection_name`]); this is the last
/// guard against writing outside `output.dir`.
pub fn collection_dir(
    output_dir: &std::path::Path,
    collection: &str,
) -> std::io::Result<std::path::PathBuf> {
    use std::path::{Component, Path};
    let mut components = Path::new(collection).components();
    match (components.next(), components.next()) {
        (Some(Component::Normal(part)), None) if part == collection => {
            Ok(output_dir.join(collection))
        }
        _ => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "collection name {collection:?} would write outside {}",
                output_dir.display()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::collection_dir;
    use std::path::Path;

    #[test]
    fn collection_dirs_stay_inside_the_output_directory() {
        let out = Path::new("/o");
        assert_eq!(collection_dir(out, "faq").unwrap(), Path::new("/o/faq"));
        for escape in ["..", ".", "a/b", "/etc", "", "a/"] {
            assert!(collection_dir(out, escape).is_err(), "{escape:?}");
        }
    }
}
