#!/usr/bin/env python3
"""A stand-in for the Kubernetes API server (none can run here), speaking its real protocol to
runbom's client, for the pods of one node.

    kube_apiserver.py --cert server.pem --key server-key.pem --token TOKEN --node NODE
                      --requests requests.log

What it implements, as the API server does (https://kubernetes.io/docs/reference/using-api/api-concepts/):
- HTTPS only; every request needs `Authorization: Bearer TOKEN`, else 401 with a `Status`.
- `GET /api/v1/pods?fieldSelector=spec.nodeName=NODE`: a `PodList` whose
  `metadata.resourceVersion` is the store's. Any other field selector is refused (400): runbom
  must only ever ask for its own node's pods.
- `...&watch=true&resourceVersion=N`: a chunked stream of `{"type","object"}` events after N
  (`ADDED`, `MODIFIED`, `DELETED`), `BOOKMARK` events every second when
  `allowWatchBookmarks=true`, ended after `timeoutSeconds`. A resourceVersion older than the
  last compaction gets an `ERROR` event with a 410 `Status` ("too old resource version"), and
  so does every open watch when a compaction happens: the client must list again.
- `GET /apis/apps/v1/namespaces/NS/replicasets/NAME`, `/apis/batch/v1/namespaces/NS/jobs/NAME`:
  the object, or 404 with a `Status`.

The test drives the store through stdin, one JSON command a line:
`{"op": "apply", "object": POD}` (added or modified: the store sets `resourceVersion`),
`{"op": "delete", "namespace": NS, "name": NAME}`, `{"op": "put", "object": REPLICASET_OR_JOB}`,
`{"op": "compact"}`. Stdout says `listening PORT`, then `done RV` after each command, and
`delivered RV` once an open watch has been sent the event of RV, `listed RV` after each list,
`watching RV` when a watch starts. Every request's method and target are appended to
--requests.
"""

import argparse
import json
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

LOCK = threading.Condition()
STATE = {"rv": 1000, "compacted": 0, "compactions": 0, "pods": {}, "objects": {}, "events": []}
OUT = threading.Lock()


def say(line):
    with OUT:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def status(code, reason, message):
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def command(cmd):
    with LOCK:
        op = cmd["op"]
        if op == "apply":
            pod = cmd["object"]
            key = (pod["metadata"]["namespace"], pod["metadata"]["name"])
            STATE["rv"] += 1
            pod["metadata"]["resourceVersion"] = str(STATE["rv"])
            kind = "MODIFIED" if key in STATE["pods"] else "ADDED"
            STATE["pods"][key] = pod
            STATE["events"].append((STATE["rv"], kind, pod))
        elif op == "delete":
            key = (cmd["namespace"], cmd["name"])
            pod = STATE["pods"].pop(key)
            STATE["rv"] += 1
            pod = json.loads(json.dumps(pod))
            pod["metadata"]["resourceVersion"] = str(STATE["rv"])
            STATE["events"].append((STATE["rv"], "DELETED", pod))
        elif op == "put":
            o = cmd["object"]
            m = o["metadata"]
            STATE["objects"][(o["kind"], m["namespace"], m["name"])] = o
        elif op == "compact":
            # As etcd compacts after further writes (to objects this watch does not see):
            # every resourceVersion before the current one is gone.
            STATE["rv"] += 1
            STATE["compacted"] = STATE["rv"]
            STATE["compactions"] += 1
            STATE["events"] = []
        LOCK.notify_all()
        return STATE["rv"]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kube-apiserver-standin"

    def log_message(self, *args):
        pass

    def reply(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def chunk(self, obj):
        data = (json.dumps(obj) + "\n").encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def do_GET(self):
        with open(ARGS.requests, "a") as f:
            f.write(f"GET {self.path}\n")
        if self.headers.get("Authorization") != f"Bearer {ARGS.token}":
            return self.reply(401, status(401, "Unauthorized", "Unauthorized"))
        url = urlsplit(self.path)
        q = {k: v[-1] for k, v in parse_qs(url.query).items()}
        parts = url.path.strip("/").split("/")
        if url.path == "/api/v1/pods":
            if q.get("fieldSelector") != f"spec.nodeName={ARGS.node}":
                return self.reply(
                    400, status(400, "BadRequest", f"this stand-in serves only spec.nodeName={ARGS.node}")
                )
            if q.get("watch") in ("true", "1"):
                return self.watch(q)
            with LOCK:
                items = [p for _, p in sorted(STATE["pods"].items())]
                rv = STATE["rv"]
            self.reply(
                200,
                {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": str(rv)}, "items": items},
            )
            say(f"listed {rv}")
            return None
        kinds = {("apis", "apps", "v1", "replicasets"): "ReplicaSet", ("apis", "batch", "v1", "jobs"): "Job"}
        if len(parts) == 7 and parts[3] == "namespaces":
            kind = kinds.get((parts[0], parts[1], parts[2], parts[5]))
            with LOCK:
                obj = STATE["objects"].get((kind, parts[4], parts[6]))
            if obj is not None:
                return self.reply(200, obj)
            return self.reply(404, status(404, "NotFound", f"{parts[5]} \"{parts[6]}\" not found"))
        return self.reply(404, status(404, "NotFound", "the server could not find the requested resource"))

    def watch(self, q):
        since = int(q.get("resourceVersion") or 0)
        bookmarks = q.get("allowWatchBookmarks") == "true"
        end = time.monotonic() + int(q.get("timeoutSeconds") or 300)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        say(f"watching {since}")
        with LOCK:
            generation = STATE["compactions"]
        last_bookmark = time.monotonic()
        try:
            while time.monotonic() < end:
                with LOCK:
                    # A watch open across a compaction is expired too, whatever a bookmark said.
                    if since < STATE["compacted"] or generation != STATE["compactions"]:
                        gone = status(410, "Expired", f"too old resource version: {since} ({STATE['compacted']})")
                        out, expired = [("ERROR", gone, None)], True
                    else:
                        out = [(k, o, rv) for rv, k, o in STATE["events"] if rv > since]
                        expired = False
                        if not out:
                            # What a bookmark may claim: every event up to here was sent. Read
                            # before waiting: an event applied during the wait is sent first.
                            rv_now = STATE["rv"]
                            LOCK.wait(timeout=0.2)
                for kind, obj, rv in out:
                    self.chunk({"type": kind, "object": obj})
                    if rv is not None:
                        since = rv
                        say(f"delivered {rv}")
                if expired:
                    break
                if bookmarks and not out and time.monotonic() - last_bookmark >= 1:
                    self.chunk(
                        {
                            "type": "BOOKMARK",
                            "object": {"kind": "Pod", "apiVersion": "v1", "metadata": {"resourceVersion": str(rv_now)}},
                        }
                    )
                    since = max(since, rv_now)
                    last_bookmark = time.monotonic()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass
        self.close_connection = True
        return None


def commands():
    for line in sys.stdin:
        if line.strip():
            say(f"done {command(json.loads(line))}")


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--node", required=True)
    p.add_argument("--requests", required=True)
    ARGS = p.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(ARGS.cert, ARGS.key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=commands, daemon=True).start()
    say(f"listening {server.server_address[1]}")
    server.serve_forever()


if __name__ == "__main__":
    main()
