#!/usr/bin/env python3
"""Tests of the release artefacts: the three images scripts/images.sh built, run as containers the way the chart
runs them, and the files that say what a release publishes. Run through scripts/images-test.sh, which installs
the tools and peers; needs root (podman's root store, a DNS stub on port 53).

Every container runs as the chart's securityContext asks (read-only root filesystem, all capabilities dropped,
no privilege escalation, the image's non-root user), with the podman flags this kind of machine needs:
  --runtime runc             the runtime scripts/images.sh installs (Debian's podman would default to crun)
  --cgroup-manager cgroupfs  systemd is not PID 1 here, so there is no systemd to place containers in cgroups
  --network host             the peers (backends, the gRPC client, the fake API server) are host processes on
                             127.0.0.1 with ports chosen at run time; no CNI plugins needed, nothing leaves loopback
  --pull never               the images are local; a missing one must not send podman to a registry
  --ulimit nofile=H:H, nproc=4096:4096
                             podman asks for 1048576 open files; root here lacks CAP_SYS_RESOURCE, so runc cannot
                             raise a limit above the host's hard one (H = `ulimit -Hn`); the same for processes

Prints `ok NAME` or `FAIL NAME: why` per check and `N passed, M failed` last; exits 1 if any failed.
"""
import contextlib
import datetime
import json
import os
import re
import resource
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEERS = os.environ.get("PEERS_DIR", os.path.join(ROOT, ".peers"))
VENV_PY = os.path.join(PEERS, "venv", "bin", "python")
with open(os.path.join(ROOT, "Cargo.toml"), "rb") as f:
    VERSION = tomllib.load(f)["workspace"]["package"]["version"]
BINARIES = ["interceptor", "scaler", "operator"]
REGISTRY = "ghcr.io/httpscale"
MAX_IMAGE_BYTES = 40 * 1000 * 1000  # as `podman images` counts (decimal MB)
PODMAN = ["podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs"]
NOFILE = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
RUN_FLAGS = [
    "--pull", "never",  # the images are local; a missing one must not send podman to the registry
    "--network", "host",
    "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
    "--ulimit", f"nofile={NOFILE}:{NOFILE}", "--ulimit", "nproc=4096:4096",
]
# The host's network is shared: listen on loopback only, and no metrics listener on its fixed default port.
LOOPBACK_ONLY = {"HTTPSCALE_BIND_ADDRESS": "127.0.0.1", "OTEL_PROM_EXPORTER_ENABLED": "false"}
# A pod's resolver configuration (namespace keda), pointed at the DNS stub below.
DNS_ADDR = ("127.0.0.153", 53)
RESOLV_CONF = (f"nameserver {DNS_ADDR[0]}\n"
               "search keda.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n")

results = []


def check(name, ok, why=""):
    results.append(bool(ok))
    print(f"ok   {name}" if ok else f"FAIL {name}: {why}", flush=True)
    return ok


def image(binary):
    return f"{REGISTRY}/{binary}:{VERSION}"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def eventually(probe, timeout=20.0):
    """probe() until it returns something truthy (returned) or the timeout passes (None)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if value := probe():
                return value
        time.sleep(0.1)
    return None


def http_get(url, host=None, timeout=5.0):
    """(status, headers with lower-case names, body)"""
    req = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read().decode()


class Containers:
    """Containers started by this run, removed at the end whatever happened."""

    def __init__(self):
        self.names = []

    def run(self, binary, *args, mounts=(), env=None):
        name = f"hs-image-test-{binary}-{os.getpid()}"
        cmd = [*PODMAN, "run", "--detach", "--rm", "--name", name, *RUN_FLAGS]
        for src, dst in mounts:
            cmd += ["--volume", f"{src}:{dst}:ro"]
        for k, v in (env or {}).items():
            cmd += ["--env", f"{k}={v}"]
        r = subprocess.run([*cmd, image(binary), *args], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"podman run {image(binary)}: {r.stderr.strip()}")
        self.names.append(name)
        return name

    def logs(self, name):
        r = subprocess.run([*PODMAN, "logs", name], capture_output=True, text=True)
        return (r.stdout + r.stderr)[-3000:]

    def process(self, name):
        """/proc status and mounts of the container's first process, as the kernel sees them."""
        pid = subprocess.run([*PODMAN, "inspect", "--format", "{{.State.Pid}}", name],
                             check=True, capture_output=True, text=True).stdout.strip()
        with open(f"/proc/{pid}/status") as s, open(f"/proc/{pid}/mounts") as m:
            return s.read(), m.read()

    def remove_all(self):
        for name in self.names:
            subprocess.run([*PODMAN, "rm", "--force", "--time", "2", name], capture_output=True)


def check_confined(containers, name, binary):
    """The kernel's view of a running container: user 65532, no capabilities, root mounted read-only."""
    status, mounts = containers.process(name)
    uid = re.search(r"^Uid:\s+(\d+)", status, re.M).group(1)
    cap_eff = re.search(r"^CapEff:\s+(\w+)", status, re.M).group(1)
    root_opts = next(line.split()[3] for line in mounts.splitlines() if line.split()[1] == "/")
    check(f"{binary}: runs as 65532, no capabilities, read-only root",
          uid == "65532" and int(cap_eff, 16) == 0 and root_opts.split(",")[0] == "ro",
          f"uid {uid}, CapEff {cap_eff}, / mounted {root_opts}")


class DnsStub(threading.Thread):
    """Answers A queries for `names` (everything else: NXDOMAIN, or no data for other types), like a cluster DNS
    answering for Services. Records every name asked for."""

    def __init__(self, names):
        super().__init__(daemon=True)
        self.names, self.asked = names, []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(DNS_ADDR)

    def run(self):
        with contextlib.suppress(OSError):  # closed at the end of the test
            while True:
                self.answer(*self.sock.recvfrom(512))

    def answer(self, query, peer):
        labels, i = [], 12
        while query[i]:
            labels.append(query[i + 1:i + 1 + query[i]].decode())
            i += 1 + query[i]
        qtype = struct.unpack("!H", query[i + 1:i + 3])[0]
        name = ".".join(labels).lower()
        self.asked.append(name)
        question = query[12:i + 5]
        ip = self.names.get(name)
        answers = b""
        if ip and qtype == 1:
            answers = struct.pack("!HHHIH", 0xC00C, 1, 1, 5, 4) + socket.inet_aton(ip)
        flags = 0x8180 if ip else 0x8183  # response, recursion available; rcode 3 = NXDOMAIN
        header = struct.pack("!HHHHHH", struct.unpack("!H", query[:2])[0], flags, 1, 1 if answers else 0, 0, 0)
        self.sock.sendto(header + question + answers, peer)

    def close(self):
        self.sock.close()


def elf_section_types(path):
    """The sh_type of every section of a 64-bit little-endian ELF file (2 is SHT_SYMTAB, the symbol table)."""
    with open(path, "rb") as f:
        elf = f.read()
    shoff, = struct.unpack_from("<Q", elf, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", elf, 0x3A)
    return [struct.unpack_from("<I", elf, shoff + i * shentsize + 4)[0] for i in range(shnum)]


@contextlib.contextmanager
def host_process(*cmd, **kw):
    """A host peer, stopped by its PID at the end."""
    p = subprocess.Popen(cmd, **kw)
    try:
        yield p
    finally:
        p.terminate()
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def test_lints():
    # actionlint checks the workflows' shell steps with shellcheck when it finds one on PATH (the venv has it).
    env = {**os.environ, "PATH": f"{os.path.join(PEERS, 'venv', 'bin')}:{os.environ['PATH']}"}
    for name, cmd in [("hadolint Dockerfile", [os.path.join(PEERS, "venv", "bin", "hadolint"), "Dockerfile"]),
                      ("actionlint .github/workflows", [os.path.join(PEERS, "bin", "actionlint"), "-no-color"])]:
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
        check(name, r.returncode == 0, (r.stdout + r.stderr)[-3000:])


def test_release_files():
    """What the release publishes agrees with what the chart and the Dockerfile name."""
    with open(os.path.join(ROOT, "charts/keda-add-ons-http/Chart.yaml")) as f:
        chart = dict(re.findall(r'^(version|appVersion):\s*"?([^"\s]+)"?', f.read(), re.M))
    check("chart version and appVersion are the crates' version",
          chart == {"version": VERSION, "appVersion": VERSION}, f"Chart.yaml {chart}, crates {VERSION}")
    with open(os.path.join(ROOT, "Dockerfile")) as f:
        default = re.search(r"^ARG VERSION=(\S+)", f.read(), re.M)
    check("Dockerfile's default VERSION label is the crates' version",
          default and default.group(1) == VERSION, f"{default and default.group(1)} != {VERSION}")

    # The images the chart deploys by default, as rendered by Helm.
    helm = os.path.join(PEERS, "bin", "helm")
    rendered = subprocess.run([helm, "template", "http-add-on", os.path.join(ROOT, "charts/keda-add-ons-http"),
                               "--namespace", "keda"], capture_output=True, text=True)
    images = sorted(set(re.findall(r'^\s+image: "?([^"\s]+)"?', rendered.stdout, re.M)))
    check("the chart deploys the images the release publishes, at appVersion",
          images == sorted(image(b) for b in BINARIES), f"helm template: {images or rendered.stderr[-500:]}")
    with open(os.path.join(ROOT, ".github/workflows/release.yml")) as f:
        workflow = f.read()
    pushed = re.search(r"^\s+IMAGE: (\S+)/\$\{\{ matrix.binary }}$", workflow, re.M)
    matrix = re.search(r"^\s+binary: \[([^\]]*)\]", workflow, re.M)
    check("the release workflow pushes ghcr.io/httpscale/{interceptor,scaler,operator}",
          pushed and pushed.group(1) == REGISTRY and matrix
          and [b.strip() for b in matrix.group(1).split(",")] == BINARIES,
          f"IMAGE {pushed and pushed.group(1)}, matrix {matrix and matrix.group(1)}")
    check("the release workflow publishes the chart to oci://ghcr.io/httpscale/charts",
          f"helm push \"dist/keda-add-ons-http-$VERSION.tgz\" oci://{REGISTRY}/charts" in workflow, "not found")


def test_image(binary, sbom_validator):
    ref = image(binary)
    r = subprocess.run([*PODMAN, "image", "inspect", ref], capture_output=True, text=True)
    if not check(f"{binary}: image {ref} exists", r.returncode == 0, r.stderr.strip() or "run scripts/images.sh"):
        return
    meta = json.loads(r.stdout)[0]
    config, labels = meta["Config"], meta["Config"].get("Labels") or {}
    size = meta["Size"]
    print(f"       {ref}: {size / 1e6:.1f} MB")
    check(f"{binary}: under 40 MB", size < MAX_IMAGE_BYTES, f"{size / 1e6:.1f} MB")
    check(f"{binary}: user 65532:65532, entrypoint /usr/local/bin/{binary}",
          config.get("User") == "65532:65532" and config.get("Entrypoint") == [f"/usr/local/bin/{binary}"],
          f"User {config.get('User')}, Entrypoint {config.get('Entrypoint')}")
    revision = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    created = datetime.datetime.fromisoformat(meta["Created"].replace("Z", "+00:00"))
    expected = {
        "org.opencontainers.image.source": "https://github.com/httpscale/httpscale",
        "org.opencontainers.image.version": VERSION,
        "org.opencontainers.image.revision": revision,
        "org.opencontainers.image.licenses": "Apache-2.0",
        "org.opencontainers.image.created": created.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    wrong = {k: labels.get(k) for k, v in expected.items() if labels.get(k) != v}
    check(f"{binary}: OCI labels (created = the image's creation time, from SOURCE_DATE_EPOCH)", not wrong,
          f"{wrong}, expected {expected}")

    # The files: no shell or any other program, the user's entries, the SBOM identical to the one beside it.
    mount = subprocess.run([*PODMAN, "image", "mount", ref], capture_output=True, text=True, check=True).stdout.strip()
    try:
        programs = sorted(os.path.relpath(os.path.join(d, f), mount) for d, _, files in os.walk(mount)
                          for f in files if os.access(os.path.join(d, f), os.X_OK)
                          and not re.search(r"\.so(\.\d+)*$", f) and "/ld-linux" not in os.path.join(d, f))
        check(f"{binary}: no shell, its binary the only program", programs == [f"usr/local/bin/{binary}"],
              f"executables: {programs[:10]}")
        sections = elf_section_types(os.path.join(mount, "usr/local/bin", binary))
        check(f"{binary}: binary stripped of its symbol table", sections and 2 not in sections,
              f"{len(sections)} sections, SHT_SYMTAB among them")
        with open(os.path.join(mount, "etc/passwd")) as f:
            passwd = f.read()
        check(f"{binary}: /etc/passwd names 65532 nonroot", "nonroot:x:65532:65532:" in passwd, passwd)
        with open(os.path.join(mount, "usr/share/doc/httpscale/sbom.cdx.json")) as f:
            inside = f.read()
    finally:
        subprocess.run([*PODMAN, "image", "unmount", ref], capture_output=True)
    beside_path = os.path.join(ROOT, "target/images", f"{binary}-{VERSION}.cdx.json")
    with open(beside_path) as f:
        beside = f.read()
    errors = sbom_validator.validate_str(inside)
    sbom = json.loads(inside)
    names = {c["name"] for c in sbom.get("components", [])}
    check(f"{binary}: SBOM at /usr/share/doc/httpscale/sbom.cdx.json is valid CycloneDX 1.5, lists its crates, "
          f"and is the one beside the image",
          errors is None and inside == beside and {"tokio", "hyper", "httpscale-core"} <= names
          and sbom["metadata"]["component"]["name"] == binary,
          f"schema errors {errors}; same as beside: {inside == beside}; {len(names)} crates")


def test_interceptor_and_scaler(containers, tmp):
    demo_port, cold_port, proxy, admin, grpc_port = (free_port() for _ in range(5))
    www = os.path.join(tmp, "www")
    os.makedirs(www)
    with open(os.path.join(www, "hello.txt"), "w") as f:
        f.write("hello from the backend\n")
    routes = os.path.join(tmp, "routes.yaml")
    with open(routes, "w") as f:
        # `cold` names its backend as the Kubernetes mode does a Service (<name>.<namespace>), so reaching it
        # goes through the image's resolver, the pod-style search list and the DNS stub.
        f.write(f"routes:\n"
                f"  - {{name: demo, hosts: [demo.test], upstream: '127.0.0.1:{demo_port}'}}\n"
                f"  - {{name: cold, hosts: [cold.test], upstream: 'backend.default:{cold_port}',"
                f" timeouts: {{readiness: 60s}}}}\n")
    resolv = os.path.join(tmp, "resolv.conf")
    with open(resolv, "w") as f:
        f.write(RESOLV_CONF)
    dns = DnsStub({"backend.default.svc.cluster.local": "127.0.0.1"})
    dns.start()
    server = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory", www]
    try:
        with host_process(*server, str(demo_port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
            interceptor = containers.run(
                "interceptor", mounts=[(routes, "/etc/httpscale/routes.yaml"), (resolv, "/etc/resolv.conf")],
                env={"HTTPSCALE_CONFIG": "/etc/httpscale/routes.yaml", "KEDA_HTTP_PROXY_PORT": proxy,
                     "KEDA_HTTP_ADMIN_PORT": admin, **LOOPBACK_ONLY})
            ready = eventually(lambda: http_get(f"http://127.0.0.1:{admin}/readyz")[0] == 200)
            if not check("interceptor: starts with the mounted routes file (/readyz 200)", ready,
                         containers.logs(interceptor)):
                return
            check_confined(containers, interceptor, "interceptor")
            status, _, body = http_get(f"http://127.0.0.1:{proxy}/hello.txt", host="demo.test")
            check("interceptor: proxies a request to the route's backend", (status, body) ==
                  (200, "hello from the backend\n"), f"{status} {body[:200]}")

            scaler = containers.run(
                "scaler", mounts=[(routes, "/etc/httpscale/routes.yaml")],
                env={"HTTPSCALE_CONFIG": "/etc/httpscale/routes.yaml", "HTTPSCALE_INTERCEPTORS": f"127.0.0.1:{admin}",
                     "KEDA_HTTP_SCALER_PORT": grpc_port, "KEDA_HTTP_QUEUE_TICK_DURATION": "100ms", **LOOPBACK_ONLY})
            serving = eventually(lambda: grpc_health(grpc_port) == 1)
            check("scaler: answers the gRPC health check with SERVING", serving, containers.logs(scaler))
            check_confined(containers, scaler, "scaler")
            check("scaler: IsActive is false for an idle route", is_active(grpc_port, "demo") is False,
                  containers.logs(scaler))

            # Cold start: nothing listens behind `cold` yet; the request waits in the interceptor.
            held = {}
            client = threading.Thread(target=lambda: held.update(
                r=http_get(f"http://127.0.0.1:{proxy}/hello.txt", host="cold.test", timeout=60)))
            client.start()
            pending = eventually(lambda: '"default/cold"' in http_get(f"http://127.0.0.1:{admin}/queue")[2]
                                 and json.loads(http_get(f"http://127.0.0.1:{admin}/queue")[2])
                                 ["default/cold"]["Concurrency"] == 1, timeout=10)
            check("interceptor: holds a request while the backend is down", pending and client.is_alive(),
                  f"queue {http_get(f'http://127.0.0.1:{admin}/queue')[2]}, answered {held.get('r')}")
            check("scaler: IsActive is true while the interceptor holds a request",
                  eventually(lambda: is_active(grpc_port, "cold"), timeout=10), containers.logs(scaler))
            with host_process(*server, str(cold_port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
                client.join(60)
                status, headers, body = held.get("r", (None, {}, ""))
                check("interceptor: the held request is answered once the backend listens (cold start)",
                      (status, body) == (200, "hello from the backend\n")
                      and headers.get("x-keda-http-cold-start") == "true",
                      f"{status} {headers} {body[:200]}\n{containers.logs(interceptor)}")
            check("interceptor: reached backend.default through the pod's DNS search list",
                  "backend.default.svc.cluster.local" in dns.asked, f"asked: {dns.asked}")
    finally:
        dns.close()


def grpc_health(port):
    """grpc.health.v1.Health/Check for the server as a whole ("") through grpcio: the status enum (1 = SERVING)."""
    code = ("import grpc,sys\n"
            f"ch = grpc.insecure_channel('127.0.0.1:{port}')\n"
            "check = ch.unary_unary('/grpc.health.v1.Health/Check')\n"
            "sys.stdout.write(check(b'', timeout=5).hex())\n")  # HealthCheckRequest{} -> HealthCheckResponse
    out = subprocess.run([VENV_PY, "-c", code], capture_output=True, text=True, timeout=15).stdout
    return bytes.fromhex(out)[1] if out.startswith("08") else None


def is_active(port, route):
    """KEDA's IsActive for ScaledObject default/<route>, through the repo's grpcio client."""
    out = subprocess.run(
        [VENV_PY, os.path.join(ROOT, "tests/peers/keda_scaler_client.py"), "--addr", f"127.0.0.1:{port}",
         "--name", route, "--namespace", "default", "-m", f"httpScaledObject={route}", "--stream-count", "1"],
        capture_output=True, text=True, timeout=30, cwd=ROOT,
        env={**os.environ, "EXTERNALSCALER_GEN_DIR": os.path.join(PEERS, "externalscaler-gen")})
    for line in out.stdout.splitlines():
        call = json.loads(line)
        if call["call"] == "IsActive":
            return call["response"]["result"]
    return None


def test_operator(containers, tmp):
    r = subprocess.run([*PODMAN, "run", "--rm", *RUN_FLAGS, image("operator"), "--version"],
                       capture_output=True, text=True, timeout=60)
    check("operator: --version reports the crates' version", r.stdout.strip() == f"operator {VERSION}",
          f"{r.stdout!r} {r.stderr[-300:]!r}")

    apiserver = [VENV_PY, os.path.join(ROOT, "tests/peers/kmock_apiserver.py"), "--realistic", "--port", "0",
                 "--resource", "http.keda.sh/v1alpha1/httpscaledobjects=HTTPScaledObject",
                 "--resource", "http.keda.sh/v1beta1/interceptorroutes=InterceptorRoute",
                 "--resource", "keda.sh/v1alpha1/scaledobjects=ScaledObject",
                 "--resource", "coordination.k8s.io/v1/leases=Lease",
                 "--resource", "events.k8s.io/v1/events=Event"]
    with host_process(*apiserver, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as kmock:
        port = kmock.stdout.readline().strip().removeprefix("READY ")
        api = f"http://127.0.0.1:{port}"
        kubeconfig = os.path.join(tmp, "kubeconfig")
        with open(kubeconfig, "w") as f:
            f.write(f"apiVersion: v1\nkind: Config\ncurrent-context: c\n"
                    f"clusters: [{{name: k, cluster: {{server: '{api}'}}}}]\nusers: [{{name: u, user: {{}}}}]\n"
                    f"contexts: [{{name: c, context: {{cluster: k, user: u, namespace: keda}}}}]\n")
        health = free_port()
        operator = containers.run(
            "operator", "--leader-elect", "--metrics-bind-address=0", f"--health-probe-bind-address=127.0.0.1:{health}",
            mounts=[(kubeconfig, "/etc/httpscale/kubeconfig")],
            env={"KUBECONFIG": "/etc/httpscale/kubeconfig", "KEDA_HTTP_OPERATOR_NAMESPACE": "keda",
                 "KEDA_HTTP_OPERATOR_EXTERNAL_SCALER_SERVICE": "keda-add-ons-http-external-scaler",
                 "KEDA_HTTP_OPERATOR_EXTERNAL_SCALER_PORT": "9090"})
        ready = eventually(lambda: http_get(f"http://127.0.0.1:{health}/readyz")[0] == 200)
        check("operator: starts with the mounted kubeconfig (/readyz 200)", ready, containers.logs(operator))
        check_confined(containers, operator, "operator")
        # The tutorial's HTTPScaledObject in, KEDA's ScaledObject out: the operator talks to the API server.
        hso = {"apiVersion": "http.keda.sh/v1alpha1", "kind": "HTTPScaledObject",
               "metadata": {"namespace": "ollama", "name": "ollama"},
               "spec": {"hosts": ["ollama.ollama"], "replicas": {"min": 0, "max": 2},
                        "scaleTargetRef": {"name": "ollama", "kind": "Deployment", "apiVersion": "apps/v1",
                                           "service": "ollama", "port": 11434}}}
        urllib.request.urlopen(urllib.request.Request(
            f"{api}/apis/http.keda.sh/v1alpha1/namespaces/ollama/httpscaledobjects", data=json.dumps(hso).encode(),
            headers={"Content-Type": "application/json"}, method="POST"), timeout=5).close()
        so = eventually(lambda: json.loads(http_get(
            f"{api}/apis/keda.sh/v1alpha1/namespaces/ollama/scaledobjects/ollama")[2]).get("spec"))
        check("operator: reconciles an HTTPScaledObject into KEDA's ScaledObject through the kubeconfig's server",
              so and so["triggers"][0]["metadata"]["scalerAddress"] == "keda-add-ons-http-external-scaler.keda:9090",
              f"ScaledObject {so}\n{containers.logs(operator)}")


def guarded(test, *args):
    """Runs one group of checks; an exception in it is one more failure, and the other groups still run."""
    try:
        test(*args)
    except Exception as e:  # noqa: BLE001 (reported, never swallowed)
        check(f"{test.__name__} ran to the end", False, f"{type(e).__name__}: {e}")


def main():
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    guarded(test_lints)
    guarded(test_release_files)
    validator = JsonStrictValidator(SchemaVersion.V1_5)
    for binary in BINARIES:
        guarded(test_image, binary, validator)
    containers = Containers()
    tmp = tempfile.mkdtemp(prefix="hs-image-test-")
    os.chmod(tmp, 0o755)  # the containers' user 65532 reads the mounted files
    try:
        guarded(test_interceptor_and_scaler, containers, tmp)
        guarded(test_operator, containers, tmp)
    finally:
        containers.remove_all()
        shutil.rmtree(tmp, ignore_errors=True)
    failed = results.count(False)
    print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
