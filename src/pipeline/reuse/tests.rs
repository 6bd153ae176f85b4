//! Reuse against earlier outputs: matching models, reading points and hashes back, the
//! window plans and the changes.

use super::*;

#[test]
fn exact_floats_round_trip_and_refuse_other_forms() {
    let values = [0.1f32, -1.5e-7, 3.4028235e38, 1.0, 0.0];
    let text = serde_json::to_string(&values).unwrap();
    assert_eq!(exact_f32s(&text).unwrap(), values);
    // Not the shortest form: parsing would give the same float, but the reused bytes
    // could not be promised.
    assert!(exact_f32s("[0.10000000]").is_err());
    assert!(exact_f32s("{\"a\":1}").is_err());
    assert!(exact_f32s("[1,nope]").is_err());
    assert_eq!(exact_f32s("[]").unwrap(), Vec::<f32>::new());
}

#[test]
fn a_reranked_line_gives_its_pair_scores_and_a_fused_one_none() {
    let query = "ab".repeat(32);
    let line = format!(
        r#"{{"query_id":"q1","query_sha256":"{query}","source":"file","status":"ok","candidates":[{{"chunk_id":"a","rank":1,"rerank_logit":2.5,"rerank_score":0.75,"fused_rank":2,"fused_score":0.03}},{{"chunk_id":"b","rank":2,"rerank_logit":-1.0,"rerank_score":0.25,"fused_rank":1,"fused_score":0.04}}]}}"#
    );
    let mut by_chunk = HashMap::new();
    scored_pairs(line.as_bytes(), &mut by_chunk).unwrap();
    let query = unhex(&query).unwrap();
    assert_eq!(
        by_chunk["a"],
        vec![(
            query,
            PairScore {
                logit: 2.5,
                score: 0.75
            }
        )]
    );
    assert_eq!(by_chunk["b"][0].1.logit, -1.0);

    let mut none = HashMap::new();
    let fused = line.replace(r#""status":"ok""#, r#""status":"fused""#);
    scored_pairs(fused.as_bytes(), &mut none).unwrap();
    assert!(
        none.is_empty(),
        "a query that was not reranked has no scores"
    );
    let unscored = line.replace(r#""rerank_logit":2.5,"#, "");
    assert!(scored_pairs(unscored.as_bytes(), &mut none).is_err());
    let long = line.replace("2.5,", "2.50,");
    assert!(scored_pairs(long.as_bytes(), &mut none).is_err());
}

#[test]
fn a_point_line_gives_its_dense_and_sparse_vectors() {
    let line = br#"{"id":"6b1c0c63-2d1f-5d4e-9a5e-000000000000","vector":{"minilm":[0.25,-0.5],"splade":{"indices":[3,9],"values":[1.25,0.5]}},"payload":{"collection":"c","chunk_id":"a","sparse_source":"splade"}}"#;
    let vectors = parse_point(line).unwrap();
    assert_eq!(vectors.dense["minilm"], vec![0.25, -0.5]);
    let sparse = vectors.splade("splade").unwrap();
    assert_eq!(sparse.vector.indices, vec![3, 9]);
    assert_eq!(sparse.vector.values, vec![1.25, 0.5]);
    let metadata = String::from_utf8(line.to_vec()).unwrap().replace(
        "\"sparse_source\":\"splade\"",
        "\"sparse_source\":\"metadata\"",
    );
    assert!(parse_point(metadata.as_bytes())
        .unwrap()
        .splade("splade")
        .is_none());
}

#[test]
fn hex_round_trips() {
    let sha = text_sha256("hello");
    assert_eq!(unhex(&hex::encode(sha)), Some(sha));
    assert_eq!(unhex("zz"), None);
    assert_eq!(unhex(&"+f".repeat(32)), None, "digits only");
    assert_eq!(unhex(&hex::encode([7u8; 33])), None, "32 bytes only");
}
