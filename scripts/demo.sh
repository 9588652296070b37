#!/usr/bin/env bash
# runbom's demo (the README's first command): installs what is missing, builds, runs
# `runbom run` on its embedded defaults while a small agent-like workload reads a file, calls
# an HTTP API on loopback, resolves a name and runs a program, then summarises what the kernel
# showed. Output lands in target/demo/runbom-data/ (OTLP/JSON lines); re-running starts afresh.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
export PATH="$HOME/.cargo/bin:$PATH"

if [ "$(id -u)" -ne 0 ]; then
    echo "runbom's demo loads eBPF programs into the kernel, so it must run as root: sudo bash scripts/demo.sh" >&2
    exit 1
fi

bash scripts/setup.sh
echo "[demo] building runbom (release)"
cargo build --release --locked -p runbom 2>&1 | grep -vE '^warning: runbom-agent@|^\s*$' | tail -n 3

DEMO=$REPO/target/demo
rm -rf "$DEMO" && mkdir -p "$DEMO/data"
echo "customer-id,email" > "$DEMO/data/customers.csv"
cd "$DEMO"

"$REPO/target/release/runbom" run 2> runbom.log &
RUNBOM=$!
trap 'kill -INT $RUNBOM 2>/dev/null || true' EXIT INT TERM
for _ in $(seq 1 100); do
    grep -q "probes attached" runbom.log && break
    kill -0 $RUNBOM 2>/dev/null || { cat runbom.log >&2; exit 1; }
    sleep 0.1
done
echo "[demo] runbom is watching; running the workload"

"$REPO/.venv/bin/python" "$REPO/scripts/demo_workload.py" "$DEMO/data/customers.csv" > workload.json
sleep 1
kill -INT $RUNBOM
wait $RUNBOM || true
trap - EXIT INT TERM
grep -E "ebpf receiver stopped|runbom stopped" runbom.log | sed "s/^.*INFO /[demo] /"
"$REPO/.venv/bin/python" "$REPO/scripts/demo_summary.py" runbom-data workload.json
echo "[demo] all exported data: $DEMO/runbom-data/{traces,logs}.jsonl"
