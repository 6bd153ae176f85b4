//! What a run reads and writes, found before any work: the collections it embeds
//! ([`discover`]: those under `input.root` minus any inside the output directory), and its
//! input and output paths for the overlap check ([`config_inputs`], [`run_outputs`]). Shared by
//! the run and `check`, which must agree on both.

use super::overlap::{InputPath, OutputKind, OutputPath};
use super::state;
use crate::config::RunConfig;
use crate::input::{self, Collection, InputError};
use std::path::{Path, PathBuf};
use tracing::warn;

/// A run's outputs: its output directory (and what it writes there) and its metrics file.
pub fn run_outputs(output_dir: &Path, metrics: PathBuf) -> Vec<OutputPath> {
    vec![
        OutputPath {
            role: "directory (output.dir)".to_string(),
            path: output_dir.to_path_buf(),
            kind: OutputKind::Dir(state::run_writes),
        },
        OutputPath {
            role: "metrics file".to_string(),
            path: metrics,
            kind: OutputKind::File,
        },
    ]
}

/// A run's inputs: the config file, the query and qrels files, the models directory and,
/// with `collections`, each collection discovered now (its directory, or its file; discovery
/// runs again, with its errors reported, after the lock).
pub fn config_inputs(config: &RunConfig, collections: bool) -> Vec<InputPath> {
    let mut inputs = Vec::new();
    if let Some(path) = &config.config_file {
        inputs.push(InputPath::file("config file", path));
    }
    if let Some(path) = &config.rerank.queries {
        inputs.push(InputPath::file("query file (rerank.queries)", path));
    }
    if let Some(path) = &config.eval.qrels {
        inputs.push(InputPath::file("qrels file (eval.qrels)", path));
    }
    inputs.push(InputPath::dir(
        "models directory (models.dir)",
        &config.models.dir,
    ));
    if collections {
        let found = input::discover_collections(
            &config.input.root,
            config.input.collections.as_deref(),
            &config.input.formats,
        )
        .unwrap_or_default();
        // A collection inside the output directory is skipped by the run (an earlier run's
        // outputs under the input root), so it is no input to protect either.
        let output_dir = config.output.dir.canonicalize().ok();
        let found = found.iter().filter(|collection| {
            output_dir
                .as_deref()
                .is_none_or(|dir| !inside_output_dir(collection, dir))
        });
        for collection in found {
            let role = format!("collection {}", collection.name);
            match &collection.dir {
                Some(dir) => inputs.push(InputPath::dir(role, dir)),
                None => inputs.extend(collection.files.iter().map(|f| InputPath::file(&role, f))),
            }
        }
    }
    inputs
}

/// The collections a run (or `check`) works on: those discovered under `input.root`, minus any
/// inside the output directory — with the output under the input root, a second run would
/// otherwise read the first run's points and manifest as chunks.
pub fn discover(config: &RunConfig) -> Result<Vec<Collection>, InputError> {
    let collections = input::discover_collections(
        &config.input.root,
        config.input.collections.as_deref(),
        &config.input.formats,
    )?;
    Ok(without_output_dir(collections, &config.output.dir))
}

/// Whether every file of `collection` lies inside `output_dir` (canonical).
fn inside_output_dir(collection: &Collection, output_dir: &Path) -> bool {
    !collection.files.is_empty()
        && collection.files.iter().all(|file| {
            file.canonicalize()
                .map(|file| file.starts_with(output_dir))
                .unwrap_or(false)
        })
}

fn without_output_dir(collections: Vec<Collection>, output_dir: &Path) -> Vec<Collection> {
    let Ok(output_dir) = output_dir.canonicalize() else {
        return collections; // not created yet, so nothing in it can have been discovered
    };
    collections
        .into_iter()
        .filter(|collection| {
            let inside = inside_output_dir(collection, &output_dir);
            if inside {
                warn!(collection = %collection.name, "skipping a collection inside the output directory");
            }
            !inside
        })
        .collect()
}
