//! A log export request whose records are put together from parts held once, not built as
//! `opentelemetry-proto` types: runs of attributes many records carry alike
//! ([`AttributeSet`]s made for log records, encoded once as protobuf and as OTLP/JSON), and every string the
//! records hold of their own (attribute keys and values, and lines of text several records
//! share) in one buffer. A record's body can be lines of that text joined by newlines, and one
//! of its attributes the same lines as an array, written from the lines without joining or
//! copying them into values first. The exporters write the request from its parts
//! ([`SharedLogs::write_protobuf`], [`SharedLogs::write_json`]); a component that reads or
//! edits log records builds it first ([`SharedLogs::to_request`]). Both give the same request:
//! the bytes of [`encode_logs`](crate::encode::encode_logs) and
//! [`write_logs`](crate::json::write::write_logs) on it.

use std::{ops::Range, sync::Arc};

use opentelemetry_proto::tonic::{
    collector::logs::v1::ExportLogsServiceRequest,
    common::v1::{AnyValue, ArrayValue, InstrumentationScope, KeyValue, any_value::Value},
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
    resource::v1::Resource,
};

use crate::AttributeSet;

mod write;

/// A string in a [`SharedLogs`]' text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Text {
    start: u32,
    len: u32,
}

impl Text {
    fn range(self) -> Range<usize> {
        self.start as usize..(self.start + self.len) as usize
    }

    fn shifted(self, by: u32) -> Self {
        Self {
            start: self.start + by,
            len: self.len,
        }
    }
}

/// The attributes a [`SharedLogs`] holds apart, by their place among them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetId(u32);

/// One attribute of a record (or a run of them).
#[derive(Clone, Debug)]
enum Part {
    /// A run of [`AttributeSet`] (an index into the sets).
    Shared(u32),
    /// A string value.
    Str { key: Text, value: Text },
    /// An array of string values (an index range into the items).
    Strs { key: Text, values: Range<u32> },
    /// Any other attribute, as it is (boxed: rare, and the other parts are a few words).
    Other(Box<KeyValue>),
}

#[derive(Clone, Debug)]
struct Record {
    time_unix_nano: u64,
    observed_time_unix_nano: u64,
    severity_number: i32,
    severity_text: Text,
    event_name: Text,
    /// Ranges of the ids' bytes.
    trace_id: Range<u32>,
    span_id: Range<u32>,
    /// The body: these items joined by newlines (a string value).
    body: Option<Range<u32>>,
    /// The attributes, in order.
    parts: Range<u32>,
}

/// The records of one resource, under one scope.
#[derive(Clone, Debug)]
struct Group {
    resource: Option<Resource>,
    schema_url: String,
    scope: InstrumentationScope,
    /// Where its records end (they start where the group before ends).
    end: u32,
}

/// The head of a record: its fields but the body and attributes.
#[derive(Clone, Copy, Debug)]
pub struct Head<'a> {
    pub time_unix_nano: u64,
    pub observed_time_unix_nano: u64,
    pub severity_number: i32,
    pub severity_text: &'a str,
    pub event_name: &'a str,
    pub trace_id: &'a [u8],
    pub span_id: &'a [u8],
}

/// A log export request held as its records' parts.
#[derive(Clone, Debug, Default)]
pub struct SharedLogs {
    groups: Vec<Group>,
    records: Vec<Record>,
    parts: Vec<Part>,
    /// The strings of string-array values and bodies.
    items: Vec<Text>,
    text: String,
    /// Trace and span ids.
    ids: Vec<u8>,
    sets: Vec<Arc<AttributeSet>>,
    /// The room its parts are given at once when its first group starts.
    room: Room,
}

/// How many of each part a [`SharedLogs`] holds: the room to give the next one at once, when
/// requests are alike (rather than growing each part by doubling).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Room {
    groups: usize,
    records: usize,
    parts: usize,
    items: usize,
    text: usize,
    ids: usize,
    sets: usize,
}

fn index(n: usize) -> u32 {
    u32::try_from(n).expect("a request holds fewer than 4 Gi parts")
}

impl SharedLogs {
    /// An empty request whose parts get `room` when its first group starts (nothing before:
    /// a request that gets no record allocates nothing).
    #[must_use]
    pub fn with_room(room: Room) -> Self {
        Self {
            room,
            ..Self::default()
        }
    }

    /// How many of each part this request holds.
    #[must_use]
    pub fn room(&self) -> Room {
        Room {
            groups: self.groups.len(),
            records: self.records.len(),
            parts: self.parts.len(),
            items: self.items.len(),
            text: self.text.len(),
            ids: self.ids.len(),
            sets: self.sets.len(),
        }
    }

    /// Records that follow are of `resource` (with `schema_url`), under `scope`.
    pub fn group(
        &mut self,
        resource: Option<Resource>,
        schema_url: String,
        scope: InstrumentationScope,
    ) {
        if self.groups.is_empty() {
            let room = std::mem::take(&mut self.room);
            self.groups.reserve(room.groups);
            self.records.reserve(room.records);
            self.parts.reserve(room.parts);
            self.items.reserve(room.items);
            self.text.reserve(room.text);
            self.ids.reserve(room.ids);
            self.sets.reserve(room.sets);
        }
        self.groups.push(Group {
            resource,
            schema_url,
            scope,
            end: index(self.records.len()),
        });
    }

    /// `set`, held once for every record of this request that carries it ([`SharedLogs::shared`]).
    pub fn set(&mut self, set: &Arc<AttributeSet>) -> SetId {
        let at = self
            .sets
            .iter()
            .rposition(|s| Arc::ptr_eq(s, set))
            .unwrap_or_else(|| {
                self.sets.push(Arc::clone(set));
                self.sets.len() - 1
            });
        SetId(index(at))
    }

    /// `s`, held in the text (to be used by several records).
    pub fn text(&mut self, s: &str) -> Text {
        self.text_with(|t| t.push_str(s))
    }

    /// What `write` appends to the text, held there.
    pub fn text_with(&mut self, write: impl FnOnce(&mut String)) -> Text {
        let start = self.text.len();
        write(&mut self.text);
        Text {
            start: index(start),
            len: index(self.text.len() - start),
        }
    }

    /// The string `t` holds.
    #[must_use]
    pub fn str(&self, t: Text) -> &str {
        &self.text[t.range()]
    }

    /// Starts a record of `head` in the last group (a group of no resource and an empty scope
    /// when there is none); its body and attributes follow.
    pub fn record(&mut self, head: &Head<'_>) -> &mut Self {
        if self.groups.is_empty() {
            self.group(None, String::new(), InstrumentationScope::default());
        }
        let severity_text = self.text(head.severity_text);
        let event_name = self.text(head.event_name);
        let mut id = |b: &[u8]| {
            let start = index(self.ids.len());
            self.ids.extend_from_slice(b);
            start..index(self.ids.len())
        };
        let trace_id = id(head.trace_id);
        let span_id = id(head.span_id);
        let parts = index(self.parts.len());
        self.records.push(Record {
            time_unix_nano: head.time_unix_nano,
            observed_time_unix_nano: head.observed_time_unix_nano,
            severity_number: head.severity_number,
            severity_text,
            event_name,
            trace_id,
            span_id,
            body: None,
            parts: parts..parts,
        });
        if let Some(g) = self.groups.last_mut() {
            g.end = index(self.records.len());
        }
        self
    }

    fn last(&mut self) -> &mut Record {
        self.records
            .last_mut()
            .expect("a record is started before its parts")
    }

    fn part(&mut self, part: Part) -> &mut Self {
        self.parts.push(part);
        self.last().parts.end += 1;
        self
    }

    /// The record's body: `lines` joined by newlines.
    pub fn body_lines(&mut self, lines: &[Text]) -> &mut Self {
        let start = index(self.items.len());
        self.items.extend_from_slice(lines);
        let end = index(self.items.len());
        self.last().body = Some(start..end);
        self
    }

    /// The record's next attributes: those of `set`.
    pub fn shared(&mut self, set: SetId) -> &mut Self {
        self.part(Part::Shared(set.0))
    }

    /// The record's next attribute: the string `value`.
    pub fn str_attribute(&mut self, key: &str, value: &str) -> &mut Self {
        let value = self.text(value);
        self.text_attribute(key, value)
    }

    /// The record's next attribute: the string `value` holds.
    pub fn text_attribute(&mut self, key: &str, value: Text) -> &mut Self {
        let key = self.text(key);
        self.part(Part::Str { key, value })
    }

    /// The record's next attribute: the string `write` writes.
    pub fn attribute_with(&mut self, key: &str, write: impl FnOnce(&mut String)) -> &mut Self {
        let value = self.text_with(write);
        self.text_attribute(key, value)
    }

    /// The record's next attribute: an array of `values`.
    pub fn strs_attribute<'s>(
        &mut self,
        key: &str,
        values: impl IntoIterator<Item = &'s str>,
    ) -> &mut Self {
        let start = index(self.items.len());
        for v in values {
            let t = self.text(v);
            self.items.push(t);
        }
        let key = self.text(key);
        let end = index(self.items.len());
        self.part(Part::Strs {
            key,
            values: start..end,
        })
    }

    /// The record's next attribute: the array of the strings `lines` hold (its body's lines,
    /// say).
    pub fn lines_attribute(&mut self, key: &str, lines: &[Text]) -> &mut Self {
        let key = self.text(key);
        let start = index(self.items.len());
        self.items.extend_from_slice(lines);
        let end = index(self.items.len());
        self.part(Part::Strs {
            key,
            values: start..end,
        })
    }

    /// The record's next attribute: `kv`, as it is.
    pub fn other_attribute(&mut self, kv: KeyValue) -> &mut Self {
        self.part(Part::Other(Box::new(kv)))
    }

    /// How many records.
    #[must_use]
    pub fn len(&self) -> usize {
        self.records.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Appends `other`'s groups and records.
    pub fn append(&mut self, other: SharedLogs) {
        let text = index(self.text.len());
        let ids = index(self.ids.len());
        let items = index(self.items.len());
        let parts = index(self.parts.len());
        let records = index(self.records.len());
        let sets = index(self.sets.len());
        let shift = |r: &Range<u32>, by: u32| r.start + by..r.end + by;
        self.text.push_str(&other.text);
        self.ids.extend_from_slice(&other.ids);
        self.items
            .extend(other.items.iter().map(|t| t.shifted(text)));
        self.sets.extend(other.sets);
        self.parts.extend(other.parts.into_iter().map(|p| match p {
            Part::Shared(s) => Part::Shared(s + sets),
            Part::Str { key, value } => Part::Str {
                key: key.shifted(text),
                value: value.shifted(text),
            },
            Part::Strs { key, values } => Part::Strs {
                key: key.shifted(text),
                values: shift(&values, items),
            },
            Part::Other(kv) => Part::Other(kv),
        }));
        self.records
            .extend(other.records.into_iter().map(|r| Record {
                severity_text: r.severity_text.shifted(text),
                event_name: r.event_name.shifted(text),
                trace_id: shift(&r.trace_id, ids),
                span_id: shift(&r.span_id, ids),
                body: r.body.map(|b| shift(&b, items)),
                parts: shift(&r.parts, parts),
                ..r
            }));
        self.groups.extend(other.groups.into_iter().map(|g| Group {
            end: g.end + records,
            ..g
        }));
    }

    /// Each group with its records.
    fn grouped(&self) -> impl Iterator<Item = (&Group, &[Record])> {
        let mut start = 0;
        self.groups.iter().map(move |g| {
            let records = &self.records[start..g.end as usize];
            start = g.end as usize;
            (g, records)
        })
    }

    fn items(&self, r: &Range<u32>) -> impl Iterator<Item = &str> {
        self.items[r.start as usize..r.end as usize]
            .iter()
            .map(|t| self.str(*t))
    }

    fn bytes(&self, r: &Range<u32>) -> &[u8] {
        &self.ids[r.start as usize..r.end as usize]
    }

    /// The records, each as what reading it needs.
    pub fn records(&self) -> impl Iterator<Item = RecordRef<'_>> {
        self.grouped().flat_map(move |(group, records)| {
            records.iter().map(move |record| RecordRef {
                logs: self,
                group,
                record,
            })
        })
    }

    /// The request as `opentelemetry-proto` types.
    #[must_use]
    pub fn to_request(&self) -> ExportLogsServiceRequest {
        let resource_logs = self
            .grouped()
            .map(|(g, records)| ResourceLogs {
                resource: g.resource.clone(),
                scope_logs: vec![ScopeLogs {
                    scope: Some(g.scope.clone()),
                    log_records: records.iter().map(|r| self.log_record(r)).collect(),
                    schema_url: String::new(),
                }],
                schema_url: g.schema_url.clone(),
            })
            .collect();
        ExportLogsServiceRequest { resource_logs }
    }

    fn log_record(&self, r: &Record) -> LogRecord {
        let string = |s: String| AnyValue {
            value: Some(Value::StringValue(s)),
        };
        let mut attributes = Vec::new();
        for p in &self.parts[r.parts.start as usize..r.parts.end as usize] {
            match p {
                Part::Shared(s) => {
                    attributes.extend_from_slice(self.sets[*s as usize].attributes());
                }
                Part::Str { key, value } => attributes.push(KeyValue {
                    key: self.str(*key).to_owned(),
                    value: Some(string(self.str(*value).to_owned())),
                }),
                Part::Strs { key, values } => attributes.push(KeyValue {
                    key: self.str(*key).to_owned(),
                    value: Some(AnyValue {
                        value: Some(Value::ArrayValue(ArrayValue {
                            values: self.items(values).map(|v| string(v.to_owned())).collect(),
                        })),
                    }),
                }),
                Part::Other(kv) => attributes.push(KeyValue::clone(kv)),
            }
        }
        LogRecord {
            time_unix_nano: r.time_unix_nano,
            observed_time_unix_nano: r.observed_time_unix_nano,
            severity_number: r.severity_number,
            severity_text: self.str(r.severity_text).to_owned(),
            body: r
                .body
                .as_ref()
                .map(|b| string(self.items(b).collect::<Vec<_>>().join("\n"))),
            attributes,
            dropped_attributes_count: 0,
            flags: 0,
            trace_id: self.bytes(&r.trace_id).to_vec(),
            span_id: self.bytes(&r.span_id).to_vec(),
            event_name: self.str(r.event_name).to_owned(),
        }
    }

    /// [`SharedLogs::to_request`], taking it.
    #[must_use]
    pub fn into_request(self) -> ExportLogsServiceRequest {
        self.to_request()
    }
}

impl PartialEq for SharedLogs {
    /// Equal when they make the same request.
    fn eq(&self, other: &Self) -> bool {
        self.to_request() == other.to_request()
    }
}

/// A record of a [`SharedLogs`], to read.
#[derive(Clone, Copy)]
pub struct RecordRef<'a> {
    logs: &'a SharedLogs,
    group: &'a Group,
    record: &'a Record,
}

impl<'a> RecordRef<'a> {
    #[must_use]
    pub fn severity_text(&self) -> &'a str {
        self.logs.str(self.record.severity_text)
    }

    /// The resource's attributes.
    #[must_use]
    pub fn resource_attributes(&self) -> &'a [KeyValue] {
        self.group
            .resource
            .as_ref()
            .map_or(&[], |r| r.attributes.as_slice())
    }

    /// The first attribute `key`'s string value.
    #[must_use]
    pub fn str_attribute(&self, key: &str) -> Option<&'a str> {
        let logs = self.logs;
        let str_value = |kv: &'a KeyValue| string(kv.value.as_ref());
        self.parts().find_map(|p| match p {
            Part::Shared(s) => logs.sets[*s as usize]
                .attributes()
                .iter()
                .find(|kv| kv.key == key)
                .map(str_value),
            Part::Str { key: k, value } => (logs.str(*k) == key).then(|| Some(logs.str(*value))),
            Part::Strs { key: k, .. } => (logs.str(*k) == key).then_some(None),
            Part::Other(kv) => (kv.key == key).then(|| str_value(kv)),
        })?
    }

    /// The first attribute `key`'s string values: those of an array (others left out), or the
    /// one string.
    #[must_use]
    pub fn strs_attribute(&self, key: &str) -> Vec<&'a str> {
        let logs = self.logs;
        let strs = |kv: &'a KeyValue| match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(Value::ArrayValue(a)) => a.values.iter().filter_map(|v| string(Some(v))).collect(),
            Some(Value::StringValue(s)) => vec![s.as_str()],
            _ => Vec::new(),
        };
        self.parts()
            .find_map(|p| match p {
                Part::Shared(s) => logs.sets[*s as usize]
                    .attributes()
                    .iter()
                    .find(|kv| kv.key == key)
                    .map(strs),
                Part::Str { key: k, value } => {
                    (logs.str(*k) == key).then(|| vec![logs.str(*value)])
                }
                Part::Strs { key: k, values } => {
                    (logs.str(*k) == key).then(|| logs.items(values).collect())
                }
                Part::Other(kv) => (kv.key == key).then(|| strs(kv)),
            })
            .unwrap_or_default()
    }

    fn parts(&self) -> impl Iterator<Item = &'a Part> {
        let r = &self.record.parts;
        self.logs.parts[r.start as usize..r.end as usize].iter()
    }
}

/// A string value's string.
fn string(v: Option<&AnyValue>) -> Option<&str> {
    match v.and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => Some(s),
        _ => None,
    }
}
