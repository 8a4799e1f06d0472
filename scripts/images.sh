#!/usr/bin/env bash
# Builds the container images ghcr.io/httpscale/{interceptor,scaler,operator}:<workspace version> into podman's
# default (root) store, from this machine's release binaries, with the Dockerfile's image targets. Nothing is
# pulled: the base is assembled from Debian packages (scripts/image-rootfs.sh) and handed to the Dockerfile with
# the binaries as build contexts. Installs podman and buildah (Debian packages) when they are missing.
#
#   bash scripts/images.sh            # then: bash scripts/images-test.sh
#
# Beside the images it leaves target/images/<binary>-<version>.cdx.json, the SBOM each image carries at
# /usr/share/doc/httpscale/sbom.cdx.json. Labels: the version from Cargo.toml, the revision from git, the creation
# time from SOURCE_DATE_EPOCH (default: the last commit's time), which also stamps every file, so rebuilding a
# commit gives the same image IDs.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
binaries=(interceptor scaler operator)

if ! command -v podman >/dev/null; then
  # runc as the runtime (the tests select it); buildah's tools are handy for inspecting what was built.
  DEBIAN_FRONTEND=noninteractive apt-get update -q=2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q=2 --no-install-recommends podman buildah runc >/dev/null
fi

version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)
revision=$(git rev-parse HEAD)
# Not exported: the cc crate's build scripts (ring, psm) watch SOURCE_DATE_EPOCH, and a value cargo has not seen
# before would rebuild most of the dependency graph.
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}
created=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)
arch=$(dpkg --print-architecture) # Debian's names for amd64 and arm64 are also the OCI ones (TARGETARCH)

cargo build --release --locked --bins "${binaries[@]/#/-phttpscale-}"

# The Dockerfile's `binaries` stage as a directory: /<arch>/<binary> and /<arch>/<binary>.cdx.json.
out=target/images
rm -rf "$out/binaries" "$out/context"
mkdir -p "$out/binaries/$arch" "$out/context"
for bin in "${binaries[@]}"; do
  install -s -m 0755 "target/release/$bin" "$out/binaries/$arch/$bin" # -s: without the symbol table (about 4 MB)
  SOURCE_DATE_EPOCH=$epoch python3 scripts/sbom.py "$bin" >"$out/binaries/$arch/$bin.cdx.json"
  cp "$out/binaries/$arch/$bin.cdx.json" "$out/$bin-$version.cdx.json"
done
bash scripts/image-rootfs.sh "$out/rootfs" "$arch"

for bin in "${binaries[@]}"; do
  tag=ghcr.io/httpscale/$bin:$version
  old=$(podman image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)
  # The main context stays empty: the image stages copy only from the two named contexts, so nothing is pulled
  # (--pull=never makes sure). No --layers: the intermediate images it keeps would only fill the store.
  podman build --quiet --pull=never --layers=false --platform "linux/$arch" --file Dockerfile --target "$bin" \
    --tag "$tag" --build-context binaries="$out/binaries" --build-context rootfs="$out/rootfs" \
    --build-arg VERSION="$version" --build-arg REVISION="$revision" --build-arg CREATED="$created" \
    --timestamp "$epoch" "$out/context" >/dev/null
  # The image this tag named before is now unnamed: remove it, unless a container still uses it.
  if [[ -n $old && $old != "$(podman image inspect --format '{{.Id}}' "$tag")" ]]; then
    podman rmi "$old" >/dev/null 2>&1 || true
  fi
done
podman images --filter "reference=ghcr.io/httpscale/*:$version"
