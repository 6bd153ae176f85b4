//! The read side: the points of a finished store, in order, with their vectors, positions and
//! hashes (what a merge and a reusing run read back).

use super::{Checkpoint, CHUNK_HASHES_FILE};
use crate::pipeline::stored_vectors::{
    DENSE_FILE, DOCS_FILE, NO_SPARSE, SPARSE_INDICES, SPARSE_NNZ, SPARSE_VALUES,
};
use crate::vectors::SparseVector;
use serde::Deserialize;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

/// A stored row cut into the dense models' vectors (`dims` in config order; the whole row
/// when they are not known).
pub fn split_row<'a>(row: &'a [f32], dims: &[usize]) -> Vec<&'a [f32]> {
    if dims.iter().sum::<usize>() != row.len() {
        return vec![row];
    }
    let mut rest = row;
    dims.iter()
        .map(|&dim| {
            let (vector, tail) = rest.split_at(dim);
            rest = tail;
            vector
        })
        .collect()
}

/// One point as a finished store holds it.
#[derive(Debug, PartialEq)]
pub struct StoredPoint {
    /// The `points.jsonl` line, newline included.
    pub line: Vec<u8>,
    pub dense: Vec<f32>,
    /// `None`: the sparse stage was off; `Some(None)`: no sparse vector for this point.
    pub sparse: Option<Option<SparseVector>>,
    pub position: usize,
    pub id: String,
    /// The sha256 (hex) of the text its models embedded.
    pub text_sha256: String,
}

/// Reads back, in order, the points of a store whose windows are complete (`checkpoint`),
/// with their lines from `points` (the moved `points.jsonl`, or the work directory's
/// `points.partial` of a run that wrote no JSONL) and their hashes from `hashes`
/// (`chunk_hashes.jsonl`); `sparse`: whether the run stored sparse vectors.
pub struct StoredPoints {
    remaining: usize,
    dim: usize,
    sparse: bool,
    points: BufReader<File>,
    dense: BufReader<File>,
    nnz: Option<BufReader<File>>,
    indices: Option<BufReader<File>>,
    values: Option<BufReader<File>>,
    docs: BufReader<File>,
    hashes: BufReader<File>,
}

impl StoredPoints {
    pub fn open(
        dir: &Path,
        checkpoint: &Checkpoint,
        points: &Path,
        hashes: &Path,
        sparse: bool,
    ) -> std::io::Result<Self> {
        let open = |path: &Path| File::open(path).map(|f| BufReader::with_capacity(1 << 20, f));
        let optional = |name: &str| -> std::io::Result<Option<BufReader<File>>> {
            if sparse {
                open(&dir.join(name)).map(Some)
            } else {
                Ok(None)
            }
        };
        let lengths = &checkpoint.lengths;
        let expected = |name: &str, len: u64, want: u64| {
            if len == want {
                Ok(())
            } else {
                Err(std::io::Error::other(format!(
                    "{name} holds {len} bytes where the checkpoint records {want}"
                )))
            }
        };
        let file_len = |path: &Path| std::fs::metadata(path).map(|m| m.len());
        expected("points.jsonl", file_len(points)?, lengths.points)?;
        expected(DENSE_FILE, file_len(&dir.join(DENSE_FILE))?, lengths.dense)?;
        Ok(Self {
            remaining: checkpoint.points,
            dim: checkpoint.dense_dim,
            sparse,
            points: open(points)?,
            dense: open(&dir.join(DENSE_FILE))?,
            nnz: optional(SPARSE_NNZ)?,
            indices: optional(SPARSE_INDICES)?,
            values: optional(SPARSE_VALUES)?,
            docs: open(&dir.join(DOCS_FILE))?,
            hashes: open(hashes)?,
        })
    }

    pub fn dense_dim(&self) -> usize {
        self.dim
    }

    fn read_point(&mut self) -> std::io::Result<StoredPoint> {
        use std::io::Read;
        let truncated = |what: &str| std::io::Error::other(format!("{what} ends early"));
        let mut line = Vec::new();
        self.points.read_until(b'\n', &mut line)?;
        if !line.ends_with(b"\n") {
            return Err(truncated("points.jsonl"));
        }
        let read_f32s = |reader: &mut BufReader<File>, n: usize| -> std::io::Result<Vec<f32>> {
            let mut bytes = vec![0u8; 4 * n];
            reader.read_exact(&mut bytes)?;
            Ok(bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect())
        };
        let dense = read_f32s(&mut self.dense, self.dim)?;
        let sparse = if self.sparse {
            let (Some(nnz), Some(indices), Some(values)) =
                (&mut self.nnz, &mut self.indices, &mut self.values)
            else {
                return Err(truncated(SPARSE_NNZ));
            };
            let mut word = [0u8; 4];
            nnz.read_exact(&mut word)?;
            match u32::from_le_bytes(word) {
                NO_SPARSE => Some(None),
                n => {
                    let n = n as usize;
                    let mut bytes = vec![0u8; 4 * n];
                    indices.read_exact(&mut bytes)?;
                    let index_list = bytes
                        .chunks_exact(4)
                        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect();
                    Some(Some(SparseVector {
                        indices: index_list,
                        values: read_f32s(values, n)?,
                    }))
                }
            }
        } else {
            None
        };
        let mut doc = String::new();
        self.docs.read_line(&mut doc)?;
        let (position, id): (usize, String) = serde_json::from_str(doc.trim_end())?;
        let mut hash = String::new();
        self.hashes.read_line(&mut hash)?;
        #[derive(Deserialize)]
        struct Hash {
            chunk_id: String,
            text_sha256: String,
        }
        let hash: Hash = serde_json::from_str(hash.trim_end())?;
        if hash.chunk_id != id {
            return Err(std::io::Error::other(format!(
                "{CHUNK_HASHES_FILE} names chunk {:?} where the points have {id:?}",
                hash.chunk_id
            )));
        }
        Ok(StoredPoint {
            line,
            dense,
            sparse,
            position,
            id,
            text_sha256: hash.text_sha256,
        })
    }
}

impl Iterator for StoredPoints {
    type Item = std::io::Result<StoredPoint>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let point = self.read_point();
        if point.is_err() {
            self.remaining = 0;
        }
        Some(point)
    }
}
