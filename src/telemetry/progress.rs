//! Progress of a stage: a bar with rate and ETA on a terminal; on anything else (a notebook, a
//! log file, cron) one plain log event every few seconds; nothing with `--quiet` or
//! `telemetry.progress = "never"`. Plain lines go through `tracing`, so with `--log-format json`
//! they are JSON like every other log line.

use crate::config::ProgressMode;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// Seconds between plain progress lines.
const PLAIN_INTERVAL: Duration = Duration::from_secs(5);

/// Progress of one stage over one collection.
pub struct StageProgress {
    display: Display,
    label: String,
    unit: &'static str,
    total: u64,
    done: u64,
    started: Instant,
}

enum Display {
    Bar(indicatif::ProgressBar),
    Lines { last: Instant },
    Hidden,
}

impl StageProgress {
    /// `label` names the stage and collection (`dense scifact`); `unit` what is counted.
    pub fn new(
        mode: ProgressMode,
        label: impl Into<String>,
        unit: &'static str,
        total: u64,
    ) -> Self {
        let label = label.into();
        let display = match mode {
            ProgressMode::Never => Display::Hidden,
            ProgressMode::Lines => Display::Lines {
                last: Instant::now(),
            },
            ProgressMode::Auto if std::io::stderr().is_terminal() => {
                let bar = indicatif::ProgressBar::new(total);
                let style = indicatif::ProgressStyle::with_template(
                    "{prefix:>20} [{bar:30}] {pos}/{len} {msg} {per_sec} eta {eta}",
                )
                .map(|s| s.progress_chars("=> "))
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
                bar.set_style(style);
                bar.set_prefix(label.clone());
                bar.set_message(unit);
                Display::Bar(bar)
            }
            ProgressMode::Auto => Display::Lines {
                last: Instant::now(),
            },
        };
        Self {
            display,
            label,
            unit,
            total,
            done: 0,
            started: Instant::now(),
        }
    }

    /// Records `n` more items done.
    pub fn inc(&mut self, n: u64) {
        self.done += n;
        match &mut self.display {
            Display::Bar(bar) => bar.inc(n),
            Display::Lines { last } if last.elapsed() >= PLAIN_INTERVAL => {
                *last = Instant::now();
                let elapsed = self.started.elapsed().as_secs_f64();
                let rate = if elapsed > 0.0 {
                    self.done as f64 / elapsed
                } else {
                    0.0
                };
                let eta = if rate > 0.0 {
                    self.total.saturating_sub(self.done) as f64 / rate
                } else {
                    0.0
                };
                tracing::info!(
                    progress = %self.label,
                    done = self.done,
                    total = self.total,
                    unit = self.unit,
                    rate = format!("{rate:.1}/s"),
                    eta_s = format!("{eta:.0}"),
                    "progress"
                );
            }
            _ => {}
        }
    }

    pub fn finish(self) {
        if let Display::Bar(bar) = self.display {
            bar.finish_and_clear();
        }
    }
}

/// A [`StageProgress`] that batch workers on several threads advance.
pub struct SharedProgress(std::sync::Mutex<StageProgress>);

impl SharedProgress {
    pub fn new(
        mode: ProgressMode,
        label: impl Into<String>,
        unit: &'static str,
        total: u64,
    ) -> Self {
        Self(std::sync::Mutex::new(StageProgress::new(
            mode, label, unit, total,
        )))
    }

    /// `n` more items done (from any worker).
    pub fn inc(&self, n: usize) {
        if let Ok(mut progress) = self.0.lock() {
            progress.inc(n as u64);
        }
    }

    pub fn finish(self) {
        if let Ok(progress) = self.0.into_inner() {
            progress.finish();
        }
    }
}
