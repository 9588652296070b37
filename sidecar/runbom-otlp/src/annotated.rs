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

/// Attributes added to spans, held once for all the spans that get them.
#[derive(Clone, Debug, PartialEq)]
pub struct AttributeSet {
    attributes: Vec<KeyValue>,
    /// The attributes as a span's `attributes` fields (protobuf).
    protobuf: Vec<u8>,
    /// The attributes as `KeyValue` objects, comma-separated (OTLP/JSON).
    json: Vec<u8>,
}

impl AttributeSet {
    #[must_use]
    pub fn new(attributes: Vec<KeyValue>) -> Self {
        Self {
            protobuf: crate::encode::span_attributes(&attributes),
            json: crate::json::write::key_values(&attributes),
            attributes,
        }
    }

    #[must_use]
    pub fn attributes(&self) -> &[KeyValue] {
        &self.attributes
    }
}

/// A span that gets no attributes added.
const NONE: u32 = u32::MAX;

/// A trace export request, and the attributes each of its spans gets when written.
#[derive(Clone, Debug, Default)]
pub struct AnnotatedTraces {
    request: ExportTraceServiceRequest,
    sets: Vec<AttributeSet>,
    /// The set of each span (counting every span of the request in order), [`NONE`] for none;
    /// spans past its end get none.
    index: Vec<u32>,
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
        assert!(u32::try_from(sets.len()).is_ok_and(|n| n < NONE));
        let mut index: Vec<u32> = index
            .into_iter()
            .map(|i| i.filter(|i| (*i as usize) < sets.len()).unwrap_or(NONE))
            .collect();
        let mut out = Self {
            request,
            sets,
            index: Vec::new(),
        };
        index.resize(out.spans().count(), NONE);
        out.index = index;
        out
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
        self.set(i).map_or(&[], |s| s.attributes.as_slice())
    }

    fn set(&self, i: usize) -> Option<&AttributeSet> {
        self.index.get(i).and_then(|s| self.sets.get(*s as usize))
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
        if !other.index.is_empty() {
            let offset = u32::try_from(self.sets.len()).unwrap_or(NONE);
            self.index.resize(self.spans().count(), NONE);
            self.index.extend(
                other
                    .index
                    .iter()
                    .map(|i| if *i == NONE { NONE } else { i + offset }),
            );
            self.sets.extend(other.sets);
            assert!(u32::try_from(self.sets.len()).is_ok_and(|n| n < NONE));
        }
        self.request
            .resource_spans
            .extend(other.request.resource_spans);
    }

    /// The request with the attributes added to its spans.
    #[must_use]
    pub fn into_request(self) -> ExportTraceServiceRequest {
        let Self {
            mut request,
            sets,
            index,
        } = self;
        let spans = request
            .resource_spans
            .iter_mut()
            .flat_map(|r| &mut r.scope_spans)
            .flat_map(|s| &mut s.spans);
        for (span, i) in spans.zip(index) {
            if let Some(set) = sets.get(i as usize) {
                span.attributes.extend_from_slice(&set.attributes);
            }
        }
        request
    }

    /// The request as protobuf, appended to `out`: the bytes of
    /// [`encode_traces`](crate::encode::encode_traces) on [`into_request`](Self::into_request),
    /// each span's added attributes copied from their set's encoding.
    pub fn write_protobuf(&self, out: &mut Vec<u8>) {
        crate::encode::encode_traces_with(&self.request, out, |i| {
            self.set(i).map_or(&[], |s| s.protobuf.as_slice())
        });
    }

    /// The request as one line of OTLP/JSON (without the newline), appended to `out`: the
    /// bytes of [`write_traces`](crate::json::write::write_traces) on
    /// [`into_request`](Self::into_request).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        crate::json::write::write_traces_annotated(&self.request, out, |i| {
            self.set(i).map_or(&[], |s| s.json.as_slice())
        });
    }
}

impl PartialEq for AnnotatedTraces {
    /// Equal when they make the same request.
    fn eq(&self, other: &Self) -> bool {
        self.clone().into_request() == other.clone().into_request()
    }
}
