//! The AI-BOM metrics, counted from what the processor emits (its annotated spans and its drift
//! alerts, the attributes of the telemetry contract §3 and §4), so they say exactly what the
//! exported data says:
//!
//! | metric | unit | attributes |
//! |---|---|---|
//! | `runbom.aibom.spans` | `{span}` | `aibom.agent.ref`, `aibom.component.ref`, `aibom.component.kind`, `aibom.declared`, `k8s.namespace.name` |
//! | `runbom.aibom.drift_findings` | `{finding}` | `aibom.agent.ref`, `aibom.drift.kind`, `k8s.namespace.name` |
//! | `runbom.aibom.alerts` | `{alert}` | `severity` (`WARN`, `ERROR`) |
//! | `runbom.aibom.undeclared_uses` | `{use}` | `aibom.drift.kind` (`undeclared_*`, `shadow_ai`), `aibom.drift.subject`, `aibom.agent.ref` |
//! | `runbom.aibom.undeclared_subjects` | `{subject}` | `aibom.drift.kind`: distinct subjects seen |
//!
//! Attributes whose values come from the data are bounded ([`Bounded`]): past their limit a value
//! is `other` and counted on `runbom.metrics.folded_values`. An attribute a span lacks is left
//! out. New series show 0 first ([`FreshCounter`]), so that `increase()` sees the first alert.

use std::{
    collections::{HashMap, HashSet},
    sync::{Mutex, PoisonError},
};

use opentelemetry::{KeyValue, metrics::Counter};
use opentelemetry_proto::tonic::{
    collector::{logs::v1::ExportLogsServiceRequest, trace::v1::ExportTraceServiceRequest},
    common::v1::KeyValue as OtlpKeyValue,
    trace::v1::ResourceSpans,
};
use runbom_aibom::span::{attr, attr_bool, attr_strs};
use runbom_event::semconv::{
    AIBOM_AGENT_REF, AIBOM_COMPONENT_KIND, AIBOM_COMPONENT_REF, AIBOM_DECLARED, AIBOM_DRIFT_KINDS,
    AIBOM_DRIFT_SUBJECT, AIBOM_PREFIX, K8S_NAMESPACE_NAME, drift,
};
use runbom_otlp::{AnnotatedTraces, SharedLogs};

use crate::telemetry::{SelfMetrics, bounded::Bounded, fresh::FreshCounter};

/// The attribute naming one drift flag on the drift metrics.
pub const AIBOM_DRIFT_KIND: &str = "aibom.drift.kind";

const SPANS: &str = "runbom.aibom.spans";
const FINDINGS: &str = "runbom.aibom.drift_findings";
const ALERTS: &str = "runbom.aibom.alerts";
const UNDECLARED: &str = "runbom.aibom.undeclared_uses";
const SUBJECTS: &str = "runbom.aibom.undeclared_subjects";

/// Distinct agents, components and namespaces kept per metric (a BOM declares fewer).
const REFS: usize = 200;
/// Distinct undeclared subjects kept as label values (the top of the list a dashboard shows).
const SUBJECT_LABELS: usize = 50;
/// Distinct undeclared subjects remembered for `runbom.aibom.undeclared_subjects`; past it new
/// subjects are no longer told apart (counted as folded).
const SUBJECTS_REMEMBERED: usize = 10_000;

/// The labels of `runbom.aibom.spans` as one span carries them.
#[derive(Debug, Default, Hash, PartialEq, Eq)]
struct SpanLabels<'a> {
    agent: Option<&'a str>,
    component: Option<&'a str>,
    kind: Option<&'a str>,
    declared: Option<bool>,
    namespace: Option<&'a str>,
}

impl<'a> SpanLabels<'a> {
    /// The labels a judged span carries. The processor writes its `aibom.*` attributes after
    /// the span's others (having removed any the sender set), so they are the last ones: read
    /// from the end until the first that is not one of them.
    fn of(attributes: &'a [OtlpKeyValue], namespace: Option<&'a str>) -> Self {
        let mut l = Self {
            namespace,
            ..Self::default()
        };
        for kv in attributes
            .iter()
            .rev()
            .take_while(|kv| kv.key.starts_with(AIBOM_PREFIX))
        {
            let one = std::slice::from_ref(kv);
            match kv.key.as_str() {
                AIBOM_AGENT_REF if l.agent.is_none() => l.agent = attr(one, AIBOM_AGENT_REF),
                AIBOM_COMPONENT_REF if l.component.is_none() => {
                    l.component = attr(one, AIBOM_COMPONENT_REF);
                }
                AIBOM_COMPONENT_KIND if l.kind.is_none() => {
                    l.kind = attr(one, AIBOM_COMPONENT_KIND);
                }
                AIBOM_DECLARED if l.declared.is_none() => {
                    l.declared = attr_bool(one, AIBOM_DECLARED);
                }
                _ => {}
            }
        }
        l
    }
}

/// What one drift kind of an alert is counted by.
#[derive(Debug, Hash, PartialEq, Eq)]
struct FindingLabels<'a> {
    kind: &'a str,
    agent: Option<&'a str>,
    namespace: Option<&'a str>,
    subject: &'a str,
}

/// Counts per label set of one request, to add each set's count to its counter once. A few
/// sets are found by comparison (cheaper than hashing every span's or alert's labels), more
/// in a map.
struct Tally<K> {
    few: Vec<(K, u64)>,
    many: HashMap<K, u64>,
}

impl<K: Eq + std::hash::Hash> Tally<K> {
    const FEW: usize = 16;

    fn new() -> Self {
        Self {
            few: Vec::new(),
            many: HashMap::new(),
        }
    }

    fn add(&mut self, key: K) {
        self.add_n(key, 1);
    }

    /// `n` more of `key` (0: `key` is counted in the order it was first seen, as the labels'
    /// values are bounded in that order).
    fn add_n(&mut self, key: K, n: u64) {
        if let Some((_, c)) = self.few.iter_mut().find(|(k, _)| *k == key) {
            *c += n;
        } else if self.few.len() < Self::FEW {
            self.few.push((key, n));
        } else {
            *self.many.entry(key).or_default() += n;
        }
    }

    fn into_counts(self) -> impl Iterator<Item = (K, u64)> {
        self.few.into_iter().chain(self.many)
    }
}

/// The instruments of the `aibom` processors.
pub struct AibomMetrics {
    spans: FreshCounter,
    findings: FreshCounter,
    alerts: FreshCounter,
    undeclared: FreshCounter,
    subjects: FreshCounter,
    agents: Bounded,
    components: Bounded,
    namespaces: Bounded,
    kinds: Bounded,
    subject_labels: Bounded,
    subjects_seen: Bounded,
    seen: Mutex<HashSet<(String, String)>>,
}

impl AibomMetrics {
    #[must_use]
    pub fn new(metrics: &SelfMetrics) -> Self {
        let meter = metrics.meter();
        let fresh = |c: Counter<u64>| metrics.fresh(c);
        Self {
            spans: fresh(
                meter
                    .u64_counter(SPANS)
                    .with_unit("{span}")
                    .with_description(
                        "Spans the AI-BOM processor judged, by agent, component, kind and whether \
                     the component is declared.",
                    )
                    .build(),
            ),
            findings: fresh(
                meter
                    .u64_counter(FINDINGS)
                    .with_unit("{finding}")
                    .with_description("Drift findings reported, by agent and drift kind.")
                    .build(),
            ),
            alerts: fresh(
                meter
                    .u64_counter(ALERTS)
                    .with_unit("{alert}")
                    .with_description("Drift alerts emitted, by severity.")
                    .build(),
            ),
            undeclared: fresh(
                meter
                    .u64_counter(UNDECLARED)
                    .with_unit("{use}")
                    .with_description(
                        "Uses of undeclared endpoints, models, tools, data sources, files and \
                     programs, and shadow AI, by kind and subject (the first subjects; later \
                     ones are `other`).",
                    )
                    .build(),
            ),
            subjects: fresh(
                meter
                    .u64_counter(SUBJECTS)
                    .with_unit("{subject}")
                    .with_description("Distinct undeclared subjects seen, by drift kind.")
                    .build(),
            ),
            agents: Bounded::new(meter, SPANS, AIBOM_AGENT_REF, REFS),
            components: Bounded::new(meter, SPANS, AIBOM_COMPONENT_REF, REFS),
            namespaces: Bounded::new(meter, SPANS, K8S_NAMESPACE_NAME, REFS),
            kinds: Bounded::new(meter, SPANS, AIBOM_COMPONENT_KIND, 16),
            subject_labels: Bounded::new(meter, UNDECLARED, AIBOM_DRIFT_SUBJECT, SUBJECT_LABELS),
            subjects_seen: Bounded::new(meter, SUBJECTS, AIBOM_DRIFT_SUBJECT, SUBJECTS_REMEMBERED),
            seen: Mutex::new(HashSet::new()),
        }
    }

    /// Counts the judged spans of a released request.
    pub fn count_spans(&self, req: &ExportTraceServiceRequest) {
        self.count_labels(req);
    }

    /// Counts the judged spans of a released request whose verdicts are beside it: a span's
    /// labels are those of the attributes it gets, or of its own when it gets none. Most spans
    /// get one of a few sets: their spans are counted per set and resource (the spans of a
    /// resource share its namespace), without reading the spans, and each set's labels are read
    /// once per resource.
    pub fn count_annotated(&self, traces: &AnnotatedTraces) {
        let req = traces.request();
        let (sets, index) = traces.sets();
        if index.is_empty() {
            return self.count_spans(req);
        }
        let mut labels = Tally::new();
        // Of each set, its spans in the resource (`None`: a set of no attributes, whose spans
        // are counted by their own); the sets the resource's spans get.
        let mut counts: Vec<Option<u64>> = sets
            .iter()
            .map(|s| (!s.attributes().is_empty()).then_some(0))
            .collect();
        let mut got = Vec::new();
        let mut at = 0;
        for rs in &req.resource_spans {
            let namespace = namespace(rs);
            for spans in rs.scope_spans.iter().map(|s| &s.spans) {
                let of = index.get(at..).unwrap_or_default();
                for (k, span) in spans.iter().enumerate() {
                    let set = of.get(k).copied().flatten().map(|s| s as usize);
                    match set.and_then(|s| Some((s, counts.get_mut(s)?.as_mut()?))) {
                        Some((s, n)) => {
                            if *n == 0 {
                                got.push(s);
                                // Its place among the label sets: where its first span is.
                                labels.add_n(SpanLabels::of(sets[s].attributes(), namespace), 0);
                            }
                            *n += 1;
                        }
                        None => labels.add(SpanLabels::of(&span.attributes, namespace)),
                    }
                }
                at += spans.len();
            }
            for s in got.drain(..) {
                let n = counts[s].replace(0).unwrap_or_default();
                labels.add_n(SpanLabels::of(sets[s].attributes(), namespace), n);
            }
        }
        self.add_spans(labels);
    }

    /// Counts spans by the labels of their `aibom.*` attributes.
    fn count_labels(&self, req: &ExportTraceServiceRequest) {
        // Spans of a request share few label sets: counted per set, then added once each.
        let mut sets = Tally::new();
        for rs in &req.resource_spans {
            let namespace = namespace(rs);
            for span in rs.scope_spans.iter().flat_map(|s| &s.spans) {
                sets.add(SpanLabels::of(&span.attributes, namespace));
            }
        }
        self.add_spans(sets);
    }

    /// Adds each label set's spans to `runbom.aibom.spans`.
    fn add_spans(&self, sets: Tally<SpanLabels<'_>>) {
        for (set, n) in sets.into_counts() {
            let mut labels = Vec::with_capacity(5);
            if let Some(v) = set.agent {
                labels.push(KeyValue::new(AIBOM_AGENT_REF, self.agents.value(v)));
            }
            if let Some(v) = set.component {
                labels.push(KeyValue::new(AIBOM_COMPONENT_REF, self.components.value(v)));
            }
            if let Some(v) = set.kind {
                labels.push(KeyValue::new(AIBOM_COMPONENT_KIND, self.kinds.value(v)));
            }
            if let Some(v) = set.declared {
                labels.push(KeyValue::new(AIBOM_DECLARED, v));
            }
            if let Some(v) = set.namespace {
                labels.push(KeyValue::new(K8S_NAMESPACE_NAME, self.namespaces.value(v)));
            }
            self.spans.add(n, &labels);
        }
    }

    /// Counts drift alerts (one per finding), their kinds and undeclared subjects. The alerts
    /// of a request share few label sets (three findings per trace name the same models and
    /// tools trace after trace): counted per set, then added once each.
    pub fn count_alerts(&self, req: &ExportLogsServiceRequest) {
        let mut severities = Tally::new();
        let mut findings = Tally::new();
        for rl in &req.resource_logs {
            let resource = rl.resource.as_ref().map_or(&[][..], |r| &r.attributes[..]);
            for record in rl.scope_logs.iter().flat_map(|s| &s.log_records) {
                let a = &record.attributes;
                severities.add(severity(&record.severity_text));
                let agent = attr(a, AIBOM_AGENT_REF);
                let namespace =
                    attr(a, K8S_NAMESPACE_NAME).or_else(|| attr(resource, K8S_NAMESPACE_NAME));
                let subject = attr(a, AIBOM_DRIFT_SUBJECT).unwrap_or("");
                let kinds = attr_strs(a, AIBOM_DRIFT_KINDS);
                add_findings(&mut findings, kinds, agent, namespace, subject);
            }
        }
        self.add_alerts(severities, findings);
    }

    /// [`AibomMetrics::count_alerts`] on alerts held as their parts.
    pub fn count_shared_alerts(&self, logs: &SharedLogs) {
        let mut severities = Tally::new();
        let mut findings = Tally::new();
        for record in logs.records() {
            severities.add(severity(record.severity_text()));
            let agent = record.str_attribute(AIBOM_AGENT_REF);
            let namespace = record
                .str_attribute(K8S_NAMESPACE_NAME)
                .or_else(|| attr(record.resource_attributes(), K8S_NAMESPACE_NAME));
            let subject = record.str_attribute(AIBOM_DRIFT_SUBJECT).unwrap_or("");
            let kinds = record.strs_attribute(AIBOM_DRIFT_KINDS);
            add_findings(&mut findings, kinds, agent, namespace, subject);
        }
        self.add_alerts(severities, findings);
    }

    fn add_alerts(&self, severities: Tally<&str>, findings: Tally<FindingLabels<'_>>) {
        for (severity, n) in severities.into_counts() {
            self.alerts
                .add(n, &[KeyValue::new("severity", self.kinds.value(severity))]);
        }
        for (f, n) in findings.into_counts() {
            self.count_finding(&f, n);
        }
    }

    fn count_finding(&self, f: &FindingLabels<'_>, n: u64) {
        let kind_value = self.kinds.value(f.kind);
        let mut labels = vec![KeyValue::new(AIBOM_DRIFT_KIND, kind_value.clone())];
        if let Some(agent) = f.agent {
            labels.push(KeyValue::new(AIBOM_AGENT_REF, self.agents.value(agent)));
        }
        if let Some(ns) = f.namespace {
            labels.push(KeyValue::new(K8S_NAMESPACE_NAME, self.namespaces.value(ns)));
        }
        self.findings.add(n, &labels);
        if !(f.kind.starts_with("undeclared_") || f.kind == drift::SHADOW_AI) {
            return;
        }
        labels.push(KeyValue::new(
            AIBOM_DRIFT_SUBJECT,
            self.subject_labels.value(f.subject),
        ));
        self.undeclared.add(n, &labels);
        if self.first_time(f.kind, f.subject) {
            self.subjects
                .add(1, &[KeyValue::new(AIBOM_DRIFT_KIND, kind_value)]);
        }
    }

    /// Whether `(kind, subject)` is new (within the bounded memory).
    fn first_time(&self, kind: &str, subject: &str) -> bool {
        let key = (kind.to_owned(), subject.to_owned());
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.contains(&key) {
            return false;
        }
        if self.subjects_seen.value(subject).as_str() == crate::telemetry::bounded::OTHER {
            return false;
        }
        seen.insert(key);
        true
    }
}

/// The `k8s.namespace.name` of a resource's spans.
fn namespace(rs: &ResourceSpans) -> Option<&str> {
    let resource = rs.resource.as_ref().map_or(&[][..], |r| &r.attributes[..]);
    attr(resource, K8S_NAMESPACE_NAME)
}

/// A record's severity text as counted (`UNSPECIFIED` for none).
fn severity(text: &str) -> &str {
    if text.is_empty() { "UNSPECIFIED" } else { text }
}

/// One alert's findings (one per kind) added to `findings`.
fn add_findings<'a>(
    findings: &mut Tally<FindingLabels<'a>>,
    kinds: Vec<&'a str>,
    agent: Option<&'a str>,
    namespace: Option<&'a str>,
    subject: &'a str,
) {
    for kind in kinds {
        findings.add(FindingLabels {
            kind,
            agent,
            namespace,
            subject,
        });
    }
}
