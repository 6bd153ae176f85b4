//! The output directory's run state: one run at a time per directory ([`OutputLock`]), and
//! clearing what an earlier run left before a fresh one ([`clean_previous_outputs`]) or only
//! its half-written temp files before a resumed one ([`clean_temp_files`]).
//!
//! Two runs writing the same directory would interleave exports and overwrite each other's
//! manifest, so the second is refused up front, naming the holder. The lock is an advisory
//! `flock`-style lock on a file inside the directory: the OS drops it when the holder exits,
//! however it exits (kill -9 included), so there is never a stale lock to clean up by hand.
//!
//! Cleanup removes only names this tool writes, and never follows a symlink: an output
//! directory may sit next to (or contain links to) data the user cares about.

use crate::pid_lock::{lock_file, read_holder_pid, write_holder_pid, Deadline, LockFailure};
use std::fs::File;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

/// The lock file in the output directory. Never deleted: deleting a lock file while another
/// process holds (or is about to take) a lock on it lets two runs each lock a different file.
pub const LOCK_FILE: &str = ".embed-collections.lock";
/// Scratch space of a run in progress (checkpoints for resuming), inside the output directory.
pub const WORK_DIR: &str = ".work";

/// Where a run with `--reuse` of its own output directory keeps the earlier output it reuses
/// (moved there, not copied) until it has finished.
pub const REUSE_SNAPSHOT_DIR: &str = ".reuse-previous";

/// Files a run writes in each collection's subdirectory.
const COLLECTION_OUTPUTS: [&str; 6] = [
    "points.jsonl",
    "rerank.jsonl",
    "query_vectors.jsonl",
    crate::export::parquet::QUERY_VECTORS_PARQUET,
    super::store::CHUNK_HASHES_FILE,
    super::store::CHANGES_FILE,
];

/// Why the output directory could not be claimed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Another process holds the directory's lock.
    #[error(
        "output directory {} is in use by another embed-collections run{}; wait for it to \
         finish or choose another output directory",
        dir.display(),
        holder.map(|pid| format!(" (pid {pid})")).unwrap_or_default()
    )]
    Busy {
        dir: PathBuf,
        /// The holder's pid, when its lock file names a live process.
        holder: Option<u32>,
    },
    #[error("{}: cannot {action}", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// Exclusive use of an output directory, held until dropped (or the process ends).
#[derive(Debug)]
pub struct OutputLock {
    dir: PathBuf,
    // Holds the lock: closing the file releases it.
    _file: File,
}

impl OutputLock {
    /// Creates `output_dir` if missing and takes its lock without waiting: a busy directory
    /// means another run is writing it, and waiting would only delay the same conflict. Our
    /// pid goes into the lock file so the next run's error can name us.
    ///
    /// # Errors
    ///
    /// [`StateError::Busy`] when another run (or another lock in this process) holds it;
    /// [`StateError::Io`] when the directory or lock file cannot be created or locked.
    pub fn acquire(output_dir: &Path) -> Result<OutputLock, StateError> {
        std::fs::create_dir_all(output_dir).map_err(|source| StateError::Io {
            path: output_dir.to_path_buf(),
            action: "create the output directory",
            source,
        })?;
        let path = output_dir.join(LOCK_FILE);
        let mut file = match lock_file(&path, Deadline::Now) {
            Ok(file) => file,
            Err(LockFailure::Busy) => {
                // A holder that just took the lock may not have written its pid yet, leaving
                // an earlier run's; a dead pid is dropped rather than shown (someone might
                // `kill` it, and it could by now be an unrelated process).
                let holder = read_holder_pid(&path).filter(|&pid| process_alive(pid));
                return Err(StateError::Busy {
                    dir: output_dir.to_path_buf(),
                    holder,
                });
            }
            Err(LockFailure::Io(source)) => {
                return Err(StateError::Io {
                    path,
                    action: "lock",
                    source,
                })
            }
        };
        write_holder_pid(&mut file).map_err(|source| StateError::Io {
            path,
            action: "write our pid into the lock file",
            source,
        })?;
        Ok(OutputLock {
            dir: output_dir.to_path_buf(),
            _file: file,
        })
    }

    /// The locked directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Whether a run writes, replaces or removes `relative` (a path inside the output directory):
/// the top-level files, the lock, anything under `.work/`, each collection directory's outputs
/// and temp files. An input there would be destroyed ([`super::overlap`]).
pub fn run_writes(relative: &Path) -> bool {
    let parts: Vec<String> = relative
        .components()
        .map(|part| part.as_os_str().to_string_lossy().into_owned())
        .collect();
    let temp = |name: &str| name.starts_with(".tmp-") && name.ends_with(".partial");
    match parts.as_slice() {
        [first, ..] if first == WORK_DIR || first == REUSE_SNAPSHOT_DIR => true,
        [name] => {
            crate::export::TOP_LEVEL_FILES.contains(&name.as_str())
                || name == LOCK_FILE
                || temp(name)
        }
        [_, name] => COLLECTION_OUTPUTS.contains(&name.as_str()) || temp(name),
        [_, dir, name] if dir == crate::export::parquet::POINTS_DIR => {
            crate::export::parquet::part_index(name).is_some() || temp(name)
        }
        _ => false,
    }
}

/// Whether process `pid` exists. On Linux, whether `/proc/<pid>` does; elsewhere there is no
/// cheap portable check, so every pid counts as alive (callers then keep what they would
/// otherwise discard).
pub fn process_alive(pid: u32) -> bool {
    #[cfg(target_os = "linux")]
    {
        Path::new("/proc").join(pid.to_string()).exists()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = pid;
        true
    }
}

/// Before a fresh (not resumed) run, removes what an earlier run left in `output_dir`, so no
/// old collection's export outlives a run that no longer produces it: `manifest.json`,
/// `metrics.prom`, the `.work/` directory, each direct subdirectory's `points.jsonl` and
/// `rerank.jsonl`, and our atomic writer's `.tmp-*.partial` files (top level and direct
/// subdirectories). A subdirectory this leaves empty is removed too. Nothing else is touched:
/// not other files, not deeper levels, not symlink targets (a link with one of our names is
/// removed as a link).
///
/// Acts only when the directory shows an earlier run: a `manifest.json`, a `.work/` or the
/// lock file. A directory the user filled by hand is not ours to clean. (Acquiring
/// [`OutputLock`] creates the lock file, so after it the directory counts as used; only our
/// names are removed, so that costs nothing in a directory this tool never wrote.)
///
/// Returns the removed paths, for the log. A missing `output_dir` has nothing to remove.
/// `keep_snapshot`: a run reusing its own output keeps the [`REUSE_SNAPSHOT_DIR`] it reads.
pub fn clean_previous_outputs(
    output_dir: &Path,
    keep_snapshot: bool,
) -> std::io::Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    if !has_previous_run(output_dir)? {
        return Ok(removed);
    }
    let snapshot = output_dir.join(REUSE_SNAPSHOT_DIR);
    match symlink_metadata(&snapshot)? {
        _ if keep_snapshot => {}
        Some(meta) if meta.is_dir() => {
            remove_ignoring_missing(std::fs::remove_dir_all(&snapshot))?;
            removed.push(snapshot);
        }
        Some(_) => remove_file_entry(&snapshot, &mut removed)?,
        None => {}
    }
    for name in crate::export::TOP_LEVEL_FILES {
        remove_file_entry(&output_dir.join(name), &mut removed)?;
    }
    let work = output_dir.join(WORK_DIR);
    match symlink_metadata(&work)? {
        Some(meta) if meta.is_dir() => {
            // `remove_dir_all` does not follow symlinks inside the tree.
            remove_ignoring_missing(std::fs::remove_dir_all(&work))?;
            removed.push(work);
        }
        Some(_) => remove_file_entry(&work, &mut removed)?,
        None => {}
    }
    for entry in read_dir_sorted(output_dir)? {
        let meta = match symlink_metadata(&entry)? {
            Some(meta) => meta,
            None => continue,
        };
        if is_temp_file(&entry, &meta) {
            remove_file_entry(&entry, &mut removed)?;
        } else if meta.is_dir() {
            let before = removed.len();
            for name in COLLECTION_OUTPUTS {
                remove_file_entry(&entry.join(name), &mut removed)?;
            }
            remove_temp_files_in(&entry, 0, &mut removed)?;
            remove_parts(
                &entry.join(crate::export::parquet::POINTS_DIR),
                &mut removed,
            )?;
            // Only a directory we emptied: an empty one the user made stays.
            if removed.len() > before && read_dir_sorted(&entry)?.is_empty() {
                remove_ignoring_missing(std::fs::remove_dir(&entry))?;
                removed.push(entry);
            }
        }
    }
    Ok(removed)
}

/// Before a fresh run with `--reuse` of its own output directory: moves the earlier output it
/// reuses (the manifest, the work directory of an interrupted run, and each collection's
/// points, chunk hashes and ranked lists) into [`REUSE_SNAPSHOT_DIR`], where cleanup leaves it until the run
/// has finished. Returns `false` when a snapshot is there already (an earlier run of this kind
/// did not finish: that snapshot is still the last complete output, and is kept).
pub fn snapshot_for_reuse(output_dir: &Path) -> std::io::Result<bool> {
    let snapshot = output_dir.join(REUSE_SNAPSHOT_DIR);
    match symlink_metadata(&snapshot)? {
        Some(meta) if meta.is_dir() => return Ok(false),
        Some(_) => {
            return Err(std::io::Error::other(format!(
                "{} is not a directory",
                snapshot.display()
            )))
        }
        None => {}
    }
    // Built under a temporary name and renamed, so a half-made snapshot is never taken for one.
    let building = output_dir.join(format!("{REUSE_SNAPSHOT_DIR}.building"));
    if symlink_metadata(&building)?.is_some() {
        std::fs::remove_dir_all(&building)?;
    }
    crate::files::real_dir(&building)?;
    let move_file = |from: PathBuf, to: PathBuf| -> std::io::Result<()> {
        match symlink_metadata(&from)? {
            Some(meta) if meta.is_file() => std::fs::rename(&from, &to),
            _ => Ok(()),
        }
    };
    for entry in read_dir_sorted(output_dir)? {
        let Some(name) = entry.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            continue;
        };
        let Some(meta) = symlink_metadata(&entry)? else {
            continue;
        };
        if name == crate::export::MANIFEST_FILE {
            move_file(entry.clone(), building.join(&name))?;
        } else if name == WORK_DIR && meta.is_dir() {
            std::fs::rename(&entry, building.join(&name))?;
        } else if meta.is_dir() && !name.starts_with('.') {
            for file in [
                crate::export::POINTS_FILE,
                super::store::CHUNK_HASHES_FILE,
                crate::export::RANKED_FILE,
            ] {
                if symlink_metadata(&entry.join(file))?.is_some_and(|m| m.is_file()) {
                    crate::files::real_dir(&building.join(&name))?;
                    move_file(entry.join(file), building.join(&name).join(file))?;
                }
            }
        }
    }
    std::fs::rename(&building, &snapshot)?;
    Ok(true)
}

/// Removes the Parquet parts (and temp files) in a collection's `points/` directory, and the
/// directory when that empties it (a link in its place is never followed).
fn remove_parts(dir: &Path, removed: &mut Vec<PathBuf>) -> std::io::Result<()> {
    match symlink_metadata(dir)? {
        Some(meta) if meta.is_dir() => {}
        Some(_) => return Ok(()),
        None => return Ok(()),
    }
    let before = removed.len();
    for entry in read_dir_sorted(dir)? {
        let is_part = entry
            .file_name()
            .and_then(|name| name.to_str())
            .and_then(crate::export::parquet::part_index)
            .is_some();
        if is_part {
            remove_file_entry(&entry, removed)?;
        }
    }
    remove_temp_files_in(dir, 0, removed)?;
    if removed.len() > before && read_dir_sorted(dir)?.is_empty() {
        remove_ignoring_missing(std::fs::remove_dir(dir))?;
        removed.push(dir.to_path_buf());
    }
    Ok(())
}

/// Before a resumed run, removes only the temp files a killed run's atomic writes left
/// (`.tmp-*.partial` at the top level, in direct subdirectories, and anywhere under `.work/`);
/// everything else is the state the run resumes from. Returns how many were removed.
pub fn clean_temp_files(output_dir: &Path) -> std::io::Result<usize> {
    let mut removed = Vec::new();
    if symlink_metadata(output_dir)?.is_none() {
        return Ok(0);
    }
    // The top level, each collection's directory and its `points/`, then all of `.work/`.
    remove_temp_files_in(output_dir, 1, &mut removed)?;
    for entry in read_dir_sorted(output_dir)? {
        let parts = entry.join(crate::export::parquet::POINTS_DIR);
        let real_dir = |path: &Path| -> std::io::Result<bool> {
            Ok(symlink_metadata(path)?.is_some_and(|meta| meta.is_dir()))
        };
        if real_dir(&entry)? && real_dir(&parts)? {
            remove_temp_files_in(&parts, 0, &mut removed)?;
        }
    }
    let work = output_dir.join(WORK_DIR);
    if symlink_metadata(&work)?.is_some_and(|meta| meta.is_dir()) {
        remove_temp_files_in(&work, usize::MAX, &mut removed)?;
    }
    Ok(removed.len())
}

/// Removes temp files in `dir`, descending `depth` more levels into real (not linked)
/// subdirectories.
fn remove_temp_files_in(
    dir: &Path,
    depth: usize,
    removed: &mut Vec<PathBuf>,
) -> std::io::Result<()> {
    for entry in read_dir_sorted(dir)? {
        let meta = match symlink_metadata(&entry)? {
            Some(meta) => meta,
            None => continue,
        };
        if is_temp_file(&entry, &meta) {
            remove_file_entry(&entry, removed)?;
        } else if meta.is_dir() && depth > 0 {
            remove_temp_files_in(&entry, depth - 1, removed)?;
        }
    }
    Ok(())
}

fn has_previous_run(output_dir: &Path) -> std::io::Result<bool> {
    if symlink_metadata(output_dir)?.is_none() {
        return Ok(false);
    }
    for name in ["manifest.json", WORK_DIR, LOCK_FILE, REUSE_SNAPSHOT_DIR] {
        if symlink_metadata(&output_dir.join(name))?.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A `.tmp-*.partial` file (or link) as [`crate::export::atomic`] names its temp files.
fn is_temp_file(path: &Path, meta: &std::fs::Metadata) -> bool {
    !meta.is_dir()
        && path
            .file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| name.starts_with(".tmp-") && name.ends_with(".partial"))
}

/// The entry's own metadata (a symlink's, not its target's); `None` if it does not exist.
fn symlink_metadata(path: &Path) -> std::io::Result<Option<std::fs::Metadata>> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) => Ok(Some(meta)),
        Err(err) if err.kind() == ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err),
    }
}

/// Removes `path` if it is a file or a symlink (never a directory of that name), recording it.
fn remove_file_entry(path: &Path, removed: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let meta = match symlink_metadata(path)? {
        Some(meta) => meta,
        None => return Ok(()),
    };
    if meta.is_dir() {
        return Ok(());
    }
    let result = match std::fs::remove_file(path) {
        // Windows removes a link to a directory with `remove_dir`; it still leaves the target.
        Err(_) if meta.file_type().is_symlink() && cfg!(windows) => std::fs::remove_dir(path),
        other => other,
    };
    remove_ignoring_missing(result)?;
    removed.push(path.to_path_buf());
    Ok(())
}

/// A removal that found nothing (someone else removed it first) is not an error.
fn remove_ignoring_missing(result: std::io::Result<()>) -> std::io::Result<()> {
    match result {
        Err(err) if err.kind() == ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// The entries of `dir`, sorted so removals (and the log) are in a stable order.
fn read_dir_sorted(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut entries = std::fs::read_dir(dir)?
        .map(|entry| entry.map(|entry| entry.path()))
        .collect::<std::io::Result<Vec<_>>>()?;
    entries.sort();
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn touch(path: &Path) {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(path, b"x").unwrap();
    }

    /// Every file (and link) under `dir`, relative, sorted; directories end in '/'.
    fn tree(dir: &Path) -> Vec<String> {
        fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
            for entry in read_dir_sorted(dir).unwrap() {
                let meta = fs::symlink_metadata(&entry).unwrap();
                let rel = entry.strip_prefix(root).unwrap().display().to_string();
                if meta.is_dir() {
                    out.push(format!("{rel}/"));
                    walk(root, &entry, out);
                } else {
                    out.push(rel);
                }
            }
        }
        let mut out = Vec::new();
        walk(dir, dir, &mut out);
        out
    }

    #[test]
    fn a_second_lock_on_the_same_directory_is_busy_and_names_our_pid() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("out").join("x");
        let lock = OutputLock::acquire(&dir).unwrap();
        assert_eq!(lock.dir(), dir);
        let pid_text = fs::read_to_string(dir.join(LOCK_FILE)).unwrap();
        assert_eq!(pid_text.trim(), std::process::id().to_string());
        // flock locks belong to the open file description, so a second open in this process
        // conflicts just as another process's would.
        match OutputLock::acquire(&dir) {
            Err(StateError::Busy { dir: busy, holder }) => {
                assert_eq!(busy, dir);
                assert_eq!(holder, Some(std::process::id()));
            }
            other => panic!("expected Busy, got {other:?}"),
        }
        let message = OutputLock::acquire(&dir).unwrap_err().to_string();
        assert_eq!(
            message,
            format!(
                "output directory {} is in use by another embed-collections run (pid {}); \
                 wait for it to finish or choose another output directory",
                dir.display(),
                std::process::id()
            )
        );
        drop(lock);
        let again = OutputLock::acquire(&dir).unwrap();
        assert!(
            dir.join(LOCK_FILE).exists(),
            "the lock file is never deleted"
        );
        drop(again);
        assert!(dir.join(LOCK_FILE).exists());
    }

    #[test]
    fn a_busy_error_without_a_live_holder_pid_says_so_without_one() {
        let error = StateError::Busy {
            dir: PathBuf::from("out/x"),
            holder: None,
        };
        assert_eq!(
            error.to_string(),
            "output directory out/x is in use by another embed-collections run; wait for it \
             to finish or choose another output directory"
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn process_alive_sees_us_and_not_a_pid_that_cannot_exist() {
        assert!(process_alive(std::process::id()));
        // Above the kernel's pid_max limit (2^22).
        assert!(!process_alive(u32::MAX));
    }

    #[test]
    fn cleanup_removes_exactly_our_outputs() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path();
        for path in [
            "manifest.json",
            "metrics.prom",
            "notes.txt",
            ".tmp-abc.partial",
            ".work/dense/checkpoint.bin",
            ".work/deep/er/.tmp-x.partial",
            "x/points.jsonl",
            "x/rerank.jsonl",
            "x/other.jsonl",
            "x/.tmp-1.partial",
            "y/points.jsonl",
            "y/.tmp-2.partial",
            "y/points/part-00000.parquet",
            "y/points/.tmp-3.partial",
            "y/query_vectors.parquet",
            "x/points/part-00001.parquet",
            "x/points/notes.txt",
            "z/deeper/points.jsonl",
            "tmp-not-ours.partial",
        ] {
            touch(&dir.join(path));
        }
        fs::create_dir(dir.join("empty")).unwrap();
        // A directory with one of our file names is not ours to remove.
        fs::create_dir_all(dir.join("w/points.jsonl")).unwrap();
        let removed = clean_previous_outputs(dir, false).unwrap();
        let mut removed: Vec<String> = removed
            .iter()
            .map(|p| p.strip_prefix(dir).unwrap().display().to_string())
            .collect();
        removed.sort();
        assert_eq!(
            removed,
            [
                ".tmp-abc.partial",
                ".work",
                "manifest.json",
                "metrics.prom",
                "x/.tmp-1.partial",
                "x/points.jsonl",
                "x/points/part-00001.parquet",
                "x/rerank.jsonl",
                "y",
                "y/.tmp-2.partial",
                "y/points",
                "y/points.jsonl",
                "y/points/.tmp-3.partial",
                "y/points/part-00000.parquet",
                "y/query_vectors.parquet",
            ]
        );
        assert_eq!(
            tree(dir),
            [
                "empty/",
                "notes.txt",
                "tmp-not-ours.partial",
                "w/",
                "w/points.jsonl/",
                "x/",
                "x/other.jsonl",
                "x/points/",
                "x/points/notes.txt",
                "z/",
                "z/deeper/",
                "z/deeper/points.jsonl",
            ]
        );
    }

    #[test]
    fn cleanup_does_nothing_without_evidence_of_an_earlier_run() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path();
        for path in ["metrics.prom", "x/points.jsonl", ".tmp-a.partial"] {
            touch(&dir.join(path));
        }
        let before = tree(dir);
        assert!(clean_previous_outputs(dir, false).unwrap().is_empty());
        assert_eq!(tree(dir), before);
        assert!(clean_previous_outputs(&dir.join("missing"), false)
            .unwrap()
            .is_empty());
        // The lock file alone is evidence (a run that died before writing anything else).
        touch(&dir.join(LOCK_FILE));
        assert_eq!(clean_previous_outputs(dir, false).unwrap().len(), 4);
        assert_eq!(tree(dir), [LOCK_FILE], "the lock file is kept");
    }

    #[cfg(unix)]
    #[test]
    fn cleanup_removes_links_not_their_targets() {
        use std::os::unix::fs::symlink;
        let temp = tempfile::tempdir().unwrap();
        let outside = temp.path().join("outside");
        touch(&outside.join("points.jsonl"));
        touch(&outside.join("precious/.tmp-keep.partial"));
        touch(&outside.join("sub/points.jsonl"));
        let dir = temp.path().join("out");
        touch(&dir.join("manifest.json"));
        fs::create_dir_all(dir.join("x")).unwrap();
        // A link with our name, a linked `.work` and a linked collection directory.
        symlink(outside.join("points.jsonl"), dir.join("x/points.jsonl")).unwrap();
        symlink(outside.join("precious"), dir.join(WORK_DIR)).unwrap();
        symlink(outside.join("sub"), dir.join("linked")).unwrap();
        let removed = clean_previous_outputs(&dir, false).unwrap();
        assert!(removed.contains(&dir.join("x/points.jsonl")), "{removed:?}");
        assert!(removed.contains(&dir.join(WORK_DIR)), "{removed:?}");
        assert!(fs::symlink_metadata(dir.join(WORK_DIR)).is_err());
        assert_eq!(
            tree(&outside),
            [
                "points.jsonl",
                "precious/",
                "precious/.tmp-keep.partial",
                "sub/",
                "sub/points.jsonl",
            ],
            "nothing outside the output directory touched"
        );
        // The linked directory is left alone (not a real subdirectory of ours).
        assert!(fs::symlink_metadata(dir.join("linked")).is_ok());
    }

    #[test]
    fn temp_file_cleanup_keeps_the_state_a_resume_needs() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path();
        for path in [
            "manifest.json",
            ".tmp-a.partial",
            "x/points.jsonl",
            "x/.tmp-b.partial",
            "x/deep/.tmp-not-reached.partial",
            "x/points/.tmp-torn-part.partial",
            "x/points/part-00000.parquet",
            ".work/.tmp-c.partial",
            ".work/dense/x/.tmp-d.partial",
            ".work/dense/x/checkpoint.bin",
        ] {
            touch(&dir.join(path));
        }
        assert_eq!(clean_temp_files(dir).unwrap(), 5);
        assert_eq!(
            tree(dir),
            [
                ".work/",
                ".work/dense/",
                ".work/dense/x/",
                ".work/dense/x/checkpoint.bin",
                "manifest.json",
                "x/",
                "x/deep/",
                "x/deep/.tmp-not-reached.partial",
                "x/points/",
                "x/points/part-00000.parquet",
                "x/points.jsonl",
            ]
        );
        assert_eq!(clean_temp_files(&dir.join("missing")).unwrap(), 0);
    }
    /// A lock file replaced by a link is refused, naming it; the linked file keeps its content
    /// (it used to get our pid).
    #[cfg(unix)]
    #[test]
    fn a_linked_lock_file_is_refused_and_its_target_untouched() {
        let temp = tempfile::tempdir().unwrap();
        let precious = temp.path().join("precious.txt");
        fs::write(&precious, "keep me\n").unwrap();
        let dir = temp.path().join("out");
        fs::create_dir(&dir).unwrap();
        std::os::unix::fs::symlink(&precious, dir.join(LOCK_FILE)).unwrap();
        let err = OutputLock::acquire(&dir).unwrap_err();
        let chain = format!("{err}: {}", std::error::Error::source(&err).unwrap());
        assert!(chain.contains(LOCK_FILE), "{chain}");
        assert!(chain.contains("is a symbolic link"), "{chain}");
        assert_eq!(fs::read_to_string(&precious).unwrap(), "keep me\n");
    }
}
