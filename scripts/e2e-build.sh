#!/usr/bin/env bash
# Builds the Go programs of the real-cluster end-to-end suite from their published Go modules, or reuses them.
#
#   bash scripts/e2e-build.sh [--upstream]     # prints the cache directory holding bin/ on its last line
#   bash scripts/e2e-build.sh --only otelcol   # only the OpenTelemetry Collector (the Rust tests' peer)
#
# Versions come from e2e/versions.env. Each program is built once per version into
# $HTTPSCALE_E2E_CACHE (default ~/.cache/httpscale-e2e)/<name>-<version>/, outside the work tree, with the
# ordinary `go` client through a small wrapper module generated there. A finished build leaves a `.done` stamp,
# so a second run only checks the stamps. Nothing here is ever committed.
#
# --upstream also builds the KEDA HTTP add-on (interceptor, scaler, operator) for the side-by-side run.
# The OpenTelemetry Collector is built first: the Rust tests (scripts/test.sh) need it, and nothing else here.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=../e2e/versions.env
source "$ROOT/e2e/versions.env"
CACHE=${HTTPSCALE_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/httpscale-e2e}
UPSTREAM=false ONLY=
case ${1:-} in --upstream) UPSTREAM=true ;; --only) ONLY=${2:?--only needs a program name (otelcol)} ;; esac

export CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=${GOTOOLCHAIN:-local}
LDFLAGS="-s -w"
START=$SECONDS
# Go's build and module caches for this run only, removed when it ends: only the binaries are kept. A cold
# build otherwise leaves ~11 GiB of them behind (7.5 GiB compiled packages, 3.7 GiB module sources), on a disk
# that CI shares with the Rust build.
SCRATCH=$CACHE/scratch-$$
export GOCACHE=$SCRATCH/build GOMODCACHE=$SCRATCH/mod
cleanup() {
    kill $(jobs -p) 2>/dev/null || true  # the progress ticker, also on Ctrl-C
    if [[ -d $SCRATCH ]]; then chmod -R u+w "$SCRATCH" 2>/dev/null; rm -rf "$SCRATCH"; fi
}
trap cleanup EXIT

log() { printf '[e2e-build %4ss] %s\n' $((SECONDS - START)) "$*" >&2; }

command -v go >/dev/null || { log "go is not installed: the real-cluster suite builds its programs with Go 1.26"; exit 1; }

# gomod_of MODULE@VERSION: the path of that release's go.mod in the module cache.
gomod_of() { go mod download -json "$1" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p'; }

# replaces_of GOMOD: each replace directive of a go.mod as `old[@v]=new@v`, for `go mod edit -replace`.
replaces_of() {
    awk '/^replace \(/ { inblock = 1; next } inblock && /^\)/ { inblock = 0; next }
        /^replace [^(]/ { sub(/^replace /, ""); print; next } inblock && /=>/ { print }' "$1" |
        awk '{ if ($2 == "=>") print $1 "=" $3 "@" $4; else print $1 "@" $2 "=" $4 "@" $5 }'
}

# wrapper NAME: a fresh wrapper module directory for NAME; prints its path.
wrapper() {
    local dir=$CACHE/src/$1
    rm -rf "$dir" && mkdir -p "$dir"
    (cd "$dir" && go mod init "httpscale.local/$1" >/dev/null 2>&1)
    echo "$dir"
}

# build NAME VERSION FUNCTION: runs FUNCTION OUT_DIR unless NAME-VERSION is already stamped done.
build() {
    local name=$1 version=$2 fn=$3 out=$CACHE/$1-$2
    if [[ -f $out/.done ]]; then log "$name $version: cached in $out"; return; fi
    log "$name $version: building (cold builds take minutes on 2 cores)"
    rm -rf "$out" && mkdir -p "$out/bin"
    local t=$SECONDS blog=$CACHE/logs/$name-$version.log ticker
    mkdir -p "$CACHE/logs"
    # Progress once a minute while the compiler works; the go tool's own output goes to the build log.
    (while sleep 60; do log "$name $version: still building ($((SECONDS - t)) s)"; done) &
    ticker=$!
    # In the background so that errexit applies inside the build function (it is off in an `if` condition).
    "$fn" "$out" >"$blog" 2>&1 &
    if ! wait $!; then
        kill "$ticker" 2>/dev/null
        tail -n 30 "$blog" >&2
        log "$name $version: build FAILED (full log: $blog)"
        exit 1
    fi
    kill "$ticker" 2>/dev/null
    touch "$out/.done"
    log "$name $version: built in $((SECONDS - t)) s"
}

build_etcd() {
    local dir; dir=$(wrapper "etcd-$ETCD_VERSION")
    cd "$dir"
    # The server module's own go.mod has replace directives, so `go install` refuses it; a wrapper's
    # requirement on it works (its replaces are ignored and MVS lines up api/client/pkg at the release).
    go get "go.etcd.io/etcd/server/v3@v$ETCD_VERSION"
    go build -trimpath -p 2 -ldflags "$LDFLAGS" -o "$1/bin/etcd" go.etcd.io/etcd/server/v3
}

build_k8s() {
    local dir; dir=$(wrapper "k8s-$K8S_VERSION")
    cd "$dir"
    local minor=${K8S_VERSION#1.}; minor=${minor%%.*}
    go mod edit -require="k8s.io/kubernetes@v$K8S_VERSION"
    # k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them with ./staging paths; pin each
    # to its published v0.<minor>.<patch> instead, read from the release's own go.mod.
    local gomod m
    gomod=$(gomod_of "k8s.io/kubernetes@v$K8S_VERSION")
    for m in $(sed -n 's|^[[:space:]]*\(k8s.io/[^ ]*\) => ./staging/src/.*|\1|p' "$gomod"); do
        go mod edit -replace="$m=$m@v0.${K8S_VERSION#1.}"
    done
    local cmds=(k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager
        k8s.io/kubernetes/cmd/kube-scheduler)
    go get "${cmds[@]/%/@v$K8S_VERSION}"
    local v=k8s.io/component-base/version
    go build -trimpath -p 2 -o "$1/bin/" -ldflags "$LDFLAGS -X $v.gitVersion=v$K8S_VERSION -X $v.gitMajor=1 \
        -X $v.gitMinor=$minor -X $v.gitTreeState=clean" "${cmds[@]}"
}

build_kwok() {
    local dir; dir=$(wrapper "kwok-$KWOK_VERSION")
    cd "$dir"
    go get "sigs.k8s.io/kwok@v$KWOK_VERSION"
    go build -trimpath -p 2 -o "$1/bin/kwok" \
        -ldflags "$LDFLAGS -X sigs.k8s.io/kwok/pkg/consts.Version=v$KWOK_VERSION" sigs.k8s.io/kwok/cmd/kwok
}

build_keda() {
    local dir; dir=$(wrapper "keda-$KEDA_VERSION")
    cd "$dir"
    local mod=github.com/kedacore/keda/v2
    go mod edit -require="$mod@v$KEDA_VERSION"
    # KEDA's go.mod pins versions with replace directives, which only a main module applies: copy them
    # (every line is "module [version] => module version") before anything is resolved.
    local gomod r
    gomod=$(gomod_of "$mod@v$KEDA_VERSION")
    for r in $(replaces_of "$gomod"); do go mod edit -replace="$r"; done
    go get "$mod/cmd/operator@v$KEDA_VERSION"
    go build -trimpath -p 2 -o "$1/bin/keda" \
        -ldflags "$LDFLAGS -X $mod/version.Version=$KEDA_VERSION -X $mod/version.GitCommit=v$KEDA_VERSION" \
        "$mod/cmd/operator"
    # KEDA's own CRDs come from the same module.
    cp -r "$(go list -m -f '{{.Dir}}' "$mod")/config/crd/bases" "$1/crds"
}

build_http_addon() {
    local dir; dir=$(wrapper "http-add-on-$HTTP_ADDON_VERSION")
    cd "$dir"
    local mod=github.com/kedacore/http-add-on
    go get "$mod@v$HTTP_ADDON_VERSION"
    go build -trimpath -p 2 -o "$1/bin/" -ldflags "$LDFLAGS" "$mod/interceptor" "$mod/scaler" "$mod/operator"
    cp -r "$(go list -m -f '{{.Dir}}' "$mod")/config/crd/bases" "$1/crds"
}

build_otelcol() {
    local dir; dir=$(wrapper "otelcol-$OTELCOL_VERSION")
    cd "$dir"
    # The core distribution's module cannot be `go install`ed; the Collector Builder assembles one from
    # components. The stable modules trail the others by 94 minor versions (0.161.0 goes with 1.67.0).
    local core=go.opentelemetry.io/collector minor=${OTELCOL_VERSION#0.}
    local stable=v1.$((${minor%%.*} - 94)).0
    GOBIN=$dir/tools go install "$core/cmd/builder@v$OTELCOL_VERSION"
    cat >builder.yaml <<MANIFEST
dist:
  name: otelcol
  description: OpenTelemetry Collector for httpscale's tests (otlp receiver; file and debug exporters)
  output_path: $dir/dist
  version: $OTELCOL_VERSION
receivers:
  - gomod: $core/receiver/otlpreceiver v$OTELCOL_VERSION
exporters:
  - gomod: $core/exporter/debugexporter v$OTELCOL_VERSION
  - gomod: github.com/open-telemetry/opentelemetry-collector-contrib/exporter/fileexporter v$OTELCOL_VERSION
providers:
  - gomod: $core/confmap/provider/envprovider $stable
  - gomod: $core/confmap/provider/fileprovider $stable
  - gomod: $core/confmap/provider/yamlprovider $stable
MANIFEST
    "$dir/tools/builder" --config builder.yaml --skip-compilation
    cd dist
    go build -trimpath -p 2 -ldflags "$LDFLAGS" -o "$1/bin/otelcol" .
}

mkdir -p "$CACHE"
log "go $(go env GOVERSION); cache $CACHE"
build otelcol "$OTELCOL_VERSION" build_otelcol
if [[ -n $ONLY ]]; then
    [[ $ONLY == otelcol ]] || { log "--only knows otelcol, not $ONLY"; exit 1; }
    echo "$CACHE"
    exit 0
fi
build etcd "$ETCD_VERSION" build_etcd
build kwok "$KWOK_VERSION" build_kwok
build k8s "$K8S_VERSION" build_k8s
build keda "$KEDA_VERSION" build_keda
$UPSTREAM && build http-add-on "$HTTP_ADDON_VERSION" build_http_addon
log "all built"
echo "$CACHE"
