use std::fs;
use std::path::{Path, PathBuf};

use serde_json::json;
use tempfile::TempDir;

use super::*;

fn write(dir: &Path, rel: &str, content: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(rel);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    fs::write(&path, content).unwrap();
    path
}

fn collection(name: &str, files: &[&Path]) -> Collection {
    Collection {
        name: name.to_string(),
        files: files.iter().map(|f| f.to_path_buf()).collect(),
        dir: None,
    }
}

fn read(files: &[&Path]) -> ReadCollection {
    read_collection(&collection("c", files), InvalidInputPolicy::Error).unwrap()
}

fn read_skip(files: &[&Path]) -> ReadCollection {
    read_collection(&collection("c", files), InvalidInputPolicy::Skip).unwrap()
}

fn read_err(files: &[&Path]) -> String {
    match read_collection(&collection("c", files), InvalidInputPolicy::Error) {
        Ok(read) => panic!("expected an error, read {} chunks", read.chunks.len()),
        Err(err) => err.to_string(),
    }
}

fn read_one(content: &str) -> Chunk {
    let dir = TempDir::new().unwrap();
    let path = write(dir.path(), "one.jsonl", content);
    let mut read = read(&[&path]);
    assert_eq!(read.chunks.len(), 1);
    read.chunks.remove(0)
}

fn ids(read: &ReadCollection) -> Vec<&str> {
    read.chunks.iter().map(|c| c.id.as_str()).collect()
}

fn texts(read: &ReadCollection) -> Vec<&str> {
    read.chunks.iter().map(|c| c.text.as_str()).collect()
}

fn names(collections: &[Collection]) -> Vec<&str> {
    collections.iter().map(|c| c.name.as_str()).collect()
}

fn d(path: &Path) -> String {
    path.display().to_string()
}

// ---------------------------------------------------------------- shapes

#[test]
fn jsonl_chunks_in_file_order_with_locations() {
    let dir = TempDir::new().unwrap();
    let path = write(
        dir.path(),
        "a.jsonl",
        "{\"id\": \"c1\", \"text\": \"first\"}\n{\"id\": \"c2\", \"text\": \"second\", \"title\": \"T\"}\n",
    );
    let read = read(&[&path]);
    assert_eq!(ids(&read), ["c1", "c2"]);
    assert_eq!(texts(&read), ["first", "second"]);
    assert_eq!(read.chunks[0].location, SourceLocation::line(&path, 1));
    assert_eq!(read.chunks[1].location, SourceLocation::line(&path, 2));
    assert_eq!(read.chunks[1].title.as_deref(), Some("T"));
    assert_eq!(read.chunks[0].embedding_text(), "first");
    assert!(read.skipped.is_empty());
}

#[test]
fn files_are_read_in_the_given_order() {
    let dir = TempDir::new().unwrap();
    let b = write(dir.path(), "b.jsonl", "{\"text\": \"b\"}\n");
    let a = write(dir.path(), "a.json", "[\"a1\", \"a2\"]");
    let read = read(&[&a, &b]);
    assert_eq!(texts(&read), ["a1", "a2", "b"]);
    assert_eq!(read.chunks[2].location, SourceLocation::line(&b, 1));
}

#[test]
fn beir_corpus_joins_title_and_keeps_metadata() {
    let dir = TempDir::new().unwrap();
    let path = write(
        dir.path(),
        "scifact/corpus.jsonl",
        concat!(
            "{\"_id\": \"4983\", \"title\": \"Microstructural development\", \"text\": \"Alterations of the architecture.\", \"metadata\": {\"url\": \"u\"}}\n",
            "{\"_id\": \"5836\", \"title\": \"\", \"text\": \"No title here.\", \"metadata\": {}}\n",
        ),
    );
    let read = read(&[&path]);
    assert_eq!(ids(&read), ["4983", "5836"]);
    let first = &read.chunks[0];
    assert_eq!(first.title.as_deref(), Some("Microstructural development"));
    assert_eq!(first.text, "Alterations of the architecture.");
    assert_eq!(
        first.embedding_text(),
        "Microstructural development Alterations of the architecture."
    );
    assert_eq!(
        first.metadata,
        json!({"url": "u"}).as_object().unwrap().clone()
    );
    assert_eq!(read.chunks[1].embedding_text(), "No title here.");
    assert_eq!(read.chunks[1].title.as_deref(), Some(""));
}

#[test]
fn whitespace_only_title_is_not_joined() {
    let chunk = read_one("{\"title\": \"  \", \"text\": \"body\"}");
    assert_eq!(chunk.embedding_text(), "body");
    assert_eq!(chunk.title.as_deref(), Some("  "));
}

#[test]
fn json_list_of_chunks() {
    let dir = TempDir::new().unwrap();
    let path = write(
        dir.path(),
        "data.json",
        r#"[{"id": "x", "text": "one"}, {"id": "y", "text": "two", "title": "T"}]"#,
    );
    let read = read(&[&path]);
    assert_eq!(ids(&read), ["x", "y"]);
    assert_eq!(read.chunks[0].location, SourceLocation::item(&path, 0));
    assert_eq!(read.chunks[1].location, SourceLocation::item(&path, 1));
    assert_eq!(read.chunks[1].embedding_text(), "T two");
}

#[test]
fn json_wrapper_keys() {
    for key in ["chunks", "data", "records", "items"] {
        let dir = TempDir::new().unwrap();
        let content =
            format!(r#"{{"source": "s", "{key}": [{{"id": "a", "text": "one"}}, "two"]}}"#);
        let path = write(dir.path(), "w.json", content);
        let read = read(&[&path]);
        assert_eq!(texts(&read), ["one", "two"], "wrapper {key}");
        assert_eq!(read.chunks[0].id.as_str(), "a");
        assert_eq!(read.chunks[1].location, SourceLocation::item(&path, 1));
    }
}

#[test]
fn json_wrapper_keys_take_precedence_in_order() {
    let dir = TempDir::new().unwrap();
    let path = write(
        dir.path(),
        "w.json",
        r#"{"items": ["from items"], "chunks": ["from chunks"]}"#,
    );
    assert_eq!(texts(&read(&[&path])), ["from chunks"]);
}

#[test]
fn json_object_with_text_is_a_chunk_not_a_wrapper() {
    let dir = TempDir::new().unwrap();
    let path = write(
        dir.path(),
        "one.json",
        r#"{"id": "solo", "text": "hello", "data": [1, 2]}"#,
    );
    let read = read(&[&path]);
    assert_eq!(ids(&read), ["solo"]);
    assert_eq!(read.chunks[0].metadata.get("data"), Some(&json!([1, 2])));
    assert_eq!(read.chunks[0].location, SourceLocation::file(&path));
}

#[test]
fn json_single_object() {
    let dir = TempDir::new().unwrap();
    let path = write(
        dir.path(),
        "one.json",
        r#"{"chunk_id": "k", "title": "T", "text": "body"}"#,
    );
    let read = read(&[&path]);
    assert_eq!(ids(&read), ["k"]);
    assert_eq!(read.chunks[0].embedding_text(), "T body");
}

#[test]
fn json_bare_string_list() {
    let dir = TempDir::new().unwrap();
    let path = write(dir.path(), "s.json", r#"["alpha", "beta"]"#);
    let read = read(&[&path]);
    assert_eq!(texts(&read), ["alpha", "beta"]);
    assert!(read
        .chunks
        .iter()
        .all(|c| c.title.is_none() && c.metadata.is_empty()));
    assert_eq!(read.chunks[0].id, derive_chunk_id("c", "alpha"));
    assert_eq!(read.chunks[1].location, SourceLocation::item(&path, 1));
}

#[test]
fn json_single_string() {
    let dir = TempDir::new().unwrap();
    let path = write(dir.path(), "s.json", r#""just text""#);
    let read = read(&[&path]);
    assert_eq!(texts(&read), ["just text"]);
    assert_eq!(read.chunks[0].location, SourceLocation::file(&path));
}

#[test]
fn json_empty_list_reads_nothing() {
    let dir = TempDir::new().unwrap();
    let path = write(dir.path(), "e.json", "[]");
    let read = read(&[&path]);
    assert!(read.chunks.is_empty());
    assert!(read.skipped.is_empty());
}

#[test]
fn jsonl_bare_string_line() {
    let chunk = read_one("\"a bare line\"\n");
    assert_eq!(chunk.text, "a bare line");
    assert_eq!(chunk.id, derive_chunk_id("c", "a bare line"));
}

// ---------------------------------------------------------------- ids

#[test]
fn integer_ids_are_rendered_in_decimal() {
    assert_eq!(read_one(r#"{"id": 42, "text": "t"}"#).id.as_str(), "42");
    assert_eq!(read_one(r#"{"id": -7, "text": "t"}"#).id.as_str(), "-7");
    assert_eq!(
        read_one(r#"{"_id": 18446744073709551615, "text": "t"}"#)
            .id
            .as_str(),
        "18446744073709551615"
    );
    assert_eq!(
        read_one(r#"{"text": "t", "metadata": {"chunk_id": 9}}"#)
            .id
            .as_str(),
        "9"
    );
}

#[test]
fn id_fields_in_precedence_order() {
    let all =
        r#"{"id": "a", "_id": "b", "chunk_id": "c", "metadata": {"chunk_id": "d"}, "text": "t"}"#;
    assert_eq!(read_one(all).id.as_str(), "a");
    let no_id = r#"{"_id": "b", "chunk_id": "c", "metadata": {"chunk_id": "d"}, "text": "t"}"#;
    assert_eq!(read_one(no_id).id.as_str(), "b");
    let chunk_id = r#"{"chunk_id": "c", "metadata": {"chunk_id": "d"}, "text": "t"}"#;
    assert_eq!(read_one(chunk_id).id.as_str(), "c");
    let meta = r#"{"metadata": {"chunk_id": "d"}, "text": "t"}"#;
    let chunk = read_one(meta);
    assert_eq!(chunk.id.as_str(), "d");
    // metadata.chunk_id stays in the metadata; top-level id fields do not.
    assert_eq!(chunk.metadata.get("chunk_id"), Some(&json!("d")));
    let chunk = read_one(all);
    assert_eq!(
        chunk.metadata.keys().collect::<Vec<_>>(),
        ["chunk_id"],
        "top-level id fields are not merged into metadata"
    );
}

#[test]
fn null_id_field_counts_as_absent() {
    assert_eq!(
        read_one(r#"{"id": null, "_id": "b", "text": "t"}"#)
            .id
            .as_str(),
        "b"
    );
    assert_eq!(
        read_one(r#"{"id": null, "text": "t"}"#).id,
        derive_chunk_id("c", "t")
    );
}

#[test]
fn derived_ids_are_stable_and_content_based() {
    let dir = TempDir::new().unwrap();
    let path = write(
        dir.path(),
        "a.jsonl",
        "{\"text\": \"alpha\"}\n{\"text\": \"beta\"}\n{\"title\": \"T\", \"text\": \"alpha\"}\n",
    );
    let first = read(&[&path]);
    let second = read(&[&path]);
    assert_eq!(ids(&first), ids(&second));
    for chunk in &first.chunks {
        assert_eq!(chunk.id.as_str().len(), 16);
        assert!(chunk.id.as_str().chars().all(|c| c.is_ascii_hexdigit()));
    }
    assert_ne!(first.chunks[0].id, first.chunks[1].id);
    // The title is part of the embedding text, so part of the id.
    assert_ne!(first.chunks[0].id, first.chunks[2].id);
    assert_eq!(first.chunks[2].id, derive_chunk_id("c", "T alpha"));
    // Known value: sha256("c\0alpha")[..8] in hex.
    use sha2::Digest;
    let digest = sha2::Sha256::digest(b"c\0alpha");
    assert_eq!(first.chunks[0].id.as_str(), hex::encode(&digest[..8]));
    // Another collection derives a different id for the same text.
    let other = read_collection(&collection("other", &[&path]), InvalidInputPolicy::Error).unwrap();
    assert_ne!(other.chunks[0].id, first.chunks[0].id);
}

#[test]
fn point_ids_are_stable_and_distinct_across_collections() {
    let id = ChunkId("c1".to_string());
    let a = point_id("alpha", &id);
    assert_eq!(a, point_id("alpha", &id));
    assert_eq!(a, uuid::Uuid::new_v5(&POINT_ID_NAMESPACE, b"alpha/c1"));
    assert_eq!(a.get_version_num(), 5);
    assert_ne!(a, point_id("beta", &id));
    assert_ne!(a, point_id("alpha", &ChunkId("c2".to_string())));

    let dir = TempDir::new().unwrap();
    let path = write(dir.path(), "a.jsonl", "{\"id\": \"c1\", \"text\": \"t\"}\n");
    let in_alpha =
        read_collection(&collection("alpha", &[&path]), InvalidInputPolicy::Error).unwrap();
    let in_beta =
        read_collection(&collection("beta", &[&path]), InvalidInputPolicy::Error).unwrap();
    assert_eq!(in_alpha.chunks[0].point_id, a);
    assert_eq!(in_beta.chunks[0].point_id, point_id("beta", &id));
    assert_ne!(in_alpha.chunks[0].point_id, in_beta.chunks[0].point_id);
}

// ---------------------------------------------------------------- content

#[test]
fn whitespace_and_newlines_are_preserved() {
    let text = "  def f(x):\n\treturn x  \r\n\n";
    let title = " Title ";
    let line = serde_json::to_string(&json!({"title": title, "text": text})).unwrap();
    let chunk = read_one(&line);
    assert_eq!(chunk.text, text);
    assert_eq!(chunk.title.as_deref(), Some(title));
    assert_eq!(chunk.embedding_text(), format!("{title} {text}"));

    let dir = TempDir::new().unwrap();
    let path = write(
        dir.path(),
        "s.json",
        serde_json::to_string(&json!([text])).unwrap(),
    );
    assert_eq!(texts(&read(&[&path])), [text]);
}

#[test]
fn extra_fields_are_merged_into_metadata() {
    let chunk = read_one(
        r#"{"id": "x", "text": "t", "source": "top", "page": 3, "metadata": {"source": "explicit", "lang": "en"}}"#,
    );
    assert_eq!(
        serde_json::Value::Object(chunk.metadata),
        json!({"source": "explicit", "lang": "en", "page": 3})
    );
    let chunk = read_one(r#"{"text": "t", "url": "u", "tags": ["a"]}"#);
    assert_eq!(
        serde_json::Value::Object(chunk.metadata),
        json!({"url": "u", "tags": ["a"]})
    );
}

#[test]
fn null_title_and_metadata_count_as_absent() {
    let chunk = read_one(r#"{"text": "t", "title": null, "metadata": null}"#);
    assert_eq!(chunk.title, None);
    assert!(chunk.metadata.is_empty());
}

#[test]
fn title_only_chunk_is_not_empty() {
    let chunk = read_one(r#"{"title": "Only a title", "text": ""}"#);
    assert_eq!(chunk.embedding_text(), "Only a title ");
}

// ---------------------------------------------------------------- errors

fn jsonl_err(lines: &str) -> (TempDir, PathBuf, String) {
    let dir = TempDir::new().unwrap();
    let path = write(dir.path(), "chunks/a.jsonl", lines);
    let err = read_err(&[&path]);
    (dir, path, err)
}

const OK: &str = "{\"text\": \"fine\"}\n";
const OK2: &str = "{\"text\": \"also fine\"}\n";

#[test]
fn malformed_json_line_is_an_error_with_its_line() {
    let (_d, path, err) = jsonl_err(&format!("{OK}{OK2}{{\"text\": \"SECRET\" \"x\"}}\n{OK}"));
    assert!(
        err.starts_with(&format!("{}:3: invalid JSON: ", d(&path))),
        "{err}"
    );
    assert!(err.contains("at column"), "{err}");
    assert!(!err.contains("SECRET"), "{err}");
}

#[test]
fn truncated_json_line_is_an_error() {
    let (_d, path, err) = jsonl_err(&format!("{OK}{{\"text\": \"abc"));
    assert!(
        err.starts_with(&format!("{}:2: invalid JSON: EOF while parsing", d(&path))),
        "{err}"
    );
}

#[test]
fn non_chunk_json_line_is_malformed() {
    let (_d, path, err) = jsonl_err("[1, 2]\n");
    assert_eq!(
        err,
        format!(
            "{}:1: expected a chunk object or a string, found an array",
            d(&path)
        )
    );
}

#[test]
fn missing_text_is_an_error() {
    let (_d, path, err) = jsonl_err(&format!("{OK}{OK2}{{\"id\": \"x\", \"body\": \"b\"}}\n"));
    assert_eq!(err, format!("{}:3: missing field \"text\"", d(&path)));
    let (_d, path, err) = jsonl_err("{\"text\": null}\n");
    assert_eq!(err, format!("{}:1: missing field \"text\"", d(&path)));
}

#[test]
fn non_string_text_is_an_error() {
    let (_d, path, err) = jsonl_err(&format!("{OK}{{\"text\": 17}}\n"));
    assert_eq!(
        err,
        format!(
            "{}:2: invalid field \"text\": expected a string, found a number",
            d(&path)
        )
    );
    let (_d, path, err) = jsonl_err("{\"text\": [\"a\"]}\n");
    assert_eq!(
        err,
        format!(
            "{}:1: invalid field \"text\": expected a string, found an array",
            d(&path)
        )
    );
}

#[test]
fn non_string_title_is_an_error() {
    let (_d, path, err) = jsonl_err("{\"text\": \"t\", \"title\": 1}\n");
    assert_eq!(
        err,
        format!(
            "{}:1: invalid field \"title\": expected a string, found a number",
            d(&path)
        )
    );
}

#[test]
fn empty_and_whitespace_text_are_errors() {
    let (_d, path, err) = jsonl_err(&format!("{OK}{{\"text\": \"\"}}\n"));
    assert_eq!(err, format!("{}:2: empty text", d(&path)));
    let (_d, path, err) = jsonl_err("{\"text\": \" \\n\\t \"}\n");
    assert_eq!(err, format!("{}:1: empty text", d(&path)));
    let (_d, path, err) = jsonl_err("{\"title\": \"  \", \"text\": \"\\n\"}\n");
    assert_eq!(err, format!("{}:1: empty text", d(&path)));
    let (_d, path, err) = jsonl_err("\"   \"\n");
    assert_eq!(err, format!("{}:1: empty text", d(&path)));
}

#[test]
fn invalid_id_types_are_errors() {
    let cases = [
        (r#"{"id": 1.5, "text": "t"}"#, "id", "a non-integer number"),
        (r#"{"id": true, "text": "t"}"#, "id", "a boolean"),
        (r#"{"_id": {"a": 1}, "text": "t"}"#, "_id", "an object"),
        (r#"{"chunk_id": [], "text": "t"}"#, "chunk_id", "an array"),
        (r#"{"id": "", "text": "t"}"#, "id", "an empty string"),
        (
            r#"{"metadata": {"chunk_id": false}, "text": "t"}"#,
            "metadata.chunk_id",
            "a boolean",
        ),
    ];
    for (line, field, found) in cases {
        let (_d, path, err) = jsonl_err(&format!("{OK}{line}\n"));
        assert_eq!(
            err,
            format!(
                "{}:2: invalid field \"{field}\": expected a non-empty string or an integer, found {found}",
                d(&path)
            )
        );
    }
}

#[test]
fn non_object_metadata_is_an_error() {
    let (_d, path, err) = jsonl_err("{\"text\": \"t\", \"metadata\": [1]}\n");
    assert_eq!(
        err,
        format!(
            "{}:1: invalid field \"metadata\": expected a JSON object, found an array",
            d(&path)
        )
    );
    let (_d, path, err) = jsonl_err("{\"text\": \"t\", \"metadata\": \"m\"}\n");
    assert_eq!(
        err,
        format!(
            "{}:1: invalid field \"metadata\": expected a JSON object, found a string",
            d(&path)
        )
    );
}

#[test]
fn duplicate_id_names_both_locations() {
    let (_d, path, err) = jsonl_err(
        "{\"id\": \"c0\", \"text\": \"a\"}\n{\"id\": \"c1\", \"text\": \"SECRET\"}\n{\"id\": \"c2\", \"text\": \"b\"}\n{\"id\": \"c1\", \"text\": \"SECRET\"}\n",
    );
    let p = d(&path);
    assert_eq!(
        err,
        format!("{p}:4: duplicate chunk id \"c1\" (first seen at {p}:2)")
    );
    assert!(!err.contains("SECRET"));
}

#[test]
fn duplicate_id_across_files_and_integer_vs_string() {
    let dir = TempDir::new().unwrap();
    let a = write(dir.path(), "a.jsonl", "{\"id\": 7, \"text\": \"a\"}\n");
    let b = write(
        dir.path(),
        "b.json",
        r#"[{"id": "x", "text": "b"}, {"id": "7", "text": "c"}]"#,
    );
    let err = read_err(&[&a, &b]);
    assert_eq!(
        err,
        format!(
            "{}[1]: duplicate chunk id \"7\" (first seen at {}:1)",
            d(&b),
            d(&a)
        )
    );
}

#[test]
fn identical_texts_without_ids_are_duplicates() {
    let (_d, path, err) = jsonl_err("{\"text\": \"same\"}\n{\"text\": \"same\"}\n");
    let id = derive_chunk_id("c", "same");
    let p = d(&path);
    assert_eq!(
        err,
        format!("{p}:2: duplicate chunk id \"{id}\" (first seen at {p}:1)")
    );
}

#[test]
fn json_item_errors_name_the_item_index() {
    let dir = TempDir::new().unwrap();
    let path = write(
        dir.path(),
        "data.json",
        r#"{"chunks": [{"text": "a"}, {"text": "b"}, "c", {"text": "  "}]}"#,
    );
    assert_eq!(read_err(&[&path]), format!("{}[3]: empty text", d(&path)));

    let path = write(
        dir.path(),
        "d2.json",
        r#"[{"id": "x", "text": "a"}, {"body": "b"}]"#,
    );
    assert_eq!(
        read_err(&[&path]),
        format!("{}[1]: missing field \"text\"", d(&path))
    );

    let path = write(
        dir.path(),
        "d3.json",
        r#"[{"id": "x", "text": "a"}, {"id": "y", "text": "b"}, {"id": "x", "text": "c"}]"#,
    );
    let p = d(&path);
    assert_eq!(
        read_err(&[&path]),
        format!("{p}[2]: duplicate chunk id \"x\" (first seen at {p}[0])")
    );

    let path = write(dir.path(), "d4.json", "[\"a\", 5]");
    assert_eq!(
        read_err(&[&path]),
        format!(
            "{}[1]: expected a chunk object or a string, found a number",
            d(&path)
        )
    );

    let path = write(dir.path(), "d5.json", r#"{"text": "t", "id": 2.5}"#);
    assert_eq!(
        read_err(&[&path]),
        format!(
            "{}: invalid field \"id\": expected a non-empty string or an integer, found a non-integer number",
            d(&path)
        )
    );
}

#[test]
fn json_syntax_error_names_line_and_column() {
    let dir = TempDir::new().unwrap();
    let path = write(
        dir.path(),
        "data.json",
        "[\n  {\"text\": \"a\"},\n  {\"text\": \"SECRET\" \"b\"}\n]\n",
    );
    let err = read_err(&[&path]);
    assert_eq!(
        err,
        format!(
            "{}:3: invalid JSON: expected `,` or `}}` at column 21",
            d(&path)
        )
    );
    assert!(!err.contains("SECRET"));
}

#[test]
fn json_unsupported_top_level_is_an_error() {
    let dir = TempDir::new().unwrap();
    let path = write(dir.path(), "n.json", "42");
    assert_eq!(
        read_err(&[&path]),
        format!(
            "{}: expected a list of chunks, a chunk object or a string, found a number",
            d(&path)
        )
    );
    let path = write(dir.path(), "w.json", r#"{"data": {"text": "t"}}"#);
    assert_eq!(
        read_err(&[&path]),
        format!(
            "{}: field \"data\" must be a list of chunks, found an object",
            d(&path)
        )
    );
}

#[test]
fn missing_file_is_an_io_error_naming_it() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("gone.jsonl");
    let result = read_collection(&collection("c", &[&path]), InvalidInputPolicy::Skip);
    let err = result.err().unwrap();
    assert!(matches!(err, InputError::Io { .. }));
    assert!(
        err.to_string().starts_with(&format!("{}: ", d(&path))),
        "{err}"
    );
}

#[test]
fn unsupported_file_extension_is_an_error() {
    let dir = TempDir::new().unwrap();
    let path = write(dir.path(), "notes.txt", "hello");
    let err = read_err(&[&path]);
    assert_eq!(
        err,
        format!(
            "{}: unsupported chunk file (expected extension .jsonl or .json)",
            d(&path)
        )
    );
}

// ---------------------------------------------------------------- skip policy

#[test]
fn skip_policy_counts_each_reason_and_keeps_going() {
    let dir = TempDir::new().unwrap();
    let path = write(
        dir.path(),
        "a.jsonl",
        concat!(
            "{\"id\": \"ok1\", \"text\": \"a\"}\n",   // 1
            "{not json\n",                            // 2 malformed
            "{\"id\": \"m\"}\n",                      // 3 missing text
            "{\"id\": \"e\", \"text\": \"  \"}\n",    // 4 empty text
            "{\"id\": 1.5, \"text\": \"x\"}\n",       // 5 invalid field
            "{\"id\": \"ok1\", \"text\": \"dup\"}\n", // 6 duplicate
            "{\"id\": \"ok2\", \"text\": \"b\"}\n",   // 7
            "{\"text\": \"c\", \"metadata\": 3}\n",   // 8 invalid field
        ),
    );
    let read = read_skip(&[&path]);
    assert_eq!(ids(&read), ["ok1", "ok2"]);
    assert_eq!(
        texts(&read),
        ["a", "b"],
        "first occurrence of a duplicate wins"
    );
    let counts: Vec<(SkipReason, usize)> =
        read.skipped.counts.iter().map(|(r, n)| (*r, *n)).collect();
    assert_eq!(
        counts,
        [
            (SkipReason::MalformedJson, 1),
            (SkipReason::MissingText, 1),
            (SkipReason::EmptyText, 1),
            (SkipReason::InvalidField, 2),
            (SkipReason::DuplicateId, 1),
        ]
    );
    assert_eq!(read.skipped.total(), 6);
    let examples: Vec<(SkipReason, Option<usize>)> = read
        .skipped
        .examples
        .iter()
        .map(|(reason, location)| {
            assert_eq!(location.file, path);
            (*reason, location.line)
        })
        .collect();
    assert_eq!(
        examples,
        [
            (SkipReason::MalformedJson, Some(2)),
            (SkipReason::MissingText, Some(3)),
            (SkipReason::EmptyText, Some(4)),
            (SkipReason::InvalidField, Some(5)),
            (SkipReason::DuplicateId, Some(6)),
            (SkipReason::InvalidField, Some(8)),
        ]
    );
}

#[test]
fn skip_examples_are_capped() {
    let dir = TempDir::new().unwrap();
    let mut content = String::new();
    for _ in 0..25 {
        content.push_str("{bad\n");
    }
    content.push_str(OK);
    let path = write(dir.path(), "a.jsonl", content);
    let read = read_skip(&[&path]);
    assert_eq!(read.chunks.len(), 1);
    assert_eq!(read.skipped.total(), 25);
    assert_eq!(read.skipped.examples.len(), MAX_SKIP_EXAMPLES);
    assert_eq!(read.skipped.examples[19].1, SourceLocation::line(&path, 20));
}

#[test]
fn skip_policy_skips_unparsable_json_file_and_continues() {
    let dir = TempDir::new().unwrap();
    let bad = write(dir.path(), "a.json", "[{\"text\": \"a\"},\n oops]");
    let items = write(
        dir.path(),
        "b.json",
        r#"[{"text": "b"}, {"text": ""}, "c"]"#,
    );
    let good = write(dir.path(), "c.jsonl", OK);
    let read = read_skip(&[&bad, &items, &good]);
    assert_eq!(texts(&read), ["b", "c", "fine"]);
    assert_eq!(
        read.skipped.counts.get(&SkipReason::MalformedJson),
        Some(&1)
    );
    assert_eq!(read.skipped.counts.get(&SkipReason::EmptyText), Some(&1));
    assert_eq!(read.skipped.examples[0].1, SourceLocation::line(&bad, 2));
    assert_eq!(read.skipped.examples[1].1, SourceLocation::item(&items, 1));
}

#[test]
fn skip_report_merge() {
    let mut a = SkipReport::default();
    a.record(SkipReason::EmptyText, SourceLocation::file(Path::new("x")));
    let mut b = SkipReport::default();
    for _ in 0..MAX_SKIP_EXAMPLES {
        b.record(
            SkipReason::DuplicateId,
            SourceLocation::file(Path::new("y")),
        );
    }
    a.merge(&b);
    assert_eq!(a.total(), MAX_SKIP_EXAMPLES + 1);
    assert_eq!(a.counts[&SkipReason::DuplicateId], MAX_SKIP_EXAMPLES);
    assert_eq!(a.examples.len(), MAX_SKIP_EXAMPLES);
    assert_eq!(a.examples[0].0, SkipReason::EmptyText);
}

// ---------------------------------------------------------------- lines, BOM, UTF-8

#[test]
fn blank_lines_are_ignored_and_line_numbers_kept() {
    let dir = TempDir::new().unwrap();
    let path = write(
        dir.path(),
        "a.jsonl",
        "\n   \n{\"text\": \"a\"}\n\t\n\n{\"text\": \"b\"}\n\n{bad}\n",
    );
    let read = read_skip(&[&path]);
    assert_eq!(texts(&read), ["a", "b"]);
    assert_eq!(read.chunks[0].location, SourceLocation::line(&path, 3));
    assert_eq!(read.chunks[1].location, SourceLocation::line(&path, 6));
    assert_eq!(read.skipped.total(), 1);
    assert_eq!(read.skipped.examples[0].1, SourceLocation::line(&path, 8));
    assert!(read_err(&[&path]).starts_with(&format!("{}:8: invalid JSON", d(&path))));
}

#[test]
fn crlf_lines_and_missing_final_newline() {
    let dir = TempDir::new().unwrap();
    let path = write(
        dir.path(),
        "a.jsonl",
        "{\"text\": \"a\\r\\n\"}\r\n\r\n{\"text\": \"b\"}",
    );
    let read = read(&[&path]);
    assert_eq!(texts(&read), ["a\r\n", "b"]);
    assert_eq!(read.chunks[1].location, SourceLocation::line(&path, 3));
}

#[test]
fn utf8_bom_is_stripped() {
    let dir = TempDir::new().unwrap();
    let jsonl = write(
        dir.path(),
        "a.jsonl",
        b"\xEF\xBB\xBF{\"text\": \"a\"}\n{\"text\": \"b\"}\n",
    );
    assert_eq!(texts(&read(&[&jsonl])), ["a", "b"]);
    let json = write(dir.path(), "b.json", b"\xEF\xBB\xBF[\"x\"]");
    assert_eq!(texts(&read(&[&json])), ["x"]);
}

#[test]
fn invalid_utf8_line_is_malformed() {
    let dir = TempDir::new().unwrap();
    let path = write(
        dir.path(),
        "a.jsonl",
        b"{\"text\": \"a\"}\n{\"text\": \"\xff\"}\n{\"text\": \"b\"}\n",
    );
    assert_eq!(
        read_err(&[&path]),
        format!("{}:2: invalid UTF-8 at byte 11", d(&path))
    );
    let read = read_skip(&[&path]);
    assert_eq!(texts(&read), ["a", "b"]);
    assert_eq!(
        read.skipped.examples,
        [(SkipReason::MalformedJson, SourceLocation::line(&path, 2))]
    );
}

#[test]
fn non_ascii_text_is_kept() {
    let chunk = read_one("{\"text\": \"héllo — 世界 🚀\"}");
    assert_eq!(chunk.text, "héllo — 世界 🚀");
}

// ---------------------------------------------------------------- discovery

const ALL: &[InputFormat] = &InputFormat::ALL;

fn rel_files(root: &Path, collection: &Collection) -> Vec<String> {
    collection
        .files
        .iter()
        .map(|f| {
            f.strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/")
        })
        .collect()
}

#[test]
fn beir_directory_reads_only_corpus() {
    let dir = TempDir::new().unwrap();
    let root = dir.path();
    write(
        root,
        "scifact/corpus.jsonl",
        "{\"_id\": \"1\", \"title\": \"T\", \"text\": \"x\"}\n",
    );
    write(
        root,
        "scifact/queries.jsonl",
        "{\"_id\": \"q\", \"text\": \"?\"}\n",
    );
    write(root, "scifact/qrels/test.jsonl", "{}\n");
    write(root, "scifact/extra.jsonl", "{\"text\": \"no\"}\n");
    write(root, "scifact/sub/more.json", "[\"no\"]");
    let collections = discover_collections(root, None, ALL).unwrap();
    assert_eq!(names(&collections), ["scifact"]);
    assert_eq!(rel_files(root, &collections[0]), ["scifact/corpus.jsonl"]);
    let read = read_collection(&collections[0], InvalidInputPolicy::Error).unwrap();
    assert_eq!(ids(&read), ["1"]);
    assert_eq!(read.chunks[0].embedding_text(), "T x");
}

#[test]
fn collection_directory_is_read_recursively_in_path_order() {
    let dir = TempDir::new().unwrap();
    let root = dir.path();
    write(root, "docs/x.jsonl", OK);
    write(root, "docs/sub/y.json", "[]");
    write(root, "docs/sub/deeper/z.jsonl", OK);
    write(root, "docs/b.jsonl", OK);
    write(root, "docs/queries.jsonl", OK);
    write(root, "docs/sub/queries.json", "[]");
    write(root, "docs/qrels/q.jsonl", OK);
    write(root, "docs/sub/qrels/q.jsonl", OK);
    write(root, "docs/.hidden.jsonl", OK);
    write(root, "docs/.git/h.jsonl", OK);
    write(root, "docs/notes.txt", "text");
    write(root, "docs/corpus.json", "[]"); // only corpus.jsonl marks BEIR
    let collections = discover_collections(root, None, ALL).unwrap();
    assert_eq!(names(&collections), ["docs"]);
    assert_eq!(
        rel_files(root, &collections[0]),
        [
            "docs/b.jsonl",
            "docs/corpus.json",
            "docs/sub/deeper/z.jsonl",
            "docs/sub/y.json",
            "docs/x.jsonl",
        ]
    );
}

#[test]
fn root_files_are_collections_and_names_are_sorted() {
    let dir = TempDir::new().unwrap();
    let root = dir.path();
    write(root, "zeta/a.jsonl", OK);
    write(root, "alpha/a.json", "[]");
    write(root, "faq.jsonl", OK);
    write(root, "manual.json", "[]");
    write(root, "queries.jsonl", OK);
    write(root, "queries.json", "[]");
    write(root, ".hidden.jsonl", OK);
    write(root, ".cache/a.jsonl", OK);
    write(root, "qrels/test.jsonl", OK);
    write(root, "readme.md", "# hi");
    fs::create_dir_all(root.join("empty/sub")).unwrap();
    write(root, "images/a.png", "png");
    let collections = discover_collections(root, None, ALL).unwrap();
    assert_eq!(names(&collections), ["alpha", "faq", "manual", "zeta"]);
    assert_eq!(rel_files(root, &collections[1]), ["faq.jsonl"]);
    assert_eq!(rel_files(root, &collections[2]), ["manual.json"]);
}

#[test]
fn formats_limit_the_files_found() {
    let dir = TempDir::new().unwrap();
    let root = dir.path();
    write(root, "docs/a.jsonl", OK);
    write(root, "docs/b.json", "[]");
    write(root, "top.jsonl", OK);
    let collections = discover_collections(root, None, &[InputFormat::Json]).unwrap();
    assert_eq!(names(&collections), ["docs"]);
    assert_eq!(rel_files(root, &collections[0]), ["docs/b.json"]);
}

#[test]
fn name_clash_between_directory_and_file_is_an_error() {
    let dir = TempDir::new().unwrap();
    let root = dir.path();
    write(root, "a/x.jsonl", OK);
    write(root, "a.jsonl", OK);
    let err = discover_collections(root, None, ALL).unwrap_err();
    assert!(matches!(err, InputError::CollectionNameClash { .. }));
    assert_eq!(
        err.to_string(),
        format!(
            "collection name \"a\" is used by both {} and {}",
            d(&root.join("a")),
            d(&root.join("a.jsonl"))
        )
    );

    let dir = TempDir::new().unwrap();
    write(dir.path(), "b.json", "[]");
    write(dir.path(), "b.jsonl", OK);
    let err = discover_collections(dir.path(), None, ALL).unwrap_err();
    assert!(matches!(err, InputError::CollectionNameClash { ref name, .. } if name == "b"));
}

#[test]
fn collection_filter_keeps_named_and_rejects_unknown() {
    let dir = TempDir::new().unwrap();
    let root = dir.path();
    write(root, "a/x.jsonl", OK);
    write(root, "b/x.jsonl", OK);
    write(root, "c.jsonl", OK);
    let only = vec!["c".to_string(), "a".to_string()];
    let collections = discover_collections(root, Some(&only), ALL).unwrap();
    assert_eq!(names(&collections), ["a", "c"]);

    let all = discover_collections(root, Some(&[]), ALL).unwrap();
    assert_eq!(names(&all), ["a", "b", "c"]);

    let only = vec!["a".to_string(), "nope".to_string()];
    let err = discover_collections(root, Some(&only), ALL).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown collection \"nope\" (available: a, b, c)"
    );
}

#[test]
fn file_root_is_one_collection() {
    let dir = TempDir::new().unwrap();
    let path = write(dir.path(), "data/faq.jsonl", OK);
    let collections = discover_collections(&path, None, ALL).unwrap();
    assert_eq!(names(&collections), ["faq"]);
    assert_eq!(collections[0].files, std::slice::from_ref(&path));
    let read = read_collection(&collections[0], InvalidInputPolicy::Error).unwrap();
    assert_eq!(read.chunks[0].id, derive_chunk_id("faq", "fine"));

    let err = discover_collections(&path, Some(&["other".to_string()]), ALL).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown collection \"other\" (available: faq)"
    );

    let txt = write(dir.path(), "notes.txt", "x");
    let err = discover_collections(&txt, None, ALL).unwrap_err();
    assert!(matches!(err, InputError::UnsupportedFile { .. }));
    assert!(err.to_string().starts_with(&d(&txt)), "{err}");
    let err = discover_collections(&path, None, &[InputFormat::Json]).unwrap_err();
    assert!(matches!(err, InputError::UnsupportedFile { .. }));
}

#[test]
fn missing_root_is_an_error_naming_it() {
    let dir = TempDir::new().unwrap();
    let root = dir.path().join("no/such/dir");
    let err = discover_collections(&root, None, ALL).unwrap_err();
    assert!(matches!(err, InputError::RootNotFound { .. }));
    assert_eq!(
        err.to_string(),
        format!("{}: input root not found", d(&root))
    );
}

#[test]
fn root_without_collections_is_an_error() {
    let dir = TempDir::new().unwrap();
    write(dir.path(), "readme.md", "x");
    write(dir.path(), "queries.jsonl", OK);
    write(dir.path(), "empty/notes.txt", "x");
    let err = discover_collections(dir.path(), None, ALL).unwrap_err();
    assert!(matches!(err, InputError::NoCollections { .. }));
    assert!(
        err.to_string()
            .starts_with(&format!("{}: no collections found", d(dir.path()))),
        "{err}"
    );
}

#[cfg(unix)]
#[test]
fn symlink_cycles_do_not_recurse_forever() {
    let dir = TempDir::new().unwrap();
    let root = dir.path();
    write(root, "docs/a.jsonl", OK);
    std::os::unix::fs::symlink(root.join("docs"), root.join("docs/loop")).unwrap();
    std::os::unix::fs::symlink(root.join("missing"), root.join("docs/broken.jsonl")).unwrap();
    let collections = discover_collections(root, None, ALL).unwrap();
    assert_eq!(rel_files(root, &collections[0]), ["docs/a.jsonl"]);
}

// ---------------------------------------------------------------- types

#[test]
fn display_and_serde_forms() {
    let file = Path::new("chunks/a.jsonl");
    assert_eq!(
        SourceLocation::line(file, 17).to_string(),
        "chunks/a.jsonl:17"
    );
    assert_eq!(
        SourceLocation::item(file, 3).to_string(),
        "chunks/a.jsonl[3]"
    );
    assert_eq!(SourceLocation::file(file).to_string(), "chunks/a.jsonl");

    assert_eq!(SkipReason::MalformedJson.to_string(), "malformed_json");
    assert_eq!(SkipReason::DuplicateId.to_string(), "duplicate_id");
    assert_eq!(
        serde_json::to_value(SkipReason::EmptyText).unwrap(),
        json!("empty_text")
    );
    assert_eq!(
        serde_json::to_value(ChunkId("c1".into())).unwrap(),
        json!("c1")
    );
    assert_eq!(ChunkId("c1".into()).to_string(), "c1");
    assert_eq!(
        serde_json::from_value::<InvalidInputPolicy>(json!("skip")).unwrap(),
        InvalidInputPolicy::Skip
    );
    assert_eq!(InvalidInputPolicy::default(), InvalidInputPolicy::Error);
    assert_eq!(
        serde_json::from_value::<InputFormat>(json!("jsonl")).unwrap(),
        InputFormat::Jsonl
    );
    assert_eq!(InputFormat::Json.extension(), "json");
    assert_eq!(
        InputFormat::from_path(Path::new("x/Y.JSONL")),
        Some(InputFormat::Jsonl)
    );
    assert_eq!(InputFormat::from_path(Path::new("x/y.txt")), None);

    let err = InputError::MissingText {
        location: SourceLocation::line(file, 17),
    };
    assert_eq!(err.to_string(), "chunks/a.jsonl:17: missing field \"text\"");
    let err = InputError::EmptyText {
        location: SourceLocation::item(Path::new("data.json"), 3),
    };
    assert_eq!(err.to_string(), "data.json[3]: empty text");
}

// --- hostile input -------------------------------------------------------------------------

#[test]
fn text_of_only_invisible_characters_is_refused_or_counted() {
    let dir = TempDir::new().unwrap();
    for (i, text) in [
        "\u{0000}",
        "\u{200b}\u{200b}",
        "\u{fffd}",
        "\u{00ad} \u{feff}",
        "\u{2060}\t",
    ]
    .iter()
    .enumerate()
    {
        let line = json!({"id": "x", "text": text}).to_string();
        let file = write(dir.path(), &format!("i{i}.jsonl"), format!("{line}\n"));
        let message = read_err(&[&file]);
        assert!(
            message.contains("no visible characters"),
            "{text:?}: {message}"
        );
        assert!(message.contains(&format!("i{i}.jsonl:1")), "{message}");
        let skipped = read_skip(&[&file]);
        assert_eq!(skipped.skipped.counts.get(&SkipReason::EmptyText), Some(&1));
    }
    // One visible character is enough, a zero-width joiner in real text is kept.
    let file = write(
        dir.path(),
        "ok.jsonl",
        "{\"id\": \"a\", \"text\": \"\\u200bx\"}\n{\"id\": \"b\", \"text\": \"caf\\u00e9 \\u200d\"}\n",
    );
    assert_eq!(read(&[&file]).chunks.len(), 2);
    // Queries too.
    let queries = write(
        dir.path(),
        "q.jsonl",
        "{\"_id\": \"q\", \"text\": \"\\u200b\"}\n",
    );
    let err = read_queries(&queries).unwrap_err().to_string();
    assert!(err.contains("no visible characters"), "{err}");
}

#[test]
fn integers_beyond_64_bits_in_metadata_are_refused_with_the_field() {
    let dir = TempDir::new().unwrap();
    let big = "123456789012345678901234567890";
    for (i, (line, field)) in [
        (format!("{{\"id\": \"a\", \"text\": \"t\", \"metadata\": {{\"n\": {big}}}}}"), "\"n\""),
        (format!("{{\"id\": \"a\", \"text\": \"t\", \"count\": -{big}}}"), "\"count\""),
        (
            format!("{{\"id\": \"a\", \"text\": \"t\", \"metadata\": {{\"a\": {{\"b\": [1, {big}]}}}}}}"),
            "\"a.b[1]\"",
        ),
    ]
    .iter()
    .enumerate()
    {
        let file = write(dir.path(), &format!("b{i}.jsonl"), format!("\n{line}\n"));
        let message = read_err(&[&file]);
        assert!(message.contains(&format!("b{i}.jsonl:2")), "{message}");
        assert!(message.contains(field), "{field}: {message}");
        assert!(message.contains("outside the 64-bit range"), "{message}");
        assert!(!message.contains("12345678901"), "the value is not shown: {message}");
    }
    // The same in a .json file.
    let file = write(
        dir.path(),
        "b.json",
        format!("[{{\"id\": \"a\", \"text\": \"t\", \"n\": {big}}}]"),
    );
    assert!(read_err(&[&file]).contains("outside the 64-bit range"));

    // Floats that large, the extremes of i64/u64, and big numbers inside strings are kept.
    let file = write(
        dir.path(),
        "ok.jsonl",
        format!(
            "{{\"id\": \"a\", \"text\": \"t {big}\", \"f\": 1e29, \"u\": 18446744073709551615, \"i\": -9223372036854775808, \"s\": \"{big}\"}}\n"
        ),
    );
    let chunk = &read(&[&file]).chunks[0];
    assert_eq!(chunk.metadata["f"], json!(1e29));
    assert_eq!(chunk.metadata["u"], json!(u64::MAX));
    assert_eq!(chunk.metadata["i"], json!(i64::MIN));
}

#[test]
fn the_oversized_integer_scan_skips_strings_and_escapes() {
    use super::read::has_oversized_integer_literal as scan;
    assert!(scan(b"[1, 123456789012345678901234567890]"));
    assert!(!scan(b"[1, 1.23456789012345678901234567890]"));
    assert!(!scan(b"[\"123456789012345678901234567890\"]"));
    assert!(!scan(br#"["a\"123456789012345678901234567890"]"#));
    assert!(scan(br#"["a\\", 123456789012345678901234567890]"#));
    assert!(!scan(
        b"[18446744073709551615, -9223372036854775808, 1e400]"
    ));
}

#[test]
fn collection_names_that_leave_the_output_directory_or_collide_are_refused() {
    let path = Path::new("x");
    for bad in [
        "",
        ".",
        "..",
        "a/b",
        "a\\b",
        "two\nlines",
        "tab\t",
        ".work",
        "manifest.json",
        "metrics.prom",
        "shard-1-of-3",
    ] {
        let err = validate_collection_name(bad, path).unwrap_err().to_string();
        assert!(
            err.contains("cannot be a collection name"),
            "{bad:?}: {err}"
        );
        assert!(!err.contains('\n'), "escaped: {err}");
    }
    for good in ["faq", "scifact-2k", "manifest", "shard-x", "données"] {
        validate_collection_name(good, path).unwrap();
    }

    // Discovery: a flat file named `...jsonl` (the collection `..`), a directory named like a
    // run file.
    let dir = TempDir::new().unwrap();
    let dots = write(dir.path(), "flat/...jsonl", "{\"text\": \"t\"}\n");
    let err = discover_collections(&dots, None, &InputFormat::ALL).unwrap_err();
    assert!(matches!(err, InputError::BadCollectionName { .. }), "{err}");
    write(
        dir.path(),
        "root/manifest.json/a.jsonl",
        "{\"text\": \"t\"}\n",
    );
    write(dir.path(), "root/good.jsonl", "{\"text\": \"t\"}\n");
    let root = dir.path().join("root");
    let err = discover_collections(&root, None, &InputFormat::ALL).unwrap_err();
    assert!(err.to_string().contains("manifest.json"), "{err}");
    // Not selected: not looked into.
    let only = ["good".to_string()];
    let found = discover_collections(&root, Some(&only), &InputFormat::ALL).unwrap();
    assert_eq!(names(&found), ["good"]);
}

#[test]
fn broken_entries_elsewhere_do_not_stop_selected_collections() {
    let dir = TempDir::new().unwrap();
    write(dir.path(), "good/a.jsonl", "{\"text\": \"t\"}\n");
    write(dir.path(), "other/a.jsonl", "{\"text\": \"t\"}\n");
    std::os::unix::fs::symlink("loop", dir.path().join("other/loop")).unwrap();
    std::os::unix::fs::symlink("self.jsonl", dir.path().join("self.jsonl")).unwrap();
    let only = ["good".to_string()];
    let found = discover_collections(dir.path(), Some(&only), &InputFormat::ALL).unwrap();
    assert_eq!(names(&found), ["good"]);
    // The broken entry is an error when it is selected, or when nothing is.
    for only in [
        Some(vec!["other".to_string()]),
        Some(vec!["self".to_string()]),
        None,
    ] {
        let err = discover_collections(dir.path(), only.as_deref(), &InputFormat::ALL)
            .unwrap_err()
            .to_string();
        assert!(err.contains("symbolic links"), "{only:?}: {err}");
    }
    // An unknown name still lists what is there, unexamined entries included.
    let only = ["nope".to_string()];
    let err = discover_collections(dir.path(), Some(&only), &InputFormat::ALL)
        .unwrap_err()
        .to_string();
    assert!(err.contains("available: good, other"), "{err}");

    // An unreadable directory (only observable without root's override of permissions).
    use std::os::unix::fs::PermissionsExt;
    let locked = dir.path().join("locked");
    write(dir.path(), "locked/a.jsonl", "{\"text\": \"t\"}\n");
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).unwrap();
    let unreadable = fs::read_dir(&locked).is_err();
    let only = ["good".to_string()];
    let found = discover_collections(dir.path(), Some(&only), &InputFormat::ALL);
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(names(&found.unwrap()), ["good"]);
    if unreadable {
        let only = ["locked".to_string()];
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).unwrap();
        let err = discover_collections(dir.path(), Some(&only), &InputFormat::ALL);
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o755)).unwrap();
        assert!(err.unwrap_err().to_string().contains("locked"));
    }
}
