//! Reading input collections of text chunks.
//!
//! # Collections
//!
//! The input root is either a single chunk file or a directory:
//!
//! * **Root is a file**: it is one collection, named by the file stem
//!   (`data/faq.jsonl` → collection `faq`).
//! * **Root is a directory**: every non-hidden subdirectory is a collection
//!   named by the directory name, and every file directly in the root with an
//!   enabled extension (`.jsonl`, `.json`) is also a collection, named by its
//!   stem. A directory and a file that would give the same name (`a/` and
//!   `a.jsonl`, or `a.json` and `a.jsonl`) is an error. Hidden entries
//!   (starting with `.`), `qrels` directories and the query files
//!   `queries.jsonl` / `queries.json` are never collections. A subdirectory
//!   without any chunk file is not a collection (a warning is logged).
//! * **Inside a collection directory**: if it holds `corpus.jsonl` at its top
//!   level it is a BEIR dataset and only `corpus.jsonl` is read. Otherwise
//!   every file with an enabled extension is read, recursively, in path
//!   order, skipping hidden files and directories, `qrels` directories and
//!   files named `queries.jsonl` / `queries.json`.
//!
//! Collections are returned sorted by name. A collection filter keeps only
//! the named collections; an unknown name is an error listing the available
//! ones. A missing root, or a root without any collection, is an error.
//!
//! # File formats
//!
//! * `.jsonl`: one chunk per line, read line by line. Blank (whitespace-only)
//!   lines are not data and are ignored; line numbers still count them.
//! * `.json`: a list of chunks; an object wrapping that list under `chunks`,
//!   `data`, `records` or `items` (an object with a `text` key is a chunk,
//!   not a wrapper); a single chunk object; a list of bare strings; or a
//!   single JSON string.
//!
//! A UTF-8 byte order mark at the start of a file is ignored. A chunk given
//! as a bare JSON string is a chunk with that text and no id, title or
//! metadata. BEIR `corpus.jsonl` records (`_id`, `title`, `text`,
//! `metadata`) read as they are.
//!
//! # Chunks
//!
//! A chunk is an object `{id?, text, title?, metadata?}`:
//!
//! * **id**: the first present of `id`, `_id`, `chunk_id` and
//!   `metadata.chunk_id`. It must be a non-empty string or an integer
//!   (rendered in decimal); anything else (including `null`) is an invalid
//!   field. Without any of them the id is derived from the content: the first
//!   16 hex digits of `sha256(collection + "\0" + embedding_text)`, so re-runs
//!   give the same ids. Two chunks of one collection with the same id are
//!   duplicates (so are two id-less chunks with the same embedding text).
//! * **point id**: every chunk also gets a UUIDv5 in the namespace
//!   [`POINT_ID_NAMESPACE`] over the name `collection + "/" + chunk_id`
//!   (see [`point_id`]).
//! * **text**: required, a string. **title**: optional, a string (`null` is
//!   the same as absent). The text that is embedded ([`Chunk::embedding_text`])
//!   is `title + " " + text` when the title is not empty or whitespace-only
//!   (the sentence-transformers BEIR convention), else `text`. Text and title
//!   are stored exactly as given: whitespace and newlines are never trimmed.
//! * **metadata**: optional, must be a JSON object. Top-level fields other
//!   than the id fields, `text`, `title` and `metadata` are merged into the
//!   metadata, after its own keys; on a clash the explicit `metadata` key
//!   wins.
//!
//! # Bad input
//!
//! Bad input never panics and never silently disappears. A malformed line
//! (invalid JSON, invalid UTF-8, or a value that is neither an object nor a
//! string), a missing text, an empty text (the embedding text is empty or only
//! whitespace), an invalid field, or a duplicate id is, under
//! [`InvalidInputPolicy::Error`] (the default), an error naming the file and
//! line (`chunks/a.jsonl:17: missing field "text"`) or, for `.json` files,
//! the file and the 0-based item index (`data.json[3]: empty text`), and
//! the line and column for JSON syntax errors. Under
//! [`InvalidInputPolicy::Skip`] the chunk is skipped and counted in a
//! [`SkipReport`] with its location; a `.json` file that cannot be parsed at
//! all counts as one skip. For duplicate ids the first occurrence wins and
//! the error names both locations. I/O errors always abort.
//!
//! Chunks are returned in file order, files in sorted path order. Errors and
//! log messages name ids and locations only, never chunk text.

mod discover;
mod hashes;
mod ids;
mod queries;
mod read;

#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use discover::{discover_collections, validate_collection_name};
pub use hashes::{HashError, InputHashes};
pub use ids::{derive_chunk_id, point_id, POINT_ID_NAMESPACE};
pub use queries::{read_queries, Query};
pub use read::{read_collection, ChunkStream};

/// Number of skipped chunks whose location is kept in [`SkipReport::examples`].
pub const MAX_SKIP_EXAMPLES: usize = 20;

/// The id of a chunk, unique within its collection.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Ord, PartialOrd, Serialize)]
#[serde(transparent)]
pub struct ChunkId(pub String);

impl ChunkId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a chunk (or a problem) was found: a file, plus either the 1-based
/// line (`.jsonl`, JSON syntax errors) or the 0-based item index (`.json`).
#[derive(Clone, Debug, PartialEq)]
pub struct SourceLocation {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub item: Option<usize>,
}

impl SourceLocation {
    pub fn file(file: &Path) -> Self {
        Self {
            file: file.to_path_buf(),
            line: None,
            item: None,
        }
    }

    pub fn line(file: &Path, line: usize) -> Self {
        Self {
            file: file.to_path_buf(),
            line: Some(line),
            item: None,
        }
    }

    pub fn item(file: &Path, item: usize) -> Self {
        Self {
            file: file.to_path_buf(),
            line: None,
            item: Some(item),
        }
    }
}

impl fmt::Display for SourceLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.display();
        match (self.line, self.item) {
            (Some(line), _) => write!(f, "{file}:{line}"),
            (None, Some(item)) => write!(f, "{file}[{item}]"),
            (None, None) => write!(f, "{file}"),
        }
    }
}

/// One chunk of text to embed.
#[derive(Clone, Debug, PartialEq)]
pub struct Chunk {
    pub id: ChunkId,
    pub point_id: uuid::Uuid,
    pub title: Option<String>,
    pub text: String,
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub location: SourceLocation,
}

impl Chunk {
    /// The text to embed: `title + " " + text` when the title is not empty
    /// (or whitespace-only), else `text`.
    pub fn embedding_text(&self) -> Cow<'_, str> {
        embedding_text(self.title.as_deref(), &self.text)
    }
}

pub(crate) fn embedding_text<'a>(title: Option<&str>, text: &'a str) -> Cow<'a, str> {
    match title {
        Some(title) if !title.trim().is_empty() => {
            let mut joined = String::with_capacity(title.len() + 1 + text.len());
            joined.push_str(title);
            joined.push(' ');
            joined.push_str(text);
            Cow::Owned(joined)
        }
        _ => Cow::Borrowed(text),
    }
}

/// A collection: a name and the chunk files to read, in reading order.
#[derive(Clone, Debug)]
pub struct Collection {
    pub name: String,
    pub files: Vec<PathBuf>,
    /// The collection's own directory (`None` for a single-file collection). A BEIR directory
    /// may hold the collection's `queries.jsonl` and `qrels/test.tsv` beside `corpus.jsonl`.
    pub dir: Option<PathBuf>,
}

impl Collection {
    /// A file of the collection's own directory, when it exists (`queries.jsonl`, …).
    pub fn own_file(&self, relative: &str) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|dir| dir.join(relative))
            .filter(|path| path.is_file())
    }
}

/// What to do with a chunk that cannot be read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InvalidInputPolicy {
    /// Stop at the first invalid chunk with an error naming its location.
    #[default]
    Error,
    /// Skip invalid chunks, counting them in a [`SkipReport`].
    Skip,
}

/// A chunk file format, chosen by file extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InputFormat {
    /// `.jsonl`: one chunk per line.
    Jsonl,
    /// `.json`: a list of chunks (possibly wrapped), one chunk, or strings.
    Json,
}

impl InputFormat {
    /// Every supported format.
    pub const ALL: [InputFormat; 2] = [InputFormat::Jsonl, InputFormat::Json];

    /// The file extension, without the dot.
    pub fn extension(&self) -> &'static str {
        match self {
            InputFormat::Jsonl => "jsonl",
            InputFormat::Json => "json",
        }
    }

    /// The format of a file, by its extension (ASCII case-insensitive).
    pub fn from_path(path: &Path) -> Option<InputFormat> {
        let ext = path.extension()?.to_str()?;
        InputFormat::ALL
            .into_iter()
            .find(|format| ext.eq_ignore_ascii_case(format.extension()))
    }
}

impl fmt::Display for InputFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.extension())
    }
}

/// The chunks of one collection, and what was skipped while reading it.
#[derive(Clone, Debug, Default)]
pub struct ReadCollection {
    pub chunks: Vec<Chunk>,
    pub skipped: SkipReport,
}

/// Why a chunk was skipped under [`InvalidInputPolicy::Skip`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    MalformedJson,
    MissingText,
    EmptyText,
    InvalidField,
    DuplicateId,
}

impl SkipReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            SkipReason::MalformedJson => "malformed_json",
            SkipReason::MissingText => "missing_text",
            SkipReason::EmptyText => "empty_text",
            SkipReason::InvalidField => "invalid_field",
            SkipReason::DuplicateId => "duplicate_id",
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Counts of skipped chunks by reason, with the locations of the first
/// [`MAX_SKIP_EXAMPLES`].
#[derive(Debug, Default, Clone)]
pub struct SkipReport {
    pub counts: BTreeMap<SkipReason, usize>,
    pub examples: Vec<(SkipReason, SourceLocation)>,
}

impl SkipReport {
    /// Total number of skipped chunks.
    pub fn total(&self) -> usize {
        self.counts.values().sum()
    }

    pub fn is_empty(&self) -> bool {
        self.total() == 0
    }

    /// Count one skip.
    pub fn record(&mut self, reason: SkipReason, location: SourceLocation) {
        *self.counts.entry(reason).or_insert(0) += 1;
        if self.examples.len() < MAX_SKIP_EXAMPLES {
            self.examples.push((reason, location));
        }
    }

    /// Add another report's counts (and examples, up to the limit).
    pub fn merge(&mut self, other: &SkipReport) {
        for (reason, count) in &other.counts {
            *self.counts.entry(*reason).or_insert(0) += count;
        }
        let room = MAX_SKIP_EXAMPLES.saturating_sub(self.examples.len());
        self.examples
            .extend(other.examples.iter().take(room).cloned());
    }
}

/// Errors while discovering or reading collections. Messages name paths,
/// locations and ids, never chunk text.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: input root not found", .path.display())]
    RootNotFound { path: PathBuf },
    #[error("{}: no collections found (expected subdirectories or chunk files with extension {expected})", .root.display())]
    NoCollections { root: PathBuf, expected: String },
    #[error("unknown collection {name:?} (available: {})", .available.join(", "))]
    UnknownCollection {
        name: String,
        available: Vec<String>,
    },
    #[error("collection name {name:?} is used by both {} and {}", .first.display(), .second.display())]
    CollectionNameClash {
        name: String,
        first: PathBuf,
        second: PathBuf,
    },
    #[error("{}: unsupported chunk file (expected extension {expected})", .path.display())]
    UnsupportedFile { path: PathBuf, expected: String },
    /// A name that cannot be an output subdirectory (it would leave the output directory,
    /// split log lines, or collide with the run's own files). The name is shown escaped.
    #[error(
        "{path:?}: {name:?} cannot be a collection name: {reason}; rename the file or directory"
    )]
    BadCollectionName {
        path: PathBuf,
        name: String,
        reason: &'static str,
    },
    #[error("{location}: {message}")]
    Malformed {
        location: SourceLocation,
        message: String,
    },
    #[error("{location}: missing field \"text\"")]
    MissingText { location: SourceLocation },
    #[error("{location}: empty text")]
    EmptyText { location: SourceLocation },
    /// Text made only of control, format (zero-width, soft hyphen, BOM) or replacement
    /// characters: every such chunk would get the same vector, the model's empty-input one.
    #[error("{location}: text has no visible characters (only whitespace, control, zero-width or replacement characters)")]
    InvisibleText { location: SourceLocation },
    #[error("{location}: invalid field {field:?}: {message}")]
    InvalidField {
        location: SourceLocation,
        field: String,
        message: String,
    },
    #[error("{location}: duplicate chunk id {:?} (first seen at {first})", .id.as_str())]
    DuplicateId {
        id: ChunkId,
        location: SourceLocation,
        /// Boxed to keep `InputError` small (clippy `result_large_err`).
        first: Box<SourceLocation>,
    },
}

impl InputError {
    /// The skip reason for a chunk-level error (one that
    /// [`InvalidInputPolicy::Skip`] skips); `None` for errors that always
    /// abort (I/O, discovery).
    pub fn skip_reason(&self) -> Option<SkipReason> {
        match self {
            InputError::Malformed { .. } => Some(SkipReason::MalformedJson),
            InputError::MissingText { .. } => Some(SkipReason::MissingText),
            InputError::EmptyText { .. } | InputError::InvisibleText { .. } => {
                Some(SkipReason::EmptyText)
            }
            InputError::InvalidField { .. } => Some(SkipReason::InvalidField),
            InputError::DuplicateId { .. } => Some(SkipReason::DuplicateId),
            InputError::Io { .. }
            | InputError::RootNotFound { .. }
            | InputError::NoCollections { .. }
            | InputError::UnknownCollection { .. }
            | InputError::CollectionNameClash { .. }
            | InputError::BadCollectionName { .. }
            | InputError::UnsupportedFile { .. } => None,
        }
    }

    /// The location of a chunk-level error.
    pub fn location(&self) -> Option<&SourceLocation> {
        match self {
            InputError::Malformed { location, .. }
            | InputError::MissingText { location }
            | InputError::EmptyText { location }
            | InputError::InvisibleText { location }
            | InputError::InvalidField { location, .. }
            | InputError::DuplicateId { location, .. } => Some(location),
            _ => None,
        }
    }
}

/// Whether `text` has at least one character a reader would see: not whitespace, not a control
/// character, not a format character (zero-width space and joiners, soft hyphen, word joiner,
/// BOM, bidirectional marks) and not U+FFFD, the replacement for undecodable bytes.
pub fn has_visible_text(text: &str) -> bool {
    text.chars().any(|c| {
        !(c.is_whitespace()
            || c.is_control()
            || matches!(c,
                '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}'
                | '\u{17B5}' | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{FFA0}' | '\u{FFF0}'..='\u{FFFD}'))
    })
}

/// The extensions of `formats` as text, for messages: `.jsonl or .json`.
pub(crate) fn describe_formats(formats: &[InputFormat]) -> String {
    if formats.is_empty() {
        return "(no formats enabled)".to_string();
    }
    formats
        .iter()
        .map(|format| format!(".{}", format.extension()))
        .collect::<Vec<_>>()
        .join(" or ")
}
