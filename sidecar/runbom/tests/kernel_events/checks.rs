//! What the sink received, checked against the workload: the envelope (transport, compression,
//! resource, scope), each expected span, their order, the log records, exits and traces.

use super::*;

/// Transport, compression, resource and scope of everything received.
pub(super) fn check_envelope(exporter: Exporter, records: &[Value], items: &[Item], context: &str) {
    assert!(
        records.iter().any(|r| r["signal"] == "traces")
            && records.iter().any(|r| r["signal"] == "logs"),
        "the receiver got no traces or no logs ({} requests)\n{context}",
        records.len()
    );
    let host = hostname();
    for item in items {
        match exporter {
            Exporter::Grpc => assert_eq!(item.transport, "grpc", "{}", item.summary()),
            Exporter::Http => {
                assert_eq!(item.transport, "http", "{}", item.summary());
                assert_eq!(
                    item.compression, "gzip",
                    "otlphttp with `compression: gzip` sent an uncompressed request"
                );
            }
        }
        assert_eq!(item.scope, "runbom.kernel", "scope of {}", item.summary());
        let service = item.resource.get("service.name").and_then(Value::as_str);
        assert!(
            service.is_some_and(|s| !s.is_empty()),
            "resource without service.name: {:?} ({})",
            item.resource,
            item.summary()
        );
        assert_eq!(
            item.resource.get("host.name").and_then(Value::as_str),
            Some(host.as_str()),
            "resource host.name of {}",
            item.summary()
        );
        assert!(
            !item.event().is_empty(),
            "{} has no runbom.event attribute",
            item.summary()
        );
        if item.signal == "span" {
            assert_ne!(
                item.event(),
                "process.exit",
                "process.exit must be a log only, never a span"
            );
        }
    }
}

pub(super) fn check_workload(
    w: &Workload,
    dns_port: u16,
    runbom_pid: u32,
    items: &[Item],
    context: &str,
) {
    let ours = |i: &&Item| i.pid() == Some(w.pid) || i.pid() == Some(w.child_pid);
    let spans: Vec<&Item> = items
        .iter()
        .filter(|i| i.signal == "span")
        .filter(ours)
        .collect();
    let logs: Vec<&Item> = items
        .iter()
        .filter(|i| i.signal == "log")
        .filter(ours)
        .collect();
    let context = format!(
        "{context}\nthe workload's spans:\n{}the workload's logs:\n{}",
        summaries(&spans),
        summaries(&logs)
    );

    // runbom never reports itself.
    let runbom_pid = i64::from(runbom_pid);
    assert!(
        !items.iter().any(|i| i.pid() == Some(runbom_pid)),
        "runbom exported its own activity\n{context}"
    );
    // The workload started exactly one child, /bin/echo.
    let children: BTreeSet<i64> = items
        .iter()
        .filter(|i| i.attr_int("process.parent_pid") == Some(w.pid))
        .filter_map(Item::pid)
        .collect();
    assert_eq!(
        children,
        BTreeSet::from([w.child_pid]),
        "events name other children of the workload\n{context}"
    );
    // Only this test's watched directory passes the file filter, and only the workload opened
    // files in it; only the workload sent to this test's DNS port.
    let all_opens: Vec<&Item> = items.iter().filter(|i| i.event() == "file.open").collect();
    let all_dns: Vec<&Item> = items.iter().filter(|i| i.event() == "dns.query").collect();
    assert!(
        all_opens.iter().chain(&all_dns).all(ours),
        "file.open / dns.query events of other processes got through the filters:\n{}\n{context}",
        summaries(&all_opens) + &summaries(&all_dns)
    );

    // Exactly the expected spans.
    let expected = expected_spans(w, dns_port);
    let mut want: Vec<(i64, &str)> = expected.iter().map(|e| (e.pid, e.name.as_str())).collect();
    let mut got: Vec<(i64, &str)> = spans
        .iter()
        .map(|s| (s.pid().unwrap_or(0), s.name.as_str()))
        .collect();
    want.sort_unstable();
    got.sort_unstable();
    assert_eq!(got, want, "the workload's spans differ\n{context}");

    for e in &expected {
        let span = spans
            .iter()
            .find(|s| s.pid() == Some(e.pid) && s.name == e.name)
            .expect("matched above");
        check_span(span, e, w, &context);
    }
    check_order(&spans, w, &context);
    check_logs(&spans, &logs, w, &context);
    check_exits(&spans, &logs, w, &context);
    check_traces(&spans, w, &context);
}

fn check_span(span: &Item, e: &Expect, w: &Workload, context: &str) {
    let what = span.summary();
    assert_eq!(span.kind, e.kind, "kind of {what}\n{context}");
    for (key, want) in &e.attrs {
        assert_eq!(
            span.attr(key),
            Some(want),
            "attribute {key} of {what}: {:?}\n{context}",
            span.attrs
        );
    }
    for key in e.absent {
        assert_eq!(span.attr(key), None, "attribute {key} of {what}\n{context}");
    }
    if let Some(errno) = e.error {
        assert_eq!(
            span.attr_str("error.type"),
            Some(errno),
            "{what}\n{context}"
        );
        assert_eq!(
            span.status_code, "STATUS_CODE_ERROR",
            "a failed syscall's span needs status ERROR: {what}\n{context}"
        );
    } else {
        assert_eq!(span.attr("error.type"), None, "{what}\n{context}");
        assert_ne!(span.status_code, "STATUS_CODE_ERROR", "{what}\n{context}");
    }
    // Attributes every kernel span carries.
    assert!(span.attr_int("thread.id").is_some(), "thread.id of {what}");
    assert!(
        span.attr_int("process.user.id").is_some(),
        "process.user.id of {what}"
    );
    let (exe, service) = if span.pid() == Some(w.child_pid) {
        ("/bin/echo", "echo")
    } else {
        (w.executable.as_str(), exe_name(&w.executable))
    };
    assert_eq!(
        span.attr_str("process.executable.path"),
        Some(exe),
        "process.executable.path of {what}\n{context}"
    );
    assert_eq!(
        span.resource.get("service.name").and_then(Value::as_str),
        Some(service),
        "service.name of {what}\n{context}"
    );
    assert_eq!(
        span.resource.get("process.pid").and_then(Value::as_i64),
        span.pid(),
        "resource process.pid of {what}\n{context}"
    );
    if span.pid() == Some(w.pid) {
        let cmd = span.attr_str("process.command_line").unwrap_or("");
        assert!(
            cmd.contains("workload.py") && cmd.contains("--dns-port"),
            "process.command_line of {what}: {cmd:?}\n{context}"
        );
        // The workload is this test's child: runbom followed the fork.
        assert_eq!(
            span.attr_int("process.parent_pid"),
            Some(i64::from(std::process::id())),
            "process.parent_pid of {what}\n{context}"
        );
    }
    // Span timing: Unix time, inside the workload's run (with slack for clock conversion).
    let slack = 2_000_000_000;
    assert!(
        span.start_ns >= w.started_ns - slack
            && span.end_ns <= w.ended_ns + slack
            && span.start_ns <= span.end_ns,
        "{what}: start {} / end {} not within the workload's run {}..{}\n{context}",
        span.start_ns,
        span.end_ns,
        w.started_ns,
        w.ended_ns
    );
    assert_eq!(
        span.trace_id.len(),
        24,
        "trace_id (base64 of 16 bytes) of {what}"
    );
    assert_eq!(
        span.span_id.len(),
        12,
        "span_id (base64 of 8 bytes) of {what}"
    );
}

fn exe_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The workload's steps happen one after the other; their spans' start times must say so.
fn check_order(spans: &[&Item], w: &Workload, context: &str) {
    let start = |pred: &dyn Fn(&Item) -> bool, what: &str| {
        spans
            .iter()
            .find(|s| pred(s))
            .unwrap_or_else(|| panic!("no span for {what}"))
            .start_ns
    };
    let steps = [
        (
            "exec of the workload",
            start(
                &|s| s.pid() == Some(w.pid) && s.event() == "process.exec",
                "exec",
            ),
        ),
        (
            "exec of /bin/echo",
            start(&|s| s.pid() == Some(w.child_pid), "echo"),
        ),
        (
            "connect ok",
            start(
                &|s| s.attr_int("server.port") == Some(w.tcp_ok),
                "connect ok",
            ),
        ),
        (
            "connect refused",
            start(
                &|s| s.attr_int("server.port") == Some(w.tcp_refused),
                "refused",
            ),
        ),
        (
            "connect ipv6",
            start(&|s| s.attr_int("server.port") == Some(w.tcp6_ok), "v6"),
        ),
        (
            "open watched",
            start(&|s| s.attr_str("file.path") == Some(&w.watched), "open"),
        ),
        (
            "open missing",
            start(&|s| s.attr_str("file.path") == Some(&w.missing), "missing"),
        ),
        ("dns query", start(&|s| s.event() == "dns.query", "dns")),
    ];
    for pair in steps.windows(2) {
        assert!(
            pair[0].1 < pair[1].1,
            "span of `{}` ({}) does not start before `{}` ({})\n{context}",
            pair[0].0,
            pair[0].1,
            pair[1].0,
            pair[1].1
        );
    }
}

/// Every event is also a log record pointing at its span; exits are logs only.
fn check_logs(spans: &[&Item], logs: &[&Item], w: &Workload, context: &str) {
    assert_eq!(
        logs.len(),
        spans.len() + 2,
        "expected a log per span plus two process.exit logs\n{context}"
    );
    for span in spans {
        let matching: Vec<&&Item> = logs.iter().filter(|l| l.span_id == span.span_id).collect();
        assert_eq!(
            matching.len(),
            1,
            "span {} has {} log records with its span_id\n{context}",
            span.summary(),
            matching.len()
        );
        let log = matching[0];
        assert_eq!(
            log.trace_id,
            span.trace_id,
            "trace_id of the log of {}",
            span.summary()
        );
        assert_eq!(
            log.name,
            span.event(),
            "event_name of the log of {}",
            span.summary()
        );
        assert_eq!(
            log.attr_str("event.name"),
            Some(span.event()),
            "event.name attribute of the log of {}",
            span.summary()
        );
        let mut log_attrs = log.attrs.clone();
        log_attrs.remove("event.name");
        assert_eq!(
            log_attrs,
            span.attrs,
            "the log of {} carries different attributes\n{context}",
            span.summary()
        );
        assert_eq!(
            log.resource,
            span.resource,
            "resource of the log of {}",
            span.summary()
        );
        assert_eq!(
            log.start_ns,
            span.start_ns,
            "time of the log of {}",
            span.summary()
        );
        assert!(
            !log.body.is_empty(),
            "the log of {} has no body",
            span.summary()
        );
    }
    let exec_body = logs
        .iter()
        .find(|l| l.pid() == Some(w.child_pid) && l.name == "process.exec")
        .map(|l| l.body.as_str())
        .unwrap_or_default();
    assert!(
        exec_body.contains("--token=[REDACTED]"),
        "exec log body of /bin/echo: {exec_body:?}\n{context}"
    );
}

/// One `process.exit` log per process, with its code, after everything else it did.
fn check_exits(spans: &[&Item], logs: &[&Item], w: &Workload, context: &str) {
    for (pid, code) in [(w.pid, i64::from(WORKLOAD_EXIT_CODE)), (w.child_pid, 0)] {
        let exits: Vec<&&Item> = logs
            .iter()
            .filter(|l| l.pid() == Some(pid) && l.name == "process.exit")
            .collect();
        assert_eq!(exits.len(), 1, "process.exit logs of pid {pid}\n{context}");
        let exit = exits[0];
        assert_eq!(exit.event(), "process.exit");
        assert_eq!(
            exit.attr_int("process.exit.code"),
            Some(code),
            "process.exit.code of pid {pid}: {:?}\n{context}",
            exit.attrs
        );
        assert!(
            exit.span_id.is_empty(),
            "process.exit log of pid {pid} points at a span"
        );
        // The exit comes after everything else the process did.
        let last = spans
            .iter()
            .filter(|s| s.pid() == Some(pid))
            .map(|s| s.end_ns)
            .max()
            .unwrap_or(0);
        assert!(
            exit.start_ns >= last,
            "process.exit of pid {pid} at {} precedes its last span's end {last}\n{context}",
            exit.start_ns
        );
    }
}

/// Uncorrelated events of one program run share one trace; the child has its own.
fn check_traces(spans: &[&Item], w: &Workload, context: &str) {
    let traces = |pid: i64| -> BTreeSet<&str> {
        spans
            .iter()
            .filter(|s| s.pid() == Some(pid))
            .map(|s| s.trace_id.as_str())
            .collect()
    };
    let (parent, child) = (traces(w.pid), traces(w.child_pid));
    assert_eq!(
        parent.len(),
        1,
        "the workload's spans span traces {parent:?}\n{context}"
    );
    assert_eq!(child.len(), 1, "the child's spans span traces {child:?}");
    assert!(parent.is_disjoint(&child), "parent and child share a trace");
}
