#!/usr/bin/env python3
"""A stand-in for an LLM server (llama.cpp's llama-server, vLLM, Ollama) that needs only Python's standard library.

It speaks the OpenAI API (/v1/chat/completions, /v1/completions, /v1/embeddings, /v1/models), Ollama's
(/api/chat, /api/generate, /api/embed, /api/tags, /api/version) and Anthropic's /v1/messages, streaming
answers token by token (SSE for OpenAI and Anthropic, NDJSON for Ollama) when asked. Like llama-server it listens
at once but answers 503 ("loading model") on /health and every API call until --load-delay has passed, so a
proxy that starts it on demand has a real load to wait for. With --fail-status N it then answers every API call
with status N and an OpenAI-style error, like a server whose model fails.

The first token of every answer names the server (--name, default "fake") and its port, so a client can tell
which "model" answered.

    python3 examples/fake_llm.py --port 8001 --name llama --load-delay 2

Prints "READY <port>" on stdout once listening (also while still loading), then one line per request on
stderr. Stops on SIGTERM or SIGINT.
"""

import argparse
import json
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ARGS = None
LOADED_AT = 0.0


def loaded():
    return time.monotonic() >= LOADED_AT


def words(model, port):
    first = f"[{ARGS.name}@{port} model={model}]"
    return [first] + [f"token{i}" for i in range(1, ARGS.tokens)]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-llm/1"
    # Headers and body go out in separate writes: without this, Nagle's algorithm holds the body until the
    # client's delayed ACK (40 ms) on every keep-alive request.
    disable_nagle_algorithm = True

    def log_message(self, fmt, *args):
        sys.stderr.write((fmt % args) + "\n")
        sys.stderr.flush()

    def handle(self):
        try:
            super().handle()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client left mid-answer

    # -- framing

    def send_json(self, status, value):
        body = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def start_stream(self, content_type):
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def chunk(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def end_stream(self):
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raw = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return raw
                raw += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def read_json(self):
        raw = self.read_body()
        try:
            value = json.loads(raw or b"{}")
        except ValueError:
            value = {}
        return value if isinstance(value, dict) else {}

    # -- routes

    def do_GET(self):
        port = self.server.server_address[1]
        if self.path == "/health":
            if loaded():
                return self.send_json(200, {"status": "ok"})
            return self.send_json(503, {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}})
        if self.path == "/api/version":
            return self.send_json(200, {"version": "0.0.0-fake"})
        if not loaded():
            return self.loading()
        if self.path == "/v1/models":
            return self.send_json(200, {"object": "list", "data": [{"id": ARGS.name, "object": "model", "created": 0, "owned_by": f"fake@{port}"}]})
        if self.path == "/api/tags":
            return self.send_json(200, {"models": [{"name": ARGS.name, "model": ARGS.name, "size": 0, "digest": ""}]})
        self.send_json(404, {"error": "not found"})

    def do_POST(self):
        body = self.read_json()
        if not loaded():
            return self.loading()
        if ARGS.fail_status:
            return self.send_json(ARGS.fail_status, {"error": {"code": ARGS.fail_status, "type": "server_error",
                                                               "message": "fake failure: out of memory"}})
        model = body.get("model") or ARGS.name
        port = self.server.server_address[1]
        tokens = words(model, port)
        routes = {
            "/v1/chat/completions": self.openai_chat,
            "/v1/completions": self.openai_completion,
            "/v1/embeddings": self.embeddings,
            "/api/embed": self.embeddings,
            "/api/chat": self.ollama,
            "/api/generate": self.ollama,
            "/v1/messages": self.anthropic,
        }
        handler = routes.get(self.path)
        if handler is None:
            return self.send_json(404, {"error": f"no route {self.path}"})
        handler(body, model, tokens)

    def loading(self):
        self.send_json(503, {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}})

    def paced(self, tokens):
        for i, tok in enumerate(tokens):
            if i:
                time.sleep(ARGS.token_delay)
            yield tok

    def openai_chat(self, body, model, tokens):
        self.openai(body, model, tokens, chat=True)

    def openai_completion(self, body, model, tokens):
        self.openai(body, model, tokens, chat=False)

    def openai(self, body, model, tokens, chat):
        created = int(time.time())
        kind = "chat.completion" if chat else "text_completion"
        if not body.get("stream"):
            text = " ".join(self.paced(tokens))
            choice = {"index": 0, "finish_reason": "stop"}
            choice.update({"message": {"role": "assistant", "content": text}} if chat else {"text": text})
            return self.send_json(200, {
                "id": "fake-1", "object": kind, "created": created, "model": model, "choices": [choice],
                "usage": {"prompt_tokens": 1, "completion_tokens": len(tokens), "total_tokens": len(tokens) + 1},
            })
        self.start_stream("text/event-stream")
        for i, tok in enumerate(self.paced(tokens)):
            piece = tok if i == 0 else " " + tok
            choice = {"index": 0, "finish_reason": None}
            choice.update({"delta": {"role": "assistant", "content": piece}} if chat else {"text": piece})
            chunk = {"id": "fake-1", "object": kind + (".chunk" if chat else ""), "created": created, "model": model, "choices": [choice]}
            self.chunk("data: %s\n\n" % json.dumps(chunk))
        last = {"index": 0, "finish_reason": "stop"}
        last.update({"delta": {}} if chat else {"text": ""})
        self.chunk("data: %s\n\n" % json.dumps({"id": "fake-1", "object": kind + (".chunk" if chat else ""), "created": created, "model": model, "choices": [last]}))
        self.chunk("data: [DONE]\n\n")
        self.end_stream()

    def embeddings(self, body, model, tokens):
        vector = [0.1, 0.2, 0.3]
        if self.path == "/api/embed":
            return self.send_json(200, {"model": model, "embeddings": [vector]})
        self.send_json(200, {"object": "list", "model": model, "data": [{"object": "embedding", "index": 0, "embedding": vector}],
                             "usage": {"prompt_tokens": 1, "total_tokens": 1}})

    def ollama(self, body, model, tokens):
        chat = self.path == "/api/chat"
        at = "2024-01-01T00:00:00Z"

        def line(text, done):
            value = {"model": model, "created_at": at, "done": done}
            value.update({"message": {"role": "assistant", "content": text}} if chat else {"response": text})
            return value

        if body.get("stream") is False:
            return self.send_json(200, line(" ".join(self.paced(tokens)), True))
        self.start_stream("application/x-ndjson")
        for i, tok in enumerate(self.paced(tokens)):
            self.chunk(json.dumps(line(tok if i == 0 else " " + tok, False)) + "\n")
        self.chunk(json.dumps(line("", True)) + "\n")
        self.end_stream()

    def anthropic(self, body, model, tokens):
        text = " ".join(self.paced(tokens))
        self.send_json(200, {"id": "msg_fake", "type": "message", "role": "assistant", "model": model,
                             "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
                             "usage": {"input_tokens": 1, "output_tokens": len(tokens)}})


def main():
    global ARGS, LOADED_AT
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8001)
    p.add_argument("--name", default="fake", help="the server's name in every answer's first token")
    p.add_argument("--load-delay", type=float, default=0.0, help="seconds of 503 'loading model' after start")
    p.add_argument("--tokens", type=int, default=8, help="tokens per answer")
    p.add_argument("--token-delay", type=float, default=0.05, help="seconds between streamed tokens")
    p.add_argument("--fail-status", type=int, default=0,
                   help="once loaded, answer every API call with this status (a model that fails), not a completion")
    ARGS = p.parse_args()
    LOADED_AT = time.monotonic() + ARGS.load_delay
    server = ThreadingHTTPServer((ARGS.host, ARGS.port), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print("READY %d" % server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
