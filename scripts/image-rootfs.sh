#!/usr/bin/env bash
# Assembles the base root filesystem of the container images from Debian packages: what distroless/cc holds
# (glibc, libgcc, CA certificates, time zones) and nothing else: no shell, no package manager, no tools.
#
#   bash scripts/image-rootfs.sh OUT [ARCH]      # ARCH: a Debian architecture, default this machine's
#
# scripts/images.sh runs it on the build machine and the Dockerfile's `rootfs-build` stage in Debian 12, so both
# lay out the same tree. The base's glibc must be the one the binaries were linked against: images.sh takes both
# from the machine it runs on, the Dockerfile and the release workflow both from Debian 12.
# Needs apt-get; a foreign ARCH must have been added with `dpkg --add-architecture ARCH`.
set -euo pipefail
out=$1
arch=${2:-$(dpkg --print-architecture)}
# base-files is only there for /etc/os-release: scanners read it to know whose security advisories apply.
# ca-certificates and tzdata are "Architecture: all", which apt will not find under an architecture suffix.
packages=("libc6:$arch" "libgcc-s1:$arch" ca-certificates tzdata "base-files:$arch")

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
chown _apt "$work" 2>/dev/null || true # apt downloads as the unprivileged _apt user where it exists
# apt-get verifies each package against the signed index; lists may be missing or stale on a fresh machine.
download() { (cd "$work" && apt-get download -q=2 "${packages[@]}"); }
download || { apt-get update -q=2 && download; }

rm -rf "$out"
mkdir -p "$out"/{etc/ssl/certs,usr/share/zoneinfo,usr/lib,var/lib/dpkg/status.d,home/nonroot,tmp}
chmod 1777 "$out/tmp"
for deb in "$work"/*.deb; do
  pkg=$(dpkg-deb -f "$deb" Package)
  dpkg-deb -x "$deb" "$work/$pkg"
  # One control record per package, where distroless keeps them: trivy, grype and syft find the versions here.
  dpkg-deb -f "$deb" >"$out/var/lib/dpkg/status.d/$pkg"
  if [[ -f $work/$pkg/usr/share/doc/$pkg/copyright ]]; then
    install -D -m 0644 "$work/$pkg/usr/share/doc/$pkg/copyright" "$out/usr/share/doc/$pkg/copyright"
  fi
done

# The dynamic loader and the shared libraries as Debian lays them out (/lib/<triplet>, /lib64 on amd64). The
# iconv modules under /usr/lib/<triplet>/gconv stay out: Rust never calls iconv.
cp -a "$work"/libc6/lib* "$work"/libgcc-s1/lib "$out/"
# The bundle update-ca-certificates would write with Debian's default configuration (every Mozilla root).
find "$work/ca-certificates/usr/share/ca-certificates/mozilla" -name '*.crt' | LC_ALL=C sort | xargs cat \
  >"$out/etc/ssl/certs/ca-certificates.crt"
# Time zones, without the leap-second "right/" variants nobody configures.
cp -a "$work/tzdata/usr/share/zoneinfo/." "$out/usr/share/zoneinfo/"
rm -rf "$out/usr/share/zoneinfo/right"
cp -a "$work/base-files/usr/lib/os-release" "$out/usr/lib/os-release"
ln -s ../usr/lib/os-release "$out/etc/os-release"

# 65532 is distroless's "nonroot"; a named entry lets tools map the image's numeric USER to a name.
printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' 'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' \
  >"$out/etc/passwd"
printf '%s\n' 'root:x:0:' 'nonroot:x:65532:' >"$out/etc/group"
# glibc's built-in default would ask DNS before /etc/hosts; files first is what every distribution ships.
printf '%s\n' 'passwd: files' 'group: files' 'hosts: files dns' >"$out/etc/nsswitch.conf"
