"""Drives the official OpenAI and Ollama Python clients through the interceptor for the model-routing tests.

    llm_client.py --url http://127.0.0.1:PORT --host-header models.local [--timeout S] COMMAND ...

Commands: `openai-chat MODEL [--stream] [--prompt-bytes N]`, `openai-models`, `ollama-chat MODEL`,
`ollama-list`. Prints one JSON object per line: `{"kind": "chunk", "at": <unix time>, "text": ...}` for each
piece of an answer, `{"kind": "models", "ids": [...]}` for lists, and `{"kind": "error", "at", "type", "status",
"message"}` when the client raises (exit code 0 either way, so the test reads what happened).
"""

import argparse
import json
import sys
import time


def out(kind, **fields):
    print(json.dumps({"kind": kind, "at": time.time(), **fields}), flush=True)


def openai_client(args):
    import httpx
    from openai import OpenAI

    return OpenAI(
        base_url=args.url + "/v1",
        api_key="unused",
        default_headers={"Host": args.host_header},
        timeout=httpx.Timeout(args.timeout),
        max_retries=0,
    )


def ollama_client(args):
    from ollama import Client

    return Client(host=args.url, headers={"Host": args.host_header}, timeout=args.timeout)


def openai_chat(args):
    client = openai_client(args)
    messages = [{"role": "user", "content": "x" * args.prompt_bytes if args.prompt_bytes else "Hello!"}]
    if args.stream:
        for chunk in client.chat.completions.create(model=args.model, messages=messages, stream=True):
            if chunk.choices and chunk.choices[0].delta.content:
                out("chunk", text=chunk.choices[0].delta.content, model=chunk.model)
    else:
        resp = client.chat.completions.create(model=args.model, messages=messages)
        out("chunk", text=resp.choices[0].message.content, model=resp.model)
    out("done")


def openai_models(args):
    out("models", ids=[m.id for m in openai_client(args).models.list()])


def ollama_chat(args):
    stream = ollama_client(args).chat(model=args.model, messages=[{"role": "user", "content": "Hello!"}], stream=True)
    for part in stream:
        if part.message.content:
            out("chunk", text=part.message.content, model=part.model)
    out("done")


def ollama_list(args):
    out("models", ids=[m.model for m in ollama_client(args).list().models])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--host-header", required=True)
    p.add_argument("--timeout", type=float, default=60.0, help="the clients' timeout (OpenAI: connect, read, write)")
    sub = p.add_subparsers(dest="command", required=True)
    chat = sub.add_parser("openai-chat")
    chat.add_argument("model")
    chat.add_argument("--stream", action="store_true")
    chat.add_argument("--prompt-bytes", type=int, default=0)
    sub.add_parser("openai-models")
    ochat = sub.add_parser("ollama-chat")
    ochat.add_argument("model")
    sub.add_parser("ollama-list")
    args = p.parse_args()
    command = {"openai-chat": openai_chat, "openai-models": openai_models, "ollama-chat": ollama_chat, "ollama-list": ollama_list}
    try:
        command[args.command](args)
    except Exception as e:  # the test reads the client's own error
        out("error", type=type(e).__name__, status=getattr(e, "status_code", None), message=str(e))
    return 0


if __name__ == "__main__":
    sys.exit(main())
