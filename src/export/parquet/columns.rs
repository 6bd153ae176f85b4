//! The Arrow side: the schema of a layout, the column builders a batch of records fills, and a
//! view of a batch read back.

use super::{Layout, ParquetError, RecordKind};
use crate::config::ParquetDense;
use arrow_array::builder::StringBuilder;
use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, UInt32Type};
use arrow_array::{
    Array, ArrayRef, FixedSizeListArray, Float32Array, ListArray, RecordBatch, StringArray,
    StructArray, UInt32Array,
};
use arrow_buffer::{NullBuffer, OffsetBuffer};
use arrow_schema::{DataType, Field, FieldRef, Fields, Schema, SchemaRef};
use std::sync::Arc;

/// The list items: never null (a vector has no missing values).
fn item(data_type: DataType) -> FieldRef {
    Arc::new(Field::new("item", data_type, false))
}

fn dense_type(layout: &Layout, dim: usize) -> Result<DataType, ParquetError> {
    Ok(match layout.dense_column {
        ParquetDense::FixedSizeList => DataType::FixedSizeList(
            item(DataType::Float32),
            i32::try_from(dim).map_err(|_| ParquetError::Layout(format!("dimension {dim}")))?,
        ),
        ParquetDense::List => DataType::List(item(DataType::Float32)),
    })
}

fn sparse_fields() -> Fields {
    Fields::from(vec![
        Field::new("indices", DataType::List(item(DataType::UInt32)), false),
        Field::new("values", DataType::List(item(DataType::Float32)), false),
    ])
}

/// String columns: each name and whether it is nullable.
pub(super) type StringColumns = Vec<(&'static str, bool)>;

/// The string columns before the vectors and after them.
pub(super) fn string_columns(kind: RecordKind, layout: &Layout) -> (StringColumns, StringColumns) {
    match kind {
        RecordKind::Point => {
            let mut tail = Vec::new();
            if layout.vectors.iter().any(|v| v.kind == "sparse") {
                tail.push(("sparse_source", true));
            }
            if layout.include_text {
                tail.push(("title", true));
                tail.push(("text", false));
            }
            tail.push(("metadata", true));
            (
                vec![("id", false), ("chunk_id", false), ("collection", false)],
                tail,
            )
        }
        RecordKind::Query => (
            vec![
                ("query_id", false),
                ("query_sha256", false),
                ("source", false),
            ],
            Vec::new(),
        ),
    }
}

/// The Arrow schema of `layout`'s records of `kind`.
pub(super) fn schema(kind: RecordKind, layout: &Layout) -> Result<SchemaRef, ParquetError> {
    let (head, tail) = string_columns(kind, layout);
    let mut fields: Vec<Field> = head
        .iter()
        .map(|(name, nullable)| Field::new(*name, DataType::Utf8, *nullable))
        .collect();
    for vector in &layout.vectors {
        if head
            .iter()
            .chain(&tail)
            .any(|(name, _)| *name == vector.name)
        {
            return Err(ParquetError::Layout(format!(
                "the vector name {:?} is also a column of the Parquet files; rename the vector",
                vector.name
            )));
        }
        // A query's vector is null where its encoding failed; a point always has its dense
        // vectors, and its sparse one unless there was none.
        let nullable = kind == RecordKind::Query || vector.kind == "sparse";
        let data_type = match (vector.kind.as_str(), vector.dim) {
            ("dense", Some(dim)) => dense_type(layout, dim)?,
            ("sparse", _) => DataType::Struct(sparse_fields()),
            (kind, dim) => {
                return Err(ParquetError::Layout(format!(
                    "vector {:?}: kind {kind:?} with dimension {dim:?}",
                    vector.name
                )))
            }
        };
        fields.push(Field::new(vector.name.clone(), data_type, nullable));
    }
    fields.extend(
        tail.iter()
            .map(|(name, nullable)| Field::new(*name, DataType::Utf8, *nullable)),
    );
    Ok(Arc::new(Schema::new(fields)))
}

/// Uncompressed bytes of a row, roughly (for the row group size): the dense values, a
/// SPLADE vector of a few hundred terms, ids and payload.
pub(super) fn estimated_row_bytes(layout: &Layout) -> usize {
    layout
        .vectors
        .iter()
        .map(|v| match v.dim {
            Some(dim) => 4 * dim,
            None => 8 * 256,
        })
        .sum::<usize>()
        + 256
}

/// One dense vector column being filled.
pub(super) struct DenseBuilder {
    pub dim: usize,
    pub values: Vec<f32>,
    pub lengths: Vec<usize>,
    pub valid: Vec<bool>,
}

/// The sparse vector column being filled.
#[derive(Default)]
pub(super) struct SparseBuilder {
    pub indices: Vec<u32>,
    pub values: Vec<f32>,
    pub lengths: Vec<usize>,
    pub valid: Vec<bool>,
}

/// A batch of records being turned into columns.
pub(super) struct Columns {
    pub head: Vec<StringBuilder>,
    pub dense: Vec<DenseBuilder>,
    pub sparse: Option<SparseBuilder>,
    pub tail: Vec<StringBuilder>,
    dense_column: ParquetDense,
}

impl Columns {
    pub fn new(kind: RecordKind, layout: &Layout, rows: usize) -> Self {
        let (head, tail) = string_columns(kind, layout);
        let strings = |n: usize| {
            (0..n)
                .map(|_| StringBuilder::with_capacity(rows, 40 * rows))
                .collect()
        };
        Self {
            head: strings(head.len()),
            dense: layout
                .vectors
                .iter()
                .filter_map(|v| v.dim.filter(|_| v.kind == "dense"))
                .map(|dim| DenseBuilder {
                    dim,
                    values: Vec::with_capacity(rows * dim),
                    lengths: Vec::with_capacity(rows),
                    valid: Vec::with_capacity(rows),
                })
                .collect(),
            sparse: layout
                .vectors
                .iter()
                .any(|v| v.kind == "sparse")
                .then(SparseBuilder::default),
            tail: strings(tail.len()),
            dense_column: layout.dense_column,
        }
    }

    pub fn finish(mut self, schema: SchemaRef) -> Result<RecordBatch, super::RowError> {
        let fail = |err: arrow_schema::ArrowError| super::RowError::new(None, "", err.to_string());
        let mut arrays: Vec<ArrayRef> = Vec::new();
        for builder in &mut self.head {
            arrays.push(Arc::new(builder.finish()));
        }
        for dense in self.dense {
            let nulls = nulls(&dense.valid);
            let values = Arc::new(Float32Array::from(dense.values));
            let array: ArrayRef = match self.dense_column {
                ParquetDense::FixedSizeList => Arc::new(
                    FixedSizeListArray::try_new(
                        item(DataType::Float32),
                        dense.dim as i32,
                        values,
                        nulls,
                    )
                    .map_err(fail)?,
                ),
                ParquetDense::List => Arc::new(
                    ListArray::try_new(
                        item(DataType::Float32),
                        OffsetBuffer::from_lengths(dense.lengths),
                        values,
                        nulls,
                    )
                    .map_err(fail)?,
                ),
            };
            arrays.push(array);
        }
        if let Some(sparse) = self.sparse {
            let offsets = OffsetBuffer::from_lengths(sparse.lengths);
            let indices = ListArray::try_new(
                item(DataType::UInt32),
                offsets.clone(),
                Arc::new(UInt32Array::from(sparse.indices)),
                None,
            )
            .map_err(fail)?;
            let values = ListArray::try_new(
                item(DataType::Float32),
                offsets,
                Arc::new(Float32Array::from(sparse.values)),
                None,
            )
            .map_err(fail)?;
            arrays.push(Arc::new(
                StructArray::try_new(
                    sparse_fields(),
                    vec![Arc::new(indices), Arc::new(values)],
                    nulls(&sparse.valid),
                )
                .map_err(fail)?,
            ));
        }
        for builder in &mut self.tail {
            arrays.push(Arc::new(builder.finish()));
        }
        RecordBatch::try_new(schema, arrays).map_err(fail)
    }
}

/// A validity buffer, or none when every row is valid.
fn nulls(valid: &[bool]) -> Option<NullBuffer> {
    if valid.iter().all(|v| *v) {
        None
    } else {
        Some(NullBuffer::from(valid.to_vec()))
    }
}

/// A dense column of a batch read back.
pub(super) enum DenseView<'a> {
    Fixed(&'a FixedSizeListArray),
    List(&'a ListArray),
}

impl DenseView<'_> {
    /// Row `row`'s vector, or `None` where it is null.
    pub fn vector(&self, row: usize) -> Option<&[f32]> {
        match self {
            Self::Fixed(array) => {
                if array.is_null(row) {
                    return None;
                }
                let values = array.values().as_primitive::<Float32Type>().values();
                let start = array.value_offset_at(row);
                values.get(start..start + array.value_length() as usize)
            }
            Self::List(array) => {
                if array.is_null(row) {
                    return None;
                }
                let values = array.values().as_primitive::<Float32Type>().values();
                let offsets = array.value_offsets();
                values.get(offsets[row] as usize..offsets[row + 1] as usize)
            }
        }
    }
}

/// The sparse column of a batch read back.
pub(super) struct SparseView<'a> {
    array: &'a StructArray,
    indices: &'a ListArray,
    values: &'a ListArray,
}

impl SparseView<'_> {
    pub fn vector(&self, row: usize) -> Option<crate::vectors::SparseVector> {
        if self.array.is_null(row) {
            return None;
        }
        let range = |list: &ListArray| {
            let offsets = list.value_offsets();
            offsets[row] as usize..offsets[row + 1] as usize
        };
        let indices = self.indices.values().as_primitive::<UInt32Type>().values();
        let values = self.values.values().as_primitive::<Float32Type>().values();
        Some(crate::vectors::SparseVector {
            indices: indices.get(range(self.indices))?.to_vec(),
            values: values.get(range(self.values))?.to_vec(),
        })
    }
}

/// A batch read back, its columns by role (the batch's schema was checked against the
/// layout's before this is made).
pub(super) struct View<'a> {
    pub head: Vec<&'a StringArray>,
    pub dense: Vec<DenseView<'a>>,
    pub sparse: Option<SparseView<'a>>,
    pub tail: Vec<&'a StringArray>,
}

impl<'a> View<'a> {
    pub fn new(kind: RecordKind, layout: &Layout, batch: &'a RecordBatch) -> Result<Self, String> {
        let (head, tail) = string_columns(kind, layout);
        let mut columns = batch.columns().iter();
        let mut next = |what: &str| columns.next().ok_or_else(|| format!("no {what} column"));
        let string = |array: &'a ArrayRef, name: &str| {
            array
                .as_string_opt::<i32>()
                .ok_or_else(|| format!("column {name} is not utf8"))
        };
        let mut view = View {
            head: Vec::new(),
            dense: Vec::new(),
            sparse: None,
            tail: Vec::new(),
        };
        for (name, _) in &head {
            view.head.push(string(next(name)?, name)?);
        }
        for vector in &layout.vectors {
            let array = next(&vector.name)?;
            let wrong = || format!("column {} has an unexpected type", vector.name);
            if vector.kind == "sparse" {
                let array = array.as_struct_opt().ok_or_else(wrong)?;
                let list = |i: usize| array.column(i).as_list_opt::<i32>().ok_or_else(wrong);
                view.sparse = Some(SparseView {
                    array,
                    indices: list(0)?,
                    values: list(1)?,
                });
            } else {
                view.dense.push(match layout.dense_column {
                    ParquetDense::FixedSizeList => {
                        DenseView::Fixed(array.as_fixed_size_list_opt().ok_or_else(wrong)?)
                    }
                    ParquetDense::List => {
                        DenseView::List(array.as_list_opt::<i32>().ok_or_else(wrong)?)
                    }
                });
            }
        }
        for (name, _) in &tail {
            view.tail.push(string(next(name)?, name)?);
        }
        Ok(view)
    }
}
