//! A pid-file lock: an OS advisory lock (`flock` on Unix, `LockFileEx` on Windows) on a file
//! that also holds the holder's pid, for the error a second process gets. The OS drops the lock
//! when its holder dies, even on `kill -9`, so nothing stays locked after a crash; the file
//! stays (deleting lock files races with other processes opening them). Device leases
//! ([`crate::gpu::lease_gpus`]) and the output directory's run lock
//! ([`crate::pipeline::state::OutputLock`]) are both this lock.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, Instant};

/// How often a waiting lease retries a busy lock.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Why [`lock_file`] returned without the lock.
pub enum LockFailure {
    Busy,
    Io(std::io::Error),
}

/// When a busy lock stops being retried.
#[derive(Clone, Copy)]
pub enum Deadline {
    Now,
    At(Instant),
    Never,
}

/// Opens (creating) and exclusively locks `path`, polling until `deadline`. The file is not
/// truncated on open: a busy file's pid belongs to its holder.
pub fn lock_file(path: &Path, deadline: Deadline) -> Result<File, LockFailure> {
    // Never through a link: a linked lock file would get our pid written into its target.
    let file = crate::files::open_no_follow(
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false),
        path,
    )
    .map_err(LockFailure::Io)?;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(TryLockError::Error(err)) => return Err(LockFailure::Io(err)),
            Err(TryLockError::WouldBlock) => {
                let now = Instant::now();
                match deadline {
                    Deadline::At(deadline) if now < deadline => {
                        std::thread::sleep(POLL_INTERVAL.min(deadline - now));
                    }
                    Deadline::Never => std::thread::sleep(POLL_INTERVAL),
                    Deadline::Now | Deadline::At(_) => return Err(LockFailure::Busy),
                }
            }
        }
    }
}

/// Replaces the lock file's content with our pid, so a busy error can name the holder.
pub fn write_holder_pid(file: &mut File) -> std::io::Result<()> {
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    writeln!(file, "{}", std::process::id())?;
    file.flush()
}

/// The pid a lock's holder wrote, if the file holds one.
pub fn read_holder_pid(path: &Path) -> Option<u32> {
    let mut text = String::new();
    File::open(path).ok()?.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}
