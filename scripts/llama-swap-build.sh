#!/usr/bin/env bash
# Builds llama-swap from its Go module for the side-by-side comparison (scripts/llama-swap-compare.py), or reuses
# the build; prints the binary's path on its last line.
#
#   bash scripts/llama-swap-build.sh
#
# Its release tags (v123…) are not semver, so the module proxy could serve only its early semver tags and pseudo-
# versions; LLAMA_SWAP_VERSION pins one. Default v0.1.5 (December 2024), the only one this machine's proxy serves:
# on 2026-11-30 it answered `403 This module version is not available` to the version list, to @latest, to @main,
# to a commit hash and to v0.1.4 (docs/benchmarks.md, "Against llama-swap"). Built once per
# version into $HTTPSCALE_E2E_CACHE (default ~/.cache/httpscale-e2e)/llama-swap-<version>/, outside the work
# tree, with `nice`; a `.done` stamp marks a finished build. Later versions embed a web UI folder that is not in
# the module: an empty placeholder (proxy/ui_dist) is created in a copy of the source when it is missing.
set -euo pipefail
VERSION=${LLAMA_SWAP_VERSION:-v0.1.5}
CACHE=${HTTPSCALE_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/httpscale-e2e}
OUT=$CACHE/llama-swap-$VERSION
export CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=${GOTOOLCHAIN:-local}
if [[ ! -f $OUT/.done ]]; then
    command -v go >/dev/null || { echo "go is not installed" >&2; exit 1; }
    SRC=$CACHE/src/llama-swap-$VERSION
    rm -rf "$OUT" "$SRC" && mkdir -p "$OUT/bin" "$CACHE/src"
    dir=$(go mod download -json "github.com/mostlygeek/llama-swap@$VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
    cp -r "$dir" "$SRC" && chmod -R u+w "$SRC"
    if grep -rqs 'go:embed ui_dist' "$SRC/proxy" && [[ ! -d $SRC/proxy/ui_dist ]]; then
        mkdir -p "$SRC/proxy/ui_dist" && touch "$SRC/proxy/ui_dist/placeholder.txt"
    fi
    (cd "$SRC" && nice -n 19 go build -p 1 -ldflags "-s -w" -o "$OUT/bin/llama-swap" .) >&2
    touch "$OUT/.done"
fi
echo "$OUT/bin/llama-swap"
