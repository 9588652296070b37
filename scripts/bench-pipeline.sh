#!/usr/bin/env bash
# Sidecar pipeline throughput: runbom (otlp receiver → batch → nop exporter) against rotel
# (otlp receiver → blackhole exporter), both driven by the same saturating OTLP/gRPC load
# (runbom-loadgen: identical pre-encoded requests of GenAI-shaped spans), one server after the
# other, alternating which goes first each round.
#
# For each run: spans/s, p99 request latency, the server's CPU seconds over the measured window
# (utime + stime from /proc/PID/stat), spans per server CPU-second, and its peak RSS (VmHWM).
# The summary gives the median over the rounds and the runbom/rotel ratios, and the ratio within
# each round (how far the rounds disagree says how noisy the machine was).
#
#   bash scripts/bench-pipeline.sh            # about 2.5 minutes once built
#   ROUNDS=1 DURATION=10 bash scripts/bench-pipeline.sh
#
# Knobs (environment): ROUNDS (3), DURATION seconds measured (20), WARMUP seconds (3),
# CONCURRENCY streams in flight (32), CONNECTIONS HTTP/2 connections (16), SPANS per request
# (100), GZIP=1 to gzip the requests, OUT directory for the raw JSON (a temp dir),
# RUNBOM_LD_PRELOAD=/path/to/libmimalloc.so.2 to try runbom with another allocator,
# PEER=aibom to compare runbom with runbom + the aibom processor (otlp → aibom → batch → nop)
# instead of rotel; AIBOM_BOM is the declared BOM it judges against (default
# sidecar/runbom-loadgen/bom.cdx.json, which declares everything the load uses: no drift;
# AIBOM_BOM=builtin:reference-agent makes every trace drift and raise an alert). With
# PEER=aibom every request carries new trace ids (runbom-loadgen --unique-traces).
# PEER=forward compares runbom (otlp → batch → nop) with runbom forwarding the same load to a
# second runbom over OTLP/gRPC (otlp → batch → otlp exporter → runbom: otlp → nop); the
# forwarder's CPU is measured, the second runbom's is not. This is the setup the gRPC exporter's
# encode-once change was measured in (docs/benchmarks.md).
# PEER=baseline compares this build with another runbom binary, BASELINE_RUNBOM=/path/to/runbom
# (e.g. built from an earlier commit), on the same configuration (otlp → batch → nop; with
# AIBOM=1 both run otlp → aibom → batch → nop): a before/after check of a change.
# RUNBOM_BINARY=/path/to/runbom measures that binary instead of this build's (e.g. the
# processor on/off of an earlier commit); BUILD=0 uses the release binaries as they are
# (no cargo build: the sources may have moved on since they were built), found in
# $CARGO_TARGET_DIR/release (default target/release) unless RUNBOM_BINARY or LOADGEN_BINARY
# name them.
# MODE=low is the low-concurrency comparison: 4 streams over 4 connections (CONCURRENCY and
# CONNECTIONS still override), every server pinned to one core (SERVER_CPUS, default 0) and the
# generator to another (LOAD_CPUS, default 1), so the per-request fixed costs (task wake-ups,
# allocations, flush timers, response building) are what is compared, not how well a server
# spreads over cores. SERVER_CPUS / LOAD_CPUS (taskset CPU lists) also pin in the default mode.
# Needs the project venv (`bash scripts/setup.sh`) for rotel's binary.
set -euo pipefail

cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-20}
WARMUP=${WARMUP:-3}
MODE=${MODE:-saturating}
case "$MODE" in
    saturating)
        CONCURRENCY=${CONCURRENCY:-32}
        CONNECTIONS=${CONNECTIONS:-16}
        SERVER_CPUS=${SERVER_CPUS:-}
        LOAD_CPUS=${LOAD_CPUS:-}
        ;;
    low)
        CONCURRENCY=${CONCURRENCY:-4}
        CONNECTIONS=${CONNECTIONS:-4}
        SERVER_CPUS=${SERVER_CPUS:-0}
        LOAD_CPUS=${LOAD_CPUS:-1}
        ;;
    *)
        printf '[bench-pipeline] MODE must be saturating or low, not %s\n' "$MODE" >&2
        exit 1
        ;;
esac
SPANS=${SPANS:-100}
GZIP=${GZIP:-0}
PEER=${PEER:-rotel}
AIBOM_BOM=${AIBOM_BOM:-$PWD/sidecar/runbom-loadgen/bom.cdx.json}
AIBOM=${AIBOM:-0}
BASELINE_RUNBOM=${BASELINE_RUNBOM:-}
PY=.venv/bin/python

say() { printf '[bench-pipeline] %s\n' "$*" >&2; }

# Command prefixes that pin a server or the generator (taskset execs the command: the pid the
# script measures is the server's own).
SERVER_PIN=()
LOAD_PIN=()
if [ -n "$SERVER_CPUS" ]; then SERVER_PIN=(taskset -c "$SERVER_CPUS"); fi
if [ -n "$LOAD_CPUS" ]; then LOAD_PIN=(taskset -c "$LOAD_CPUS"); fi

if [ ! -x "$PY" ]; then
    say "missing $PY: run 'bash scripts/setup.sh' first"
    exit 1
fi
ROTEL=$("$PY" -c 'import os, rotel; print(os.path.join(os.path.dirname(rotel.__file__), "rotel-agent"))')
if [ ! -x "$ROTEL" ]; then
    say "rotel's agent binary is missing ($ROTEL): run 'bash scripts/setup.sh'"
    exit 1
fi

TARGET=${CARGO_TARGET_DIR:-target}
if [ "${BUILD:-1}" = 1 ]; then
    say "building release binaries (runbom, runbom-loadgen)"
    cargo build --release --quiet -p runbom -p runbom-loadgen
fi
RUNBOM=${RUNBOM_BINARY:-$TARGET/release/runbom}
LOADGEN=${LOADGEN_BINARY:-$TARGET/release/runbom-loadgen}
for bin in "$RUNBOM" "$LOADGEN"; do
    if [ ! -x "$bin" ]; then
        say "$bin: not found or not executable (BUILD=1 builds it; with BUILD=0 set CARGO_TARGET_DIR, RUNBOM_BINARY or LOADGEN_BINARY)"
        exit 1
    fi
done

if [ "$PEER" = baseline ] && [ ! -x "$BASELINE_RUNBOM" ]; then
    say "PEER=baseline needs BASELINE_RUNBOM=/path/to/an/other/runbom (got '${BASELINE_RUNBOM}')"
    exit 1
fi

OUT=${OUT:-$(mktemp -d /tmp/bench-pipeline.XXXXXX)}
mkdir -p "$OUT"
server_pid=""
sink_pid=""
cleanup() {
    local pid
    for pid in "$server_pid" "$sink_pid"; do
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
            kill -KILL "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
}
trap cleanup EXIT

free_port() {
    "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_port() {
    local port=$1 i
    for i in $(seq 1 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        kill -0 "$server_pid" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

stop_server() {
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$server_pid" 2>/dev/null; then
        say "server $server_pid did not stop within 10 s of SIGTERM; killing it"
        kill -KILL "$server_pid" 2>/dev/null || true
    fi
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
}

start_runbom() {
    local port=$1 admin=$2 dir=$3 aibom=${4:-} binary=${5:-$RUNBOM} forward_to=${6:-}
    [ "$AIBOM" = 1 ] && aibom=aibom
    local processors="batch" extra_processors="" extra_pipelines="" exporter="nop"
    local extra_exporters=""
    if [ -n "$aibom" ]; then
        processors="aibom, batch"
        extra_processors="  aibom: { bom: \"$AIBOM_BOM\" }"
        extra_pipelines="    logs: { receivers: [aibom], exporters: [nop] }"
    fi
    if [ -n "$forward_to" ]; then
        exporter="otlp"
        extra_exporters="  otlp: { endpoint: \"127.0.0.1:$forward_to\", tls: { insecure: true } }"
    fi
    cat > "$dir/runbom.yaml" <<EOF
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:$port
processors:
  batch: {}
$extra_processors
exporters:
  nop: {}
$extra_exporters
service:
  telemetry:
    logs:
      level: warn
    metrics:
      address: 127.0.0.1:$admin
  pipelines:
    traces:
      receivers: [otlp]
      processors: [$processors]
      exporters: [$exporter]
$extra_pipelines
EOF
    LD_PRELOAD=${RUNBOM_LD_PRELOAD:-} "${SERVER_PIN[@]}" "$binary" run --config "$dir/runbom.yaml" \
        > "$dir/runbom.stdout" 2> "$dir/runbom.stderr" &
    server_pid=$!
}

start_aibom() {
    start_runbom "$1" "$2" "$3" aibom
}

# A second runbom (otlp → nop) first, then the measured one forwarding to it.
start_forward() {
    local port=$1 admin=$2 dir=$3 sink sink_admin
    sink=$(free_port)
    sink_admin=$(free_port)
    mkdir -p "$dir/sink"
    AIBOM=0 start_runbom "$sink" "$sink_admin" "$dir/sink"
    sink_pid=$server_pid
    if ! wait_port "$sink"; then
        say "the second runbom did not start listening on $sink; its output:"
        cat "$dir"/sink/*.std* >&2 || true
        exit 1
    fi
    start_runbom "$port" "$admin" "$dir" "" "$RUNBOM" "$sink"
}

start_baseline() {
    start_runbom "$1" "$2" "$3" "" "$BASELINE_RUNBOM"
}

start_rotel() {
    local port=$1 http=$2 dir=$3
    # Same batching as runbom's batch processor defaults (8192 spans or 200 ms).
    "${SERVER_PIN[@]}" "$ROTEL" start \
        --otlp-grpc-endpoint "127.0.0.1:$port" --otlp-http-endpoint "127.0.0.1:$http" \
        --exporter blackhole --batch-max-size 8192 --batch-timeout 200ms \
        --pid-file "$dir/rotel.pid" --log-file "$dir/rotel.log" \
        > "$dir/rotel.stdout" 2> "$dir/rotel.stderr" &
    server_pid=$!
}

run_one() {
    local server=$1 round=$2
    local dir="$OUT/$server-$round" port other
    mkdir -p "$dir"
    port=$(free_port)
    other=$(free_port)
    "start_$server" "$port" "$other" "$dir"
    if ! wait_port "$port"; then
        say "$server did not start listening on $port; its output:"
        cat "$dir"/*.std* >&2 || true
        exit 1
    fi
    sleep 0.5
    local load_flags=()
    [ "$GZIP" = 1 ] && load_flags=(--gzip)
    # The aibom processor keeps state per trace (alerts are deduplicated per trace): every
    # request brings new traces, as an agent's would.
    if [ "$PEER" = aibom ] || [ "$AIBOM" = 1 ]; then load_flags+=(--unique-traces); fi
    "${LOAD_PIN[@]}" "$LOADGEN" --endpoint "127.0.0.1:$port" --server-pid "$server_pid" --label "$server" \
        --concurrency "$CONCURRENCY" --connections "$CONNECTIONS" --spans "$SPANS" \
        --duration "$DURATION" --warmup "$WARMUP" "${load_flags[@]}" --json \
        > "$dir/result.json"
    stop_server
    if [ -n "$sink_pid" ]; then
        server_pid=$sink_pid
        sink_pid=""
        stop_server
    fi
    "$PY" - "$dir/result.json" "$round" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
s = r["server"]
print(
    f"[bench-pipeline] {r['label']:6} round {sys.argv[2]}: {r['spans_per_s']:>10.0f} spans/s, "
    f"p99 {r['latency_ms']['p99']:7.2f} ms, {s['cpu_s']:6.2f} CPU-s "
    f"({s['cpu_cores_busy']:.2f} cores), {s['spans_per_cpu_s']:>9.0f} spans/CPU-s, "
    f"peak RSS {s['peak_rss_kib'] / 1024:.1f} MiB, errors {r['errors'] or 0}",
    file=sys.stderr,
)
EOF
}

say "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), kernel $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg)"
say "runbom: $(git rev-parse --short HEAD 2>/dev/null || echo '?') (+ working tree)${RUNBOM_LD_PRELOAD:+, LD_PRELOAD=$RUNBOM_LD_PRELOAD}; rotel: $("$ROTEL" --version 2>&1 | head -1)"
say "load: $CONCURRENCY streams over $CONNECTIONS connections, $SPANS spans/request, gzip=$GZIP, ${WARMUP}s warm-up + ${DURATION}s measured, $ROUNDS rounds"
say "mode: $MODE; server on CPUs ${SERVER_CPUS:-any}, generator on CPUs ${LOAD_CPUS:-any}"
for round in $(seq 1 "$ROUNDS"); do
    if [ $((round % 2)) -eq 1 ]; then order="runbom $PEER"; else order="$PEER runbom"; fi
    for server in $order; do
        run_one "$server" "$round"
    done
done

"$PY" - "$OUT" "$PEER" "$AIBOM_BOM" <<'EOF'
import glob, json, statistics, sys

out, peer = sys.argv[1], sys.argv[2]
runs = {}
by_round = {}  # round -> label -> spans per server CPU-second
for path in sorted(glob.glob(f"{out}/*/result.json")):
    r = json.load(open(path))
    runs.setdefault(r["label"], []).append(r)
    round_no = int(path.split("/")[-2].rsplit("-", 1)[1])
    by_round.setdefault(round_no, {})[r["label"]] = r["server"]["spans_per_cpu_s"]

def med(label, get):
    return statistics.median(get(r) for r in runs[label])

rows = [
    ("spans/s", lambda r: r["spans_per_s"], "{:,.0f}"),
    ("server CPU cores busy", lambda r: r["server"]["cpu_cores_busy"], "{:.2f}"),
    ("spans per server CPU-second", lambda r: r["server"]["spans_per_cpu_s"], "{:,.0f}"),
    ("p50 latency (ms)", lambda r: r["latency_ms"]["p50"], "{:.2f}"),
    ("p99 latency (ms)", lambda r: r["latency_ms"]["p99"], "{:.2f}"),
    ("peak RSS (MiB)", lambda r: r["server"]["peak_rss_kib"] / 1024, "{:.1f}"),
    ("errors", lambda r: sum(r["errors"].values()), "{:.0f}"),
]
print()
print(f"| median of {len(runs['runbom'])} rounds | runbom | {peer} | runbom / {peer} |")
print("|---|---:|---:|---:|")
for name, get, fmt in rows:
    a, b = med("runbom", get), med(peer, get)
    ratio = f"{a / b:.2f}×" if b else "–"
    print(f"| {name} | {fmt.format(a)} | {fmt.format(b)} | {ratio} |")
per_cpu = med("runbom", lambda r: r["server"]["spans_per_cpu_s"]) / med(
    peer, lambda r: r["server"]["spans_per_cpu_s"]
)
rss = med("runbom", lambda r: r["server"]["peak_rss_kib"]) / med(
    peer, lambda r: r["server"]["peak_rss_kib"]
)
# The same ratio within each round (the two servers one after the other, the order alternated).
paired = [
    r["runbom"] / r[peer] for _, r in sorted(by_round.items()) if r.get("runbom") and r.get(peer)
]
if peer in ("aibom", "forward"):
    paired = [1 / p for p in paired]
if paired:
    label = {"aibom": "with / without", "forward": "the forwarder / runbom alone"}.get(
        peer, f"runbom / {peer}"
    )
    print()
    print(
        f"per round, {label}, spans per CPU-second: "
        + ", ".join(f"{p:.2f}" for p in paired)
        + f" (median {statistics.median(paired):.2f}, {min(paired):.2f}–{max(paired):.2f})"
    )
print()
if peer == "rotel":
    print(
        f"runbom/rotel spans per CPU-second: {per_cpu:.2f}× (goal ≥ 1.20×: {'met' if per_cpu >= 1.2 else 'NOT met'}); "
        f"peak RSS ratio {rss:.2f} (goal ≤ 1.00: {'met' if rss <= 1.0 else 'NOT met'})"
    )
elif peer == "baseline":
    spans = med("runbom", lambda r: r["spans_per_s"]) / med(peer, lambda r: r["spans_per_s"])
    print(
        f"this build / the baseline binary, spans per CPU-second: {per_cpu:.2f}; "
        f"spans/s {spans:.2f}; peak RSS ratio {rss:.2f}"
    )
elif peer == "forward":
    print(
        f"the forwarder / runbom alone, spans per CPU-second: {1 / per_cpu:.2f}; "
        f"peak RSS ratio {1 / rss:.2f}"
    )
else:
    # Against the reference agent's BOM every trace drifts (three alerts each): aim ≥ 0.6.
    aim = 0.6 if sys.argv[3] == "builtin:reference-agent" else 0.9
    print(
        f"with the aibom processor / without, spans per CPU-second: {1 / per_cpu:.2f} "
        f"(aim ≥ {aim:.2f}: {'met' if 1 / per_cpu >= aim else 'NOT met'}); peak RSS ratio {1 / rss:.2f}"
    )
print(f"raw results: {out}/*/result.json")
EOF
