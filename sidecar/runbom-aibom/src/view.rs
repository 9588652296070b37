//! The view of one span that judging reads: where it sits (its resource and scope, shared with
//! the spans that came with it) and what every span needs, read in one pass over its
//! attributes.

use std::sync::Arc;

use opentelemetry_proto::tonic::{
    common::v1::{InstrumentationScope, KeyValue},
    resource::v1::Resource,
    trace::v1::Span,
};

use runbom_event::semconv::{AIBOM_PREFIX, PROCESS_PID, PROCESS_USER_ID, RUNBOM_EVENT, scope};

use crate::{
    otlp,
    span::{self, attr_int},
};

/// A resource as received, shared by the spans that came with it.
#[derive(Debug, Default, PartialEq)]
pub struct ResourceHeader {
    pub resource: Option<Resource>,
    pub schema_url: String,
}

/// An instrumentation scope as received, shared by its spans.
#[derive(Debug, Default, PartialEq)]
pub struct ScopeHeader {
    pub scope: Option<InstrumentationScope>,
    pub schema_url: String,
}

/// One span held apart from its request, with where it came from.
#[derive(Clone, Debug)]
pub struct Item {
    pub resource: Arc<ResourceHeader>,
    pub scope: Arc<ScopeHeader>,
    pub span: Span,
}

impl Item {
    /// The span as the judge sees it.
    pub fn view(&mut self) -> View<'_> {
        let resource = self.resource.resource.as_ref();
        View::new(
            resource,
            &self.resource.schema_url,
            self.scope.scope.as_ref(),
            &mut self.span,
            || resource_pid(resource),
        )
    }
}

/// A resource's `process.pid`.
#[must_use]
pub fn resource_pid(resource: Option<&Resource>) -> Option<u32> {
    attr_int(otlp::resource_attrs(resource), PROCESS_PID).and_then(|p| u32::try_from(p).ok())
}

/// One span being judged, wherever it sits: in a request passing through, or held.
#[derive(Debug)]
pub struct View<'a> {
    pub resource: Option<&'a Resource>,
    pub resource_schema: &'a str,
    /// A kernel event's span (runbom's kernel scope or a `runbom.event` attribute).
    kernel: bool,
    /// A span runbom made: a kernel event's, or a GenAI span it built for an agent without an
    /// SDK. Any other span's attributes are whatever its client wrote.
    own: bool,
    /// The span's process and its `process.user.id`: its own attributes on a span runbom made
    /// (`own`); a client's span has its resource's pid, which the receiver checked against the
    /// sending process (contract §6), and no uid.
    pid: Option<u32>,
    uid: Option<u32>,
    /// The span came with `aibom.*` attributes (from an earlier processor or its sender):
    /// they are replaced.
    stale: bool,
    /// The span's position in the request it sits in (counting every span in order), when
    /// judged there; 0 otherwise.
    pub(crate) at: usize,
    pub span: &'a mut Span,
}

impl<'a> View<'a> {
    /// The view of `span`; `resource_pid` gives the resource's `process.pid` (asked only when
    /// the span has none of its own; [`resource_pid`] reads it, and the spans of one resource
    /// can share one read).
    #[must_use]
    pub fn new(
        resource: Option<&'a Resource>,
        resource_schema: &'a str,
        scope: Option<&InstrumentationScope>,
        span: &'a mut Span,
        resource_pid: impl FnOnce() -> Option<u32>,
    ) -> Self {
        let mut kernel = scope.is_some_and(|s| s.name == scope::KERNEL);
        let (mut pid, mut uid, mut stale) = (None, None, false);
        // One pass over the attributes for what every span needs.
        for kv in &span.attributes {
            let int = || span::int_value(kv).and_then(|v| u32::try_from(v).ok());
            match kv.key.as_str() {
                RUNBOM_EVENT => kernel |= span::str_value(kv).is_some(),
                PROCESS_PID => pid = pid.or_else(int),
                PROCESS_USER_ID => uid = uid.or_else(int),
                k => stale |= k.starts_with(AIBOM_PREFIX),
            }
        }
        let own = kernel || scope.is_some_and(|s| s.name == scope::GENAI);
        if !own {
            (pid, uid) = (None, None);
        }
        Self {
            resource,
            resource_schema,
            kernel,
            own,
            pid: pid.or_else(resource_pid),
            uid,
            stale,
            at: 0,
            span,
        }
    }

    #[must_use]
    pub fn resource_attrs(&self) -> &[KeyValue] {
        otlp::resource_attrs(self.resource)
    }

    #[must_use]
    pub fn is_kernel(&self) -> bool {
        self.kernel
    }

    /// Whether runbom made the span (a kernel event's, or a GenAI span it built): its attributes
    /// are runbom's own observations, not a client's word.
    #[must_use]
    pub fn is_runbom(&self) -> bool {
        self.own
    }

    /// The span's process: its own `process.pid` on a span runbom made, else its resource's.
    #[must_use]
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// The span's own `process.user.id`, on a span runbom made.
    #[must_use]
    pub fn uid(&self) -> Option<u32> {
        self.uid
    }

    /// Whether the span came with `aibom.*` attributes, which judging replaces.
    #[must_use]
    pub fn is_stale(&self) -> bool {
        self.stale
    }
}
