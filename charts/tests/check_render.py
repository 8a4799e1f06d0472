#!/usr/bin/env python3
"""Checks a `helm template` render of charts/keda-add-ons-http against the upstream chart's contract.

  check_render.py default RENDER OTHER_RELEASE_RENDER   render with the tutorial's flags (namespace keda,
                                                        interceptor.responseHeaderTimeout=120s), and the same
                                                        with another release name
  check_render.py no-operator RENDER                    --set operator.replicas=0
  check_render.py no-crds RENDER                        --set crds.install=false
  check_render.py aggregate RENDER                      --set rbac.aggregateToDefaultRoles=true
  check_render.py full RENDER                           -f tests/values-full.yaml (most knobs changed)
  check_render.py wait-timeout RENDER                   --set interceptor.replicas.waitTimeout=20s

Prints one line per check, "PASS <name>" or "FAIL <name>: <why>", and exits 1 if any failed.
"""
import pathlib
import re
import sys

import yaml

CHART = yaml.safe_load((pathlib.Path(__file__).resolve().parent.parent / 'keda-add-ons-http' / 'Chart.yaml').read_text())
VERSION, APP_VERSION = str(CHART['version']), str(CHART['appVersion'])

NS = 'keda'
RELEASE = 'http-add-on'
P = 'keda-add-ons-http'  # every name is built from the chart name, never from the release name
INTERCEPTOR, SCALER, OPERATOR = f'{P}-interceptor', f'{P}-external-scaler', f'{P}-controller-manager'
PROXY_SVC, ADMIN_SVC = f'{P}-interceptor-proxy', f'{P}-interceptor-admin'
OPERATOR_METRICS_SVC = f'{P}-controller-manager-metrics-service'
SCALER_ADDRESS = f'{SCALER}.{NS}:9090'

CLUSTER_SCOPED = {'CustomResourceDefinition', 'ClusterRole', 'ClusterRoleBinding'}
CRDS = {('CustomResourceDefinition', 'httpscaledobjects.http.keda.sh'),
        ('CustomResourceDefinition', 'interceptorroutes.http.keda.sh')}
OPERATOR_OBJECTS = {
    ('Deployment', OPERATOR), ('Service', OPERATOR_METRICS_SVC), ('ServiceAccount', P),
    ('ClusterRole', f'{P}-role'), ('ClusterRoleBinding', f'{P}-rolebinding'),
    ('Role', f'{P}-role'), ('RoleBinding', f'{P}-role-rolebinding'),
    # operator.metrics.auth (on by default, as upstream): scrapers' role, and the operator's right to check them
    ('ClusterRole', f'{P}-metrics-reader'), ('ClusterRoleBinding', f'{P}-auth-delegator'),
}
EXPECTED = CRDS | OPERATOR_OBJECTS | {
    ('Deployment', INTERCEPTOR), ('Service', PROXY_SVC), ('Service', ADMIN_SVC),
    ('ScaledObject', INTERCEPTOR), ('PodDisruptionBudget', INTERCEPTOR),
    ('ServiceAccount', INTERCEPTOR), ('ClusterRole', INTERCEPTOR), ('ClusterRoleBinding', INTERCEPTOR),
    ('Deployment', SCALER), ('Service', SCALER),
    ('ServiceAccount', SCALER), ('ClusterRole', SCALER), ('ClusterRoleBinding', SCALER),
}
SELECTOR_KEYS = {'app.kubernetes.io/component', 'app.kubernetes.io/name', 'app.kubernetes.io/part-of',
                 'app.kubernetes.io/managed-by', 'app.kubernetes.io/instance'}
ALL_VERBS = {'create', 'delete', 'get', 'list', 'patch', 'update', 'watch'}
READ = {'get', 'list', 'watch'}


def triples(*specs):
    """{(apiGroup, resource, verb)} from (groups, resources, verbs) specs."""
    return {(g, r, v) for gs, rs, vs in specs for g in gs for r in rs for v in vs}


EXPECTED_RULES = {
    ('ClusterRole', INTERCEPTOR): triples(
        (['discovery.k8s.io'], ['endpointslices'], READ), ([''], ['services', 'configmaps'], READ),
        (['http.keda.sh'], ['httpscaledobjects', 'interceptorroutes'], READ)),
    ('ClusterRole', SCALER): triples(
        (['discovery.k8s.io'], ['endpointslices'], READ),
        (['http.keda.sh'], ['httpscaledobjects', 'interceptorroutes'], READ)),
    ('ClusterRole', f'{P}-role'): triples(
        (['http.keda.sh'], ['httpscaledobjects', 'interceptorroutes'], ALL_VERBS),
        (['http.keda.sh'], ['httpscaledobjects/finalizers', 'interceptorroutes/finalizers'], ['update']),
        (['http.keda.sh'], ['httpscaledobjects/status', 'interceptorroutes/status'], ['get', 'patch', 'update']),
        (['keda.sh'], ['scaledobjects'], ALL_VERBS),
        (['', 'events.k8s.io'], ['events'], ['create', 'patch'])),
    ('ClusterRole', f'{P}-metrics-reader'): triples(([None], ['/metrics'], ['get'])),
    ('Role', f'{P}-role'): triples(
        (['coordination.k8s.io'], ['leases'], ALL_VERBS),
        (['', 'events.k8s.io'], ['events'], ['create', 'patch'])),
}

results = []


def check(name):
    def run(fn):
        try:
            fn()
            results.append((name, None))
        except AssertionError as e:
            results.append((name, str(e) or 'assertion failed'))
        except Exception as e:  # a KeyError on a missing object is a failure of that check, not a crash
            results.append((name, f'{type(e).__name__}: {e}'))
        return fn
    return run


def load(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def index(docs):
    out = {}
    for d in docs:
        key = (d['kind'], d['metadata']['name'])
        assert key not in out, f'{key} rendered twice'
        out[key] = d
    return out


def container(dep):
    cs = dep['spec']['template']['spec']['containers']
    assert len(cs) == 1, f"{dep['metadata']['name']}: expected one container, got {len(cs)}"
    return cs[0]


def env(c):
    names = [e['name'] for e in c.get('env', [])]
    dups = {n for n in names if names.count(n) > 1}
    assert not dups, f'duplicate env vars {sorted(dups)}'
    return {e['name']: e.get('value') for e in c.get('env', [])}


def ports(c):
    return {p['name']: p['containerPort'] for p in c.get('ports', [])}


def go_duration_seconds(s):
    """time.ParseDuration for the non-negative subset."""
    if s == '0':
        return 0.0
    unit = {'ns': 1e-9, 'us': 1e-6, 'µs': 1e-6, 'μs': 1e-6, 'ms': 1e-3, 's': 1, 'm': 60, 'h': 3600}
    parts = re.findall(r'([0-9]*\.?[0-9]+|[0-9]+\.)(ns|us|µs|μs|ms|s|m|h)', s)
    assert parts and ''.join(n + u for n, u in parts) == s, f'{s!r} is not a Go duration'
    return sum(float(n) * unit[u] for n, u in parts)


def eq(actual, expected, what):
    assert actual == expected, f'{what}: expected {expected!r}, got {actual!r}'


def selects(selector, dep):
    labels = dep['spec']['template']['metadata']['labels']
    return all(labels.get(k) == v for k, v in selector.items())


def rule_triples(role):
    out = set()
    for r in role.get('rules', []):
        assert 'resourceNames' not in r, f'unexpected rule shape {r}'
        out |= triples((r.get('apiGroups', []), r.get('resources', []), r.get('verbs', [])))
        out |= triples(([None], r.get('nonResourceURLs', []), r.get('verbs', [])))
    return out


def expected_component(kind, name):
    if name.startswith(INTERCEPTOR):
        return 'interceptor'
    if name.startswith(SCALER):
        return 'scaler'
    return 'operator'


# ---------------------------------------------------------------------------------------------------------------
def checks_default(docs, other_docs):
    objs = index(docs)

    @check('rendered objects: exactly the kinds and names of the upstream chart')
    def _():
        got = set(objs)
        assert got == EXPECTED, f'missing {sorted(EXPECTED - got)}, unexpected {sorted(got - EXPECTED)}'

    @check('namespaces: every namespaced object is in the release namespace, cluster objects have none')
    def _():
        for (kind, name), d in objs.items():
            ns = d['metadata'].get('namespace')
            if kind in CLUSTER_SCOPED:
                assert ns is None, f'{kind}/{name} is cluster-scoped but has namespace {ns}'
            else:
                eq(ns, NS, f'{kind}/{name} namespace')

    @check('names do not depend on the release name')
    def _():
        other = index(other_docs)
        eq(set(other), set(objs), 'objects rendered for release "other-name"')
        for key, d in other.items():
            eq(d['metadata'].get('namespace'), objs[key]['metadata'].get('namespace'), f'{key} namespace')
            if key[0] not in ('CustomResourceDefinition',):
                eq(d['metadata']['labels']['app.kubernetes.io/instance'], 'other-name', f'{key} instance label')
        # the wiring between components must not change either
        eq(container(other[('Deployment', SCALER)])['env'], container(objs[('Deployment', SCALER)])['env'],
           'scaler env under another release name')
        eq(other[('ScaledObject', INTERCEPTOR)]['spec']['triggers'],
           objs[('ScaledObject', INTERCEPTOR)]['spec']['triggers'], 'interceptor ScaledObject triggers')

    @check('labels: component/name/part-of/managed-by/instance everywhere, version and helm.sh/chart off selectors')
    def _():
        for (kind, name), d in objs.items():
            if kind == 'CustomResourceDefinition':
                continue
            lb = d['metadata'].get('labels', {})
            want = {'app.kubernetes.io/component': expected_component(kind, name),
                    'app.kubernetes.io/name': 'http-add-on', 'app.kubernetes.io/part-of': P,
                    'app.kubernetes.io/managed-by': 'Helm', 'app.kubernetes.io/instance': RELEASE,
                    'app.kubernetes.io/version': APP_VERSION, 'helm.sh/chart': f'{P}-{VERSION}'}
            for k, v in want.items():
                eq(lb.get(k), v, f'{kind}/{name} label {k}')
        for kind, name in [('Deployment', INTERCEPTOR), ('Deployment', SCALER), ('Deployment', OPERATOR),
                           ('PodDisruptionBudget', INTERCEPTOR)]:
            sel = objs[(kind, name)]['spec']['selector']['matchLabels']
            eq(set(sel), SELECTOR_KEYS, f'{kind}/{name} selector keys')
        for kind, name in [('Service', PROXY_SVC), ('Service', ADMIN_SVC), ('Service', SCALER),
                           ('Service', OPERATOR_METRICS_SVC)]:
            eq(set(objs[(kind, name)]['spec']['selector']), SELECTOR_KEYS, f'Service/{name} selector keys')

    @check('Services select the right pods and target container ports that exist')
    def _():
        for svc, dep in [(PROXY_SVC, INTERCEPTOR), (ADMIN_SVC, INTERCEPTOR), (SCALER, SCALER),
                         (OPERATOR_METRICS_SVC, OPERATOR)]:
            s, d = objs[('Service', svc)], objs[('Deployment', dep)]
            assert selects(s['spec']['selector'], d), f'Service/{svc} does not select Deployment/{dep} pods'
            for other in (INTERCEPTOR, SCALER, OPERATOR):
                if other != dep:
                    assert not selects(s['spec']['selector'], objs[('Deployment', other)]), \
                        f'Service/{svc} also selects Deployment/{other} pods'
            cports = ports(container(d))
            for p in s['spec']['ports']:
                assert p['targetPort'] in cports, f"Service/{svc} targetPort {p['targetPort']} not a container port"
                eq(cports[p['targetPort']], p['port'], f"Service/{svc} port {p['name']} vs container port")

    @check('proxy Service: keda-add-ons-http-interceptor-proxy port 8080 named proxy, targetPort proxy')
    def _():
        eq([(p['name'], p['port'], p['targetPort']) for p in objs[('Service', PROXY_SVC)]['spec']['ports']],
           [('proxy', 8080, 'proxy')], 'proxy Service ports')

    @check('admin and scaler Services on 9090 (admin, grpc + metrics 2223)')
    def _():
        eq([(p['name'], p['port']) for p in objs[('Service', ADMIN_SVC)]['spec']['ports']], [('admin', 9090)],
           'admin Service ports')
        eq([(p['name'], p['port']) for p in objs[('Service', SCALER)]['spec']['ports']],
           [('grpc', 9090), ('metrics', 2223)], 'scaler Service ports')
        eq([(p['name'], p['port']) for p in objs[('Service', OPERATOR_METRICS_SVC)]['spec']['ports']],
           [('metrics', 8443)], 'operator metrics Service ports')

    @check('interceptor Deployment: no replicas, ports, probes, env incl. KEDA_HTTP_RESPONSE_HEADER_TIMEOUT=120s')
    def _():
        d = objs[('Deployment', INTERCEPTOR)]
        assert 'replicas' not in d['spec'], 'interceptor Deployment must not set replicas (KEDA scales it)'
        c = container(d)
        eq(c['name'], INTERCEPTOR, 'container name')
        eq(c['image'], f'ghcr.io/httpscale/interceptor:{APP_VERSION}', 'image')
        eq(ports(c), {'admin': 9090, 'proxy': 8080, 'metrics': 2223}, 'container ports')
        eq((c['livenessProbe']['httpGet']['path'], c['livenessProbe']['httpGet']['port']), ('/livez', 'admin'),
           'liveness probe')
        eq((c['readinessProbe']['httpGet']['path'], c['readinessProbe']['httpGet']['port']), ('/readyz', 'admin'),
           'readiness probe')
        e = env(c)
        want = {'KEDA_HTTP_PROXY_PORT': '8080', 'KEDA_HTTP_ADMIN_PORT': '9090',
                'KEDA_HTTP_RESPONSE_HEADER_TIMEOUT': '120s', 'KEDA_HTTP_MAX_IDLE_CONNS': '1000',
                'KEDA_HTTP_MAX_IDLE_CONNS_PER_HOST': '200', 'KEDA_HTTP_SHUTDOWN_DELAY': '5s',
                'KEDA_HTTP_DRAIN_TIMEOUT': '30s', 'OTEL_PROM_EXPORTER_ENABLED': 'true',
                'OTEL_PROM_EXPORTER_PORT': '2223', 'KEDA_HTTP_WATCH_NAMESPACE': ''}
        for k, v in want.items():
            eq(e.get(k), v, f'env {k}')
        for k in ('KEDA_HTTP_REQUEST_TIMEOUT', 'KEDA_HTTP_READINESS_TIMEOUT', 'KEDA_HTTP_CONNECT_TIMEOUT',
                  'KEDA_HTTP_COLD_START_MAX_PENDING_REQUESTS', 'KEDA_HTTP_DIRECT_POD_ROUTING',
                  'KEDA_HTTP_PROXY_TLS_ENABLED'):
            assert k not in e, f'env {k} must only be rendered when its value is set'
        eq(c['args'], ['--zap-log-level=info', '--zap-encoder=console', '--zap-time-encoding=rfc3339'], 'args')
        eq(d['spec']['template']['spec'].get('nodeSelector'), {'kubernetes.io/os': 'linux'}, 'nodeSelector')

    @check('interceptor terminationGracePeriodSeconds (45) is above shutdownDelay + drainTimeout')
    def _():
        d = objs[('Deployment', INTERCEPTOR)]
        grace = d['spec']['template']['spec']['terminationGracePeriodSeconds']
        eq(grace, 45, 'terminationGracePeriodSeconds')
        e = env(container(d))
        total = go_duration_seconds(e['KEDA_HTTP_SHUTDOWN_DELAY']) + go_duration_seconds(e['KEDA_HTTP_DRAIN_TIMEOUT'])
        assert grace > total, f'grace period {grace}s is not above shutdown delay + drain timeout ({total}s)'

    @check('interceptor ScaledObject: min 3, max 50, polling 1, external trigger at the scaler, target "200"')
    def _():
        so = objs[('ScaledObject', INTERCEPTOR)]
        eq(so['apiVersion'], 'keda.sh/v1alpha1', 'apiVersion')
        s = so['spec']
        eq((s['minReplicaCount'], s['maxReplicaCount'], s['pollingInterval']), (3, 50, 1), 'min/max/polling')
        eq(s['scaleTargetRef'], {'apiVersion': 'apps/v1', 'kind': 'Deployment', 'name': INTERCEPTOR},
           'scaleTargetRef')
        eq(s['triggers'], [{'type': 'external', 'metadata': {
            'scalerAddress': SCALER_ADDRESS, 'interceptorTargetPendingRequests': '200'}}], 'triggers')
        svc = objs[('Service', SCALER)]
        host, port = s['triggers'][0]['metadata']['scalerAddress'].rsplit(':', 1)
        eq(host, f"{svc['metadata']['name']}.{svc['metadata']['namespace']}", 'scalerAddress host vs scaler Service')
        assert int(port) in [p['port'] for p in svc['spec']['ports']], 'scalerAddress port is not a Service port'

    @check('interceptor PodDisruptionBudget: maxUnavailable 1 over the interceptor pods')
    def _():
        pdb = objs[('PodDisruptionBudget', INTERCEPTOR)]
        eq(pdb['spec'].get('maxUnavailable'), 1, 'maxUnavailable')
        assert 'minAvailable' not in pdb['spec'], 'minAvailable and maxUnavailable are exclusive'
        assert selects(pdb['spec']['selector']['matchLabels'], objs[('Deployment', INTERCEPTOR)]), 'selector'

    @check('scaler Deployment: replicas 3, grpc 9090, gRPC probes, env pointing at the interceptor admin Service')
    def _():
        d = objs[('Deployment', SCALER)]
        eq(d['spec'].get('replicas'), 3, 'replicas')
        c = container(d)
        eq(c['image'], f'ghcr.io/httpscale/scaler:{APP_VERSION}', 'image')
        eq(ports(c), {'grpc': 9090, 'metrics': 2223}, 'container ports')
        eq(c['livenessProbe'], {'grpc': {'port': 9090, 'service': 'liveness'}, 'periodSeconds': 5,
                                'failureThreshold': 6}, 'liveness probe')
        eq(c['readinessProbe'], {'grpc': {'port': 9090, 'service': 'readiness'}, 'periodSeconds': 5},
           'readiness probe')
        e = env(c)
        admin = objs[('Service', ADMIN_SVC)]
        want = {'KEDA_HTTP_SCALER_PORT': '9090', 'KEDA_HTTP_SCALER_TARGET_ADMIN_NAMESPACE': NS,
                'KEDA_HTTP_SCALER_TARGET_ADMIN_SERVICE': admin['metadata']['name'],
                'KEDA_HTTP_SCALER_TARGET_ADMIN_DEPLOYMENT': INTERCEPTOR,
                'KEDA_HTTP_SCALER_TARGET_ADMIN_PORT': str(admin['spec']['ports'][0]['port']),
                'KEDA_HTTP_SCALER_STREAM_INTERVAL_MS': '200', 'OTEL_PROM_EXPORTER_ENABLED': 'true',
                'OTEL_PROM_EXPORTER_PORT': '2223', 'OTEL_EXPORTER_OTLP_METRICS_ENABLED': 'false',
                'OTEL_EXPORTER_OTLP_TRACES_ENABLED': 'false', 'OTEL_EXPORTER_OTLP_TRACES_PROTOCOL': 'console'}
        for k, v in want.items():
            eq(e.get(k), v, f'env {k}')
        eq(admin['metadata']['name'], ADMIN_SVC, 'admin Service name')

    @check('operator Deployment: args, probes on 8081, env giving the scalerAddress the ScaledObjects use')
    def _():
        d = objs[('Deployment', OPERATOR)]
        eq(d['spec'].get('replicas'), 1, 'replicas')
        c = container(d)
        eq(c['image'], f'ghcr.io/httpscale/operator:{APP_VERSION}', 'image')
        eq(c['args'], ['--metrics-bind-address=:8443', '--metrics-secure=true', '--metrics-auth=true',
                       '--health-probe-bind-address=:8081', '--leader-elect',
                       '--zap-log-level=info', '--zap-encoder=console', '--zap-time-encoding=rfc3339'], 'args')
        eq(ports(c), {'metrics': 8443, 'probes': 8081}, 'container ports')
        eq((c['livenessProbe']['httpGet']['path'], c['livenessProbe']['httpGet']['port']), ('/healthz', 'probes'),
           'liveness probe')
        eq((c['readinessProbe']['httpGet']['path'], c['readinessProbe']['httpGet']['port']), ('/readyz', 'probes'),
           'readiness probe')
        e = env(c)
        eq(e.get('KEDA_HTTP_OPERATOR_EXTERNAL_SCALER_SERVICE'), SCALER, 'env EXTERNAL_SCALER_SERVICE')
        eq(e.get('KEDA_HTTP_OPERATOR_EXTERNAL_SCALER_PORT'), '9090', 'env EXTERNAL_SCALER_PORT')
        eq(e.get('KEDA_HTTP_OPERATOR_NAMESPACE'), NS, 'env OPERATOR_NAMESPACE')
        eq(e.get('KEDA_HTTP_OPERATOR_WATCH_NAMESPACE'), '', 'env WATCH_NAMESPACE')
        addr = '{}.{}:{}'.format(e['KEDA_HTTP_OPERATOR_EXTERNAL_SCALER_SERVICE'], e['KEDA_HTTP_OPERATOR_NAMESPACE'],
                                 e['KEDA_HTTP_OPERATOR_EXTERNAL_SCALER_PORT'])
        eq(addr, SCALER_ADDRESS, 'scalerAddress the operator writes into ScaledObjects')

    @check('RBAC: least privilege, exact rules per role, no wildcards')
    def _():
        for key, want in EXPECTED_RULES.items():
            got = rule_triples(objs[key])
            assert got == want, f'{key}: missing {sorted(want - got)}, extra {sorted(got - want)}'
        for (kind, name), d in objs.items():
            if kind in ('ClusterRole', 'Role'):
                for r in d.get('rules', []):
                    assert '*' not in str(r), f'{kind}/{name} has a wildcard rule {r}'

    @check('RBAC: every Deployment runs as its own ServiceAccount, bound to its role')
    def _():
        bindings = {('ClusterRoleBinding', INTERCEPTOR): (INTERCEPTOR, 'ClusterRole', INTERCEPTOR),
                    ('ClusterRoleBinding', SCALER): (SCALER, 'ClusterRole', SCALER),
                    ('ClusterRoleBinding', f'{P}-rolebinding'): (P, 'ClusterRole', f'{P}-role'),
                    ('RoleBinding', f'{P}-role-rolebinding'): (P, 'Role', f'{P}-role'),
                    ('ClusterRoleBinding', f'{P}-auth-delegator'): (P, 'ClusterRole', 'system:auth-delegator')}
        for key, (sa, rkind, rname) in bindings.items():
            b = objs[key]
            eq(b['roleRef'], {'apiGroup': 'rbac.authorization.k8s.io', 'kind': rkind, 'name': rname}, f'{key} roleRef')
            eq(b['subjects'], [{'kind': 'ServiceAccount', 'name': sa, 'namespace': NS}], f'{key} subjects')
        for dep, sa in [(INTERCEPTOR, INTERCEPTOR), (SCALER, SCALER), (OPERATOR, P)]:
            eq(objs[('Deployment', dep)]['spec']['template']['spec']['serviceAccountName'], sa, f'{dep} SA')
            assert ('ServiceAccount', sa) in objs, f'ServiceAccount {sa} not rendered'

    @check('security: every container drops ALL, no escalation, not privileged, read-only root, non-root')
    def _():
        want = {'allowPrivilegeEscalation': False, 'capabilities': {'drop': ['ALL']}, 'privileged': False,
                'readOnlyRootFilesystem': True, 'runAsNonRoot': True}
        for dep in (INTERCEPTOR, SCALER, OPERATOR):
            d = objs[('Deployment', dep)]
            eq(container(d).get('securityContext'), want, f'{dep} securityContext')
            eq(d['spec']['template']['spec'].get('securityContext'), {'fsGroup': 1000, 'supplementalGroups': [1000]},
               f'{dep} pod securityContext')

    @check('CRDs: HTTPScaledObject v1alpha1 (httpso, printer columns, status, defaults, CEL) as upstream')
    def _():
        crd = objs[('CustomResourceDefinition', 'httpscaledobjects.http.keda.sh')]['spec']
        eq((crd['group'], crd['scope'], crd['names']['kind'], crd['names']['plural']),
           ('http.keda.sh', 'Namespaced', 'HTTPScaledObject', 'httpscaledobjects'), 'names')
        eq(crd['names'].get('shortNames'), ['httpso'], 'shortNames')
        eq([v['name'] for v in crd['versions']], ['v1alpha1'], 'versions')
        v = crd['versions'][0]
        assert v['served'] and v['storage'], 'v1alpha1 must be served and the storage version'
        eq(v.get('subresources'), {'status': {}}, 'subresources')
        eq([(c['name'], c['jsonPath']) for c in v['additionalPrinterColumns']],
           [('TargetWorkload', '.status.targetWorkload'), ('TargetService', '.status.targetService'),
            ('MinReplicas', '.spec.replicas.min'), ('MaxReplicas', '.spec.replicas.max'),
            ('Age', '.metadata.creationTimestamp'), ('Ready', '.status.conditions[?(@.type=="Ready")].status')],
           'printer columns')
        spec = v['schema']['openAPIV3Schema']['properties']['spec']
        eq(spec.get('required'), ['scaleTargetRef'], 'spec.required')
        sm = spec['properties']['scalingMetric']['properties']
        eq(sm['requestRate']['properties']['window'].get('default'), '1m', 'requestRate.window default')
        eq(sm['requestRate']['properties']['granularity'].get('default'), '1s', 'requestRate.granularity default')
        eq(sm['requestRate']['properties']['targetValue'].get('default'), 100, 'requestRate.targetValue default')
        eq(sm['concurrency']['properties']['targetValue'].get('default'), 100, 'concurrency.targetValue default')
        ref = spec['properties']['scaleTargetRef']
        assert 'service' in ref.get('required', []), 'scaleTargetRef.service must be required'
        eq([r['message'] for r in ref.get('x-kubernetes-validations', [])],
           ["must define either the 'portName' or the 'port'"], 'scaleTargetRef CEL messages')
        fo = spec['properties']['coldStartTimeoutFailoverRef']
        eq(fo['properties']['timeoutSeconds'].get('default'), 30, 'coldStartTimeoutFailoverRef.timeoutSeconds default')
        eq(set(spec['properties']), {'hosts', 'pathPrefixes', 'headers', 'scaleTargetRef', 'coldStartTimeoutFailoverRef',
                                     'replicas', 'targetPendingRequests', 'scaledownPeriod', 'initialCooldownPeriod',
                                     'scalingMetric', 'timeouts'}, 'spec fields')

    @check('CRDs: InterceptorRoute v1beta1 (no shortName, required target/scalingMetric, CEL) as upstream')
    def _():
        crd = objs[('CustomResourceDefinition', 'interceptorroutes.http.keda.sh')]['spec']
        eq((crd['group'], crd['scope'], crd['names']['kind'], crd['names']['plural']),
           ('http.keda.sh', 'Namespaced', 'InterceptorRoute', 'interceptorroutes'), 'names')
        assert not crd['names'].get('shortNames'), 'InterceptorRoute has no shortName upstream'
        eq([v['name'] for v in crd['versions']], ['v1beta1'], 'versions')
        v = crd['versions'][0]
        assert v['served'] and v['storage'], 'v1beta1 must be served and the storage version'
        eq(v.get('subresources'), {'status': {}}, 'subresources')
        eq([c['name'] for c in v['additionalPrinterColumns']], ['TargetService', 'Ready', 'Age'], 'printer columns')
        spec = v['schema']['openAPIV3Schema']['properties']['spec']
        eq(sorted(spec.get('required', [])), ['scalingMetric', 'target'], 'spec.required')
        msgs = lambda s: [r['message'] for r in s.get('x-kubernetes-validations', [])]  # noqa: E731
        eq(msgs(spec['properties']['target']), ["exactly one of 'port' or 'portName' must be set"], 'target CEL')
        eq(msgs(spec['properties']['scalingMetric']),
           ["at least one of 'concurrency' or 'requestRate' must be set"], 'scalingMetric CEL')
        rr = spec['properties']['scalingMetric']['properties']['requestRate']['properties']
        eq((rr['window'].get('default'), rr['granularity'].get('default')), ('1m', '1s'), 'requestRate defaults')


def checks_no_operator(docs):
    objs = index(docs)

    @check('operator.replicas=0: none of the operator objects, everything else still rendered')
    def _():
        got = set(objs)
        assert not (got & OPERATOR_OBJECTS), f'operator objects rendered: {sorted(got & OPERATOR_OBJECTS)}'
        eq(got, EXPECTED - OPERATOR_OBJECTS, 'objects')
        for (kind, name), d in objs.items():
            lb = d['metadata'].get('labels') or {}
            assert lb.get('app.kubernetes.io/component') != 'operator', f'{kind}/{name} is an operator object'


def checks_no_crds(docs):
    @check('crds.install=false: no CustomResourceDefinition')
    def _():
        got = set(index(docs))
        eq(got, EXPECTED - CRDS, 'objects')


def checks_aggregate(docs):
    objs = index(docs)

    @check('rbac.aggregateToDefaultRoles=true: edit and view ClusterRoles aggregated into the default roles')
    def _():
        eq(set(objs) - EXPECTED, {('ClusterRole', f'{P}-edit'), ('ClusterRole', f'{P}-view')}, 'extra objects')
        edit, view = objs[('ClusterRole', f'{P}-edit')], objs[('ClusterRole', f'{P}-view')]
        for k in ('rbac.authorization.k8s.io/aggregate-to-admin', 'rbac.authorization.k8s.io/aggregate-to-edit'):
            eq(edit['metadata']['labels'].get(k), 'true', f'edit label {k}')
        eq(view['metadata']['labels'].get('rbac.authorization.k8s.io/aggregate-to-view'), 'true', 'view label')
        eq(rule_triples(view), triples((['http.keda.sh'], ['httpscaledobjects', 'interceptorroutes'], READ)),
           'view rules')
        assert triples((['http.keda.sh'], ['httpscaledobjects', 'interceptorroutes'], ALL_VERBS)) <= rule_triples(edit)


def checks_wait_timeout(docs):
    objs = index(docs)

    @check('deprecated interceptor.replicas.waitTimeout falls back into KEDA_HTTP_READINESS_TIMEOUT')
    def _():
        e = env(container(objs[('Deployment', INTERCEPTOR)]))
        eq(e.get('KEDA_HTTP_READINESS_TIMEOUT'), '20s', 'env KEDA_HTTP_READINESS_TIMEOUT')


def checks_full(docs):
    """tests/values-full.yaml: each value must land where upstream puts it."""
    objs = index(docs)
    ic = lambda: container(objs[('Deployment', INTERCEPTOR)])  # noqa: E731

    @check('full values: interceptor timeouts, limits and switches become their env vars')
    def _():
        e = env(ic())
        want = {'KEDA_HTTP_REQUEST_TIMEOUT': '10m', 'KEDA_HTTP_RESPONSE_HEADER_TIMEOUT': '2m30s',
                'KEDA_HTTP_READINESS_TIMEOUT': '90s', 'KEDA_HTTP_CONNECT_TIMEOUT': '750ms',
                'KEDA_HTTP_MAX_IDLE_CONNS': '0', 'KEDA_HTTP_MAX_IDLE_CONNS_PER_HOST': '10',
                'KEDA_HTTP_SHUTDOWN_DELAY': '2s', 'KEDA_HTTP_DRAIN_TIMEOUT': '1m',
                'KEDA_HTTP_COLD_START_MAX_PENDING_REQUESTS': '0', 'KEDA_HTTP_DIRECT_POD_ROUTING': 'false',
                'KEDA_HTTP_WATCH_NAMESPACE': 'apps', 'KEDA_HTTP_PROXY_PORT': '8000', 'KEDA_HTTP_ADMIN_PORT': '9000',
                'OTEL_PROM_EXPORTER_ENABLED': 'false', 'EXTRA_FROM_LIST': 'a'}
        for k, v in want.items():
            eq(e.get(k), v, f'env {k}')
        eq(ic()['env'][-1], {'name': 'POD_IP', 'valueFrom': {'fieldRef': {'fieldPath': 'status.podIP'}}},
           'extraEnvs entry with valueFrom')
        se = env(container(objs[('Deployment', SCALER)]))
        eq(se.get('KEDA_HTTP_QUEUE_TICK_DURATION'), '250ms', 'scaler extraEnvs given as a map')
        eq((se.get('OTEL_EXPORTER_OTLP_METRICS_ENABLED'), se.get('OTEL_EXPORTER_OTLP_TRACES_ENABLED'),
            se.get('OTEL_EXPORTER_OTLP_TRACES_PROTOCOL'), se.get('OTEL_EXPORTER_OTLP_ENDPOINT')),
           ('true', 'true', 'grpc', 'http://otel-collector.observability:4317'),
           'scaler.metrics.otlp.enabled, scaler.tracing.* and the collector endpoint from extraEnvs')
        eq(env(container(objs[('Deployment', OPERATOR)])).get('KEDA_HTTP_OPERATOR_LEADER_ELECTION_LEASE_DURATION'),
           '30s', 'operator extraEnvs')
        eq(ic()['args'], ['--zap-log-level=debug', '--zap-encoder=json', '--zap-time-encoding=iso8601',
                          '--zap-stacktrace-level=error'], 'interceptor args')
        eq(ports(ic()), {'admin': 9000, 'proxy': 8000}, 'interceptor ports (no metrics port when disabled)')

    @check('full values: Services follow the renamed services and ports')
    def _():
        proxy, admin = objs[('Service', f'{P}-edge')], objs[('Service', f'{P}-control')]
        eq([(p['name'], p['port'], p.get('appProtocol')) for p in proxy['spec']['ports']],
           [('proxy', 8000, 'kubernetes.io/h2c')], 'proxy ports')
        eq([(p['name'], p['port']) for p in admin['spec']['ports']], [('admin', 9000)], 'admin ports')
        eq([(p['name'], p['port']) for p in objs[('Service', f'{P}-kedascaler')]['spec']['ports']], [('grpc', 9191)],
           'scaler ports (no metrics when disabled)')
        se = env(container(objs[('Deployment', SCALER)]))
        eq((se['KEDA_HTTP_SCALER_TARGET_ADMIN_SERVICE'], se['KEDA_HTTP_SCALER_TARGET_ADMIN_PORT'],
            se['KEDA_HTTP_SCALER_PORT'], se['KEDA_HTTP_SCALER_STREAM_INTERVAL_MS']),
           (f'{P}-control', '9000', '9191', '100'), 'scaler env')
        so = objs[('ScaledObject', INTERCEPTOR)]['spec']
        eq((so['minReplicaCount'], so['maxReplicaCount'], so['pollingInterval']), (1, 5, 2), 'ScaledObject min/max/poll')
        eq(so['triggers'][0]['metadata'], {'scalerAddress': f'{P}-kedascaler.{NS}:9191',
                                           'interceptorTargetPendingRequests': '50'}, 'trigger metadata')
        oe = env(container(objs[('Deployment', OPERATOR)]))
        eq((oe['KEDA_HTTP_OPERATOR_EXTERNAL_SCALER_SERVICE'], oe['KEDA_HTTP_OPERATOR_EXTERNAL_SCALER_PORT'],
            oe['KEDA_HTTP_OPERATOR_WATCH_NAMESPACE']), (f'{P}-kedascaler', '9191', 'apps'), 'operator env')

    @check('full values: scheduling, annotations, pull secrets, images, labels, security contexts, PDB')
    def _():
        pod = objs[('Deployment', INTERCEPTOR)]['spec']['template']
        spec = pod['spec']
        eq(spec.get('nodeSelector'), {'kubernetes.io/os': 'linux', 'pool': 'edge'}, 'nodeSelector')
        eq(spec.get('tolerations'), [{'key': 'edge', 'operator': 'Exists', 'effect': 'NoSchedule'}], 'tolerations')
        assert 'podAntiAffinity' in spec.get('affinity', {}), 'affinity'
        eq(len(spec.get('topologySpreadConstraints', [])), 1, 'topologySpreadConstraints')
        eq(spec.get('priorityClassName'), 'edge-critical', 'priorityClassName')
        eq(spec.get('imagePullSecrets'), [{'name': 'regcred'}, {'name': 'other'}], 'imagePullSecrets')
        eq(pod['metadata'].get('annotations'), {'prometheus.io/scrape': 'true'}, 'pod annotations')
        eq(spec.get('terminationGracePeriodSeconds'), 75, 'terminationGracePeriodSeconds')
        eq(spec.get('volumes'), [{'name': 'ca', 'configMap': {'name': 'backend-ca'}}], 'extraVolumes')
        eq(ic().get('volumeMounts'), [{'name': 'ca', 'mountPath': '/etc/backend-ca', 'readOnly': True}],
           'extraVolumeMounts')
        eq(ic()['image'], 'registry.example.com/httpscale/interceptor:1.2.3', 'image')
        eq(ic()['imagePullPolicy'], 'IfNotPresent', 'pull policy')
        eq(ic()['resources'], {'limits': {'cpu': 2, 'memory': '256Mi'}, 'requests': {'cpu': '1', 'memory': '64Mi'}},
           'resources')
        eq(ic()['securityContext']['runAsUser'], 65532, 'per-component securityContext')
        eq(container(objs[('Deployment', SCALER)])['securityContext'].get('runAsUser'), None,
           'shared securityContext for the scaler')
        eq(spec['securityContext'], {'runAsNonRoot': True, 'seccompProfile': {'type': 'RuntimeDefault'}},
           'per-component pod securityContext')
        for key, d in objs.items():
            if key[0] != 'CustomResourceDefinition':
                eq(d['metadata']['labels'].get('team'), 'platform', f'{key} additionalLabels')
        eq(pod['metadata']['labels'].get('team'), 'platform', 'pod additionalLabels')
        pdb = objs[('PodDisruptionBudget', INTERCEPTOR)]['spec']
        eq((pdb.get('minAvailable'), pdb.get('maxUnavailable')), ('50%', None), 'PDB minAvailable')
        eq(objs[('Deployment', SCALER)]['spec']['replicas'], 2, 'scaler replicas')
        eq(objs[('Deployment', OPERATOR)]['spec']['replicas'], 2, 'operator replicas')


def checks_tls(docs):
    """tests/values-tls.yaml: the TLS listener and policy land where upstream puts them."""
    objs = index(docs)

    @check('tls values: listener, policy, skip-verify and CA directories become their env vars')
    def _():
        e = env(container(objs[('Deployment', INTERCEPTOR)]))
        want = {'KEDA_HTTP_PROXY_TLS_ENABLED': 'true', 'KEDA_HTTP_PROXY_TLS_PORT': '9443',
                'KEDA_HTTP_PROXY_TLS_CERT_PATH': '/certs/server.pem',
                'KEDA_HTTP_PROXY_TLS_KEY_PATH': '/certs/server-key.pem',
                'KEDA_HTTP_TLS_MIN_VERSION': '1.3', 'KEDA_HTTP_TLS_MAX_VERSION': 'TLS13',
                'KEDA_HTTP_TLS_CIPHER_SUITES':
                    'TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256',
                'KEDA_HTTP_TLS_CURVE_PREFERENCES': 'X25519,CurveP256', 'KEDA_HTTP_TLS_SKIP_VERIFY': 'true',
                'KEDA_HTTP_TLS_CA_DIRS': '/custom/ca,/other/ca'}
        for k, v in want.items():
            eq(e.get(k), v, f'env {k}')

    @check('tls values: port proxy-tls on the pod and the proxy Service, the Secret mounted whole at /certs')
    def _():
        c = container(objs[('Deployment', INTERCEPTOR)])
        eq(ports(c), {'admin': 9090, 'proxy': 8080, 'proxy-tls': 9443, 'metrics': 2223}, 'container ports')
        proxy = objs[('Service', f'{P}-interceptor-proxy')]
        eq([(p['name'], p['port'], p['targetPort'], p.get('appProtocol')) for p in proxy['spec']['ports']],
           [('proxy', 8080, 'proxy', None), ('proxy-tls', 9443, 'proxy-tls', 'https')], 'proxy Service ports')
        spec = objs[('Deployment', INTERCEPTOR)]['spec']['template']['spec']
        eq(spec.get('volumes'), [{'name': 'certs', 'secret': {'secretName': 'my-certs'}},
                                 {'name': 'ca', 'configMap': {'name': 'backend-ca'}}], 'volumes')
        eq(c.get('volumeMounts'), [{'name': 'certs', 'mountPath': '/certs', 'readOnly': True},
                                   {'name': 'ca', 'mountPath': '/custom/ca', 'readOnly': True}], 'volumeMounts')
        assert all('subPath' not in m for m in c['volumeMounts']), 'a subPath mount would never see updates'


def main():
    mode, paths = sys.argv[1], sys.argv[2:]
    docs = [load(p) for p in paths]
    {'default': checks_default, 'no-operator': checks_no_operator, 'no-crds': checks_no_crds,
     'aggregate': checks_aggregate, 'full': checks_full, 'tls': checks_tls, 'wait-timeout': checks_wait_timeout}[mode](*docs)
    for name, err in results:
        print(f'PASS {name}' if err is None else f'FAIL {name}: {err}')
    return 1 if any(err for _, err in results) else 0


if __name__ == '__main__':
    sys.exit(main())
