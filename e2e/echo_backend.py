#!/usr/bin/env python3
"""An HTTP/1.1 backend (stdlib only) that answers every request with what it received, as JSON.

  python echo_backend.py --host 10.244.0.5 --port 8080 [--name NAME]

The body is {"name", "method", "path", "headers": [[k, v], ...], "body"}: a test can compare exactly what reached
the backend through a proxy. `?sleep=SECONDS` delays the answer; `?status=N` sets the status.
"""
import argparse
import json
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    name = "echo"

    def log_message(self, fmt, *args):
        pass

    def answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        if "sleep" in query:
            time.sleep(float(query["sleep"][0]))
        out = json.dumps({"name": self.name, "method": self.command, "path": self.path,
                          "headers": [[k, v] for k, v in self.headers.items()],
                          "body": body.decode(errors="replace")}).encode()
        self.send_response(int(query.get("status", ["200"])[0]))
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = answer

    def do_HEAD(self):
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--name", default="echo")
    a = ap.parse_args()
    Echo.name = a.name
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer((a.host, a.port), Echo).serve_forever()


if __name__ == "__main__":
    main()
