//! GenAI-shaped trace requests: agent runs as the OpenTelemetry `GenAI` semantic conventions
//! describe them (`invoke_agent` → `chat` → `execute_tool` → `chat`, plus an `embeddings`
//! call), with `gen_ai.*` attributes and events, from one `support-agent` service.

use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest,
    common::v1::{AnyValue, ArrayValue, InstrumentationScope, KeyValue, any_value},
    resource::v1::Resource,
    trace::v1::{
        ResourceSpans, ScopeSpans, Span, Status,
        span::{self, SpanKind},
        status,
    },
};

/// A small deterministic generator for ids and varied values (splitmix64).
struct Ids(u64);

impl Ids {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn trace_id(&mut self) -> Vec<u8> {
        let mut id = self.next().to_be_bytes().to_vec();
        id.extend_from_slice(&self.next().to_be_bytes());
        id
    }

    fn span_id(&mut self) -> Vec<u8> {
        self.next().to_be_bytes().to_vec()
    }
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
    }
}

fn s(key: &str, value: &str) -> KeyValue {
    kv(key, any_value::Value::StringValue(value.to_owned()))
}

fn i(key: &str, value: i64) -> KeyValue {
    kv(key, any_value::Value::IntValue(value))
}

/// `spans / 5` agent runs in one request (see [`agent_run`]), from one service.
#[must_use]
pub fn request(spans: usize) -> ExportTraceServiceRequest {
    let mut ids = Ids(0x5eed);
    let spans = (0..(spans / 5) as u64)
        .flat_map(|run| agent_run(&mut ids, run))
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    s("service.name", "support-agent"),
                    s("service.version", "2.3.1"),
                    s("deployment.environment.name", "bench"),
                    s("telemetry.sdk.language", "python"),
                    s("telemetry.sdk.name", "opentelemetry"),
                    s("telemetry.sdk.version", "1.45.2"),
                    s("host.name", "bench-node-1"),
                ],
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "opentelemetry.instrumentation.openai_v2".into(),
                    version: "2.1b0".into(),
                    ..InstrumentationScope::default()
                }),
                spans,
                schema_url: "https://opentelemetry.io/schemas/1.37.0".into(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// One agent run, five spans as the `GenAI` semantic conventions describe them: an
/// `invoke_agent` root with `chat`, `execute_tool`, `chat` and `embeddings` children (every
/// tenth embeddings call failed).
fn agent_run(ids: &mut Ids, run: u64) -> Vec<Span> {
    const START: u64 = 1_767_225_600_000_000_000; // 2026-01-01T00:00:00Z
    let trace_id = ids.trace_id();
    let root_id = ids.span_id();
    let t0 = START + run * 10_000_000_000;
    let ms = |offset: u64| t0 + offset * 1_000_000;
    let span = |ids: &mut Ids, name: &str, kind: SpanKind, from_ms: u64, to_ms: u64| Span {
        trace_id: trace_id.clone(),
        span_id: ids.span_id(),
        parent_span_id: root_id.clone(),
        name: name.to_owned(),
        kind: kind as i32,
        start_time_unix_nano: ms(from_ms),
        end_time_unix_nano: ms(to_ms),
        // Sampled, and the parent is known to be in this process (W3C `is_remote` known and
        // false), as the OpenTelemetry SDKs write a child span's flags.
        flags: 0x101,
        ..Span::default()
    };
    let conversation = format!("conv-{run:08}");
    let chat = |ids: &mut Ids, turn: i64, from_ms: u64, to_ms: u64| Span {
        attributes: chat_attributes(run, turn, &conversation),
        events: vec![choice(ms(to_ms))],
        ..span(ids, "chat gpt-4o", SpanKind::Client, from_ms, to_ms)
    };

    let mut root = span(ids, "invoke_agent support", SpanKind::Internal, 0, 4000);
    root.span_id.clone_from(&root_id);
    root.parent_span_id.clear();
    root.attributes = vec![
        s("gen_ai.operation.name", "invoke_agent"),
        s("gen_ai.agent.name", "support"),
        s("gen_ai.agent.id", "asst_5j66UpCpwteGg4YSxUnt7lPY"),
        s("gen_ai.conversation.id", &conversation),
    ];

    let first_chat = chat(ids, 1, 10, 1510);

    let mut tool = span(
        ids,
        "execute_tool get_weather",
        SpanKind::Internal,
        1520,
        1820,
    );
    tool.attributes = vec![
        s("gen_ai.operation.name", "execute_tool"),
        s("gen_ai.tool.name", "get_weather"),
        s("gen_ai.tool.call.id", &format!("call_{run:024}")),
        s("gen_ai.tool.type", "function"),
    ];

    let second_chat = chat(ids, 2, 1830, 3930);

    let mut embed = span(
        ids,
        "embeddings text-embedding-3-small",
        SpanKind::Client,
        3950,
        3990,
    );
    embed.attributes = vec![
        s("gen_ai.operation.name", "embeddings"),
        s("gen_ai.provider.name", "openai"),
        s("gen_ai.request.model", "text-embedding-3-small"),
        i("gen_ai.usage.input_tokens", 57),
        i("gen_ai.embeddings.dimension.count", 1536),
    ];
    if run % 10 == 9 {
        embed.status = Some(Status {
            code: status::StatusCode::Error as i32,
            message: "rate limited".into(),
        });
        embed.attributes.push(s("error.type", "429"));
    }
    vec![root, first_chat, tool, second_chat, embed]
}

fn chat_attributes(run: u64, n: i64, conversation: &str) -> Vec<KeyValue> {
    vec![
        s("gen_ai.operation.name", "chat"),
        s("gen_ai.provider.name", "openai"),
        s("gen_ai.request.model", "gpt-4o"),
        kv(
            "gen_ai.request.temperature",
            any_value::Value::DoubleValue(0.2),
        ),
        i("gen_ai.request.max_tokens", 1024),
        s("gen_ai.response.model", "gpt-4o-2024-08-06"),
        s("gen_ai.response.id", &format!("chatcmpl-{run:06}{n}")),
        kv(
            "gen_ai.response.finish_reasons",
            any_value::Value::ArrayValue(ArrayValue {
                values: vec![AnyValue {
                    value: Some(any_value::Value::StringValue("stop".into())),
                }],
            }),
        ),
        i("gen_ai.usage.input_tokens", 1200 + n * 37),
        i("gen_ai.usage.output_tokens", 180 + n * 11),
        s("gen_ai.conversation.id", conversation),
        s("server.address", "api.openai.com"),
        i("server.port", 443),
    ]
}

fn choice(time_unix_nano: u64) -> span::Event {
    span::Event {
        time_unix_nano,
        name: "gen_ai.choice".into(),
        attributes: vec![i("index", 0), s("finish_reason", "stop")],
        dropped_attributes_count: 0,
    }
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;

    #[test]
    fn request_has_the_asked_number_of_genai_spans() {
        let r = request(100);
        let spans = &r.resource_spans[0].scope_spans[0].spans;
        assert_eq!(spans.len(), 100);
        assert!(spans.iter().all(|s| {
            s.attributes
                .iter()
                .any(|a| a.key == "gen_ai.operation.name")
        }));
        let ids: std::collections::BTreeSet<_> = spans.iter().map(|s| &s.span_id).collect();
        assert_eq!(ids.len(), 100, "span ids are unique");
        let roots = spans.iter().filter(|s| s.parent_span_id.is_empty()).count();
        assert_eq!(roots, 20, "one root per agent run");
        assert!(
            spans.iter().all(|s| s.flags & 0x300 == 0x100),
            "no span says its parent is in another process"
        );
        let bytes = r.encode_to_vec().len();
        assert!((20_000..200_000).contains(&bytes), "{bytes} bytes");
    }
}
