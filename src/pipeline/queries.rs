//! `embed-collections embed-queries`: a query file's vectors, made exactly as a run makes them
//! (every dense model with its query prompt, SPLADE), in `query_vectors.jsonl`'s format, so a
//! client can search the points with queries the run never saw.

use super::collection::{Leasing, Stop};
use super::overlap::{InputPath, OutputKind, OutputPath};
use super::rank::{encode_dense_queries, encode_sparse_queries, query_budget};
use super::runner::{BatchRunner, RunError};
use crate::export::render_query_vectors;
use crate::input;
use crate::models::{select_devices, ResidentModels};
use crate::ranking::{QuerySet, QuerySource};
use crate::stage::Stage;
use std::path::Path;
use tracing::info;

/// What `embed-queries` wrote.
#[derive(Debug)]
pub struct EmbeddedQueries {
    pub queries: usize,
    /// Queries some model could not encode (their lines lack that vector).
    pub failed: usize,
}

impl BatchRunner {
    /// Embeds every query of `queries` with the run's models and writes them to `output`
    /// (atomically). Nothing else of a run happens: no input, no output directory, no manifest.
    pub fn embed_queries(
        &self,
        queries: &Path,
        output: &Path,
    ) -> Result<EmbeddedQueries, RunError> {
        let config = &self.config;
        // The query file, the config and the models are inputs; no collection is read.
        self.refuse_overlaps(
            &[OutputPath {
                role: "file (--output)".to_string(),
                path: output.to_path_buf(),
                kind: OutputKind::File,
            }],
            vec![InputPath::file("query file (--queries)", queries)],
            false,
        )?;
        let set = QuerySet {
            queries: input::read_queries(queries).map_err(RunError::Queries)?,
            source: QuerySource::File(queries.to_path_buf()),
            targets: None,
        };
        let devices =
            select_devices(&config.gpu.devices, config.gpu.precision).map_err(RunError::Device)?;
        let (mut models, _) =
            ResidentModels::load_all(config, &self.manager, &devices, self.exclusive_models)
                .map_err(RunError::Model)?;
        let leasing = Leasing {
            options: &self.lease_options,
            probe: self.probe.as_ref(),
            log: &self.lease_log,
        };
        let stopped = |stop: Stop| match stop {
            Stop::Interrupted => RunError::Interrupted,
            Stop::Failed(_, message) => RunError::Encode(message),
        };
        let budget = query_budget(config);
        let mut dense = Vec::new();
        for index in 0..config.dense.models.len() {
            let _lease = leasing
                .lease_and_activate(&mut models, Stage::Dense, index, budget)
                .map_err(stopped)?;
            let embedder = models
                .dense
                .get(index)
                .ok_or_else(|| RunError::Encode("dense model not loaded".to_string()))?;
            let vectors = encode_dense_queries(embedder, &set, budget).map_err(RunError::Encode)?;
            dense.push((embedder.primary().identity().name.clone(), vectors));
        }
        let sparse = if config.sparse.enabled {
            let _lease = leasing
                .lease_and_activate(&mut models, Stage::Sparse, 0, budget)
                .map_err(stopped)?;
            models
                .sparse
                .as_ref()
                .map(|encoder| encode_sparse_queries(encoder, &set, budget))
        } else {
            None
        };
        let failed = sparse
            .as_ref()
            .map_or(0, |vectors| vectors.iter().filter(|v| v.is_none()).count());
        let named: Vec<(&str, Option<&[Vec<f32>]>)> = dense
            .iter()
            .map(|(name, vectors)| (name.as_str(), Some(vectors.as_slice())))
            .collect();
        let sparse = sparse
            .as_deref()
            .map(|vectors| (config.sparse.name.as_str(), vectors));
        let write_error = |source| RunError::Write {
            path: output.to_path_buf(),
            source,
        };
        if let Some(dir) = output.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(write_error)?;
        }
        let lines = render_query_vectors(&set, &named, sparse)
            .map_err(|err| write_error(std::io::Error::other(err)))?;
        crate::export::write_atomic(output, &lines).map_err(write_error)?;
        info!(
            queries = set.queries.len(),
            failed,
            path = %output.display(),
            "query vectors written"
        );
        Ok(EmbeddedQueries {
            queries: set.queries.len(),
            failed,
        })
    }
}
