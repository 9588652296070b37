//! A trace export request whose spans get more attributes as they are written, not yet added
//! to them: the attributes a processor concluded for each span, held once per distinct set
//! ([`AttributeSet`], encoded once as protobuf and as OTLP/JSON) with each span's set beside
//! the request. An exporter appends a set's bytes to its spans' own attributes
//! ([`AnnotatedTraces::write_protobuf`], [`AnnotatedTraces::write_json`]); a component that
//! reads or edits spans builds the request first ([`AnnotatedTraces::into_request`]). Both
//! give the same request: the bytes of [`encode_traces`](crate::encode::encode_traces) and
//! [`write_traces`](crate::json::write::write_traces) on it.

use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest, common::v1::KeyValue, trace::v1::Span,
};

use crate::added::{Added, AttributeSet};

/// A trace export request, and the attributes each of its spans gets when written.
#[derive(Clone, Debug, Default)]
pub struct AnnotatedTraces {
    request: ExportTraceServiceRequest,
    /// The set of each span, counting every span of the request in order.
    added: Added,
}

impl AnnotatedTraces {
    /// `request`, the span at position `i` getting `sets[index[i]]` (none if `index[i]` is
    /// `None`, or past the end of `index`).
    ///
    /// # Panics
    /// If `sets` holds `u32::MAX` sets or more.
    #[must_use]
    pub fn new(
        request: ExportTraceServiceRequest,
        sets: Vec<AttributeSet>,
        index: impl IntoIterator<Item = Option<u32>>,
    ) -> Self {
        let added = Added::new(sets, index, span_count(&request));
        Self { request, added }
    }

    /// `request`, no span getting attributes.
    #[must_use]
    pub fn plain(request: ExportTraceServiceRequest) -> Self {
        Self {
            request,
            ..Self::default()
        }
    }

    /// The request, without the attributes added.
    #[must_use]
    pub fn request(&self) -> &ExportTraceServiceRequest {
        &self.request
    }

    /// The attributes the span at position `i` gets (empty for none).
    #[must_use]
    pub fn added(&self, i: usize) -> &[KeyValue] {
        self.added.attributes(i)
    }

    /// The distinct sets of attributes the spans get, and the set of each span (its place in
    /// them, by the span's position in the request, counting every span in order; `None`: no
    /// set). The second is empty when no span gets one. Equal sets may sit at two places.
    #[must_use]
    pub fn sets(&self) -> (&[AttributeSet], &[Option<u32>]) {
        self.added.parts()
    }

    /// The spans of the request, in order.
    pub fn spans(&self) -> impl Iterator<Item = &Span> {
        self.request
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
    }

    /// Appends `other`'s resources (and the attributes its spans get).
    ///
    /// # Panics
    /// If both together hold `u32::MAX` sets or more.
    pub fn append(&mut self, other: AnnotatedTraces) {
        if !(self.added.is_empty() && other.added.is_empty()) {
            let (len, other_len) = (span_count(&self.request), span_count(&other.request));
            self.added.append(len, other.added, other_len);
        }
        self.request
            .resource_spans
            .extend(other.request.resource_spans);
    }

    /// The request with the attributes added to its spans.
    #[must_use]
    pub fn into_request(self) -> ExportTraceServiceRequest {
        let Self { mut request, added } = self;
        let spans = request
            .resource_spans
            .iter_mut()
            .flat_map(|r| &mut r.scope_spans)
            .flat_map(|s| &mut s.spans);
        added.add_to(spans.map(|s| &mut s.attributes).zip(0..));
        request
    }

    /// The request as protobuf, appended to `out`: the bytes of
    /// [`encode_traces`](crate::encode::encode_traces) on [`into_request`](Self::into_request),
    /// each span's added attributes copied from their set's encoding.
    pub fn write_protobuf(&self, out: &mut Vec<u8>) {
        crate::encode::encode_traces_with(&self.request, out, |i| {
            self.added.of(i).map_or(&[], AttributeSet::protobuf)
        });
    }

    /// The request as one line of OTLP/JSON (without the newline), appended to `out`: the
    /// bytes of [`write_traces`](crate::json::write::write_traces) on
    /// [`into_request`](Self::into_request).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        crate::json::write::write_traces_annotated(&self.request, out, |i| {
            self.added.of(i).map_or(&[], AttributeSet::json)
        });
    }
}

impl PartialEq for AnnotatedTraces {
    /// Equal when they make the same request.
    fn eq(&self, other: &Self) -> bool {
        self.clone().into_request() == other.clone().into_request()
    }
}

fn span_count(request: &ExportTraceServiceRequest) -> usize {
    request
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum()
}
