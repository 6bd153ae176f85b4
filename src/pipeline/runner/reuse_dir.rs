//! Where `--reuse` reads the earlier output: another directory, or the output directory itself
//! (moved aside first).

use super::{BatchRunner, RunError};
use crate::export::MANIFEST_FILE;
use crate::pipeline::reuse::ReuseError;
use crate::pipeline::state;
use std::path::PathBuf;
use tracing::{info, warn};

/// Where `--reuse` reads the earlier output.
pub(super) struct ReuseDir {
    pub(super) dir: PathBuf,
    /// As configured, for messages and the manifest.
    pub(super) shown: String,
    /// The output directory itself (read from its snapshot).
    pub(super) in_place: bool,
}

impl BatchRunner {
    /// Where `--reuse` reads from (see [`ReuseDir`]); `None` without it. A run reusing its own
    /// output directory moves that output into [`state::REUSE_SNAPSHOT_DIR`] first (a resumed
    /// one finds it there).
    pub(super) fn prepare_reuse(&self) -> Result<Option<ReuseDir>, RunError> {
        let Some(given) = &self.config.output.reuse else {
            return Ok(None);
        };
        let shown = self.config.display_path(given).display().to_string();
        let refuse = |reason: &str| {
            Err(RunError::Reuse(ReuseError::Unusable {
                dir: shown.clone(),
                reason: reason.to_string(),
            }))
        };
        let output_dir = &self.config.output.dir;
        let in_place = crate::files::same_dir(given, output_dir);
        if in_place && (self.shard.is_some() || self.merge.is_some()) {
            // Shards and merges reuse the earlier merged output, kept where it is until the
            // new merge has finished.
            return refuse(
                "a shard or a merge reuses an earlier merged output in another directory, not \
                 its own output directory",
            );
        }
        if !in_place {
            return Ok(Some(ReuseDir {
                dir: given.clone(),
                shown,
                in_place,
            }));
        }
        let snapshot = output_dir.join(state::REUSE_SNAPSHOT_DIR);
        if !snapshot.is_dir() && !output_dir.join(MANIFEST_FILE).is_file() {
            // The first of a series of in-place runs (a cron job's first night).
            info!(
                "--reuse: no earlier output in the output directory yet; every chunk is embedded"
            );
            return Ok(None);
        }
        if self.resume {
            if !snapshot.is_dir() {
                return refuse(
                    "--resume with --reuse of the output directory itself continues a run that                      started that way, and none did; run without --resume",
                );
            }
        } else {
            match state::snapshot_for_reuse(output_dir) {
                Ok(true) => {
                    info!(dir = %snapshot.display(), "--reuse: the earlier output moved aside until this run finishes")
                }
                Ok(false) => warn!(
                    dir = %snapshot.display(),
                    "--reuse: an earlier run reusing this directory did not finish; reusing the output it started from (its own partial work is discarded; --resume would have continued it)"
                ),
                Err(source) => {
                    return Err(RunError::Write {
                        path: snapshot,
                        source,
                    })
                }
            }
        }
        Ok(Some(ReuseDir {
            dir: snapshot,
            shown,
            in_place,
        }))
    }
}
