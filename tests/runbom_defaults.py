"""runbom's embedded defaults (sidecar/runbom-pipeline/src/config/default.yaml: kernel probes,
OTLP receivers, memory_limiter, correlate, aibom, batch, a `file` exporter) as a configuration
file with a test's ports, declared BOM and output directory."""

from __future__ import annotations

from pathlib import Path


def write_embedded_defaults(path: Path, *, bom: Path, out: Path, grpc: int, http: int,
                            metrics: int) -> Path:
    path.write_text(f"""
receivers:
  ebpf: {{}}
  otlp:
    protocols:
      grpc: {{ endpoint: 127.0.0.1:{grpc} }}
      http: {{ endpoint: 127.0.0.1:{http} }}
processors:
  memory_limiter: {{ check_interval: 1s, limit_mib: 1024 }}
  correlate: {{}}
  aibom: {{ bom: {bom} }}
  batch: {{}}
exporters:
  file: {{ path: {out} }}
service:
  telemetry: {{ metrics: {{ address: 127.0.0.1:{metrics} }} }}
  pipelines:
    traces:
      receivers: [otlp, ebpf]
      processors: [memory_limiter, correlate, aibom, batch]
      exporters: [file]
    logs:
      receivers: [otlp, ebpf, aibom]
      processors: [memory_limiter, batch]
      exporters: [file]
    metrics:
      receivers: [otlp]
      processors: [memory_limiter, batch]
      exporters: [file]
""")
    return path
