"""Summarises what runbom exported for the demo workload (and everything else it saw)."""

import collections
import json
import pathlib
import sys


def spans(path: pathlib.Path):
    for line in path.read_text(encoding="utf-8").splitlines():
        for rs in json.loads(line).get("resourceSpans", []):
            for ss in rs.get("scopeSpans", []):
                yield from ss.get("spans", [])


def attr(span, key):
    for a in span.get("attributes", []):
        if a["key"] == key:
            return next(iter(a["value"].values()))
    return None


def main() -> None:
    data = pathlib.Path(sys.argv[1])
    pid = json.loads(pathlib.Path(sys.argv[2]).read_text())["pid"]
    all_spans = list(spans(data / "traces.jsonl"))
    kinds = collections.Counter(attr(s, "runbom.event") for s in all_spans)
    print(f"[demo] spans exported on this host: {sum(kinds.values())} "
          + ", ".join(f"{k} {n}" for k, n in kinds.most_common()))
    print(f"[demo] what the workload (pid {pid}) and its children did, as the kernel saw it:")
    mine = [s for s in all_spans
            if str(pid) in (str(attr(s, "process.pid")), str(attr(s, "process.parent_pid")))]
    libraries = 0
    for s in sorted(mine, key=lambda s: int(s["startTimeUnixNano"])):
        path = attr(s, "file.path") or ""
        if path.endswith((".pyc", ".so", "ld.so.cache")) or "/lib/python" in path:
            libraries += 1  # interpreter start-up: imports and shared libraries
            continue
        if attr(s, "runbom.event") == "process.exec":
            extra = attr(s, "process.command_line")
        else:
            extra = attr(s, "error.type") or ""
        print(f"    {s['name']:<50} {extra}")
    print(f"    (and {libraries} opens of Python modules and shared libraries)")


if __name__ == "__main__":
    main()
