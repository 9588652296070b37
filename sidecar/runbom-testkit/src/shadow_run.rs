//! Kernel events of a program that sends no traces, as the correlation logs them (no
//! placement): an SDK-less `openai` client's chat completions, a file read and an
//! exfiltrating POST (shadow AI).

use std::{net::SocketAddr, sync::Arc};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use runbom_event::{Capture, Detail, HttpRequest, KernelEvent, ProcessInfo};
use runbom_otlp::{ConvertOptions, convert};

/// A process of user 1000 running `exe shadow_client.py`.
#[must_use]
pub fn process(pid: u32, parent: u32, exe: &str) -> Arc<ProcessInfo> {
    Arc::new(ProcessInfo {
        pid,
        ppid: parent,
        uid: 1000,
        exe: exe.into(),
        command_line: format!("{exe} shadow_client.py"),
        ..ProcessInfo::default()
    })
}

#[must_use]
pub fn event(p: &Arc<ProcessInfo>, at: u64, detail: Detail) -> KernelEvent {
    KernelEvent {
        pid: p.pid,
        tid: p.pid,
        cgroup_id: 0,
        start_ns: at,
        end_ns: at + 1_000,
        process: p.clone(),
        detail,
    }
}

#[must_use]
pub fn request(port: u16, method: &str, target: &str, model: Option<&str>) -> Detail {
    let peer: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
    Detail::HttpRequest(Box::new(HttpRequest {
        capture: if model.is_some() {
            Capture::Openssl
        } else {
            Capture::Socket
        },
        method: method.into(),
        host: Some(format!("127.0.0.1:{port}")),
        target: target.into(),
        peer: Some(peer),
        traceparent: None,
        user_agent: Some("OpenAI/Python 2.0".into()),
        body_size: Some(512),
        model: model.map(str::to_owned),
        status: Some(200),
        version: runbom_event::HttpVersion::Http1,
        grpc: None,
        genai: None,
        fd: None,
    }))
}

#[must_use]
pub fn connect(port: u16) -> Detail {
    Detail::Connect {
        remote: format!("127.0.0.1:{port}").parse().expect("address"),
        transport: None,
        error: None,
        local: None,
        fd: None,
    }
}

/// What an SDK-less `openai` client does: two chat completions, a file read, an exfiltrating
/// POST; as the correlation logs it (no placement).
#[must_use]
pub fn shadow_run(p: &Arc<ProcessInfo>, t: u64) -> ExportLogsServiceRequest {
    let opts = ConvertOptions {
        host_name: "node".into(),
        uncorrelated_spans: false,
    };
    convert(&shadow_run_events(p, t), &[], &opts).logs
}

/// The events of [`shadow_run`].
#[must_use]
pub fn shadow_run_events(p: &Arc<ProcessInfo>, t: u64) -> Vec<KernelEvent> {
    let ms = 1_000_000;
    vec![
        event(p, t, connect(18443)),
        event(
            p,
            t + ms,
            request(18443, "POST", "/v1/chat/completions", Some("gpt-4o-mini")),
        ),
        event(
            p,
            t + 2 * ms,
            Detail::FileOpen {
                path: "/tmp/runbom-agent/data/customers.csv".into(),
                flags: 0,
                error: None,
            },
        ),
        event(
            p,
            t + 3 * ms,
            request(18443, "POST", "/v1/chat/completions", Some("gpt-4o-mini")),
        ),
        event(p, t + 4 * ms, connect(18099)),
        event(p, t + 5 * ms, request(18099, "POST", "/upload", None)),
    ]
}
