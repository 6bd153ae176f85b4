//! Where each effective setting came from ([`Source`]: default, file, environment variable or
//! flag), recorded per key in [`Provenance`] for `embed-collections config` and the manifest.

use serde::{Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// Where an effective setting came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Default,
    File(PathBuf),
    /// The variable's name (a dedicated one, or `EMBED_COLLECTIONS__SECTION__KEY`).
    Env(String),
    /// The flag (a dedicated one, or `--set`).
    Flag(&'static str),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(path) => write!(f, "file:{}", path.display()),
            Source::Env(var) => write!(f, "env:{var}"),
            Source::Flag(flag) => write!(f, "flag:{flag}"),
        }
    }
}

impl Serialize for Source {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Setting key (`sparse.enabled`) → where its effective value came from.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Provenance(pub(super) BTreeMap<String, Source>);

impl Provenance {
    pub fn get(&self, key: &str) -> Option<&Source> {
        self.0.get(key)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Source)> {
        self.0.iter().map(|(key, source)| (key.as_str(), source))
    }
}
