#!/usr/bin/env bash
# A flame graph of runbom's kernel-event path as users run it: the release binary on its
# embedded defaults (correlate, aibom, file exporter) while a loop opens a watched file at a
# steady rate. perf samples runbom's threads with DWARF call graphs; inferno draws the SVG.
# Run as root. OUT (default docs/flamegraph-kernel-path.svg), RATE opens/s (default 50000),
# DURATION seconds (default 10), FREQ samples/s per CPU (default 499); RUNBOM_BIN a prebuilt
# binary to profile instead of building this tree's release binary; FOLDED a path to keep the
# folded stacks at (for shares by function: grep and sum their counts).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
OUT=${OUT:-docs/flamegraph-kernel-path.svg}
RATE=${RATE:-50000}
DURATION=${DURATION:-10}
FREQ=${FREQ:-499}

command -v perf >/dev/null || { echo "[flamegraph] perf is needed (Debian: linux-perf)" >&2; exit 1; }
command -v inferno-flamegraph >/dev/null || cargo install inferno --locked --version 0.12.8
if [ -n "${RUNBOM_BIN:-}" ]; then
    bin=$(realpath "$RUNBOM_BIN")
else
    cargo build --release --locked -p runbom
    bin="${CARGO_TARGET_DIR:-$PWD/target}/release/runbom"
fi

work=$(mktemp -d /tmp/runbom-flamegraph.XXXXXX)
pid=
cleanup() {
    [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# In a network namespace of its own (loopback only): the defaults' fixed ports (4317, 4318,
# 8888) may be taken by another runbom on the machine. The probes still see every process.
(cd "$work" && exec unshare --net sh -c 'ip link set lo up && exec "$0" run' "$bin" > runbom.log 2>&1) &
pid=$!
for _ in $(seq 1 300); do
    grep -q 'probes attached; watching' "$work/runbom.log" 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || { echo "[flamegraph] runbom exited:" >&2; tail -20 "$work/runbom.log" >&2; exit 1; }
    sleep 0.1
done
echo "[flamegraph] runbom $pid ready; ${RATE} opens/s for ${DURATION}s, sampling the middle"

mkdir -p "$work/files" && echo x > "$work/files/watched"
python3 - "$work/files/watched" "$RATE" "$DURATION" > "$work/opens" <<'PY' &
import os, sys, time
path, rate, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
start = time.monotonic()
done = 0
while (now := time.monotonic()) - start < seconds:
    for _ in range(100):
        os.close(os.open(path, os.O_RDONLY))
    done += 100
    ahead = done / rate - (time.monotonic() - start)
    if ahead > 0:
        time.sleep(ahead)
print(done, round(done / (time.monotonic() - start)))
PY
load=$!
sleep 1
perf record -q -F "$FREQ" -g --call-graph dwarf,16384 -p "$pid" -o "$work/perf.data" -- sleep $((DURATION - 2)) 2>/dev/null
wait "$load"
read -r opens per_s < "$work/opens"
echo "[flamegraph] the loop made $opens opens ($per_s/s); folding the samples"
perf script -i "$work/perf.data" 2>/dev/null | inferno-collapse-perf > "$work/folded"
inferno-flamegraph --title "runbom, embedded defaults, ${per_s} opens/s (perf ${FREQ} Hz, $(date -u +%F))" \
    < "$work/folded" > "$OUT"
[ -n "${FOLDED:-}" ] && cp "$work/folded" "$FOLDED"
kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; pid=
grep -E 'runbom stopped' "$work/runbom.log" | tail -1 || true
echo "[flamegraph] wrote $OUT ($(wc -l < "$work/folded") stacks)"
