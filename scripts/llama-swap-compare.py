#!/usr/bin/env python3
"""httpscale's interceptor against llama-swap, with the same two models: examples/fake_llm.py started on demand,
one at a time, each taking --load seconds to load.

    python3 scripts/llama-swap-compare.py --interceptor target/release/interceptor \
        --llama-swap ~/.cache/httpscale-e2e/llama-swap-v0.1.5/bin/llama-swap [--rounds 5] [--load 2] [--warm 2000]

Measures, for each proxy in turn (never both at once): swap latency (a streaming request for the other model,
sent while one runs, to its first byte), warm overhead (sequential non-streaming requests on one keep-alive
connection, median and p99, against the same model server reached directly) and memory (the proxy's RSS at
rest, after the swaps, after the warm requests). Prints one JSON object. Standard library only; binds
127.0.0.1 ports chosen free at run time; stops everything it started.
"""

import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAKE = os.path.join(ROOT, "examples", "fake_llm.py")
# No ":" in the names: llama-swap v0.1.5 reads "a:b" as profile a, model b.
MODELS = ["llama3-8b", "qwen2.5-7b"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def model_command(name, port, load):
    return [sys.executable, FAKE, "--port", str(port), "--name", name, "--load-delay", str(load),
            "--tokens", "4", "--token-delay", "0"]


def interceptor_config(ports, load, admin):
    lines = ["groups:", "  gpu: {exclusive: true, drainTimeout: 60s}", "routes:"]
    for model, port in zip(MODELS, ports):
        name = model.split("-")[0].replace(".", "")
        cmd = ", ".join(json.dumps(a) for a in model_command(name, port, load))
        lines += [f"  - name: {name}", "    hosts: [models.local]", f"    models: [{json.dumps(model)}]",
                  f"    upstream: 127.0.0.1:{port}", "    process:", f"      command: [{cmd}]",
                  "      readiness: {httpGet: /health}", "      scaledownPeriod: 10m", "      group: gpu"]
    return "\n".join(lines) + "\n"


def llama_swap_config(ports, load):
    lines = ["healthCheckTimeout: 60", "models:"]
    for model, port in zip(MODELS, ports):
        name = model.split("-")[0].replace(".", "")
        cmd = " ".join(model_command(name, port, load))
        lines += [f"  {json.dumps(model)}:", f"    cmd: {cmd}", f"    proxy: http://127.0.0.1:{port}",
                  "    checkEndpoint: /health", "    ttl: 600"]
    return "\n".join(lines) + "\n"


def wait_port(port, timeout=30):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def chat(conn, model, stream):
    body = json.dumps({"model": model, "stream": stream, "messages": [{"role": "user", "content": "Hi"}]})
    start = time.monotonic()
    conn.request("POST", "/v1/chat/completions", body, {"Host": "models.local", "Content-Type": "application/json"})
    resp = conn.getresponse()
    first = resp.read(1)
    first_byte = time.monotonic() - start
    rest = resp.read()
    if resp.status != 200:
        raise RuntimeError(f"{model}: {resp.status} {(first + rest)[:200]!r}")
    return first_byte, time.monotonic() - start


def chat_retrying(port, conn, model, stream, errors):
    """`chat`, retried (twice at most, on a new connection) after a failed answer, which is counted in `errors`;
    the time to first byte counts from the first attempt. Returns the connection to go on with and that time."""
    start = time.monotonic()
    for attempt in range(3):
        attempt_start = time.monotonic()
        try:
            first_byte, _ = chat(conn, model, stream)
            return conn, attempt_start - start + first_byte
        except (RuntimeError, OSError, http.client.HTTPException) as e:
            errors.append(f"{model}: {e}"[:200])
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def swaps(port, rounds, errors):
    """Model 0 runs; a streaming request for model 1, then for model 0, and so on: time to first byte."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    cold, _ = chat(conn, MODELS[0], False)
    out = []
    for i in range(rounds * 2):
        conn, ttfb = chat_retrying(port, conn, MODELS[(i + 1) % 2], True, errors)
        out.append(ttfb)
    conn.close()
    return cold, out


def warm(port, n, model, errors):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for _ in range(50):
        conn, _ = chat_retrying(port, conn, model, False, errors)
    times = []
    for _ in range(n):
        start = time.monotonic()
        conn, _ = chat_retrying(port, conn, model, False, errors)
        times.append(time.monotonic() - start)
    times.sort()
    conn.close()
    return {"median_ms": round(statistics.median(times) * 1000, 3), "p99_ms": round(times[int(n * 0.99) - 1] * 1000, 3)}


def run(name, argv, port, args, model_ports, log):
    with open(log, "w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=out, start_new_session=True)
    try:
        wait_port(port)
        time.sleep(0.5)
        at_rest = rss_kib(proc.pid)
        errors = []
        cold, swap = swaps(port, args.rounds, errors)
        after_swaps = rss_kib(proc.pid)
        # The model that runs now, reached through the proxy and directly.
        running = MODELS[(args.rounds * 2) % 2]
        direct_port = model_ports[MODELS.index(running)]
        through = warm(port, args.warm, running, errors)
        direct = warm(direct_port, args.warm, running, [])
        return {
            "proxy": name,
            "first_cold_start_s": round(cold, 3),
            "swap_ttfb_s": {"median": round(statistics.median(swap), 3), "min": round(min(swap), 3),
                            "max": round(max(swap), 3), "n": len(swap)},
            "warm": through,
            "direct": direct,
            "overhead_median_ms": round(through["median_ms"] - direct["median_ms"], 3),
            "rss_kib": {"at_rest": at_rest, "after_swaps": after_swaps, "after_warm": rss_kib(proc.pid)},
            "failed_answers": len(errors),
            "failures": sorted(set(e.split(": ", 2)[-1][:120] for e in errors)),
        }
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        stop_session(proc.pid)


def stop_session(sid):
    """Stops whatever is left of the session the proxy led (its model servers), by process id."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # field 6 of stat, the session id
            try:
                os.kill(int(entry), signal.SIGKILL)
            except ProcessLookupError:
                pass
    time.sleep(0.5)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--interceptor", required=True)
    p.add_argument("--llama-swap", required=True)
    p.add_argument("--rounds", type=int, default=5, help="swap pairs per proxy")
    p.add_argument("--load", type=float, default=2.0, help="each model's load time, seconds")
    p.add_argument("--warm", type=int, default=2000, help="warm requests per leg")
    p.add_argument("--logs", default=tempfile.gettempdir(), help="where each proxy's output goes")
    args = p.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in ["httpscale", "llama-swap"]:
            ports = [free_port(), free_port()]
            proxy, admin = free_port(), free_port()
            cfg = os.path.join(tmp, f"{name}.yaml")
            if name == "httpscale":
                with open(cfg, "w") as f:
                    f.write(interceptor_config(ports, args.load, admin))
                argv = [args.interceptor, "--config", cfg, "--proxy-port", str(proxy), "--admin-port", str(admin),
                        "--prometheus-enabled", "false", "--bind-address", "127.0.0.1"]
            else:
                with open(cfg, "w") as f:
                    f.write(llama_swap_config(ports, args.load))
                argv = [args.llama_swap, "-config", cfg, "-listen", f"127.0.0.1:{proxy}"]
            log = os.path.join(args.logs, f"{name}.log")
            print(f"{name}: log in {log}", file=sys.stderr)
            results.append(run(name, argv, proxy, args, ports, log))
    print(json.dumps({"load_s": args.load, "rounds": args.rounds, "results": results}, indent=1))


if __name__ == "__main__":
    main()
