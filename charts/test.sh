#!/usr/bin/env bash
# Tests of the Helm chart charts/keda-add-ons-http, run under Helm 3 (v3.18.0) and Helm 4 (v4.3.1):
#   1. `helm lint --strict` with the tutorial's flags;
#   2. `helm template` with the tutorial's exact flags, checked by tests/check_render.py against the upstream
#      chart's contract (object kinds and names, ports, env wiring, labels, RBAC, CRDs), also under another
#      release name, and with other values (operator off, CRDs off, aggregate roles, most knobs changed);
#   3. every built-in object passes `kubernetes-validate --strict` (Kubernetes 1.37 and 1.27);
#   4. the rendered ScaledObject, the tutorial's HTTPScaledObject and upstream's documented examples validate
#      against the chart's CRDs (tests/validate_crs.py --strict, CEL rules included), and known-bad ones do not;
#   5. unknown values and values httpscale does not support make `helm template` fail with a readable message.
# Installs what it needs into <repo>/.peers (tests/install-peers.sh; PyPI only). Ends with "N passed, M failed".
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
peers="${PEERS_DIR:-$root/.peers}"
PEERS_DIR="$peers" bash charts/tests/install-peers.sh

PY="$peers/venv/bin/python"
KV="$peers/venv/bin/kubernetes-validate"
CHART=charts/keda-add-ons-http
T=charts/tests
TUTORIAL=(--namespace keda --set interceptor.responseHeaderTimeout=120s)
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "ok   $*"; }
fail() { failed=$((failed + 1)); echo "FAIL $*"; }
indent() { sed 's/^/       /' | tail -n "${1:-25}"; }

# check NAME CMD...: passes when CMD exits 0; shows CMD's output when it does not.
check() {
  local name="$1" out
  shift
  if out="$("$@" 2>&1)"; then pass "$name"; else fail "$name"; printf '%s\n' "$out" | indent; fi
}

# checker PREFIX CMD...: runs a script printing "PASS <check>" / "FAIL <check>: <why>" lines; counts each line.
checker() {
  local prefix="$1" out rc=0 n=0 line
  shift
  out="$("$@" 2>&1)" || rc=$?
  while IFS= read -r line; do
    case "$line" in
      "PASS "*) pass "$prefix: ${line#PASS }"; n=$((n + 1)) ;;
      "FAIL "*) fail "$prefix: ${line#FAIL }"; n=$((n + 1)) ;;
    esac
  done <<<"$out"
  if [ "$n" -eq 0 ] || { [ "$rc" -ne 0 ] && ! grep -q '^FAIL ' <<<"$out"; }; then
    fail "$prefix: checker did not run (exit $rc)"
    printf '%s\n' "$out" | indent
  fi
}

# render FILE HELM ARGS...: `helm template` into FILE; counts as a check (a render that fails is a failure).
render() {
  local file="$1" helm="$2"
  shift 2
  if "$helm" template "$@" >"$file" 2>"$file.err"; then
    pass "$label: helm template $*"
  else
    fail "$label: helm template $*"
    indent <"$file.err"
    : >"$file"
  fi
}

# rejects NAME REGEX ARGS...: `helm template ARGS` must fail, with an error message matching REGEX (grep -E),
# and must not have produced a Go panic.
rejects() {
  local name="$1" regex="$2" out
  shift 2
  if out="$("$H" template http-add-on "$CHART" "${TUTORIAL[@]}" "$@" 2>&1)"; then
    fail "$label: $name: helm template $* succeeded; it must fail"
  elif grep -Eq -- "$regex" <<<"$out" && ! grep -q 'panic' <<<"$out"; then
    pass "$label: $name"
    echo "       -> $(grep -E -- "$regex" <<<"$out" | head -1 | cut -c1-200)"
  else
    fail "$label: $name: the error does not say /$regex/"
    printf '%s\n' "$out" | indent 10
  fi
}

for H in "$peers/bin/helm3" "$peers/bin/helm"; do
  label="helm $("$H" version --short | cut -d+ -f1)"
  r="$tmp/$(basename "$H")"

  # 1. lint
  check "$label: helm lint --strict $CHART ${TUTORIAL[*]}" "$H" lint --strict "$CHART" "${TUTORIAL[@]}"

  # 2. the tutorial's render and its contract
  render "$r-default.yaml" "$H" http-add-on "$CHART" --create-namespace "${TUTORIAL[@]}"
  render "$r-other.yaml" "$H" other-name "$CHART" --create-namespace "${TUTORIAL[@]}"
  checker "$label: tutorial render" "$PY" "$T/check_render.py" default "$r-default.yaml" "$r-other.yaml"

  render "$r-no-operator.yaml" "$H" http-add-on "$CHART" "${TUTORIAL[@]}" --set operator.replicas=0
  checker "$label" "$PY" "$T/check_render.py" no-operator "$r-no-operator.yaml"
  render "$r-no-crds.yaml" "$H" http-add-on "$CHART" "${TUTORIAL[@]}" --set crds.install=false
  checker "$label" "$PY" "$T/check_render.py" no-crds "$r-no-crds.yaml"
  render "$r-aggregate.yaml" "$H" http-add-on "$CHART" "${TUTORIAL[@]}" --set rbac.aggregateToDefaultRoles=true
  checker "$label" "$PY" "$T/check_render.py" aggregate "$r-aggregate.yaml"
  render "$r-wait.yaml" "$H" http-add-on "$CHART" "${TUTORIAL[@]}" --set interceptor.replicas.waitTimeout=20s
  checker "$label" "$PY" "$T/check_render.py" wait-timeout "$r-wait.yaml"
  render "$r-full.yaml" "$H" http-add-on "$CHART" --namespace keda -f "$T/values-full.yaml"
  checker "$label" "$PY" "$T/check_render.py" full "$r-full.yaml"
  render "$r-tls.yaml" "$H" http-add-on "$CHART" --namespace keda -f "$T/values-tls.yaml"
  checker "$label" "$PY" "$T/check_render.py" tls "$r-tls.yaml"

  # 3. built-in objects against the Kubernetes API schemas (custom resources are skipped by kubernetes-validate)
  check "$label: kubernetes-validate --strict (1.37): tutorial render" "$KV" --strict --quiet "$r-default.yaml"
  check "$label: kubernetes-validate --strict (1.27): tutorial render" "$KV" -k 1.27 --strict --quiet "$r-default.yaml"
  check "$label: kubernetes-validate --strict: full values render" "$KV" --strict --quiet "$r-full.yaml"
  check "$label: kubernetes-validate --strict: tls values render" "$KV" --strict --quiet "$r-tls.yaml"
  check "$label: kubernetes-validate --strict: aggregate roles render" "$KV" --strict --quiet "$r-aggregate.yaml"

  # 4. custom resources against the CRDs the chart renders
  check "$label: rendered ScaledObject and the tutorial HTTPScaledObject valid against the rendered CRDs" \
    "$PY" "$T/validate_crs.py" --strict --expect 2 --crds "$T/fixtures/keda-scaledobject-crd.yaml" \
    "$r-default.yaml" "$T/fixtures/tutorial-httpscaledobject.yaml"
  check "$label: upstream's documented HTTPScaledObject/InterceptorRoute examples valid against the rendered CRDs" \
    "$PY" "$T/validate_crs.py" --strict --expect 3 --crds "$T/fixtures/keda-scaledobject-crd.yaml" \
    --crds "$r-default.yaml" "$T/fixtures/custom-resources.yaml"
  check "$label: httpscale's extensions (rules[].models, coldStart.streamKeepAlive) valid against the rendered CRDs" \
    "$PY" "$T/validate_crs.py" --strict --expect 1 --crds "$r-default.yaml" "$T/fixtures/extensions.yaml"
  check "$label: full values render's ScaledObject valid against KEDA's ScaledObject schema" \
    "$PY" "$T/validate_crs.py" --strict --expect 1 --crds "$T/fixtures/keda-scaledobject-crd.yaml" "$r-full.yaml"

  # 5. unknown and unsupported values fail the render with a message
  rejects "unknown value interceptor.responseHeaderTimout rejected by the schema" 'responseHeaderTimout' \
    --set interceptor.responseHeaderTimout=1s
  rejects "interceptor.tls.caDirs of the wrong type is rejected by the schema" 'caDirs.*(Invalid type|got object)' \
    --set interceptor.tls.caDirs.x=1
  rejects "profiling.interceptor.enabled=true is refused" 'profiling\.interceptor\.enabled=true: .*not supported' \
    --set profiling.interceptor.enabled=true
  rejects "an unknown trace protocol is rejected by the schema" 'protocol' --set scaler.tracing.protocol=zipkin
  rejects "drainTimeout not below terminationGracePeriodSeconds is refused" \
    'terminationGracePeriodSeconds \(45\) must be above' --set interceptor.drainTimeout=45s
  rejects "a timeout that is not a Go duration is refused" 'responseHeaderTimeout: "2 minutes" is not a duration' \
    --set 'interceptor.responseHeaderTimeout=2 minutes'
  rejects "a misspelt nested value is rejected by the schema" 'pollingIntervall' \
    --set interceptor.scaledObject.pollingIntervall=5
done

# Once: the validators themselves catch what they claim to (otherwise steps 3 and 4 could pass vacuously).
r="$tmp/helm"
sed 's/containerPort: 9090/containerPrt: 9090/' "$r-default.yaml" >"$tmp/broken.yaml"
if out="$("$KV" --strict --quiet "$tmp/broken.yaml" 2>&1)"; then
  fail "kubernetes-validate rejects a render with a misspelt field (it accepted it)"
else
  pass "kubernetes-validate rejects a render with a misspelt field"
fi
out="$("$PY" "$T/validate_crs.py" --strict --crds "$T/fixtures/keda-scaledobject-crd.yaml" --crds "$r-default.yaml" \
  "$T/fixtures/invalid-custom-resources.yaml" 2>&1)" && rc=0 || rc=$?
missed=""
for name in $(sed -n 's/^metadata: {name: \([^,}]*\).*/\1/p' "$T/fixtures/invalid-custom-resources.yaml"); do
  grep -q "^ERROR [A-Za-z]*/$name: " <<<"$out" || missed="$missed $name"
done
if [ "$rc" -ne 0 ] && [ -z "$missed" ]; then
  pass "validate_crs.py reports every known-bad custom resource (schema and CEL)"
else
  fail "validate_crs.py reports every known-bad custom resource (not reported:${missed:- none}, exit $rc)"
  printf '%s\n' "$out" | indent
fi

echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
