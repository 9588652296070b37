"""Kubernetes-like pods on a bare host, for sidecar mode's test and benchmark: a pod is a cgroup
v2 directory with one child per container (as the kubelet lays them out); a command runs in a
container by writing its shell's pid into the child's cgroup.procs before exec'ing it, as a given
uid with no capabilities when asked."""

from __future__ import annotations

from pathlib import Path


def cgroup2_mount() -> Path | None:
    """Where cgroup v2 is mounted (None: not at all)."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, right = line.split(" - ", 1)
        if right.split()[0] == "cgroup2":
            return Path(left.split()[4])
    return None


def in_cgroup(cgroup_dir: Path, uid: int | None, argv: list[str]) -> list[str]:
    """`argv` run in `cgroup_dir`, as `uid` when given (no capabilities, no supplementary
    groups)."""
    as_uid = [] if uid is None else ["setpriv", f"--reuid={uid}", f"--regid={uid}",
                                     "--clear-groups", "--inh-caps=-all"]
    return ["/bin/sh", "-c", 'echo $$ > "$0/cgroup.procs" && shift && exec "$@"',
            str(cgroup_dir), "-", *as_uid, *argv]

