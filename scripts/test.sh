#!/usr/bin/env bash
# runbom's test command (the README's second command; .ci/run calls it).
# Installs what is missing, then: formatting, lints (host crates and the eBPF crate on its own
# target), unit tests, and the integration tests that load the real probes into this kernel.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

bash scripts/setup.sh --tests

if [ "$(id -u)" -ne 0 ]; then
    echo "[test] the integration tests load eBPF programs into the kernel: run this as root" >&2
    exit 1
fi

# Each step says when it starts (seconds since this script started), so a CI log shows where the
# time goes; pytest lists its slowest tests at the end.
step() { printf '\n[test] %s (at %d s)\n' "$*" "$SECONDS"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (host crates)"
cargo clippy --all-targets --locked -- -D warnings

step "cargo clippy (eBPF crate, bpfel-unknown-none)"
(cd ebpf/runbom-ebpf && cargo clippy --release --locked --target bpfel-unknown-none -Z build-std=core -- -D warnings)

step "cargo test"
cargo test --locked

step "pytest (reference agent, declared BOM)"
.venv/bin/python -m pytest -q --durations=15 tests/
step "all passed"
