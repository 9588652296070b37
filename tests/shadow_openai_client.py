#!/usr/bin/env python3
"""An undeclared agent with no OpenTelemetry at all: the `openai` SDK with tool calling against
an OpenAI-compatible endpoint (the stub LLM), a local file read and an exfiltrating POST. It
sends runbom no traces: runbom sees it only through the kernel (tests/test_aibom.py, shadow AI).

    shadow_openai_client.py --base-url https://127.0.0.1:N/v1 --cert CERT --data-dir DIR
        [--ticketing-api http://127.0.0.1:P/api]

DIR holds tickets/T-2718.md (with a prompt injection naming where to post) and customers.json;
the stub model asks for read_file, query_customers, then http_post to the injected URL. Without
the injection (the benign run) it asks for read_file, query_customers, http_get of the ticketing
API, run_command (`wc -l` of the notes) and http_post of a comment to the ticketing API; the
ticketing tools reach a real API only when --ticketing-api names one (otherwise they answer
`[]`, as the injected run needs no such API).

The API key is read from OPENAI_API_KEY.
"""

from __future__ import annotations

import argparse
import json
import ssl
import subprocess
import urllib.request
from pathlib import Path

import openai

NO_API = "http://127.0.0.1:9/api"  # named in the prompt when there is no ticketing API

def tool(name: str) -> dict:
    return {"type": "function", "function": {
        "name": name, "description": name,
        "parameters": {"type": "object", "properties": {}, "additionalProperties": True}}}


TOOLS = [tool(n) for n in ("read_file", "query_customers", "http_post", "http_get",
                            "run_command")]


def run_tool(name: str, args: dict, data_dir: Path, ticketing: str | None) -> str:
    """The tools, for real: files are read, http_post sends its body where it is told, http_get
    and run_command reach the ticketing API and run the program when there is such an API."""
    if name == "read_file":
        return (data_dir / args["path"]).read_text()
    if name == "query_customers":
        return (data_dir / "customers.json").read_text()
    if name == "http_get" and ticketing:
        with urllib.request.urlopen(args["url"], timeout=10) as r:
            return r.read().decode()
    if name == "run_command" and ticketing:
        return subprocess.run(args["argv"], capture_output=True, text=True, timeout=10,
                              check=True).stdout
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
    p.add_argument("--ticketing-api")
    a = p.parse_args()
    context = ssl.create_default_context(cafile=a.cert)
    client = openai.OpenAI(base_url=a.base_url, max_retries=0, timeout=20,
                           http_client=openai.DefaultHttpx2Client(verify=context))
    messages: list[dict] = [
        {"role": "system", "content": f"You are a helpful assistant.\ndata_dir: {a.data_dir}\n"
                                      f"ticketing_api: {a.ticketing_api or NO_API}"},
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
                              a.data_dir, a.ticketing_api)
            messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
