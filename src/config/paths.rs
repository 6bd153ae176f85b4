//! Paths as logs, tables and the manifest show them ([`shown_path`]): absolute when given
//! absolute; relative to the working directory only when that is shorter and does not climb
//! above it (never `../../../somewhere`, which says less than the absolute path).

use std::path::{Component, Path, PathBuf};

/// Lexically normalised absolute form (no symlink resolution, no need to exist).
pub fn normalised(path: &Path) -> Option<PathBuf> {
    let absolute = std::path::absolute(path).ok()?;
    let mut out = PathBuf::new();
    for component in absolute.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    Some(out)
}

/// `path` without `.` components and with `dir/..` pairs folded (lexically: no symlink
/// resolution, no need to exist); a relative path stays relative (`configs/../out` → `out`).
pub fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => match out.components().next_back() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir | Component::Prefix(_)) => {}
                _ => out.push(".."),
            },
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        out
    }
}

/// How logs, tables and the manifest show `path`: see the module docs.
pub fn shown_path(path: &Path) -> PathBuf {
    match std::env::current_dir() {
        Ok(cwd) => shown_from(path, &cwd),
        Err(_) => normalised(path).unwrap_or_else(|| lexical(path)),
    }
}

/// [`shown_path`] with `cwd` as the working directory.
pub fn shown_from(path: &Path, cwd: &Path) -> PathBuf {
    if path.is_absolute() {
        return lexical(path);
    }
    let absolute = lexical(&cwd.join(path));
    let cwd = lexical(cwd);
    match absolute.strip_prefix(&cwd) {
        Ok(relative) if relative.as_os_str().is_empty() => PathBuf::from("."),
        Ok(relative) if relative.as_os_str().len() < absolute.as_os_str().len() => {
            relative.to_path_buf()
        }
        _ => absolute,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Finding 7 of issue 29: a qrels file outside the working directory was labelled
    /// `file:../../../<somewhere>/qrels.tsv`.
    #[test]
    fn shown_paths_never_climb_above_the_working_directory() {
        let cwd = Path::new("/home/user/runs/today");
        for (path, want) in [
            // Absolute as given absolute, even inside the working directory.
            ("/home/user/runs/today/out", "/home/user/runs/today/out"),
            ("/srv/data/../data/qrels.tsv", "/srv/data/qrels.tsv"),
            // Relative below the working directory stays relative.
            ("out/q", "out/q"),
            ("configs/../out/q", "out/q"),
            (".", "."),
            // Relative above it is shown absolute, not as a climb.
            ("../../../data/qrels.tsv", "/home/data/qrels.tsv"),
            ("../sibling/q.jsonl", "/home/user/runs/sibling/q.jsonl"),
        ] {
            assert_eq!(
                shown_from(Path::new(path), cwd),
                PathBuf::from(want),
                "{path}"
            );
        }
    }

    #[test]
    fn lexical_folds_dots_and_keeps_leading_parents() {
        for (path, want) in [
            ("configs/../out/quickstart", "out/quickstart"),
            ("./a/./b", "a/b"),
            ("../x/../y", "../y"),
            ("a/../..", ".."),
            ("/a/../../b", "/b"),
            ("a/..", "."),
        ] {
            assert_eq!(lexical(Path::new(path)), PathBuf::from(want), "{path}");
        }
    }
}
