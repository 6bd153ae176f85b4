//! The names a run gives the top level of its output directory: the manifest, the metrics
//! file and the shards' directories. Input discovery refuses collections of these names, the
//! export and the shards write them; this module knows nothing else, so both can use it.

/// Name of the run manifest in the output directory.
pub const MANIFEST_FILE: &str = "manifest.json";
/// Files a run writes directly in the output directory (the metrics file by default): a new
/// run replaces them, and no collection may take their names.
pub const TOP_LEVEL_FILES: [&str; 2] = [MANIFEST_FILE, METRICS_FILE];
/// Default metrics file name in the output directory (node_exporter's textfile collector reads
/// `*.prom`).
pub const METRICS_FILE: &str = "metrics.prom";

/// A shard's output directory under `output.dir`: `shard-I-of-N`.
pub fn shard_dir_name(index: u32, count: u32) -> String {
    format!("shard-{index}-of-{count}")
}

/// The `(index, count)` of a [`shard_dir_name`], when `name` is one of a possible shard (a
/// count of at least 1 and an index below it).
pub fn parse_shard_dir_name(name: &str) -> Option<(u32, u32)> {
    let rest = name.strip_prefix("shard-")?;
    let (index, count) = rest.split_once("-of-")?;
    let (index, count) = (index.parse().ok()?, count.parse().ok()?);
    (index < count).then_some((index, count))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_directory_names_round_trip_and_only_possible_shards_parse() {
        assert_eq!(shard_dir_name(2, 5), "shard-2-of-5");
        assert_eq!(parse_shard_dir_name("shard-2-of-5"), Some((2, 5)));
        for name in [
            "shard-5-of-5",
            "shard-0-of-0",
            "shard-a-of-2",
            "shard-1",
            "docs",
            "shard--1-of-2",
        ] {
            assert_eq!(parse_shard_dir_name(name), None, "{name}");
        }
    }
}
