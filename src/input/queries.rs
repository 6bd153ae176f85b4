//! Query files for retrieval and rerank: JSONL with one query per line, BEIR `queries.jsonl`
//! (`{"_id", "text", "metadata"?}`) or `{"id", "text"}`. Ids are strings or integers. Errors name
//! the file and line; a query file is small and hand-made, so any bad line is an error (never a
//! silent skip). Query text never appears in messages.

use super::{ChunkId, InputError, SourceLocation};
use serde_json::Value;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;

/// One query.
#[derive(Clone, Debug, PartialEq)]
pub struct Query {
    pub id: String,
    pub text: String,
}

/// Reads every query of a JSONL file, in file order.
pub fn read_queries(path: &Path) -> Result<Vec<Query>, InputError> {
    let io_err = |source| InputError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io_err)?;
    let mut queries = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (index, line) in BufReader::new(file).split(b'\n').enumerate() {
        let number = index + 1;
        let location = SourceLocation::line(path, number);
        let bytes = line.map_err(io_err)?;
        let text = String::from_utf8(bytes).map_err(|_| InputError::Malformed {
            location: location.clone(),
            message: "invalid UTF-8".to_string(),
        })?;
        let text = text.trim_start_matches('\u{feff}');
        if text.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(text).map_err(|err| InputError::Malformed {
            location: location.clone(),
            message: format!("invalid JSON: {err}"),
        })?;
        let id = match value.get("_id").or_else(|| value.get("id")) {
            Some(Value::String(id)) if !id.is_empty() => id.clone(),
            Some(Value::Number(n)) if n.is_i64() || n.is_u64() => n.to_string(),
            Some(_) => {
                return Err(InputError::InvalidField {
                    location,
                    field: "_id".to_string(),
                    message: "expected a non-empty string or an integer".to_string(),
                })
            }
            None => {
                return Err(InputError::InvalidField {
                    location,
                    field: "_id".to_string(),
                    message: "a query needs an id (`_id` or `id`)".to_string(),
                })
            }
        };
        let query_text = match value.get("text") {
            Some(Value::String(t)) if super::has_visible_text(t) => t.clone(),
            Some(Value::String(t)) if !t.trim().is_empty() => {
                return Err(InputError::InvisibleText { location })
            }
            Some(Value::String(_)) => return Err(InputError::EmptyText { location }),
            Some(_) => {
                return Err(InputError::InvalidField {
                    location,
                    field: "text".to_string(),
                    message: "expected a string".to_string(),
                })
            }
            None => return Err(InputError::MissingText { location }),
        };
        if let Some(first) = seen.insert(id.clone(), number) {
            return Err(InputError::DuplicateId {
                id: ChunkId(id),
                location,
                first: Box::new(SourceLocation::line(path, first)),
            });
        }
        queries.push(Query {
            id,
            text: query_text,
        });
    }
    Ok(queries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queries.jsonl");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn reads_beir_and_plain_queries() {
        let (_dir, path) = write(
            "{\"_id\": \"1\", \"text\": \"q one\", \"metadata\": {}}\r\n\n{\"id\": 7, \"text\": \"q two\"}\n",
        );
        let queries = read_queries(&path).unwrap();
        assert_eq!(queries.len(), 2);
        assert_eq!(
            (queries[0].id.as_str(), queries[0].text.as_str()),
            ("1", "q one")
        );
        assert_eq!(queries[1].id, "7");
    }

    #[test]
    fn errors_name_file_and_line_without_the_text() {
        let cases = [
            (
                "{\"_id\": \"1\", \"text\": \"secret words\"}\n{\"text\": \"x\"}\n",
                ":2: invalid field \"_id\"",
            ),
            ("{\"_id\": \"1\", \"text\": \"  \"}\n", ":1: empty text"),
            ("{\"_id\": \"1\"}\n", ":1: missing field \"text\""),
            (
                "{\"_id\": \"1\", \"text\": \"a\"}\n{\"_id\": \"1\", \"text\": \"secret words\"}\n",
                ":2: duplicate chunk id \"1\" (first seen at",
            ),
            ("{\"_id\": \"1\", \"text\": \n", ":1: invalid JSON"),
        ];
        for (text, expected) in cases {
            let (_dir, path) = write(text);
            let message = read_queries(&path).unwrap_err().to_string();
            assert!(message.contains(expected), "{message} lacks {expected}");
            assert!(!message.contains("secret"), "query text leaked: {message}");
        }
    }
}
