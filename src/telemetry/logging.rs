//! Logging setup: one place, logs on stderr (stdout is for what the user asked for), text or
//! JSON lines, `-v`/`-q` or `RUST_LOG` for the level.

use crate::config::{Environment, LogFormat};
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// Log targets of libraries that log chunk or query text, capped at `warn`.
pub const PRIVATE_TARGETS: &[&str] = &["tokenizers=warn"];

/// Installs the global subscriber. `verbosity`: 0 = info, 1 = debug, 2+ = trace, −1 = warnings
/// only. `RUST_LOG` (from `env`), when set and valid, wins, except over [`PRIVATE_TARGETS`].
pub fn init_logging(format: LogFormat, verbosity: i8, env: &Environment) {
    let level = match verbosity {
        i8::MIN..=-1 => "warn",
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let mut filter = env
        .rust_log()
        .and_then(|directives| EnvFilter::try_new(directives).ok())
        .unwrap_or_else(|| EnvFilter::new(format!("embed_collections={level},warn")));
    // The privacy rule holds at every level a user can set: at debug and trace the tokenizers
    // library logs the text it normalises, character by character. Its warnings and errors
    // name no text and stay; a later directive for the same target replaces an earlier one,
    // so RUST_LOG=tokenizers=trace cannot turn this off.
    for directive in PRIVATE_TARGETS {
        if let Ok(directive) = directive.parse() {
            filter = filter.add_directive(directive);
        }
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        // A closed stderr (a log pipe whose reader went away) must not kill the run: by default
        // the subscriber reports a failed write with `eprintln!`, which panics on a broken pipe.
        .log_internal_errors(false)
        // Colour only for a person at a terminal: notebooks, cron mail and log files get plain
        // text (and `NO_COLOR` is honoured).
        .with_ansi(std::io::stderr().is_terminal() && !env.no_color());
    // A second init (tests, embedding as a library) is harmless: keep the first.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().with_current_span(true).try_init(),
    };
}
