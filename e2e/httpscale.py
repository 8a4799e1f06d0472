"""httpscale's own components on the real control plane, installed and configured the way the chart does it.

The chart is rendered with the real Helm binary and the tutorial's flags. Its CRDs, RBAC, ServiceAccounts and
Services are applied to the API server; its Deployments are not (kwok pods cannot run our binaries). Instead
each component runs as a process with its own address in this network namespace, the environment and
arguments of its Deployment's container, and a token of its Deployment's ServiceAccount, so that a missing
RBAC rule or a wrong env var in the chart fails here. The harness writes the EndpointSlices a kubelet-less
cluster cannot: the Services of our components point at the processes' addresses.
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
# What `helm template` renders that runs as a process here, or that needs a kubelet: these are only validated
# by the API server (a dry-run create), not kept. The interceptor's ScaledObject is among them, as its target
# Deployment does not exist here.
VALIDATED_ONLY = {"Deployment", "PodDisruptionBudget", "ScaledObject"}


def render_chart(helm, extra_flags=()):
    out = subprocess.run([str(helm), "template", "http-add-on", str(REPO / "charts/keda-add-ons-http"),
                          "--namespace", NAMESPACE, *TUTORIAL_FLAGS, *extra_flags],
                         check=True, capture_output=True, text=True)
    return [d for d in yaml.safe_load_all(out.stdout) if d]


class Component:
    """One of our binaries, run as its chart Deployment's container would run."""

    def __init__(self, name, deployment, binary, ip, kubeconfig, logs, extra_env=None):
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
        env.update({"KUBECONFIG": str(kubeconfig), "HTTPSCALE_BIND_ADDRESS": ip, "HOME": str(logs),
                    "NO_COLOR": "1"})
        env.update(extra_env or {})
        # In a pod, ":8080" binds the pod's address; here that is the process's own address.
        args = [a.replace("=:", f"={ip}:") for a in container.get("args", [])]
        self.name, self.ip = name, ip
        self.ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        self.proc = Proc(name, [binary, *args], logs, env=env)
        self.wanted, self.restarts = False, 0

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
            if not self.proc.alive and self.wanted:
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


def listening(ip, port):
    try:
        with socket.create_connection((ip, port), timeout=0.5):
            return True
    except OSError:
        return False


class Httpscale:
    """Install the chart's objects, then run operator, scaler and interceptors as chart ServiceAccounts."""

    def __init__(self, plane, bin_dir, helm):
        self.plane, self.bin_dir, self.helm = plane, Path(bin_dir), helm
        self.manifests = render_chart(helm)
        self.deployments = {d["metadata"]["name"]: d for d in self.manifests if d["kind"] == "Deployment"}
        self.interceptors = []
        self.scaler = self.operator = None

    def install(self):
        """Applies CRDs first, then everything else the chart renders that a cluster without kubelets can hold."""
        kube = self.plane.admin
        kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        ordered = sorted(self.manifests, key=lambda d: d["kind"] != "CustomResourceDefinition")
        applied = []
        for doc in ordered:
            if doc["kind"] in VALIDATED_ONLY:
                kube.create(doc, dry_run=True)
            elif doc["kind"] == "CustomResourceDefinition":
                kube.apply(doc)
                wait_for(f"CRD {doc['metadata']['name']} established",
                         lambda n=doc["metadata"]["name"]: kube.crd_established(n))
            else:
                kube.apply(doc)
            applied.append(f"{doc['kind']}/{doc['metadata']['name']}")
        return applied

    def _component(self, name, deployment, binary, ip, port_name, extra_env=None):
        sa = self.deployments[deployment]["spec"]["template"]["spec"]["serviceAccountName"]
        kubeconfig, _ = self.plane.service_account_kubeconfig(NAMESPACE, sa)
        c = Component(name, self.deployments[deployment], self.bin_dir / binary, ip, kubeconfig, self.plane.logs,
                      extra_env)
        return c.start(port_name)

    def start_operator(self):
        self.operator = self._component("operator", "keda-add-ons-http-controller-manager", "operator", OPERATOR_IP,
                                        "probes")
        self.write_slice("keda-add-ons-http-controller-manager-metrics-service", [OPERATOR_IP], {"metrics": 8080})
        return self.operator

    def start_scaler(self, extra_env=None):
        self.scaler = self._component("scaler", "keda-add-ons-http-external-scaler", "scaler", SCALER_IP, "grpc",
                                      extra_env)
        self.write_slice("keda-add-ons-http-external-scaler", [SCALER_IP], {"grpc": 9090, "metrics": 2223})
        return self.scaler

    def start_interceptor(self, index=0, extra_env=None):
        ip = INTERCEPTOR_IPS[index]
        c = self._component(f"interceptor-{index + 1}", "keda-add-ons-http-interceptor", "interceptor", ip, "admin",
                            extra_env)
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

    def stop(self):
        for c in [*self.interceptors, self.scaler, self.operator]:
            if c:
                c.stop(grace=5)


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
