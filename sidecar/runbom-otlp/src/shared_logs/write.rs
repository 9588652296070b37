//! [`SharedLogs`] as protobuf and as OTLP/JSON, written from its parts: the walks of
//! [`crate::encode`] and [`crate::json::write`] (their field order and rules), fed from the
//! parts instead of from a built request. A shared run of attributes is copied from its
//! encoding; a body of lines is the lines written one after the other with newlines between.

use crate::{
    convert::LogHead,
    encode::{self, Measure, Pass},
    json::write as json,
};

use super::{Group, Part, Record, SharedLogs};

impl SharedLogs {
    /// The request as protobuf, appended to `out`: the bytes of
    /// [`encode_logs`](crate::encode::encode_logs) on [`SharedLogs::to_request`].
    pub fn write_protobuf(&self, out: &mut Vec<u8>) {
        let mut measure = Measure::default();
        self.walk(&mut measure);
        measure.write(out, |w| self.walk(w));
    }

    fn walk<P: Pass>(&self, p: &mut P) {
        for (g, records) in self.grouped() {
            encode::resource_logs_message(p, encode::ROOM_GROUP, |p| {
                encode::resource_logs_with(
                    p,
                    g.resource
                        .as_ref()
                        .map(|r| move |p: &mut P| encode::resource(p, r)),
                    |p, tag| {
                        p.message_sized(tag, encode::ROOM_GROUP, |p| {
                            encode::scope_logs_with(
                                p,
                                Some(&g.scope),
                                |p, tag| {
                                    for r in records {
                                        p.message_sized(tag, encode::ROOM_RECORD, |p| {
                                            self.record_protobuf(p, r);
                                        });
                                    }
                                },
                                "",
                            );
                        });
                    },
                    &g.schema_url,
                );
            });
        }
    }

    fn head(&self, r: &Record) -> LogHead<'_> {
        LogHead {
            time_unix_nano: r.time_unix_nano,
            observed_time_unix_nano: r.observed_time_unix_nano,
            severity_number: r.severity_number,
            severity_text: self.str(r.severity_text),
            dropped_attributes_count: 0,
            flags: 0,
            trace_id: self.bytes(&r.trace_id),
            span_id: self.bytes(&r.span_id),
            event_name: self.str(r.event_name),
        }
    }

    fn record_protobuf<P: Pass>(&self, p: &mut P, r: &Record) {
        // A string value's field is a length-delimited field of tag 1: the lines go in one
        // after the other.
        let body = r.body.as_ref().map(|lines| {
            move |p: &mut P, tag| {
                p.message(tag, |p| {
                    p.message(1, |p| {
                        for (i, line) in self.items(lines).enumerate() {
                            if i > 0 {
                                p.encoded(b"\n");
                            }
                            p.encoded(line.as_bytes());
                        }
                    });
                });
            }
        });
        encode::log_record_with(p, &self.head(r), body, |p, tag| {
            for part in self.record_parts(r) {
                match part {
                    Part::Shared(s) => p.encoded(self.sets[*s as usize].protobuf()),
                    Part::Str { key, value } => p.message(tag, |p| {
                        encode::key_value_with(
                            p,
                            self.str(*key),
                            Some(|p: &mut P| encode::string_value(p, self.str(*value))),
                        );
                    }),
                    Part::Strs { key, values } => p.message(tag, |p| {
                        encode::key_value_with(
                            p,
                            self.str(*key),
                            Some(|p: &mut P| {
                                encode::array_value_with(p, |p, tag| {
                                    for v in self.items(values) {
                                        p.message(tag, |p| encode::string_value(p, v));
                                    }
                                });
                            }),
                        );
                    }),
                    Part::Other(kv) => encode::attributes(p, tag, std::slice::from_ref(&**kv)),
                }
            }
        });
    }

    fn record_parts(&self, r: &Record) -> &[Part] {
        &self.parts[r.parts.start as usize..r.parts.end as usize]
    }

    /// The request as one line of OTLP/JSON (without the newline), appended to `out`: the
    /// bytes of [`write_logs`](crate::json::write::write_logs) on [`SharedLogs::to_request`].
    pub fn write_json(&self, out: &mut Vec<u8>) {
        json::write_logs_with(out, |out| {
            json::array_with(out, self.grouped(), |out, (g, records)| {
                self.group_json(out, g, records);
            });
        });
    }

    fn group_json(&self, out: &mut Vec<u8>, g: &Group, records: &[Record]) {
        json::resource_logs_with(
            out,
            |out| match &g.resource {
                Some(r) => json::resource(out, r),
                None => out.extend_from_slice(b"null"),
            },
            |out| {
                out.push(b'[');
                json::scope_logs_with(
                    out,
                    Some(&g.scope),
                    |out| json::array_with(out, records, |out, r| self.record_json(out, r)),
                    "",
                );
                out.push(b']');
            },
            &g.schema_url,
        );
    }

    fn record_json(&self, out: &mut Vec<u8>, r: &Record) {
        json::log_record_with(
            out,
            &self.head(r),
            |out| match &r.body {
                Some(lines) => {
                    out.extend_from_slice(b"{\"stringValue\":\"");
                    for (i, line) in self.items(lines).enumerate() {
                        if i > 0 {
                            out.extend_from_slice(b"\\n");
                        }
                        json::escaped(out, line);
                    }
                    out.extend_from_slice(b"\"}");
                }
                None => out.extend_from_slice(b"null"),
            },
            |out| {
                out.push(b'[');
                let mut first = true;
                let mut next = |out: &mut Vec<u8>| {
                    if !std::mem::take(&mut first) {
                        out.push(b',');
                    }
                };
                for part in self.record_parts(r) {
                    match part {
                        Part::Shared(s) => {
                            let json = self.sets[*s as usize].json();
                            if !json.is_empty() {
                                next(out);
                                out.extend_from_slice(json);
                            }
                        }
                        Part::Str { key, value } => {
                            next(out);
                            json::key_value_with(out, self.str(*key), |out| {
                                json::string_value(out, self.str(*value));
                            });
                        }
                        Part::Strs { key, values } => {
                            next(out);
                            json::key_value_with(out, self.str(*key), |out| {
                                json::array_value_with(out, |out| {
                                    json::array_with(out, self.items(values), json::string_value);
                                });
                            });
                        }
                        Part::Other(kv) => {
                            next(out);
                            json::key_value(out, kv);
                        }
                    }
                }
                out.push(b']');
            },
        );
    }
}
