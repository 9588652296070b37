#!/usr/bin/env bash
# runbom's benchmarks (docs/benchmarks.md): builds release, then runs
#   (b) the criterion bench of the userspace pipeline (decode → enrich → OTLP → protobuf), and
#   (a)+(c) the whole-system driver `runbom-bench` (per-syscall cost against reference probes,
#       the cost per SSL_write of node's uprobes, loss accounting against the kernel's drop
#       counters), which loads eBPF: run as root.
# Results land in target/bench/ (results.md, criterion.txt) and are printed at the end.
# Bounded: about 15 minutes on a 2-vCPU VM; every step has a timeout.
# Extra arguments go to runbom-bench (e.g. `scripts/bench.sh syscalls --rounds 2`).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

if [ "$(id -u)" -ne 0 ]; then
    echo "[bench] the benchmarks load eBPF programs into the kernel: run as root (sudo bash scripts/bench.sh)" >&2
    exit 1
fi

bash scripts/setup.sh
OUT=target/bench
mkdir -p "$OUT"

echo "[bench] building release (runbom, runbom-bench) and the criterion bench"
timeout 900 cargo build --release --locked -p runbom -p runbom-bench 2>&1 | grep -vE '^warning: runbom-kernel@|^\s*$' | tail -n 3
timeout 600 cargo bench --locked -p runbom-bench --bench pipeline --no-run 2>&1 | tail -n 1

echo "[bench] (b) userspace throughput (criterion, ~1 minute)"
timeout 300 cargo bench --locked -p runbom-bench --bench pipeline 2>&1 \
    | grep -vE '^(Benchmarking|\s*Compiling|\s*Finished|\s*Running)|^$' | tee "$OUT/criterion.txt"

echo "[bench] (a) per-syscall cost, SSL_write on node and (c) drops (runbom-bench, ~6 minutes)"
timeout 1500 target/release/runbom-bench --runbom target/release/runbom "$@" | tee "$OUT/results.md"

echo "[bench] done: $OUT/results.md, $OUT/criterion.txt"
