"""Differential conformance: the same corpus of requests against httpscale and against the KEDA HTTP add-on.

`run(ctx, corpus)` applies the corpus's workloads and routes to the cluster of this run, sends every request to
the add-on's interceptor and returns what came back (status, the headers that matter, the body, and what the
echo backend says it received). `compare(ours, theirs, documented, read_doc)` lines the two runs up: a request
is `same` when every compared field matches, `documented` when it differs and `e2e/differential/documented.yaml`
names a section that exists (`docs/operations.md#anchor`, "Differences from upstream", or for a feature upstream
0.16 added and the pinned 0.15 lacks, `docs/compatibility.md#anchor`), else `undocumented`.

  python e2e/differential.py compare OURS.json UPSTREAM.json --out target/e2e/differential.json
"""
import argparse
import base64
import json
import re
import socket
import sys
import threading
import time
from pathlib import Path

import yaml

from cluster import wait_for
from kube import ApiError

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "e2e/differential/corpus.yaml"
DOCUMENTED = REPO / "e2e/differential/documented.yaml"
DEFAULT_COMPARE = ["status", "backend"]
# Compared on every HTTP request (http1, h2c) besides its own list: the answer's headers that matter, and where the
# request reached the echo backend, the forwarded headers it saw and that no hop-by-hop header reached it.
ALWAYS_COMPARED = ["header:x-keda-http-cold-start", "header:content-type", "header:retry-after",
                   "backend.header:x-forwarded-for", "backend.header:x-forwarded-host",
                   "backend.header:x-forwarded-proto", "backend.header:x-forwarded-port", "backend.header:forwarded",
                   "backend.header:x-real-ip", "backend.header:connection", "backend.header:keep-alive",
                   "backend.header:te", "backend.header:trailer", "backend.header:proxy-connection",
                   "backend.header:upgrade"]


# Set-up -----------------------------------------------------------------------------------------------------------

def expand(corpus):
    """The corpus's requests with every `matrix` entry expanded into one request per value."""
    out = []
    for entry in corpus["requests"]:
        if "matrix" not in entry:
            out.append(entry)
            continue
        for i, values in enumerate(entry["matrix"]):
            req = json.loads(json.dumps(entry["request"]))
            for k, v in values.items():
                req[k] = v
            out.append({"id": f"{entry['id']}[{values.get('label', i)}]", "category": entry["category"],
                        "request": req, "compare": entry.get("compare", DEFAULT_COMPARE)})
    ids = [e["id"] for e in out]
    dupes = {i for i in ids if ids.count(i) > 1}
    assert not dupes, f"duplicate request ids in the corpus: {sorted(dupes)}"
    return out


def setup(ctx, corpus):
    """Workloads (echo backends), then the routing objects, applied as a user would; waits until all are ready."""
    ns = corpus["namespace"]
    ctx.namespace(ns)
    for w in corpus["workloads"]:
        # Port 3000: the Go interceptor binds 0.0.0.0:8080, 9090 and 2223 in this shared namespace.
        ctx.workload(ns, w["name"], w.get("port", 3000), backend=w.get("backend", "http"),
                     replicas=w.get("replicas", 1), args=["--name", w["name"]], app_protocol=w.get("app_protocol"))
    rejected = {}
    for obj in corpus["objects"]:
        # Routing precedence compares creation timestamps, which have whole-second resolution: an object that
        # must be younger than the one before it waits for the next second.
        if obj.get("createInLaterSecond"):
            time.sleep(1.1)
        obj = {k: v for k, v in obj.items() if k != "createInLaterSecond"}
        obj.setdefault("metadata", {}).setdefault("namespace", ns)
        # A create without strict validation, as `kubectl create --validate=false`: a field the add-on's CRD does
        # not know (a 0.16 or httpscale field under the 0.15 CRD) is pruned; an object its CRD rejects is noted.
        try:
            ctx.kube.create(obj, validation="Ignore")
        except ApiError as e:
            rejected[f"{obj['kind']}/{obj['metadata']['name']}"] = e.message
            print(f"    set-up object refused by this add-on's API: {obj['kind']}/{obj['metadata']['name']}: "
                  f"{e.message}", file=sys.stderr, flush=True)
    for w in corpus["workloads"]:
        if w.get("replicas", 1):
            wait_for(f"{ns}/{w['name']} ready (its backend's log: target/e2e/run/logs/pod-{ns}-{w['name']}-*.log)",
                     lambda n=w["name"]: ready(ctx, ns, n), timeout=60)
    time.sleep(corpus.get("settle_seconds", 5))  # watches in both interceptors see the routes
    return rejected


def ready(ctx, ns, name):
    from scenarios import ready_addresses
    return ready_addresses(ctx, ns, name)


# Requests ---------------------------------------------------------------------------------------------------------

def sized(value):
    """`@N` stands for N bytes of filler, so that the corpus can ask for a 2 MiB header without holding it."""
    return "x" * int(value[1:]) if isinstance(value, str) and value[:1] == "@" and value[1:].isdigit() else value


def headers_of(req):
    """The request's header lines; `@lines:N` stands for N distinct small headers."""
    h = req.get("headers", [])
    if isinstance(h, str) and h.startswith("@lines:"):
        return [[f"X-Line-{i}", "v"] for i in range(int(h.split(":")[1]))]
    return [[k, sized(v)] for k, v in h]


def raw_request(req):
    """The bytes of one HTTP/1.1 request: `raw` as given, else built from method/path/host/headers/body."""
    if "raw" in req:
        return req["raw"].encode("latin-1")
    body = req.get("body", "").encode()
    path = req.get("path", "/")
    if path.startswith("@uri:"):
        path = "/" + "a" * int(path.split(":")[1])
    lines = [f"{req.get('method', 'GET')} {path} {req.get('version', 'HTTP/1.1')}"]
    if req.get("host") is not None:
        lines.append(f"Host: {req['host']}")
    headers = headers_of(req)
    for k, v in headers:
        lines.append(f"{k}: {v}")
    if body and not any(k.lower() in ("content-length", "transfer-encoding") for k, _ in headers):
        lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def read_response(sock, timeout, head_only=False):
    """Reads one response (the server closes after it); returns (status, headers, body) or (0, {}, b'') if the
    connection closed without an answer."""
    sock.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            break
        except OSError:
            break
        if not chunk:
            break
        data += chunk
        if head_only and b"\r\n\r\n" in data:
            break
    head, sep, body = data.partition(b"\r\n\r\n")
    # Interim 1xx answers (100 Continue) come before the final one; 101 Switching Protocols is final.
    while sep and re.match(rb"HTTP/1\.[01] 1\d\d", head) and not head.startswith((b"HTTP/1.1 101", b"HTTP/1.0 101")):
        head, sep, body = body.partition(b"\r\n\r\n")
    if not sep or not head.startswith(b"HTTP/"):
        return 0, {}, b""
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        k = k.strip().lower()
        headers[k] = f"{headers[k]}, {v.strip()}" if k in headers else v.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = dechunk(body)
    return status, headers, body


def dechunk(body):
    out, rest = b"", body
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        try:
            size = int(size_line.split(b";")[0], 16)
        except ValueError:
            break
        if size == 0:
            break
        out, rest = out + rest[:size], rest[size + 2:]
    return out


def http1(target, req, timeout):
    """Sends one request over a new connection; `close_after` (seconds) hangs up early (a client that leaves)."""
    sock = socket.create_connection(target, timeout=5)
    try:
        data = raw_request(req)
        # `send_in_parts`: byte counts sent one after another with a pause between (a slow client).
        for size in req.get("send_in_parts", []):
            sock.sendall(data[:size])
            data = data[size:]
            time.sleep(req.get("part_gap", 0.2))
        sock.sendall(data)
        if "close_after" in req:
            time.sleep(req["close_after"])
            return {"status": -1, "headers": {}, "body": ""}
        status, headers, body = read_response(sock, timeout, head_only=req.get("method") == "HEAD")
    finally:
        sock.close()
    return result(status, headers, body)


def result(status, headers, body):
    # `origin`: who produced the answer: the backend (its Python server names itself) or the interceptor.
    origin = "backend" if headers.get("server", "").startswith(("BaseHTTP", "grpc")) else "interceptor"
    r = {"status": status, "origin": origin if status else None, "headers": headers,
         "body": body.decode("utf-8", "replace")[:4096]}
    try:
        echoed = json.loads(body)
        if isinstance(echoed, dict) and "name" in echoed and "headers" in echoed:
            r["backend"] = {"name": echoed["name"], "path": echoed["path"], "method": echoed["method"],
                            "body": echoed["body"],
                            "headers": {k.lower(): v for k, v in merge_headers(echoed["headers"]).items()}}
    except ValueError:
        pass
    return r


def merge_headers(pairs):
    out = {}
    for k, v in pairs:
        k = k.lower()
        out[k] = f"{out[k]}, {v}" if k in out else v
    return out


def concurrent(target, req, timeout):
    """`count` copies of the request at once; the result is their statuses, sorted."""
    results = [None] * req["count"]

    def one(i):
        try:
            results[i] = http1(target, req, timeout)["status"]
        except OSError:
            results[i] = 0

    threads = [threading.Thread(target=one, args=(i,)) for i in range(req["count"])]
    for t in threads:
        t.start()
        time.sleep(req.get("stagger", 0.05))
    for t in threads:
        t.join(timeout + 5)
    return {"status": sorted(results)}


def websocket(target, req, timeout):
    """An RFC 6455 handshake through the proxy, then one masked text frame that the backend echoes."""
    key = base64.b64encode(b"httpscale-e2e-ws").decode()
    head = dict(req, headers=[["Upgrade", "websocket"], ["Connection", "Upgrade"], ["Sec-WebSocket-Key", key],
                              ["Sec-WebSocket-Version", "13"]])
    sock = socket.create_connection(target, timeout=timeout)
    try:
        sock.sendall(raw_request(head).replace(b"Connection: close\r\n", b""))
        status, headers, rest = read_response(sock, timeout, head_only=True)
        echoed = ""
        if status == 101:
            payload, mask = b"ping through the proxy", b"\x01\x02\x03\x04"
            frame = bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            sock.sendall(frame)
            data = rest
            while len(data) < 2 + len(payload):
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
            echoed = data[2:2 + data[1]].decode(errors="replace") if len(data) >= 2 else ""
        return {"status": status, "headers": {k: headers.get(k) for k in ("upgrade",)}, "body": echoed}
    finally:
        sock.close()


def h2c(target, req, timeout):
    """HTTP/2 with prior knowledge (h2c) through the proxy, using the `h2` library's state machine."""
    import h2.config
    import h2.connection
    import h2.events
    sock = socket.create_connection(target, timeout=timeout)
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    headers = [(":method", req.get("method", "GET")), (":scheme", "http"), (":authority", req["host"]),
               (":path", req.get("path", "/"))] + [(k.lower(), v) for k, v in req.get("headers", [])]
    conn.send_headers(1, headers, end_stream=True)
    sock.sendall(conn.data_to_send())
    status, resp_headers, body, done = 0, {}, b"", False
    deadline = time.monotonic() + timeout
    try:
        while not done and time.monotonic() < deadline:
            data = sock.recv(65536)
            if not data:
                break
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    resp_headers = {k.decode() if isinstance(k, bytes) else k: v.decode() if isinstance(v, bytes) else v
                                    for k, v in event.headers}
                    status = int(resp_headers.pop(":status"))
                elif isinstance(event, h2.events.DataReceived):
                    body += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset, h2.events.ConnectionTerminated)):
                    done = True
            sock.sendall(conn.data_to_send())
    finally:
        sock.close()
    return result(status, resp_headers, body)


def grpc_health(target, req, timeout):
    """A real gRPC call (grpc.health.v1 Check) through the proxy to a gRPC backend, with the route's authority."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    options = [("grpc.default_authority", req["host"])]
    with grpc.insecure_channel(f"{target[0]}:{target[1]}", options=options) as ch:
        try:
            r = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
            return {"status": "OK", "body": health_pb2.HealthCheckResponse.ServingStatus.Name(r.status)}
        except grpc.RpcError as e:
            return {"status": e.code().name, "body": ""}


def queue(admin, req, timeout):
    """/queue on the admin port: which keys, and which fields each has (values are counts of this run)."""
    status, _, body = get(admin, "/queue", timeout)
    data = json.loads(body) if status == 200 else {}
    prefix = req.get("keys_in", "")
    keys = sorted(k for k in data if k.startswith(prefix))
    fields = sorted({f for k in keys for f in data[k]})
    return {"status": status, "queue_keys": keys, "queue_fields": fields,
            "queue_values": {k: data[k] for k in keys} if req.get("values") else None}


def metrics(metrics_addr, req, timeout):
    """/metrics: the interceptor's metric names and each one's label names (values differ run to run)."""
    status, headers, body = get(metrics_addr, "/metrics", timeout, req.get("headers"))
    families = {}
    for line in body.decode(errors="replace").splitlines():
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})? ", line)
        if not m or not m.group(1).startswith(req.get("prefix", "interceptor_")):
            continue
        labels = sorted(set(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="', m.group(3) or "")))
        families.setdefault(m.group(1), set()).update(labels)
    return {"status": status, "headers": {"content-type": headers.get("content-type")},
            "metric_names": sorted(families), "metric_labels": {k: sorted(v) for k, v in sorted(families.items())}}


def get(addr, path, timeout, headers=None):
    sock = socket.create_connection(addr, timeout=timeout)
    try:
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers or [])
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {addr[0]}\r\n{extra}Connection: close\r\n\r\n".encode())
        return read_response(sock, timeout)
    finally:
        sock.close()


def cancel_then_queue(target, admin, req, timeout):
    """A client that leaves while its request is held or in flight; then the route's concurrency on /queue."""
    http1(target, dict(req, close_after=req.get("close_after", 1.0)), timeout)
    time.sleep(req.get("settle", 1.5))
    status, _, body = get(admin, "/queue", timeout)
    key = req["queue_key"]
    return {"status": status, "concurrency_after": json.loads(body).get(key, {}).get("Concurrency")}


KINDS = {"http1": http1, "concurrent": concurrent, "websocket": websocket, "h2c": h2c, "grpc": grpc_health}


def execute(entry, interceptor_ip):
    req = entry["request"]
    kind, timeout = req.get("kind", "http1"), req.get("timeout", 15)
    proxy, admin, metrics_addr = (interceptor_ip, 8080), (interceptor_ip, 9090), (interceptor_ip, 2223)
    try:
        if kind == "queue":
            return queue(admin, req, timeout)
        if kind == "metrics":
            return metrics(metrics_addr, req, timeout)
        if kind == "cancel":
            return cancel_then_queue(proxy, admin, req, timeout)
        if kind == "admin":
            return {"status": get(admin, req["path"], timeout)[0]}
        return KINDS[kind](proxy, req, timeout)
    except Exception as e:  # noqa: BLE001 - a failure to talk is itself a result to compare
        return {"status": f"error: {type(e).__name__}"}


def run(ctx, corpus_path=CORPUS):
    corpus = yaml.safe_load(Path(corpus_path).read_text())
    entries = expand(corpus)
    rejected = setup(ctx, corpus)
    ip = ctx.hs.interceptors[0].ip
    results = {}
    for entry in entries:
        t = time.monotonic()
        result = execute(entry, ip)
        results[entry["id"]] = {"category": entry["category"],
                                "compare": compared_fields(entry.get("compare", DEFAULT_COMPARE), result),
                                "result": result, "seconds": round(time.monotonic() - t, 2)}
        if entry["request"].get("pause_after"):
            time.sleep(entry["request"]["pause_after"])
    return results, rejected


# Comparison -------------------------------------------------------------------------------------------------------

def field(result, name):
    """One compared field of a result: `status`, `backend`, `backend.path`, `backend.header:X`, `header:X`, `body`,
    or any other top-level key of the result."""
    if name == "backend":
        return (result.get("backend") or {}).get("name")
    if name.startswith("backend."):
        backend = result.get("backend") or {}
        sub = name.split(".", 1)[1]
        if sub.startswith("header:"):
            return backend.get("headers", {}).get(sub.split(":", 1)[1].lower())
        return backend.get(sub)
    if name.startswith("header:"):
        return (result.get("headers") or {}).get(name.split(":", 1)[1].lower())
    return result.get(name)


def compare(ours, theirs, documented, read_doc):
    """Counts same / documented / undocumented; `read_doc(path)` gives a docs file's text, to check anchors."""
    report = {"requests": 0, "same": 0, "documented": 0, "undocumented": 0, "differences": []}
    for rid, mine in ours.items():
        other = theirs.get(rid)
        report["requests"] += 1
        fields = compared_fields(mine["compare"], mine["result"])
        diffs = {f: {"httpscale": field(mine["result"], f), "upstream": field(other["result"], f) if other else None}
                 for f in fields}
        diffs = {f: v for f, v in diffs.items() if v["httpscale"] != v["upstream"]}
        if not diffs:
            report["same"] += 1
            continue
        # Each differing field needs a section that explains it; the request's own entry (no `fields`) covers all.
        docs = {f: documented_for(rid, mine["category"], f, documented) for f in diffs}
        sections = {f: d.get("section") if d and has_anchor(read_doc, d.get("section") or "") else None
                    for f, d in docs.items()}
        known = all(sections.values())
        report["documented" if known else "undocumented"] += 1
        first = next(iter(diffs))
        report["differences"].append({"id": rid, "category": mine["category"], "fields": diffs,
                                      "documented_in": sections[first] if known else None,
                                      "sections": sections,
                                      "why": "; ".join(dict.fromkeys(d["why"] for d in docs.values() if d and d.get("why")))
                                      or None})
    return report


def compared_fields(listed, result):
    """The request's own `compare` list, plus ALWAYS_COMPARED for an HTTP answer (a result with an `origin`)."""
    return listed + ([f for f in ALWAYS_COMPARED if f not in listed] if "origin" in result else [])


def has_anchor(read_doc, where):
    """Whether `docs/file.md#anchor` names a heading (GitHub's slug) or an explicit `<a id>` of that file."""
    path, _, anchor = where.partition("#")
    if not anchor:
        return False
    text = read_doc(path)
    slugs = {slug(h.lstrip("# ")) for h in re.findall(r"^#+ .*$", text, re.M)}
    return anchor in slugs | set(re.findall(r'<a id="([^"]+)"', text))


def documented_for(rid, category, name, documented):
    """The documented.yaml entry for field `name` of a request: the first naming the request in `ids` (exact, or
    a prefix ending in `*`; `*` alone is every request) whose `fields`, if it lists any, include `name`; else the
    one for its category."""
    for entry in documented:
        if entry.get("fields") and name not in entry["fields"]:
            continue
        for pattern in entry.get("ids", []):
            if pattern == rid or (pattern.endswith("*") and rid.startswith(pattern[:-1])):
                return entry
    return next((e for e in documented if e.get("category") == category and not e.get("fields")), None)


def slug(heading):
    """GitHub's anchor for a Markdown heading."""
    s = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return s.replace(" ", "-")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("compare")
    c.add_argument("ours")
    c.add_argument("upstream")
    c.add_argument("--out", required=True)
    c.add_argument("--upstream-version", required=True)
    a = ap.parse_args()
    ours = json.loads(Path(a.ours).read_text())["results"]
    theirs = json.loads(Path(a.upstream).read_text())["results"]
    documented = yaml.safe_load(DOCUMENTED.read_text()) or []
    def read_doc(path):
        file = REPO / path
        return file.read_text() if path.startswith("docs/") and file.is_file() else ""
    report = {"upstream_version": a.upstream_version, **compare(ours, theirs, documented, read_doc)}
    Path(a.out).write_text(json.dumps(report, indent=2) + "\n")
    for d in report["differences"]:
        mark = "documented" if d["documented_in"] else "UNDOCUMENTED"
        print(f"  {mark:12} {d['id']}: " + "; ".join(f"{k}: ours {v['httpscale']!r} / upstream {v['upstream']!r}"
                                                      for k, v in d["fields"].items()))
    print(f"{report['requests']} requests: {report['same']} same, {report['documented']} documented, "
          f"{report['undocumented']} undocumented (upstream {a.upstream_version})")
    return 1 if report["undocumented"] else 0


if __name__ == "__main__":
    sys.exit(main())
