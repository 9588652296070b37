//! OTLP/JSON: export requests read from a body ([`decode`]) and files read document by document
//! ([`for_each_document`]); trace and log requests written as the `file` exporter writes them
//! ([`write`]).
//!
//! runbom's `file` exporter writes one export request per line (JSON Lines); `runbom
//! investigate` also takes one (pretty-printed) document per file, as trace back-ends hand
//! them out. Every reader of such files goes through [`for_each_document`], so that an error
//! names the file and the line in the same way everywhere.

mod decode;
pub mod write;

use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
};

use serde_json::Value;

pub use decode::{JsonError, decode, decode_value};

/// One JSON document of an OTLP/JSON file, with the line it starts on (from 1).
#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    pub line: usize,
    pub value: Value,
}

/// Why an OTLP/JSON file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{}: cannot read: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}: {source}", .path.display())]
    Syntax {
        path: PathBuf,
        line: usize,
        source: serde_json::Error,
    },
}

/// How a file holds its documents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// One document per line; empty lines are skipped.
    Lines,
    /// The whole file as one document (on line 1) if it is one, else one per line.
    DocumentOrLines,
}

/// Calls `f` on each JSON document of the file at `path`, in order, and stops at the first
/// error (`f`'s or the file's). One document per line is read line by line, not all at once.
/// A last line that has no newline and does not parse is what a writer killed mid-line leaves
/// (or one still writing): it is skipped with a warning, not an error.
pub fn for_each_document<E: From<FileError>>(
    path: &Path,
    layout: Layout,
    mut f: impl FnMut(Document) -> Result<(), E>,
) -> Result<(), E> {
    let io = |source| FileError::Io {
        path: path.to_owned(),
        source,
    };
    match layout {
        Layout::Lines => {
            let file = std::fs::File::open(path).map_err(io)?;
            let mut reader = BufReader::new(file);
            let mut line = String::new();
            for number in 1.. {
                line.clear();
                if reader.read_line(&mut line).map_err(io)? == 0 {
                    break;
                }
                let complete = line.ends_with('\n');
                if let Some(doc) = document_or_torn(path, number, &line, complete)? {
                    f(doc)?;
                }
            }
            Ok(())
        }
        Layout::DocumentOrLines => {
            let text = std::fs::read_to_string(path).map_err(io)?;
            for_each_in_text(path, &text, layout, f)
        }
    }
}

/// The files of one signal (`stem`: `traces`, `logs`, `metrics`) in a file exporter's
/// directory, oldest first: its rotated backups (`traces-2026-12-05T19-05-12.345.jsonl`, named
/// in UTC so that their names sort by time) then `traces.jsonl` if it exists. No directory:
/// no files.
pub fn signal_files(dir: &Path, stem: &str) -> std::io::Result<Vec<PathBuf>> {
    let prefix = format!("{stem}-");
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        // No directory: no files (the caller says what it expected).
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut backups: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.strip_prefix(&prefix)
                    .and_then(|rest| rest.strip_suffix(".jsonl"))
                    .is_some_and(|t| t.starts_with(|c: char| c.is_ascii_digit()))
            })
        })
        .collect();
    backups.sort();
    let live = dir.join(format!("{stem}.jsonl"));
    if live.exists() {
        backups.push(live);
    }
    Ok(backups)
}

/// Like [`for_each_document`], over `text` read from `path` (named in errors).
pub fn for_each_in_text<E: From<FileError>>(
    path: &Path,
    text: &str,
    layout: Layout,
    mut f: impl FnMut(Document) -> Result<(), E>,
) -> Result<(), E> {
    if layout == Layout::DocumentOrLines
        && let Ok(value) = serde_json::from_str::<Value>(text)
    {
        return f(Document { line: 1, value });
    }
    let count = text.lines().count();
    for (i, line) in text.lines().enumerate() {
        let complete = i + 1 < count || text.ends_with('\n');
        if let Some(doc) = document_or_torn(path, i + 1, line, complete)? {
            f(doc)?;
        }
    }
    Ok(())
}

/// [`document`], except that a last line without its newline (`complete` false) that does not
/// parse is skipped with a warning.
fn document_or_torn(
    path: &Path,
    line: usize,
    text: &str,
    complete: bool,
) -> Result<Option<Document>, FileError> {
    match document(path, line, text) {
        Err(FileError::Syntax { source, .. }) if !complete => {
            tracing::warn!(
                "{}:{line}: skipping the last line, cut short ({source}): what a writer killed \
                 mid-line leaves",
                path.display()
            );
            Ok(None)
        }
        other => other,
    }
}

/// The document on line `line`, or `None` if it is empty.
fn document(path: &Path, line: usize, text: &str) -> Result<Option<Document>, FileError> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    serde_json::from_str(text)
        .map(|value| Some(Document { line, value }))
        .map_err(|source| FileError::Syntax {
            path: path.to_owned(),
            line,
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn documents(path: &str, text: &str, layout: Layout) -> Result<Vec<Document>, FileError> {
        let mut docs = Vec::new();
        for_each_in_text(Path::new(path), text, layout, |doc| {
            docs.push(doc);
            Ok::<_, FileError>(())
        })?;
        Ok(docs)
    }

    #[test]
    fn lines_are_numbered_from_one_and_empty_ones_skipped() {
        let docs = documents("t.jsonl", "{\"a\":1}\n\n  \n{\"b\":2}\n", Layout::Lines)
            .expect("two documents");
        assert_eq!(
            docs,
            [
                Document {
                    line: 1,
                    value: serde_json::json!({"a": 1})
                },
                Document {
                    line: 4,
                    value: serde_json::json!({"b": 2})
                },
            ]
        );
    }

    #[test]
    fn a_bad_line_is_named_with_its_file() {
        let error = documents("out/t.jsonl", "{}\n{\"a\":\n", Layout::Lines)
            .expect_err("line 2 is cut short");
        assert!(error.to_string().starts_with("out/t.jsonl:2: "), "{error}");
    }

    #[test]
    fn one_pretty_document_is_read_whole_only_when_asked() {
        let text = "{\n  \"resourceSpans\": []\n}\n";
        let docs = documents("t.json", text, Layout::DocumentOrLines).expect("one document");
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0].line, 1);
        assert!(documents("t.json", text, Layout::Lines).is_err());
        // Several documents, one per line, are still read line by line.
        let docs = documents("t.jsonl", "{}\n{}\n", Layout::DocumentOrLines).expect("two");
        assert_eq!(docs.len(), 2);
    }

    #[test]
    fn the_callback_stops_the_reading() {
        let mut seen = 0;
        let result = for_each_in_text(Path::new("t.jsonl"), "{}\n{}\n{}\n", Layout::Lines, |_| {
            seen += 1;
            if seen == 2 {
                Err(FileError::Io {
                    path: "stop".into(),
                    source: std::io::ErrorKind::Other.into(),
                })
            } else {
                Ok(())
            }
        });
        assert!(result.is_err());
        assert_eq!(seen, 2);
    }

    #[test]
    fn a_file_is_read_line_by_line() {
        let path =
            std::env::temp_dir().join(format!("runbom-otlp-json-{}.jsonl", std::process::id()));
        std::fs::write(&path, "{\"a\":1}\n\n{\"b\":\n").expect("write the test file");
        let mut lines = Vec::new();
        let error = for_each_document(&path, Layout::Lines, |doc| {
            lines.push(doc.line);
            Ok::<_, FileError>(())
        })
        .expect_err("line 3 is cut short");
        let _ = std::fs::remove_file(&path);
        assert_eq!(lines, [1]);
        assert!(
            error
                .to_string()
                .starts_with(&format!("{}:3: ", path.display())),
            "{error}"
        );
    }

    #[test]
    fn a_torn_last_line_is_skipped_and_a_torn_middle_line_is_not() {
        let docs = documents("t.jsonl", "{\"a\":1}\n{\"b\":", Layout::Lines).expect("skipped");
        assert_eq!(docs.len(), 1);
        let docs =
            documents("t.jsonl", "{\"a\":1}\n{\"b\":", Layout::DocumentOrLines).expect("skipped");
        assert_eq!(docs.len(), 1);
        let path =
            std::env::temp_dir().join(format!("runbom-otlp-torn-{}.jsonl", std::process::id()));
        std::fs::write(&path, "{\"a\":1}\n{\"b\":2}\n{\"resourceSp").expect("write");
        let mut lines = Vec::new();
        for_each_document(&path, Layout::Lines, |doc| {
            lines.push(doc.line);
            Ok::<_, FileError>(())
        })
        .expect("the torn last line is skipped");
        let _ = std::fs::remove_file(&path);
        assert_eq!(lines, [1, 2]);
        // A line cut short that is followed by another is damage, not a torn write.
        assert!(documents("t.jsonl", "{\"b\":\n{}", Layout::Lines).is_err());
    }

    #[test]
    fn a_missing_file_is_an_io_error_naming_it() {
        let error = for_each_document(
            Path::new("/nonexistent/runbom.jsonl"),
            Layout::Lines,
            |_| Ok::<_, FileError>(()),
        )
        .expect_err("no such file");
        assert!(matches!(error, FileError::Io { .. }), "{error:?}");
        assert!(
            error
                .to_string()
                .starts_with("/nonexistent/runbom.jsonl: cannot read"),
            "{error}"
        );
    }
}
