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

/// The class of a failure: which exit code it ends the process with. Every error a command
/// can end with says its class and the hint to print ([`Classified`]); this is the one place
/// a class becomes an exit code (the server maps its own errors to HTTP statuses in
/// `serve::error`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// The command line, the configuration or the environment: nothing was run.
    Config,
    /// The input data (collections, queries, qrels, an earlier output being read).
    Input,
    /// Anything else: a model, a device, the output directory, a bug.
    Failure,
    /// Stopped by SIGINT or SIGTERM.
    Interrupted,
}

impl ErrorClass {
    /// The process exit code of this class.
    pub fn exit_code(self) -> i32 {
        match self {
            Self::Config => CONFIG_ERROR,
            Self::Input => INPUT_ERROR,
            Self::Failure => FAILURE,
            Self::Interrupted => INTERRUPTED,
        }
    }
}

/// An error that knows its class and what the user can do about it.
pub trait Classified: std::error::Error {
    /// Which exit code it ends the process with.
    fn class(&self) -> ErrorClass;
    /// One line on what to do, printed after the error; `None` where the error says it all.
    fn hint(&self) -> Option<&'static str> {
        None
    }
}

impl Classified for crate::config::ConfigError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Config
    }
    fn hint(&self) -> Option<&'static str> {
        Some("see `embed-collections --help` and configs/quickstart.toml")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_class_has_its_documented_exit_code() {
        // docs/operations.md: 1 failure, 2 configuration, 3 input, 130 interrupted.
        assert_eq!(ErrorClass::Failure.exit_code(), 1);
        assert_eq!(ErrorClass::Config.exit_code(), 2);
        assert_eq!(ErrorClass::Input.exit_code(), 3);
        assert_eq!(ErrorClass::Interrupted.exit_code(), 130);
    }
}
