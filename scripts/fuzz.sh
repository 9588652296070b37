#!/usr/bin/env bash
# Runs each cargo-fuzz target of sidecar/fuzz for a fixed budget and prints, per target, the
# inputs executed and the findings (crashing inputs libFuzzer saved). Not part of CI.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# Installs what it needs when missing (both steps do nothing once done): cargo-fuzz
# (CARGO_FUZZ_VERSION, `cargo install --locked`) and the nightly toolchain pinned in
# ebpf/rust-toolchain.toml. FUZZ_SANITIZER=address adds AddressSanitizer (slower to build and
# run; the default `none` still catches every panic, overflow check and out-of-bounds index).
# Corpora and findings go to FUZZ_WORK (default: target/fuzz-work), seeded from the repo's own
# fixtures; the summary is also written to FUZZ_WORK/summary.md.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
budget=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(otlp_protobuf otlp_json http_capture kernel_record declared_bom config_yaml)
fi
toolchain=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' "$root/ebpf/rust-toolchain.toml")
sanitizer=${FUZZ_SANITIZER:-none}
cargo_fuzz_version=${CARGO_FUZZ_VERSION:-0.13.2}

# Tools, installed only when missing.
if ! rustup run "$toolchain" rustc --version > /dev/null 2>&1; then
    echo "installing the $toolchain toolchain" >&2
    rustup toolchain install "$toolchain" --profile minimal
fi
if ! cargo fuzz --version > /dev/null 2>&1; then
    echo "installing cargo-fuzz $cargo_fuzz_version" >&2
    cargo install --locked cargo-fuzz --version "$cargo_fuzz_version"
fi
work=${FUZZ_WORK:-$root/target/fuzz-work}
fuzz_dir="$root/sidecar/fuzz"

# Seeds: the repo's own examples of each input.
seed() {
    local target=$1
    shift
    mkdir -p "$work/corpus/$target"
    local i=0
    for f in "$@"; do
        [ -f "$f" ] || continue
        cp "$f" "$work/corpus/$target/seed-$i"
        i=$((i + 1))
    done
}
mkdir -p "$work"
seed declared_bom "$root"/examples/agent/*.cdx.json "$root"/tests/fixtures/*/*.cdx.json
seed config_yaml "$root"/sidecar/runbom-pipeline/src/config/default.yaml \
    "$root"/otel-config/two-tier/runbom-*.yaml "$root"/examples/*/*.yaml
# OTLP/JSON lines of the fixtures, the first byte choosing the signal (0 traces, 1 logs).
mkdir -p "$work/corpus/otlp_json"
n=0
for f in "$root"/tests/fixtures/*/traces.jsonl "$root"/tests/fixtures/*/logs.jsonl; do
    [ -f "$f" ] || continue
    case $f in *traces.jsonl) lead='\x00' ;; *) lead='\x01' ;; esac
    while IFS= read -r line && [ $n -lt 64 ]; do
        { printf "$lead"; printf '%s' "$line"; } > "$work/corpus/otlp_json/seed-$n"
        n=$((n + 1))
    done < "$f"
done
mkdir -p "$work/corpus/http_capture"
printf 'POST /v1/chat/completions?key=s3cret HTTP/1.1\r\nHost: api.openai.com\r\ntraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\nContent-Type: application/json\r\nContent-Length: 27\r\n\r\n{"model":"gpt-4o","x":[1]}' \
    > "$work/corpus/http_capture/seed-0"
printf 'HTTP/1.1 200 OK\r\n\r\n' > "$work/corpus/http_capture/seed-1"

summary="$work/summary.md"
{
    echo "| target | seconds | inputs executed | execs/s | corpus | findings |"
    echo "|---|---|---|---|---|---|"
} > "$summary"
failed=0
for t in "${targets[@]}"; do
    mkdir -p "$work/corpus/$t" "$work/artifacts/$t"
    log="$work/$t.log"
    echo "== $t: ${budget}s" >&2
    set +e
    cargo "+$toolchain" fuzz run --fuzz-dir "$fuzz_dir" --sanitizer "$sanitizer" "$t" \
        "$work/corpus/$t" -- -max_total_time="$budget" -rss_limit_mb=2048 -timeout=10 \
        -artifact_prefix="$work/artifacts/$t/" -print_final_stats=1 > "$log" 2>&1
    status=$?
    set -e
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    corpus=$(find "$work/corpus/$t" -type f | wc -l)
    findings=$(find "$work/artifacts/$t" -type f | wc -l)
    if [ "$status" -ne 0 ] && [ "$findings" -eq 0 ]; then
        echo "$t: cargo fuzz failed (exit $status); see $log" >&2
        tail -20 "$log" >&2
        failed=1
    fi
    [ "$findings" -gt 0 ] && failed=1
    echo "| \`$t\` | $budget | ${runs:-?} | ${rate:-?} | $corpus | $findings |" >> "$summary"
done
cat "$summary"
exit $failed
