//! Where an event's attributes go. The attribute lists of [`convert`](super) are written once,
//! against [`AttributeSink`]: into `opentelemetry-proto` [`KeyValue`]s (this file), or straight
//! into protobuf or OTLP/JSON bytes ([`crate::kernel_logs`]).

use std::cell::Cell;

use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, any_value::Value};
use runbom_event::ProcessInfo;

use super::{attributes::process_attributes, kv_bool, kv_int, kv_str, kv_string};

/// Takes one attribute at a time, in the order the log record carries them. Keys are the
/// `semconv` constants.
pub trait AttributeSink {
    fn str(&mut self, key: &'static str, value: &str);
    fn int(&mut self, key: &'static str, value: i64);
    fn bool(&mut self, key: &'static str, value: bool);
    fn double(&mut self, key: &'static str, value: f64);
    /// An array of strings.
    fn strs<'a>(&mut self, key: &'static str, values: impl Iterator<Item = &'a str>);
    /// A string that `write` formats (an address, open flags, a URL). A sink that writes
    /// bytes formats it into a scratch string kept across events, not a new one.
    fn formatted(&mut self, key: &'static str, write: impl FnOnce(&mut String));
    /// The facts of an event's process (`process.parent_pid`, `process.executable.path`,
    /// `process.command_line`, `process.user.id`, `container.id`), the same for every event of
    /// it. A sink that writes bytes may write them once per process and copy them.
    fn process(&mut self, p: &ProcessInfo)
    where
        Self: Sized,
    {
        process_attributes(p, self);
    }
}

/// The `opentelemetry-proto` attributes, as [`convert`](super::convert()) returns them.
impl AttributeSink for Vec<KeyValue> {
    fn str(&mut self, key: &'static str, value: &str) {
        self.push(kv_str(key, value));
    }

    fn int(&mut self, key: &'static str, value: i64) {
        self.push(kv_int(key, value));
    }

    fn bool(&mut self, key: &'static str, value: bool) {
        self.push(kv_bool(key, value));
    }

    fn double(&mut self, key: &'static str, value: f64) {
        self.push(KeyValue {
            key: key.into(),
            value: Some(AnyValue {
                value: Some(Value::DoubleValue(value)),
            }),
        });
    }

    fn strs<'a>(&mut self, key: &'static str, values: impl Iterator<Item = &'a str>) {
        self.push(KeyValue {
            key: key.into(),
            value: Some(AnyValue {
                value: Some(Value::ArrayValue(ArrayValue {
                    values: values
                        .map(|v| AnyValue {
                            value: Some(Value::StringValue(v.into())),
                        })
                        .collect(),
                })),
            }),
        });
    }

    fn formatted(&mut self, key: &'static str, write: impl FnOnce(&mut String)) {
        let mut value = String::new();
        write(&mut value);
        self.push(kv_string(key, value));
    }
}

/// [`AttributeSink::formatted`] of a sink that writes bytes: the value formatted into
/// `scratch` (taken and put back, so it is kept across events) and handed to `take`.
pub(crate) fn formatted_in(
    scratch: &Cell<String>,
    write: impl FnOnce(&mut String),
    take: impl FnOnce(&str),
) {
    let mut value = scratch.take();
    value.clear();
    write(&mut value);
    take(&value);
    scratch.set(value);
}
