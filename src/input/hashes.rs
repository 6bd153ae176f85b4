//! Each input file's size and content hash, read once per run ([`InputHashes`]): the run
//! fingerprint (`--resume`), the shards' input hash (`merge`) and `--reuse` all use the same
//! pass over the input.

use super::Collection;
use crate::files::FileDigest;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Each input file's size and content hash, read once per run.
#[derive(Clone, Debug, Default)]
pub struct InputHashes(BTreeMap<PathBuf, FileDigest>);

/// An input file that could not be hashed.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {}", path.display())]
pub struct HashError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

impl InputHashes {
    /// Hashes every chunk file of `collections` (streamed, once each).
    ///
    /// # Errors
    ///
    /// The first file that cannot be read, by name.
    pub fn of(collections: &[Collection]) -> Result<Self, HashError> {
        let mut hashes = BTreeMap::new();
        for file in collections.iter().flat_map(|c| &c.files) {
            if hashes.contains_key(file) {
                continue;
            }
            let digest = crate::files::digest_file(file).map_err(|source| HashError {
                path: file.clone(),
                source,
            })?;
            hashes.insert(file.clone(), digest);
        }
        Ok(Self(hashes))
    }

    /// The digest of `file`, if it was hashed.
    pub fn get(&self, file: &Path) -> Option<&FileDigest> {
        self.0.get(file)
    }
}
