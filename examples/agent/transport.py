"""The agent's I/O: HTTP/1.1 requests (plain or TLS) and subprocesses, blocking or asyncio.

The agent's logic (conversation.py) is written once, as generators that *yield* an operation
(`HttpRequest`, `ExecRequest`, or `McpCall` of mcp_client.py) and receive its result. A driver performs the operation in the
context current at the yield (so inside the span the logic opened):

* `SyncTransport`: `http.client` over `socket` + `ssl` (CPython's `_ssl` calls OpenSSL's
  `SSL_write_ex`/`SSL_read_ex`), `subprocess.Popen`;
* `AsyncTransport`: a small HTTP/1.1 client over asyncio streams (TLS through `ssl.SSLObject`,
  again `SSL_write_ex`/`SSL_read_ex`), `asyncio.create_subprocess_exec`.

Both inject W3C `traceparent` from the current context into every request, send the request
head and the body in separate writes (as httpx/h11 and http.client do), use one connection per
request (`Connection: close`), bound every wait by a timeout, and note for the ground truth the
connect, the HTTP request and the exec under the current span. Sockets are non-blocking in both
(a timeout makes CPython's blocking sockets non-blocking underneath), so the kernel sees
`connect()` return EINPROGRESS and the connection complete afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import ssl
import subprocess
import threading
import time
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

from opentelemetry import propagate

from mcp_client import McpCall, McpError, McpResult
from telemetry import Recorder

USER_AGENT = "support-agent/0.1 (runbom reference agent)"


@dataclass(frozen=True)
class HttpRequest:
    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None
    timeout: float = 10.0
    note: Mapping[str, Any] = field(default_factory=dict)  # extra ground-truth fields


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]  # names in lower case
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class ExecRequest:
    argv: tuple[str, ...]
    timeout: float = 10.0


@dataclass(frozen=True)
class ExecResult:
    pid: int
    returncode: int
    stdout: str
    stderr: str
    start_ns: int
    end_ns: int


Op = HttpRequest | ExecRequest | McpCall
Result = HttpResponse | ExecResult | McpResult
T = TypeVar("T")
Steps = Generator[Op, Result, T]  # what the agent's logic is made of


class TransportError(Exception):
    """An operation failed (refused, timed out, malformed answer)."""


@dataclass(frozen=True)
class _Target:
    scheme: str
    host: str
    port: int
    path: str  # path and query

    @classmethod
    def of(cls, url: str) -> _Target:
        u = urlsplit(url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise TransportError(f"not an http(s) URL: {url!r}")
        port = u.port or (443 if u.scheme == "https" else 80)
        path = (u.path or "/") + (f"?{u.query}" if u.query else "")
        return cls(u.scheme, u.hostname, port, path)

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        return self.host if self.port == default else f"{self.host}:{self.port}"


def _headers(req: HttpRequest, target: _Target) -> dict[str, str]:
    headers = {"Host": target.host_header, "User-Agent": USER_AGENT, "Accept": "*/*",
               "Connection": "close", **req.headers}
    if req.body is not None:
        headers["Content-Length"] = str(len(req.body))
    propagate.inject(headers)  # traceparent (+ tracestate/baggage) of the current span
    return headers


def _note_request(rec: Recorder, req: HttpRequest, target: _Target,
                  headers: Mapping[str, str]) -> dict[str, Any]:
    return rec.action(
        "http.request", method=req.method, scheme=target.scheme, host=target.host_header,
        server_address=target.host, server_port=target.port, path=target.path,
        url=f"{target.scheme}://{target.host_header}{target.path}",
        capture="openssl" if target.scheme == "https" else "socket",
        traceparent=headers.get("traceparent"),
        body_size=len(req.body or b""), separate_body_write=req.body is not None, **req.note)


class SyncTransport:
    """Blocking I/O on the calling thread."""

    def __init__(self, recorder: Recorder, tls: ssl.SSLContext) -> None:
        self._rec, self._tls = recorder, tls

    def perform(self, op: Op) -> Result:
        if isinstance(op, McpCall):
            try:
                return op.hub.call_sync(op)
            except McpError as e:
                raise TransportError(str(e)) from e
        return self.http(op) if isinstance(op, HttpRequest) else self.exec(op)

    def http(self, req: HttpRequest) -> HttpResponse:
        target = _Target.of(req.url)
        conn: http.client.HTTPConnection = (
            http.client.HTTPSConnection(target.host, target.port, timeout=req.timeout,
                                        context=self._tls)
            if target.scheme == "https" else
            http.client.HTTPConnection(target.host, target.port, timeout=req.timeout))
        try:
            with self._rec.timed("net.connect", address=target.host, port=target.port,
                                 transport="tcp", tls=target.scheme == "https",
                                 nonblocking=True) as connect:
                conn.connect()
                connect["local_port"] = conn.sock.getsockname()[1]
            headers = _headers(req, target)
            note = _note_request(self._rec, req, target, headers)
            conn.request(req.method, target.path, body=req.body, headers=headers)
            resp = conn.getresponse()
            body = resp.read()
            note.update(status_code=resp.status, end_ns=time.time_ns())
            return HttpResponse(resp.status, {k.lower(): v for k, v in resp.getheaders()}, body)
        except (OSError, http.client.HTTPException) as e:
            raise TransportError(f"{req.method} {req.url}: {e!r}") from e
        finally:
            conn.close()

    def exec(self, req: ExecRequest) -> ExecResult:
        start = time.time_ns()
        try:
            proc = subprocess.Popen(req.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
        except OSError as e:
            raise TransportError(f"cannot run {req.argv[0]}: {e.strerror}") from e
        note = self._note_exec(req, proc.pid, start)
        try:
            out, err = proc.communicate(timeout=req.timeout)
        except subprocess.TimeoutExpired as e:
            proc.kill()
            proc.communicate()
            raise TransportError(f"{req.argv[0]} ran longer than {req.timeout} s") from e
        note["end_ns"] = time.time_ns()
        return ExecResult(proc.pid, proc.returncode, out, err, start, note["end_ns"])

    def _note_exec(self, req: ExecRequest, pid: int, start: int) -> dict[str, Any]:
        return self._rec.action("process.exec", start_ns=start, pid=pid, thread_id=pid,
                                parent_pid=os.getpid(), parent_thread_id=threading.get_native_id(),
                                executable=req.argv[0], argv=list(req.argv))


class AsyncTransport(SyncTransport):
    """Non-blocking I/O on the running asyncio loop."""

    async def perform_async(self, op: Op) -> Result:
        if isinstance(op, HttpRequest):
            return await self.http_async(op)
        if isinstance(op, McpCall):
            try:
                return await op.hub.call_async(op)
            except McpError as e:
                raise TransportError(str(e)) from e
        return await self.exec_async(op)

    async def http_async(self, req: HttpRequest) -> HttpResponse:
        target = _Target.of(req.url)
        tls = self._tls if target.scheme == "https" else None
        try:
            async with asyncio.timeout(req.timeout):
                with self._rec.timed("net.connect", address=target.host, port=target.port,
                                     transport="tcp", tls=tls is not None,
                                     nonblocking=True) as connect:
                    reader, writer = await asyncio.open_connection(
                        target.host, target.port, ssl=tls,
                        server_hostname=target.host if tls else None)
                    connect["local_port"] = writer.get_extra_info("sockname")[1]
                try:
                    headers = _headers(req, target)
                    note = _note_request(self._rec, req, target, headers)
                    head = f"{req.method} {target.path} HTTP/1.1\r\n" + "".join(
                        f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
                    writer.write(head.encode("latin-1"))
                    await writer.drain()
                    if req.body:
                        writer.write(req.body)
                        await writer.drain()
                    resp = await _read_response(reader)
                    note.update(status_code=resp.status, end_ns=time.time_ns())
                    return resp
                finally:
                    writer.close()
                    with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
                        await asyncio.wait_for(writer.wait_closed(), 2.0)
        except (OSError, ssl.SSLError, TimeoutError, asyncio.IncompleteReadError,
                ValueError) as e:
            raise TransportError(f"{req.method} {req.url}: {e!r}") from e

    async def exec_async(self, req: ExecRequest) -> ExecResult:
        start = time.time_ns()
        try:
            proc = await asyncio.create_subprocess_exec(
                *req.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE)
        except OSError as e:
            raise TransportError(f"cannot run {req.argv[0]}: {e.strerror}") from e
        note = self._note_exec(req, proc.pid, start)
        try:
            async with asyncio.timeout(req.timeout):
                out, err = await proc.communicate()
        except TimeoutError as e:
            proc.kill()
            await proc.wait()
            raise TransportError(f"{req.argv[0]} ran longer than {req.timeout} s") from e
        note["end_ns"] = time.time_ns()
        return ExecResult(proc.pid, proc.returncode or 0, out.decode(), err.decode(), start,
                          note["end_ns"])


async def _read_response(reader: asyncio.StreamReader) -> HttpResponse:
    """Status line, headers, then a Content-Length body (or the rest of the stream)."""
    status_line = (await reader.readline()).decode("latin-1")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
        raise ValueError(f"not an HTTP/1.x status line: {status_line!r}")
    headers: dict[str, str] = {}
    while line := (await reader.readline()).decode("latin-1").rstrip("\r\n"):
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    else:
        body = await reader.read()
    return HttpResponse(int(parts[1]), headers, body)


def drive_sync(steps: Steps[T], transport: SyncTransport) -> T:
    """Run the agent's logic, performing each operation it yields with blocking I/O."""
    try:
        op = next(steps)
        while True:
            try:
                result = transport.perform(op)
            except TransportError as e:
                op = steps.throw(e)
            else:
                op = steps.send(result)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


async def drive_async(steps: Steps[T], transport: AsyncTransport) -> T:
    """Run the agent's logic, performing each operation it yields on the asyncio loop."""
    try:
        op = next(steps)
        while True:
            try:
                result = await transport.perform_async(op)
            except TransportError as e:
                op = steps.throw(e)
            else:
                op = steps.send(result)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
