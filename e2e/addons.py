"""An HTTP add-on on the real control plane, installed and configured the way the chart does it: httpscale, or the
KEDA HTTP add-on itself (the Go programs, for the side-by-side run).

The chart is rendered with the real Helm binary and the tutorial's flags. Its RBAC, ServiceAccounts and Services
are applied to the API server, with the add-on's own CRDs (ours from the chart, upstream's from its Go module);
Deployments, the PDB and the interceptor's ScaledObject pass a dry-run create only (kwok pods cannot run our
binaries). Instead each component runs as a process with its own address in this network namespace, the
environment and arguments of its Deployment's container, and a token of its Deployment's ServiceAccount, so a
missing RBAC rule or a wrong env var in the chart fails here. The harness writes the EndpointSlices a
kubelet-less cluster cannot: the Services of the components point at the processes' addresses.
"""
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

from cluster import Proc, wait_for

REPO = Path(__file__).resolve().parent.parent
NAMESPACE = "keda"
TUTORIAL_FLAGS = ["--set", "interceptor.responseHeaderTimeout=120s"]
INTERCEPTOR_IPS = ["10.245.1.1", "10.245.1.2"]
SCALER_IP = "10.245.2.1"
OPERATOR_IP = "10.245.3.1"
MANAGED_BY = "httpscale-e2e"
# Rendered by the chart, but only validated (a dry-run create) and not kept: they need a kubelet, and the
# interceptor's ScaledObject targets the interceptor Deployment, which does not exist here.
VALIDATED_ONLY = {"Deployment", "PodDisruptionBudget", "ScaledObject"}
# The operator's leader election as a user sets it through upstream's settings for a control plane that restarts
# slowly: a kube-apiserver restart on this loaded 2-core machine takes ~12 s, past the default 10 s renew
# deadline, after which the operator gives up its Lease and exits (as controller-runtime does). With 30 s the
# `apiserver-restart` scenario can require that no component exits.
OPERATOR_LEASE = {"KEDA_HTTP_OPERATOR_LEADER_ELECTION_LEASE_DURATION": "40s",
                  "KEDA_HTTP_OPERATOR_LEADER_ELECTION_RENEW_DEADLINE": "30s"}


def render_chart(helm, extra_flags=()):
    out = subprocess.run([str(helm), "template", "http-add-on", str(REPO / "charts/keda-add-ons-http"),
                          "--namespace", NAMESPACE, *TUTORIAL_FLAGS, *extra_flags],
                         check=True, capture_output=True, text=True)
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def listening(ip, port):
    try:
        with socket.create_connection((ip, port), timeout=0.5):
            return True
    except OSError:
        return False


def http_status(url, timeout=2):
    import urllib.error
    import urllib.request
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


# Runs a command in a mount namespace of its own where /run holds only the pod's ServiceAccount volume, as a
# kubelet mounts it: the program finds its in-cluster configuration exactly where it would in a pod.
IN_POD = ('mount -t tmpfs pod-run /run && mkdir -p /run/secrets/kubernetes.io/serviceaccount && '
          'cp "$0"/* /run/secrets/kubernetes.io/serviceaccount/ && exec "$@"')


class Component:
    """One binary, run as its chart Deployment's container would run (its env and args, its ServiceAccount's
    token mounted where a pod has it, the `kubernetes` Service as its API server), restarted if it exits."""

    def __init__(self, name, deployment, binary, ip, service_account_dir, logs, env=None, ports=None):
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        environ = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
        environ.update({"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443",
                        "HTTPSCALE_BIND_ADDRESS": ip, "HOME": str(logs), "NO_COLOR": "1"})
        environ.update(env or {})
        # The container's ports, or the ones this add-on moved them to (see Upstream).
        self.ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])} | (ports or {})
        # In a pod, ":8080" binds the pod's address; here that is the process's own address.
        args = [self._bind(a, ip) for a in container.get("args", [])]
        self.name, self.ip = name, ip
        argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", IN_POD, service_account_dir, binary, *args]
        self.proc = Proc(name, argv, logs, env=environ)
        self.wanted, self.restarts = False, 0

    def _bind(self, arg, ip):
        flag, _, value = arg.partition("=")
        if not value.startswith(":"):
            return arg
        port = int(value[1:])
        port = {"--metrics-bind-address": self.ports.get("metrics", port),
                "--health-probe-bind-address": self.ports.get("probes", port)}.get(flag, port)
        return f"{flag}={ip}:{port}"

    def start(self, port_name):
        self.wanted = True
        self.proc.start()
        wait_for(f"{self.name} to listen on {self.ip}:{self.ports[port_name]}",
                 lambda: self.proc.alive and listening(self.ip, self.ports[port_name]), timeout=60)
        threading.Thread(target=self._restart_on_exit, daemon=True).start()
        return self

    def _restart_on_exit(self):
        """A container's restartPolicy Always: a process that exits on its own is started again, as a kubelet
        would (after a second; the log says so and `restarts` counts it)."""
        while self.wanted:
            if not self.proc.alive:
                code = self.proc.popen.returncode
                time.sleep(1)
                if self.wanted:
                    print(f"    {self.name} exited with {code}; restarting it as a kubelet would",
                          file=sys.stderr, flush=True)
                    self.restarts += 1
                    self.proc.start()
            time.sleep(0.2)

    def stop(self, grace=10):
        self.wanted = False
        self.proc.stop(grace=grace)

    def kill(self):
        """SIGKILL, and no restart: the pod is gone."""
        self.wanted = False
        self.proc.kill()

    def forbidden_lines(self):
        return [l for l in self.proc.log_tail(100000).splitlines() if "forbidden" in l.lower() or " 403" in l]


class AddOn:
    """The chart's objects, then operator, scaler and interceptors as processes with chart ServiceAccounts."""

    name = "httpscale"
    max_interceptors = len(INTERCEPTOR_IPS)
    # Ports a component listens on here when they differ from its container's (several share one namespace).
    scaler_ports = {}
    operator_ports = {}

    def __init__(self, plane, bin_dir, helm):
        self.plane, self.bin_dir, self.helm = plane, Path(bin_dir), helm
        self.manifests = render_chart(helm)
        self.deployments = {d["metadata"]["name"]: d for d in self.manifests if d["kind"] == "Deployment"}
        self.interceptors = []
        self.scaler = self.operator = None

    def crds(self):
        return [d for d in self.manifests if d["kind"] == "CustomResourceDefinition"]

    def install(self):
        """Applies the CRDs first, then the rest; returns what it applied or validated."""
        kube = self.plane.admin
        kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        done = []
        for crd in self.crds():
            kube.apply(crd)
            wait_for(f"CRD {crd['metadata']['name']} established", lambda n=crd["metadata"]["name"]: kube.crd_established(n))
            done.append(f"CustomResourceDefinition/{crd['metadata']['name']}")
        for doc in self.manifests:
            if doc["kind"] == "CustomResourceDefinition":
                continue
            if doc["kind"] in VALIDATED_ONLY:
                kube.create(doc, dry_run=True)
            else:
                kube.apply(doc)
            done.append(f"{doc['kind']}/{doc['metadata']['name']}")
        return done

    def component(self, name, deployment, binary, ip, port_name, env=None, ports=None):
        sa = self.deployments[deployment]["spec"]["template"]["spec"]["serviceAccountName"]
        sa_dir, _ = self.plane.service_account(NAMESPACE, sa)
        c = Component(name, self.deployments[deployment], self.bin_dir / binary, ip, sa_dir, self.plane.logs,
                      env, ports)
        return c.start(port_name)

    def start_operator(self):
        self.operator = self.component("operator", "keda-add-ons-http-controller-manager", "operator", OPERATOR_IP,
                                        "probes", env=OPERATOR_LEASE, ports=self.operator_ports)
        self.write_slice("keda-add-ons-http-controller-manager-metrics-service", [OPERATOR_IP],
                         {"metrics": self.operator.ports["metrics"]})
        return self.operator

    def start_scaler(self, env=None):
        env = dict(env or {}, **{k: str(v) for k, v in self.scaler_env().items()})
        self.scaler = self.component("scaler", "keda-add-ons-http-external-scaler", "scaler", SCALER_IP, "grpc",
                                      env, self.scaler_ports)
        self.write_slice("keda-add-ons-http-external-scaler", [SCALER_IP],
                         {"grpc": self.scaler.ports["grpc"], "metrics": self.scaler.ports["metrics"]})
        return self.scaler

    def scaler_env(self):
        return {}

    def start_interceptor(self, index=0, env=None):
        assert index < self.max_interceptors, f"{self.name} runs at most {self.max_interceptors} interceptor(s) here"
        ip = INTERCEPTOR_IPS[index]
        c = self.component(f"interceptor-{index + 1}", "keda-add-ons-http-interceptor", "interceptor", ip, "admin",
                            env)
        wait_for(f"{c.name} ready", lambda: http_status(f"http://{ip}:{c.ports['admin']}/readyz") == 200, timeout=60)
        self.interceptors = [i for i in self.interceptors if i.name != c.name] + [c]
        self.publish_interceptors()
        return c

    def publish_interceptors(self):
        """The admin and proxy Services' endpoints: every interceptor whose process is alive."""
        ips = [i.ip for i in self.interceptors if i.proc.alive]
        self.write_slice("keda-add-ons-http-interceptor-admin", ips, {"admin": 9090})
        self.write_slice("keda-add-ons-http-interceptor-proxy", ips, {"proxy": 8080})

    def write_slice(self, service, ips, ports):
        self.plane.admin.apply({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": f"{service}-{MANAGED_BY}", "namespace": NAMESPACE,
                         "labels": {"kubernetes.io/service-name": service,
                                    "endpointslice.kubernetes.io/managed-by": MANAGED_BY}},
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True}} for ip in ips],
            "ports": [{"name": n, "port": p, "protocol": "TCP"} for n, p in ports.items()]})

    def start(self, interceptors=1):
        self.start_operator()
        self.start_scaler()
        for i in range(interceptors):
            self.start_interceptor(i)

    def stop(self):
        for c in [*self.interceptors, self.scaler, self.operator]:
            if c:
                c.stop(grace=5)


class Httpscale(AddOn):
    """httpscale: the chart's own CRDs and our three binaries (cargo build)."""


class Upstream(AddOn):
    """The KEDA HTTP add-on's own interceptor, scaler and operator (built by scripts/e2e-build.sh --upstream),
    with its CRDs from its Go module and the same chart objects.

    Its interceptor and scaler bind 0.0.0.0 whatever we ask, so in one network namespace their ports must not
    collide: the scaler serves gRPC on 9091 and metrics on 2224, the operator metrics on 8082 (its Service and
    EndpointSlice say so; the ScaledObject's scalerAddress still names the Service port 9090). One interceptor.
    """

    name = "keda-http-add-on"
    max_interceptors = 1
    scaler_ports = {"grpc": 9091, "metrics": 2224}
    operator_ports = {"metrics": 8082}

    def __init__(self, plane, cache_dir, helm):
        super().__init__(plane, Path(cache_dir) / "bin", helm)
        self.crd_dir = Path(cache_dir) / "crds"

    def crds(self):
        return [d for f in sorted(self.crd_dir.glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]

    def scaler_env(self):
        return {"KEDA_HTTP_SCALER_PORT": self.scaler_ports["grpc"],
                "OTEL_PROM_EXPORTER_PORT": self.scaler_ports["metrics"]}
