//! One test per matching rule and drift flag, on small traces judged directly.

use runbom_testkit::agent_trace as common;

use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest,
    common::v1::{AnyValue, KeyValue, any_value::Value},
    trace::v1::span::SpanKind,
};
use runbom_aibom::{
    DeclaredBom,
    judge::{Item, JudgeSettings, judge},
    otlp::{kv_int, kv_str},
    pids::PidMap,
    span::attr,
};

fn items(t: common::Trace) -> Vec<Item> {
    items_of(t.request())
}

fn items_of(req: ExportTraceServiceRequest) -> Vec<Item> {
    let mut out = Vec::new();
    for rs in req.resource_spans {
        let resource = std::sync::Arc::new(runbom_aibom::judge::ResourceHeader {
            resource: rs.resource,
            schema_url: rs.schema_url,
        });
        for ss in rs.scope_spans {
            let scope = std::sync::Arc::new(runbom_aibom::judge::ScopeHeader {
                scope: ss.scope,
                schema_url: ss.schema_url,
            });
            for span in ss.spans {
                out.push(Item {
                    resource: resource.clone(),
                    scope: scope.clone(),
                    span,
                });
            }
        }
    }
    out
}

fn kinds(attrs: &[KeyValue]) -> Vec<String> {
    common::strings(attrs, "aibom.drift.kinds")
}

/// Judges `t` and returns, per span name, its drift flags and component ref.
fn judged(
    bom: &DeclaredBom,
    pids: &mut PidMap,
    t: common::Trace,
) -> Vec<(String, Vec<String>, Option<String>)> {
    judged_request(bom, pids, t.request())
}

fn judged_request(
    bom: &DeclaredBom,
    pids: &mut PidMap,
    req: ExportTraceServiceRequest,
) -> Vec<(String, Vec<String>, Option<String>)> {
    let mut its = items_of(req);
    judge(bom, &JudgeSettings::default(), pids, &mut its);
    its.iter()
        .map(|i| {
            (
                i.span.name.clone(),
                kinds(&i.span.attributes),
                attr(&i.span.attributes, "aibom.component.ref").map(str::to_owned),
            )
        })
        .collect()
}

fn flags_of<'a>(out: &'a [(String, Vec<String>, Option<String>)], name: &str) -> &'a [String] {
    &out.iter()
        .find(|(n, _, _)| n == name)
        .unwrap_or_else(|| panic!("{name} in {out:?}"))
        .1
}

#[test]
fn undeclared_model_and_provider_mismatch() {
    let bom = common::bom();
    let mut t = common::Trace::new(20);
    let root = t.root("p");
    t.app_span(
        &root,
        "chat gpt-5",
        SpanKind::Client,
        vec![
            kv_str("gen_ai.operation.name", "chat"),
            kv_str("gen_ai.provider.name", "openai"),
            kv_str("gen_ai.request.model", "gpt-5"),
        ],
    );
    t.app_span(
        &root,
        "chat via anthropic",
        SpanKind::Client,
        vec![
            kv_str("gen_ai.operation.name", "chat"),
            kv_str("gen_ai.system", "anthropic"),
            kv_str("gen_ai.request.model", "gpt-4o-mini"),
        ],
    );
    t.app_span(
        &root,
        "chat via langchain",
        SpanKind::Client,
        vec![
            kv_str("gen_ai.system", "langchain"),
            kv_str("llm.request.type", "chat"),
            kv_str("gen_ai.request.model", "gpt-4o-mini"),
        ],
    );
    let out = judged(&bom, &mut PidMap::default(), t);
    assert_eq!(flags_of(&out, "chat gpt-5"), ["undeclared_model"]);
    assert_eq!(flags_of(&out, "chat via anthropic"), ["undeclared_model"]);
    assert!(
        flags_of(&out, "chat via langchain").is_empty(),
        "langchain is a framework, not a provider: {out:?}"
    );
}

#[test]
fn undeclared_tool_exec_file_and_data_source() {
    let bom = common::bom();
    let mut t = common::Trace::new(21);
    let root = t.root("p");
    let shell = t.tool(&root, "shell", "{}");
    t.kernel_span(
        &shell,
        "process.exec",
        4301,
        "/bin/sh",
        vec![kv_str("process.command_line", "/bin/sh -c id")],
    );
    t.kernel_span(
        &shell,
        "file.open",
        common::AGENT_PID,
        "/work/.venv/bin/python3",
        vec![kv_str("file.path", "/etc/shadow")],
    );
    t.kernel_span(
        &root,
        "file.open",
        common::AGENT_PID,
        "/work/.venv/bin/python3",
        vec![kv_str("file.path", "/tmp/runbom-agent/data-other/x")],
    );
    t.app_span(
        &root,
        "SELECT payroll",
        SpanKind::Client,
        vec![
            kv_str("db.system.name", "postgresql"),
            kv_str("db.namespace", "payroll"),
            kv_str("server.address", "10.1.2.3"),
            kv_int("server.port", 5432),
        ],
    );
    let out = judged(&bom, &mut PidMap::default(), t);
    assert_eq!(flags_of(&out, "execute_tool shell"), ["undeclared_tool"]);
    assert_eq!(flags_of(&out, "process.exec"), ["undeclared_exec"]);
    let files: Vec<_> = out
        .iter()
        .filter(|(n, _, _)| n == "file.open")
        .map(|(_, f, _)| f.clone())
        .collect();
    assert_eq!(
        files,
        [
            vec!["undeclared_file".to_owned()],
            vec!["undeclared_file".to_owned()]
        ],
        "a path prefix is a directory, not a string prefix"
    );
    assert_eq!(flags_of(&out, "SELECT payroll"), ["undeclared_data_source"]);
}

/// A data source declared as a directory (`file:///tmp/runbom-agent/data/`) holds the directory
/// itself: a server opens it to create a file in it.
#[test]
fn a_declared_directory_holds_itself() {
    let bom = common::bom();
    let mut t = common::Trace::new(22);
    let root = t.root("p");
    for path in [
        "/tmp/runbom-agent/data",
        "/tmp/runbom-agent/data/tickets/T-1.md",
    ] {
        t.kernel_span(
            &root,
            "file.open",
            common::AGENT_PID,
            "/work/.venv/bin/python3",
            vec![kv_str("file.path", path)],
        );
    }
    let out = judged(&bom, &mut PidMap::default(), t);
    let opens: Vec<_> = out.iter().filter(|(n, _, _)| n == "file.open").collect();
    assert_eq!(opens.len(), 2);
    for (_, flags, r) in opens {
        assert!(flags.is_empty(), "{out:?}");
        assert_eq!(r.as_deref(), Some("data:ticket-notes"));
    }
}

/// The reference BOM and a second agent, `agent:billing` (matched by `billing_match`), which
/// alone may read `data:invoices` (`/srv/invoices/`).
fn with_billing_agent(billing_match: &str) -> DeclaredBom {
    let mut doc: serde_json::Value = serde_json::from_str(common::BOM).unwrap();
    let components = doc["components"].as_array_mut().unwrap();
    components.push(serde_json::json!({
        "type": "application", "bom-ref": "agent:billing", "name": "billing-agent",
        "properties": [{"name": "runbom:match", "value": billing_match}]}));
    components.push(serde_json::json!({
        "type": "data", "bom-ref": "data:invoices", "name": "invoices",
        "data": [{"type": "dataset", "contents": {"url": "file:///srv/invoices/"}}]}));
    doc["dependencies"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"ref": "agent:billing", "dependsOn": ["data:invoices"]}));
    DeclaredBom::parse(&doc.to_string(), "two-agents.json").unwrap()
}

/// The open of an invoice under `parent`, by the agent's process.
fn open_invoice(t: &mut common::Trace, parent: &[u8]) {
    t.kernel_span(
        parent,
        "file.open",
        common::AGENT_PID,
        "/work/.venv/bin/python3",
        vec![kv_str("file.path", "/srv/invoices/2026.csv")],
    );
}

#[test]
fn declared_elsewhere_but_not_for_this_agent_is_drift() {
    let bom = with_billing_agent("service.name=billing-*");
    let mut t = common::Trace::new(22);
    let root = t.root("p");
    open_invoice(&mut t, &root);
    let out = judged(&bom, &mut PidMap::default(), t);
    assert_eq!(
        flags_of(&out, "file.open"),
        ["undeclared_data_source"],
        "the billing agent's data, read by the support agent"
    );
}

#[test]
fn a_clients_span_names_an_agent_by_its_name_only() {
    // The billing agent is matched on `k8s.namespace.name`, which `k8sattributes` checks on
    // the resource. A client whose resource is no declared agent's writes it on a span of its
    // own: that span is no agent's, and billing's data is not its to read.
    let bom = with_billing_agent("k8s.namespace.name=billing");
    let mut t = common::Trace::new(23);
    let root = t.app_span(
        &[],
        "work",
        SpanKind::Internal,
        vec![kv_str("k8s.namespace.name", "billing")],
    );
    open_invoice(&mut t, &root);
    let mut req = t.request();
    let resource = req.resource_spans[0].resource.as_mut().unwrap();
    resource.attributes[0] = kv_str("service.name", "batch-job");
    let out = judged_request(&bom, &mut PidMap::default(), req);
    let (_, flags, component) = out.iter().find(|(n, _, _)| n == "file.open").unwrap();
    assert!(flags.is_empty(), "{out:?}");
    assert_eq!(component, &None, "judged as no agent's: {out:?}");
}

#[test]
fn dns_names_cidrs_and_child_processes() {
    let mut doc: serde_json::Value = serde_json::from_str(common::BOM).unwrap();
    doc["services"][0]["endpoints"] =
        serde_json::json!(["https://api.openai.com/v1", "10.20.0.0/16"]);
    let bom = DeclaredBom::parse(&doc.to_string(), "dns.json").unwrap();
    let mut pids = PidMap::default();
    let mut t = common::Trace::new(23);
    let root = t.root("p");
    let chat = t.app_span(
        &root,
        "chat gpt-4o-mini",
        SpanKind::Client,
        vec![
            kv_str("gen_ai.operation.name", "chat"),
            kv_str("gen_ai.request.model", "gpt-4o-mini"),
        ],
    );
    // The process asked for the name, then connected to an address: the name decides.
    t.kernel_span(
        &chat,
        "dns.query",
        common::AGENT_PID,
        "/work/.venv/bin/python3",
        vec![kv_str("dns.question.name", "api.openai.com")],
    );
    t.kernel_span(
        &chat,
        "net.connect",
        common::AGENT_PID,
        "/work/.venv/bin/python3",
        vec![
            kv_str("server.address", "162.159.140.245"),
            kv_int("server.port", 443),
        ],
    );
    t.kernel_span(
        &chat,
        "net.connect",
        common::AGENT_PID,
        "/work/.venv/bin/python3",
        vec![
            kv_str("server.address", "10.20.3.4"),
            kv_int("server.port", 8443),
        ],
    );
    let out = judged(&bom, &mut pids, t);
    let connects: Vec<_> = out.iter().filter(|(n, _, _)| n == "net.connect").collect();
    assert!(
        connects
            .iter()
            .all(|(_, f, r)| f.is_empty() && r.as_deref() == Some("service:openai-api")),
        "{connects:?}"
    );

    // A later kernel span of a grandchild process, in a trace of its own (not correlated): it
    // still runs under the agent, through the parent chain.
    let mut t = common::Trace::new(24);
    t.kernel_span(&[], "process.exec", 4300, "/usr/bin/wc", vec![]);
    let _ = judged(&bom, &mut pids, t);
    let mut t = common::Trace::new(25);
    let mut span_attrs = vec![
        kv_str("server.address", "203.0.113.9"),
        kv_int("server.port", 4444),
    ];
    span_attrs.push(kv_int("process.parent_pid", 4300));
    t.kernel_span(&[], "net.connect", 4301, "/usr/bin/nc", span_attrs);
    let mut its = items(t);
    // This span's own resource is not the agent's.
    for i in &mut its {
        i.resource = std::sync::Arc::new(runbom_aibom::judge::ResourceHeader::default());
    }
    judge(&bom, &JudgeSettings::default(), &mut pids, &mut its);
    let a = &its[0].span.attributes;
    assert_eq!(
        attr(a, "aibom.agent.ref"),
        Some("agent:support-agent"),
        "{a:?}"
    );
    assert_eq!(kinds(a), ["undeclared_endpoint"]);
}

#[test]
fn outside_declared_workloads_only_ai_is_marked_and_nothing_is_flagged() {
    let bom = common::bom();
    let mut t = common::Trace::new(26);
    t.kernel_span(&[], "process.exec", 777, "/usr/local/bin/ollama", vec![]);
    t.kernel_span(
        &[],
        "http.request",
        778,
        "/usr/bin/python3",
        vec![
            kv_str("url.full", "https://api.anthropic.com/v1/messages"),
            kv_str("http.request.method", "POST"),
        ],
    );
    t.kernel_span(
        &[],
        "net.connect",
        779,
        "/usr/bin/curl",
        vec![
            kv_str("server.address", "198.51.100.1"),
            kv_int("server.port", 80),
        ],
    );
    let mut its = items(t);
    for i in &mut its {
        i.resource = std::sync::Arc::new(runbom_aibom::judge::ResourceHeader::default());
    }
    let j = judge(
        &bom,
        &JudgeSettings::default(),
        &mut PidMap::default(),
        &mut its,
    );
    assert!(j.findings.is_empty());
    let declared: Vec<Option<&str>> = its
        .iter()
        .map(|i| {
            i.span
                .attributes
                .iter()
                .find(|kv| kv.key == "aibom.declared")
                .map(|kv| match &kv.value {
                    Some(AnyValue {
                        value: Some(Value::BoolValue(false)),
                    }) => "false",
                    _ => "true",
                })
        })
        .collect();
    assert_eq!(
        declared,
        [Some("false"), Some("false"), None],
        "shadow AI is marked; curl is inventoried only"
    );
    assert!(its.iter().all(|i| kinds(&i.span.attributes).is_empty()));
}

#[test]
fn openinference_and_openllmetry_agents_are_judged_too() {
    let mut doc: serde_json::Value = serde_json::from_str(common::BOM).unwrap();
    doc["metadata"]["component"]["properties"] = serde_json::json!([]);
    let bom = DeclaredBom::parse(&doc.to_string(), "names.json").unwrap();
    let mut t = common::Trace::new(27);
    let root = t.app_span(
        &[],
        "agent",
        SpanKind::Internal,
        vec![
            kv_str("openinference.span.kind", "AGENT"),
            kv_str("agent.name", "support-agent"),
        ],
    );
    t.app_span(
        &root,
        "search",
        SpanKind::Internal,
        vec![
            kv_str("openinference.span.kind", "TOOL"),
            kv_str("tool.name", "web_search"),
        ],
    );
    t.app_span(
        &root,
        "wf",
        SpanKind::Internal,
        vec![
            kv_str("traceloop.span.kind", "tool"),
            kv_str("traceloop.entity.name", "read_file"),
        ],
    );
    t.app_span(
        &root,
        "llm",
        SpanKind::Client,
        vec![
            kv_str("openinference.span.kind", "LLM"),
            kv_str("llm.model_name", "gpt-4o-mini-2024-07-18"),
            kv_str("llm.provider", "openai"),
        ],
    );
    let out = judged(&bom, &mut PidMap::default(), t);
    assert_eq!(flags_of(&out, "search"), ["undeclared_tool"]);
    assert!(flags_of(&out, "wf").is_empty());
    assert_eq!(
        out.iter()
            .find(|(n, _, _)| n == "llm")
            .unwrap()
            .2
            .as_deref(),
        Some("model:gpt-4o-mini"),
        "{out:?}"
    );
    assert!(
        flags_of(&out, "llm").is_empty(),
        "a dated snapshot of a declared model: {out:?}"
    );
}

#[test]
fn mcp_servers_and_their_tools() {
    let bom = common::bom_with_mcp_server();
    let fs = common::MCP_FS_SERVER;
    let mut t = common::Trace::new(40);
    let root = t.root("p");
    t.mcp_call(&root, "read_text_file", fs);
    let out = judged(&bom, &mut PidMap::default(), t);
    let (_, flags, r) = out
        .iter()
        .find(|(n, _, _)| n == "mcp.client")
        .expect("mcp span");
    assert!(flags.is_empty(), "{out:?}");
    assert_eq!(r.as_deref(), Some("mcp:filesystem:read_text_file"));

    // A tool of the declared server that the BOM does not declare.
    let mut t = common::Trace::new(41);
    let root = t.root("p");
    t.mcp_call(&root, "write_file", fs);
    let out = judged(&bom, &mut PidMap::default(), t);
    assert_eq!(flags_of(&out, "mcp.client"), ["undeclared_mcp_tool"]);

    // A server the BOM does not declare at all.
    let mut t = common::Trace::new(42);
    let root = t.root("p");
    t.mcp_call(&root, "git_log", "uvx mcp-server-git --repository /src");
    let out = judged(&bom, &mut PidMap::default(), t);
    assert_eq!(flags_of(&out, "mcp.client"), ["undeclared_mcp_server"]);

    // The reference BOM (no MCP server declared): the filesystem server is undeclared too.
    let mut t = common::Trace::new(43);
    let root = t.root("p");
    t.mcp_call(&root, "read_text_file", fs);
    let out = judged(&common::bom(), &mut PidMap::default(), t);
    assert_eq!(flags_of(&out, "mcp.client"), ["undeclared_mcp_server"]);
}

/// An agent's tool that is an undeclared MCP tool (`execute_tool write_file` with its
/// `tools/call write_file` under it) raises one finding, the MCP call's; the tool span is still
/// drifted.
#[test]
fn an_undeclared_mcp_tool_called_as_an_agent_tool_is_one_finding() {
    let bom = common::bom_with_mcp_server();
    let trace = |seed: u8, tool: &str| {
        let mut t = common::Trace::new(seed);
        let root = t.root("p");
        let span = t.tool(&root, tool, r#"{"path": "/data/x"}"#);
        t.mcp_call(&span, tool, common::MCP_FS_SERVER);
        t
    };
    let judged_alone = |t| {
        let mut its = items(t);
        judge(
            &bom,
            &JudgeSettings::default(),
            &mut PidMap::default(),
            &mut its,
        )
    };
    let j = judged_alone(trace(44, "write_file"));
    let f = &j.findings;
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(j.kinds(&f[0]), ["undeclared_mcp_tool"]);
    assert_eq!(j.subject(&f[0]), "write_file");
    let out = judged(&bom, &mut PidMap::default(), trace(44, "write_file"));
    assert_eq!(
        flags_of(&out, "execute_tool write_file"),
        ["undeclared_tool"]
    );

    // A declared MCP tool used as an agent tool raises nothing.
    let f = judged_alone(trace(45, "read_text_file")).findings;
    assert!(f.is_empty(), "{f:?}");
}

#[test]
fn mcp_servers_reached_over_http_are_matched_by_endpoint() {
    let bom = common::bom_with_service(
        &serde_json::json!({
            "bom-ref": "mcp:helpdesk", "name": "helpdesk",
            "endpoints": ["http://127.0.0.1:18082/mcp"],
            "properties": [{"name": "runbom:kind", "value": "mcp-server"}],
            "services": [{"bom-ref": "mcp:helpdesk:add_ticket_comment", "name": "add_ticket_comment",
                          "properties": [{"name": "runbom:kind", "value": "tool"}]}]
        }),
        &["mcp:helpdesk", "mcp:helpdesk:add_ticket_comment"],
    );
    let call = |seed: u8, tool: &str, url: &str| {
        let mut t = common::Trace::new(seed);
        let root = t.root("p");
        t.kernel_span(
            &root,
            "mcp.client",
            common::AGENT_PID,
            "/work/.venv/bin/python3",
            vec![
                kv_str("mcp.method.name", "tools/call"),
                kv_str("gen_ai.tool.name", tool),
                kv_str("url.full", url),
            ],
        );
        judged(&bom, &mut PidMap::default(), t)
    };
    let out = call(46, "add_ticket_comment", "http://127.0.0.1:18082/mcp");
    let (_, flags, r) = out
        .iter()
        .find(|(n, _, _)| n == "mcp.client")
        .expect("mcp span");
    assert!(flags.is_empty(), "{out:?}");
    assert_eq!(r.as_deref(), Some("mcp:helpdesk:add_ticket_comment"));
    let out = call(47, "delete_ticket", "http://127.0.0.1:18082/mcp");
    assert_eq!(flags_of(&out, "mcp.client"), ["undeclared_mcp_tool"]);
    let out = call(48, "add_ticket_comment", "https://mcp.example.com/mcp");
    assert_eq!(flags_of(&out, "mcp.client"), ["undeclared_mcp_server"]);
}

#[test]
fn mcp_server_declarations_are_checked() {
    let with = |props: &str, extra: &str| {
        let text = common::BOM.replacen(
            "\"services\": [",
            &format!("\"services\": [{{\"name\": \"m\", \"properties\": [{props}]{extra}}},"),
            1,
        );
        DeclaredBom::parse(&text, "bom.cdx.json").map(|_| ())
    };
    let err = with(r#"{"name": "runbom:kind", "value": "mcp-server"}"#, "")
        .expect_err("an mcp-server needs a command or endpoints");
    assert!(err.to_string().contains("runbom:exec"), "{err}");
    let err = with(r#"{"name": "runbom:exec", "value": "*x*"}"#, "")
        .expect_err("runbom:exec on a plain service");
    assert!(err.to_string().contains("mcp-server"), "{err}");
    with(
        r#"{"name": "runbom:kind", "value": "mcp-server"}"#,
        r#", "endpoints": ["http://127.0.0.1:8931/mcp"]"#,
    )
    .expect("an mcp-server reached at an endpoint");
}
