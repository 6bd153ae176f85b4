//! The environment layer: every variable the tool reads ([`env_vars`], declared once) and a
//! snapshot of them ([`Environment`]), taken once by the binary. Nothing else reads the
//! process environment — settings, the Hugging Face cache and offline switch, `NO_COLOR`,
//! `RUST_LOG`, the INT8 kernel override — callers pass the snapshot, so tests layer them
//! without touching global state. (The one exception: the CUDA build's library search in
//! `gpu::cuda`, `CUDA_PATH` and the loader's path; `.ci/run` checks there is no other.)

use super::env_vars;
use super::error::ConfigError;
use super::file::{keyed_value, KeyedSetting};
use super::provenance::Source;
use super::values::ValueError;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// A snapshot of the environment variables the resolver may read.
#[derive(Clone, Debug, Default)]
pub struct Environment {
    vars: BTreeMap<String, String>,
    /// Variables the resolver reads whose value is not UTF-8: refused by name when resolving
    /// (no setting can be taken from them, and dropping them silently would run with another).
    pub(super) not_unicode: Vec<String>,
}

impl Environment {
    /// The tool's own variables plus the ones that locate the user cache. Any other variable
    /// may hold any bytes (`std::env::vars` would panic on a non-UTF-8 one anywhere in the
    /// environment); a variable with a non-UTF-8 name cannot be one of ours.
    pub fn from_process() -> Self {
        let mut not_unicode = Vec::new();
        let pairs: Vec<(String, String)> = std::env::vars_os()
            .filter_map(|(key, value)| {
                let key = key.into_string().ok()?;
                match value.into_string() {
                    Ok(value) => Some((key, value)),
                    Err(_) => {
                        if Self::reads(&key) {
                            not_unicode.push(key);
                        }
                        None
                    }
                }
            })
            .collect();
        Self {
            not_unicode,
            ..Self::from_pairs(pairs)
        }
    }

    /// Whether the resolver reads variable `key`.
    fn reads(key: &str) -> bool {
        key.starts_with(env_vars::PREFIX)
            || key == "HOME"
            || key == "XDG_CACHE_HOME"
            || crate::shard::scheduler_vars::ALL.contains(&key)
    }

    /// Whether the snapshot keeps variable `key`: the resolver's, and other tools' that the
    /// run honours ([`env_vars::OTHER_TOOLS`]; one of those that is not UTF-8 is left out, as
    /// those tools would ignore it, rather than refused).
    fn keeps(key: &str) -> bool {
        Self::reads(key) || env_vars::OTHER_TOOLS.contains(&key)
    }

    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let vars = pairs
            .into_iter()
            .map(|(key, value)| (key.into(), value.into()))
            .filter(|(key, _)| Self::keeps(key))
            .collect();
        Self {
            vars,
            not_unicode: Vec::new(),
        }
    }

    /// The raw value of a variable, if set.
    pub fn raw_value(&self, var: &str) -> Option<&str> {
        self.vars.get(var).map(String::as_str)
    }

    pub(super) fn raw(&self, var: &'static str) -> Option<&str> {
        self.vars
            .get(var)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    pub(super) fn parsed<T, F>(
        &self,
        var: &'static str,
        parse: F,
    ) -> Result<Option<(&'static str, T)>, ConfigError>
    where
        F: FnOnce(&str) -> Result<T, ValueError>,
    {
        match self.raw(var) {
            None => Ok(None),
            Some(value) => parse(value)
                .map(|parsed| Some((var, parsed)))
                .map_err(|err| ConfigError::Env {
                    var,
                    value: value.to_string(),
                    message: err.0,
                }),
        }
    }

    pub(super) fn value<T: FromStr<Err = ValueError>>(
        &self,
        var: &'static str,
    ) -> Result<Option<(&'static str, T)>, ConfigError> {
        self.parsed(var, str::parse)
    }

    pub(super) fn bool(
        &self,
        var: &'static str,
    ) -> Result<Option<(&'static str, bool)>, ConfigError> {
        self.parsed(var, |value| {
            match value.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Ok(true),
                "0" | "false" | "no" | "off" => Ok(false),
                _ => Err(ValueError(
                    "expected 1/0, true/false, yes/no or on/off".to_string(),
                )),
            }
        })
    }

    pub(super) fn path(&self, var: &'static str) -> Option<(&'static str, PathBuf)> {
        self.raw(var).map(|value| (var, PathBuf::from(value)))
    }

    pub(super) fn list(&self, var: &'static str) -> Option<(&'static str, Vec<String>)> {
        self.raw(var).map(|value| (var, split_list(value)))
    }

    pub(super) fn unknown_vars(&self) -> Option<String> {
        self.vars
            .keys()
            .find(|key| {
                key.starts_with(env_vars::PREFIX)
                    && !key.starts_with(env_vars::KEYED_PREFIX)
                    && !env_vars::ALL.iter().any(|(known, _)| known == key)
                    && !env_vars::SCRIPTS.contains(&key.as_str())
            })
            .cloned()
    }

    /// The generic variables, `EMBED_COLLECTIONS__SECTION__KEY=value`, each checked like the
    /// file's key: setting key → (variable, value).
    pub(super) fn keyed(&self) -> Result<BTreeMap<String, KeyedSetting>, ConfigError> {
        let mut keyed = BTreeMap::new();
        for (var, raw) in &self.vars {
            let Some(rest) = var.strip_prefix(env_vars::KEYED_PREFIX) else {
                continue;
            };
            let error = |message: String| ConfigError::Keyed {
                origin: Source::Env(var.clone()),
                setting: format!("{var}={raw:?}"),
                message,
            };
            let key = match rest.split("__").collect::<Vec<_>>()[..] {
                [section, key] if !section.is_empty() && !key.is_empty() => {
                    format!(
                        "{}.{}",
                        section.to_ascii_lowercase(),
                        key.to_ascii_lowercase()
                    )
                }
                _ => {
                    return Err(error(format!(
                        "expected {}SECTION__KEY (e.g. {}RERANK__CANDIDATES)",
                        env_vars::KEYED_PREFIX,
                        env_vars::KEYED_PREFIX
                    )))
                }
            };
            let text = keyed_value(&key, raw).map_err(error)?;
            keyed.insert(
                key,
                KeyedSetting {
                    origin: Source::Env(var.clone()),
                    written: format!("{var}={raw:?}"),
                    text,
                },
            );
        }
        Ok(keyed)
    }

    /// The Hugging Face hub cache models are looked up in: `HF_HUB_CACHE`, else
    /// `$HF_HOME/hub`, else `~/.cache/huggingface/hub` (the hub library's own rule).
    pub fn hf_hub_cache(&self) -> PathBuf {
        let set = |var: &str| self.vars.get(var).filter(|v| !v.is_empty());
        match (set("HF_HUB_CACHE"), set("HF_HOME"), set("HOME")) {
            (Some(cache), _, _) => PathBuf::from(cache),
            (None, Some(home), _) => Path::new(home).join("hub"),
            (None, None, Some(home)) => Path::new(home).join(".cache/huggingface/hub"),
            (None, None, None) => PathBuf::from(".cache/huggingface/hub"),
        }
    }

    /// `HF_HUB_OFFLINE` set to a true value (`1`, `true`, `yes`, `on`): never ask the hub.
    pub fn hf_hub_offline(&self) -> bool {
        self.vars.get("HF_HUB_OFFLINE").is_some_and(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            )
        })
    }

    /// `NO_COLOR` present (whatever its value): no colour in the logs.
    pub fn no_color(&self) -> bool {
        self.vars.contains_key("NO_COLOR")
    }

    /// `RUST_LOG`, the log filter that overrides `-v`/`-q` (telemetry::logging).
    pub fn rust_log(&self) -> Option<&str> {
        self.raw_value("RUST_LOG").filter(|v| !v.is_empty())
    }

    /// `EMBED_COLLECTIONS_INT8_KERNEL=portable`: the INT8 products' fallback kernel.
    pub fn int8_kernel_portable(&self) -> bool {
        self.raw_value(env_vars::INT8_KERNEL) == Some("portable")
    }

    /// A scheduler's variable (`--shard auto` reads them).
    pub fn scheduler_var(&self, name: &str) -> Option<String> {
        self.vars.get(name).cloned()
    }

    /// The default models directory: `$XDG_CACHE_HOME/embed-collections/models`, falling back to
    /// `~/.cache`; `scripts/fetch-models.sh` uses the same rule.
    pub fn default_models_dir(&self) -> PathBuf {
        let cache = match (self.vars.get("XDG_CACHE_HOME"), self.vars.get("HOME")) {
            (Some(xdg), _) if !xdg.is_empty() => PathBuf::from(xdg),
            (_, Some(home)) if !home.is_empty() => Path::new(home).join(".cache"),
            _ => PathBuf::from(".cache"),
        };
        cache.join("embed-collections").join("models")
    }
}

/// Splits a comma-separated list, dropping empty items.
pub fn split_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_string)
        .collect()
}
