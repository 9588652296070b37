"""Leak checks that can fail: scan everything a program wrote for a secret and for any
12-character fragment of it (case-insensitive), and treat an output that should be there but is
not as a failure rather than as empty.

    outputs = collect(export_dir=DIR, files={"runbom stderr": PATH}, texts={"/metrics": TEXT})
    assert find_leaks(outputs, secret) == []

`collect` reads every file under an exporter's directory (at least `expect` must be there and,
with `nonempty`, not be empty), the named files, and texts already in hand (a scrape; None when
it failed). `find_leaks` returns one line per output that is missing or holds the secret or a
fragment of it, saying where (never the fragment itself in full).
"""

from __future__ import annotations

import urllib.request
from pathlib import Path

FRAGMENT = 12


def fragments(secret: str, n: int = FRAGMENT) -> set[str]:
    """Every n-character substring of `secret` (the secret itself when shorter)."""
    s = secret.lower()
    return {s[i:i + n] for i in range(len(s) - n + 1)} if len(s) >= n else {s}


def collect(export_dir: Path | None = None, expect: tuple[str, ...] = (),
            nonempty: tuple[str, ...] = (), files: dict[str, Path] | None = None,
            texts: dict[str, str | None] | None = None) -> dict[str, str | None]:
    """name → text of each output; None for an output that is missing."""
    out: dict[str, str | None] = {}
    if export_dir is not None:
        found = sorted(p for p in export_dir.rglob("*") if p.is_file()) \
            if export_dir.is_dir() else []
        for p in found:
            out[f"exporter file {p}"] = p.read_text(errors="replace")
        for name in expect:
            p = export_dir / name
            text = out.get(f"exporter file {p}")
            if text is None:
                out[f"exporter file {p}"] = None
            elif name in nonempty and not text.strip():
                out[f"exporter file {p} (empty)"] = None
        if not found:
            out[f"exporter directory {export_dir}"] = None
    for name, path in (files or {}).items():
        out[name] = path.read_text(errors="replace") if path.is_file() else None
    out.update(texts or {})
    return out


def scrape(url: str, timeout: float = 5.0) -> str | None:
    """The body of GET url (e.g. runbom's /metrics), None when it cannot be had."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 (a test's own URL)
            return r.read().decode(errors="replace")
    except OSError:
        return None


def find_leaks(outputs: dict[str, str | None], secret: str) -> list[str]:
    """One line per output that is missing, or holds `secret` or a 12-character piece of it."""
    assert len(secret) >= FRAGMENT, "a secret this short cannot be told from noise"
    pieces = sorted(fragments(secret))
    problems = []
    for name, text in outputs.items():
        if text is None:
            problems.append(f"{name}: missing (nothing to scan is not a pass)")
            continue
        low = text.lower()
        if secret.lower() in low:
            problems.append(f"{name}: holds the whole secret at offset {low.index(secret.lower())}")
            continue
        hit = next((p for p in pieces if p in low), None)
        if hit is not None:
            problems.append(f"{name}: holds a {len(hit)}-character piece of the secret "
                            f"({hit[:4]}…) at offset {low.index(hit)}")
    return problems
