//! Finding collections under an input root.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::{describe_formats, Collection, InputError, InputFormat};

/// Name of the chunk file of a BEIR dataset directory.
pub const BEIR_CORPUS_FILE: &str = "corpus.jsonl";
/// Directory names that never hold chunks (BEIR relevance judgements).
pub const RESERVED_DIRS: &[&str] = &["qrels"];
/// File names that never hold chunks (reserved for query files).
pub const RESERVED_FILES: &[&str] = &["queries.jsonl", "queries.json"];

/// Find the collections under `root` (see the [module docs](super)), sorted
/// by name, keeping only those named in `only` when it is given and not
/// empty. Only files whose extension is one of `formats` are chunk files.
pub fn discover_collections(
    root: &Path,
    only: Option<&[String]>,
    formats: &[InputFormat],
) -> Result<Vec<Collection>, InputError> {
    let meta = match fs::metadata(root) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            return Err(InputError::RootNotFound {
                path: root.to_path_buf(),
            })
        }
        Err(source) => {
            return Err(InputError::Io {
                path: root.to_path_buf(),
                source,
            })
        }
    };

    let collections = if meta.is_dir() {
        discover_in_dir(root, formats)?
    } else {
        vec![file_root_collection(root, formats)?]
    };

    if collections.is_empty() {
        return Err(InputError::NoCollections {
            root: root.to_path_buf(),
            expected: describe_formats(formats),
        });
    }

    match only {
        Some(names) if !names.is_empty() => filter_collections(collections, names),
        _ => Ok(collections),
    }
}

fn file_root_collection(root: &Path, formats: &[InputFormat]) -> Result<Collection, InputError> {
    let unsupported = || InputError::UnsupportedFile {
        path: root.to_path_buf(),
        expected: describe_formats(formats),
    };
    if !is_enabled(root, formats) {
        return Err(unsupported());
    }
    let name = stem(root).ok_or_else(unsupported)?;
    Ok(Collection {
        name,
        files: vec![root.to_path_buf()],
        dir: None,
    })
}

fn discover_in_dir(root: &Path, formats: &[InputFormat]) -> Result<Vec<Collection>, InputError> {
    // name -> (path that gave the name, collection)
    let mut found: BTreeMap<String, (PathBuf, Collection)> = BTreeMap::new();
    for entry in sorted_entries(root)? {
        let Some(name) = entry.name() else {
            tracing::warn!(path = %entry.path.display(), "skipping entry with a non-UTF-8 name");
            continue;
        };
        if is_hidden(name) {
            continue;
        }
        let collection = if entry.is_dir {
            if RESERVED_DIRS.contains(&name) {
                continue;
            }
            let files = collection_files(&entry.path, formats)?;
            if files.is_empty() {
                tracing::warn!(
                    path = %entry.path.display(),
                    "directory holds no chunk files; it is not a collection"
                );
                continue;
            }
            Collection {
                name: name.to_string(),
                files,
                dir: Some(entry.path.clone()),
            }
        } else {
            if RESERVED_FILES.contains(&name) || !is_enabled(&entry.path, formats) {
                continue;
            }
            let Some(stem) = stem(&entry.path) else {
                continue;
            };
            Collection {
                name: stem,
                files: vec![entry.path.clone()],
                dir: None,
            }
        };
        if let Some((first, _)) = found.get(&collection.name) {
            return Err(InputError::CollectionNameClash {
                name: collection.name,
                first: first.clone(),
                second: entry.path,
            });
        }
        found.insert(collection.name.clone(), (entry.path, collection));
    }
    Ok(found
        .into_values()
        .map(|(_, collection)| collection)
        .collect())
}

/// The chunk files of a collection directory, in reading order.
fn collection_files(dir: &Path, formats: &[InputFormat]) -> Result<Vec<PathBuf>, InputError> {
    let corpus = dir.join(BEIR_CORPUS_FILE);
    if formats.contains(&InputFormat::Jsonl) && corpus.is_file() {
        return Ok(vec![corpus]);
    }
    let mut files = Vec::new();
    let mut visited = HashSet::new();
    walk(dir, formats, &mut files, &mut visited)?;
    files.sort();
    Ok(files)
}

fn walk(
    dir: &Path,
    formats: &[InputFormat],
    files: &mut Vec<PathBuf>,
    visited: &mut HashSet<PathBuf>,
) -> Result<(), InputError> {
    // Guard against symlink cycles.
    let canonical = fs::canonicalize(dir).map_err(|source| InputError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    if !visited.insert(canonical) {
        return Ok(());
    }
    for entry in sorted_entries(dir)? {
        let Some(name) = entry.name() else {
            tracing::warn!(path = %entry.path.display(), "skipping entry with a non-UTF-8 name");
            continue;
        };
        if is_hidden(name) {
            continue;
        }
        if entry.is_dir {
            if !RESERVED_DIRS.contains(&name) {
                walk(&entry.path, formats, files, visited)?;
            }
        } else if !RESERVED_FILES.contains(&name) && is_enabled(&entry.path, formats) {
            files.push(entry.path);
        }
    }
    Ok(())
}

struct Entry {
    path: PathBuf,
    is_dir: bool,
}

impl Entry {
    fn name(&self) -> Option<&str> {
        self.path.file_name()?.to_str()
    }
}

/// The entries of `dir` sorted by path; symlinks are followed, broken ones
/// (and other entries that are neither files nor directories) left out.
fn sorted_entries(dir: &Path) -> Result<Vec<Entry>, InputError> {
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| InputError::Io { path, source }
    };
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let path = entry.path();
        let meta = match fs::metadata(&path) {
            Ok(meta) => meta,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                tracing::warn!(path = %path.display(), "skipping broken symlink");
                continue;
            }
            Err(source) => return Err(InputError::Io { path, source }),
        };
        if meta.is_dir() || meta.is_file() {
            entries.push(Entry {
                path,
                is_dir: meta.is_dir(),
            });
        }
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(entries)
}

fn filter_collections(
    collections: Vec<Collection>,
    names: &[String],
) -> Result<Vec<Collection>, InputError> {
    for name in names {
        if !collections.iter().any(|c| &c.name == name) {
            return Err(InputError::UnknownCollection {
                name: name.clone(),
                available: collections.iter().map(|c| c.name.clone()).collect(),
            });
        }
    }
    Ok(collections
        .into_iter()
        .filter(|c| names.contains(&c.name))
        .collect())
}

fn is_hidden(name: &str) -> bool {
    name.starts_with('.')
}

fn is_enabled(path: &Path, formats: &[InputFormat]) -> bool {
    InputFormat::from_path(path).is_some_and(|format| formats.contains(&format))
}

fn stem(path: &Path) -> Option<String> {
    let stem = path.file_stem()?.to_str()?;
    (!stem.is_empty()).then(|| stem.to_string())
}
