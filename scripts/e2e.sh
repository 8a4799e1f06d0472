#!/usr/bin/env bash
# The end-to-end suite on a real Kubernetes control plane and the real KEDA (needs root: it makes a network
# namespace). Builds or reuses the Go programs (scripts/e2e-build.sh), builds our binaries, then runs every
# scenario of e2e/scenarios.py inside a fresh network namespace, and removes it again, also on Ctrl-C.
#
#   bash scripts/e2e.sh [--only SCENARIO ...] [--pause]
#   bash scripts/e2e.sh --upstream      # differential conformance against the KEDA HTTP add-on
#   bash scripts/e2e.sh --bench         # side-by-side benchmarks against it (release builds; ~1 h)
#
# Prints one line per scenario and `N passed, M failed` last; writes target/e2e/report.json and the logs of
# every process under target/e2e/run/logs/. With --upstream: the corpus e2e/differential/corpus.yaml goes to
# httpscale and to the KEDA HTTP add-on, each on its own fresh cluster, and target/e2e/differential.json counts
# same / documented / undocumented differences (exit 1 if any is undocumented).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
[[ $(id -u) == 0 ]] || { echo "scripts/e2e.sh needs root (it creates a network namespace)" >&2; exit 1; }

# shellcheck source=../e2e/versions.env
source e2e/versions.env
echo "pinned: Kubernetes $K8S_VERSION, etcd $ETCD_VERSION, kwok $KWOK_VERSION, KEDA $KEDA_VERSION," \
    "KEDA HTTP add-on $HTTP_ADDON_VERSION" >&2
MODE=scenarios
case ${1:-} in --upstream) MODE=differential; shift ;; --bench) MODE=bench; shift ;; esac
CACHE=$(bash scripts/e2e-build.sh $([[ $MODE != scenarios ]] && echo --upstream) | tail -1)
UPSTREAM_DIR=$CACHE/http-add-on-$HTTP_ADDON_VERSION
bash scripts/setup-test-peers.sh >/dev/null
bash charts/tests/install-peers.sh >/dev/null
PROFILE=${HTTPSCALE_E2E_PROFILE:-$([[ $MODE == bench ]] && echo release || echo debug)}
cargo build --locked --bins $([[ $PROFILE == release ]] && echo --release) -p httpscale-interceptor \
    -p httpscale-scaler -p httpscale-operator -p httpscale-loadtest

NS=
cleanup() {
    [[ -z $NS ]] && return
    local pids
    pids=$(ip netns pids "$NS" 2>/dev/null || true)
    [[ -n $pids ]] && kill -9 $pids 2>/dev/null || true
    ip netns del "$NS" 2>/dev/null || true
    rm -rf "/etc/netns/$NS"
    NS=
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# in_namespace CMD...: runs CMD in a fresh network namespace, then removes the namespace.
in_namespace() {
    NS=hs-e2e-$$-$RANDOM
    ip netns add "$NS"
    ip -n "$NS" link set lo up
    # Service IPs, pod IPs and the harness's own processes: all local addresses inside the namespace only.
    for range in 10.96.0.0/16 10.244.0.0/16 10.245.0.0/16; do ip -n "$NS" route add local "$range" dev lo; done
    # `ip netns exec` bind-mounts this file over /etc/hosts: the cluster's DNS (e2e/backends.py keeps it current).
    mkdir -p "/etc/netns/$NS"
    printf '127.0.0.1 localhost\n::1 localhost\n' >"/etc/netns/$NS/hosts"
    local rc=0
    ip netns exec "$NS" "$@" || rc=$?
    cleanup
    return $rc
}

PY=$ROOT/.peers/venv/bin/python
ARGS=(e2e/run.py --go-bins "$CACHE" --rust-bins "target/$PROFILE" --helm "$ROOT/.peers/bin/helm")
case $MODE in
scenarios)
    in_namespace "$PY" "${ARGS[@]}" "$@"
    ;;
differential)
    echo "differential conformance: httpscale vs KEDA HTTP add-on $HTTP_ADDON_VERSION" >&2
    in_namespace "$PY" "${ARGS[@]}" --differential httpscale
    in_namespace "$PY" "${ARGS[@]}" --differential upstream --upstream-dir "$UPSTREAM_DIR"
    "$PY" e2e/differential.py compare target/e2e/differential-httpscale.json target/e2e/differential-upstream.json \
        --out target/e2e/differential.json --upstream-version "$HTTP_ADDON_VERSION"
    ;;
bench)
    echo "side-by-side benchmarks: httpscale vs KEDA HTTP add-on $HTTP_ADDON_VERSION" >&2
    export HTTPSCALE_LOADTEST=$ROOT/target/$PROFILE/loadtest
    in_namespace "$PY" "${ARGS[@]}" --bench data-path --upstream-dir "$UPSTREAM_DIR"
    in_namespace "$PY" "${ARGS[@]}" --bench activation-httpscale
    in_namespace "$PY" "${ARGS[@]}" --bench activation-upstream --upstream-dir "$UPSTREAM_DIR"
    "$PY" e2e/bench.py report "$HTTPSCALE_LOADTEST"
    ;;
esac
