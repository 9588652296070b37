//! The loader's tests: whole configurations, their sections and where errors point.

use std::time::Duration;

use crate::transport::tls::TlsVersion;

use super::{EMBEDDED_DEFAULT, assert_refused, model::Config, refusal, tls::ClientTlsConfig};
use crate::{
    SignalKind,
    exporter::{file::FileExporterConfig, network::Compression, otlp::OtlpExporterConfig},
    receiver::{ebpf::config::EbpfConfig, otlp::OtlpReceiverConfig},
};

#[test]
fn embedded_default_parses() {
    let c = Config::embedded().unwrap();
    assert!(c.exporter::<FileExporterConfig>("file").is_some());
    let signals: Vec<_> = c.pipelines().map(|(_, s, _)| s).collect();
    assert_eq!(
        signals,
        [SignalKind::Logs, SignalKind::Metrics, SignalKind::Traces]
    );
    let e = c
        .receiver::<EbpfConfig>("ebpf")
        .expect("ebpf receiver missing");
    assert!(e.uncorrelated_spans);
}

#[test]
fn unknown_key_names_its_path() {
    let text = EMBEDDED_DEFAULT.replace("    path: ./runbom-data", "    path: x\n    pth: y");
    let e = refusal(&text);
    assert!(
        e.starts_with("c.yaml at `exporters.file.pth`: unknown field `pth`"),
        "{e}"
    );
    let text = EMBEDDED_DEFAULT.replace("  ebpf: {}", "  ebpf:\n    file:\n      inclde: [/]");
    assert_refused(
        &text,
        "`receivers.ebpf.file.inclde`: unknown field `inclde`",
    );
}

#[test]
fn type_errors_name_their_path() {
    let text = EMBEDDED_DEFAULT.replace("  ebpf: {}", "  ebpf:\n    dns:\n      ports: [dns]");
    assert_refused(&text, "`receivers.ebpf.dns.ports[0]`");
    let text = EMBEDDED_DEFAULT.replace("  batch: {}", "  batch:\n    timeout: soon");
    assert_refused(&text, "`processors.batch.timeout`: invalid duration");
}

#[test]
fn pipelines_must_reference_defined_components() {
    let text = EMBEDDED_DEFAULT.replacen("exporters: [file]", "exporters: [otlp]", 1);
    assert_refused(
        &text,
        "`service.pipelines.traces.exporters[0]`: exporter `otlp` is not defined",
    );
    let text = EMBEDDED_DEFAULT.replace("receivers: [otlp]\n", "receivers: [ebpf]\n");
    assert_refused(&text, "the ebpf receiver produces traces and logs");
}

#[test]
fn env_substitution() {
    // SAFETY: tests in this module do not read this variable concurrently.
    unsafe { std::env::set_var("RUNBOM_TEST_ENDPOINT", "127.0.0.1:9999") };
    let text = EMBEDDED_DEFAULT.replace(
        "exporters:\n  file:",
        "exporters:\n  otlp:\n    endpoint: ${env:RUNBOM_TEST_ENDPOINT}\n  file:",
    );
    let c = Config::parse(&text, "c.yaml").unwrap();
    let o = &c
        .exporter::<OtlpExporterConfig>("otlp")
        .expect("otlp")
        .section;
    assert_eq!(o.endpoint, "127.0.0.1:9999");
    assert_eq!(o.compression, Compression::Gzip);
    let e = refusal("x: ${env:RUNBOM_TEST_UNSET_VAR}");
    assert!(e.contains("`RUNBOM_TEST_UNSET_VAR`"), "{e}");
}

#[test]
fn collector_sections_are_accepted_as_they_are() {
    let text = "
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:14317
        max_recv_msg_size_mib: 8
        include_metadata: false
        keepalive:
          server_parameters: { max_connection_idle: 5m, max_connection_age: 1h, max_connection_age_grace: 30s }
      http:
        endpoint: 127.0.0.1:14318
        idle_timeout: 90s
processors:
  memory_limiter:
    check_interval: 1s
    limit_mib: 512
    spike_limit_mib: 128
  batch:
    send_batch_size: 1000
    timeout: 5s
exporters:
  otlp/tempo:
    endpoint: tempo:4317
    tls:
      insecure: true
    headers:
      x-scope-orgid: team-a
    compression: gzip
    timeout: 30s
    retry_on_failure:
      enabled: true
      initial_interval: 1s
      max_interval: 10s
      max_elapsed_time: 60s
    sending_queue:
      enabled: true
      num_consumers: 4
      queue_size: 100
  nop: {}
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [memory_limiter, batch]
      exporters: [otlp/tempo]
    metrics/all:
      receivers: [otlp]
      exporters: [nop]
";
    let c = Config::parse(text, "collector.yaml").unwrap();
    let o = &c
        .exporter::<OtlpExporterConfig>("otlp/tempo")
        .expect("otlp/tempo")
        .section;
    assert_eq!(o.sending_queue.queue_size, 100);
    assert_eq!(o.sending_queue.num_consumers, 4);
    assert_eq!(o.headers["x-scope-orgid"], "team-a");
    assert!(o.tls.as_ref().is_some_and(|t| t.insecure));
    assert_refused(
        &text.replace("num_consumers: 4", "num_consumers: 0"),
        "`exporters.otlp/tempo.sending_queue.num_consumers`: must be at least 1",
    );
}

/// The Collector's `configtls` sections: server keys under a receiver, client keys under
/// an exporter, each checked where it is.
#[test]
fn tls_sections() {
    let text = "
receivers:
  otlp:
    protocols:
      grpc:
        tls:
          cert_file: /etc/runbom/server.pem
          key_file: /etc/runbom/server-key.pem
          client_ca_file: /etc/runbom/clients.pem
          min_version: '1.3'
          reload_interval: 1h
      http:
        tls: { cert_file: /s.pem, key_file: /k.pem }
exporters:
  otlp:
    endpoint: tempo:4317
    tls:
      ca_file: /etc/ssl/tempo-ca.pem
      cert_file: /etc/runbom/client.pem
      key_file: /etc/runbom/client-key.pem
      server_name_override: tempo.internal
      insecure_skip_verify: false
      include_system_ca_certs_pool: true
      min_version: '1.2'
      max_version: '1.3'
  otlphttp:
    endpoint: https://collector:4318
service:
  pipelines:
    traces: { receivers: [otlp], exporters: [otlp, otlphttp] }
";
    let c = Config::parse(text, "c.yaml").unwrap();
    let o = c
        .receiver::<OtlpReceiverConfig>("otlp")
        .expect("otlp receiver");
    let grpc = o.protocols.grpc.as_ref().and_then(|s| s.tls.as_ref());
    assert_eq!(grpc.and_then(|t| t.min_version), Some(TlsVersion::V1_3));
    assert_eq!(
        grpc.and_then(|t| t.reload_interval),
        Some(Duration::from_hours(1))
    );
    let n = &c
        .exporter::<OtlpExporterConfig>("otlp")
        .expect("otlp exporter")
        .section;
    let tls = n
        .tls
        .as_ref()
        .map(ClientTlsConfig::settings)
        .unwrap_or_default();
    assert_eq!(tls.server_name_override.as_deref(), Some("tempo.internal"));
    assert!(tls.include_system_ca_certs_pool && !tls.insecure);

    for (from, to, error) in [
        (
            "          client_ca_file: /etc/runbom/clients.pem\n",
            "          insecure: true\n",
            "`receivers.otlp.protocols.grpc.tls.insecure`: unknown field `insecure`",
        ),
        (
            "        tls: { cert_file: /s.pem, key_file: /k.pem }",
            "        tls: { cert_file: /s.pem }",
            "`receivers.otlp.protocols.http.tls`: a receiver's TLS needs both `cert_file` and `key_file`",
        ),
        (
            "min_version: '1.3'",
            "min_version: '1.4'",
            "`receivers.otlp.protocols.grpc.tls.min_version`: \"1.4\" is not a TLS version",
        ),
        (
            "      key_file: /etc/runbom/client-key.pem\n",
            "",
            "`exporters.otlp.tls`: set both `cert_file` and `key_file`",
        ),
        (
            "      min_version: '1.2'\n      max_version: '1.3'",
            "      min_version: '1.0'\n      max_version: '1.1'",
            "`exporters.otlp.tls`: max_version 1.1 is older than TLS 1.2",
        ),
        (
            "      min_version: '1.2'\n      max_version: '1.3'",
            "      min_version: '1.3'\n      max_version: '1.2'",
            "`exporters.otlp.tls`: min_version 1.3 is greater than max_version 1.2",
        ),
        (
            "      server_name_override: tempo.internal",
            "      client_ca_file: /x.pem",
            "`exporters.otlp.tls.client_ca_file`: unknown field `client_ca_file`",
        ),
    ] {
        assert!(text.contains(from), "{from}");
        let e = refusal(&text.replacen(from, to, 1));
        assert!(e.contains(error), "{to:?}: {e}");
    }
}

/// Every `otlp` receiver key either does what the Collector's does or is refused with its path
/// and the reason (`traces_url_path`, `max_concurrent_streams`, `keepalive` and
/// `transport` used to be accepted and ignored).
#[test]
fn otlp_receiver_keys_that_runbom_cannot_honour_are_refused() {
    let refused = otlp_server_refused;
    refused(
        "grpc",
        "        max_recv_msg_size_mib: 0",
        "`receivers.otlp.protocols.grpc.max_recv_msg_size_mib`: must be at least 1",
    );
    refused(
        "http",
        "        endpoint: 127.0.0.1:70000",
        "`receivers.otlp.protocols.http.endpoint`: `127.0.0.1:70000`: the port must be a number from 1 to 65535",
    );
    refused(
        "grpc",
        "        endpoint: 127.0.0.1:0",
        "the port must be a number from 1 to 65535",
    );
    refused(
        "grpc",
        "        transport: unix",
        "`receivers.otlp.protocols.grpc.transport`: only `tcp` is supported, not `unix`",
    );
    refused(
        "http",
        "        traces_url_path: /otlp/traces",
        "`receivers.otlp.protocols.http.traces_url_path`: not supported: runbom serves `/v1/traces`",
    );
    refused(
        "http",
        "        max_concurrent_streams: 10",
        "`receivers.otlp.protocols.http.max_concurrent_streams`: a `grpc` setting",
    );
    refused(
        "grpc",
        "        max_concurrent_streams: 0",
        "`receivers.otlp.protocols.grpc.max_concurrent_streams`: must be at least 1",
    );
    refused(
        "grpc",
        "        keepalive:\n          enforcement_policy: { min_time: 0s }",
        "`receivers.otlp.protocols.grpc.keepalive.enforcement_policy.min_time`: must be more than 0",
    );
    refused(
        "grpc",
        "        keepalive:\n          enforcement_policy: { min_tme: 10s }",
        "`receivers.otlp.protocols.grpc.keepalive.enforcement_policy.min_tme`: unknown field",
    );
    refused(
        "http",
        "        read_timeout: 0s",
        "`receivers.otlp.protocols.http.read_timeout`: must be more than 0",
    );
    // What runbom does honour loads.
    let text = EMBEDDED_DEFAULT.replace(
        "      grpc: {}",
        "      grpc:\n        max_concurrent_streams: 50\n        transport: tcp\n        keepalive:\n          server_parameters: { time: 30s, timeout: 5s }\n          enforcement_policy: { min_time: 10s, permit_without_stream: true }",
    ).replace(
        "      http: {}",
        "      http:\n        traces_url_path: /v1/traces\n        read_timeout: 5s",
    );
    Config::parse(&text, "c.yaml").expect("supported keys load");
}

/// The default embedded configuration with `body` under `receivers.otlp.protocols.<server>` is
/// refused with a message containing `want`.
#[track_caller]
fn otlp_server_refused(server: &str, body: &str, want: &str) {
    let text = EMBEDDED_DEFAULT.replace(
        &format!("      {server}: {{}}"),
        &format!("      {server}:\n{body}"),
    );
    let e = Config::parse(&text, "c.yaml").unwrap_err().0;
    assert!(e.contains(want), "{body}: {e}");
}

/// Connection limits that make no sense, and the Collector keys runbom cannot honour
/// (`read_buffer_size`, `write_buffer_size`, `include_metadata: true`, `cors`: they used to be
/// accepted and ignored), are refused with the path and the reason.
#[test]
fn otlp_connection_limits_and_unhonoured_keys_are_refused() {
    let refused = otlp_server_refused;
    refused(
        "grpc",
        "        keepalive:\n          server_parameters: { max_connection_age_grace: 10s }",
        "`receivers.otlp.protocols.grpc.keepalive.server_parameters.max_connection_age_grace`: takes effect only with `max_connection_age`",
    );
    refused(
        "grpc",
        "        keepalive:\n          server_parameters: { max_connection_idle: 0s }",
        "server_parameters.max_connection_idle`: must be more than 0",
    );
    refused(
        "grpc",
        "        include_metadata: true",
        "`receivers.otlp.protocols.grpc.include_metadata`: not supported: no runbom processor reads client metadata",
    );
    refused(
        "http",
        "        cors: { allowed_origins: ['*'] }",
        "`receivers.otlp.protocols.http.cors`: not supported: runbom does not answer browsers' CORS preflight",
    );
    refused(
        "grpc",
        "        read_buffer_size: 524288",
        "`receivers.otlp.protocols.grpc.read_buffer_size`: not supported: runbom's HTTP/2 server sizes its buffers itself",
    );
    refused(
        "http",
        "        write_buffer_size: 524288",
        "`receivers.otlp.protocols.http.write_buffer_size`: a `grpc` setting",
    );
    refused(
        "grpc",
        "        idle_timeout: 10s",
        "`receivers.otlp.protocols.grpc.idle_timeout`: an `http` setting",
    );
    refused(
        "http",
        "        idle_timeout: 5s",
        "`receivers.otlp.protocols.http.idle_timeout`: must be at least `read_timeout`",
    );
    refused(
        "http",
        "        max_connections: 0",
        "`receivers.otlp.protocols.http.max_connections`: must be at least 1",
    );
    refused(
        "grpc",
        "        max_decoding_mib: 0",
        "`receivers.otlp.protocols.grpc.max_decoding_mib`: must be from 1 to 1048576 (MiB)",
    );
}

#[test]
fn own_telemetry_protocols_are_checked_when_loading() {
    let text = format!(
        "{EMBEDDED_DEFAULT}  telemetry:\n    traces:\n      processors:\n        - batch: {{ exporter: {{ otlp: {{ protocol: http/json, endpoint: 'http://c:4318' }} }} }}\n"
    );
    assert_refused(
        &text,
        "`service.telemetry.traces.processors[0].batch.exporter.otlp.protocol`: unknown variant `http/json`, expected `grpc` or `http/protobuf`",
    );
}
