//! Agents that send no traces: their run as one `invoke_agent` trace, built from what the
//! kernel saw (contract §2, "agents without an SDK").
//!
//! A process whose events no application trace claims becomes an agent at its first LLM
//! exchange (a kernel `http.request` read as one, `gen_ai.*`). From then on:
//! - the run is an `invoke_agent {exe}` span (trace: the process run's own trace id), emitted
//!   [`EXIT_GRACE`] after the process exited (events that complete late, such as a request
//!   that waited for its body, still find their place), after [`IDLE`] without events, at
//!   shutdown, or when the table of runs is full;
//! - each LLM exchange is a `chat {model}` CLIENT span under it, with the exchange's `gen_ai.*`
//!   attributes; the kernel `http.request` goes under the chat span;
//! - the events that started between a response that asked for tool calls and the next LLM
//!   request go under an `execute_tool {name}` span (one per call asked for; the events under
//!   the first), emitted when that window closes; events are placed by when they started, not
//!   when they arrived (a request is complete, and arrives, only after its response);
//! - reaching an LLM endpoint of the run again (a new connection to it, a DNS lookup of its
//!   host) is the agent's own work, never a tool's: it goes under the `invoke_agent` span
//!   (the next request's connect precedes that request, so time order alone would put it in
//!   the tool window that request closes);
//! - every other event of the run goes under the `invoke_agent` span.
//!
//! All of it is `runbom.correlation.method = inferred`: the confidence says how sure the
//! inference is (`high` for the exchange under its chat span, `medium` for the run, `low` for
//! tool windows: time order, not causality, puts an event there). Events of the process before
//! its first LLM exchange were released before it was known to be an agent and stay as they
//! were (same trace id, no parent).

use std::{collections::VecDeque, net::SocketAddr, sync::Arc};

use opentelemetry_proto::tonic::{
    common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value::Value},
    resource::v1::Resource,
    trace::v1::{ResourceSpans, ScopeSpans, Span, span::SpanKind},
};
use runbom_event::{
    Detail, GenAi, KernelEvent,
    ids::new_span_id,
    semconv::{
        GEN_AI_AGENT_NAME, GEN_AI_OPERATION_NAME, GEN_AI_TOOL_CALL_ID, GEN_AI_TOOL_NAME,
        GEN_AI_USAGE_INPUT_TOKENS, GEN_AI_USAGE_OUTPUT_TOKENS, PROCESS_COMMAND_LINE, PROCESS_PID,
        RUNBOM_CORRELATION_CONFIDENCE, RUNBOM_CORRELATION_METHOD, RUNBOM_EVENT,
        correlation::{HIGH, INFERRED, LOW, MEDIUM},
        scope,
    },
};
use runbom_otlp::{ConvertOptions, Placement, event_attributes, process_resource};

use crate::IdMap;

/// Most agent runs followed at once; past it the run seen longest ago is closed.
const RUNS_MAX: usize = 4096;
/// Closed tool windows remembered per run, for events that arrive late.
const WINDOWS_MAX: usize = 64;
/// LLM endpoints (addresses, host names) remembered per run.
const LLM_ENDPOINTS_MAX: usize = 8;
/// How long a run stays open after its process exited (longer than the HTTP capture holds a
/// request for its response).
pub const EXIT_GRACE: u64 = 35_000_000_000;
/// How long a run stays open without events.
pub const IDLE: u64 = 600_000_000_000;

/// The agent runs being followed.
#[derive(Default)]
pub struct Agentless {
    runs: IdMap<[u8; 16], Run>,
    /// Spans made since the last [`Agentless::take_spans`].
    spans: Vec<(Arc<Resource>, Span)>,
}

struct Run {
    resource: Arc<Resource>,
    agent_span: [u8; 8],
    name: String,
    pid: u32,
    start_ns: u64,
    last_ns: u64,
    calls: u64,
    input_tokens: u64,
    output_tokens: u64,
    /// The tool calls asked for by the last response, until the next LLM request.
    tools: Option<ToolWindow>,
    /// Closed tool windows: `(start, end, span of the first call)`, oldest first.
    windows: VecDeque<(u64, u64, [u8; 8])>,
    /// When the process's exit arrived (caller's clock), and when it exited.
    exited: Option<(u64, u64)>,
    /// When its last event arrived (caller's clock).
    arrived: u64,
    /// Where its LLM exchanges went.
    llm: LlmEndpoints,
}

/// The addresses and host names of a run's LLM exchanges (at most [`LLM_ENDPOINTS_MAX`] each).
#[derive(Default)]
struct LlmEndpoints {
    addrs: Vec<SocketAddr>,
    hosts: Vec<String>,
}

impl LlmEndpoints {
    fn learn(&mut self, h: &runbom_event::HttpRequest) {
        let host = h.host.as_deref().map(str::trim).filter(|h| !h.is_empty());
        let addr = h.peer.or_else(|| host.and_then(|h| h.parse().ok()));
        if let Some(a) = addr
            && !self.addrs.contains(&a)
            && self.addrs.len() < LLM_ENDPOINTS_MAX
        {
            self.addrs.push(a);
        }
        let name = host.map(|h| h.rsplit_once(':').map_or(h, |(name, _)| name));
        if let Some(n) = name
            && n.parse::<std::net::IpAddr>().is_err()
            && !self.hosts.iter().any(|k| k.eq_ignore_ascii_case(n))
            && self.hosts.len() < LLM_ENDPOINTS_MAX
        {
            self.hosts.push(n.to_ascii_lowercase());
        }
    }

    /// Whether `d` reaches one of them again: a connection to one, a lookup of one's name.
    fn reached_by(&self, d: &Detail) -> bool {
        match d {
            Detail::Connect { remote, .. } => self.addrs.contains(remote),
            Detail::DnsQuery { name, .. } => {
                let name = name.trim_end_matches('.');
                self.hosts.iter().any(|h| h.eq_ignore_ascii_case(name))
            }
            _ => false,
        }
    }
}

struct ToolWindow {
    start_ns: u64,
    last_ns: u64,
    /// `(span id, tool name, call id)` per call asked for.
    calls: Vec<([u8; 8], String, Option<String>)>,
}

impl Agentless {
    /// Whether [`Agentless::place`] may place `ev`: an LLM exchange (which starts a run), or an
    /// event of a process run that is one. Cheap: asked first, so that the question whether
    /// `ev`'s process sends traces (a walk up its ancestors) is asked only then.
    #[must_use]
    pub fn may_place(&self, ev: &KernelEvent) -> bool {
        matches!(&ev.detail, Detail::HttpRequest(h) if h.traceparent.is_none() && h.genai.is_some())
            || self.runs.contains_key(&ev.process.trace_id)
    }

    /// Where `ev` (released without a place, from a process that sends no traces) goes; `None`
    /// when its process is no agent (yet).
    pub fn place(
        &mut self,
        ev: &KernelEvent,
        opts: &ConvertOptions,
        now: u64,
    ) -> Option<Placement> {
        let key = ev.process.trace_id;
        let (genai, request) = match &ev.detail {
            Detail::HttpRequest(h) if h.traceparent.is_none() => (h.genai.as_deref(), Some(h)),
            _ => (None, None),
        };
        if genai.is_some() && !self.runs.contains_key(&key) {
            self.start(ev, opts, now);
        }
        let run = self.runs.get_mut(&key)?;
        run.last_ns = run.last_ns.max(ev.end_ns);
        run.arrived = run.arrived.max(now);
        let trace_id = key;
        let placed = |span: [u8; 8], confidence| Placement {
            trace_id,
            parent_span_id: span,
            resource: run.resource.clone(),
            method: INFERRED,
            confidence,
        };
        if let (Some(g), Some(h)) = (genai, request) {
            run.llm.learn(h);
            // The tool window (if any) closes at this request.
            let closed = run.tools.take();
            let chat = new_span_id();
            run.calls += 1;
            run.input_tokens += g.input_tokens.unwrap_or(0);
            run.output_tokens += g.output_tokens.unwrap_or(0);
            if !g.tool_calls.is_empty() {
                run.tools = Some(ToolWindow {
                    start_ns: ev.end_ns,
                    last_ns: ev.end_ns,
                    calls: g
                        .tool_calls
                        .iter()
                        .map(|c| (new_span_id(), c.name.clone(), c.id.clone()))
                        .collect(),
                });
            }
            let placement = placed(chat, HIGH);
            let span = chat_span(ev, g, chat, run);
            let resource = run.resource.clone();
            if let Some(w) = closed {
                let first = w.calls[0].0;
                if run.windows.len() == WINDOWS_MAX {
                    run.windows.pop_front();
                }
                run.windows.push_back((w.start_ns, ev.start_ns, first));
                self.close_tools(key, &w, ev.start_ns);
            }
            self.spans.push((resource, span));
            return Some(placement);
        }
        if let Detail::Exit { .. } = ev.detail {
            run.exited = Some((now, ev.end_ns));
            return Some(placed(run.agent_span, MEDIUM));
        }
        if run.llm.reached_by(&ev.detail) {
            return Some(placed(run.agent_span, MEDIUM));
        }
        if let Some(w) = &mut run.tools
            && ev.start_ns >= w.start_ns
        {
            w.last_ns = w.last_ns.max(ev.end_ns);
            return Some(placed(w.calls[0].0, LOW));
        }
        let window = run
            .windows
            .iter()
            .rev()
            .find(|(start, end, _)| (*start..*end).contains(&ev.start_ns));
        Some(match window {
            Some(&(_, _, span)) => placed(span, LOW),
            None => placed(run.agent_span, MEDIUM),
        })
    }

    /// Closes the runs whose process exited [`EXIT_GRACE`] ago, or that were idle for [`IDLE`]
    /// (`now`: the caller's clock, as given to [`Agentless::place`]).
    pub fn expire(&mut self, now: u64) {
        let due: Vec<([u8; 16], u64)> = self
            .runs
            .iter()
            .filter_map(|(k, r)| match r.exited {
                Some((at, end)) if now.saturating_sub(at) >= EXIT_GRACE => Some((*k, end)),
                None if now.saturating_sub(r.arrived) >= IDLE => Some((*k, r.last_ns)),
                _ => None,
            })
            .collect();
        for (key, end) in due {
            self.close(key, end);
        }
    }

    /// Closes every run (shutdown).
    pub fn close_all(&mut self) {
        let keys: Vec<[u8; 16]> = self.runs.keys().copied().collect();
        for key in keys {
            let run = &self.runs[&key];
            let end = run.exited.map_or(run.last_ns, |(_, end)| end);
            self.close(key, end);
        }
    }

    /// The spans made since the last call, grouped by Resource.
    pub fn take_spans(&mut self) -> Vec<ResourceSpans> {
        let mut out: Vec<ResourceSpans> = Vec::new();
        for (resource, span) in self.spans.drain(..) {
            if let Some(rs) = out
                .iter_mut()
                .find(|rs| rs.resource.as_ref() == Some(&*resource))
            {
                rs.scope_spans[0].spans.push(span);
                continue;
            }
            out.push(ResourceSpans {
                resource: Some((*resource).clone()),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: scope::GENAI.into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..Default::default()
                    }),
                    spans: vec![span],
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            });
        }
        out
    }

    fn start(&mut self, ev: &KernelEvent, opts: &ConvertOptions, now: u64) {
        if self.runs.len() >= RUNS_MAX
            && let Some((&oldest, run)) = self.runs.iter().min_by_key(|(_, r)| r.last_ns)
        {
            let end = run.last_ns;
            self.close(oldest, end);
        }
        let p = &ev.process;
        let name = if p.exe.is_empty() {
            "unknown".to_owned()
        } else {
            p.exe_name().to_owned()
        };
        self.runs.insert(
            p.trace_id,
            Run {
                resource: Arc::new(agent_resource(p, opts)),
                agent_span: new_span_id(),
                name,
                pid: ev.pid,
                start_ns: if p.fork_ns > 0 {
                    p.fork_ns.min(ev.start_ns)
                } else {
                    ev.start_ns
                },
                last_ns: ev.end_ns,
                calls: 0,
                input_tokens: 0,
                output_tokens: 0,
                tools: None,
                windows: VecDeque::new(),
                exited: None,
                arrived: now,
                llm: LlmEndpoints::default(),
            },
        );
    }

    /// Emits the run's `invoke_agent` span (and its open tool window), ending at `end_ns`.
    fn close(&mut self, key: [u8; 16], end_ns: u64) {
        let Some(mut run) = self.runs.remove(&key) else {
            return;
        };
        if let Some(w) = run.tools.take() {
            self.spans
                .extend(tool_spans(&run, key, &w, w.last_ns).map(|s| (run.resource.clone(), s)));
        }
        let mut attributes = vec![
            kv_str(GEN_AI_OPERATION_NAME, "invoke_agent"),
            kv_str(GEN_AI_AGENT_NAME, &run.name),
            kv_int(PROCESS_PID, run.pid.into()),
            kv_int(GEN_AI_USAGE_INPUT_TOKENS, saturating(run.input_tokens)),
            kv_int(GEN_AI_USAGE_OUTPUT_TOKENS, saturating(run.output_tokens)),
            kv_int("runbom.gen_ai.calls", saturating(run.calls)),
        ];
        inferred(&mut attributes, MEDIUM);
        let span = Span {
            trace_id: key.to_vec(),
            span_id: run.agent_span.to_vec(),
            name: format!("invoke_agent {}", run.name),
            kind: SpanKind::Internal as i32,
            start_time_unix_nano: run.start_ns,
            end_time_unix_nano: end_ns.max(run.start_ns),
            attributes,
            ..Default::default()
        };
        self.spans.push((run.resource, span));
    }

    /// Emits one `execute_tool` span per call of a closed window.
    fn close_tools(&mut self, key: [u8; 16], w: &ToolWindow, end_ns: u64) {
        let Some(run) = self.runs.get(&key) else {
            return;
        };
        let resource = run.resource.clone();
        let spans: Vec<Span> = tool_spans(run, key, w, end_ns).collect();
        self.spans
            .extend(spans.into_iter().map(|s| (resource.clone(), s)));
    }
}

/// The `execute_tool {name}` spans of a tool window, one per call asked for.
fn tool_spans<'a>(
    run: &'a Run,
    key: [u8; 16],
    w: &'a ToolWindow,
    end_ns: u64,
) -> impl Iterator<Item = Span> + 'a {
    w.calls.iter().map(move |(span_id, name, call_id)| {
        let mut attributes = vec![
            kv_str(GEN_AI_OPERATION_NAME, "execute_tool"),
            kv_str(GEN_AI_TOOL_NAME, name),
            kv_int(PROCESS_PID, run.pid.into()),
        ];
        if let Some(id) = call_id {
            attributes.push(kv_str(GEN_AI_TOOL_CALL_ID, id));
        }
        inferred(&mut attributes, LOW);
        Span {
            trace_id: key.to_vec(),
            span_id: span_id.to_vec(),
            parent_span_id: run.agent_span.to_vec(),
            name: format!("execute_tool {name}"),
            kind: SpanKind::Internal as i32,
            start_time_unix_nano: w.start_ns,
            end_time_unix_nano: end_ns.max(w.start_ns),
            attributes,
            ..Default::default()
        }
    })
}

/// The Resource of an agent run: its process's, with `process.command_line` (redacted
/// already) so that a declared AI-BOM can name the agent by its arguments
/// (`runbom:match` `process.command_line=*agent.py*`).
fn agent_resource(p: &runbom_event::ProcessInfo, opts: &ConvertOptions) -> Resource {
    let mut r = process_resource(p, opts);
    if !p.command_line.is_empty() {
        r.attributes
            .push(kv_str(PROCESS_COMMAND_LINE, &p.command_line));
    }
    r
}

/// The `chat {model}` span of an LLM exchange: the exchange's attributes but `runbom.event`
/// (it is no kernel event), under the run's span.
fn chat_span(ev: &KernelEvent, g: &GenAi, id: [u8; 8], run: &Run) -> Span {
    let model = g
        .request_model
        .as_deref()
        .or(g.response_model.as_deref())
        .unwrap_or("unknown");
    let mut attributes: Vec<KeyValue> = event_attributes(ev)
        .into_iter()
        .filter(|kv| kv.key != RUNBOM_EVENT)
        .collect();
    inferred(&mut attributes, HIGH);
    Span {
        trace_id: ev.process.trace_id.to_vec(),
        span_id: id.to_vec(),
        parent_span_id: run.agent_span.to_vec(),
        name: format!("{} {model}", g.operation),
        kind: SpanKind::Client as i32,
        start_time_unix_nano: ev.start_ns,
        end_time_unix_nano: ev.end_ns,
        attributes,
        ..Default::default()
    }
}

fn inferred(a: &mut Vec<KeyValue>, confidence: &str) {
    a.retain(|kv| kv.key != RUNBOM_CORRELATION_METHOD && kv.key != RUNBOM_CORRELATION_CONFIDENCE);
    a.push(kv_str(RUNBOM_CORRELATION_METHOD, INFERRED));
    a.push(kv_str(RUNBOM_CORRELATION_CONFIDENCE, confidence));
}

fn saturating(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn kv_str(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(value.into())),
        }),
    }
}

fn kv_int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(Value::IntValue(value)),
        }),
    }
}

#[cfg(test)]
#[path = "agentless_tests.rs"]
mod tests;
