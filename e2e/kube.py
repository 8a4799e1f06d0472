"""A small client for the Kubernetes REST API: JSON in, JSON out, watches as iterators, no dependencies.

The harness talks to the real kube-apiserver with a client certificate (admin) or a bearer token (a chart
ServiceAccount); everything else in the suite is real software, so this stays deliberately thin.
"""
import http.client
import json
import ssl
import threading
import time
import urllib.parse

# Where each kind lives in the API: (group/version path prefix, plural, namespaced).
KINDS = {
    "Namespace": ("api/v1", "namespaces", False),
    "Node": ("api/v1", "nodes", False),
    "Pod": ("api/v1", "pods", True),
    "Service": ("api/v1", "services", True),
    "ServiceAccount": ("api/v1", "serviceaccounts", True),
    "ConfigMap": ("api/v1", "configmaps", True),
    "Secret": ("api/v1", "secrets", True),
    "Event": ("api/v1", "events", True),
    "Deployment": ("apis/apps/v1", "deployments", True),
    "ReplicaSet": ("apis/apps/v1", "replicasets", True),
    "EndpointSlice": ("apis/discovery.k8s.io/v1", "endpointslices", True),
    "Lease": ("apis/coordination.k8s.io/v1", "leases", True),
    "CustomResourceDefinition": ("apis/apiextensions.k8s.io/v1", "customresourcedefinitions", False),
    "ClusterRole": ("apis/rbac.authorization.k8s.io/v1", "clusterroles", False),
    "ClusterRoleBinding": ("apis/rbac.authorization.k8s.io/v1", "clusterrolebindings", False),
    "Role": ("apis/rbac.authorization.k8s.io/v1", "roles", True),
    "RoleBinding": ("apis/rbac.authorization.k8s.io/v1", "rolebindings", True),
    "PodDisruptionBudget": ("apis/policy/v1", "poddisruptionbudgets", True),
    "HorizontalPodAutoscaler": ("apis/autoscaling/v2", "horizontalpodautoscalers", True),
    "HTTPScaledObject": ("apis/http.keda.sh/v1alpha1", "httpscaledobjects", True),
    "InterceptorRoute": ("apis/http.keda.sh/v1beta1", "interceptorroutes", True),
    "ScaledObject": ("apis/keda.sh/v1alpha1", "scaledobjects", True),
    "SubjectAccessReview": ("apis/authorization.k8s.io/v1", "subjectaccessreviews", False),
}


class ApiError(Exception):
    def __init__(self, status, body):
        self.status = status
        self.body = body
        try:
            self.message = json.loads(body).get("message", body)
        except ValueError:
            self.message = body
        super().__init__(f"{status}: {self.message}")


def conditioned(obj, condition):
    """obj when its status has `condition` True, else None."""
    conds = (obj or {}).get("status", {}).get("conditions", [])
    return obj if any(c["type"] == condition and c["status"] == "True" for c in conds) else None


def path(kind, namespace=None, name=None, subresource=None):
    prefix, plural, namespaced = KINDS[kind]
    p = "/" + prefix
    if namespaced and namespace:
        p += f"/namespaces/{namespace}"
    p += "/" + plural
    if name:
        p += "/" + name
    if subresource:
        p += "/" + subresource
    return p


class Kube:
    """One identity (client certificate or token) on one API server."""

    def __init__(self, host, port, ca_file, cert=None, key=None, token=None):
        self.host, self.port, self.token = host, port, token
        self.ctx = ssl.create_default_context(cafile=ca_file)
        if cert:
            self.ctx.load_cert_chain(cert, key)

    def _conn(self, timeout):
        return http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=timeout)

    def request(self, method, url, body=None, content_type="application/json", timeout=30):
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None
        if body is not None:
            data = body if isinstance(body, (bytes, str)) else json.dumps(body)
            headers["Content-Type"] = content_type
        conn = self._conn(timeout)
        try:
            conn.request(method, url, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read().decode()
        finally:
            conn.close()
        if resp.status >= 300:
            raise ApiError(resp.status, raw)
        return json.loads(raw) if raw else None

    # Typed helpers -------------------------------------------------------------------------------------------

    def get(self, kind, namespace=None, name=None, **query):
        url = path(kind, namespace, name)
        if query:
            url += "?" + urllib.parse.urlencode(query)
        return self.request("GET", url)

    def find(self, kind, namespace, name):
        """The object, or None when it does not exist."""
        try:
            return self.get(kind, namespace, name)
        except ApiError as e:
            if e.status == 404:
                return None
            raise

    def create(self, obj, dry_run=False, validation="Strict"):
        """A create with strict field validation, as `kubectl apply -f` of a new object; dry_run keeps nothing."""
        url = path(obj["kind"], obj["metadata"].get("namespace")) + f"?fieldValidation={validation}"
        return self.request("POST", url + ("&dryRun=All" if dry_run else ""), obj)

    def apply(self, obj, manager="httpscale-e2e", force=True, validation="Strict"):
        """Server-side apply, as `kubectl apply --server-side` does."""
        md = obj["metadata"]
        url = path(obj["kind"], md.get("namespace"), md["name"])
        url += f"?fieldManager={manager}&fieldValidation={validation}" + ("&force=true" if force else "")
        return self.request("PATCH", url, obj, content_type="application/apply-patch+yaml")

    def merge_patch(self, kind, namespace, name, patch, subresource=None):
        url = path(kind, namespace, name, subresource)
        return self.request("PATCH", url, patch, content_type="application/merge-patch+json")

    def strategic_patch(self, kind, namespace, name, patch, subresource=None):
        url = path(kind, namespace, name, subresource)
        return self.request("PATCH", url, patch, content_type="application/strategic-merge-patch+json")

    def delete(self, kind, namespace, name, **body):
        try:
            return self.request("DELETE", path(kind, namespace, name), body or None)
        except ApiError as e:
            if e.status != 404:
                raise

    def crd_established(self, name):
        return conditioned(self.find("CustomResourceDefinition", None, name), "Established") is not None

    def version(self):
        return self.request("GET", "/version")

    def healthy(self):
        try:
            conn = self._conn(2)
            conn.request("GET", "/readyz", headers={"Authorization": f"Bearer {self.token}"} if self.token else {})
            ok = conn.getresponse().status == 200
            conn.close()
            return ok
        except OSError:
            return False

    def watch(self, kind, namespace=None, stop=None, **query):
        """Yields (type, object) for every event, re-listing and re-watching across errors until `stop` is set.

        The first events are ADDED for every existing object, as an informer's initial list, then ("SYNCED", None)
        once that list is done (again after every re-list).
        """
        stop = stop or threading.Event()
        while not stop.is_set():
            try:
                listed = self.get(kind, namespace, **query)
            except (OSError, ApiError):
                time.sleep(0.2)
                continue
            for item in listed.get("items", []):
                item.setdefault("kind", kind)
                yield "ADDED", item
            yield "SYNCED", None
            rv = listed["metadata"]["resourceVersion"]
            q = dict(query, watch="1", resourceVersion=rv, allowWatchBookmarks="false", timeoutSeconds="60")
            url = path(kind, namespace) + "?" + urllib.parse.urlencode(q)
            try:
                conn = self._conn(65)
                headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
                conn.request("GET", url, headers=headers)
                resp = conn.getresponse()
                if resp.status != 200:
                    conn.close()
                    time.sleep(0.2)
                    continue
                while not stop.is_set():
                    line = resp.readline()
                    if not line:
                        break
                    event = json.loads(line)
                    if event["type"] == "ERROR":
                        break
                    yield event["type"], event["object"]
                conn.close()
            except (OSError, ValueError, http.client.HTTPException):
                time.sleep(0.2)
