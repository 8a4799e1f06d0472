"""Side-by-side benchmarks of httpscale and the KEDA HTTP add-on on the real-cluster harness (benchmarks, not
tests: nothing here asserts a speed). `scripts/e2e.sh --bench` runs them; docs/benchmarks.md has the results.

One cluster holds httpscale's whole stack and, beside it, the Go add-on's interceptor and scaler on other ports
(both read the same HTTPScaledObjects), so the data-path scenarios run both interceptors in one invocation with
their legs interleaved round by round:

- warm: direct / httpscale / KEDA HTTP add-on / nginx to one backend pod: req/s, latency quantiles, CPU per
  request and RSS of each proxy, HTTP/1.1 at several concurrencies and h2c;
- burst: N requests held for a Service with no ready endpoint, then released by one EndpointSlice write: all
  served?, release times, memory per held request;
- many-routes: 10 … 5 000 HTTPScaledObjects: end-to-end cost over all hosts, and apply → first request routed;
- hung-scaler: one interceptor that accepts and never answers beside a healthy one: time from a request to each
  scaler's StreamIsActive `true`.

Activation with the real KEDA needs each add-on's own operator and scaler, so it runs once per add-on on a fresh
cluster (`activation(ctx)`), and `report()` puts both in one table.
"""
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from cluster import Proc, wait_for
from scenarios import scaler_protocol

REPO = Path(__file__).resolve().parent.parent
NS = "bench"
PORT = 3000
GO_PORTS = {"proxy": 8090, "admin": 9095, "metrics": 2225}
HUNG_IP = "10.245.1.9"
SUBSCRIBE_WAIT = 10  # seconds for every StreamIsActive subscriber's first answer
CLK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(f"    {msg}", file=sys.stderr, flush=True)


# Processes -------------------------------------------------------------------------------------------------------

def tree(pid):
    """pid and all its descendants."""
    children = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def cpu_seconds(pid):
    total = 0
    for p in tree(pid):
        try:
            f = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(f[11]) + int(f[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / CLK


def rss_kib(pid):
    total = 0
    for p in tree(pid):
        try:
            total += next(int(l.split()[1]) for l in Path(f"/proc/{p}/status").read_text().splitlines()
                          if l.startswith("VmRSS:"))
        except (OSError, StopIteration):
            pass
    return total


def loadtest(ctx, *args, timeout=600):
    """`loadtest run` inside this namespace; returns its JSON report."""
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        subprocess.run([str(ctx.loadtest), "run", *map(str, args), "--quiet", "--json", f.name],
                       check=True, capture_output=True, timeout=timeout)
        return json.loads(Path(f.name).read_text())


def spread(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3), "max": round(max(values), 3)}


# Set-up ----------------------------------------------------------------------------------------------------------

def prepare(ctx, upstream_dir):
    """The Go interceptor and scaler beside our stack, the bench workloads and routes."""
    from addons import Upstream
    up = Upstream(ctx.plane, upstream_dir, ctx.hs.helm)
    env = {"KEDA_HTTP_PROXY_PORT": GO_PORTS["proxy"], "KEDA_HTTP_ADMIN_PORT": GO_PORTS["admin"],
           "OTEL_PROM_EXPORTER_PORT": GO_PORTS["metrics"]}
    ctx.go_interceptor = up.component("go-interceptor", "keda-add-ons-http-interceptor", "interceptor", "10.245.1.3",
                                      "admin", {k: str(v) for k, v in env.items()}, GO_PORTS)
    ctx.go_scaler = up.component("go-scaler", "keda-add-ons-http-external-scaler", "scaler", "10.245.2.3", "grpc",
                                 {k: str(v) for k, v in up.scaler_env().items()}, up.scaler_ports)
    ctx.namespace(NS)
    ctx.workload(NS, "warm", PORT, backend="loadtest", replicas=1)
    routes = [httpso("warm", ["warm.bench"], "warm", replicas=(1, 1)),
              httpso("burst", ["burst.bench"], "burst", replicas=(0, 1), timeouts={"conditionWait": "120s"}),
              httpso("hung", ["hung.bench"], "never", replicas=(0, 1))]
    for obj in routes:
        ctx.kube.apply(obj, manager="kubectl")
    for name in ("burst", "never"):
        ctx.kube.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": NS},
                        "spec": {"ports": [{"name": "http", "port": PORT}]}})
    wait_for("bench/warm ready", lambda: pod_ip(ctx, "warm"), timeout=60)
    ctx.backend = (pod_ip(ctx, "warm"), PORT)
    burst_slice(ctx, ready=False)
    targets = {"httpscale": ("10.245.1.1", 8080, ctx.hs.interceptors[0].proc.popen.pid),
               "keda-http-add-on": ("10.245.1.3", GO_PORTS["proxy"], ctx.go_interceptor.proc.popen.pid)}
    for name, (ip, port, _) in targets.items():
        wait_for(f"{name} routes warm.bench", lambda i=ip, p=port: http_status(i, p, "warm.bench") == 200, timeout=60)
    return targets


def httpso(name, hosts, service, replicas, timeouts=None):
    spec = {"hosts": hosts, "scaleTargetRef": {"name": name, "service": service, "port": PORT},
            "replicas": {"min": replicas[0], "max": replicas[1]}}
    if timeouts:
        spec["timeouts"] = timeouts
    # Routing only: no ScaledObject (KEDA would fight the harness over these workloads).
    return {"apiVersion": "http.keda.sh/v1alpha1", "kind": "HTTPScaledObject",
            "metadata": {"name": name, "namespace": NS,
                         "annotations": {"httpscaledobject.keda.sh/skip-scaledobject-creation": "true"}},
            "spec": spec}


def pod_ip(ctx, app):
    from scenarios import ready_addresses
    addrs = ready_addresses(ctx, NS, app)
    return addrs[0] if addrs else None


def burst_slice(ctx, ready):
    ctx.kube.apply({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
                    "metadata": {"name": "burst-1", "namespace": NS,
                                 "labels": {"kubernetes.io/service-name": "burst",
                                            "endpointslice.kubernetes.io/managed-by": "httpscale-bench"}},
                    "endpoints": [{"addresses": [ctx.backend[0]], "conditions": {"ready": ready}}],
                    "ports": [{"name": "http", "port": PORT, "protocol": "TCP"}]})


def http_status(ip, port, host, path="/"):
    try:
        with socket.create_connection((ip, port), timeout=2) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            return int(s.recv(64).split(b" ")[1])
    except (OSError, IndexError, ValueError):
        return None


def queue_concurrency(ip, port, key):
    try:
        with socket.create_connection((ip, port), timeout=2) as s:
            s.sendall(b"GET /queue HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        body = data.split(b"\r\n\r\n", 1)[1]
        return json.loads(body).get(key, {}).get("Concurrency", 0)
    except (OSError, ValueError, IndexError):
        return -1


# Scenarios -------------------------------------------------------------------------------------------------------

def warm(ctx, targets, concurrencies=(1, 16, 64), rounds=3, duration="5s", protocols=("h1", "h2")):
    nginx = {proto: Proc(f"nginx-{proto}", [ctx.loadtest, "nginx", "--listen", f"10.245.1.4:{port}", "--upstream",
                                            f"{ctx.backend[0]}:{PORT}", "--workers", "2", *h2], ctx.plane.logs).start()
             for proto, port, h2 in (("h1", 8080, []), ("h2", 8081, ["--h2"]))}
    wait_for("nginx", lambda: http_status("10.245.1.4", 8080, "warm.bench") == 200, timeout=20)
    runs = []
    try:
        for proto in protocols:
            legs = {"direct": (*ctx.backend, None), **targets,
                    "nginx": ("10.245.1.4", 8080 if proto == "h1" else 8081, nginx[proto].popen.pid)}
            for rnd in range(rounds):
                # h2c: 4 connections of 16 streams each (c = 64 requests in flight).
                for c in concurrencies if proto == "h1" else (64,):
                    for name, (ip, port, pid) in legs.items():
                        runs.append(warm_leg(ctx, proto, rnd, c, name, ip, port, pid, duration))
    finally:
        for p in nginx.values():
            p.stop(grace=5)
    return summarize(runs, ("protocol", "c", "leg"), ("rps", "p50_us", "p99_us", "p999_us", "cpu_us_per_req", "rss_kib"))


def warm_leg(ctx, proto, rnd, c, name, ip, port, pid, duration):
    cpu0 = cpu_seconds(pid) if pid else None
    shape = ["-c", c] if proto == "h1" else ["-c", c // 16, "--protocol", "h2", "--h2-streams", 16]
    r = loadtest(ctx, f"http://{ip}:{port}/", "--host", "warm.bench", *shape, "-d", duration, "--warmup", "1s")
    answers = r["responses"] * (1 + 1 / float(duration.rstrip("s")))  # CPU is read over the warm-up too
    cpu = (cpu_seconds(pid) - cpu0) * 1e6 / max(answers, 1) if pid else None
    log(f"warm {proto} round {rnd + 1} c={c} {name}: {r['rps']:.0f} req/s p99 {r['latency']['p99_us']:.0f} µs"
        + (f" cpu {cpu:.1f} µs/req" if cpu else ""))
    return {"protocol": proto, "round": rnd, "c": c, "leg": name, "rps": r["rps"], "p50_us": r["latency"]["p50_us"],
            "p99_us": r["latency"]["p99_us"], "p999_us": r["latency"]["p999_us"], "cdf": r["cdf"],
            "failed": r["responses"] - r["ok"], "cpu_us_per_req": cpu, "rss_kib": rss_kib(pid) if pid else None}


def summarize(runs, keys, fields):
    groups = {}
    for r in runs:
        groups.setdefault(tuple(r[k] for k in keys), []).append(r)
    return {"runs": runs, "summary": [dict(zip(keys, k)) | {f: spread([r[f] for r in rs]) for f in fields}
                                      for k, rs in groups.items()]}


def burst(ctx, targets, sizes=(1000, 10000), rounds=3):
    runs = []
    for rnd in range(rounds):
        for n in sizes:
            for name, (ip, port, pid) in targets.items():
                admin = 9090 if name == "httpscale" else GO_PORTS["admin"]
                runs.append(one_burst(ctx, name, ip, port, admin, pid, n, rnd))
    return summarize(runs, ("n", "leg"), ("served", "release_first_ms", "release_p50_ms", "release_last_ms",
                                          "kib_per_held_request"))


def one_burst(ctx, name, ip, port, admin, pid, n, rnd):
    burst_slice(ctx, ready=False)
    time.sleep(1.5)  # both interceptors see the Service unready
    rss0 = rss_kib(pid)
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        client = subprocess.Popen([str(ctx.loadtest), "run", f"http://{ip}:{port}/", "--host", "burst.bench", "-c",
                                   str(n), "--requests-per-connection", "1", "-d", "90s", "--warmup", "0s",
                                   "--timeout", "90s", "--quiet", "--json", f.name],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        t0, held = time.monotonic(), 0
        while held < n and time.monotonic() - t0 < 60:
            held = max(held, queue_concurrency(ip, admin, f"{NS}/burst"))
            time.sleep(0.05)
        held_after = time.monotonic() - t0
        time.sleep(0.5)
        rss_held = rss_kib(pid)
        burst_slice(ctx, ready=True)
        released = time.monotonic()
        client.wait(timeout=120)
        r = json.loads(Path(f.name).read_text())
    times = sorted((t - released) * 1000 for t in r["completions_monotonic_s"])
    row = {"leg": name, "n": n, "round": rnd, "held": held, "held_after_s": round(held_after, 2), "served": r["ok"],
           "release_first_ms": times[0] if times else None,
           "release_p50_ms": times[len(times) // 2] if times else None,
           "release_last_ms": times[-1] if times else None, "rss_before_kib": rss0, "rss_holding_kib": rss_held,
           "kib_per_held_request": (rss_held - rss0) / n, "release_curve": curve(times)}
    log(f"burst N={n} {name}: served {r['ok']}, last {row['release_last_ms']:.0f} ms after release, "
        f"{row['kib_per_held_request']:.1f} KiB per held request")
    return row


def curve(times, points=50):
    """(ms after release, share served) at `points` evenly spaced ranks, for the release-timeline chart."""
    if not times:
        return []
    n = len(times)
    return [(round(times[min(n - 1, int(i * n / points))], 2), round(min(n, int(i * n / points) + 1) / n, 4))
            for i in range(points + 1)]


def many_routes(ctx, targets, counts=(10, 100, 1000, 5000), repeats=3):
    created, runs = 0, []
    for count in counts:
        while created < count:
            ctx.kube.create(httpso(f"r-{created}", [f"r-{created}.bench"], "warm", replicas=(1, 1)))
            created += 1
        hosts = [f"r-{i}.bench" for i in range(count)]
        for name, (ip, port, _) in targets.items():
            wait_for(f"{name} routes r-{count - 1}.bench",
                     lambda i=ip, p=port: http_status(i, p, hosts[-1]) == 200, timeout=120)
        for rep in range(repeats):
            for name, (ip, port, pid) in targets.items():
                host_args = [a for h in hosts[:: max(1, count // 500)] for a in ("--host", h)]
                r = loadtest(ctx, f"http://{ip}:{port}/", *host_args, "-c", 16, "-d", "3s", "--warmup", "1s")
                new = f"new-{count}-{rep}-{name}.bench"
                ctx.kube.create(httpso(f"new-{count}-{rep}-{name}", [new], "warm", replicas=(1, 1)))
                applied = time.monotonic()
                wait_for(f"{name} to route {new}", lambda i=ip, p=port: http_status(i, p, new) == 200, timeout=60,
                         interval=0.005)
                runs.append({"routes": count, "leg": name, "round": rep, "rps": r["rps"],
                             "p99_us": r["latency"]["p99_us"], "apply_to_routed_ms": (time.monotonic() - applied) * 1000,
                             "rss_kib": rss_kib(pid)})
                log(f"many-routes {count} {name}: {r['rps']:.0f} req/s, apply → routed "
                    f"{runs[-1]['apply_to_routed_ms']:.0f} ms")
    return summarize(runs, ("routes", "leg"), ("rps", "p99_us", "apply_to_routed_ms", "rss_kib"))


def hung_scaler(ctx, rounds=3):
    """Each scaler's StreamIsActive for a cold route, with a hung interceptor in the fleet and without."""
    hung = socket.socket()
    hung.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    hung.bind((HUNG_IP, 9090))
    hung.listen(1000)  # accepts (the kernel completes handshakes) and never answers
    scalers = {"httpscale": f"{ctx.hs.scaler.ip}:9090", "keda-http-add-on": f"{ctx.go_scaler.ip}:9091"}
    runs = []
    try:
        for with_hung in (False, True):
            ips = [i.ip for i in ctx.hs.interceptors] + ([HUNG_IP] if with_hung else [])
            ctx.hs.write_slice("keda-add-ons-http-interceptor-admin", ips, {"admin": 9090})
            time.sleep(3)
            for rnd in range(rounds):
                seen = first_true(scalers)
                for name, ms in seen.items():
                    runs.append({"leg": name, "hung_interceptor": with_hung, "round": rnd, "activation_ms": ms})
                log(f"hung-scaler with_hung={with_hung} round {rnd + 1}: " + json.dumps(seen))
                time.sleep(3)
    finally:
        hung.close()
        ctx.hs.publish_interceptors()
    return summarize(runs, ("hung_interceptor", "leg"), ("activation_ms",))


def first_true(scalers, hold_for=15):
    """Subscribes to every scaler's StreamIsActive for bench/hung, then holds one request (cut after `hold_for`
    seconds) and returns when each scaler first said true, in ms after the request was sent (None: never)."""
    import grpc
    pb2, pb2_grpc = scaler_protocol()
    ref = pb2.ScaledObjectRef(name="hung", namespace=NS, scalerMetadata={"httpScaledObject": "hung"})
    seen, t0, subscribed = {}, [None], threading.Semaphore(0)

    def watch(name, addr):
        with grpc.insecure_channel(addr) as ch:
            # Long enough to outlive the wait for every subscriber's first answer (a stalled scaler may not give one).
            stream = pb2_grpc.ExternalScalerStub(ch).StreamIsActive(ref, timeout=SUBSCRIBE_WAIT + hold_for + 5)
            try:
                for i, msg in enumerate(stream):
                    if i == 0:
                        subscribed.release()
                    if msg.result and t0[0] is not None:
                        seen[name] = round((time.monotonic() - t0[0]) * 1000, 1)
                        stream.cancel()
            except grpc.RpcError:
                pass

    threads = [threading.Thread(target=watch, args=item, daemon=True) for item in scalers.items()]
    for t in threads:
        t.start()
    deadline = time.monotonic() + SUBSCRIBE_WAIT
    for _ in threads:
        subscribed.acquire(timeout=max(0.0, deadline - time.monotonic()))
    with socket.create_connection(("10.245.1.1", 8080)) as held:
        t0[0] = time.monotonic()
        held.sendall(b"GET / HTTP/1.1\r\nHost: hung.bench\r\n\r\n")
        for t in threads:
            t.join(max(0.1, hold_for - (time.monotonic() - t0[0])))
    return {name: seen.get(name) for name in scalers}


def run(ctx, upstream_dir, out):
    targets = prepare(ctx, upstream_dir)
    if os.environ.get("HTTPSCALE_BENCH_QUICK"):  # a smoke run of the machinery, minutes instead of an hour
        results = {"warm": warm(ctx, targets, concurrencies=(16,), rounds=1, duration="2s"),
                   "burst": burst(ctx, targets, sizes=(200,), rounds=1),
                   "many_routes": many_routes(ctx, targets, counts=(10, 50), repeats=1),
                   "hung_scaler": hung_scaler(ctx, rounds=1)}
    else:
        results = {"warm": warm(ctx, targets), "burst": burst(ctx, targets), "many_routes": many_routes(ctx, targets),
                   "hung_scaler": hung_scaler(ctx)}
    Path(out).write_text(json.dumps(results, indent=1) + "\n")
    return results


def activation(ctx, out, runs=None):
    """The tutorial on this cluster's add-on: `runs` cold starts with the real KEDA, each step timed from the
    client's first byte (the StreamIsActive answer as a subscriber beside KEDA's receives it, for both)."""
    from scenarios import FIXTURES, STEPS, cold_request, docs, shorten_idle, wait_for_zero
    runs = runs or (2 if os.environ.get("HTTPSCALE_BENCH_QUICK") else 5)
    ctx.namespace("ollama")
    ctx.workload("ollama", "ollama", 11434, args=["--delay", "0.05"])
    ctx.kube.apply(docs(FIXTURES / "tutorial-httpscaledobject.yaml")[0], manager="kubectl")
    wait_for("ScaledObject ollama/ollama Ready", lambda: ctx.scaled_object_ready("ollama", "ollama"), timeout=90)
    steps = []
    for i in range(runs):
        if i == 1:
            shorten_idle(ctx)
        if i:
            wait_for_zero(ctx, "ollama", "ollama", timeout=180)
        steps.append(cold_request(ctx, "ollama", "ollama", "ollama.ollama"))
        log(f"{ctx.hs.name} cold start {i + 1}: " + json.dumps({k: round(v) for k, v in steps[-1].items()}))
    result = {"add_on": ctx.hs.name, "runs": steps,
              "summary": {k: spread([s.get(k) for s in steps]) for k in STEPS}}
    Path(out).write_text(json.dumps(result, indent=1) + "\n")
    return result


# Report ----------------------------------------------------------------------------------------------------------

def report(data_path, activations, loadtest_bin, chart_dir):
    """Markdown tables (httpscale ÷ KEDA HTTP add-on) on stdout, and the SVG charts, from the JSON results."""
    chart_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    if data_path:
        lines += warm_table(data_path["warm"]["summary"]) + burst_table(data_path["burst"]["summary"])
        lines += routes_table(data_path["many_routes"]["summary"]) + hung_table(data_path["hung_scaler"]["summary"])
        draw(loadtest_bin, chart_dir / "warm-latency.svg", latency_chart(data_path["warm"]["runs"]))
        draw(loadtest_bin, chart_dir / "burst-release.svg", release_chart(data_path["burst"]["runs"]))
    if activations:
        lines += activation_table(activations)
        draw(loadtest_bin, chart_dir / "activation.svg", activation_chart(activations))
    print("\n".join(lines))


def med(cell, digits=0):
    return "–" if not cell else f"{cell['median']:.{digits}f} ({cell['min']:.{digits}f}–{cell['max']:.{digits}f})"


def ratio(a, b, digits=2):
    return "–" if not a or not b or not b["median"] else f"{a['median'] / b['median']:.{digits}f}×"


def pick(summary, leg, **keys):
    return next((s for s in summary if s["leg"] == leg and all(s[k] == v for k, v in keys.items())), {})


def warm_table(summary):
    out = ["| protocol | c | leg | req/s | p50 µs | p99 µs | p99.9 µs | CPU µs/req | RSS MiB |", "|---|---|---|---|---|---|---|---|---|"]
    for s in summary:
        rss = s["rss_kib"] and {k: v / 1024 for k, v in s["rss_kib"].items()}
        out.append(f"| {s['protocol']} | {s['c']} | {s['leg']} | {med(s['rps'])} | {med(s['p50_us'])} | {med(s['p99_us'])} "
                   f"| {med(s['p999_us'])} | {med(s['cpu_us_per_req'], 1)} | {med(rss, 1)} |")
    out += ["", "| protocol | c | req/s httpscale ÷ add-on | p99 httpscale ÷ add-on | CPU/req httpscale ÷ add-on | req/s httpscale ÷ nginx |",
            "|---|---|---|---|---|---|"]
    for s in summary:
        if s["leg"] == "httpscale":
            up, ng = pick(summary, "keda-http-add-on", protocol=s["protocol"], c=s["c"]), pick(
                summary, "nginx", protocol=s["protocol"], c=s["c"])
            out.append(f"| {s['protocol']} | {s['c']} | {ratio(s['rps'], up.get('rps'))} | {ratio(s['p99_us'], up.get('p99_us'))} "
                       f"| {ratio(s['cpu_us_per_req'], up.get('cpu_us_per_req'))} | {ratio(s['rps'], ng.get('rps'))} |")
    return out + [""]


def measured(cell, digits=0):
    """`med`, or "not measurable" when a round went below zero: an RSS difference that the Go runtime's kept heap
    swallowed, or completions stamped before the release (docs/benchmarks.md says why)."""
    return "not measurable" if cell and cell["min"] < 0 else med(cell, digits)


def burst_table(summary):
    out = ["| N held | leg | served | first ms | median ms | last ms | KiB per held request |", "|---|---|---|---|---|---|---|"]
    for s in summary:
        out.append(f"| {s['n']} | {s['leg']} | {med(s['served'])} | {measured(s['release_first_ms'])} "
                   f"| {measured(s['release_p50_ms'])} | {measured(s['release_last_ms'])} "
                   f"| {measured(s['kib_per_held_request'], 1)} |")
    return out + [""]


def routes_table(summary):
    out = ["| routes | leg | req/s over all hosts | p99 µs | apply → routed ms | RSS MiB |", "|---|---|---|---|---|---|"]
    for s in summary:
        rss = s["rss_kib"] and {k: v / 1024 for k, v in s["rss_kib"].items()}
        out.append(f"| {s['routes']} | {s['leg']} | {med(s['rps'])} | {med(s['p99_us'])} | {med(s['apply_to_routed_ms'])} "
                   f"| {med(rss, 1)} |")
    return out + [""]


def hung_table(summary):
    out = ["| hung interceptor in the fleet | scaler | request → StreamIsActive true, ms |", "|---|---|---|"]
    for s in summary:
        out.append(f"| {'yes' if s['hung_interceptor'] else 'no'} | {s['leg']} | {med(s['activation_ms'])} |")
    return out + [""]


def activation_table(activations):
    out = ["| add-on | StreamIsActive true | Deployment scaled (KEDA) | pod Ready | first response byte |", "|---|---|---|---|---|"]
    for a in activations:
        s = a["summary"]
        out.append(f"| {a['add_on']} | {med(s['stream_is_active'], 1)} | {med(s['replicas_1'])} | {med(s['pod_ready'])} "
                   f"| {med(s['first_byte'])} |")
    return out + [""]


def latency_chart(runs):
    """Latency against quantile at c = 64 over HTTP/1.1, the median round of each leg."""
    series = []
    for leg in ("direct", "httpscale", "keda-http-add-on", "nginx"):
        rs = sorted((r for r in runs if r["leg"] == leg and r["protocol"] == "h1" and r["c"] == 64), key=lambda r: r["rps"])
        if rs:
            mid = rs[len(rs) // 2]
            series.append({"name": leg, "points": [(q, us) for q, us in mid["cdf"] if 0.5 <= q < 1.0]})
    return {"title": "Warm path latency, HTTP/1.1, 64 connections", "x_label": "quantile", "y_label": "latency (µs)",
            "x_scale": "nines", "kind": "lines", "series": series}


def release_chart(runs):
    """Share of a 10 000-request burst answered against time after the release, the slowest round of each."""
    series = []
    for leg in ("httpscale", "keda-http-add-on"):
        rs = sorted((r for r in runs if r["leg"] == leg and r["n"] == max(x["n"] for x in runs)),
                    key=lambda r: r["release_last_ms"] or 0)
        if rs:
            series.append({"name": leg, "points": rs[-1]["release_curve"]})
    return {"title": "Release of a held burst (slowest round)", "x_label": "ms after the EndpointSlice turned ready",
            "y_label": "share answered", "kind": "lines", "series": series}


def activation_chart(activations):
    rows = []
    for a in activations:
        s, t = a["summary"], 0.0
        spans = []
        for key, label in (("stream_is_active", "scaler answers"), ("replicas_1", "KEDA scales"),
                           ("pod_ready", "pod Ready"), ("first_byte", "first byte")):
            if s.get(key):
                spans.append({"label": label, "from": t, "to": s[key]["median"]})
                t = s[key]["median"]
        rows.append({"name": a["add_on"], "spans": spans})
    return {"title": "Activation, tutorial request (medians)", "x_label": "ms after the request", "kind": "timeline",
            "rows": rows}


def draw(loadtest_bin, path, chart):
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump(chart, f)
        f.flush()
        subprocess.run([str(loadtest_bin), "chart", "--input", f.name, "--out", str(path)], check=True)


if __name__ == "__main__":
    # python e2e/bench.py report: tables and charts from target/e2e/bench-*.json
    target = REPO / "target/e2e"
    load_json = lambda p: json.loads(p.read_text()) if p.exists() else None  # noqa: E731
    acts = [a for a in (load_json(target / f"bench-activation-{n}.json") for n in ("httpscale", "upstream")) if a]
    report(load_json(target / "bench-data-path.json"), acts, Path(sys.argv[2] if len(sys.argv) > 2 else
                                                                    REPO / "target/release/loadtest"),
           REPO / "docs/benchmarks")
