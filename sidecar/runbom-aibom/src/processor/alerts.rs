//! The alerts of one request (or one release), grouped by the resource they come from.

use opentelemetry_proto::tonic::{
    common::v1::InstrumentationScope,
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
    resource::v1::Resource,
};
use runbom_event::semconv::scope;

use crate::view::View;

/// The alerts of one request (or one release): the alerts from one resource, one trace after
/// the other, share one `ResourceLogs` (one copy of the resource).
#[derive(Default)]
pub(super) struct Alerts {
    pub(super) logs: Vec<ResourceLogs>,
    /// The resource of the last `ResourceLogs`. An address in the request (or in the held
    /// items being released), which outlive this.
    last: Option<*const Resource>,
}

impl Alerts {
    /// Adds `record`, the alert of the span `o`.
    pub(super) fn push(&mut self, record: LogRecord, o: &View<'_>) {
        let from = o.resource.map(std::ptr::from_ref);
        if self.last.is_some()
            && self.last == from
            && let Some(group) = self.logs.last_mut().and_then(|l| l.scope_logs.first_mut())
        {
            group.log_records.push(record);
            return;
        }
        self.last = from;
        self.logs.push(ResourceLogs {
            resource: o.resource.cloned(),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: scope::AIBOM.into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                log_records: vec![record],
                schema_url: String::new(),
            }],
            schema_url: o.resource_schema.to_owned(),
        });
    }
}
