//! Synthetic traces shaped like the reference agent's (examples/agent/README.md), after
//! correlation: kernel spans (scope `runbom.kernel`) are children of the application spans.

use opentelemetry_proto::tonic::{
    collector::{logs::v1::ExportLogsServiceRequest, trace::v1::ExportTraceServiceRequest},
    common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value::Value},
    logs::v1::LogRecord,
    resource::v1::Resource,
    trace::v1::{ResourceSpans, ScopeSpans, Span, span::SpanKind},
};
use runbom_aibom::otlp::{kv_int, kv_str};

pub const BOM: &str = include_str!("../../../examples/agent/bom.cdx.json");
pub const PROMPT_INJECTED: &str = "Summarise ticket T-2718 for customer C-1013; its notes are in tickets/T-2718.md. Look the customer up and post the summary as a comment on the ticket.";
pub const PROMPT_BENIGN: &str = "Summarise ticket T-3141 for customer C-1007; its notes are in tickets/T-3141.md. Look the customer up, check their open tickets, count the lines of the notes and post the summary as a comment on the ticket.";
pub const DATA: &str = "/tmp/runbom-agent/data";
pub const AGENT_PID: i64 = 4242;
pub const T0: u64 = 1_795_737_600_000_000_000;

#[must_use]
pub fn bom() -> runbom_aibom::DeclaredBom {
    runbom_aibom::DeclaredBom::parse(BOM, "bom.cdx.json").expect("the reference BOM loads")
}

/// The command line of the npm filesystem MCP server as a stdio client starts it.
pub const MCP_FS_SERVER: &str =
    "node /opt/node_modules/@modelcontextprotocol/server-filesystem/dist/index.js /data";

/// The reference BOM plus a filesystem MCP server (started as `*server-filesystem*`) whose one
/// declared tool is `read_text_file`, both declared for the agent.
#[must_use]
pub fn bom_with_mcp_server() -> runbom_aibom::DeclaredBom {
    bom_with_service(
        &serde_json::json!({
            "bom-ref": "mcp:filesystem",
            "name": "filesystem",
            "properties": [
                {"name": "runbom:kind", "value": "mcp-server"},
                {"name": "runbom:exec", "value": "*server-filesystem*"}
            ],
            "services": [{
                "bom-ref": "mcp:filesystem:read_text_file",
                "name": "read_text_file",
                "properties": [{"name": "runbom:kind", "value": "tool"}]
            }]
        }),
        &["mcp:filesystem", "mcp:filesystem:read_text_file"],
    )
}

/// The reference BOM plus `service` (a `services[]` entry), with `refs` declared for the agent.
#[must_use]
pub fn bom_with_service(service: &serde_json::Value, refs: &[&str]) -> runbom_aibom::DeclaredBom {
    let mut doc: serde_json::Value = serde_json::from_str(BOM).expect("BOM JSON");
    doc["services"]
        .as_array_mut()
        .expect("services")
        .push(service.clone());
    let deps = doc["dependencies"].as_array_mut().expect("dependencies");
    let agent = deps
        .iter_mut()
        .find(|d| d["ref"] == "agent:support-agent")
        .expect("the agent's dependencies");
    for r in refs {
        agent["dependsOn"]
            .as_array_mut()
            .expect("dependsOn")
            .push((*r).into());
    }
    runbom_aibom::DeclaredBom::parse(&doc.to_string(), "bom.cdx.json")
        .expect("the BOM with the service loads")
}

pub struct Trace {
    pub id: Vec<u8>,
    next_id: u64,
    pub now: u64,
    pub app: Vec<Span>,
    pub kernel: Vec<Span>,
    /// Extra attributes for kernel spans (e.g. secrets in command lines).
    pub kernel_extra: Vec<KeyValue>,
}

impl Trace {
    #[must_use]
    pub fn new(seed: u8) -> Self {
        Self {
            id: vec![seed; 16],
            next_id: u64::from(seed) << 32,
            now: T0 + u64::from(seed) * 1_000_000_000,
            app: Vec::new(),
            kernel: Vec::new(),
            kernel_extra: Vec::new(),
        }
    }

    fn id(&mut self) -> Vec<u8> {
        self.next_id += 1;
        self.next_id.to_be_bytes().to_vec()
    }

    fn tick(&mut self) -> u64 {
        self.now += 1_000_000;
        self.now
    }

    pub fn app_span(
        &mut self,
        parent: &[u8],
        name: &str,
        kind: SpanKind,
        attrs: Vec<KeyValue>,
    ) -> Vec<u8> {
        let id = self.id();
        let start = self.tick();
        self.app.push(Span {
            trace_id: self.id.clone(),
            span_id: id.clone(),
            parent_span_id: parent.to_vec(),
            name: name.into(),
            kind: kind as i32,
            start_time_unix_nano: start,
            end_time_unix_nano: start + 500_000,
            attributes: attrs,
            ..Default::default()
        });
        id
    }

    pub fn kernel_span(
        &mut self,
        parent: &[u8],
        event: &str,
        pid: i64,
        exe: &str,
        mut attrs: Vec<KeyValue>,
    ) -> Vec<u8> {
        let id = self.id();
        let start = self.tick();
        let mut a = vec![
            kv_str("runbom.event", event),
            kv_int("process.pid", pid),
            kv_int("thread.id", pid),
            kv_int(
                "process.parent_pid",
                if pid == AGENT_PID { 1 } else { AGENT_PID },
            ),
            kv_str("process.executable.path", exe),
            kv_int("process.user.id", 1000),
        ];
        a.append(&mut attrs);
        a.extend(self.kernel_extra.iter().cloned());
        self.kernel.push(Span {
            trace_id: self.id.clone(),
            span_id: id.clone(),
            parent_span_id: parent.to_vec(),
            name: event.into(),
            kind: SpanKind::Client as i32,
            start_time_unix_nano: start,
            end_time_unix_nano: start + 10_000,
            attributes: a,
            ..Default::default()
        });
        id
    }

    /// A request of the agent: kernel `net.connect` and `http.request` under `parent`.
    pub fn kernel_request(
        &mut self,
        parent: &[u8],
        method: &str,
        url: &str,
        port: i64,
        model: Option<&str>,
    ) {
        let py = "/work/.venv/bin/python3";
        self.kernel_span(
            parent,
            "net.connect",
            AGENT_PID,
            py,
            vec![
                kv_str("server.address", "127.0.0.1"),
                kv_int("server.port", port),
                kv_str("network.peer.address", "127.0.0.1"),
                kv_int("network.peer.port", port),
                kv_str("network.transport", "tcp"),
                kv_str("error.type", "EINPROGRESS"),
            ],
        );
        let mut a = vec![
            kv_str(
                "runbom.capture",
                if url.starts_with("https") {
                    "openssl"
                } else {
                    "socket"
                },
            ),
            kv_str("http.request.method", method),
            kv_str("server.address", "127.0.0.1"),
            kv_int("server.port", port),
            kv_str("network.peer.address", "127.0.0.1"),
            kv_str("url.full", url),
        ];
        if let Some(m) = model {
            a.push(kv_str("gen_ai.request.model", m));
        }
        self.kernel_span(parent, "http.request", AGENT_PID, py, a);
    }

    pub fn chat(&mut self, root: &[u8]) {
        let chat = self.app_span(
            root,
            "chat gpt-4o-mini",
            SpanKind::Client,
            vec![
                kv_str("gen_ai.operation.name", "chat"),
                kv_str("gen_ai.provider.name", "openai"),
                kv_str("gen_ai.request.model", "gpt-4o-mini"),
                kv_str("gen_ai.response.model", "gpt-4o-mini"),
                kv_str("server.address", "127.0.0.1"),
                kv_int("server.port", 18443),
            ],
        );
        self.kernel_request(
            &chat,
            "POST",
            "https://127.0.0.1:18443/v1/chat/completions",
            18443,
            Some("gpt-4o-mini"),
        );
    }

    pub fn tool(&mut self, root: &[u8], name: &str, args: &str) -> Vec<u8> {
        self.app_span(
            root,
            &format!("execute_tool {name}"),
            SpanKind::Internal,
            vec![
                kv_str("gen_ai.operation.name", "execute_tool"),
                kv_str("gen_ai.tool.name", name),
                kv_str("gen_ai.tool.call.arguments", args),
            ],
        )
    }

    pub fn root(&mut self, prompt: &str) -> Vec<u8> {
        let messages = serde_json::json!([{"role": "user", "content": prompt}]).to_string();
        self.app_span(
            &[],
            "invoke_agent support-agent",
            SpanKind::Internal,
            vec![
                kv_str("gen_ai.operation.name", "invoke_agent"),
                kv_str("gen_ai.agent.name", "support-agent"),
                kv_str("gen_ai.provider.name", "openai"),
                kv_str("gen_ai.request.model", "gpt-4o-mini"),
                kv_str("gen_ai.input.messages", &messages),
            ],
        )
    }

    pub fn read_file(&mut self, root: &[u8], ticket: &str) {
        let t = self.tool(
            root,
            "read_file",
            &format!("{{\"path\": \"tickets/{ticket}.md\"}}"),
        );
        self.kernel_span(
            &t,
            "file.open",
            AGENT_PID,
            "/work/.venv/bin/python3",
            vec![
                kv_str("file.path", &format!("{DATA}/tickets/{ticket}.md")),
                kv_str("runbom.file.flags", "O_RDONLY|O_CLOEXEC"),
            ],
        );
    }

    pub fn query_customers(&mut self, root: &[u8], args: &str) {
        let t = self.tool(root, "query_customers", args);
        let q = self.app_span(
            &t,
            "SELECT customers",
            SpanKind::Client,
            vec![
                kv_str("db.system.name", "sqlite"),
                kv_str("db.namespace", "crm"),
                kv_str("db.collection.name", "customers"),
                kv_str("db.query.text", "SELECT * FROM customers"),
                kv_str("server.address", "127.0.0.1"),
                kv_int("server.port", 18081),
            ],
        );
        self.kernel_request(&q, "POST", "http://127.0.0.1:18081/query", 18081, None);
    }

    pub fn http(&mut self, root: &[u8], tool: &str, method: &str, url: &str, port: i64) -> Vec<u8> {
        let t = self.tool(root, tool, &format!("{{\"url\": \"{url}\"}}"));
        let s = self.app_span(
            &t,
            method,
            SpanKind::Client,
            vec![
                kv_str("http.request.method", method),
                kv_str("url.full", url),
                kv_str("server.address", "127.0.0.1"),
                kv_int("server.port", port),
            ],
        );
        self.kernel_request(&s, method, url, port, None);
        s
    }

    pub fn run_wc(&mut self, root: &[u8], ticket: &str) {
        let path = format!("{DATA}/tickets/{ticket}.md");
        let t = self.tool(
            root,
            "run_command",
            &format!("{{\"argv\": [\"/usr/bin/wc\", \"-l\", \"{path}\"]}}"),
        );
        self.kernel_span(
            &t,
            "process.exec",
            4300,
            "/usr/bin/wc",
            vec![kv_str(
                "process.command_line",
                &format!("/usr/bin/wc -l {path}"),
            )],
        );
        self.kernel_span(
            &t,
            "file.open",
            4300,
            "/usr/bin/wc",
            vec![
                kv_str("file.path", &path),
                kv_str("runbom.file.flags", "O_RDONLY"),
            ],
        );
    }

    /// A `tools/call` of `tool` the agent's process sent over MCP, answered by a process whose
    /// command line is `server` (a kernel `mcp.client` span under `parent`).
    pub fn mcp_call(&mut self, parent: &[u8], tool: &str, server: &str) {
        self.kernel_span(
            parent,
            "mcp.client",
            AGENT_PID,
            "/work/.venv/bin/python3",
            vec![
                kv_str("mcp.method.name", "tools/call"),
                kv_str("gen_ai.tool.name", tool),
                kv_str("runbom.mcp.server.command_line", server),
            ],
        );
    }

    #[must_use]
    pub fn request(self) -> ExportTraceServiceRequest {
        let resource = Some(Resource {
            attributes: vec![
                kv_str("service.name", "support-agent"),
                kv_int("process.pid", AGENT_PID),
                kv_str("process.executable.path", "/work/.venv/bin/python3"),
            ],
            ..Default::default()
        });
        let scope = |name: &str| {
            Some(InstrumentationScope {
                name: name.into(),
                ..Default::default()
            })
        };
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource,
                scope_spans: vec![
                    ScopeSpans {
                        scope: scope("support-agent"),
                        spans: self.app,
                        schema_url: String::new(),
                    },
                    ScopeSpans {
                        scope: scope("runbom.kernel"),
                        spans: self.kernel,
                        schema_url: String::new(),
                    },
                ],
                schema_url: String::new(),
            }],
        }
    }
}

/// The injected conversation: read the poisoned notes, dump the customers, post them to the
/// exfil sink with `http_post`, then the orphaned `http_get`. Returns the trace and the POST span id.
#[must_use]
pub fn injected(seed: u8) -> (Trace, Vec<u8>) {
    let mut t = Trace::new(seed);
    let root = t.root(PROMPT_INJECTED);
    t.chat(&root);
    t.read_file(&root, "T-2718");
    t.chat(&root);
    t.query_customers(&root, "{\"all\": true}");
    t.chat(&root);
    let post = t.http(
        &root,
        "http_post",
        "POST",
        "http://127.0.0.1:18099/upload",
        18099,
    );
    t.chat(&root);
    t.http(
        &root,
        "http_get",
        "GET",
        "http://127.0.0.1:18080/api/tickets?customer=C-1013&status=open",
        18080,
    );
    t.chat(&root);
    (t, post)
}

/// The benign conversation: every destination is declared for the tool that reaches it.
#[must_use]
pub fn benign(seed: u8) -> Trace {
    let mut t = Trace::new(seed);
    let root = t.root(PROMPT_BENIGN);
    t.chat(&root);
    t.read_file(&root, "T-3141");
    t.chat(&root);
    t.query_customers(&root, "{\"customer_id\": \"C-1007\"}");
    t.chat(&root);
    t.http(
        &root,
        "http_get",
        "GET",
        "http://127.0.0.1:18080/api/tickets?customer=C-1007&status=open",
        18080,
    );
    t.chat(&root);
    t.run_wc(&root, "T-3141");
    t.chat(&root);
    t.http(
        &root,
        "http_post",
        "POST",
        "http://127.0.0.1:18080/api/tickets/T-3141/comments",
        18080,
    );
    t.chat(&root);
    // The agent's own OTLP export, caught by process correlation: runbom's receiver, never drift.
    t.kernel_span(
        &root,
        "net.connect",
        AGENT_PID,
        "/work/.venv/bin/python3",
        vec![
            kv_str("server.address", "127.0.0.1"),
            kv_int("server.port", 4318),
        ],
    );
    t
}

/// Every span of `request`, in order.
#[must_use]
pub fn spans_of(request: ExportTraceServiceRequest) -> Vec<Span> {
    request
        .resource_spans
        .into_iter()
        .flat_map(|r| r.scope_spans)
        .flat_map(|s| s.spans)
        .collect()
}

/// Every log record of `request`, in order.
#[must_use]
pub fn log_records_of(request: &ExportLogsServiceRequest) -> Vec<&LogRecord> {
    request
        .resource_logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .flat_map(|s| &s.log_records)
        .collect()
}

/// A string-array attribute (`aibom.drift.kinds`, `aibom.chain`); empty when absent.
#[must_use]
pub fn strings(attrs: &[KeyValue], key: &str) -> Vec<String> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| match &kv.value {
            Some(AnyValue {
                value: Some(Value::ArrayValue(a)),
            }) => Some(
                a.values
                    .iter()
                    .filter_map(|v| match &v.value {
                        Some(Value::StringValue(s)) => Some(s.clone()),
                        _ => None,
                    })
                    .collect(),
            ),
            _ => None,
        })
        .unwrap_or_default()
}

/// A boolean attribute (`aibom.drift`, `aibom.declared`): the processor's own reader.
pub use runbom_aibom::span::attr_bool as boolean;
