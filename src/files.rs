//! The file-system rules every writer follows, and the one streaming hash every reader uses.
//!
//! **Writing.** Anyone who can write the output directory could otherwise make a run write
//! through a symbolic link to any file the run's user may write (a linked lock file would get
//! our pid, a linked work file would be truncated). So every file the tool creates or replaces
//! is opened with [`open_no_follow`] (`O_NOFOLLOW`, and then it must be a regular file),
//! temporary files are created exclusively (`O_EXCL`: [`create_new_no_follow`]), and every
//! directory the tool writes into below the output directory must be a real directory, not a
//! link ([`real_dir`]). A refusal is an [`UnsafePath`] naming the path, carried in the
//! `std::io::Error` of the write that refused it.
//!
//! **Hashing.** [`digest_file`] streams a file once for its sha256, size and newline count; the
//! manifest's file records, the models' weights hashes and the input fingerprint all use it.

use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};

/// A path the tool refuses to write through.
#[derive(Debug, thiserror::Error)]
pub enum UnsafePath {
    #[error(
        "{}: is a symbolic link; refusing to write through it (nothing outside the output is \
         ever written: remove the link)",
        path.display()
    )]
    Symlink { path: PathBuf },
    #[error("{}: is not a regular file; refusing to write it", path.display())]
    NotAFile { path: PathBuf },
    #[error("{}: is not a directory; refusing to write into it", path.display())]
    NotADirectory { path: PathBuf },
}

impl From<UnsafePath> for std::io::Error {
    fn from(err: UnsafePath) -> Self {
        std::io::Error::other(err)
    }
}

/// Whether `path` itself (not what it points to) is a symbolic link.
pub fn is_symlink(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|meta| meta.file_type().is_symlink())
}

/// Opens `path` with `options`, never following a symbolic link in its last component, and
/// only if it is (or is created as) a regular file.
///
/// # Errors
///
/// [`UnsafePath::Symlink`] or [`UnsafePath::NotAFile`] (as an `io::Error`), or the open's own
/// error.
pub fn open_no_follow(options: &mut OpenOptions, path: &Path) -> std::io::Result<File> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW);
    }
    // Without O_NOFOLLOW (or where the kernel reports a link as another error) the check
    // before the open still refuses a link that is already there.
    if is_symlink(path) {
        return Err(UnsafePath::Symlink {
            path: path.to_path_buf(),
        }
        .into());
    }
    let file = options.open(path).map_err(|err| {
        #[cfg(unix)]
        if err.raw_os_error() == Some(libc::ELOOP) {
            return UnsafePath::Symlink {
                path: path.to_path_buf(),
            }
            .into();
        }
        err
    })?;
    if !file.metadata()?.is_file() {
        return Err(UnsafePath::NotAFile {
            path: path.to_path_buf(),
        }
        .into());
    }
    Ok(file)
}

/// Creates `path` for writing, failing if anything (a file, a link, a dangling link) already
/// has its name.
pub fn create_new_no_follow(path: &Path) -> std::io::Result<File> {
    open_no_follow(OpenOptions::new().write(true).create_new(true), path)
}

/// Makes sure `dir` is a real directory (creating it, and its missing parents, if needed):
/// a symbolic link or a file in its place is refused.
pub fn real_dir(dir: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(dir) {
        Ok(meta) if meta.file_type().is_symlink() => Err(UnsafePath::Symlink {
            path: dir.to_path_buf(),
        }
        .into()),
        Ok(meta) if !meta.is_dir() => Err(UnsafePath::NotADirectory {
            path: dir.to_path_buf(),
        }
        .into()),
        Ok(_) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir)?;
            // A link made between the check and the creation is caught here.
            if is_symlink(dir) {
                return Err(UnsafePath::Symlink {
                    path: dir.to_path_buf(),
                }
                .into());
            }
            Ok(())
        }
        Err(err) => Err(err),
    }
}

/// What one pass over a file gives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileDigest {
    /// Lower-case hex sha256 of the content.
    pub sha256: String,
    pub bytes: u64,
    /// Newline count (JSONL: records).
    pub lines: u64,
}

/// Streams `path` once (1 MiB at a time) for its sha256, size and newline count.
pub fn digest_file(path: &Path) -> std::io::Result<FileDigest> {
    digest_reader(File::open(path)?)
}

/// [`digest_file`] of an open reader.
pub fn digest_reader(mut reader: impl Read) -> std::io::Result<FileDigest> {
    let mut hasher = Sha256::new();
    let (mut bytes, mut lines) = (0u64, 0u64);
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        let chunk = &buffer[..read];
        hasher.update(chunk);
        bytes += read as u64;
        lines += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
    }
    Ok(FileDigest {
        sha256: hex::encode(hasher.finalize()),
        bytes,
        lines,
    })
}

/// sha256 of a file's content, streamed.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    digest_file(path).map(|digest| digest.sha256)
}

/// Whether two paths name the same directory (resolved when both exist, else compared as
/// absolute paths).
pub fn same_dir(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => absolute(a) == absolute(b),
    }
}

/// `path` made absolute against the working directory (as given when that fails).
pub fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn the_digest_is_sha256_size_and_lines() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a.jsonl");
        std::fs::write(&path, b"abc\nde\n").unwrap();
        let digest = digest_file(&path).unwrap();
        assert_eq!(
            digest.sha256,
            hex::encode(Sha256::digest(b"abc\nde\n")),
            "the same as hashing the bytes in one go"
        );
        assert_eq!((digest.bytes, digest.lines), (7, 2));
        // Across the 1 MiB buffer boundary.
        let big = vec![b'x'; (1 << 20) + 3];
        std::fs::write(&path, &big).unwrap();
        assert_eq!(
            sha256_file(&path).unwrap(),
            hex::encode(Sha256::digest(&big))
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_linked_file_is_refused_and_its_target_untouched() {
        use std::os::unix::fs::symlink;
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("precious.txt");
        std::fs::write(&target, "keep").unwrap();
        let link = tmp.path().join("out.lock");
        symlink(&target, &link).unwrap();
        let err = open_no_follow(
            OpenOptions::new().write(true).create(true).truncate(true),
            &link,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("out.lock: is a symbolic link"),
            "{err}"
        );
        assert!(
            err.get_ref()
                .is_some_and(|inner| inner.downcast_ref::<UnsafePath>().is_some()),
            "typed: {err:?}"
        );
        // A dangling link is not followed to create its target either.
        let dangling = tmp.path().join("dangling");
        symlink(tmp.path().join("created-elsewhere"), &dangling).unwrap();
        assert!(create_new_no_follow(&dangling).is_err());
        assert!(!tmp.path().join("created-elsewhere").exists());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        // A plain file opens; a directory is not a file.
        let plain = tmp.path().join("plain");
        let mut file = create_new_no_follow(&plain).unwrap();
        file.write_all(b"x").unwrap();
        assert!(create_new_no_follow(&plain).is_err(), "created exclusively");
        let err = open_no_follow(OpenOptions::new().read(true), tmp.path()).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn a_linked_directory_is_refused() {
        use std::os::unix::fs::symlink;
        let tmp = tempfile::tempdir().unwrap();
        let elsewhere = tmp.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        symlink(&elsewhere, tmp.path().join("linked")).unwrap();
        let err = real_dir(&tmp.path().join("linked")).unwrap_err();
        assert!(err.to_string().contains("is a symbolic link"), "{err}");
        real_dir(&tmp.path().join("new/deeper")).unwrap();
        assert!(tmp.path().join("new/deeper").is_dir());
        std::fs::write(tmp.path().join("file"), "x").unwrap();
        assert!(real_dir(&tmp.path().join("file")).is_err());
    }
}
