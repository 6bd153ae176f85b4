//! `embed-collections convert OUTPUT_DIR --to parquet|jsonl`: a finished run's points and
//! query vectors in the other format, without loading a model.
//!
//! Every source file is checked against the sha256 the manifest records before anything is
//! written (an output changed after the run is refused, naming the file); the new files are
//! written as a run writes them (the Parquet parts hold `input.window_chunks` points each, from
//! the same lines, with the layout made from the manifest's `vectors`, `models` and `output`
//! settings), so they equal the files a run that chose that format writes. The source files
//! stay; the manifest gains the new files (in `files`, and in each collection's `outputs`).

use super::state::{OutputLock, StateError};
use crate::config::{OutputFormat, ParquetDense};
use crate::export::manifest::FileRecord;
use crate::export::parquet::{
    self, part_name, Layout, ParquetError, RecordKind, Writer, POINTS_DIR, QUERY_VECTORS_PARQUET,
};
use crate::export::{AtomicFile, MANIFEST_FILE, POINTS_FILE, QUERY_VECTORS_FILE};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

/// Why an output directory could not be converted.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("cannot lock {}", .0.display())]
    Busy(PathBuf, #[source] StateError),
    #[error("cannot read {}: {message}", .path.display())]
    Unreadable { path: PathBuf, message: String },
    #[error("{path} is not what the manifest records (sha256 {found}, manifest {expected}): it changed after the run")]
    Changed {
        path: String,
        found: String,
        expected: String,
    },
    #[error("{0}")]
    Unusable(String),
    #[error(transparent)]
    Parquet(#[from] ParquetError),
    #[error("cannot write {}", .path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What one collection's conversion wrote.
#[derive(Debug)]
pub struct Converted {
    pub collection: String,
    /// The files written, relative to the output directory.
    pub files: Vec<String>,
    pub points: u64,
}

/// Converts every finished collection of `output_dir` to `to`; returns what each wrote.
pub fn convert(output_dir: &Path, to: OutputFormat) -> Result<Vec<Converted>, ConvertError> {
    let _lock = OutputLock::acquire(output_dir)
        .map_err(|err| ConvertError::Busy(output_dir.to_path_buf(), err))?;
    let manifest_path = output_dir.join(MANIFEST_FILE);
    let unreadable = |path: &Path, message: String| ConvertError::Unreadable {
        path: path.to_path_buf(),
        message,
    };
    let bytes = std::fs::read(&manifest_path).map_err(|err| {
        unreadable(
            &manifest_path,
            format!("{err} (is this a run's output directory?)"),
        )
    })?;
    let mut manifest: Value = serde_json::from_slice(&bytes)
        .map_err(|err| unreadable(&manifest_path, err.to_string()))?;
    let status = manifest["status"].as_str().unwrap_or_default();
    if !matches!(status, "ok" | "partial") {
        return Err(ConvertError::Unusable(format!(
            "the run in {} is {status:?}: convert a finished run (status ok or partial)",
            output_dir.display()
        )));
    }
    let recorded: BTreeMap<String, String> = manifest["files"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| {
            Some((
                f["path"].as_str()?.to_string(),
                f["sha256"].as_str()?.to_string(),
            ))
        })
        .collect();
    let config = &manifest["config"];
    let dense_column = match config["output"]["parquet_dense"].as_str() {
        Some(text) => text.parse().map_err(ConvertError::Unusable)?,
        None => ParquetDense::default(),
    };
    let template = Layout::from_manifest(
        "",
        &manifest["vectors"],
        &manifest["models"],
        config["output"]["include_text"].as_bool().unwrap_or(false),
        dense_column,
    )?;
    let rows_per_part = config["input"]["window_chunks"]
        .as_u64()
        .and_then(|n| usize::try_from(n).ok())
        .filter(|n| *n > 0)
        .ok_or_else(|| ConvertError::Unusable("the manifest has no input.window_chunks".into()))?;

    let verify = |relative: &str| -> Result<PathBuf, ConvertError> {
        let path = output_dir.join(relative);
        let expected = recorded
            .get(relative)
            .ok_or_else(|| ConvertError::Unusable(format!("the manifest records no {relative}")))?;
        let found =
            crate::files::sha256_file(&path).map_err(|err| unreadable(&path, err.to_string()))?;
        if &found != expected {
            return Err(ConvertError::Changed {
                path: relative.to_string(),
                found,
                expected: expected.clone(),
            });
        }
        Ok(path)
    };

    let mut converted = Vec::new();
    let collections: Vec<String> = manifest["collections"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| matches!(c["status"].as_str(), Some("ok" | "partial")))
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .collect();
    for name in collections {
        let layout = Layout {
            collection: name.clone(),
            ..template.clone()
        };
        let out_dir = crate::export::collection_dir(output_dir, &name).map_err(|source| {
            ConvertError::Write {
                path: output_dir.join(&name),
                source,
            }
        })?;
        let parts_prefix = format!("{name}/{POINTS_DIR}/");
        let mut parts: Vec<String> = recorded
            .keys()
            .filter(|p| p.starts_with(&parts_prefix))
            .cloned()
            .collect();
        parts.sort();
        let points_jsonl = format!("{name}/{POINTS_FILE}");
        let queries_jsonl = format!("{name}/{QUERY_VECTORS_FILE}");
        let queries_parquet = format!("{name}/{QUERY_VECTORS_PARQUET}");
        let mut written = Vec::new();
        let points = match to {
            OutputFormat::Parquet => {
                if !parts.is_empty() || !recorded.contains_key(&points_jsonl) {
                    continue;
                }
                let source = verify(&points_jsonl)?;
                let queries = match recorded.contains_key(&queries_jsonl) {
                    true => Some(verify(&queries_jsonl)?),
                    false => None,
                };
                let (names, rows) =
                    write_parts(&source, &layout, &out_dir.join(POINTS_DIR), rows_per_part)?;
                written.extend(names.iter().map(|n| format!("{parts_prefix}{n}")));
                if let Some(queries) = queries {
                    let lines = std::fs::read(&queries)
                        .map_err(|err| unreadable(&queries, err.to_string()))?;
                    Writer::new(RecordKind::Query, layout.clone())?.write(
                        &output_dir.join(&queries_parquet),
                        lines
                            .split_inclusive(|&b| b == b'\n')
                            .map(Ok::<_, std::io::Error>),
                        1,
                    )?;
                    written.push(queries_parquet);
                }
                rows
            }
            OutputFormat::Jsonl => {
                if recorded.contains_key(&points_jsonl) || parts.is_empty() {
                    continue;
                }
                let sources = parts
                    .iter()
                    .map(|p| verify(p))
                    .collect::<Result<Vec<_>, _>>()?;
                let queries = match recorded.contains_key(&queries_parquet) {
                    true => Some(verify(&queries_parquet)?),
                    false => None,
                };
                let rows = lines_of(
                    RecordKind::Point,
                    &layout,
                    &sources,
                    &output_dir.join(&points_jsonl),
                )?;
                written.push(points_jsonl);
                if let Some(queries) = queries {
                    lines_of(
                        RecordKind::Query,
                        &layout,
                        &[queries],
                        &output_dir.join(&queries_jsonl),
                    )?;
                    written.push(queries_jsonl);
                }
                rows
            }
        };
        converted.push(Converted {
            collection: name,
            files: written,
            points,
        });
    }
    record(output_dir, &manifest_path, &mut manifest, &converted)?;
    Ok(converted)
}

/// Writes the lines of `source` as Parquet parts of `rows_per_part` rows in `dir` (one empty
/// part for an empty file), removing any other part there; returns their names and the rows.
fn write_parts(
    source: &Path,
    layout: &Layout,
    dir: &Path,
    rows_per_part: usize,
) -> Result<(Vec<String>, u64), ConvertError> {
    let write_error = |path: &Path, source| ConvertError::Write {
        path: path.to_path_buf(),
        source,
    };
    crate::files::real_dir(dir).map_err(|err| write_error(dir, err))?;
    let writer = Writer::new(RecordKind::Point, layout.clone())?;
    let file = std::fs::File::open(source).map_err(|err| ConvertError::Unreadable {
        path: source.to_path_buf(),
        message: err.to_string(),
    })?;
    let mut lines = BufReader::with_capacity(1 << 20, file)
        .split(b'\n')
        .peekable();
    let mut names = Vec::new();
    let mut rows = 0u64;
    while names.is_empty() || lines.peek().is_some() {
        let name = part_name(names.len());
        let part = lines.by_ref().take(rows_per_part);
        let first = rows as usize + 1;
        let written = writer.write(&dir.join(&name), part, first)?;
        rows += written.rows;
        names.push(name);
    }
    for (index, path) in parquet::parts_in(dir).map_err(|err| write_error(dir, err))? {
        if index >= names.len() {
            std::fs::remove_file(&path).map_err(|err| write_error(&path, err))?;
        }
    }
    Ok((names, rows))
}

/// Writes the records of the Parquet files `sources`, in order, as JSONL to `target`
/// (atomically); returns the rows.
fn lines_of(
    kind: RecordKind,
    layout: &Layout,
    sources: &[PathBuf],
    target: &Path,
) -> Result<u64, ConvertError> {
    let write_error = |source| ConvertError::Write {
        path: target.to_path_buf(),
        source,
    };
    let mut file = AtomicFile::create(target).map_err(write_error)?;
    let mut rows = 0;
    for source in sources {
        rows += parquet::read_lines(kind, layout, source, |line| file.write_all(line))?;
    }
    file.commit().map_err(write_error)?;
    Ok(rows)
}

/// Adds the converted files to the manifest (`files`, each collection's `outputs`) and
/// replaces it atomically.
fn record(
    output_dir: &Path,
    manifest_path: &Path,
    manifest: &mut Value,
    converted: &[Converted],
) -> Result<(), ConvertError> {
    let write_error = |path: &Path, source| ConvertError::Write {
        path: path.to_path_buf(),
        source,
    };
    for collection in converted {
        for relative in &collection.files {
            let path = output_dir.join(relative);
            let record = FileRecord::of(&path, relative.clone(), true)
                .map_err(|err| write_error(&path, err))?;
            let record = serde_json::to_value(record)
                .map_err(|err| write_error(&path, std::io::Error::other(err)))?;
            if let Some(files) = manifest["files"].as_array_mut() {
                files.retain(|f| f["path"].as_str() != Some(relative));
                files.push(record);
            }
        }
        if let Some(report) = manifest["collections"]
            .as_array_mut()
            .into_iter()
            .flatten()
            .find(|c| c["name"].as_str() == Some(&collection.collection))
        {
            if let Some(outputs) = report["outputs"].as_array_mut() {
                for relative in &collection.files {
                    if !outputs.iter().any(|o| o.as_str() == Some(relative)) {
                        outputs.push(Value::String(relative.clone()));
                    }
                }
            }
        }
    }
    let mut bytes = serde_json::to_vec_pretty(manifest)
        .map_err(|err| write_error(manifest_path, std::io::Error::other(err)))?;
    bytes.push(b'\n');
    crate::export::write_atomic(manifest_path, &bytes)
        .map_err(|err| write_error(manifest_path, err))
}

impl crate::exit::Classified for ConvertError {
    fn class(&self) -> crate::exit::ErrorClass {
        match self {
            Self::Busy(..) | Self::Write { .. } => crate::exit::ErrorClass::Failure,
            _ => crate::exit::ErrorClass::Input,
        }
    }
}
