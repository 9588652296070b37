"""The README's first command, end to end, as CI runs it: a fresh clone of this repository runs
`bash scripts/demo.sh`; its output must name the drift alert, the tool and the destination, and
point at the HTML report; then the same for the reference agent's MCP variant. Needs root (the demo loads eBPF programs).

The clone reuses this checkout's build directory (CARGO_TARGET_DIR) and the tests' build profile
(RUNBOM_BUILD_PROFILE=dev), so that it compiles only runbom's own crates: a release build of every
dependency would take about 13 minutes of a fresh CI machine's 40. Everything else (setup, venv,
build, run) is the demo's own. The release build is what `scripts/bench*.sh` build and measure.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(os.geteuid() != 0, reason="the demo loads eBPF programs: run as root")
def test_demo_from_a_fresh_clone(tmp_path: Path) -> None:
    clone = tmp_path / "runbom"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    env = dict(os.environ, CARGO_TARGET_DIR=str(ROOT / "target"), RUNBOM_BUILD_PROFILE="dev")
    run = subprocess.run(
        ["bash", "scripts/demo.sh"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-6000:]
    for needle in [
        "drift finding 1 [ERROR] undeclared_endpoint",
        "tool http_post",
        "http://127.0.0.1:18099/upload",
        "execute_tool http_post",
        "HTML report:",
    ]:
        assert needle in out, f"the demo's output should contain {needle!r}:\n{out[-6000:]}"
    # The MCP variant: its one finding, the undeclared MCP tool, with the server's file access.
    for needle in [
        "undeclared_mcp_tool",
        "mcp: tools/call write_file",
        "/tmp/runbom-agent/data/tickets/.on-call-hook.sh",
        "HTML report of the MCP variant:",
    ]:
        assert needle in out, f"the demo's output should contain {needle!r}:\n{out[-6000:]}"
    # Two findings in all, one per injected conversation: the benign one drifts nowhere (the
    # live line counts them).
    assert "· 2 drift finding(s)" in out and "· 3 drift finding(s)" not in out, out[-6000:]
    html = clone / "target" / "demo" / "report.html"
    assert html.is_file(), "the demo writes its HTML report into the clone's target/demo"
    assert "undeclared_endpoint" in html.read_text()
    mcp = (clone / "target" / "demo" / "report-mcp.html").read_text()
    # The MCP servers are components of the declared-vs-observed table, the undeclared tool a
    # row of its own.
    assert "undeclared_mcp_tool" in mcp and "mcp:filesystem" in mcp and "mcp-server" in mcp


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-v"]))
