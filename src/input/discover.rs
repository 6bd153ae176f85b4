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
///
/// With `only`, entries of other names are not looked into: an unreadable directory, a
/// symlink loop or a badly named file elsewhere under the root does not stop the run of the
/// named collections (each is logged as a warning). Without it, every entry must be readable.
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
    let only = only.filter(|names| !names.is_empty());

    let (collections, others) = if meta.is_dir() {
        discover_in_dir(root, formats, only)?
    } else {
        (vec![file_root_collection(root, formats)?], Vec::new())
    };

    if collections.is_empty() && others.is_empty() {
        return Err(InputError::NoCollections {
            root: root.to_path_buf(),
            expected: describe_formats(formats),
        });
    }

    match only {
        Some(names) => filter_collections(collections, others, names),
        None => Ok(collections),
    }
}

/// Checks that `name` can be a collection: its output goes to `<output.dir>/<name>/`, its
/// name into every log line and metric label.
pub fn validate_collection_name(name: &str, path: &Path) -> Result<(), InputError> {
    let reason = if name.is_empty() {
        Some("the name is empty")
    } else if name == "." || name == ".." {
        Some("it would name a directory outside the collection's own")
    } else if name.contains(['/', '\\']) {
        Some("it holds a path separator")
    } else if name.chars().any(char::is_control) {
        Some("it holds a control character (a newline would split log lines)")
    } else if name.starts_with('.') {
        Some("names starting with '.' are the run's own (.work, the lock file)")
    } else if crate::layout::TOP_LEVEL_FILES.contains(&name) {
        Some("the run writes a file of that name in the output directory")
    } else if crate::layout::parse_shard_dir_name(name).is_some() {
        Some("sharded runs write their output to directories of that name")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(InputError::BadCollectionName {
            path: path.to_path_buf(),
            name: name.to_string(),
            reason,
        }),
        None => Ok(()),
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
    validate_collection_name(&name, root)?;
    Ok(Collection {
        name,
        files: vec![root.to_path_buf()],
        dir: None,
    })
}

/// The collections under `root` (those named in `only`, when given) and the names of the
/// entries not looked into (for the "available" list of an unknown name).
fn discover_in_dir(
    root: &Path,
    formats: &[InputFormat],
    only: Option<&[String]>,
) -> Result<(Vec<Collection>, Vec<String>), InputError> {
    let selected = |name: &str| only.is_none_or(|names| names.iter().any(|n| n == name));
    // name -> (path that gave the name, collection)
    let mut found: BTreeMap<String, (PathBuf, Collection)> = BTreeMap::new();
    let mut others = Vec::new();
    for entry in sorted_entries(root)? {
        let entry = match entry {
            Ok(entry) => entry,
            Err((path, err)) => {
                // Which name it would have had depends on whether it is a file or a
                // directory, which could not be told: either one selected makes it an error.
                let names = [file_name(&path), stem(&path)];
                if names.iter().flatten().any(|name| selected(name)) {
                    return Err(err);
                }
                tracing::warn!(path = %path.display(), error = %err, "skipping an unreadable entry (not a selected collection)");
                continue;
            }
        };
        let Some(name) = entry.name() else {
            tracing::warn!(path = ?entry.path, "skipping entry with a non-UTF-8 name");
            continue;
        };
        if is_hidden(name) {
            continue;
        }
        let collection_name = if entry.is_dir {
            if RESERVED_DIRS.contains(&name) {
                continue;
            }
            name.to_string()
        } else {
            if RESERVED_FILES.contains(&name) || !is_enabled(&entry.path, formats) {
                continue;
            }
            let Some(stem) = stem(&entry.path) else {
                continue;
            };
            stem
        };
        if !selected(&collection_name) {
            others.push(collection_name);
            continue;
        }
        validate_collection_name(&collection_name, &entry.path)?;
        let collection = if entry.is_dir {
            let files = collection_files(&entry.path, formats)?;
            if files.is_empty() {
                tracing::warn!(
                    path = %entry.path.display(),
                    "directory holds no chunk files; it is not a collection"
                );
                continue;
            }
            Collection {
                name: collection_name,
                files,
                dir: Some(entry.path.clone()),
            }
        } else {
            Collection {
                name: collection_name,
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
    let collections = found
        .into_values()
        .map(|(_, collection)| collection)
        .collect();
    Ok((collections, others))
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
        let entry = entry.map_err(|(_, err)| err)?;
        let Some(name) = entry.name() else {
            tracing::warn!(path = ?entry.path, "skipping entry with a non-UTF-8 name");
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
/// (and other entries that are neither files nor directories) left out. An entry that
/// cannot be examined (a symlink loop) is its own error, with its path, so the caller decides
/// whether it matters; failing to list `dir` itself is the outer error (for a collection
/// directory, only once it is selected and walked).
#[allow(clippy::type_complexity)]
fn sorted_entries(dir: &Path) -> Result<Vec<Result<Entry, (PathBuf, InputError)>>, InputError> {
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
            Err(source) => {
                let err = InputError::Io {
                    path: path.clone(),
                    source,
                };
                entries.push(Err((path, err)));
                continue;
            }
        };
        if meta.is_dir() || meta.is_file() {
            entries.push(Ok(Entry {
                path,
                is_dir: meta.is_dir(),
            }));
        }
    }
    entries.sort_by(|a, b| entry_path(a).cmp(entry_path(b)));
    Ok(entries)
}

fn entry_path(entry: &Result<Entry, (PathBuf, InputError)>) -> &Path {
    match entry {
        Ok(entry) => &entry.path,
        Err((path, _)) => path,
    }
}

fn file_name(path: &Path) -> Option<String> {
    path.file_name()?.to_str().map(str::to_string)
}

fn filter_collections(
    collections: Vec<Collection>,
    others: Vec<String>,
    names: &[String],
) -> Result<Vec<Collection>, InputError> {
    for name in names {
        if !collections.iter().any(|c| &c.name == name) {
            let mut available: Vec<String> = collections
                .iter()
                .map(|c| c.name.clone())
                .chain(others)
                .collect();
            available.sort();
            available.dedup();
            return Err(InputError::UnknownCollection {
                name: name.clone(),
                available,
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
