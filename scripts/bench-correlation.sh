#!/usr/bin/env bash
# Correlation latency: how long after an application span reaches runbom its kernel children
# are exported (beyond the correlator's configured wait). The reference agent runs RUNS times
# (sequential, threads, asyncio in turn) under `runbom run` (ebpf + otlp receivers, correlate,
# batch, otlp exporter) in front of tests/otlp_sink.py; scripts/correlation_latency.py pairs the
# agent's own export times with the sink's receive times.
#
#   sudo bash scripts/bench-correlation.sh          # RUNS=6 WAIT_MS=2000
#
# Correlation accuracy (the table of docs/correlation.md): tests/test_reference_agent.py's
# accuracy suite (every mode × scenario, with and without thread.id on the agent's spans, under
# one `runbom run` with correlate's defaults) REPEAT times, each run scored by
# tests/score_correlation.py; prints precision and recall per mode and method over all of them.
#
#   sudo bash scripts/bench-correlation.sh accuracy  # REPEAT=3; RUNBOM_BIN=… skips the build
#
# The same for the Node reference agent (tests/test_node_agent.py, examples/agent-node), its
# table printed apart; AGENTS="python node" by default, AGENTS=node for the Node one alone.
#
# Needs root and the venv (`bash scripts/setup.sh`).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-6}
WAIT_MS=${WAIT_MS:-2000}
PY=.venv/bin/python
TARGET=${CARGO_TARGET_DIR:-target}
say() { printf '[bench-correlation] %s\n' "$*" >&2; }
[ "$(id -u)" -eq 0 ] || { say "must run as root (it loads eBPF programs)"; exit 1; }
[ -x "$PY" ] || { say "missing $PY: run 'bash scripts/setup.sh' first"; exit 1; }

if [ "${1:-}" = accuracy ]; then
    REPEAT=${REPEAT:-3}
    if [ -z "${RUNBOM_BIN:-}" ]; then
        say "building runbom (release)"
        cargo build --release --quiet -p runbom
        export RUNBOM_BIN="$TARGET/release/runbom"
    fi
    OUT=$(mktemp -d /tmp/bench-accuracy.XXXXXX)
    AGENTS=${AGENTS:-python node}
    declare -A SUITE=([python]=tests/test_reference_agent.py [node]=tests/test_node_agent.py)
    for i in $(seq 1 "$REPEAT"); do
        for agent in $AGENTS; do
            say "accuracy suite ($agent agent), round $i of $REPEAT"
            RUNBOM_ACCURACY_OUT="$OUT/$i" "$PY" -m pytest -q -p no:cacheprovider \
                "${SUITE[$agent]}" -k "accuracy" > "$OUT/pytest-$agent-$i.log" 2>&1 \
                || { tail -40 "$OUT/pytest-$agent-$i.log" >&2; say "round $i failed (log: $OUT/pytest-$agent-$i.log)"; }
        done
    done
    for agent in $AGENTS; do
        say "$agent agent"
        if [ "$agent" = node ]; then
            "$PY" tests/score_correlation.py --table "$OUT"/*/node-*-*.json
        else
            "$PY" tests/score_correlation.py --table "$OUT"/*/{sequential,threads,asyncio}-*.json
        fi
    done
    say "per-run results: $OUT/<round>/[node-]<mode>-<scenario>-<thread-id|no-thread-id>.json"
    exit 0
fi

say "building runbom (release)"
cargo build --release --quiet -p runbom
OUT=$(mktemp -d /tmp/bench-correlation.XXXXXX)
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SINK_PORT=$(free_port); GRPC=$(free_port); HTTP=$(free_port)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

"$PY" tests/otlp_sink.py --out "$OUT/sink.jsonl" --grpc-port "$SINK_PORT" > "$OUT/sink.stdout" 2> "$OUT/sink.stderr" &
pids+=($!)
cat > "$OUT/runbom.yaml" <<YAML
receivers:
  ebpf:
    file:
      include: ["$OUT/agent/data/"]
  otlp:
    protocols:
      grpc: { endpoint: "127.0.0.1:$GRPC" }
      http: { endpoint: "127.0.0.1:$HTTP" }
processors:
  correlate:
    wait: ${WAIT_MS}ms
  batch: {}
exporters:
  otlp:
    endpoint: "127.0.0.1:$SINK_PORT"
    tls: { insecure: true }
service:
  telemetry: { metrics: { address: none } }
  pipelines:
    traces: { receivers: [otlp, ebpf], processors: [correlate, batch], exporters: [otlp] }
YAML
"$TARGET/release/runbom" run --config "$OUT/runbom.yaml" 2> "$OUT/runbom.log" &
RUNBOM=$!
pids+=($RUNBOM)
for _ in $(seq 1 100); do grep -q "probes attached" "$OUT/runbom.log" && break; sleep 0.1; done
grep -q "probes attached" "$OUT/runbom.log" || { cat "$OUT/runbom.log" >&2; exit 1; }

modes=(sequential threads asyncio)
for i in $(seq 1 "$RUNS"); do
    mode=${modes[$(( (i - 1) % 3 ))]}
    RUNBOM_AGENT_EXPORT_LOG="$OUT/exports.jsonl" "$PY" examples/agent/run.py --scenario injected \
        --mode "$mode" --any-ports --work-dir "$OUT/agent" --otlp-endpoint "http://127.0.0.1:$HTTP" \
        --ground-truth "$OUT/gt-$i.json" > /dev/null 2>> "$OUT/agent.stderr"
    say "run $i ($mode) done"
done
kill -TERM "$RUNBOM"; wait "$RUNBOM" || true
sleep 1
"$PY" scripts/correlation_latency.py --sink "$OUT/sink.jsonl" --exports "$OUT/exports.jsonl" --wait-ms "$WAIT_MS" "$@"
say "raw data: $OUT"
