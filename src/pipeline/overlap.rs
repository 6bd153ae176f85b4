//! Before any work, every output path is checked against every input path: an output that is
//! the same file as an input (`embed-queries --queries q.jsonl --output q.jsonl` would replace
//! the query file with vectors), or an output directory inside an input's directory (a
//! collection's, a model's, a shard's), is a configuration error naming both. A merge's output
//! that holds one of its shards is refused the same way, before any lock is taken.
//!
//! Paths are compared after resolving symbolic links and `..` (what exists of them), and files
//! also by device and inode, so a hard link or a second spelling of the same file is caught.

use std::path::{Path, PathBuf};

/// What an output path is.
#[derive(Clone, Copy, Debug)]
pub enum OutputKind {
    /// One file.
    File,
    /// A directory the tool writes into; the predicate says which paths below it (relative)
    /// it writes or replaces.
    Dir(fn(&Path) -> bool),
}

/// A path the run writes.
#[derive(Clone, Debug)]
pub struct OutputPath {
    /// What it is to the user (`output.dir`, `--output`, `telemetry.metrics_file`).
    pub role: String,
    pub path: PathBuf,
    pub kind: OutputKind,
}

/// A path the run reads.
#[derive(Clone, Debug)]
pub struct InputPath {
    /// What it is to the user (`query file`, `collection docs`, `shard 0/2`).
    pub role: String,
    pub path: PathBuf,
    /// A directory (its files are all inputs) rather than one file.
    pub dir: bool,
    /// Whether an output directory holding this input is refused too (a merge's shards:
    /// a merge into a directory that holds one rewrites the shard's files); otherwise such an
    /// input is only refused when it sits where the run writes.
    pub refuse_containing: bool,
}

impl InputPath {
    pub fn file(role: impl Into<String>, path: &Path) -> Self {
        Self {
            role: role.into(),
            path: path.to_path_buf(),
            dir: false,
            refuse_containing: false,
        }
    }

    pub fn dir(role: impl Into<String>, path: &Path) -> Self {
        Self {
            role: role.into(),
            path: path.to_path_buf(),
            dir: true,
            refuse_containing: false,
        }
    }
}

/// How an output would meet an input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Relation {
    /// The output is the input (or would replace it).
    Same,
    /// The output directory or file lies inside the input directory.
    Inside,
    /// The output directory holds the input.
    Contains,
}

/// An output that would overwrite, or be written into, an input.
#[derive(Debug, thiserror::Error)]
#[error(
    "the output {output_role} {} {} the input {input_role} {}; choose an output outside the \
     input",
    output.display(),
    match relation {
        Relation::Same => "is the same file as",
        Relation::Inside => "is inside",
        Relation::Contains => "contains",
    },
    input.display()
)]
pub struct Overlap {
    pub output_role: String,
    pub output: PathBuf,
    pub relation: Relation,
    pub input_role: String,
    pub input: PathBuf,
}

/// Every way an output meets an input (empty: none).
pub fn overlaps(outputs: &[OutputPath], inputs: &[InputPath]) -> Vec<Overlap> {
    let mut found = Vec::new();
    for output in outputs {
        let out = resolved(&output.path);
        for input in inputs {
            let inp = resolved(&input.path);
            let relation = match (output.kind, input.dir) {
                (OutputKind::File, false) => {
                    same_file(&output.path, &input.path, &out, &inp).then_some(Relation::Same)
                }
                (OutputKind::File, true) => {
                    (out == inp || out.starts_with(&inp)).then_some(Relation::Inside)
                }
                (OutputKind::Dir(writes), false) => {
                    if same_file(&output.path, &input.path, &out, &inp) {
                        Some(Relation::Same)
                    } else {
                        match inp.strip_prefix(&out) {
                            Ok(relative) if writes(relative) || input.refuse_containing => {
                                Some(Relation::Contains)
                            }
                            _ => None,
                        }
                    }
                }
                (OutputKind::Dir(_), true) => {
                    if out == inp {
                        Some(Relation::Same)
                    } else if out.starts_with(&inp) {
                        Some(Relation::Inside)
                    } else if input.refuse_containing && inp.starts_with(&out) {
                        Some(Relation::Contains)
                    } else {
                        None
                    }
                }
            };
            if let Some(relation) = relation {
                found.push(Overlap {
                    output_role: output.role.clone(),
                    output: output.path.clone(),
                    relation,
                    input_role: input.role.clone(),
                    input: input.path.clone(),
                });
            }
        }
    }
    found
}

/// `path` with symbolic links and `..` resolved as far as it exists, the rest appended
/// lexically (an output that does not exist yet).
fn resolved(path: &Path) -> PathBuf {
    let absolute = crate::config::paths::normalised(path).unwrap_or_else(|| path.to_path_buf());
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(canonical) = existing.canonicalize() {
            let mut out = canonical;
            for part in rest.iter().rev() {
                out.push(part);
            }
            return out;
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => return absolute,
        }
    }
}

/// Whether two paths name one file: the same resolved path, or (both existing) the same device
/// and inode.
fn same_file(a: &Path, b: &Path, resolved_a: &Path, resolved_b: &Path) -> bool {
    if resolved_a == resolved_b {
        return true;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let (Ok(x), Ok(y)) = (std::fs::metadata(a), std::fs::metadata(b)) {
            return x.dev() == y.dev() && x.ino() == y.ino();
        }
    }
    let _ = (a, b);
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writes_nothing(_: &Path) -> bool {
        false
    }

    fn writes_manifest(relative: &Path) -> bool {
        relative == Path::new("manifest.json")
    }

    #[test]
    fn the_same_file_under_another_spelling_or_a_hard_link_is_found() {
        let tmp = tempfile::tempdir().unwrap();
        let queries = tmp.path().join("q.jsonl");
        std::fs::write(&queries, "{}\n").unwrap();
        std::fs::create_dir(tmp.path().join("sub")).unwrap();
        let inputs = [InputPath::file("query file", &queries)];
        let output = |path: PathBuf| OutputPath {
            role: "--output".to_string(),
            path,
            kind: OutputKind::File,
        };
        let found = overlaps(&[output(queries.clone())], &inputs);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].relation, Relation::Same);
        let message = found[0].to_string();
        assert!(
            message.contains(&format!("--output {}", queries.display()))
                && message.contains(&format!("query file {}", queries.display())),
            "{message}"
        );
        assert_eq!(
            overlaps(&[output(tmp.path().join("sub/../q.jsonl"))], &inputs).len(),
            1
        );
        let hard = tmp.path().join("hard.jsonl");
        std::fs::hard_link(&queries, &hard).unwrap();
        assert_eq!(overlaps(&[output(hard)], &inputs).len(), 1);
        assert!(overlaps(&[output(tmp.path().join("vectors.jsonl"))], &inputs).is_empty());
    }

    #[test]
    fn an_output_directory_inside_an_input_directory_is_found() {
        let tmp = tempfile::tempdir().unwrap();
        let collection = tmp.path().join("in/docs");
        std::fs::create_dir_all(&collection).unwrap();
        let inputs = [InputPath::dir("collection docs", &collection)];
        let dir = |path: PathBuf| OutputPath {
            role: "output.dir".to_string(),
            path,
            kind: OutputKind::Dir(writes_nothing),
        };
        assert_eq!(
            overlaps(&[dir(collection.join("out"))], &inputs)[0].relation,
            Relation::Inside
        );
        assert_eq!(
            overlaps(&[dir(collection.clone())], &inputs)[0].relation,
            Relation::Same
        );
        // Beside it, or holding it (a collection inside the output is skipped, not refused).
        assert!(overlaps(&[dir(tmp.path().join("out"))], &inputs).is_empty());
        assert!(overlaps(&[dir(tmp.path().join("in"))], &inputs).is_empty());
        // A shard held by a merge's output is refused.
        let shard = InputPath {
            refuse_containing: true,
            ..InputPath::dir("shard 0/2", &collection)
        };
        assert_eq!(
            overlaps(&[dir(tmp.path().join("in"))], &[shard])[0].relation,
            Relation::Contains
        );
    }

    #[test]
    fn an_input_file_where_the_run_writes_is_found() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let dir = OutputPath {
            role: "output.dir".to_string(),
            path: out.clone(),
            kind: OutputKind::Dir(writes_manifest),
        };
        let inputs = [
            InputPath::file("query file", &out.join("manifest.json")),
            InputPath::file("qrels file", &out.join("qrels.tsv")),
        ];
        let found = overlaps(&[dir], &inputs);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].input_role, "query file");
        assert_eq!(found[0].relation, Relation::Contains);
    }
}
