//! A record's JSONL line to its row, and a row back to the same line.
//!
//! Parsing is strict: a field the layout has no column for is an error naming it (never a
//! value silently dropped), and so is a dense vector of the wrong length or sparse indices
//! that are not ascending. Floats are parsed from their decimal text with Rust's correctly
//! rounded `f32` parser, so the shortest round-trip text the JSONL holds gives back the same
//! bits.

use super::columns::{Columns, View};
use super::{Layout, RecordKind, RowError};
use crate::export::wire::{NamedVectors, VectorRef};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::BTreeMap;

fn field_error(field: &str, message: impl Into<String>) -> RowError {
    RowError::new(None, field, message)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PointIn<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    vector: BTreeMap<Cow<'a, str>, &'a RawValue>,
    #[serde(borrow)]
    payload: PayloadIn<'a>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PayloadIn<'a> {
    #[serde(borrow)]
    collection: Cow<'a, str>,
    #[serde(borrow)]
    chunk_id: Cow<'a, str>,
    #[serde(borrow, default)]
    title: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    metadata: Option<&'a RawValue>,
    #[serde(borrow, default)]
    sparse_source: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryIn<'a> {
    #[serde(borrow)]
    query_id: Cow<'a, str>,
    #[serde(borrow)]
    query_sha256: Cow<'a, str>,
    #[serde(borrow)]
    source: Cow<'a, str>,
    #[serde(borrow)]
    vector: BTreeMap<Cow<'a, str>, &'a RawValue>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SparseIn<'a> {
    indices: Vec<u32>,
    #[serde(borrow)]
    values: &'a RawValue,
}

/// Parses one line into the next row of `columns`.
pub(super) fn parse(
    kind: RecordKind,
    layout: &Layout,
    line: &[u8],
    columns: &mut Columns,
) -> Result<(), RowError> {
    let json = |err: serde_json::Error| field_error("(record)", err.to_string());
    let vectors = match kind {
        RecordKind::Point => {
            let point: PointIn<'_> = serde_json::from_slice(line).map_err(json)?;
            let payload = &point.payload;
            columns.head[0].append_value(&point.id);
            columns.head[1].append_value(&payload.chunk_id);
            columns.head[2].append_value(&payload.collection);
            let mut tail = columns.tail.iter_mut();
            let mut next = |field: &str| {
                tail.next()
                    .ok_or_else(|| field_error(field, "the layout has no column for it"))
            };
            let has_sparse = layout.vectors.iter().any(|v| v.kind == "sparse");
            match (&payload.sparse_source, has_sparse) {
                (source, true) => next("payload.sparse_source")?.append_option(source.as_deref()),
                (Some(_), false) => {
                    return Err(field_error(
                        "payload.sparse_source",
                        "a sparse source without a sparse vector in the layout",
                    ))
                }
                (None, false) => {}
            }
            if layout.include_text {
                next("payload.title")?.append_option(payload.title.as_deref());
                let text = payload.text.as_deref().ok_or_else(|| {
                    field_error("payload.text", "missing (output.include_text is on)")
                })?;
                next("payload.text")?.append_value(text);
            } else if payload.title.is_some() || payload.text.is_some() {
                return Err(field_error(
                    "payload.text",
                    "text in the payload, but the layout has no text columns (output.include_text is off)",
                ));
            }
            next("payload.metadata")?.append_option(payload.metadata.map(RawValue::get));
            parse_vectors(kind, layout, &point.vector, columns)
        }
        RecordKind::Query => {
            let query: QueryIn<'_> = serde_json::from_slice(line).map_err(json)?;
            columns.head[0].append_value(&query.query_id);
            columns.head[1].append_value(&query.query_sha256);
            columns.head[2].append_value(&query.source);
            parse_vectors(kind, layout, &query.vector, columns)
        }
    };
    vectors
}

fn parse_vectors(
    kind: RecordKind,
    layout: &Layout,
    vectors: &BTreeMap<Cow<'_, str>, &RawValue>,
    columns: &mut Columns,
) -> Result<(), RowError> {
    if let Some(unknown) = vectors
        .keys()
        .find(|name| !layout.vectors.iter().any(|v| v.name == **name))
    {
        return Err(field_error(
            &format!("vector.{unknown}"),
            "not one of this collection's vectors",
        ));
    }
    let mut dense = columns.dense.iter_mut();
    for vector in &layout.vectors {
        let field = format!("vector.{}", vector.name);
        let raw = vectors.get(vector.name.as_str());
        if vector.kind == "sparse" {
            let Some(sparse) = columns.sparse.as_mut() else {
                return Err(field_error(&field, "no sparse column"));
            };
            match raw {
                None => {
                    sparse.lengths.push(0);
                    sparse.valid.push(false);
                }
                Some(raw) => {
                    let parsed: SparseIn<'_> = serde_json::from_str(raw.get())
                        .map_err(|err| field_error(&field, err.to_string()))?;
                    if parsed.indices.windows(2).any(|w| w[0] >= w[1]) {
                        return Err(field_error(
                            &format!("{field}.indices"),
                            "not strictly ascending",
                        ));
                    }
                    let n = parse_f32s(parsed.values.get(), &mut sparse.values)
                        .map_err(|message| field_error(&format!("{field}.values"), message))?;
                    if n != parsed.indices.len() {
                        return Err(field_error(
                            &field,
                            format!("{} indices but {n} values", parsed.indices.len()),
                        ));
                    }
                    sparse.indices.extend_from_slice(&parsed.indices);
                    sparse.lengths.push(n);
                    sparse.valid.push(true);
                }
            }
            continue;
        }
        let Some(column) = dense.next() else {
            return Err(field_error(&field, "no dense column"));
        };
        match raw {
            None if kind == RecordKind::Query => {
                column.values.extend(std::iter::repeat_n(0.0, column.dim));
                column.lengths.push(0);
                column.valid.push(false);
            }
            None => return Err(field_error(&field, "missing")),
            Some(raw) => {
                let n = parse_f32s(raw.get(), &mut column.values)
                    .map_err(|message| field_error(&field, message))?;
                if n != column.dim {
                    column.values.truncate(column.values.len() - n);
                    return Err(field_error(
                        &field,
                        format!("{n} values where the vector has dimension {}", column.dim),
                    ));
                }
                column.lengths.push(n);
                column.valid.push(true);
            }
        }
    }
    Ok(())
}

/// Parses a JSON array of numbers as `f32`s (correctly rounded from their decimal text),
/// appending them to `out`; returns how many.
fn parse_f32s(raw: &str, out: &mut Vec<f32>) -> Result<usize, String> {
    let inner = raw
        .trim()
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .ok_or("not an array of numbers")?;
    if inner.trim().is_empty() {
        return Ok(0);
    }
    let before = out.len();
    for number in inner.split(',') {
        let number = number.trim();
        let value: f32 = number
            .parse()
            .map_err(|_| format!("{number:?} is not a number"))?;
        if !value.is_finite() {
            return Err(format!("{number} does not fit a 32-bit float"));
        }
        out.push(value);
    }
    Ok(out.len() - before)
}

#[derive(Serialize)]
struct PointOut<'a> {
    id: &'a str,
    vector: NamedVectors<'a>,
    payload: PayloadOut<'a>,
}

/// The payload as `points.jsonl` writes it (the order of `export::wire::Payload`).
#[derive(Serialize)]
struct PayloadOut<'a> {
    collection: &'a str,
    chunk_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    title: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sparse_source: Option<&'a str>,
}

#[derive(Serialize)]
struct QueryOut<'a> {
    query_id: &'a str,
    query_sha256: &'a str,
    source: &'a str,
    vector: NamedVectors<'a>,
}

/// Renders row `row` of `view` as its JSONL line (without the newline) into `out`.
pub(super) fn render(
    kind: RecordKind,
    layout: &Layout,
    view: &View<'_>,
    row: usize,
    out: &mut Vec<u8>,
) -> Result<(), RowError> {
    let sparse = view.sparse.as_ref().and_then(|s| s.vector(row));
    let mut named: Vec<(&str, VectorRef<'_>)> = Vec::new();
    let mut dense = view.dense.iter();
    for vector in &layout.vectors {
        if vector.kind == "sparse" {
            if let Some(sparse) = &sparse {
                named.push((&vector.name, VectorRef::Sparse(sparse)));
            }
        } else if let Some(values) = dense.next().and_then(|column| column.vector(row)) {
            named.push((&vector.name, VectorRef::Dense(values)));
        }
    }
    fn string(array: &arrow_array::StringArray, row: usize) -> Option<&str> {
        use arrow_array::Array;
        (!array.is_null(row)).then(|| array.value(row))
    }
    let required = |i: usize, field: &str| {
        view.head
            .get(i)
            .and_then(|a| string(a, row))
            .ok_or_else(|| RowError::new(None, field, "null"))
    };
    let json = |err: serde_json::Error| RowError::new(None, "(record)", err.to_string());
    match kind {
        RecordKind::Point => {
            let mut tail = view.tail.iter();
            let mut take = || tail.next().and_then(|a| string(a, row));
            let sparse_source = if view.sparse.is_some() { take() } else { None };
            let (title, text) = if layout.include_text {
                (take(), take())
            } else {
                (None, None)
            };
            let metadata = match take() {
                Some(text) => Some(
                    serde_json::from_str::<&RawValue>(text)
                        .map_err(|err| RowError::new(None, "metadata", err.to_string()))?,
                ),
                None => None,
            };
            let line = PointOut {
                id: required(0, "id")?,
                vector: NamedVectors(named),
                payload: PayloadOut {
                    collection: required(2, "collection")?,
                    chunk_id: required(1, "chunk_id")?,
                    title,
                    text,
                    metadata,
                    sparse_source,
                },
            };
            serde_json::to_writer(out, &line).map_err(json)
        }
        RecordKind::Query => {
            let line = QueryOut {
                query_id: required(0, "query_id")?,
                query_sha256: required(1, "query_sha256")?,
                source: required(2, "source")?,
                vector: NamedVectors(named),
            };
            serde_json::to_writer(out, &line).map_err(json)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_f32s;

    #[test]
    fn floats_parse_back_to_the_same_bits() {
        let values = [
            0.1f32,
            -1.0e-8,
            3.4028235e38,
            1.0 / 3.0,
            -0.0,
            f32::from_bits(5),
        ];
        let text = serde_json::to_string(&values).unwrap();
        let mut parsed = Vec::new();
        assert_eq!(parse_f32s(&text, &mut parsed).unwrap(), values.len());
        for (a, b) in values.iter().zip(&parsed) {
            assert_eq!(a.to_bits(), b.to_bits(), "{text}");
        }
        assert!(parse_f32s("[1e39]", &mut parsed).is_err());
        assert!(parse_f32s("[1,\"x\"]", &mut parsed).is_err());
        assert_eq!(parse_f32s("[ ]", &mut parsed).unwrap(), 0);
    }
}
