//! Judged spans back into `ResourceSpans`/`ScopeSpans`, grouped as they were received.

use std::{collections::HashMap, sync::Arc};

use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest,
    trace::v1::{ResourceSpans, ScopeSpans},
};

use crate::view::{Item, ResourceHeader, ScopeHeader};

type ScopeGroup = (Arc<ScopeHeader>, ScopeSpans);

/// Rebuilds `ResourceSpans`/`ScopeSpans` from items, one per resource and scope as received.
#[derive(Default)]
pub(super) struct Regroup {
    resources: Vec<(Arc<ResourceHeader>, Vec<ScopeGroup>)>,
    by_resource: HashMap<*const ResourceHeader, usize>,
}

impl Regroup {
    pub(super) fn push(&mut self, item: Item) {
        let rp = Arc::as_ptr(&item.resource);
        let ri = *self.by_resource.entry(rp).or_insert_with(|| {
            self.resources.push((item.resource.clone(), Vec::new()));
            self.resources.len() - 1
        });
        let scopes = &mut self.resources[ri].1;
        let sp = Arc::as_ptr(&item.scope);
        let found = scopes.iter().position(|(s, _)| Arc::as_ptr(s) == sp);
        let si = found.unwrap_or_else(|| {
            scopes.push((
                item.scope.clone(),
                ScopeSpans {
                    scope: item.scope.scope.clone(),
                    spans: Vec::new(),
                    schema_url: item.scope.schema_url.clone(),
                },
            ));
            scopes.len() - 1
        });
        scopes[si].1.spans.push(item.span);
    }

    pub(super) fn finish(self) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: self
                .resources
                .into_iter()
                .map(|(r, scopes)| ResourceSpans {
                    resource: r.resource.clone(),
                    scope_spans: scopes.into_iter().map(|(_, s)| s).collect(),
                    schema_url: r.schema_url.clone(),
                })
                .collect(),
        }
    }
}
