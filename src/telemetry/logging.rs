//! Logging setup: one place, logs on stderr (stdout is for what the user asked for), text or
//! JSON lines, `-v`/`-q` or `RUST_LOG` for the level.

use crate::config::LogFormat;
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `verbosity`: 0 = info, 1 = debug, 2+ = trace, −1 = warnings
/// only. `RUST_LOG`, when set, wins.
pub fn init_logging(format: LogFormat, verbosity: i8) {
    let level = match verbosity {
        i8::MIN..=-1 => "warn",
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("embed_collections={level},warn")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        // A closed stderr (a log pipe whose reader went away) must not kill the run: by default
        // the subscriber reports a failed write with `eprintln!`, which panics on a broken pipe.
        .log_internal_errors(false)
        // Colour only for a person at a terminal: notebooks, cron mail and log files get plain
        // text (and `NO_COLOR` is honoured).
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none());
    // A second init (tests, embedding as a library) is harmless: keep the first.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().with_current_span(true).try_init(),
    };
}
