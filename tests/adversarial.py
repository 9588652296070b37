"""Hostile OTLP clients for runbom's reliability tests (sidecar/runbom/tests/reliability.rs).

Each mode attacks a receiver on 127.0.0.1 for a bounded time and prints one JSON object:

  h2flood PORT CONNS STREAMS SECONDS
      HTTP/2 (raw frames, no library): CONNS connections each open STREAMS gRPC export
      streams whose message announces 4 MB and sends up to 1 MB (as flow control allows),
      never finishing them. Reports the server's SETTINGS_MAX_CONCURRENT_STREAMS, the streams
      it refused and the bytes it took.
  slowbody PORT CONNS SECONDS
      HTTP/1.1: CONNS connections each POST /v1/traces announcing 500 KB, send 100 KB, then
      stall. Reports how many were answered (and with which status) within SECONDS.
  grpcok PORT
      One good gRPC export (an empty request, grpcio): {"ok": true} when it succeeded.
  pings PORT COUNT INTERVAL_MS OPEN_STREAM
      HTTP/2 with the h2 library: COUNT pings INTERVAL_MS apart, with one export stream left
      open first when OPEN_STREAM is 1. Reports the pings acknowledged, the GOAWAY received
      (error code, debug data, after which ping) and whether the server closed the connection.
"""

import json
import socket
import struct
import sys
import threading
import time

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE = 0, 1, 3, 4, 6, 7, 8
EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def literal(name, value):
    """An HPACK literal header field without indexing, new name, no Huffman (short strings)."""
    name, value = name.encode(), value.encode()
    assert len(name) < 127 and len(value) < 127
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


def export_header_fields(port):
    """The header fields of a gRPC trace export."""
    return [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", EXPORT),
        (":authority", f"127.0.0.1:{port}"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ]


def request_headers(port):
    return b"".join(literal(n, v) for n, v in export_header_fields(port))


class H2Conn:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.sendall(PREFACE + frame(SETTINGS, 0, 0))
        self.buf = b""
        self.settings = {}
        self.conn_window = 65535
        self.initial_window = 65535
        self.windows = {}
        self.refused = set()
        self.goaway = False

    def read_frames(self, block):
        self.sock.setblocking(block)
        try:
            data = self.sock.recv(65536)
            if not data:
                self.goaway = True
            self.buf += data
        except (BlockingIOError, socket.timeout):
            pass
        except OSError:
            self.goaway = True
        finally:
            self.sock.setblocking(True)
            self.sock.settimeout(5)
        while len(self.buf) >= 9:
            length = int.from_bytes(self.buf[:3], "big")
            if len(self.buf) < 9 + length:
                break
            kind, flags = self.buf[3], self.buf[4]
            stream = struct.unpack(">I", self.buf[5:9])[0] & 0x7FFFFFFF
            payload = self.buf[9 : 9 + length]
            self.buf = self.buf[9 + length :]
            if kind == SETTINGS and not flags & 1:
                for i in range(0, len(payload), 6):
                    ident, value = struct.unpack(">HI", payload[i : i + 6])
                    self.settings[ident] = value
                    if ident == 4:
                        self.initial_window = value
                self.sock.sendall(frame(SETTINGS, 1, 0))
            elif kind == WINDOW_UPDATE:
                inc = struct.unpack(">I", payload)[0] & 0x7FFFFFFF
                if stream == 0:
                    self.conn_window += inc
                elif stream in self.windows:
                    self.windows[stream] += inc
            elif kind == RST_STREAM:
                self.refused.add(stream)
                self.windows.pop(stream, None)
            elif kind == PING and not flags & 1:
                self.sock.sendall(frame(PING, 1, 0, payload))
            elif kind == GOAWAY:
                self.goaway = True


def h2flood(port, conns, streams, seconds):
    result = {"max_concurrent_streams": None, "opened": 0, "refused": 0, "bytes_sent": 0}
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def attack():
        try:
            c = H2Conn(port)
        except OSError:
            return
        while 3 not in c.settings and time.monotonic() < deadline and not c.goaway:
            c.read_frames(True)
        with lock:
            result["max_concurrent_streams"] = c.settings.get(3)
        headers = request_headers(port)
        sent = {}
        for i in range(streams):
            sid = 1 + 2 * i
            try:
                c.sock.sendall(frame(HEADERS, 0x4, sid, headers))
                # The gRPC message header: uncompressed, 4,000,000 bytes announced.
                c.sock.sendall(frame(DATA, 0, sid, b"\x00" + struct.pack(">I", 4_000_000)))
            except OSError:
                break
            c.windows[sid] = c.initial_window - 5
            c.conn_window -= 5
            sent[sid] = 5
        with lock:
            result["opened"] += len(sent)
        chunk = b"\x00" * 16384
        while time.monotonic() < deadline and not c.goaway:
            c.read_frames(False)
            progressed = False
            for sid in list(c.windows):
                room = min(c.windows[sid], c.conn_window, 16384, 1_000_000 - sent[sid])
                if room <= 0:
                    continue
                try:
                    c.sock.sendall(frame(DATA, 0, sid, chunk[:room]))
                except OSError:
                    c.goaway = True
                    break
                c.windows[sid] -= room
                c.conn_window -= room
                sent[sid] += room
                progressed = True
            if not progressed:
                c.read_frames(True)
        with lock:
            result["refused"] += len(c.refused)
            result["bytes_sent"] += sum(sent.values())
        # Leave the connection open, the streams unfinished, until the deadline.
        while time.monotonic() < deadline:
            time.sleep(0.05)
        c.sock.close()

    threads = [threading.Thread(target=attack) for _ in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 10)
    print(json.dumps(result))


def slowbody(port, conns, seconds):
    statuses = {}
    lock = threading.Lock()
    socks = []
    head = (
        "POST /v1/traces HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-protobuf\r\n"
        "Content-Length: 500000\r\n\r\n"
    ).encode()
    for _ in range(conns):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(head + b"\x0a" * 100_000)
            socks.append(s)
        except OSError:
            pass

    def wait(s):
        s.settimeout(seconds)
        try:
            line = s.recv(64).split(b"\r\n", 1)[0].decode(errors="replace")
            status = line.split(" ")[1] if line.startswith("HTTP/") else "closed"
        except socket.timeout:
            status = "none"
        except OSError:
            status = "closed"
        with lock:
            statuses[status] = statuses.get(status, 0) + 1
        s.close()

    threads = [threading.Thread(target=wait, args=(s,)) for s in socks]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 10)
    print(json.dumps({"connected": len(socks), "answers": statuses}))


def grpcok(port):
    import grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(EXPORT)
        try:
            call(b"", timeout=10)
            print(json.dumps({"ok": True}))
        except grpc.RpcError as e:
            print(json.dumps({"ok": False, "error": str(e.code())}))


def pings(port, count, interval_ms, open_stream):
    import h2.config
    import h2.connection
    import h2.events

    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    if open_stream:
        conn.send_headers(1, export_header_fields(port))
    sock.sendall(conn.data_to_send())
    result = {"sent": 0, "acked": 0, "goaway": None, "closed": False}

    def pump(seconds):
        end = time.monotonic() + seconds
        while not result["closed"]:
            left = end - time.monotonic()
            if left <= 0:
                return
            sock.settimeout(left)
            try:
                data = sock.recv(65536)
            except socket.timeout:
                return
            except OSError:
                data = b""
            if not data:
                result["closed"] = True
                return
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.PingAckReceived):
                    result["acked"] += 1
                elif isinstance(event, h2.events.ConnectionTerminated):
                    result["goaway"] = {
                        "error_code": int(event.error_code),
                        "debug": (event.additional_data or b"").decode(errors="replace"),
                        "after_ping": result["sent"],
                    }
            out = conn.data_to_send()
            if out:
                try:
                    sock.sendall(out)
                except OSError:
                    pass

    pump(0.3)
    for i in range(count):
        if result["closed"] or result["goaway"]:
            break
        conn.ping(struct.pack(">Q", i))
        try:
            sock.sendall(conn.data_to_send())
        except OSError:
            result["closed"] = True
            break
        result["sent"] += 1
        pump(interval_ms / 1000)
    pump(3)
    sock.close()
    print(json.dumps(result))


if __name__ == "__main__":
    mode, args = sys.argv[1], [int(a) for a in sys.argv[2:]]
    {"h2flood": h2flood, "slowbody": slowbody, "grpcok": grpcok, "pings": pings}[mode](*args)
