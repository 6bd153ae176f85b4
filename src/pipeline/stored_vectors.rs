//! The retrieval state: a collection's stored vectors (the work directory's `dense.f32` and
//! sparse CSR files, see [`super::store`]) read back for ranking, either streamed in blocks of
//! fixed size (memory independent of the collection) or memory-mapped whole for the in-memory
//! index ([`super::search`] chooses).

/// The work directory's dense rows (row-major little-endian f32).
pub(super) const DENSE_FILE: &str = "dense.f32";
/// Sparse vectors in CSR form: entries per point, then their term ids and their weights.
pub(super) const SPARSE_NNZ: &str = "sparse.nnz";
pub(super) const SPARSE_INDICES: &str = "sparse.indices";
pub(super) const SPARSE_VALUES: &str = "sparse.values";
/// Per point: `[stream position, chunk id]`.
pub(super) const DOCS_FILE: &str = "docs.jsonl";
/// `sparse.nnz` entry of a point without a sparse vector.
pub(super) const NO_SPARSE: u32 = u32::MAX;

/// Byte lengths of the files ranking reads, at the last complete window (the checkpoint's).
#[derive(Clone, Copy, Debug, Default)]
pub struct VectorLengths {
    pub dense: u64,
    pub sparse_nnz: u64,
    pub sparse_indices: u64,
    pub sparse_values: u64,
    pub docs: u64,
}
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::ops::Range;
use std::path::{Path, PathBuf};

/// What ranking searches: the complete windows' vectors (on disk) and the points' chunk ids.
pub struct RetrievalState {
    dir: PathBuf,
    lengths: VectorLengths,
    /// Floats per stored dense row.
    dense_dim: usize,
    /// Each dense model's width within a row, in config order.
    dense_dims: Vec<usize>,
    /// Per point: its position in the input stream.
    pub positions: Vec<usize>,
    /// Per point: its chunk id.
    pub ids: Vec<String>,
}

impl RetrievalState {
    /// The state in the work directory `dir` up to `lengths`: rows `dense_dim` floats wide,
    /// holding each dense model's vector (`dense_dims`, config order) side by side.
    pub fn open(
        dir: &Path,
        lengths: VectorLengths,
        dense_dim: usize,
        dense_dims: Vec<usize>,
    ) -> std::io::Result<Self> {
        let docs = read_docs(&dir.join(DOCS_FILE), lengths.docs)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            lengths,
            dense_dim,
            dense_dims,
            positions: docs.iter().map(|(p, _)| *p).collect(),
            ids: docs.into_iter().map(|(_, id)| id).collect(),
        })
    }

    /// Floats per stored dense row.
    pub fn dense_width(&self) -> usize {
        self.dense_dim
    }

    /// Each dense model's columns within a row, in config order. A state from before several
    /// models were stored (or with no points) has one block.
    pub fn dense_columns(&self) -> Vec<Range<usize>> {
        if self.dense_dims.is_empty() {
            return std::iter::once(0..self.dense_dim).collect();
        }
        let mut start = 0;
        self.dense_dims
            .iter()
            .map(|&dim| {
                start += dim;
                start - dim..start
            })
            .collect()
    }

    /// Whether sparse vectors were stored.
    pub fn has_sparse(&self) -> bool {
        self.lengths.sparse_nnz > 0
    }

    /// Bytes of stored vectors (dense rows and sparse CSR).
    pub fn stored_bytes(&self) -> u64 {
        let l = &self.lengths;
        l.dense + l.sparse_nnz + l.sparse_indices + l.sparse_values
    }

    /// What the in-memory index holds resident: every stored vector mapped (and so paged in by
    /// the search), the inverted index's postings (a chunk number and a weight per stored
    /// sparse entry, as many bytes again as the CSR's indices and values), and per query being
    /// searched (one per thread) a scored candidate for every point (16 B dense, 5 B sparse).
    pub fn index_bytes(&self) -> u64 {
        let postings = if self.lengths.sparse_nnz > 0 {
            self.lengths.sparse_indices + self.lengths.sparse_values
        } else {
            0
        };
        let scratch = rayon::current_num_threads() as u64 * self.ids.len() as u64 * 21;
        self.stored_bytes() + postings + scratch
    }

    /// The stored vectors memory-mapped whole, for the in-memory index.
    pub fn map(&self) -> std::io::Result<MappedVectors> {
        let l = &self.lengths;
        Ok(MappedVectors {
            dense: MappedF32::open(&self.dir.join(DENSE_FILE), l.dense)?,
            dense_dim: self.dense_dim,
            columns: self.dense_columns(),
            sparse_nnz: MappedU32::open(&self.dir.join(SPARSE_NNZ), l.sparse_nnz)?,
            sparse_indices: MappedU32::open(&self.dir.join(SPARSE_INDICES), l.sparse_indices)?,
            sparse_values: MappedF32::open(&self.dir.join(SPARSE_VALUES), l.sparse_values)?,
        })
    }

    /// Streams the dense rows: `each` gets whole rows, at most `block_bytes` of them at a time
    /// (at least one row), read into one reused buffer.
    pub fn scan_dense(
        &self,
        block_bytes: usize,
        mut each: impl FnMut(&[f32]),
    ) -> std::io::Result<()> {
        let width = self.dense_dim;
        if width == 0 || self.lengths.dense == 0 {
            return Ok(());
        }
        let rows_total = self.lengths.dense / (4 * width as u64);
        let block_rows = (block_bytes / (4 * width)).max(1);
        let mut file = ScalarReader::open(&self.dir.join(DENSE_FILE), self.lengths.dense)?;
        let mut buffer: Vec<f32> = Vec::new();
        let mut left = rows_total;
        while left > 0 {
            let rows = usize::try_from(left).map_or(block_rows, |l| l.min(block_rows));
            file.read(&mut buffer, rows * width)?;
            each(&buffer);
            left -= rows as u64;
        }
        Ok(())
    }

    /// Streams the sparse vectors in blocks of about `block_entries` entries (at least one
    /// document): `each` gets, per document of the block, its entry count (`None`: no sparse
    /// vector), and the block's concatenated term ids and weights.
    pub fn scan_sparse(
        &self,
        block_entries: usize,
        mut each: impl FnMut(&[Option<u32>], &[u32], &[f32]),
    ) -> std::io::Result<()> {
        const NNZ_READ: usize = 4096;
        let docs_total = self.lengths.sparse_nnz / 4;
        if docs_total == 0 {
            return Ok(());
        }
        let mut nnz_file = ScalarReader::open(&self.dir.join(SPARSE_NNZ), self.lengths.sparse_nnz)?;
        let mut indices_file =
            ScalarReader::open(&self.dir.join(SPARSE_INDICES), self.lengths.sparse_indices)?;
        let mut values_file =
            ScalarReader::open(&self.dir.join(SPARSE_VALUES), self.lengths.sparse_values)?;
        let (mut raw, mut counts, mut indices, mut values) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut left = docs_total;
        while left > 0 {
            let read = usize::try_from(left).map_or(NNZ_READ, |l| l.min(NNZ_READ));
            nnz_file.read(&mut raw, read)?;
            left -= read as u64;
            let mut rest = &raw[..];
            while !rest.is_empty() {
                // Documents while their entries fit the block (one at least).
                counts.clear();
                let mut entries = 0usize;
                for &n in rest {
                    let n = (n != NO_SPARSE).then_some(n);
                    let more = n.map_or(0, |n| n as usize);
                    if !counts.is_empty() && entries + more > block_entries {
                        break;
                    }
                    entries += more;
                    counts.push(n);
                }
                indices_file.read(&mut indices, entries)?;
                values_file.read(&mut values, entries)?;
                each(&counts, &indices, &values);
                rest = &rest[counts.len()..];
            }
        }
        Ok(())
    }
}

/// Sequential reads of little-endian scalars from the first `len` bytes of a file.
struct ScalarReader {
    file: std::io::Take<BufReader<File>>,
}

impl ScalarReader {
    fn open(path: &Path, len: u64) -> std::io::Result<Self> {
        Ok(Self {
            file: BufReader::with_capacity(1 << 16, File::open(path)?).take(len),
        })
    }

    /// Replaces `into` with the next `count` scalars (an error if the file ends first).
    fn read<T: bytemuck::Pod + Default>(
        &mut self,
        into: &mut Vec<T>,
        count: usize,
    ) -> std::io::Result<()> {
        into.clear();
        into.resize(count, T::default());
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(into.as_mut_slice());
        self.file.read_exact(bytes)?;
        if cfg!(target_endian = "big") {
            bytes
                .chunks_exact_mut(std::mem::size_of::<T>())
                .for_each(<[u8]>::reverse);
        }
        Ok(())
    }
}

/// The stored vectors mapped whole: the in-memory index's view.
pub struct MappedVectors {
    dense: MappedF32,
    dense_dim: usize,
    columns: Vec<Range<usize>>,
    sparse_nnz: MappedU32,
    sparse_indices: MappedU32,
    sparse_values: MappedF32,
}

impl MappedVectors {
    /// One index per dense model, in config order: each reads its column block of the rows.
    pub fn dense_indexes(&self) -> Vec<crate::retrieval::DenseIndex<'_>> {
        let rows = self.dense.as_slice();
        self.columns
            .iter()
            .map(|columns| {
                crate::retrieval::DenseIndex::columns(rows, self.dense_dim, columns.clone())
            })
            .collect()
    }

    /// The inverted index over the points' sparse vectors (`None` when none were stored).
    pub fn sparse_index(&self) -> Option<crate::retrieval::SparseIndex> {
        let nnz = self.sparse_nnz.as_slice();
        if nnz.is_empty() {
            return None;
        }
        let (indices, values) = (
            self.sparse_indices.as_slice(),
            self.sparse_values.as_slice(),
        );
        Some(crate::retrieval::SparseIndex::build(nnz.len(), || {
            let mut offset = 0usize;
            (0..=u32::MAX).zip(nnz).filter_map(move |(doc, &n)| {
                if n == NO_SPARSE {
                    return None;
                }
                let start = offset;
                offset += n as usize;
                let end = offset.min(indices.len()).min(values.len());
                let start = start.min(end);
                Some((doc, (&indices[start..end], &values[start..end])))
            })
        }))
    }
}

fn read_docs(path: &Path, len: u64) -> std::io::Result<Vec<(usize, String)>> {
    let mut docs = Vec::new();
    if len == 0 {
        return Ok(docs);
    }
    let file = File::open(path)?;
    let mut read = 0u64;
    for line in BufReader::new(file).lines() {
        let line = line?;
        read += line.len() as u64 + 1;
        if read > len {
            break;
        }
        let doc: (usize, String) = serde_json::from_str(&line)?;
        docs.push(doc);
    }
    Ok(docs)
}

/// A file of little-endian scalars, memory-mapped (so the retrieval matrix is paged in from the
/// file instead of held on the heap), or read into memory where mapping is not possible.
enum Mapped {
    Map(memmap2::Mmap),
    Heap(Vec<u8>),
    Empty,
}

impl Mapped {
    fn open(path: &Path, len: u64) -> std::io::Result<Self> {
        if len == 0 {
            return Ok(Mapped::Empty);
        }
        let file = File::open(path)?;
        let len_usize = usize::try_from(len).map_err(std::io::Error::other)?;
        // SAFETY: the file lives in this run's locked work directory and is not written while
        // the map exists (ranking runs after every window of the collection is committed).
        match unsafe { memmap2::MmapOptions::new().len(len_usize).map(&file) } {
            Ok(map) => Ok(Mapped::Map(map)),
            Err(_) => {
                let mut bytes = std::fs::read(path)?;
                bytes.truncate(len_usize);
                Ok(Mapped::Heap(bytes))
            }
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Mapped::Map(map) => map,
            Mapped::Heap(bytes) => bytes,
            Mapped::Empty => &[],
        }
    }
}

macro_rules! mapped_scalars {
    ($name:ident, $ty:ty) => {
        /// A memory-mapped array of little-endian scalars.
        pub struct $name {
            mapped: Mapped,
            /// Copy used when the bytes cannot be viewed in place (alignment, big-endian).
            owned: Option<Vec<$ty>>,
        }

        impl $name {
            fn open(path: &Path, len: u64) -> std::io::Result<Self> {
                let mapped = Mapped::open(path, len)?;
                let in_place = cfg!(target_endian = "little")
                    && bytemuck::try_cast_slice::<u8, $ty>(mapped.bytes()).is_ok();
                let owned = (!in_place).then(|| {
                    mapped
                        .bytes()
                        .chunks_exact(std::mem::size_of::<$ty>())
                        .map(|b| <$ty>::from_le_bytes(b.try_into().unwrap_or_default()))
                        .collect()
                });
                Ok(Self { mapped, owned })
            }

            pub fn as_slice(&self) -> &[$ty] {
                match &self.owned {
                    Some(owned) => owned,
                    None => bytemuck::try_cast_slice(self.mapped.bytes()).unwrap_or(&[]),
                }
            }
        }
    };
}

mapped_scalars!(MappedF32, f32);
mapped_scalars!(MappedU32, u32);
