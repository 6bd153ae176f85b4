//! Sharded runs: which part of the input shard `I` of `N` embeds (the partition rule), and how
//! a shard is named on the command line, in the environment and on disk.
//!
//! The rule (documented in docs/sharding.md), a pure function of the input and of
//! `N`, never of which machine runs which index or when:
//! - a collection whose chunk files hold at most `shard.split_bytes` bytes in all goes *whole*
//!   to shard `h(name) mod N`;
//! - a larger one is *split*: each chunk goes to shard `h(chunk id) mod N`;
//!
//! where `h(x)` is the first 8 bytes of `sha256(x)` read as a big-endian integer. Every shard
//! reads (and validates) every split collection, and embeds only its own chunks.

use crate::input::Collection;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

/// The partition rule's name, as recorded in shard manifests (bump when the rule changes).
pub const RULE: &str = "whole-by-name-sha256-else-chunk-id-sha256/v1";

/// Shard `index` of `count` (0-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    pub fn new(index: u32, count: u32) -> Result<Self, ShardError> {
        if count == 0 {
            return Err(ShardError::Invalid(
                "the shard count must be at least 1".to_string(),
            ));
        }
        if index >= count {
            return Err(ShardError::Invalid(format!(
                "shard index {index} is not below the count {count} (indices are 0-based: 0..{})",
                count - 1
            )));
        }
        Ok(Self { index, count })
    }

    /// The shard's output directory under `output.dir`: `shard-I-of-N`.
    pub fn dir_name(&self) -> String {
        crate::layout::shard_dir_name(self.index, self.count)
    }

    /// Parses a [`Self::dir_name`].
    pub fn from_dir_name(name: &str) -> Option<Self> {
        let (index, count) = crate::layout::parse_shard_dir_name(name)?;
        Self::new(index, count).ok()
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Why a shard spec cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    #[error("{0}")]
    Invalid(String),
    #[error("--shard auto: {0}")]
    Auto(String),
}

/// A shard as requested: `I/N`, `auto` or `auto/N`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShardRequest {
    Fixed(Shard),
    /// The index (and, for Slurm, the count) from the scheduler's variables.
    Auto {
        count: Option<u32>,
    },
}

/// From its text form (the resolver reads every setting through serde).
impl<'de> Deserialize<'de> for ShardRequest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl FromStr for ShardRequest {
    type Err = ShardError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let invalid = || {
            ShardError::Invalid(format!(
                "{text:?} is not a shard: expected I/N (0-based, e.g. 0/3), auto or auto/N"
            ))
        };
        let parse_count = |n: &str| n.trim().parse::<u32>().map_err(|_| invalid());
        if text == "auto" {
            return Ok(ShardRequest::Auto { count: None });
        }
        let (index, count) = text.split_once('/').ok_or_else(invalid)?;
        let count = parse_count(count)?;
        if index.trim() == "auto" {
            if count == 0 {
                return Err(ShardError::Invalid(
                    "the shard count must be at least 1".to_string(),
                ));
            }
            return Ok(ShardRequest::Auto { count: Some(count) });
        }
        let index = index.trim().parse::<u32>().map_err(|_| invalid())?;
        Ok(ShardRequest::Fixed(Shard::new(index, count)?))
    }
}

/// The scheduler variables `auto` reads.
pub mod scheduler_vars {
    /// Kubernetes Indexed Job: the pod's completion index (0-based).
    pub const K8S_INDEX: &str = "JOB_COMPLETION_INDEX";
    /// Slurm job arrays.
    pub const SLURM_ID: &str = "SLURM_ARRAY_TASK_ID";
    pub const SLURM_COUNT: &str = "SLURM_ARRAY_TASK_COUNT";
    pub const SLURM_MIN: &str = "SLURM_ARRAY_TASK_MIN";
    pub const SLURM_STEP: &str = "SLURM_ARRAY_TASK_STEP";
    pub const ALL: [&str; 5] = [K8S_INDEX, SLURM_ID, SLURM_COUNT, SLURM_MIN, SLURM_STEP];
}

impl ShardRequest {
    /// The shard, reading the scheduler's variables through `var` for `auto`.
    pub fn resolve(self, var: impl Fn(&str) -> Option<String>) -> Result<Shard, ShardError> {
        use scheduler_vars::*;
        let count = match self {
            ShardRequest::Fixed(shard) => return Ok(shard),
            ShardRequest::Auto { count } => count,
        };
        let number = |name: &str| -> Result<Option<u32>, ShardError> {
            match var(name).filter(|v| !v.trim().is_empty()) {
                None => Ok(None),
                Some(value) => value.trim().parse::<u32>().map(Some).map_err(|_| {
                    ShardError::Auto(format!("{name}={value:?} is not a non-negative integer"))
                }),
            }
        };
        let k8s = number(K8S_INDEX)?;
        let slurm = number(SLURM_ID)?;
        let (index, scheduler_count, from) = match (k8s, slurm) {
            (Some(_), Some(_)) => {
                return Err(ShardError::Auto(format!(
                    "both {K8S_INDEX} (Kubernetes) and {SLURM_ID} (Slurm) are set; give the shard as I/N"
                )))
            }
            (Some(index), None) => (index, None, K8S_INDEX),
            (None, Some(id)) => {
                let min = number(SLURM_MIN)?.unwrap_or(0);
                let step = number(SLURM_STEP)?.unwrap_or(1).max(1);
                let offset = id.checked_sub(min).filter(|o| o % step == 0).ok_or_else(|| {
                    ShardError::Auto(format!(
                        "{SLURM_ID}={id} is not on the array {SLURM_MIN}={min} + k × {SLURM_STEP}={step}"
                    ))
                })?;
                (offset / step, number(SLURM_COUNT)?, SLURM_ID)
            }
            (None, None) => {
                return Err(ShardError::Auto(format!(
                    "neither {K8S_INDEX} (Kubernetes Indexed Job) nor {SLURM_ID} (Slurm array) is set; give the shard as I/N"
                )))
            }
        };
        let count = match (count, scheduler_count) {
            (Some(given), Some(slurm)) if given != slurm => {
                return Err(ShardError::Auto(format!(
                    "auto/{given} disagrees with {SLURM_COUNT}={slurm}"
                )))
            }
            (Some(n), _) | (None, Some(n)) => n,
            (None, None) => {
                return Err(ShardError::Auto(format!(
                    "{from} gives the index but nothing gives the count: use --shard auto/N (N = the Job's completions)"
                )))
            }
        };
        Shard::new(index, count).map_err(|err| ShardError::Auto(format!("{from}: {err}")))
    }
}

/// `h(x)`: the first 8 bytes of `sha256(x)`, big-endian.
fn stable_hash(key: &[u8]) -> u64 {
    let digest = Sha256::digest(key);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// The shard `key` falls to among `count`.
pub fn shard_of(key: &str, count: u32) -> u32 {
    (stable_hash(key.as_bytes()) % u64::from(count.max(1))) as u32
}

/// How a collection is shared among the shards.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "rule")]
pub enum Share {
    /// The whole collection goes to `owner`.
    Whole { owner: u32 },
    /// Every shard embeds the chunks whose id falls to it.
    Split,
}

/// The partition of a run's input among `count` shards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Partition {
    pub count: u32,
    pub split_bytes: u64,
}

impl Partition {
    /// How `collection` is shared; `bytes` is the size of its chunk files.
    pub fn share(&self, name: &str, bytes: u64) -> Share {
        if bytes > self.split_bytes && self.count > 1 {
            Share::Split
        } else {
            Share::Whole {
                owner: shard_of(name, self.count),
            }
        }
    }

    /// The share of a discovered collection (its files' sizes read from the file system).
    pub fn share_of(&self, collection: &Collection) -> std::io::Result<Share> {
        Ok(self.share(&collection.name, input_bytes(collection)?))
    }
}

/// What one shard does with a collection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShardWork {
    /// Another shard's.
    None,
    /// All of it.
    Whole,
    /// The chunks whose id falls to `shard`.
    Part(Shard),
}

impl ShardWork {
    pub fn of(share: Share, shard: Shard) -> Self {
        match share {
            Share::Whole { owner } if owner == shard.index => ShardWork::Whole,
            Share::Whole { .. } => ShardWork::None,
            Share::Split => ShardWork::Part(shard),
        }
    }

    /// Whether this shard embeds the chunk `id`.
    pub fn owns_chunk(&self, id: &str) -> bool {
        match self {
            ShardWork::None => false,
            ShardWork::Whole => true,
            ShardWork::Part(shard) => shard_of(id, shard.count) == shard.index,
        }
    }
}

/// Total bytes of a collection's chunk files.
pub fn input_bytes(collection: &Collection) -> std::io::Result<u64> {
    collection
        .files
        .iter()
        .map(|file| std::fs::metadata(file).map(|m| m.len()))
        .sum()
}

/// sha256 over a collection's chunk files (each file's name within the collection, its length
/// and its content's sha256, in order): what a merge compares to know the shards read the same
/// input, wherever and whenever they ran. Each file's hash comes from `hashes` (the run's one
/// pass over its input); a file not there is hashed now.
pub fn input_sha256(
    collection: &Collection,
    hashes: &crate::input::InputHashes,
) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    for file in &collection.files {
        let name = match &collection.dir {
            Some(dir) => file.strip_prefix(dir).unwrap_or(file),
            None => file
                .file_name()
                .map_or(file.as_path(), std::path::Path::new),
        };
        let name = name.to_string_lossy();
        hasher.update((name.len() as u64).to_le_bytes());
        hasher.update(name.as_bytes());
        let digest = match hashes.get(file) {
            Some(digest) => digest.clone(),
            None => crate::files::digest_file(file)?,
        };
        hasher.update(digest.bytes.to_le_bytes());
        hasher.update(digest.sha256.as_bytes());
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn specs_parse_and_bad_ones_say_why() {
        assert_eq!(
            "1/3".parse::<ShardRequest>().unwrap(),
            ShardRequest::Fixed(Shard { index: 1, count: 3 })
        );
        assert_eq!(
            "auto".parse::<ShardRequest>().unwrap(),
            ShardRequest::Auto { count: None }
        );
        assert_eq!(
            "auto/4".parse::<ShardRequest>().unwrap(),
            ShardRequest::Auto { count: Some(4) }
        );
        let err = "3/3".parse::<ShardRequest>().unwrap_err().to_string();
        assert!(err.contains("0-based"), "{err}");
        for bad in ["", "1", "a/3", "1/b", "1/0", "-1/3", "auto/0"] {
            assert!(bad.parse::<ShardRequest>().is_err(), "{bad:?} accepted");
        }
        let shard = Shard::new(2, 5).unwrap();
        assert_eq!(shard.dir_name(), "shard-2-of-5");
        assert_eq!(Shard::from_dir_name("shard-2-of-5"), Some(shard));
        assert_eq!(Shard::from_dir_name("shard-5-of-5"), None);
        assert_eq!(Shard::from_dir_name("merged"), None);
    }

    #[test]
    fn auto_reads_kubernetes_and_slurm() {
        let auto = ShardRequest::Auto { count: None };
        let auto3 = ShardRequest::Auto { count: Some(3) };
        let k8s = vars(&[("JOB_COMPLETION_INDEX", "2")]);
        assert_eq!(auto3.resolve(&k8s).unwrap(), Shard::new(2, 3).unwrap());
        let err = auto.resolve(&k8s).unwrap_err().to_string();
        assert!(err.contains("auto/N"), "{err}");
        let err = ShardRequest::Auto { count: Some(2) }
            .resolve(&k8s)
            .unwrap_err()
            .to_string();
        assert!(err.contains("JOB_COMPLETION_INDEX"), "{err}");

        // `--array=1-3` (ids 1, 2, 3; min 1) and `--array=0-8:4` (ids 0, 4, 8).
        let slurm = vars(&[
            ("SLURM_ARRAY_TASK_ID", "3"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
        ]);
        assert_eq!(auto.resolve(&slurm).unwrap(), Shard::new(2, 3).unwrap());
        let stepped = vars(&[
            ("SLURM_ARRAY_TASK_ID", "4"),
            ("SLURM_ARRAY_TASK_STEP", "4"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
        ]);
        assert_eq!(auto.resolve(&stepped).unwrap(), Shard::new(1, 3).unwrap());
        let err = ShardRequest::Auto { count: Some(4) }
            .resolve(&slurm)
            .unwrap_err()
            .to_string();
        assert!(err.contains("disagrees"), "{err}");
        let off_grid = vars(&[
            ("SLURM_ARRAY_TASK_ID", "5"),
            ("SLURM_ARRAY_TASK_STEP", "4"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
        ]);
        assert!(auto.resolve(&off_grid).is_err());

        let err = auto.resolve(vars(&[])).unwrap_err().to_string();
        assert!(
            err.contains("JOB_COMPLETION_INDEX") && err.contains("SLURM_ARRAY_TASK_ID"),
            "{err}"
        );
        let both = vars(&[("JOB_COMPLETION_INDEX", "0"), ("SLURM_ARRAY_TASK_ID", "0")]);
        assert!(auto3
            .resolve(&both)
            .unwrap_err()
            .to_string()
            .contains("both"));
        let junk = vars(&[("JOB_COMPLETION_INDEX", "x")]);
        assert!(auto3
            .resolve(&junk)
            .unwrap_err()
            .to_string()
            .contains("\"x\""));
    }

    #[test]
    fn the_partition_covers_every_chunk_exactly_once() {
        let partition = Partition {
            count: 3,
            split_bytes: 100,
        };
        assert_eq!(partition.share("big", 101), Share::Split);
        let Share::Whole { owner } = partition.share("small", 100) else {
            panic!("a small collection is split");
        };
        assert!(owner < 3);
        // One shard: nothing is split.
        let single = Partition {
            count: 1,
            split_bytes: 0,
        };
        assert_eq!(single.share("big", 1 << 40), Share::Whole { owner: 0 });

        let shards: Vec<Shard> = (0..3).map(|i| Shard::new(i, 3).unwrap()).collect();
        let mut per_shard = [0usize; 3];
        for i in 0..3000 {
            let id = format!("doc-{i}");
            let owners: Vec<u32> = shards
                .iter()
                .filter(|s| ShardWork::of(Share::Split, **s).owns_chunk(&id))
                .map(|s| s.index)
                .collect();
            assert_eq!(owners.len(), 1, "{id} owned by {owners:?}");
            per_shard[owners[0] as usize] += 1;
        }
        // A fair hash: every shard gets roughly a third.
        assert!(
            per_shard.iter().all(|&n| (900..1100).contains(&n)),
            "{per_shard:?}"
        );
        let whole: Vec<ShardWork> = shards
            .iter()
            .map(|s| ShardWork::of(Share::Whole { owner: 1 }, *s))
            .collect();
        assert_eq!(whole, [ShardWork::None, ShardWork::Whole, ShardWork::None]);
    }

    #[test]
    fn the_hash_is_sha256_as_documented() {
        // sha256("abc") = ba7816bf 8f01cfea …: the first 8 bytes, big-endian.
        assert_eq!(stable_hash(b"abc"), 0xba78_16bf_8f01_cfea);
        assert_eq!(shard_of("abc", 7), (0xba78_16bf_8f01_cfea_u64 % 7) as u32);
    }
}
