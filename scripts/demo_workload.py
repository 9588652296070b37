"""The demo's workload: what a tool-calling agent does, in miniature.

Reads a data file, calls an HTTP API on loopback, sends a DNS query, and runs a program with a
credential on its command line (which runbom must redact). Prints its pid as JSON.
"""

import http.server
import json
import os
import socket
import subprocess
import sys
import threading


def main() -> None:
    data_file = sys.argv[1]
    with open(data_file, encoding="utf-8") as f:
        f.read()

    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.handle_request, daemon=True).start()
    with socket.create_connection(server.server_address) as conn:
        conn.sendall(b"GET / HTTP/1.1\r\nHost: api.internal\r\nConnection: close\r\n\r\n")
        conn.recv(1024)

    query = bytes.fromhex("abcd01000001000000000000")
    query += b"".join(bytes([len(p)]) + p.encode() for p in "api.example.com".split("."))
    query += b"\x00\x00\x01\x00\x01"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.sendto(query, ("127.0.0.1", 53))

    subprocess.run(["/bin/echo", "upload", "--api-key", "demo-secret-value"], check=True,
                   stdout=subprocess.DEVNULL)
    print(json.dumps({"pid": os.getpid()}))


if __name__ == "__main__":
    main()
