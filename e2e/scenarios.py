"""The real-cluster scenarios, in order. Each takes the shared Context and raises on failure.

Every wait is bounded; every claim is checked against the real API server, the real KEDA or a real client.
"""
import http.client
import json
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from textwrap import dedent

import yaml

from cluster import wait_for
from kube import ApiError, conditioned

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "charts/tests/fixtures"
SCALER_ADDRESS = "keda-add-ons-http-external-scaler.keda:9090"
# What the real API server must say for each invalid fixture (schema, CEL or strict field validation).
EXPECTED_REJECTIONS = {
    "missing-service": "spec.scaleTargetRef.service: Required value",
    "misspelt-field": 'strict decoding error: unknown field "spec.scaledownPeriods"',
    "no-scaling-metric": "spec.scalingMetric: Required value",
    "port-out-of-range": "spec.target.port in body should be less than or equal to 65535",
    "metadata-not-string": "interceptorTargetPendingRequests in body must be of type string",
    "port-and-port-name": "must define either the 'portName' or the 'port'",
    "failover-without-port": "must define either the 'portName' or the 'port'",
    "empty-scaling-metric": "at least one of 'concurrency' or 'requestRate' must be set",
    "body-and-configmap": "at most one of 'body' or 'bodyFromConfigMap' may be set",
    "overflow-placeholder-without-placeholder": "'placeholder' must be set when 'overflow' is 'Placeholder'",
    "status-code-below-100": "spec.coldStart.placeholder.response.statusCode in body should be greater than or equal to 100",
    "empty-cold-start": "at least one of 'fallback', 'placeholder' or 'maxPendingRequests' must be set",
    "bad-response-mode": 'Unsupported value: "Sometimes": supported values: "Always", "WhenUnavailable"',
}


def log(msg):
    print(f"    {msg}", file=sys.stderr, flush=True)


def docs(path):
    return [d for d in yaml.safe_load_all(Path(path).read_text()) if d]


class Context:
    """Everything a scenario may use; built once by run.py."""

    def __init__(self, plane, keda, hs):
        self.plane, self.keda, self.hs = plane, keda, hs
        self.kube = plane.admin
        self.activation = []  # one dict of step -> ms per measured cold start
        self.interceptor_url = None

    def namespace(self, name):
        self.kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        wait_for(f"ServiceAccount {name}/default", lambda: self.kube.find("ServiceAccount", name, "default"))

    def workload(self, namespace, name, port, backend="fake-ollama", replicas=0, args=(), app_protocol=None):
        """A Deployment whose pods run a real backend (started by PodBackends) and its Service."""
        labels = {"app": name}
        self.kube.apply({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": namespace},
                         "spec": {"replicas": replicas, "selector": {"matchLabels": labels}, "template": {
                             "metadata": {"labels": labels, "annotations": {
                                 "e2e.httpscale.io/backend": backend,
                                 "e2e.httpscale.io/backend-args": json.dumps(list(args))}},
                             "spec": {"containers": [{"name": name, "image": f"e2e/{backend}:1",
                                                      "ports": [{"name": "http", "containerPort": port}]}],
                                      "terminationGracePeriodSeconds": 1}}}})
        self.kube.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
                         "spec": {"selector": labels, "ports": [{"name": "http", "port": port, "targetPort": port}
                                                                | ({"appProtocol": app_protocol} if app_protocol else {})]}})

    def replicas(self, namespace, name):
        return self.kube.get("Deployment", namespace, name)["spec"].get("replicas", 1)

    def scaled_object_ready(self, namespace, name):
        return conditioned(self.kube.find("ScaledObject", namespace, name), "Ready") is not None


# 1. install ------------------------------------------------------------------------------------------------------

# The Markdown files whose `kubectl apply -f - <<'EOF'` blocks are examples users copy.
EXAMPLE_DOCS = ["README.md", "charts/README.md", "docs/*.md"]
KEDA_GROUPS = ("http.keda.sh/", "keda.sh/")


def example_resources():
    """Every example custom resource in the repository, as (where, object): the chart's fixtures (all but the
    invalid ones and the CRD fixture) and the heredocs users apply from the READMEs and docs. examples/ holds
    standalone configuration files, not custom resources."""
    found = []
    for path in sorted(FIXTURES.glob("*.yaml")):
        if path.name.startswith("invalid-"):
            continue
        found += [(path.name, d) for d in docs(path) if d.get("kind") != "CustomResourceDefinition"]
    for pattern in EXAMPLE_DOCS:
        for path in sorted(REPO.glob(pattern)):
            for block in re.findall(r"<<'EOF'\n(.*?)\n\s*EOF", path.read_text(), re.S):
                found += [(str(path.relative_to(REPO)), d) for d in yaml.safe_load_all(dedent(block))
                          if isinstance(d, dict) and str(d.get("apiVersion", "")).startswith(KEDA_GROUPS)]
    return found


def install(ctx):
    applied = ctx.hs.install()
    log(f"applied {len(applied)} chart objects: " + ", ".join(applied))
    ctx.namespace("ollama")
    accepted = []
    for where, doc in example_resources():
        ns = doc["metadata"].setdefault("namespace", "default")
        ctx.namespace(ns)
        try:
            ctx.kube.create(doc, dry_run=True)
        except ApiError as e:
            raise AssertionError(f"the API server refused the example {doc['kind']}/{doc['metadata']['name']} "
                                 f"of {where}: {e.message}") from e
        accepted.append(f"{where}: {doc['kind']}/{doc['metadata']['name']}")
    sources = {a.split(":")[0] for a in accepted}
    assert {"extensions.yaml", "custom-resources.yaml", "tutorial-httpscaledobject.yaml", "README.md"} <= sources, sources
    log("accepted: " + "; ".join(accepted))
    rejected = {}
    for doc in docs(FIXTURES / "invalid-custom-resources.yaml"):
        name = doc["metadata"]["name"]
        ctx.namespace(doc["metadata"]["namespace"])
        try:
            ctx.kube.create(doc, dry_run=True)
        except ApiError as e:
            rejected[name] = e.message
            continue
        raise AssertionError(f"the API server accepted the invalid fixture {name}")
    for name, message in rejected.items():
        log(f"rejected {name}: {message}")
    for name, message in rejected.items():
        want = EXPECTED_REJECTIONS.get(name)
        assert want, f"no expected message listed for invalid fixture {name}"
        assert want in message, f"{name}: expected {want!r} in the API server's message {message!r}"
    log(f"{len(accepted)} example objects accepted, {len(rejected)} invalid fixtures rejected")


# 2. rbac ----------------------------------------------------------------------------------------------------------

def rbac(ctx):
    """Our components start with their chart ServiceAccounts' tokens and do their jobs without a 403."""
    ctx.hs.start_operator()
    ctx.hs.start_scaler()
    ctx.hs.start_interceptor(0)
    ctx.interceptor_url = f"http://{ctx.hs.interceptors[0].ip}:8080"
    wait_for("the operator's Lease", lambda: (ctx.kube.find("Lease", "keda", "http-add-on.keda.sh") or {})
             .get("spec", {}).get("holderIdentity"), timeout=60)
    # Authorization is really enforced: a ServiceAccount without bindings may not read our routes.
    ctx.kube.apply({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "e2e-nobody", "namespace": "keda"}})
    _, nobody = ctx.plane.service_account("keda", "e2e-nobody")
    try:
        nobody.get("HTTPScaledObject")
        raise AssertionError("a ServiceAccount with no RoleBinding listed HTTPScaledObjects: RBAC is not enforced")
    except ApiError as e:
        assert e.status == 403, e
    time.sleep(2)
    for c in [ctx.hs.operator, ctx.hs.scaler, *ctx.hs.interceptors]:
        assert not c.forbidden_lines(), f"{c.name} was refused by RBAC:\n" + "\n".join(c.forbidden_lines()[:5])


def https_get(url, token=None):
    """(status, body) of a GET over HTTPS, the certificate not verified (as a ServiceMonitor with
    insecureSkipVerify scrapes the operator's self-signed one)."""
    import ssl
    import urllib.error
    import urllib.request
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    unverified = ssl._create_unverified_context()
    try:
        with urllib.request.urlopen(req, timeout=10, context=unverified) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def operator_metrics(ctx):
    """The operator's /metrics as upstream's chart serves it (operator.metrics.secure and .auth on): HTTPS, a
    token the real API server accepts (TokenReview), whose user the chart's metrics-reader ClusterRole allows
    (SubjectAccessReview); everyone else is refused with controller-runtime's answers."""
    op = ctx.hs.operator
    url = f"https://{op.ip}:{op.ports['metrics']}/metrics"
    ctx.kube.apply({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "e2e-scraper", "namespace": "keda"}})
    ctx.kube.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                    "metadata": {"name": "e2e-scraper-metrics-reader"},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                "name": "keda-add-ons-http-metrics-reader"},
                    "subjects": [{"kind": "ServiceAccount", "name": "e2e-scraper", "namespace": "keda"}]})
    reader = (ctx.plane.service_account("keda", "e2e-scraper")[0] / "token").read_text()
    nobody = (ctx.plane.service_account("keda", "e2e-nobody")[0] / "token").read_text()
    # RBAC bindings reach the authorizer's cache within a moment.
    wait_for("the scraper allowed", lambda: https_get(url, reader)[0] == 200, timeout=30)
    status, body = https_get(url, reader)
    assert "leader_election_master_status 1" in body, body[:500]
    status, body = https_get(url, nobody)
    assert (status, body) == (403, "Authorization denied for user system:serviceaccount:keda:e2e-nobody\n"), (status, body)
    assert https_get(url) == (401, "Unauthorized\n")
    assert https_get(url, "not-a-token")[0] == 401
    lines = [l for l in op.proc.log_tail(100000).splitlines() if "metrics request refused" in l]
    assert any("e2e-nobody" in l for l in lines), "the refusal is logged naming the user"
    log(f"operator /metrics over HTTPS: reader 200, nobody 403, no token 401; {len(lines)} refusals logged")


# 3. tutorial ------------------------------------------------------------------------------------------------------

class Timeline:
    """Watches one cold start and stamps when each activation step happened, on CLOCK_MONOTONIC, the clock of
    every process here; `steps()` gives them in ms after the client's first byte (`sent`, stamped by the
    client's own request hook just before it writes the request).

    The request is sent only once every watch has listed and the StreamIsActive subscriber has its first
    answer, so each step is stamped when it happens, not when a late watcher first looks. `stream_is_active`
    is the first `true` that subscriber (e2e/stream_watch.py, a process of its own opening the call KEDA opens,
    on the scaler's Service address) receives: what KEDA sees, not what the scaler thinks it sent.
    """

    def __init__(self, ctx, namespace, name, scaler_ref):
        self.ctx, self.ns, self.name, self.scaler_ref = ctx, namespace, name, scaler_ref
        self.sent = None
        self.at = {}
        self.stop = threading.Event()
        self.synced = threading.Semaphore(0)

    def __enter__(self):
        watchers = [("Deployment", "replicas_1", self._scaled), ("Pod", "pod_ready", self._pod_ready)]
        for args in watchers:
            threading.Thread(target=self._watch, args=args, daemon=True).start()
        self.subscriber = subprocess.Popen(
            [sys.executable, str(REPO / "e2e/stream_watch.py"), SCALER_ADDRESS, self.ns, *self.scaler_ref],
            stdout=subprocess.PIPE, text=True, cwd=REPO)
        threading.Thread(target=self._subscribed, daemon=True).start()
        for _ in range(len(watchers) + 1):
            assert self.synced.acquire(timeout=30), "a timeline watcher or the StreamIsActive subscriber did not start"
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.subscriber.kill()
        self.subscriber.wait()

    def send(self, _request=None):
        """The client's request hook: the request's first byte goes out now."""
        if self.sent is None:
            self.sent = time.monotonic()

    def steps(self):
        return {k: (v - self.sent) * 1000 for k, v in self.at.items()}

    def _subscribed(self):
        first = True
        for line in self.subscriber.stdout:
            stamp, _, answer = line.strip().partition(" ")
            if stamp == "error":
                log(f"StreamIsActive failed: {answer}")
            elif answer == "true" and self.sent is not None:
                self.at.setdefault("stream_is_active", float(stamp))
            if first:
                self.synced.release()
                first = False

    def _scaled(self, obj):
        return obj["metadata"]["name"] == self.name and obj["spec"].get("replicas", 0) >= 1

    def _pod_ready(self, obj):
        return obj["metadata"].get("labels", {}).get("app") == self.name and conditioned(obj, "Ready")

    def _watch(self, kind, step, predicate):
        for event, obj in self.ctx.kube.watch(kind, self.ns, stop=self.stop):
            if event == "SYNCED":
                self.synced.release()
            elif predicate(obj) and self.sent is not None:
                self.at.setdefault(step, time.monotonic())


def scaler_protocol():
    """The KEDA external scaler's Python stubs, generated from the proto the scaler serves (grpcio-tools)."""
    sys.path.insert(0, str(REPO / "tests/peers"))
    from _externalscaler_gen import load
    return load()


def ollama_client(ctx, host, timeout=180, on_send=None):
    """The official Ollama client aimed at the interceptor with a Host header; it records response headers and
    calls `on_send` just before it writes a request."""
    import ollama
    headers = {}
    hooks = {"response": [lambda r: headers.update(r.headers)]}
    if on_send:
        hooks["request"] = [on_send]
    client = ollama.Client(host=ctx.interceptor_url, headers={"Host": host}, timeout=timeout, event_hooks=hooks)
    return client, headers


def ollama_generate(client):
    """A streamed generate; returns the chunks' arrival times (monotonic clock) and the streamed text."""
    arrivals, text = [], ""
    for part in client.generate(model="gemma:7b", prompt="Hello!", stream=True):
        arrivals.append(time.monotonic())
        text += part.response
        if part.done:
            break
    return arrivals, text


STEPS = ("stream_is_active", "replicas_1", "pod_ready", "first_byte")


def cold_request(ctx, namespace, name, host, scaler_ref=None):
    """One request to a workload at zero, timed step by step from the client's first byte; returns the timeline
    in ms. `scaler_ref`: the scalerMetadata KEDA sends (default: the HTTPScaledObject `name`)."""
    assert ctx.replicas(namespace, name) == 0, f"{namespace}/{name} is not at zero replicas"
    with Timeline(ctx, namespace, name, scaler_ref or [name, f"httpScaledObject={name}"]) as tl:
        client, headers = ollama_client(ctx, host, on_send=tl.send)
        arrivals, text = ollama_generate(client)
        tl.at["first_byte"] = arrivals[0]
        wait_for("every activation step seen", lambda: set(STEPS) <= set(tl.at), timeout=10)
    cold = headers.get("x-keda-http-cold-start")
    assert cold == "true", f"X-KEDA-HTTP-Cold-Start was {cold!r} on a request that waited for a scale-up"
    assert len(arrivals) > 2 and arrivals[-1] - arrivals[0] > 0.1, f"the answer did not stream: {arrivals}"
    assert f"host={host}" in text, f"the backend did not see Host {host}: {text!r}"
    return tl.steps()


def tutorial(ctx):
    ctx.namespace("ollama")
    ctx.workload("ollama", "ollama", 11434, args=["--delay", "0.05"])
    tutorial_doc = docs(FIXTURES / "tutorial-httpscaledobject.yaml")[0]
    ctx.kube.apply(tutorial_doc, manager="kubectl")
    wait_for("ScaledObject ollama/ollama Ready (KEDA)", lambda: ctx.scaled_object_ready("ollama", "ollama"), timeout=60)
    check_tutorial_objects(ctx)
    steps = cold_request(ctx, "ollama", "ollama", "ollama.ollama")
    log("tutorial cold start (ms): " + json.dumps({k: round(v) for k, v in steps.items()}))
    ctx.activation.append(steps)
    assert ctx.replicas("ollama", "ollama") == 1


def check_tutorial_objects(ctx):
    """What `kubectl get hpa,scaledobject,httpso -n ollama` shows after step 5 of the tutorial."""
    spec = ctx.kube.get("ScaledObject", "ollama", "ollama")["spec"]
    target = spec["scaleTargetRef"]
    assert (target.get("apiVersion"), target.get("kind"), target["name"]) == ("apps/v1", "Deployment", "ollama"), target
    counts = tuple(spec.get(k) for k in ("minReplicaCount", "maxReplicaCount", "cooldownPeriod", "pollingInterval"))
    assert counts == (0, 2, 3600, 15), counts
    trigger = spec["triggers"][0]
    assert trigger["type"] == "external-push", trigger
    assert trigger["metadata"] == {"scalerAddress": SCALER_ADDRESS, "httpScaledObject": "ollama"}, trigger
    hpa = wait_for("HPA keda-hpa-ollama", lambda: ctx.kube.find("HorizontalPodAutoscaler", "ollama", "keda-hpa-ollama"))
    got = (hpa["spec"]["scaleTargetRef"]["name"], hpa["spec"].get("minReplicas"), hpa["spec"]["maxReplicas"])
    assert got == ("ollama", 1, 2), hpa["spec"]
    httpso = wait_for("HTTPScaledObject ollama/ollama Ready", lambda: conditioned(
        ctx.kube.get("HTTPScaledObject", "ollama", "ollama"), "Ready"))
    status = httpso.get("status", {})
    assert (status.get("targetWorkload"), status.get("targetService")) == ("apps/v1/Deployment/ollama", "ollama:11434"), status
    ready = [c for c in status.get("conditions", []) if c["type"] == "Ready"]
    assert ready and (ready[0]["status"], ready[0]["reason"], ready[0]["message"]) == (
        "True", "Reconciled", "ScaledObject created and configured"), ready
    assert "httpscaledobject.http.keda.sh" in httpso["metadata"].get("finalizers", []), httpso["metadata"]


# 4. scale-to-zero -------------------------------------------------------------------------------------------------

def shorten_idle(ctx):
    """A short scaledownPeriod and rate window, so that KEDA scales the tutorial's Deployment down in seconds."""
    ctx.kube.merge_patch("HTTPScaledObject", "ollama", "ollama", {"spec": {
        "scaledownPeriod": 3, "scalingMetric": {"requestRate": {"window": "5s", "granularity": "1s"}}}})
    wait_for("ScaledObject cooldownPeriod 3", lambda: ctx.kube.get("ScaledObject", "ollama", "ollama")["spec"]
             .get("cooldownPeriod") == 3, timeout=30)


def wait_for_zero(ctx, namespace, name, timeout=90):
    wait_for(f"KEDA to scale {namespace}/{name} to zero", lambda: ctx.replicas(namespace, name) == 0, timeout=timeout)
    wait_for(f"{namespace}/{name}'s pods to go", lambda: not ctx.kube.get("Pod", namespace, labelSelector=f"app={name}")["items"],
             timeout=60)
    wait_for(f"{namespace}/{name}'s endpoints to empty", lambda: not ready_addresses(ctx, namespace, name), timeout=30)


def ready_addresses(ctx, namespace, service):
    slices = ctx.kube.get("EndpointSlice", namespace, labelSelector=f"kubernetes.io/service-name={service}")["items"]
    return [a for s in slices for e in s.get("endpoints") or [] if e.get("conditions", {}).get("ready") for a in e["addresses"]]


def scale_to_zero(ctx):
    shorten_idle(ctx)
    wait_for_zero(ctx, "ollama", "ollama")
    steps = cold_request(ctx, "ollama", "ollama", "ollama.ollama")
    ctx.activation.append(steps)
    assert ctx.replicas("ollama", "ollama") == 1


# 5. ownership -----------------------------------------------------------------------------------------------------

def ownership(ctx):
    ctx.namespace("owned")
    ctx.workload("owned", "web", 8080, backend="http", replicas=0)
    httpso = {"apiVersion": "http.keda.sh/v1alpha1", "kind": "HTTPScaledObject",
              "metadata": {"name": "web", "namespace": "owned"},
              "spec": {"hosts": ["web.owned"], "replicas": {"min": 0, "max": 4},
                       "scaleTargetRef": {"name": "web", "kind": "Deployment", "apiVersion": "apps/v1",
                                          "service": "web", "port": 8080},
                       "scalingMetric": {"concurrency": {"targetValue": 10}}}}
    ctx.kube.apply(httpso, manager="kubectl")
    spec = lambda: (ctx.kube.find("ScaledObject", "owned", "web") or {}).get("spec", {})  # noqa: E731
    wait_for("ScaledObject owned/web with maxReplicaCount 4", lambda: spec().get("maxReplicaCount") == 4, timeout=30)
    # Server-side apply: the user's manager drops replicas.max, the operator's apply drops maxReplicaCount.
    del httpso["spec"]["replicas"]["max"]
    ctx.kube.apply(httpso, manager="kubectl")
    wait_for("maxReplicaCount removed from the ScaledObject", lambda: "maxReplicaCount" not in spec(), timeout=30)
    # A manual edit of the owned object is reverted.
    ctx.kube.merge_patch("ScaledObject", "owned", "web", {"spec": {"minReplicaCount": 3}})
    wait_for("the manual edit reverted", lambda: spec().get("minReplicaCount", 0) == 0, timeout=30)
    so = ctx.kube.get("ScaledObject", "owned", "web")
    owner = so["metadata"]["ownerReferences"][0]
    assert owner["kind"] == "HTTPScaledObject" and owner.get("controller") is True, owner
    # Deleting the HTTPScaledObject removes the ScaledObject through the real garbage collector.
    ctx.kube.delete("HTTPScaledObject", "owned", "web")
    wait_for("the garbage collector to delete ScaledObject owned/web",
             lambda: ctx.kube.find("ScaledObject", "owned", "web") is None, timeout=60)
    wait_for("the operator to release its finalizer", lambda: ctx.kube.find("HTTPScaledObject", "owned", "web") is None,
             timeout=30)
    interceptor_route(ctx)


def interceptor_route(ctx):
    """v1beta1 InterceptorRoute + the user's own ScaledObject: held, scaled by KEDA, served."""
    ctx.workload("owned", "api", 8080, backend="http", replicas=0)
    ctx.kube.apply({"apiVersion": "http.keda.sh/v1beta1", "kind": "InterceptorRoute",
                    "metadata": {"name": "api", "namespace": "owned"},
                    "spec": {"target": {"service": "api", "port": 8080},
                             "rules": [{"hosts": ["api.owned"], "paths": [{"value": "/v1"}]}],
                             "scalingMetric": {"concurrency": {"targetValue": 5}}}}, manager="kubectl")
    ctx.kube.apply({"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
                    "metadata": {"name": "api", "namespace": "owned"},
                    "spec": {"scaleTargetRef": {"name": "api"}, "minReplicaCount": 0, "maxReplicaCount": 3,
                             "cooldownPeriod": 10, "pollingInterval": 5,
                             "triggers": [{"type": "external-push", "metadata": {
                                 "scalerAddress": SCALER_ADDRESS, "interceptorRoute": "api"}}]}}, manager="kubectl")
    wait_for("InterceptorRoute owned/api Ready",
             lambda: conditioned(ctx.kube.get("InterceptorRoute", "owned", "api"), "Ready"), timeout=30)
    wait_for("ScaledObject owned/api Ready (KEDA)", lambda: ctx.scaled_object_ready("owned", "api"), timeout=60)
    status, headers, body = request(ctx.interceptor_url, "api.owned", "/v1/items?x=1", timeout=120)
    assert status == 200, (status, body)
    assert headers.get("x-keda-http-cold-start") == "true", headers
    seen = json.loads(body)
    assert seen["path"] == "/v1/items?x=1", seen
    assert ctx.replicas("owned", "api") >= 1
    status, _, _ = request(ctx.interceptor_url, "api.owned", "/other")
    assert status == 404, f"a path outside the InterceptorRoute's rules was answered {status}"
    stream_metric_spec(ctx)


def quantity(q):
    """A Kubernetes quantity as a number (KEDA writes metric targets as milli-quantities)."""
    q = str(q)
    return float(q[:-1]) / 1000 if q.endswith("m") else float(q)


def stream_metric_spec(ctx):
    """KEDA 2.21 calls StreamMetricSpec: an InterceptorRoute's new target reaches the HPA, no ScaledObject edit."""
    def hpa_targets():
        hpa = ctx.kube.find("HorizontalPodAutoscaler", "owned", "keda-hpa-api") or {}
        return [quantity(m["external"]["target"]["averageValue"]) for m in hpa.get("spec", {}).get("metrics", [])]
    wait_for("HPA keda-hpa-api targets 5", lambda: hpa_targets() == [5.0], timeout=30)
    generation = ctx.kube.get("ScaledObject", "owned", "api")["metadata"]["generation"]
    ctx.kube.merge_patch("InterceptorRoute", "owned", "api",
                         {"spec": {"scalingMetric": {"concurrency": {"targetValue": 8}}}})
    wait_for("HPA keda-hpa-api targets 8, pushed by StreamMetricSpec", lambda: hpa_targets() == [8.0], timeout=30)
    after = ctx.kube.get("ScaledObject", "owned", "api")["metadata"]["generation"]
    assert after == generation, f"the ScaledObject was edited (generation {generation} -> {after})"


def request(base, host, path, method="GET", body=None, timeout=30, headers=None):
    """One HTTP/1.1 request with an explicit Host; returns (status, lower-cased headers, body)."""
    hostport = base.split("://", 1)[1]
    conn = http.client.HTTPConnection(hostport, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers={"Host": host, **(headers or {})})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read().decode(errors="replace")
    finally:
        conn.close()


# 6. two-interceptors ----------------------------------------------------------------------------------------------

def two_interceptors(ctx):
    import grpc
    pb2, pb2_grpc = scaler_protocol()
    second = ctx.hs.start_interceptor(1)
    ctx.namespace("pair")
    ctx.workload("pair", "slow", 8080, backend="http", replicas=1)
    ctx.kube.apply({"apiVersion": "http.keda.sh/v1alpha1", "kind": "HTTPScaledObject",
                    "metadata": {"name": "slow", "namespace": "pair"},
                    "spec": {"hosts": ["slow.pair"], "replicas": {"min": 1, "max": 10},
                             "scaleTargetRef": {"name": "slow", "service": "slow", "port": 8080},
                             "scalingMetric": {"concurrency": {"targetValue": 100}}}}, manager="kubectl")
    wait_for("ScaledObject pair/slow Ready", lambda: ctx.scaled_object_ready("pair", "slow"), timeout=60)
    wait_for("pair/slow served", lambda: request(ctx.interceptor_url, "slow.pair", "/")[0] == 200, timeout=60)
    wait_for("pair/slow served by the second interceptor",
             lambda: request(f"http://{second.ip}:8080", "slow.pair", "/")[0] == 200, timeout=60)
    first = ctx.hs.interceptors[0]
    def hold(ip):
        try:
            request(f"http://{ip}:8080", "slow.pair", "/?sleep=12")
        except OSError:
            pass  # the requests held by the interceptor that is killed die with it

    held = [threading.Thread(target=hold, args=(ip,), daemon=True) for ip in [first.ip] * 2 + [second.ip] * 3]
    for t in held:
        t.start()
    ref = pb2.ScaledObjectRef(name="slow", namespace="pair", scalerMetadata={"httpScaledObject": "slow"})
    with grpc.insecure_channel(SCALER_ADDRESS) as ch:
        stub = pb2_grpc.ExternalScalerStub(ch)

        def total():
            r = stub.GetMetrics(pb2.GetMetricsRequest(scaledObjectRef=ref, metricName=""), timeout=5)
            return r.metricValues[0].metricValue

        wait_for("the scaler to sum 2 + 3 in-flight requests", lambda: total() == 5, timeout=10)
        # Kill one interceptor: its requests die with it, the survivor's keep the route active.
        second.kill()
        killed_at = time.monotonic()
        errors, actives = [], []
        while time.monotonic() - killed_at < 6:
            try:
                actives.append(stub.IsActive(ref, timeout=5).result)
                total()
            except grpc.RpcError as e:
                errors.append(str(e))
            if time.monotonic() - killed_at > 2:
                ctx.hs.publish_interceptors()  # the endpoint goes, as a kubelet would report the pod gone
            time.sleep(0.1)
        assert not errors, f"the scaler answered KEDA with errors after an interceptor died: {errors[:3]}"
        assert all(actives), "activation was lost when one interceptor died"
        wait_for("the scaler to count only the survivor's 2", lambda: total() == 2, timeout=40)
    assert ctx.scaled_object_ready("pair", "slow"), "KEDA marked the ScaledObject not Ready"
    events = ctx.kube.get("Event", "pair")["items"]
    failed = [e["message"] for e in events if e.get("reason") == "KEDAScalerFailed"]
    assert not failed, f"KEDA saw scaler errors: {failed[:3]}"
    ctx.hs.start_interceptor(1)


# 7. apiserver-restart ---------------------------------------------------------------------------------------------

def apiserver_restart(ctx):
    """The watches resume in the same processes: no component exits (the harness would restart it, which would
    hide a watch that never came back), every interceptor serves its last table while the API server is down,
    and a route created after it is back is served by both."""
    components = [ctx.hs.operator, ctx.hs.scaler, *ctx.hs.interceptors]
    before = {c.name: (c.proc.popen.pid, c.restarts) for c in components}
    down_at = time.monotonic()
    ctx.plane.stop_apiserver()
    try:
        assert not ctx.kube.healthy(), "kube-apiserver still answers after it was stopped"
        scaler_answers_from_last_state(ctx)
        for _ in range(3):
            for i in ctx.hs.interceptors:
                status, _, _ = request(f"http://{i.ip}:8080", "slow.pair", "/")
                assert status == 200, f"{i.name} stopped serving its last table while the API server was down: {status}"
            time.sleep(0.3)
    finally:
        ctx.plane.start_apiserver()
    log(f"kube-apiserver was down for {time.monotonic() - down_at:.1f} s")
    ctx.workload("pair", "late", 8080, backend="http", replicas=1)
    ctx.kube.apply({"apiVersion": "http.keda.sh/v1alpha1", "kind": "HTTPScaledObject",
                    "metadata": {"name": "late", "namespace": "pair"},
                    "spec": {"hosts": ["late.pair"], "replicas": {"min": 1, "max": 2},
                             "scaleTargetRef": {"name": "late", "service": "late", "port": 8080}}}, manager="kubectl")
    for i in ctx.hs.interceptors:
        wait_for(f"{i.name} to serve a route created after the restart",
                 lambda i=i: request(f"http://{i.ip}:8080", "late.pair", "/")[0] == 200, timeout=90)
    wait_for("the operator's ScaledObject pair/late Ready in KEDA after the restart",
             lambda: ctx.scaled_object_ready("pair", "late"), timeout=90)
    after = {c.name: (c.proc.popen.pid, c.restarts) for c in components}
    exited = [c.name for c in components if after[c.name] != before[c.name] or not c.proc.alive]
    assert not exited, f"components exited during the outage (the watches did not resume in place): {exited}"
    log("no component exited: " + ", ".join(f"{n} pid {p}" for n, (p, _) in after.items()))


def scaler_answers_from_last_state(ctx):
    """While the API server is down, the scaler answers KEDA's calls from what its watches last saw."""
    import grpc
    pb2, pb2_grpc = scaler_protocol()
    ref = pb2.ScaledObjectRef(name="slow", namespace="pair", scalerMetadata={"httpScaledObject": "slow"})
    with grpc.insecure_channel(SCALER_ADDRESS) as ch:
        stub = pb2_grpc.ExternalScalerStub(ch)
        specs = stub.GetMetricSpec(ref, timeout=5).metricSpecs
        assert [s.targetSizeFloat for s in specs] == [100.0], f"the scaler lost pair/slow's spec: {specs}"
        stub.GetMetrics(pb2.GetMetricsRequest(scaledObjectRef=ref, metricName=""), timeout=5)
        stub.IsActive(ref, timeout=5)


# 8. activation ----------------------------------------------------------------------------------------------------

ACTIVATION_RUNS = 5


def activation(ctx):
    for i in range(ACTIVATION_RUNS - len(ctx.activation)):
        wait_for_zero(ctx, "ollama", "ollama")
        steps = cold_request(ctx, "ollama", "ollama", "ollama.ollama")
        log(f"cold start {i + 1}: " + json.dumps({k: round(v) for k, v in steps.items()}))
        ctx.activation.append(steps)
    medians = activation_medians(ctx)
    log("medians (ms): " + json.dumps(medians))
    assert medians["stream_is_active"] < medians["first_byte"], medians


def activation_medians(ctx):
    runs = [r for r in ctx.activation if all(k in r for k in STEPS)]
    if not runs:
        return None
    return {k: round(statistics.median(r[k] for r in runs), 1) for k in STEPS} | {"runs": len(runs)}


SCENARIOS = [
    ("install", install),
    ("rbac", rbac),
    ("operator-metrics", operator_metrics),
    ("tutorial", tutorial),
    ("scale-to-zero", scale_to_zero),
    ("ownership", ownership),
    ("two-interceptors", two_interceptors),
    ("apiserver-restart", apiserver_restart),
    ("activation", activation),
]
