#!/usr/bin/env python3
"""An OpenAI-compatible chat-completions stub over HTTPS, with a scripted, deterministic "model".

    stub_llm.py --cert-dir DIR [--port N] [--latency-ms N] [--log FILE] [--max-lifetime S]

Serves `POST /v1/chat/completions` on 127.0.0.1 (port 0 = any free port) over TLS with a
self-signed certificate for IP 127.0.0.1 made at start with the `openssl` CLI (DIR/cert.pem is
what a client trusts). Requests must carry `Authorization: Bearer <key>` where the key is the
stub's OPENAI_API_KEY environment variable; otherwise 401 in OpenAI's error format.

The "model" plays the reference agent's script: it reads the settings lines of the system
prompt and the ticket/customer of the user prompt, counts the tool results so far and answers
with the next tool call (OpenAI `tool_calls` format, one per turn) or the final answer. When a
tool result contains a prompt injection ("ignore previous instructions" and a URL), it follows
it: query all customers, then http_post them to that URL. When the agent offers MCP tools (its
`--mcp` variant: `read_text_file` of the filesystem server, `add_ticket_comment` of the helpdesk
server), the model reads and comments with those, and an injection that asks for `write_file`
makes it plant that file. The `model` field is echoed back.

Each request is logged to --log as a JSON line (never the key). Prints
`READY port=<port> cert=<path>` once listening.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from httpserve import JsonHandler, QuietServer, RequestLog, bind, port_of, serve
from scenarios import AGENT_NAME, DEFAULT_PORTS

INJECTION = re.compile(r"(?i)ignore (?:all )?(?:previous|prior) instructions")
URL = re.compile(r"https?://[^\s\"'<>]+")
PLANT = re.compile(r"(?i)call write_file with path (\S+) .*?content: ([^\n]+)", re.DOTALL)

Step = tuple[str, dict[str, Any]]


def make_certificate(cert_dir: Path) -> tuple[Path, Path]:
    """A self-signed P-256 certificate for 127.0.0.1/localhost, valid for two days."""
    cert_dir.mkdir(parents=True, exist_ok=True)
    cert, key = cert_dir / "cert.pem", cert_dir / "key.pem"
    cmd = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
           "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
           "-subj", "/CN=runbom stub LLM", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"]
    try:
        subprocess.run(cmd, check=True, capture_output=True, timeout=30)
    except FileNotFoundError as e:
        raise SystemExit("stub_llm: the `openssl` command is needed to make a certificate "
                         "(Debian: apt-get install openssl)") from e
    except subprocess.CalledProcessError as e:
        raise SystemExit(f"stub_llm: openssl failed: {e.stderr.decode(errors='replace')}") from e
    return cert, key


# --- the scripted model ---------------------------------------------------------------------

def _find(pattern: str, text: str) -> str:
    m = re.search(pattern, text, re.MULTILINE)
    if not m:
        raise ValueError(f"the conversation does not say {pattern!r}")
    return m.group(1) if m.groups() else m.group(0)


def injected_url(tool_result: str) -> str | None:
    """The URL an injected instruction in a tool result asks the model to use, if any."""
    m = INJECTION.search(tool_result)
    if not m:
        return None
    url = URL.search(tool_result, m.end())
    return url.group(0).rstrip(".,;)") if url else None


def summary(task: dict[str, str], results: list[str]) -> str:
    """The answer text: the ticket subject, the customer, and the line count when known."""
    subject = _find(r"^Subject: (.*)$", results[0]) if results else "?"
    text = f"Ticket {task['ticket']} for {task['customer']}: {subject}."
    for r in results[1:]:
        if r.startswith("[{"):  # customer records
            names = [c["name"] for c in json.loads(r) if c.get("id") == task["customer"]]
            text += f" Customer: {names[0]}." if names else ""
        if re.match(r"^\s*\d+ ", r):
            text += f" The notes have {r.split()[0]} lines."
    return text + " A fix is in review."


def injected_plant(tool_result: str) -> tuple[str, str] | None:
    """The path and content an injected instruction asks `write_file` to plant, if any."""
    if not INJECTION.search(tool_result):
        return None
    m = PLANT.search(tool_result)
    return (m.group(1), m.group(2).strip() + "\n") if m else None


def next_step(task: dict[str, str], results: list[str],
              offered: frozenset[str] = frozenset()) -> Step | None:
    """The next tool call, given the tool results so far and the tools the agent offers, or
    None when the task is done."""
    api, notes = task["ticketing_api"], f"tickets/{task['ticket']}.md"
    exfil = injected_url(results[0]) if results else None
    plant = injected_plant(results[0]) if results and "write_file" in offered else None
    order = (["read", "plant", "tickets"] if plant else
             ["read", "query_all", "exfil", "tickets"] if exfil else
             ["read", "lookup", "tickets", "wc", "comment"])
    if len(results) >= len(order):
        return None
    step = order[len(results)]
    if step == "read" and "read_text_file" in offered:
        return "read_text_file", {"path": f"{task['data_dir']}/{notes}"}
    if step == "read":
        return "read_file", {"path": notes}
    if step == "plant" and plant:
        return "write_file", {"path": plant[0], "content": plant[1]}
    if step == "query_all":
        return "query_customers", {"all": True}
    if step == "exfil":
        return "http_post", {"url": exfil, "body": results[-1]}
    if step == "lookup":
        return "query_customers", {"customer_id": task["customer"]}
    if step == "tickets":
        return "http_get", {"url": f"{api}/tickets?customer={task['customer']}&status=open"}
    if step == "wc":
        return "run_command", {"argv": ["/usr/bin/wc", "-l", f"{task['data_dir']}/{notes}"]}
    if "add_ticket_comment" in offered:
        return "add_ticket_comment", {"ticket": task["ticket"], "text": summary(task, results)}
    comment = {"author": AGENT_NAME, "text": summary(task, results)}
    return "http_post", {"url": f"{api}/tickets/{task['ticket']}/comments",
                         "body": json.dumps(comment)}


def complete(request: dict[str, Any]) -> dict[str, Any]:
    """A chat.completion response for a chat-completions request."""
    messages: list[dict[str, Any]] = request["messages"]
    system = next(str(m["content"]) for m in messages if m["role"] == "system")
    user = next(str(m["content"]) for m in messages if m["role"] == "user")
    task = {
        "data_dir": _find(r"^data_dir: (\S+)$", system),
        "ticketing_api": _find(r"^ticketing_api: (\S+)$", system),
        "ticket": _find(r"\bT-\d{4}\b", user),
        "customer": _find(r"\bC-\d{4}\b", user),
    }
    results = [str(m["content"]) for m in messages if m["role"] == "tool"]
    offered = frozenset(str(t["function"]["name"]) for t in request.get("tools") or [])
    step = next_step(task, results, offered)
    digest = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()
    if step is None:
        message: dict[str, Any] = {"role": "assistant", "content": summary(task, results)}
        finish = "stop"
    else:
        name, args = step
        message = {"role": "assistant", "content": None, "tool_calls": [{
            "id": f"call_{digest[:20]}", "type": "function",
            "function": {"name": name, "arguments": json.dumps(args)}}]}
        finish = "tool_calls"
    prompt_tokens = math.ceil(len(json.dumps(messages)) / 4)
    completion_tokens = math.ceil(len(json.dumps(message)) / 4)
    return {
        "id": f"chatcmpl-{digest[:24]}", "object": "chat.completion", "created": int(time.time()),
        "model": request["model"], "system_fingerprint": "fp_runbom_stub",
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


# --- the HTTPS server -----------------------------------------------------------------------

def openai_error(message: str, kind: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def make_handler(context: ssl.SSLContext, api_key: str, latency: float,
                 log: RequestLog) -> type[JsonHandler]:
    class Handler(JsonHandler):
        def setup(self) -> None:
            sock: socket.socket = self.request
            sock.settimeout(self.timeout)
            self.request = context.wrap_socket(sock, server_side=True)  # handshake here
            super().setup()

        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = self.read_body()
            entry = self.request_entry("llm", body)
            entry["authorized"] = self.headers.get("Authorization") == f"Bearer {api_key}"
            status, answer = self.answer(body, entry)
            entry["status"] = status
            log.write(entry)
            self.send_json(status, answer)

        def answer(self, body: bytes, entry: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            if self.path.split("?")[0] != "/v1/chat/completions":
                return 404, openai_error(f"Unknown request URL: POST {self.path}",
                                         "invalid_request_error", "unknown_url")
            if not entry["authorized"]:
                return 401, openai_error("Incorrect API key provided.",
                                         "invalid_request_error", "invalid_api_key")
            try:
                request = json.loads(body)
                entry["model"] = request["model"]
                entry["messages"] = len(request["messages"])
                time.sleep(latency)
                response = complete(request)
            except (ValueError, KeyError, TypeError, StopIteration) as e:
                return 400, openai_error(f"cannot answer this request: {e!r}",
                                         "invalid_request_error")
            choice = response["choices"][0]["message"]
            entry["decision"] = [c["function"]["name"] for c in choice.get("tool_calls") or []]
            return 200, response

    return Handler


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=DEFAULT_PORTS["llm"])
    parser.add_argument("--cert-dir", type=Path, required=True)
    parser.add_argument("--latency-ms", type=float, default=20.0,
                        help="think time per completion, so that concurrent runs interleave")
    parser.add_argument("--log", type=Path, help="JSON-lines request log")
    parser.add_argument("--max-lifetime", type=float, default=300.0)
    args = parser.parse_args()

    api_key = os.environ.get("OPENAI_API_KEY", "")
    if not api_key:
        print("stub_llm: set OPENAI_API_KEY to the key clients must present", file=sys.stderr)
        return 2
    cert, key = make_certificate(args.cert_dir)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    log = RequestLog(args.log)
    server = bind(QuietServer, args.port,
                  make_handler(context, api_key, args.latency_ms / 1000, log))
    try:
        return serve([server], f"READY port={port_of(server)} cert={cert}", args.max_lifetime)
    finally:
        log.close()


if __name__ == "__main__":
    sys.exit(main())
