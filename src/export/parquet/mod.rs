//! Parquet points and query vectors (`output.formats = ["parquet"]`): the same records as the
//! JSONL files, one row per point (or query), as the columnar readers read them as they are —
//! pyarrow, DuckDB, Polars, Spark, LanceDB, Hugging Face `datasets`.
//!
//! # Schema (one row per point)
//!
//! | column | Arrow type | |
//! |---|---|---|
//! | `id` | `utf8`, non-null | the point's UUID |
//! | `chunk_id` | `utf8`, non-null | |
//! | `collection` | `utf8`, non-null | |
//! | one per dense vector name | `fixed_size_list<float32, dim>` (or `list<float32>` with `output.parquet_dense = "list"`), non-null | |
//! | the sparse vector name | `struct<indices: list<uint32>, values: list<float32>>`, null where the point has none | indices ascending and unique |
//! | `sparse_source` | `utf8`, nullable | `splade` or `metadata` (sparse stage only) |
//! | `title`, `text` | `utf8` | `output.include_text = true` only |
//! | `metadata` | `utf8`, nullable | the chunk's metadata as a JSON object, null when empty |
//!
//! Query vectors (`query_vectors.parquet`): `query_id`, `query_sha256`, `source`, then the same
//! vector columns, each null where encoding that query failed.
//!
//! The footer's key-value metadata carries `embed_collections.tool`,
//! `embed_collections.schema_version`, `embed_collections.collection` and
//! `embed_collections.vectors` (each vector's kind, dimension, distance, model and the sparse
//! vocabulary size, as JSON).
//!
//! # One path for every writer
//!
//! A row is made from the record's JSONL line, and a row read back renders that line again,
//! byte for byte ([`rows`]): a run, a merge and `convert` all write Parquet from the same
//! lines, so they write the same bytes, and `convert --to jsonl` gives back the JSONL a run
//! would have written. Floats survive both ways bit for bit: the JSONL holds each `f32` in its
//! shortest round-trip form and is parsed back with Rust's correctly rounded `f32` parser.

mod columns;
mod rows;

use crate::config::ParquetDense;
use crate::export::AtomicFile;
use arrow_schema::SchemaRef;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::{ArrowSchemaConverter, ArrowWriter};
use parquet::basic::{Compression, Encoding, Type as PhysicalType, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::path::{Path, PathBuf};

/// Each collection's directory of point parts: `<collection>/points/part-00000.parquet`, …
pub const POINTS_DIR: &str = "points";
/// Each collection's query vectors in Parquet.
pub const QUERY_VECTORS_PARQUET: &str = "query_vectors.parquet";
/// The version of the Parquet layout (the footer's `embed_collections.schema_version`).
pub const PARQUET_SCHEMA_VERSION: u32 = 1;
/// Footer keys.
pub const FOOTER_TOOL: &str = "embed_collections.tool";
pub const FOOTER_SCHEMA_VERSION: &str = "embed_collections.schema_version";
pub const FOOTER_COLLECTION: &str = "embed_collections.collection";
pub const FOOTER_VECTORS: &str = "embed_collections.vectors";

/// Row groups of about this many bytes (uncompressed): large enough for readers to read
/// efficiently, small enough that a reader holds one at a time comfortably.
const ROW_GROUP_BYTES: usize = 64 << 20;
/// zstd's level: on float vectors higher levels gain almost nothing and cost write time.
const ZSTD_LEVEL: i32 = 3;

pub use crate::config::PARQUET_COLUMNS as RESERVED_COLUMNS;

/// The name of part `index` (zero-padded, so names sort in point order).
pub fn part_name(index: usize) -> String {
    format!("part-{index:05}.parquet")
}

/// The index of a part file named as [`part_name`] makes them.
pub fn part_index(name: &str) -> Option<usize> {
    let digits = name.strip_prefix("part-")?.strip_suffix(".parquet")?;
    (digits.len() >= 5 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// Which records a file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    /// `points.jsonl` lines.
    Point,
    /// `query_vectors.jsonl` lines.
    Query,
}

impl RecordKind {
    /// The string columns holding one value over and over (dictionary-encoded).
    fn repeated_columns(self) -> &'static [&'static str] {
        match self {
            Self::Point => &["collection", "sparse_source"],
            Self::Query => &["source"],
        }
    }

    /// The identifier columns (with statistics, for readers that filter on them).
    fn id_columns(self) -> &'static [&'static str] {
        match self {
            Self::Point => &["id", "chunk_id"],
            Self::Query => &["query_id"],
        }
    }
}

/// A record that does not fit the layout: the line (1-based, when known), the field, why.
#[derive(Debug, thiserror::Error)]
#[error("{}field {field}: {message}", .line.map(|l| format!("line {l}, ")).unwrap_or_default())]
pub struct RowError {
    pub line: Option<usize>,
    pub field: String,
    pub message: String,
}

impl RowError {
    pub(super) fn new(line: Option<usize>, field: &str, message: impl Into<String>) -> Self {
        Self {
            line,
            field: field.to_string(),
            message: message.into(),
        }
    }

    pub(super) fn at_line(mut self, line: usize) -> Self {
        self.line = Some(line);
        self
    }
}

/// One named vector, as the footer describes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VectorColumn {
    pub name: String,
    /// `dense` or `sparse`.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dim: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distance: Option<String>,
    pub model: String,
    /// Sparse: the vocabulary size (indices are below it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vocabulary_size: Option<usize>,
}

/// What a collection's Parquet files hold: its vectors, in the points' order (dense ones in
/// configured order, then the sparse one), and whether the payload carries text.
#[derive(Clone, Debug, PartialEq)]
pub struct Layout {
    pub collection: String,
    pub vectors: Vec<VectorColumn>,
    pub include_text: bool,
    pub dense_column: ParquetDense,
}

impl Layout {
    /// The layout of a run's files, from what its manifest records (`vectors`, `models`) and
    /// its `output` settings: a run builds it from the same JSON it writes to the manifest, and
    /// `convert` reads it back, so both make the same footer.
    pub fn from_manifest(
        collection: &str,
        vectors: &serde_json::Value,
        models: &serde_json::Value,
        include_text: bool,
        dense_column: ParquetDense,
    ) -> Result<Self, ParquetError> {
        #[derive(Deserialize)]
        struct Schema {
            name: String,
            kind: String,
            #[serde(default)]
            dim: Option<usize>,
            #[serde(default)]
            distance: Option<String>,
            model: String,
        }
        #[derive(Deserialize)]
        struct Model {
            role: String,
            name: String,
            dim: usize,
        }
        let invalid = |what: &str, err: serde_json::Error| {
            ParquetError::Layout(format!("the manifest's {what}: {err}"))
        };
        let schemas: Vec<Schema> =
            serde_json::from_value(vectors.clone()).map_err(|err| invalid("vectors", err))?;
        let models: Vec<Model> =
            serde_json::from_value(models.clone()).map_err(|err| invalid("models", err))?;
        let vectors = schemas
            .into_iter()
            .map(|v| VectorColumn {
                vocabulary_size: (v.kind == "sparse")
                    .then(|| {
                        models
                            .iter()
                            .find(|m| m.role == "sparse" && m.name == v.name)
                            .map(|m| m.dim)
                    })
                    .flatten(),
                name: v.name,
                kind: v.kind,
                dim: v.dim,
                distance: v.distance,
                model: v.model,
            })
            .collect();
        Ok(Self {
            collection: collection.to_string(),
            vectors,
            include_text,
            dense_column,
        })
    }
}

/// Why a Parquet file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum ParquetError {
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {message}", .path.display())]
    Format { path: PathBuf, message: String },
    #[error("{}: {source}", .path.display())]
    Row {
        path: PathBuf,
        #[source]
        source: RowError,
    },
    #[error("the Parquet layout is invalid: {0}")]
    Layout(String),
}

impl ParquetError {
    fn format(path: &Path, message: impl std::fmt::Display) -> Self {
        Self::Format {
            path: path.to_path_buf(),
            message: message.to_string(),
        }
    }
}

/// A written Parquet file: what the manifest lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrittenFile {
    pub rows: u64,
    pub bytes: u64,
    pub sha256: String,
}

/// Writes records of one kind ([`RecordKind`]) to Parquet files of one layout.
pub struct Writer {
    kind: RecordKind,
    layout: Layout,
    schema: SchemaRef,
    properties: WriterProperties,
}

impl Writer {
    pub fn new(kind: RecordKind, layout: Layout) -> Result<Self, ParquetError> {
        let schema = columns::schema(kind, &layout)?;
        let properties = properties(kind, &layout, &schema)?;
        Ok(Self {
            kind,
            layout,
            schema,
            properties,
        })
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Writes `lines` (JSONL records of this writer's kind, with or without their newline)
    /// to `path` atomically: a hidden temporary file in the same directory, synced, then
    /// renamed. Only the columns are held, never the lines. `first_line` numbers the first
    /// line in errors (1-based).
    pub fn write<L: AsRef<[u8]>>(
        &self,
        path: &Path,
        lines: impl IntoIterator<Item = std::io::Result<L>>,
        first_line: usize,
    ) -> Result<WrittenFile, ParquetError> {
        let io = |source| ParquetError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut columns = columns::Columns::new(self.kind, &self.layout, 0);
        let mut rows = 0u64;
        for (i, line) in lines.into_iter().enumerate() {
            let line = line.map_err(io)?;
            let line = line.as_ref();
            let line = line.strip_suffix(b"\n").unwrap_or(line);
            rows::parse(self.kind, &self.layout, line, &mut columns).map_err(|err| {
                ParquetError::Row {
                    path: path.to_path_buf(),
                    source: err.at_line(first_line + i),
                }
            })?;
            rows += 1;
        }
        let batch = columns
            .finish(self.schema.clone())
            .map_err(|source| ParquetError::Row {
                path: path.to_path_buf(),
                source,
            })?;
        let file = AtomicFile::create(path).map_err(io)?;
        let mut writer =
            ArrowWriter::try_new(file, self.schema.clone(), Some(self.properties.clone()))
                .map_err(|err| ParquetError::format(path, err))?;
        writer
            .write(&batch)
            .map_err(|err| ParquetError::format(path, err))?;
        let file = writer
            .into_inner()
            .map_err(|err| ParquetError::format(path, err))?;
        file.commit().map_err(io)?;
        let digest = crate::files::digest_file(path).map_err(io)?;
        Ok(WrittenFile {
            rows,
            bytes: digest.bytes,
            sha256: digest.sha256,
        })
    }
}

/// Writer properties: zstd; dictionaries only for the columns that repeat one value
/// (`collection`, `source`, `sparse_source`); statistics only for the id columns (vector
/// statistics are min/max of floats nobody filters on); float vector values byte-stream-split
/// (their bytes compress far better by position) and sparse indices delta-coded (ascending).
fn properties(
    kind: RecordKind,
    layout: &Layout,
    schema: &SchemaRef,
) -> Result<WriterProperties, ParquetError> {
    let level =
        ZstdLevel::try_new(ZSTD_LEVEL).map_err(|err| ParquetError::Layout(err.to_string()))?;
    let row_bytes = columns::estimated_row_bytes(layout).max(1);
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_dictionary_enabled(false)
        .set_statistics_enabled(EnabledStatistics::None)
        .set_max_row_group_row_count(Some((ROW_GROUP_BYTES / row_bytes).max(1)))
        .set_key_value_metadata(Some(footer(layout)?));
    let descriptor = ArrowSchemaConverter::new()
        .convert(schema)
        .map_err(|err| ParquetError::Layout(err.to_string()))?;
    let vector_names: Vec<&str> = layout.vectors.iter().map(|v| v.name.as_str()).collect();
    for column in descriptor.columns() {
        let path = column.path().clone();
        let top = path.parts().first().map(String::as_str).unwrap_or_default();
        if vector_names.contains(&top) {
            let encoding = match column.physical_type() {
                PhysicalType::FLOAT => Encoding::BYTE_STREAM_SPLIT,
                _ => Encoding::DELTA_BINARY_PACKED,
            };
            builder = builder.set_column_encoding(path, encoding);
        } else if kind.repeated_columns().contains(&top) {
            builder = builder.set_column_dictionary_enabled(path, true);
        } else if kind.id_columns().contains(&top) {
            builder = builder.set_column_statistics_enabled(path, EnabledStatistics::Chunk);
        }
    }
    Ok(builder.build())
}

fn footer(layout: &Layout) -> Result<Vec<KeyValue>, ParquetError> {
    let vectors = serde_json::to_string(&layout.vectors)
        .map_err(|err| ParquetError::Layout(err.to_string()))?;
    Ok(vec![
        KeyValue::new(
            FOOTER_TOOL.to_string(),
            format!("{} {}", crate::TOOL_NAME, crate::TOOL_VERSION),
        ),
        KeyValue::new(
            FOOTER_SCHEMA_VERSION.to_string(),
            PARQUET_SCHEMA_VERSION.to_string(),
        ),
        KeyValue::new(FOOTER_COLLECTION.to_string(), layout.collection.clone()),
        KeyValue::new(FOOTER_VECTORS.to_string(), vectors),
    ])
}

/// Reads the records of the Parquet file `path` back as their JSONL lines (each with its
/// newline), in order, handing each to `line`; returns the row count.
pub fn read_lines(
    kind: RecordKind,
    layout: &Layout,
    path: &Path,
    mut line: impl FnMut(&[u8]) -> std::io::Result<()>,
) -> Result<u64, ParquetError> {
    let io = |source| ParquetError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|builder| builder.with_batch_size(4096).build())
        .map_err(|err| ParquetError::format(path, err))?;
    let expected = columns::schema(kind, layout)?;
    let mut rows = 0u64;
    let mut buffer = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|err| ParquetError::format(path, err))?;
        if batch.schema().fields() != expected.fields() {
            return Err(ParquetError::format(
                path,
                format!(
                    "its columns are not this collection's layout: found {:?}, expected {:?}",
                    batch.schema().fields(),
                    expected.fields()
                ),
            ));
        }
        let view = columns::View::new(kind, layout, &batch)
            .map_err(|err| ParquetError::format(path, err))?;
        for row in 0..batch.num_rows() {
            buffer.clear();
            rows::render(kind, layout, &view, row, &mut buffer).map_err(|source| {
                ParquetError::Row {
                    path: path.to_path_buf(),
                    source,
                }
            })?;
            buffer.push(b'\n');
            line(&buffer).map_err(io)?;
            rows += 1;
        }
    }
    Ok(rows)
}

/// The row count of a Parquet file, from its footer.
pub fn row_count(path: &Path) -> Result<u64, ParquetError> {
    let file = File::open(path).map_err(|source| ParquetError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|err| ParquetError::format(path, err))?;
    Ok(builder.metadata().file_metadata().num_rows().max(0) as u64)
}

/// The part files in `dir`, by index (names as [`part_name`] makes them; temporary files and
/// anything else are not parts).
pub fn parts_in(dir: &Path) -> std::io::Result<Vec<(usize, PathBuf)>> {
    let mut parts = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(parts),
        Err(err) => return Err(err),
    };
    for entry in entries {
        let entry = entry?;
        if let Some(index) = entry.file_name().to_str().and_then(part_index) {
            parts.push((index, entry.path()));
        }
    }
    parts.sort();
    Ok(parts)
}

#[cfg(test)]
mod tests;
