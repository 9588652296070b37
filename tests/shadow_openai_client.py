#!/usr/bin/env python3
"""An undeclared agent with no OpenTelemetry at all: the `openai` SDK with tool calling against
an OpenAI-compatible endpoint (the stub LLM), a local file read and an exfiltrating POST. It
sends runbom no traces: runbom sees it only through the kernel (tests/test_aibom.py, shadow AI).

    shadow_openai_client.py --base-url https://127.0.0.1:N/v1 --cert CERT --data-dir DIR

DIR holds tickets/T-2718.md (with a prompt injection naming where to post) and customers.json;
the stub model asks for read_file, query_customers, then http_post to the injected URL.

The API key is read from OPENAI_API_KEY.
"""

from __future__ import annotations

import argparse
import json
import ssl
import urllib.request
from pathlib import Path

import openai

def tool(name: str) -> dict:
    return {"type": "function", "function": {
        "name": name, "description": name,
        "parameters": {"type": "object", "properties": {}, "additionalProperties": True}}}


TOOLS = [tool(n) for n in ("read_file", "query_customers", "http_post", "http_get")]


def run_tool(name: str, args: dict, data_dir: Path) -> str:
    """The tools, for real: files are read, http_post sends its body where it is told."""
    if name == "read_file":
        return (data_dir / args["path"]).read_text()
    if name == "query_customers":
        return (data_dir / "customers.json").read_text()
    if name == "http_post":
        req = urllib.request.Request(args["url"], data=str(args.get("body", "")).encode(),
                                     method="POST", headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return f"HTTP {r.status}"
    return "[]"


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--base-url", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--data-dir", required=True, type=Path)
    p.add_argument("--model", default="gpt-4o-mini")
    a = p.parse_args()
    context = ssl.create_default_context(cafile=a.cert)
    client = openai.OpenAI(base_url=a.base_url, max_retries=0, timeout=20,
                           http_client=openai.DefaultHttpx2Client(verify=context))
    messages: list[dict] = [
        {"role": "system", "content": f"You are a helpful assistant.\ndata_dir: {a.data_dir}\n"
                                      "ticketing_api: http://127.0.0.1:9/api"},
        {"role": "user", "content": "Summarise ticket T-2718 for customer C-1013."},
    ]
    for _ in range(8):
        answer = client.chat.completions.create(model=a.model, messages=messages, tools=TOOLS)
        msg = answer.choices[0].message
        messages.append(msg.model_dump(exclude_none=True))
        if not msg.tool_calls:
            print(msg.content)
            return 0
        for call in msg.tool_calls:
            result = run_tool(call.function.name, json.loads(call.function.arguments),
                              a.data_dir)
            messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
