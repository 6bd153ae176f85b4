//! The store's round trips: windows appended, resumed, truncated, read back.

use super::*;
use crate::vectors::SparseVector;

/// One test point: its line, dense row, sparse vector and chunk id.
type TestPoint<'a> = (&'a [u8], Vec<f32>, Option<SparseVector>, &'a str);

/// Appends one window of points and commits it.
fn append(store: &mut CollectionStore, points: &[TestPoint<'_>], first: usize) {
    let mut writer = store.window().unwrap();
    for (i, (line, row, sparse, id)) in points.iter().enumerate() {
        writer
            .point(
                line,
                &[row.as_slice()],
                Some(sparse.as_ref()),
                first + i,
                id,
                "0",
            )
            .unwrap();
    }
    writer.commit(first + points.len(), |_| {}).unwrap();
}

/// Two dense models: a row holds both vectors side by side, and each model's index
/// searches its own block (a merge cuts a stored row back into the models' vectors).
#[test]
fn each_dense_model_searches_its_own_column_block() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = CollectionStore::open(tmp.path(), "fp", None).unwrap();
    let mut writer = store.window().unwrap();
    let rows: [(&[f32], &[f32]); 3] = [
        (&[1.0, 0.0], &[0.0, 0.0, 1.0]),
        (&[0.0, 1.0], &[1.0, 0.0, 0.0]),
        (&[0.5, 0.5], &[0.0, 1.0, 0.0]),
    ];
    for (i, (a, b)) in rows.iter().enumerate() {
        writer
            .point(b"p\n", &[a, b], None, i, &format!("id{i}"), "0")
            .unwrap();
    }
    writer.commit(3, |_| {}).unwrap();
    assert_eq!(store.checkpoint().dense_dims, [2, 3]);
    assert_eq!(store.checkpoint().dense_dim, 5);
    let state = store.retrieval().unwrap();
    let mapped = state.map().unwrap();
    let indexes = mapped.dense_indexes();
    assert_eq!(
        indexes
            .iter()
            .map(|i| (i.len(), i.dim()))
            .collect::<Vec<_>>(),
        [(3, Some(2)), (3, Some(3))]
    );
    let best =
        |index: &crate::retrieval::DenseIndex<'_>, query: &[f32]| index.search(query, 1)[0].index;
    assert_eq!(best(&indexes[0], &[0.0, 1.0]), 1);
    assert_eq!(best(&indexes[1], &[0.0, 1.0, 0.0]), 2);
    assert_eq!(best(&indexes[1], &[0.0, 0.0, 1.0]), 0);
    assert_eq!(best(&indexes[0], &[1.0, 0.0]), 0, "the primary's block");
    let row = [1.0, 2.0, 3.0, 4.0, 5.0];
    assert_eq!(split_row(&row, &[2, 3]), [&row[..2], &row[2..]]);
    assert_eq!(
        split_row(&row, &[]),
        [&row[..]],
        "unknown widths: the whole row"
    );
}

#[test]
fn a_killed_window_is_truncated_away_on_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("c");
    let sv = |t: &[(u32, f32)]| {
        Some(SparseVector {
            indices: t.iter().map(|x| x.0).collect(),
            values: t.iter().map(|x| x.1).collect(),
        })
    };
    let mut store = CollectionStore::open(&dir, "fp", None).unwrap();
    append(
        &mut store,
        &[
            (b"a\n", vec![1.0, 0.0], sv(&[(3, 1.0)]), "a"),
            (b"b\n", vec![0.0, 1.0], None, "b"),
        ],
        0,
    );
    // A second window written but never committed (the process "dies" before the
    // checkpoint): its bytes are in the files, not in the checkpoint.
    {
        let writers = store.writers().unwrap();
        writers.points.write_all(b"junk\n").unwrap();
        writers.dense.write_all(&[0u8; 8]).unwrap();
        writers.docs.write_all(b"[9,\"junk\"]\n").unwrap();
        for w in writers.all() {
            w.flush().unwrap();
        }
    }
    drop(store);
    let checkpoint = CollectionStore::load_checkpoint(&dir, "fp").unwrap();
    assert!(CollectionStore::load_checkpoint(&dir, "other").is_none());
    assert_eq!((checkpoint.windows, checkpoint.points), (1, 2));
    let mut store = CollectionStore::open(&dir, "fp", Some(checkpoint)).unwrap();
    append(
        &mut store,
        &[(b"c\n", vec![0.5, 0.5], sv(&[(3, 2.0), (7, 1.0)]), "c")],
        2,
    );
    let state = store.retrieval().unwrap();
    assert_eq!(state.ids, ["a", "b", "c"]);
    assert_eq!(state.positions, [0, 1, 2]);
    let mapped = state.map().unwrap();
    let dense = mapped.dense_indexes().swap_remove(0);
    assert_eq!(dense.len(), 3);
    let hits = dense.search(&[0.0, 1.0], 3);
    assert_eq!(hits.iter().map(|h| h.index).collect::<Vec<_>>(), [1, 2, 0]);
    // The scan reads the same complete windows, never the killed one's bytes.
    let mut rows = Vec::new();
    state
        .scan_dense(8, |block| {
            assert_eq!(block.len(), 2, "one 2-float row per 8-byte block");
            rows.extend_from_slice(block)
        })
        .unwrap();
    assert_eq!(rows, [1.0, 0.0, 0.0, 1.0, 0.5, 0.5]);
    let mut blocks = Vec::new();
    state
        .scan_sparse(1, |nnz, indices, values| {
            blocks.push((nnz.to_vec(), indices.to_vec(), values.to_vec()))
        })
        .unwrap();
    assert_eq!(
        blocks,
        [
            (vec![Some(1), None], vec![3], vec![1.0]),
            (vec![Some(2)], vec![3, 7], vec![2.0, 1.0])
        ],
        "blocks of about one entry, a document never split"
    );
    let sparse = mapped.sparse_index().unwrap();
    assert_eq!(
        sparse.len(),
        2,
        "the point without a sparse vector is not indexed"
    );
    let query = SparseVector {
        indices: vec![3],
        values: vec![1.0],
    };
    let hits = sparse.search(&query, 10);
    assert_eq!(hits.iter().map(|h| h.index).collect::<Vec<_>>(), [2, 0]);
    let target = tmp.path().join("out/c/points.jsonl");
    store.finish_points(&target).unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), b"a\nb\nc\n");

    // Killed after the rename but before the checkpoint said so: resuming moves nothing
    // and keeps the points (never an empty file over them).
    let mut checkpoint = store.checkpoint().clone();
    checkpoint.phase = Phase::Windows;
    drop(store);
    let mut store = CollectionStore::open(&dir, "fp", Some(checkpoint)).unwrap();
    store.finish_points(&target).unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), b"a\nb\nc\n");
    assert_eq!(store.checkpoint().phase, Phase::Embedded);
}

#[test]
fn stored_points_read_back_what_the_windows_wrote() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("c");
    let vector = SparseVector {
        indices: vec![2, 9],
        values: vec![0.5, 1.5],
    };
    let mut store = CollectionStore::open(&dir, "fp", None).unwrap();
    // Positions 0, 4 and 7 of the input: a shard's points carry their global positions.
    let mut writer = store.window().unwrap();
    writer
        .point(b"a\n", &[&[1.0, -2.0]], Some(Some(&vector)), 0, "a", "0")
        .unwrap();
    writer
        .point(b"b\n", &[&[0.25, 3.0]], Some(None), 4, "b", "0")
        .unwrap();
    writer.commit(5, |_| {}).unwrap();
    let mut writer = store.window().unwrap();
    writer
        .point(
            b"c\n",
            &[&[f32::MIN_POSITIVE, 0.0]],
            Some(Some(&vector)),
            7,
            "c",
            "0",
        )
        .unwrap();
    writer.commit(8, |_| {}).unwrap();
    let target = tmp.path().join("out/c/points.jsonl");
    store.finish_points(&target).unwrap();

    let read: Vec<StoredPoint> = StoredPoints::open(
        &dir,
        store.checkpoint(),
        &target,
        &target.with_file_name(CHUNK_HASHES_FILE),
        true,
    )
    .unwrap()
    .collect::<std::io::Result<_>>()
    .unwrap();
    let point = |line: &[u8], dense: Vec<f32>, sparse, position, id: &str| StoredPoint {
        line: line.to_vec(),
        dense,
        sparse: Some(sparse),
        position,
        id: id.to_string(),
        text_sha256: "0".to_string(),
    };
    assert_eq!(
        read,
        [
            point(b"a\n", vec![1.0, -2.0], Some(vector.clone()), 0, "a"),
            point(b"b\n", vec![0.25, 3.0], None, 4, "b"),
            point(b"c\n", vec![f32::MIN_POSITIVE, 0.0], Some(vector), 7, "c"),
        ]
    );

    // A points file that does not match the checkpoint is refused, not half read.
    std::fs::write(&target, b"a\nb\n").unwrap();
    let err = StoredPoints::open(
        &dir,
        store.checkpoint(),
        &target,
        &target.with_file_name(CHUNK_HASHES_FILE),
        true,
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("the checkpoint records"), "{err}");
}
/// A work file replaced by a link (someone with write access to the output directory) is
/// refused by name on resume; the file it points to keeps its content (`set_len` would
/// have truncated it, the window appended to it).
#[cfg(unix)]
#[test]
fn a_linked_work_file_is_refused_and_its_target_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("c");
    let mut store = CollectionStore::open(&dir, "fp", None).unwrap();
    append(&mut store, &[(b"a\n", vec![1.0, 0.0], None, "a")], 0);
    let checkpoint = store.checkpoint().clone();
    drop(store);
    let precious = tmp.path().join("precious.txt");
    std::fs::write(&precious, "keep me\n").unwrap();
    std::fs::remove_file(dir.join(POINTS_PARTIAL)).unwrap();
    std::os::unix::fs::symlink(&precious, dir.join(POINTS_PARTIAL)).unwrap();
    let mut store = CollectionStore::open(&dir, "fp", Some(checkpoint)).unwrap();
    let err = store.window().err().unwrap();
    assert!(
        err.to_string().contains(&format!(
            "{}: is a symbolic link",
            dir.join(POINTS_PARTIAL).display()
        )),
        "{err}"
    );
    // Nor is the link renamed into the output as the points file.
    let target = tmp.path().join("out/c/points.jsonl");
    assert!(store.finish_points(&target).is_err());
    assert!(std::fs::symlink_metadata(&target).is_err());
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "keep me\n");
}

/// The work directory and the collection's output directory must be real directories.
#[cfg(unix)]
#[test]
fn a_linked_work_or_output_directory_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).unwrap();
    std::os::unix::fs::symlink(&elsewhere, work.join("c")).unwrap();
    // Without a checkpoint the link is removed (never followed) and a real directory made.
    let store = CollectionStore::open(&work.join("c"), "fp", None).unwrap();
    assert!(!crate::files::is_symlink(&work.join("c")));
    drop(store);
    std::fs::remove_dir(work.join("c")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, work.join("c")).unwrap();
    let checkpoint = Checkpoint::new("fp");
    let err = CollectionStore::open(&work.join("c"), "fp", Some(checkpoint))
        .err()
        .unwrap();
    assert!(err.to_string().contains("is a symbolic link"), "{err}");
    let mut store = CollectionStore::open(&tmp.path().join("real"), "fp", None).unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::os::unix::fs::symlink(&elsewhere, out.join("c")).unwrap();
    let err = store
        .finish_points(&out.join("c/points.jsonl"))
        .unwrap_err();
    assert!(err.to_string().contains("is a symbolic link"), "{err}");
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
}
