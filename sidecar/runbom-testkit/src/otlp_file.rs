//! What runbom's `file` exporter wrote (OTLP/JSON, one export request per line), read with
//! the project's one OTLP/JSON file reader ([`runbom_otlp::json`]).

use std::{collections::BTreeMap, path::Path};

use runbom_otlp::json::{FileError, Layout, for_each_document};
use serde_json::Value;

/// Which items of an export request to visit.
#[derive(Clone, Copy, Debug)]
pub enum Items {
    Spans,
    LogRecords,
}

/// Calls `f` on every span or log record (as OTLP/JSON) of the file at `path`.
pub fn for_each_item(
    path: &Path,
    items: Items,
    mut f: impl FnMut(&Value),
) -> Result<(), FileError> {
    let [resources, scopes, leaves] = match items {
        Items::Spans => ["resourceSpans", "scopeSpans", "spans"],
        Items::LogRecords => ["resourceLogs", "scopeLogs", "logRecords"],
    };
    for_each_document(path, Layout::Lines, |doc| {
        for resource in within(&doc.value, resources) {
            for scope in within(resource, scopes) {
                within(scope, leaves).for_each(&mut f);
            }
        }
        Ok(())
    })
}

/// The values of the array at `key` (none if it is missing or not an array).
fn within<'a>(value: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    value[key].as_array().into_iter().flatten()
}

/// Like [`for_each_item`] for a test: a file that cannot be read (not written yet) has no
/// items; a line that is not JSON fails the test, naming the file and line.
fn each_item_or_panic(path: &Path, items: Items, f: impl FnMut(&Value)) {
    match for_each_item(path, items, f) {
        Ok(()) | Err(FileError::Io { .. }) => {}
        Err(e) => panic!("{e}"),
    }
}

/// Trace ids (hex) of every span in the file, with how many spans each has.
#[must_use]
pub fn trace_ids_in_file(path: &Path) -> BTreeMap<String, usize> {
    let mut ids = BTreeMap::new();
    each_item_or_panic(path, Items::Spans, |span| {
        let id = span["traceId"].as_str().unwrap_or_default().to_owned();
        *ids.entry(id).or_default() += 1;
    });
    ids
}

/// Log bodies (string values) in the file.
#[must_use]
pub fn log_bodies_in_file(path: &Path) -> Vec<String> {
    let mut bodies = Vec::new();
    each_item_or_panic(path, Items::LogRecords, |record| {
        bodies.push(
            record["body"]["stringValue"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    });
    bodies
}

/// The string value of attribute `key` of a span or log record in OTLP/JSON.
#[must_use]
pub fn str_attribute<'a>(item: &'a Value, key: &str) -> Option<&'a str> {
    item["attributes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["key"] == key)
        .and_then(|a| a["value"]["stringValue"].as_str())
}
