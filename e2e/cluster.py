"""A real Kubernetes control plane, KEDA and a fake node, as processes inside this network namespace.

etcd, kube-apiserver (Node,RBAC authorization, service-account tokens, default admission),
kube-controller-manager, kube-scheduler, kwok (the node agent) and the KEDA operator, all built from their Go
modules by scripts/e2e-build.sh. The harness runs inside a network namespace that scripts/e2e.sh created, where
10.96.0.0/16 (Service IPs), 10.244.0.0/16 (pod IPs) and 10.245.0.0/16 (the harness's own processes) are local
addresses, so a backend can listen on a pod's IP and nothing leaves the namespace.
"""
import json
import os
import signal
import subprocess
import time
from pathlib import Path

from kube import Kube, conditioned

APISERVER_IP = "10.245.0.1"
APISERVER_PORT = 6443
NODE_IP = "10.245.0.2"
NODE_NAME = "kwok-node-0"
POD_CIDR = "10.244.0.1/16"
SERVICE_CIDR = "10.96.0.0/16"
HERE = Path(__file__).resolve().parent


class Proc:
    """One child process with its output in a log file; stopped by PID."""

    def __init__(self, name, argv, log_dir, env=None, cwd=None):
        self.name, self.argv = name, [str(a) for a in argv]
        self.log_path = Path(log_dir) / f"{name}.log"
        self.env, self.cwd = env, cwd
        self.popen = None

    def start(self):
        env = dict(os.environ)
        env.update(self.env or {})
        log = open(self.log_path, "ab")
        log.write(f"--- start {time.strftime('%H:%M:%S')}: {' '.join(self.argv)}\n".encode())
        log.flush()
        self.popen = subprocess.Popen(self.argv, env=env, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        return self

    @property
    def alive(self):
        return self.popen is not None and self.popen.poll() is None

    def stop(self, grace=10.0, sig=signal.SIGTERM):
        """Signals the process (and its group), waits up to `grace`, then kills it."""
        if not self.alive:
            return
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            return
        try:
            self.popen.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(5)

    def kill(self):
        self.stop(grace=0.1, sig=signal.SIGKILL)

    def log_tail(self, lines=30):
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def run(argv, **kw):
    return subprocess.run([str(a) for a in argv], check=True, capture_output=True, **kw)


def wait_for(what, check, timeout=60.0, interval=0.1):
    """Polls `check` until it returns something truthy; raises TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - the last error is reported on timeout
            last = e
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}" + (f" (last error: {last})" if last else ""))


class Pki:
    """A cluster CA, the API server's serving certificate, an admin client certificate, the SA signing key."""

    def __init__(self, d):
        self.dir = Path(d)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ca, self.ca_key = self.dir / "ca.crt", self.dir / "ca.key"
        self.sa_key, self.sa_pub = self.dir / "sa.key", self.dir / "sa.pub"
        run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", self.ca_key, "-out", self.ca,
             "-days", "30", "-subj", "/CN=httpscale-e2e-ca"])
        run(["openssl", "genrsa", "-out", self.sa_key, "2048"])
        run(["openssl", "rsa", "-in", self.sa_key, "-pubout", "-out", self.sa_pub])
        sans = ",".join([f"IP:{APISERVER_IP}", "IP:10.96.0.1", "IP:127.0.0.1", "DNS:localhost", "DNS:kubernetes",
                         "DNS:kubernetes.default", "DNS:kubernetes.default.svc",
                         "DNS:kubernetes.default.svc.cluster.local"])
        self.serving = self.issue("apiserver", "/CN=kube-apiserver", f"subjectAltName={sans}\nextendedKeyUsage=serverAuth")
        self.admin = self.issue("admin", "/O=system:masters/CN=e2e-admin", "extendedKeyUsage=clientAuth")

    def issue(self, name, subject, extensions):
        key, csr, crt, ext = (self.dir / f"{name}.{x}" for x in ("key", "csr", "crt", "ext"))
        ext.write_text(extensions + "\n")
        run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", subject])
        run(["openssl", "x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.ca_key, "-CAcreateserial",
             "-out", crt, "-days", "30", "-extfile", ext])
        return crt, key


def kubeconfig(path, ca, cert, key, server=f"https://{APISERVER_IP}:{APISERVER_PORT}"):
    """A kubeconfig with a client certificate (for the control plane's own programs and KEDA)."""
    user = {"client-certificate": str(cert), "client-key": str(key)}
    cfg = {"apiVersion": "v1", "kind": "Config", "current-context": "e2e",
           "clusters": [{"name": "e2e", "cluster": {"server": server, "certificate-authority": str(ca)}}],
           "users": [{"name": "e2e", "user": user}],
           "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": "e2e"}}]}
    Path(path).write_text(json.dumps(cfg, indent=1))  # JSON is YAML
    return path


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager + kube-scheduler + kwok + one fake node."""

    def __init__(self, bins, workdir):
        self.bins = {k: Path(v) for k, v in bins.items()}
        self.dir = Path(workdir)
        self.logs = self.dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.pki = Pki(self.dir / "pki")
        self.admin_kubeconfig = kubeconfig(self.dir / "admin.kubeconfig", self.pki.ca, *self.pki.admin)
        self.admin = Kube(APISERVER_IP, APISERVER_PORT, str(self.pki.ca), *map(str, self.pki.admin))
        self.procs = {}

    def _proc(self, name, argv, **kw):
        p = Proc(name, argv, self.logs, **kw).start()
        self.procs[name] = p
        return p

    def start_etcd(self):
        data = self.dir / "etcd"
        self._proc("etcd", [self.bins["etcd"], "--data-dir", data, "--name", "e2e",
                            "--listen-client-urls", "http://127.0.0.1:2379",
                            "--advertise-client-urls", "http://127.0.0.1:2379",
                            "--listen-peer-urls", "http://127.0.0.1:2380",
                            "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
                            "--initial-cluster", "e2e=http://127.0.0.1:2380",
                            "--unsafe-no-fsync", "--log-level", "warn"])

    def start_apiserver(self):
        crt, key = self.pki.serving
        self._proc("kube-apiserver", [
            self.bins["kube-apiserver"], "--etcd-servers=http://127.0.0.1:2379",
            f"--bind-address={APISERVER_IP}", f"--secure-port={APISERVER_PORT}", f"--advertise-address={APISERVER_IP}",
            f"--tls-cert-file={crt}", f"--tls-private-key-file={key}", f"--client-ca-file={self.pki.ca}",
            "--authorization-mode=Node,RBAC", f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={self.pki.sa_pub}", f"--service-account-signing-key-file={self.pki.sa_key}",
            "--service-account-max-token-expiration=48h", "--allow-privileged=true",
            "--enable-priority-and-fairness=false", "--profiling=false", "--v=1"])
        wait_for("kube-apiserver /readyz", self.admin.healthy, timeout=90)

    def stop_apiserver(self):
        """SIGKILL, as a crash or a node loss ends it: its clients' connections just break."""
        self.procs.pop("kube-apiserver").kill()

    def start_controllers(self):
        kc = self.admin_kubeconfig
        self._proc("kube-controller-manager", [
            self.bins["kube-controller-manager"], f"--kubeconfig={kc}", f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}", "--leader-elect=false", "--bind-address=127.0.0.1",
            f"--service-account-private-key-file={self.pki.sa_key}", f"--root-ca-file={self.pki.ca}",
            # Scale-to-zero tests delete pods often; GC and EndpointSlices must react at once.
            "--concurrent-gc-syncs=5", "--endpointslice-updates-batch-period=0s", "--v=1"])
        self._proc("kube-scheduler", [
            self.bins["kube-scheduler"], f"--kubeconfig={kc}", f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}", "--leader-elect=false", "--bind-address=127.0.0.1", "--v=1"])

    def start_node(self):
        self.admin.apply({"apiVersion": "v1", "kind": "Node", "metadata": {
            "name": NODE_NAME, "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {"kubernetes.io/hostname": NODE_NAME, "kubernetes.io/os": "linux", "type": "kwok"}}})
        self._proc("kwok", [
            self.bins["kwok"], f"--kubeconfig={self.admin_kubeconfig}", "--config", HERE / "stages.yaml",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake", f"--cidr={POD_CIDR}",
            f"--node-ip={NODE_IP}", "--node-lease-duration-seconds=40", "--server-address=127.0.0.1:10247"])

        wait_for("the kwok node to turn Ready", lambda: conditioned(self.admin.get("Node", name=NODE_NAME), "Ready"),
                 timeout=60)
        # Pods need the namespace's default ServiceAccount (admission), which the controller-manager creates.
        wait_for("ServiceAccount default/default", lambda: self.admin.find("ServiceAccount", "default", "default"))

    def up(self):
        self.start_etcd()
        self.start_apiserver()
        self.start_controllers()
        self.start_node()

    def down(self):
        for p in reversed(list(self.procs.values())):
            p.stop(grace=5)
        self.procs.clear()

    def token(self, namespace, service_account, seconds=86400):
        """A token for a ServiceAccount from the TokenRequest API, as a pod's projected token."""
        url = f"/api/v1/namespaces/{namespace}/serviceaccounts/{service_account}/token"
        tr = self.admin.request("POST", url, {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                                             "spec": {"expirationSeconds": seconds}})
        return tr["status"]["token"]

    def service_account(self, namespace, service_account):
        """What a pod of a ServiceAccount gets mounted at /var/run/secrets/kubernetes.io/serviceaccount (a
        TokenRequest token, the cluster CA, the namespace), as a directory; and a client with that identity."""
        d = self.dir / "serviceaccounts" / f"{namespace}-{service_account}"
        d.mkdir(parents=True, exist_ok=True)
        token = self.token(namespace, service_account)
        (d / "token").write_text(token)
        (d / "ca.crt").write_bytes(self.pki.ca.read_bytes())
        (d / "namespace").write_text(namespace)
        return d, Kube(APISERVER_IP, APISERVER_PORT, str(self.pki.ca), token=token)


class Keda:
    """The real KEDA operator, out of cluster, with its own CRDs."""

    def __init__(self, plane, bin_path, crd_dir):
        self.plane, self.bin, self.crd_dir = plane, Path(bin_path), Path(crd_dir)
        self.proc = None

    def install_crds(self):
        import yaml
        for f in sorted(self.crd_dir.glob("*.yaml")):
            for doc in yaml.safe_load_all(f.read_text()):
                if doc:
                    self.plane.admin.apply(doc)
        for name in ("scaledobjects.keda.sh",):
            wait_for(f"CRD {name} established", lambda n=name: self.plane.admin.crd_established(n))

    def start(self):
        certs = self.plane.dir / "keda-certs"
        certs.mkdir(exist_ok=True)
        run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", certs / "tls.key",
             "-out", certs / "tls.crt", "-days", "30", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=DNS:localhost"])
        (certs / "ca.crt").write_bytes((certs / "tls.crt").read_bytes())
        env = {"KUBECONFIG": str(self.plane.admin_kubeconfig), "KEDA_CLUSTER_OBJECT_NAMESPACE": "keda",
               "WATCH_NAMESPACE": "", "POD_NAMESPACE": "keda", "OPERATOR_NAME": "keda-operator"}
        self.proc = Proc("keda", [
            self.bin, f"--cert-dir={certs}", "--leader-elect=false", "--enable-cert-rotation=false",
            "--metrics-bind-address=127.0.0.1:18080", "--health-probe-bind-address=127.0.0.1:18081",
            "--metrics-service-bind-address=127.0.0.1:19666", "--zap-log-level=info"],
            self.plane.logs, env=env).start()
        self.plane.procs["keda"] = self.proc

    def version(self):
        """The version KEDA reports: its start-up log line `KEDA Version: X` (it has no --version flag)."""
        def logged():
            for line in self.proc.log_tail(400).splitlines():
                if "KEDA Version:" in line:
                    return line.split("KEDA Version:", 1)[1].split('"')[0].strip()
            assert self.proc.alive, "KEDA exited:\n" + self.proc.log_tail()
        return wait_for("KEDA's version in its log", logged, timeout=60)

