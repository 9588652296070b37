#!/usr/bin/env bash
# Installs everything runbom needs to build and test on a fresh Debian 12 machine (run as root).
# Idempotent: each step checks first and says what it installs; re-running is cheap.
# `--tests` also installs what only the tests need (Chromium, for the HTML report; Prometheus
# and promtool, for the Grafana dashboards' queries; Node's `openai` and Grafana's query
# grammars and dashboard schema in tests/node, for the shadow-AI and dashboard tests).
set -euo pipefail

cd "$(dirname "$0")/.."
EBPF_TOOLCHAIN=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' ebpf/rust-toolchain.toml)
LLVM=22
BPF_LINKER_VERSION=0.13
VENV=.venv

say() { printf '[setup] %s\n' "$*"; }

apt_updated=0
apt_install() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        say "need root to install Debian packages: ${missing[*]} (re-run as root, or install them yourself)"
        exit 1
    fi
    if [ $apt_updated -eq 0 ]; then
        say "apt-get update"
        apt-get update -qq
        apt_updated=1
    fi
    say "installing Debian packages: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# 1. LLVM 22 (for bpf-linker) and the tools the tests use.
apt_install "llvm-$LLVM-dev" "libpolly-$LLVM-dev" libzstd-dev zlib1g-dev protobuf-compiler iproute2
# The HTML report's tests render it in headless Chromium (`scripts/setup.sh --tests`); the
# dashboards' PromQL runs in a real Prometheus that scrapes runbom (tests/test_grafana.py).
if [ "${1:-}" = "--tests" ]; then
    apt_install chromium
    apt_install prometheus
fi
# Go clients (standard library only: crypto/tls) of the HTTP coverage test (`--tests`).
if [ "${1:-}" = "--tests" ]; then
    apt_install golang-go
fi

# 2. The pinned nightly with rust-src for the eBPF crate.
if ! rustup toolchain list | grep -q "^$EBPF_TOOLCHAIN"; then
    say "installing Rust toolchain $EBPF_TOOLCHAIN"
    rustup toolchain install "$EBPF_TOOLCHAIN" --profile minimal
fi
for component in rust-src clippy rustfmt; do
    if ! rustup component list --toolchain "$EBPF_TOOLCHAIN" --installed | grep -q "^$component"; then
        say "adding $component to $EBPF_TOOLCHAIN"
        rustup component add "$component" --toolchain "$EBPF_TOOLCHAIN"
    fi
done

# 3. bpf-linker built against Debian's LLVM 22 (a plain install wants LLVM 23).
if ! bpf-linker --version 2>/dev/null | grep -q "bpf-linker $BPF_LINKER_VERSION"; then
    say "building bpf-linker $BPF_LINKER_VERSION against LLVM $LLVM (about 3 minutes)"
    LLVM_PREFIX=/usr/lib/llvm-$LLVM PATH=/usr/lib/llvm-$LLVM/bin:$PATH \
        cargo install --locked bpf-linker --version "~$BPF_LINKER_VERSION" \
        --no-default-features --features "llvm-$LLVM"
fi

# 4. Python test dependencies in a project-local venv.
if [ ! -x "$VENV/bin/python" ]; then
    say "creating Python venv $VENV"
    python3 -m venv "$VENV"
fi
req=tests/requirements.txt
stamp="$VENV/.requirements.sha256"
if [ -f "$req" ] && ! sha256sum --status -c "$stamp" 2>/dev/null; then
    say "installing Python test dependencies from $req"
    "$VENV/bin/pip" install -q --disable-pip-version-check -r "$req"
    sha256sum "$req" > "$stamp"
fi

# 5. Node packages: tests/node always (the demo's MCP variant runs its filesystem MCP server;
#    the tests also use its `openai` for the shadow-AI test, the MCP SDK,
#    @grafana/lezer-traceql, @grafana/lezer-logql, @grafana/schema and TypeScript for the
#    dashboard tests); with `--tests` also the Node reference agent's own packages
#    (examples/agent-node: the OpenTelemetry JS SDK and `openai`): `npm ci` from each committed
#    lock file, again only when node_modules is missing or the lock file changed.
node_dirs=(tests/node)
if [ "${1:-}" = "--tests" ]; then
    node_dirs+=(examples/agent-node)
fi
for node_dir in "${node_dirs[@]}"; do
    node_stamp="$node_dir/node_modules/.package-lock.sha256"
    if ! command -v npm >/dev/null 2>&1; then
        say "npm is missing: install Node.js 20 with npm (the demo's MCP server and the Node tests run on /usr/bin/node)"
    elif [ ! -d "$node_dir/node_modules" ] || ! sha256sum --status -c "$node_stamp" 2>/dev/null; then
        say "installing Node dependencies from $node_dir/package-lock.json (npm ci)"
        (cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error)
        sha256sum "$node_dir/package-lock.json" > "$node_stamp"
    fi
done

# 6. Filesystems the probes need.
if [ ! -d /sys/kernel/tracing/events ]; then
    say "mounting tracefs at /sys/kernel/tracing"
    mount -t tracefs nodev /sys/kernel/tracing || say "could not mount tracefs (tracepoint probes will fail to attach)"
fi

say "ready"
