//! Paths as the manifest shows them: relative to the config file's directory where possible, so
//! a manifest does not leak home directories and stays meaningful when a run directory moves.

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

/// How the manifest shows `path`: an absolute path as it is (normalised); a relative one
/// relative to the directory `base` (`path` unchanged when that is impossible).
pub fn relative_path(path: &Path, base: &Path) -> PathBuf {
    if path.is_absolute() {
        return lexical(path);
    }
    let (Some(path_abs), Some(base_abs)) = (normalised(path), normalised(base)) else {
        return path.to_path_buf();
    };
    let path_parts: Vec<Component> = path_abs.components().collect();
    let base_parts: Vec<Component> = base_abs.components().collect();
    let common = path_parts
        .iter()
        .zip(&base_parts)
        .take_while(|(a, b)| a == b)
        .count();
    if common == 0 {
        return path.to_path_buf();
    }
    let mut relative = PathBuf::new();
    for _ in common..base_parts.len() {
        relative.push("..");
    }
    for part in &path_parts[common..] {
        relative.push(part);
    }
    if relative.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        relative
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_to_the_config_directory() {
        let base = Path::new("configs");
        assert_eq!(
            relative_path(Path::new("configs/../out/q"), base),
            PathBuf::from("../out/q")
        );
        assert_eq!(
            relative_path(Path::new("configs/in"), base),
            PathBuf::from("in")
        );
        assert_eq!(relative_path(base, base), PathBuf::from("."));
        // Absolute paths stay absolute (no `../../..` climb to the home directory).
        assert_eq!(
            relative_path(Path::new("/home/user/.cache/m"), base),
            PathBuf::from("/home/user/.cache/m")
        );
        assert_eq!(
            relative_path(Path::new("/srv/runs/configs/../out/q"), base),
            PathBuf::from("/srv/runs/out/q")
        );
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
