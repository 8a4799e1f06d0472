#!/usr/bin/env python3
"""Streams a generate and a chat through a URL with the official Ollama client (PyPI `ollama`), printing
one JSON line per chunk with its arrival time, so the caller can check that chunks arrived spread out.

  python ollama_stream.py --url http://127.0.0.1:8080 --host-header ollama.local
Exit 0 iff both streams completed (done=true) with more than one chunk.
"""
import argparse
import json
import sys
import time

import ollama


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--url', required=True)
    ap.add_argument('--host-header', required=True)
    ap.add_argument('--timeout', type=float, default=30)
    a = ap.parse_args()
    client = ollama.Client(host=a.url, headers={'Host': a.host_header}, timeout=a.timeout)
    t0 = time.monotonic()
    ok = True
    for kind, parts in (('generate', client.generate(model='fake', prompt='hi', stream=True)),
                        ('chat', client.chat(model='fake', messages=[{'role': 'user', 'content': 'hi'}], stream=True))):
        chunks, done = 0, False
        for part in parts:
            chunks += 1
            done = part.done
            text = part.response if kind == 'generate' else part.message.content
            print(json.dumps({'kind': kind, 'at': time.monotonic() - t0, 'text': text, 'done': done}), flush=True)
        ok = ok and done and chunks > 1
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
