#!/usr/bin/env bash
# runbom's demo (the README's first command). Installs what is missing, builds, starts
# `runbom run` on its embedded defaults (kernel probes + OTLP receivers, correlation, the
# reference agent's declared AI-BOM, OTLP/JSON files in target/demo/runbom-data), then runs the
# reference agent (examples/agent) twice: a benign conversation, and one where a ticket note
# carries a prompt injection that makes the agent send customer records with an approved tool
# to an endpoint the BOM does not declare for it. Then its MCP variant once (run.py --mcp: the
# npm filesystem MCP server over stdio, a helpdesk MCP server over streamable HTTP), where the
# injection makes it plant a script with the filesystem server's write_file, a tool the BOM does
# not declare. Shows live progress, then each drift finding, the trace behind it and where the
# HTML reports are.
#
# Re-running starts afresh; Ctrl-C stops everything cleanly. Needs root (eBPF).
#
# RUNBOM_BUILD_PROFILE=dev builds and runs the unoptimised build instead of the release one. The
# tests set it: their own build is that one, so the demo's test compiles only runbom's crates
# instead of every dependency a second time (about 13 minutes on a fresh 2-vCPU machine).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
export PATH="$HOME/.cargo/bin:$PATH"

if [ "$(id -u)" -ne 0 ]; then
    echo "runbom's demo loads eBPF programs into the kernel, so it must run as root: run 'sudo bash scripts/demo.sh'." >&2
    exit 1
fi

say() { printf '[demo] %s\n' "$*"; }

bash scripts/setup.sh
PROFILE=${RUNBOM_BUILD_PROFILE:-release}
case $PROFILE in
    release) PROFILE_DIR=release ;;
    dev) PROFILE_DIR=debug ;;
    *) echo "RUNBOM_BUILD_PROFILE is '$PROFILE': it must be 'release' (the default) or 'dev'" >&2; exit 2 ;;
esac
say "building runbom ($PROFILE)"
cargo build --profile "$PROFILE" --locked -p runbom 2>&1 | grep -vE '^warning: runbom-kernel@|^\s*$' | tail -n 3
RUNBOM_BIN=${CARGO_TARGET_DIR:-$REPO/target}/$PROFILE_DIR/runbom
PY=$REPO/.venv/bin/python

DEMO=$REPO/target/demo
rm -rf "$DEMO" && mkdir -p "$DEMO"
cd "$DEMO"

pids=()
cleanup() {
    local code=$?
    trap - EXIT INT TERM
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    exit "$code"
}
trap cleanup EXIT
trap 'echo; say "interrupted; stopping"; exit 130' INT TERM

"$RUNBOM_BIN" run 2> runbom.log &
RUNBOM=$!
pids+=("$RUNBOM")
for _ in $(seq 1 150); do
    grep -q "probes attached" runbom.log && break
    if ! kill -0 "$RUNBOM" 2>/dev/null; then
        say "runbom did not start:"; cat runbom.log >&2; exit 1
    fi
    sleep 0.1
done
grep -q "probes attached" runbom.log || { say "runbom did not attach its probes in 15 s:"; cat runbom.log >&2; exit 1; }
say "runbom is running (embedded defaults: OTLP on 127.0.0.1:4317/4318, kernel probes, correlation,"
say "the reference agent's declared AI-BOM; output in $DEMO/runbom-data)"

"$PY" "$REPO/scripts/demo_progress.py" &
pids+=($!)

run_agent() {
    local scenario=$1 variant=${2:-}
    local log="agent-$scenario${variant:+-mcp}.log"
    say "running the reference agent${variant:+ (MCP variant)}: $scenario conversation"
    if ! "$PY" "$REPO/examples/agent/run.py" --scenario "$scenario" --mode sequential $variant \
        --ground-truth "$DEMO/ground-truth-$scenario${variant:+-mcp}.json" \
        2> "$log" | sed 's/^/[demo]   /'; then
        say "the reference agent failed; the end of $DEMO/$log:"
        tail -n 20 "$log" >&2
        exit 1
    fi
}
run_agent benign
run_agent injected
run_agent injected --mcp

# The correlator and the AI-BOM processor hold spans for their wait (6 s and 5 s) before they
# place, judge and alert; stopping runbom flushes them, so wait only for the two findings.
for _ in $(seq 1 30); do
    [ "$(cat runbom-data/logs*.jsonl 2>/dev/null | grep -o '"eventName":"aibom.drift"' | wc -l)" -ge 2 ] && break
    sleep 1
done
kill -TERM "${pids[1]}" 2>/dev/null || true
wait "${pids[1]}" 2>/dev/null || true
kill -INT "$RUNBOM"
wait "$RUNBOM" || true
pids=()
grep -E "ebpf receiver stopped" runbom.log | sed 's/^.*INFO /[demo] runbom: /' || true

trace_of() { "$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["conversations"][0]["trace_id"])' "$1"; }
EXFIL_TRACE=$(trace_of "$DEMO/ground-truth-injected.json")
MCP_TRACE=$(trace_of "$DEMO/ground-truth-injected-mcp.json")
BOM=$REPO/examples/agent/bom-mcp.cdx.json  # what builtin:reference-agent holds

echo
say "the trace behind the exfiltration's drift finding, and the finding with its chain (runbom investigate):"
"$RUNBOM_BIN" investigate --from runbom-data --trace "$EXFIL_TRACE"
"$RUNBOM_BIN" investigate --from runbom-data --trace "$EXFIL_TRACE" --bom "$BOM" \
    --html "$DEMO/report.html" 2>/dev/null >/dev/null
echo
say "the MCP variant's trace: the planted script, from the prompt to the MCP server's file access:"
"$RUNBOM_BIN" investigate --from runbom-data --trace "$MCP_TRACE"
"$RUNBOM_BIN" investigate --from runbom-data --trace "$MCP_TRACE" --bom "$BOM" \
    --html "$DEMO/report-mcp.html" 2>/dev/null >/dev/null
say "HTML report: $DEMO/report.html (self-contained; open it in a browser)"
say "HTML report of the MCP variant: $DEMO/report-mcp.html"
say "all exported data: $DEMO/runbom-data/{traces,logs}.jsonl; runbom's log: $DEMO/runbom.log"
