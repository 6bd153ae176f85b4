use super::*;

fn layout(sparse: bool, include_text: bool, dense_column: ParquetDense) -> Layout {
    let mut vectors = vec![
        VectorColumn {
            name: "a".into(),
            kind: "dense".into(),
            dim: Some(3),
            distance: Some("cosine".into()),
            model: "m-a".into(),
            vocabulary_size: None,
        },
        VectorColumn {
            name: "b".into(),
            kind: "dense".into(),
            dim: Some(2),
            distance: Some("dot".into()),
            model: "m-b".into(),
            vocabulary_size: None,
        },
    ];
    if sparse {
        vectors.push(VectorColumn {
            name: "s".into(),
            kind: "sparse".into(),
            dim: None,
            distance: None,
            model: "m-s".into(),
            vocabulary_size: Some(30522),
        });
    }
    Layout {
        collection: "c".into(),
        vectors,
        include_text,
        dense_column,
    }
}

/// Lines as `points.jsonl` writes them (the wire types render them).
fn point_lines(sparse: bool, include_text: bool) -> Vec<Vec<u8>> {
    use crate::export::points::{render_point, PointVectors};
    use crate::vectors::{SparsePoint, SparseSource, SparseVector};
    let mut lines = Vec::new();
    for i in 0..7u32 {
        let mut metadata = serde_json::Map::new();
        if i % 2 == 0 {
            metadata.insert("z".into(), serde_json::json!(i));
            metadata.insert("a".into(), serde_json::json!({"k": [1.5, "é\"x"]}));
        }
        let chunk = crate::input::Chunk {
            id: crate::input::ChunkId(format!("chunk-{i}\u{e9}")),
            point_id: uuid::Uuid::from_u128(u128::from(i) << 64 | 0xabc),
            title: (i % 3 == 0).then(|| "T\n\"".to_string()),
            text: "some text \u{1F600}".to_string(),
            metadata,
            location: crate::input::SourceLocation {
                file: "x.jsonl".into(),
                line: Some(1),
                item: None,
            },
        };
        let a = [0.1f32 * i as f32, -1.0e-8, 1.0 / 3.0];
        let b = [f32::MIN_POSITIVE, i as f32];
        let point = SparsePoint {
            vector: SparseVector {
                indices: vec![1, 7 + i, 30000],
                values: vec![0.5, 1.25e-3, 9.0],
            },
            source: if i == 4 {
                SparseSource::Metadata
            } else {
                SparseSource::Splade
            },
        };
        let vectors = PointVectors {
            dense: vec![("a", &a[..]), ("b", &b[..])],
            sparse: (sparse && i != 5).then_some(("s", &point)),
        };
        let mut line = Vec::new();
        render_point(&mut line, "c", &chunk, &vectors, include_text).unwrap();
        line.pop();
        lines.push(line);
    }
    lines
}

#[test]
fn points_round_trip_to_the_same_lines_in_every_layout() {
    let tmp = tempfile::tempdir().unwrap();
    for (sparse, text, dense) in [
        (true, false, ParquetDense::FixedSizeList),
        (false, false, ParquetDense::FixedSizeList),
        (true, true, ParquetDense::List),
    ] {
        let lines = point_lines(sparse, text);
        let refs = || lines.iter().map(|l| Ok::<_, std::io::Error>(l.as_slice()));
        let writer = Writer::new(RecordKind::Point, layout(sparse, text, dense)).unwrap();
        let path = tmp.path().join(part_name(3));
        let written = writer.write(&path, refs(), 1).unwrap();
        assert_eq!(written.rows, 7);
        assert_eq!(row_count(&path).unwrap(), 7);
        let mut back = Vec::new();
        read_lines(RecordKind::Point, writer.layout(), &path, |line| {
            back.push(line.strip_suffix(b"\n").unwrap().to_vec());
            Ok(())
        })
        .unwrap();
        for (a, b) in lines.iter().zip(&back) {
            assert_eq!(String::from_utf8_lossy(a), String::from_utf8_lossy(b));
        }
        assert_eq!(back.len(), lines.len());
        // Written twice, the same bytes.
        let again = tmp.path().join(part_name(4));
        assert_eq!(
            writer.write(&again, refs(), 1).unwrap().sha256,
            written.sha256
        );
    }
}

#[test]
fn a_record_that_does_not_fit_names_its_line_and_field() {
    let tmp = tempfile::tempdir().unwrap();
    let writer = Writer::new(
        RecordKind::Point,
        layout(false, false, ParquetDense::FixedSizeList),
    )
    .unwrap();
    let path = tmp.path().join("x.parquet");
    let cases: [(&str, &str); 4] = [
        (
            r#"{"id":"u","vector":{"a":[1,2],"b":[1,2]},"payload":{"collection":"c","chunk_id":"1"}}"#,
            "vector.a",
        ),
        (
            r#"{"id":"u","vector":{"a":[1,2,3],"b":[1,2],"zz":[1]},"payload":{"collection":"c","chunk_id":"1"}}"#,
            "vector.zz",
        ),
        (
            r#"{"id":"u","vector":{"a":[1,2,3],"b":[1,2]},"payload":{"collection":"c","chunk_id":"1","extra":1}}"#,
            "(record)",
        ),
        (
            r#"{"id":"u","vector":{"a":[1,2,3],"b":[1,2]},"payload":{"collection":"c","chunk_id":"1","text":"t"}}"#,
            "payload.text",
        ),
    ];
    for (line, field) in cases {
        let good = br#"{"id":"u","vector":{"a":[1,2,3],"b":[1,2]},"payload":{"collection":"c","chunk_id":"0"}}"#;
        match writer.write(
            &path,
            [Ok::<_, std::io::Error>(&good[..]), Ok(line.as_bytes())],
            10,
        ) {
            Err(ParquetError::Row { source, .. }) => {
                assert_eq!(source.line, Some(11), "{line}");
                assert_eq!(source.field, field, "{line}");
            }
            other => panic!("{line}: {other:?}"),
        }
        assert!(!path.exists());
    }
}

#[test]
fn part_names_sort_and_parse_back() {
    assert_eq!(part_name(7), "part-00007.parquet");
    assert_eq!(part_index("part-00007.parquet"), Some(7));
    assert_eq!(part_index(&part_name(123456)), Some(123456));
    for other in [
        ".tmp-x.partial",
        "part-7.parquet",
        "part-0000a.parquet",
        "part-00001.parquet.partial",
    ] {
        assert_eq!(part_index(other), None, "{other}");
    }
}
