//! Reading the chunks of a collection.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::path::Path;

use serde_json::{Map, Value};

use super::ids::{derive_chunk_id, point_id};
use super::{
    describe_formats, embedding_text, Chunk, ChunkId, Collection, InputError, InputFormat,
    InvalidInputPolicy, ReadCollection, SkipReport, SourceLocation,
};

/// Keys under which a `.json` object may wrap its list of chunks, in the
/// order they are looked for.
pub const WRAPPER_KEYS: &[&str] = &["chunks", "data", "records", "items"];

/// Top-level fields that may hold the chunk id, in precedence order (after
/// them comes `metadata.chunk_id`).
pub const ID_FIELDS: &[&str] = &["id", "_id", "chunk_id"];

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Read every chunk of `collection`, files in the order given, chunks in file
/// order (see the [module docs](super) for the rules).
///
/// Under [`InvalidInputPolicy::Error`] the first invalid chunk is an error;
/// under [`InvalidInputPolicy::Skip`] it is counted in
/// [`ReadCollection::skipped`]. I/O errors always abort.
pub fn read_collection(
    collection: &Collection,
    policy: InvalidInputPolicy,
) -> Result<ReadCollection, InputError> {
    let mut stream = ChunkStream::open(collection, policy);
    let mut chunks = Vec::new();
    for chunk in stream.by_ref() {
        chunks.push(chunk?);
    }
    Ok(ReadCollection {
        chunks,
        skipped: stream.into_skipped(),
    })
}

/// The chunks of a collection one at a time, with the same rules as [`read_collection`]: a
/// big collection never has to be held in memory. What stays is one entry per chunk id seen
/// (to reject duplicates, with the first occurrence's location) and, for a `.json` file, that
/// file's parsed items (a JSON array cannot be read item by item).
///
/// Yields `Err` for the first invalid chunk under [`InvalidInputPolicy::Error`] (and for I/O
/// errors under either policy), then ends.
pub struct ChunkStream<'a> {
    collection: &'a Collection,
    policy: InvalidInputPolicy,
    /// Index in `collection.files` of the next file to open.
    next_file: usize,
    /// Index in `collection.files` of the file `current` reads (every chunk comes from it).
    current_file: usize,
    current: Option<OpenFile>,
    /// Chunk id -> (file index, line or item) of its first occurrence.
    first_seen: HashMap<ChunkId, (usize, Place)>,
    skipped: SkipReport,
    /// Chunks yielded so far.
    yielded: usize,
    finished: bool,
}

/// Where in its file a chunk was.
#[derive(Clone, Copy)]
enum Place {
    Line(usize),
    Item(usize),
    File,
}

enum OpenFile {
    Jsonl {
        reader: BufReader<File>,
        line_no: usize,
        data_lines: usize,
    },
    /// A `.json` file's chunks, parsed up front.
    Json {
        items: std::vec::IntoIter<Result<Chunk, InputError>>,
    },
}

impl<'a> ChunkStream<'a> {
    pub fn open(collection: &'a Collection, policy: InvalidInputPolicy) -> Self {
        Self {
            collection,
            policy,
            next_file: 0,
            current_file: 0,
            current: None,
            first_seen: HashMap::new(),
            skipped: SkipReport::default(),
            yielded: 0,
            finished: false,
        }
    }

    /// What was skipped so far (all of it once the stream is exhausted).
    pub fn skipped(&self) -> &SkipReport {
        &self.skipped
    }

    pub fn into_skipped(self) -> SkipReport {
        self.skipped
    }

    /// Chunks yielded so far.
    pub fn position(&self) -> usize {
        self.yielded
    }

    /// The next parsed chunk or chunk-level error, before the duplicate and skip rules.
    fn next_raw(&mut self) -> Option<Result<Chunk, InputError>> {
        loop {
            match &mut self.current {
                Some(OpenFile::Jsonl {
                    reader,
                    line_no,
                    data_lines,
                }) => {
                    let path = &self.collection.files[self.current_file];
                    let mut buf = Vec::new();
                    match reader.read_until(b'\n', &mut buf) {
                        Err(source) => {
                            return Some(Err(InputError::Io {
                                path: path.clone(),
                                source,
                            }))
                        }
                        Ok(0) => {
                            if *data_lines == 0 {
                                tracing::warn!(file = %path.display(), "chunk file holds no chunks");
                            }
                            self.current = None;
                            continue;
                        }
                        Ok(_) => {}
                    }
                    *line_no += 1;
                    let mut bytes = buf.as_slice();
                    if *line_no == 1 {
                        bytes = bytes.strip_prefix(BOM).unwrap_or(bytes);
                    }
                    bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
                    bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
                    if bytes.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    *data_lines += 1;
                    let location = SourceLocation::line(path, *line_no);
                    return Some(parse_line(bytes, &location).and_then(|value| {
                        let chunk = chunk_from_value(value, &self.collection.name, location)?;
                        reject_oversized_integers(chunk, bytes)
                    }));
                }
                Some(OpenFile::Json { items }) => match items.next() {
                    Some(item) => return Some(item),
                    None => {
                        self.current = None;
                        continue;
                    }
                },
                None => {
                    let index = self.next_file;
                    let path = self.collection.files.get(index)?;
                    self.next_file += 1;
                    self.current_file = index;
                    tracing::debug!(collection = %self.collection.name, file = %path.display(), "reading chunk file");
                    match InputFormat::from_path(path) {
                        Some(InputFormat::Jsonl) => match File::open(path) {
                            Ok(file) => {
                                self.current = Some(OpenFile::Jsonl {
                                    reader: BufReader::with_capacity(1 << 16, file),
                                    line_no: 0,
                                    data_lines: 0,
                                })
                            }
                            Err(source) => {
                                return Some(Err(InputError::Io {
                                    path: path.clone(),
                                    source,
                                }))
                            }
                        },
                        Some(InputFormat::Json) => match read_json(path, &self.collection.name) {
                            Ok(items) => {
                                self.current = Some(OpenFile::Json {
                                    items: items.into_iter(),
                                })
                            }
                            Err(err) => return Some(Err(err)),
                        },
                        None => {
                            return Some(Err(InputError::UnsupportedFile {
                                path: path.clone(),
                                expected: describe_formats(&InputFormat::ALL),
                            }))
                        }
                    }
                }
            }
        }
    }

    /// The file index and place of a chunk just read (from the current file), kept compactly
    /// for the duplicate check instead of a path per chunk.
    fn place_of(&self, location: &SourceLocation) -> (usize, Place) {
        let file = self.current_file;
        let place = match (location.line, location.item) {
            (Some(line), _) => Place::Line(line),
            (None, Some(item)) => Place::Item(item),
            (None, None) => Place::File,
        };
        (file, place)
    }

    fn location_of(&self, (file, place): (usize, Place)) -> SourceLocation {
        let path = self.collection.files.get(file).cloned().unwrap_or_default();
        match place {
            Place::Line(line) => SourceLocation::line(&path, line),
            Place::Item(item) => SourceLocation::item(&path, item),
            Place::File => SourceLocation::file(&path),
        }
    }

    /// Keep a parsed chunk unless its id was seen before; hand errors to
    /// [`ChunkStream::reject`]. `Ok(None)`: skipped.
    fn accept(&mut self, chunk: Result<Chunk, InputError>) -> Result<Option<Chunk>, InputError> {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(err) => return self.reject(err).map(|()| None),
        };
        if let Some(&first) = self.first_seen.get(&chunk.id) {
            let first = Box::new(self.location_of(first));
            return self
                .reject(InputError::DuplicateId {
                    id: chunk.id,
                    location: chunk.location,
                    first,
                })
                .map(|()| None);
        }
        let place = self.place_of(&chunk.location);
        self.first_seen.insert(chunk.id.clone(), place);
        Ok(Some(chunk))
    }

    /// Under the skip policy count a chunk-level error; otherwise return it.
    fn reject(&mut self, err: InputError) -> Result<(), InputError> {
        if self.policy != InvalidInputPolicy::Skip {
            return Err(err);
        }
        match (err.skip_reason(), err.location()) {
            (Some(reason), Some(location)) => {
                tracing::debug!(
                    collection = %self.collection.name,
                    location = %location,
                    reason = %reason,
                    "skipped invalid chunk"
                );
                self.skipped.record(reason, location.clone());
                Ok(())
            }
            _ => Err(err),
        }
    }
}

impl Iterator for ChunkStream<'_> {
    type Item = Result<Chunk, InputError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        loop {
            let Some(raw) = self.next_raw() else {
                self.finished = true;
                return None;
            };
            match self.accept(raw) {
                Ok(Some(chunk)) => {
                    self.yielded += 1;
                    return Some(Ok(chunk));
                }
                Ok(None) => continue,
                Err(err) => {
                    self.finished = true;
                    return Some(Err(err));
                }
            }
        }
    }
}

/// A `.json` chunk file's chunks (or chunk-level errors), in item order. A file that is not
/// valid JSON at all gives one `Malformed` error (skippable under the skip policy).
fn read_json(path: &Path, collection: &str) -> Result<Vec<Result<Chunk, InputError>>, InputError> {
    let bytes = fs::read(path).map_err(|source| InputError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let bytes = bytes.strip_prefix(BOM).unwrap_or(&bytes);
    let value: Value = match serde_json::from_slice(bytes) {
        Ok(value) => value,
        Err(err) => {
            let location = if err.line() > 0 {
                SourceLocation::line(path, err.line())
            } else {
                SourceLocation::file(path)
            };
            return Ok(vec![Err(InputError::Malformed {
                location,
                message: json_error_message(&err),
            })]);
        }
    };
    let items = match value {
        Value::Array(items) => items,
        Value::Object(mut map) if !map.contains_key("text") => {
            match WRAPPER_KEYS.iter().find(|key| map.contains_key(**key)) {
                Some(key) => match map.remove(*key) {
                    Some(Value::Array(items)) => items,
                    other => {
                        return Ok(vec![Err(InputError::Malformed {
                            location: SourceLocation::file(path),
                            message: format!(
                                "field {key:?} must be a list of chunks, found {}",
                                kind(other.as_ref().unwrap_or(&Value::Null))
                            ),
                        })])
                    }
                },
                None => {
                    return Ok(vec![chunk_from_value(
                        Value::Object(map),
                        collection,
                        SourceLocation::file(path),
                    )])
                }
            }
        }
        single @ (Value::Object(_) | Value::String(_)) => {
            return Ok(vec![chunk_from_value(
                single,
                collection,
                SourceLocation::file(path),
            )])
        }
        other => {
            return Ok(vec![Err(InputError::Malformed {
                location: SourceLocation::file(path),
                message: format!(
                    "expected a list of chunks, a chunk object or a string, found {}",
                    kind(&other)
                ),
            })])
        }
    };
    if items.is_empty() {
        tracing::warn!(file = %path.display(), "chunk file holds no chunks");
    }
    Ok(items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            chunk_from_value(item, collection, SourceLocation::item(path, index))
                .and_then(|chunk| reject_oversized_integers(chunk, bytes))
        })
        .collect())
}

/// Fails a chunk whose metadata held an integer beyond 64 bits. serde_json reads such a
/// literal as the nearest float (`123456789012345678901234567890` becomes
/// `1.2345678901234568e+29`), which would silently change the payload; vector databases hold
/// 64-bit integers. Only a chunk with an integral float that large is looked at again, in its
/// source text (`raw`: the line, or the whole `.json` file), to tell `1e29` (a float, kept)
/// from an integer literal (an error). Messages name the field, never the value.
fn reject_oversized_integers(chunk: Chunk, raw: &[u8]) -> Result<Chunk, InputError> {
    let Some(field) = beyond_64_bits(&chunk.metadata) else {
        return Ok(chunk);
    };
    if !has_oversized_integer_literal(raw) {
        return Ok(chunk);
    }
    Err(InputError::InvalidField {
        location: chunk.location,
        field,
        message: "an integer outside the 64-bit range (it would be stored as a rounded float); \
                  write it as a string to keep it exact"
            .to_string(),
    })
}

/// The path (`key`, `key.inner`, `key[2]`) of the first float in `metadata` that is integral
/// and outside the i64/u64 range: what an oversized integer literal parses to. The path is
/// only built on the way back from a hit.
fn beyond_64_bits(metadata: &Map<String, Value>) -> Option<String> {
    fn rest(value: &Value) -> Option<String> {
        match value {
            Value::Number(number) => {
                let v = number.as_f64()?;
                (!number.is_i64()
                    && !number.is_u64()
                    && v.fract() == 0.0
                    && !(-9.223_372_036_854_776e18..1.844_674_407_370_955_2e19).contains(&v))
                .then(String::new)
            }
            Value::Array(items) => items
                .iter()
                .enumerate()
                .find_map(|(i, item)| rest(item).map(|tail| format!("[{i}]{tail}"))),
            Value::Object(map) => map
                .iter()
                .find_map(|(key, item)| rest(item).map(|tail| format!(".{key}{tail}"))),
            _ => None,
        }
    }
    metadata
        .iter()
        .find_map(|(key, value)| rest(value).map(|tail| format!("{key}{tail}")))
}

/// Whether JSON text holds an integer literal (digits, optional minus, no fraction or
/// exponent) outside the i64/u64 range. Strings are skipped, escapes included.
pub(crate) fn has_oversized_integer_literal(json: &[u8]) -> bool {
    let mut i = 0;
    while i < json.len() {
        match json[i] {
            b'"' => {
                i += 1;
                while i < json.len() && json[i] != b'"' {
                    i += if json[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < json.len()
                    && matches!(json[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    i += 1;
                }
                let token = &json[start..i];
                let integral = token.iter().all(|b| b.is_ascii_digit() || *b == b'-');
                if integral {
                    if let Ok(text) = std::str::from_utf8(token) {
                        if text.parse::<i64>().is_err() && text.parse::<u64>().is_err() {
                            return true;
                        }
                    }
                }
            }
            _ => i += 1,
        }
    }
    false
}

fn parse_line(bytes: &[u8], location: &SourceLocation) -> Result<Value, InputError> {
    let line = std::str::from_utf8(bytes).map_err(|err| InputError::Malformed {
        location: location.clone(),
        message: format!("invalid UTF-8 at byte {}", err.valid_up_to() + 1),
    })?;
    serde_json::from_str(line).map_err(|err| InputError::Malformed {
        location: location.clone(),
        message: json_error_message(&err),
    })
}

/// serde_json's message without its "at line L column C" suffix (the line
/// goes into the location), with the column kept. serde_json syntax messages
/// never quote the input.
fn json_error_message(err: &serde_json::Error) -> String {
    let full = err.to_string();
    if err.line() == 0 {
        return format!("invalid JSON: {full}");
    }
    let suffix = format!(" at line {} column {}", err.line(), err.column());
    let message = full.strip_suffix(&suffix).unwrap_or(&full);
    format!("invalid JSON: {message} at column {}", err.column())
}

/// The JSON type of a value, for messages (never the value itself).
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn invalid_field(location: &SourceLocation, field: &str, message: String) -> InputError {
    InputError::InvalidField {
        location: location.clone(),
        field: field.to_string(),
        message,
    }
}

/// Build a chunk from one JSON value: an object, or a bare string (the text).
fn chunk_from_value(
    value: Value,
    collection: &str,
    location: SourceLocation,
) -> Result<Chunk, InputError> {
    match value {
        Value::String(text) => build_chunk(collection, location, None, None, text, Map::new()),
        Value::Object(map) => chunk_from_object(map, collection, location),
        other => Err(InputError::Malformed {
            message: format!(
                "expected a chunk object or a string, found {}",
                kind(&other)
            ),
            location,
        }),
    }
}

fn chunk_from_object(
    map: Map<String, Value>,
    collection: &str,
    location: SourceLocation,
) -> Result<Chunk, InputError> {
    let mut text = Value::Null;
    let mut title = Value::Null;
    let mut metadata = Value::Null;
    let mut ids: [Value; 3] = [Value::Null, Value::Null, Value::Null];
    let mut extra = Map::new();
    for (key, value) in map {
        match key.as_str() {
            "text" => text = value,
            "title" => title = value,
            "metadata" => metadata = value,
            _ => match ID_FIELDS.iter().position(|field| *field == key) {
                Some(index) => ids[index] = value,
                None => {
                    extra.insert(key, value);
                }
            },
        }
    }

    let text = match text {
        Value::String(text) => text,
        Value::Null => return Err(InputError::MissingText { location }),
        other => {
            return Err(invalid_field(
                &location,
                "text",
                format!("expected a string, found {}", kind(&other)),
            ))
        }
    };
    let title = match title {
        Value::String(title) => Some(title),
        Value::Null => None,
        other => {
            return Err(invalid_field(
                &location,
                "title",
                format!("expected a string, found {}", kind(&other)),
            ))
        }
    };
    let mut metadata = match metadata {
        Value::Object(metadata) => metadata,
        Value::Null => Map::new(),
        other => {
            return Err(invalid_field(
                &location,
                "metadata",
                format!("expected a JSON object, found {}", kind(&other)),
            ))
        }
    };

    let id_field = ID_FIELDS
        .iter()
        .zip(&ids)
        .find(|(_, value)| !value.is_null())
        .map(|(field, value)| (*field, value))
        .or_else(|| {
            metadata
                .get("chunk_id")
                .filter(|value| !value.is_null())
                .map(|value| ("metadata.chunk_id", value))
        });
    let id = match id_field {
        Some((field, value)) => Some(parse_id(field, value, &location)?),
        None => None,
    };

    for (key, value) in extra {
        metadata.entry(key).or_insert(value);
    }
    build_chunk(collection, location, id, title, text, metadata)
}

fn parse_id(field: &str, value: &Value, location: &SourceLocation) -> Result<ChunkId, InputError> {
    match value {
        Value::String(id) if !id.is_empty() => Ok(ChunkId(id.clone())),
        Value::String(_) => Err(invalid_field(
            location,
            field,
            "expected a non-empty string or an integer, found an empty string".to_string(),
        )),
        Value::Number(number) if number.is_i64() || number.is_u64() => {
            Ok(ChunkId(number.to_string()))
        }
        other => Err(invalid_field(
            location,
            field,
            format!(
                "expected a non-empty string or an integer, found {}",
                match other {
                    Value::Number(_) => "a non-integer number",
                    other => kind(other),
                }
            ),
        )),
    }
}

fn build_chunk(
    collection: &str,
    location: SourceLocation,
    id: Option<ChunkId>,
    title: Option<String>,
    text: String,
    metadata: Map<String, Value>,
) -> Result<Chunk, InputError> {
    let embedded = embedding_text(title.as_deref(), &text);
    if embedded.trim().is_empty() {
        return Err(InputError::EmptyText { location });
    }
    if !super::has_visible_text(&embedded) {
        return Err(InputError::InvisibleText { location });
    }
    let id = match id {
        Some(id) => id,
        None => derive_chunk_id(collection, &embedded),
    };
    Ok(Chunk {
        point_id: point_id(collection, &id),
        id,
        title,
        text,
        metadata,
        location,
    })
}
