//! Process exit codes, one per class of outcome. Documented in docs/operations.md; scripts and cron
//! wrappers rely on them, so they never change meaning.

/// Everything requested was done.
pub const OK: i32 = 0;
/// An unexpected failure (model could not load or run, I/O on the output directory, a bug).
pub const FAILURE: i32 = 1;
/// Bad command line or configuration: nothing was run.
pub const CONFIG_ERROR: i32 = 2;
/// Bad input data (a collection could not be read under the `error` policy).
pub const INPUT_ERROR: i32 = 3;
/// Some collections (or some chunks of a collection) succeeded and some failed; see the
/// manifest.
pub const PARTIAL_FAILURE: i32 = 4;
/// Stopped by SIGINT or SIGTERM at a batch boundary; `--resume` continues (the shell's
/// convention for a SIGINT-terminated process, 128 + 2).
pub const INTERRUPTED: i32 = crate::interrupt::FORCED_EXIT_CODE;
