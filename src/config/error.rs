//! Why a configuration could not be resolved ([`ConfigError`]): every variant names the key,
//! file or variable at fault and where it came from.

use super::provenance::Source;
use std::path::PathBuf;

/// Why a configuration could not be resolved. Every variant names the key and its origin.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: line {line}: {key}: {message}")]
    FileValue {
        path: PathBuf,
        line: usize,
        key: String,
        message: String,
    },
    #[error("environment variable {var}={value:?}: {message}")]
    Env {
        var: &'static str,
        value: String,
        message: String,
    },
    #[error("unknown environment variable {var} (known: {known}; and for any setting EMBED_COLLECTIONS__SECTION__KEY)")]
    UnknownEnv { var: String, known: String },
    #[error("environment variable {var} is not valid UTF-8; set it to UTF-8 text or unset it")]
    EnvNotUnicode { var: String },
    #[error("{key} (from {origin}): {message}")]
    Invalid {
        key: String,
        origin: Source,
        message: String,
    },
    #[error("{setting} (from {origin}): {message}")]
    Keyed {
        origin: Source,
        setting: String,
        message: String,
    },
    #[error("{key} is set by both {first} and {second}; give it once")]
    Twice {
        key: String,
        first: String,
        second: String,
    },
    #[error("{key} is not set; {hint}")]
    Missing {
        key: &'static str,
        hint: &'static str,
    },
}
