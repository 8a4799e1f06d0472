"""What a kubelet and kube-proxy would do, for a cluster whose node is kwok. Runs as its own process
(`python e2e/backends.py --workdir W`, started by run.py), so that its threads never share an interpreter lock
with the scenarios' timing.

PodBackends: when a pod annotated `e2e.httpscale.io/backend` gets its IP, start that real backend program on the
pod's IP and container port, mark the pod Ready only once the backend answers, and stop the backend when the pod
is deleted. ServiceProxy: kube-proxy's iptables rules that make every Service's ClusterIP:port reach one of its
ready endpoints (and refuse connections while it has none), and /etc/hosts (this namespace's own) naming every
Service as `<svc>.<ns>[.svc[.cluster.local]]`.
"""
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from cluster import Proc
from kube import ApiError

BACKEND = "e2e.httpscale.io/backend"
BACKEND_ARGS = "e2e.httpscale.io/backend-args"
REPO = Path(__file__).resolve().parent.parent


def backend_argv(kind, ip, port, extra):
    """The command line of a backend kind, listening on ip:port."""
    if kind == "fake-ollama":
        return [sys.executable, REPO / "tests/peers/fake_ollama.py", "--host", ip, "--port", port, *extra]
    if kind == "http":
        return [sys.executable, REPO / "e2e/echo_backend.py", "--host", ip, "--port", port, *extra]
    if kind == "loadtest":
        loadtest = os.environ.get("HTTPSCALE_LOADTEST", str(REPO / "target/release/loadtest"))
        return [loadtest, "backend", "--listen", f"{ip}:{port}", "--threads", "1"]
    if kind == "grpc":
        return [sys.executable, REPO / "e2e/grpc_backend.py", "--host", ip, "--port", port]
    raise ValueError(f"unknown backend kind {kind!r}")


class PodBackends:
    """Runs the real backend of every annotated pod; the pod turns Ready only when the backend answers."""

    def __init__(self, kube, logs):
        self.kube, self.logs = kube, logs
        self.running = {}  # pod uid -> Proc
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name="pod-backends", daemon=True)

    def start(self):
        self.thread.start()
        return self

    def _run(self):
        for kind, pod in self.kube.watch("Pod", stop=self.stop):
            if kind == "SYNCED":
                continue
            md = pod["metadata"]
            if BACKEND not in md.get("annotations", {}):
                continue
            gone = kind == "DELETED" or md.get("deletionTimestamp")
            uid = md["uid"]
            if gone:
                self._stop_backend(uid)
            elif uid not in self.running and pod.get("status", {}).get("podIP") and pod["status"].get("phase") == "Running":
                self._start_backend(pod)

    def _start_backend(self, pod):
        md, spec = pod["metadata"], pod["spec"]
        ip = pod["status"]["podIP"]
        port = spec["containers"][0]["ports"][0]["containerPort"]
        extra = json.loads(md["annotations"].get(BACKEND_ARGS, "[]"))
        argv = backend_argv(md["annotations"][BACKEND], ip, port, extra)
        proc = Proc(f"pod-{md['namespace']}-{md['name']}", argv, self.logs).start()
        with self.lock:
            self.running[md["uid"]] = proc
        threading.Thread(target=self._mark_ready_when_serving, args=(pod, ip, port, proc), daemon=True).start()

    def _mark_ready_when_serving(self, pod, ip, port, proc):
        md = pod["metadata"]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.alive and not self.stop.is_set():
            try:
                with socket.create_connection((ip, port), timeout=0.5):
                    break
            except OSError:
                time.sleep(0.02)
        else:
            if not proc.alive:
                print(f"backend of pod {md['namespace']}/{md['name']} exited ({proc.popen.returncode}) before it "
                      f"answered on {ip}:{port}; see {proc.log_path}", file=sys.stderr, flush=True)
            return
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        conds = [{"type": t, "status": "True", "lastTransitionTime": now} for t in ("Ready", "ContainersReady")]
        statuses = [{"name": c["name"], "ready": True} for c in pod["spec"]["containers"]]
        try:
            self.kube.strategic_patch("Pod", md["namespace"], md["name"],
                                      {"status": {"conditions": conds, "containerStatuses": statuses}}, "status")
        except ApiError:
            pass  # the pod went away while its backend started

    def _stop_backend(self, uid):
        with self.lock:
            proc = self.running.pop(uid, None)
        if proc:
            proc.stop(grace=5)

    def close(self):
        self.stop.set()
        with self.lock:
            procs = list(self.running.values())
            self.running.clear()
        for p in procs:
            p.stop(grace=2)


class ServiceProxy:
    """kube-proxy in iptables mode, plus cluster DNS through /etc/hosts, for every Service in the cluster.

    Each Service port's ClusterIP:port is DNATed (nat OUTPUT) to one of its ready endpoints, picked at random per
    connection, and refused with a TCP reset while it has none, as kube-proxy does. No socket is held on a
    ClusterIP, so programs that bind 0.0.0.0 (the Go add-on's) never collide with it.
    """

    NAT, FILTER = "HS-SERVICES", "HS-NO-ENDPOINTS"

    def __init__(self, kube, hosts_file="/etc/hosts"):
        self.kube, self.hosts_file = kube, hosts_file
        self.services = {}  # "ns/name" -> Service
        self.slices = {}  # "ns/slice" -> EndpointSlice
        self.stop = threading.Event()
        self.sync_lock = threading.Lock()
        self.base_hosts = "127.0.0.1 localhost\n::1 localhost\n"

    def start(self):
        for table, chain in (("nat", self.NAT), ("filter", self.FILTER)):
            subprocess.run(["iptables", "-t", table, "-N", chain], check=True)
            subprocess.run(["iptables", "-t", table, "-A", "OUTPUT", "-j", chain], check=True)
        threading.Thread(target=self._watch, args=("Service", self.services), daemon=True).start()
        threading.Thread(target=self._watch, args=("EndpointSlice", self.slices), daemon=True).start()
        return self

    def _watch(self, kind, store):
        for event, obj in self.kube.watch(kind, stop=self.stop):
            if event == "SYNCED":
                continue
            key = f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"
            if event == "DELETED":
                store.pop(key, None)
            else:
                store[key] = obj
            with self.sync_lock:
                self._sync()

    def endpoints(self, namespace, service, port):
        """Ready (ip, port) pairs of a Service port, from its EndpointSlices."""
        out = []
        for s in list(self.slices.values()):
            md = s["metadata"]
            if md["namespace"] != namespace or md.get("labels", {}).get("kubernetes.io/service-name") != service:
                continue
            number = next((p["port"] for p in s.get("ports") or [] if p.get("name", "") == port.get("name", "")), None)
            if number is None:
                continue
            for ep in s.get("endpoints") or []:
                if ep.get("conditions", {}).get("ready", True):
                    out += [(a, number) for a in ep["addresses"]]
        return sorted(out)

    def _sync(self):
        hosts, nat, reject = [self.base_hosts], [], []
        for svc in list(self.services.values()):
            ip = svc["spec"].get("clusterIP")
            if not ip or ip == "None":
                continue
            ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
            hosts.append(f"{ip} {name}.{ns} {name}.{ns}.svc {name}.{ns}.svc.cluster.local\n")
            for port in svc["spec"].get("ports", []):
                match = f"-d {ip}/32 -p tcp --dport {port['port']}"
                eps = self.endpoints(ns, name, port)
                if not eps:
                    reject.append(f"-A {self.FILTER} {match} -j REJECT --reject-with tcp-reset")
                # Rule i takes 1/(n-i) of what the rules before it left: an even random choice, as kube-proxy.
                for i, (addr, number) in enumerate(eps):
                    odds = "" if i == len(eps) - 1 else f"-m statistic --mode random --probability {1 / (len(eps) - i):.5f} "
                    nat.append(f"-A {self.NAT} {match} {odds}-j DNAT --to-destination {addr}:{number}")
        rules = "\n".join(["*nat", f":{self.NAT} - [0:0]", *nat, "COMMIT",
                           "*filter", f":{self.FILTER} - [0:0]", *reject, "COMMIT", ""])
        subprocess.run(["iptables-restore", "--noflush"], input=rules.encode(), check=True)
        with open(self.hosts_file, "w") as f:  # in place: /etc/hosts is a bind mount of this namespace's file
            f.writelines(hosts)

    def close(self):
        self.stop.set()


def main():
    import argparse
    import signal

    from cluster import APISERVER_IP, APISERVER_PORT
    from kube import Kube
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", required=True)
    a = ap.parse_args()
    pki = Path(a.workdir) / "pki"
    kube = Kube(APISERVER_IP, APISERVER_PORT, str(pki / "ca.crt"), str(pki / "admin.crt"), str(pki / "admin.key"))
    pods = PodBackends(kube, Path(a.workdir) / "logs").start()
    proxy = ServiceProxy(kube).start()
    stopped = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopped.set())
    stopped.wait()
    pods.close()
    proxy.close()


if __name__ == "__main__":
    main()
