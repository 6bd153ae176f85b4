//! The layers that carry settings by key: the TOML file ([`FileLayer`]) and the text of a
//! `--set section.key=value` or an `EMBED_COLLECTIONS__SECTION__KEY` variable ([`KeyedText`]).
//!
//! Neither knows the type of a setting: the key table ([`super::keys`]) says which keys exist,
//! and the resolver ([`super::resolve`]) converts each value to its type when it picks the
//! key, so a setting is declared in the table and read in one place, never mirrored here.

use super::error::ConfigError;
use super::keys;
use super::provenance::Source;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::path::Path;

/// A value in the config file, with the line it is on (for errors).
#[derive(Clone, Debug)]
struct FileValue {
    value: toml::Value,
    line: usize,
}

/// The config file's settings by key (`rerank.top_k` → its value and line). Every key is one
/// of the key table's; unknown sections and keys are refused when the file is parsed.
#[derive(Clone, Debug, Default)]
pub struct FileLayer {
    values: BTreeMap<String, FileValue>,
}

impl FileLayer {
    /// Whether the file sets `key`.
    pub fn has(&self, key: &str) -> bool {
        self.values.contains_key(key)
    }

    /// The value of `key` as `T`, if the file sets it. `path` is the file (for errors) and
    /// `dir` its directory: a path setting's relative value is taken from there.
    pub(super) fn typed<T: DeserializeOwned>(
        &self,
        key: &str,
        path: &Path,
        dir: &Path,
    ) -> Result<Option<T>, ConfigError> {
        let Some(FileValue { value, line }) = self.values.get(key) else {
            return Ok(None);
        };
        let value = match value {
            // Folded lexically, so logs say `out/quickstart`, not `configs/../out/quickstart`.
            toml::Value::String(relative) if keys::find(key).is_some_and(|s| s.path) => {
                let joined = super::paths::lexical(&dir.join(relative));
                toml::Value::String(joined.to_string_lossy().into_owned())
            }
            other => other.clone(),
        };
        value
            .try_into::<T>()
            .map(Some)
            .map_err(|err| ConfigError::FileValue {
                path: path.to_path_buf(),
                line: *line,
                key: key.to_string(),
                message: one_line(&err.to_string()),
            })
    }
}

/// Parses a config file's text into its settings; syntax errors carry the file, line and
/// column, and an unknown section or key is refused naming its line and the nearest keys.
pub fn parse_file(path: &Path, text: &str) -> Result<FileLayer, ConfigError> {
    let syntax = |err: toml::de::Error| ConfigError::Parse {
        path: path.to_path_buf(),
        message: err.to_string().trim_end().to_string(),
    };
    let line_of = |span: std::ops::Range<usize>| {
        text.get(..span.start)
            .map_or(1, |before| before.matches('\n').count() + 1)
    };
    let unknown = |line: usize, message: String| ConfigError::Parse {
        path: path.to_path_buf(),
        message: format!("line {line}: {message}"),
    };
    let top: BTreeMap<String, toml::Spanned<toml::Value>> = toml::from_str(text).map_err(syntax)?;
    for (section, value) in &top {
        let line = line_of(value.span());
        if !keys::SETTINGS.iter().any(|s| s.split().0 == section) {
            let sections: Vec<&str> = keys::SETTINGS.iter().map(|s| s.split().0).collect();
            let mut sections = sections;
            sections.dedup();
            return Err(unknown(
                line,
                format!(
                    "unknown section `{section}` (the sections are {})",
                    sections.join(", ")
                ),
            ));
        }
        if !value.get_ref().is_table() {
            return Err(unknown(
                line,
                format!("`{section}` must be a table (`[{section}]`)"),
            ));
        }
    }
    // Every top-level value is a table now, so this reading cannot fail.
    let sections: BTreeMap<String, BTreeMap<String, toml::Spanned<toml::Value>>> =
        toml::from_str(text).map_err(syntax)?;
    let mut values = BTreeMap::new();
    for (section, fields) in sections {
        for (field, value) in fields {
            let key = format!("{section}.{field}");
            let line = line_of(value.span());
            if keys::find(&key).is_none() {
                return Err(unknown(line, unknown_key(&key)));
            }
            values.insert(
                key,
                FileValue {
                    value: value.into_inner(),
                    line,
                },
            );
        }
    }
    Ok(FileLayer { values })
}

/// Reads and parses a config file.
pub fn load_file(path: &Path) -> Result<FileLayer, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_file(path, &text)
}

/// The message for a key the table does not hold, with the nearest ones.
fn unknown_key(key: &str) -> String {
    let near = keys::nearest(key);
    if near.is_empty() {
        format!("unknown setting `{key}` (the keys are listed in docs/configuration.md and by `embed-collections config`)")
    } else {
        let near: Vec<String> = near.iter().map(|k| format!("`{k}`")).collect();
        format!("unknown setting `{key}`; did you mean {}?", near.join(", "))
    }
}

/// A setting's value given as text (`--set` or a generic variable): its TOML reading, where a
/// bare word that is no TOML value is a string (`cuda:0,1`, `12GiB`, `/data/in`).
#[derive(Clone, Debug, PartialEq)]
pub struct KeyedText {
    /// The text read as a TOML value (`true`, `50`, `["a", "b"]`, `[{ model = "m" }]`).
    pub value: toml::Value,
    /// The text as given.
    pub raw: String,
}

impl KeyedText {
    /// The value as `T`. A TOML value of the wrong type may still be a valid string (a vector
    /// name such as `2024-01-01`), and a boolean setting takes the environment's usual words
    /// (`1`/`0`, `yes`/`no`, `on`/`off`); otherwise the first reading's error says what was
    /// expected.
    pub fn typed<T: DeserializeOwned>(&self) -> Result<T, String> {
        let first = self
            .value
            .clone()
            .try_into::<T>()
            .map_err(|err| one_line(&err.to_string()));
        let err = match first {
            Ok(value) => return Ok(value),
            Err(err) => err,
        };
        if !self.value.is_str() {
            if let Ok(value) = toml::Value::String(self.raw.clone()).try_into::<T>() {
                return Ok(value);
            }
        }
        let word = match self.raw.trim().to_ascii_lowercase().as_str() {
            "1" | "yes" | "on" => Some(true),
            "0" | "no" | "off" => Some(false),
            _ => None,
        };
        match word.map(|b| toml::Value::Boolean(b).try_into::<T>()) {
            Some(Ok(value)) => Ok(value),
            _ => Err(err),
        }
    }
}

/// A setting given as text, with where it came from: a `--set` assignment or a generic
/// variable.
#[derive(Clone, Debug)]
pub struct KeyedSetting {
    /// `--set` or the variable.
    pub origin: Source,
    /// As written, for errors: `fusion.rrf_k=abc` or `EMBED_COLLECTIONS__FUSION__RRF_K="abc"`.
    pub written: String,
    pub text: KeyedText,
}

impl KeyedSetting {
    /// The value as `T`; a value of the wrong type is an error naming where it was written.
    pub(super) fn typed<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        self.text.typed().map_err(|message| ConfigError::Keyed {
            origin: self.origin.clone(),
            setting: self.written.clone(),
            message,
        })
    }
}

/// Reads `raw` as the value of `key`; an unknown key is refused with the nearest ones. The
/// value's type is checked when the resolver picks the key ([`KeyedText::typed`]).
pub fn keyed_value(key: &str, raw: &str) -> Result<KeyedText, String> {
    if keys::find(key).is_none() {
        return Err(unknown_key(key));
    }
    let value = toml::from_str::<toml::Table>(&format!("value = {raw}"))
        .ok()
        .filter(|table| table.len() == 1)
        .and_then(|mut table| table.remove("value"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    Ok(KeyedText {
        value,
        raw: raw.to_string(),
    })
}

/// A (toml) error message on one line.
pub(super) fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}
