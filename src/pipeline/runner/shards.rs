//! A sharded run's or a merge's part of the run: how the collections are shared among the
//! shards, the merge's checks, and what the manifest records of it.

use super::{BatchRunner, RunError};
use crate::export::manifest::{MergedShard, ShardRecord, SharedCollection};
use crate::input::{Collection, InputHashes};
use crate::pipeline::resume;
use crate::shard::{Partition, ShardWork};
use std::collections::BTreeMap;
use std::path::Path;
use tracing::info;

/// A shard's or a merge's manifest sections.
#[derive(Default)]
pub(super) struct Sharding {
    pub(super) shard: Option<ShardRecord>,
    pub(super) merged_from: Vec<MergedShard>,
}

/// How the collections are shared among the shards, and their inputs' hashes.
pub(super) struct ShardPlan {
    pub(super) partition: Vec<SharedCollection>,
    pub(super) input_sha256: BTreeMap<String, String>,
}

impl BatchRunner {
    pub(super) fn plan_shards(
        &self,
        fingerprint: &serde_json::Value,
        collections: &[Collection],
        hashes: &InputHashes,
    ) -> Result<Option<ShardPlan>, RunError> {
        let count = match (self.shard, &self.merge) {
            (Some(shard), _) => shard.count,
            (None, Some(set)) => set.count,
            (None, None) => return Ok(None),
        };
        let partition_rule = Partition {
            count,
            split_bytes: self.config.shard.split_bytes.0,
        };
        let read_error = |path: &Path, source| RunError::Read {
            path: path.to_path_buf(),
            source,
        };
        let mut partition = Vec::new();
        for collection in collections {
            let bytes = crate::shard::input_bytes(collection)
                .map_err(|err| read_error(&self.config.input.root, err))?;
            partition.push(SharedCollection {
                name: collection.name.clone(),
                bytes,
                share: partition_rule.share(&collection.name, bytes),
            });
        }
        let portable = resume::portable(fingerprint);
        let mut input_sha256 = BTreeMap::new();
        if let Some(set) = &self.merge {
            for collection in collections {
                let sha = crate::shard::input_sha256(collection, hashes)
                    .map_err(|err| read_error(&self.config.input.root, err))?;
                input_sha256.insert(collection.name.clone(), sha);
            }
            set.verify(
                &self.config.output.dir,
                &portable,
                &partition,
                &input_sha256,
            )
            .map_err(RunError::Merge)?;
            info!(
                shards = set.count,
                "shards checked: complete, same configuration, models and input"
            );
        }
        if let Some(shard) = self.shard {
            let owned = partition
                .iter()
                .filter(|c| ShardWork::of(c.share, shard) != ShardWork::None)
                .count();
            info!(shard = %shard, collections = owned, of = partition.len(), "this shard's part of the input");
            self.sharding_mut().shard = Some(ShardRecord {
                index: shard.index,
                count: shard.count,
                rule: crate::shard::RULE.to_string(),
                split_bytes: partition_rule.split_bytes,
                fingerprint_sha256: resume::fingerprint_sha256(&portable),
                fingerprint: portable,
                partition: partition.clone(),
            });
        }
        Ok(Some(ShardPlan {
            partition,
            input_sha256,
        }))
    }
}
