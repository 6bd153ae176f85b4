//! `embed-collections config`: the effective settings as a TOML file, each value's origin in a
//! comment. Saved as a file and passed back with `--config`, it reproduces the run's settings
//! (paths are written absolute, so the file works from any directory).

use super::keys::SETTINGS;
use super::paths::normalised;
use super::RunConfig;
use std::fmt::Write;
use std::path::Path;

/// The effective settings of `config` as TOML, in [`SETTINGS`] order.
pub fn effective_toml(config: &RunConfig) -> Result<String, serde_json::Error> {
    let json = serde_json::to_value(config)?;
    let mut out = format!(
        "# Effective settings of embed-collections {}: each value, then where it came from\n\
         # (default, file:PATH, env:VARIABLE, flag:--FLAG). Passed back with --config, this\n\
         # file gives the same settings.\n",
        env!("CARGO_PKG_VERSION")
    );
    let mut section = "";
    for setting in SETTINGS {
        let (this_section, field) = setting.split();
        if this_section != section {
            section = this_section;
            let _ = write!(out, "\n[{section}]\n");
            if section == "shard" {
                if let Some(spec) = &config.shard.spec {
                    let origin = origin(config, "shard.spec");
                    let _ = writeln!(
                        out,
                        "# this process: shard {spec} ({origin}; given by --shard or \
                         EMBED_COLLECTIONS_SHARD, never by the file)"
                    );
                }
            }
        }
        let origin = origin(config, setting.key);
        if setting.secret && !json[section][field].is_null() {
            let _ = writeln!(out, "# {field}: set, never printed  # {origin}");
            continue;
        }
        match to_toml(&json[section][field]) {
            None => {
                let default = setting.default.replace('`', "");
                let _ = writeln!(out, "# {field}: not set, so {default}  # {origin}");
            }
            Some(value) => {
                let value = match (&value, setting.path) {
                    (toml::Value::String(path), true) => toml::Value::String(
                        normalised(Path::new(path))
                            .map_or_else(|| path.clone(), |p| p.display().to_string()),
                    ),
                    _ => value,
                };
                let _ = writeln!(out, "{field} = {value}  # {origin}");
            }
        }
    }
    Ok(out)
}

fn origin(config: &RunConfig, key: &str) -> String {
    config
        .provenance
        .get(key)
        .map_or_else(|| "default".to_string(), ToString::to_string)
}

/// A JSON value as TOML; `None` for null (an unset optional setting). Nulls inside tables
/// (a model's deferred overrides) are left out.
fn to_toml(value: &serde_json::Value) -> Option<toml::Value> {
    use serde_json::Value as Json;
    Some(match value {
        Json::Null => return None,
        Json::Bool(b) => toml::Value::Boolean(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => toml::Value::Integer(i),
            None => toml::Value::Float(n.as_f64()?),
        },
        Json::String(s) => toml::Value::String(s.clone()),
        Json::Array(items) => toml::Value::Array(items.iter().filter_map(to_toml).collect()),
        Json::Object(fields) => toml::Value::Table(
            fields
                .iter()
                .filter_map(|(k, v)| to_toml(v).map(|v| (k.clone(), v)))
                .collect(),
        ),
    })
}
