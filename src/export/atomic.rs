//! Atomic file writes: write a temp file beside the target, fsync, rename. A reader (or a
//! crashed run) never sees a half-written file under the final name.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use tempfile::NamedTempFile;

/// A file being written; it appears under its final name only on [`AtomicFile::commit`].
/// Dropped without commit, the temp file is removed.
pub struct AtomicFile {
    target: PathBuf,
    writer: BufWriter<NamedTempFile>,
}

impl AtomicFile {
    pub fn create(target: &Path) -> std::io::Result<Self> {
        let dir = match target.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        std::fs::create_dir_all(dir)?;
        let temp = tempfile::Builder::new()
            .prefix(".tmp-")
            .suffix(".partial")
            .tempfile_in(dir)?;
        Ok(Self {
            target: target.to_path_buf(),
            writer: BufWriter::with_capacity(1 << 20, temp),
        })
    }

    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Flushes, syncs and renames into place, readable as the process's umask allows (a temp
    /// file is created private; an output must be readable by, e.g., node_exporter running as
    /// another user).
    pub fn commit(self) -> std::io::Result<()> {
        let temp = self.writer.into_inner().map_err(|err| err.into_error())?;
        set_output_mode(temp.as_file())?;
        temp.as_file().sync_all()?;
        temp.persist(&self.target).map_err(|err| err.error)?;
        Ok(())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.writer.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.writer.flush()
    }
}

/// Gives `file` the mode a plainly created file would have: 0666 less the umask.
#[cfg(unix)]
fn set_output_mode(file: &std::fs::File) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(0o666 & !process_umask()))
}

#[cfg(not(unix))]
fn set_output_mode(_file: &std::fs::File) -> std::io::Result<()> {
    Ok(())
}

/// The process's umask, read from `/proc/self/status` (Linux; reading it any other way means
/// setting it, which races with other threads creating files); 022 where it cannot be read.
#[cfg(unix)]
fn process_umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Umask:"))
                .and_then(|value| u32::from_str_radix(value.trim(), 8).ok())
        })
        .unwrap_or(0o022)
}

/// Writes `bytes` to `target` atomically.
pub fn write_atomic(target: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = AtomicFile::create(target)?;
    file.write_all(bytes)?;
    file.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_appears_until_commit() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("sub/out.jsonl");
        let mut file = AtomicFile::create(&target).unwrap();
        file.write_all(b"line\n").unwrap();
        assert!(!target.exists());
        file.commit().unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "line\n");
    }

    #[cfg(unix)]
    #[test]
    fn committed_files_are_readable_as_the_umask_allows() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("metrics.prom");
        write_atomic(&target, b"x\n").unwrap();
        let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o666 & !process_umask(), "mode {mode:o}");
    }

    #[test]
    fn dropped_write_leaves_no_file_behind() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("out.jsonl");
        std::fs::write(&target, "old\n").unwrap();
        {
            let mut file = AtomicFile::create(&target).unwrap();
            file.write_all(b"half").unwrap();
        }
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "old\n");
        let leftovers = std::fs::read_dir(tmp.path()).unwrap().count();
        assert_eq!(leftovers, 1, "temp file must be removed");
    }
}
