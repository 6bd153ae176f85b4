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

/// `path` relative to the directory `base`; `path` unchanged when that is impossible.
pub fn relative_path(path: &Path, base: &Path) -> PathBuf {
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
        let base = Path::new("/srv/runs/configs");
        assert_eq!(
            relative_path(Path::new("/srv/runs/configs/../out/q"), base),
            PathBuf::from("../out/q")
        );
        assert_eq!(
            relative_path(Path::new("/srv/runs/configs/in"), base),
            PathBuf::from("in")
        );
        assert_eq!(
            relative_path(Path::new("/home/user/.cache/m"), base),
            PathBuf::from("../../../home/user/.cache/m")
        );
        assert_eq!(relative_path(base, base), PathBuf::from("."));
    }
}
