# syntax=docker/dockerfile:1
# The three httpscale images, one target each:
#
#   docker build --target interceptor -t ghcr.io/httpscale/interceptor:0.1.0 .
#   docker build --target scaler      -t ghcr.io/httpscale/scaler:0.1.0 .
#   docker build --target operator    -t ghcr.io/httpscale/operator:0.1.0 .
#
# Layout of every image: the binary at /usr/local/bin/<name> as the ENTRYPOINT, its SBOM (CycloneDX JSON of the
# Rust crates) at /usr/share/doc/httpscale/sbom.cdx.json, user 65532:65532, and a base of Debian 12's glibc,
# libgcc, CA certificates and time zones (scripts/image-rootfs.sh): no shell. The chart runs them with a read-only
# root filesystem and all capabilities dropped.
#
# scripts/images.sh builds the same targets with podman where no base image can be pulled: it passes the
# `binaries` and `rootfs` stages in as directories (--build-context), so only the last four stages run, here and
# there alike. The release workflow does the same with binaries it built natively for amd64 and arm64.

# Labels; scripts/images.sh and the release workflow pass the real values.
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=1970-01-01T00:00:00Z

# Release binaries and their SBOMs, linked against Debian 12's glibc like the base below (python3 for
# scripts/sbom.py is in the image already). `install -s` drops the symbol table, as scripts/images.sh and the
# release workflow do; cargo's own release binaries keep it, for profilers and backtraces.
FROM rust:1.95-bookworm AS compile
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bins -p httpscale-interceptor -p httpscale-scaler -p httpscale-operator \
    && for bin in interceptor scaler operator; do \
         install -D -s -m 0755 "target/release/$bin" "/out/$bin" \
         && python3 scripts/sbom.py "$bin" >"/out/$bin.cdx.json"; \
       done

# What the images copy the binaries from: /<arch>/<binary> and /<arch>/<binary>.cdx.json.
FROM scratch AS binaries
ARG TARGETARCH
COPY --from=compile /out/ /${TARGETARCH}/

# The base, assembled from Debian packages downloaded for the target architecture (no emulation needed).
FROM --platform=$BUILDPLATFORM debian:bookworm-slim AS rootfs-build
ARG TARGETARCH
COPY scripts/image-rootfs.sh /usr/local/bin/
RUN dpkg --add-architecture "${TARGETARCH}" && apt-get update -q \
    && bash /usr/local/bin/image-rootfs.sh /rootfs "${TARGETARCH}"

FROM scratch AS rootfs
COPY --from=rootfs-build /rootfs/ /

FROM scratch AS base
ARG VERSION
ARG REVISION
ARG CREATED
# The whole base is the point of this copy, it is no accident.
# hadolint ignore=DL3067
COPY --from=rootfs / /
LABEL org.opencontainers.image.source="https://github.com/httpscale/httpscale" \
      org.opencontainers.image.url="https://github.com/httpscale/httpscale" \
      org.opencontainers.image.vendor="httpscale" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"
# Numeric, so that Kubernetes' runAsNonRoot can verify it; /etc/passwd names it "nonroot".
USER 65532:65532

FROM base AS interceptor
ARG TARGETARCH
COPY --from=binaries /${TARGETARCH}/interceptor /usr/local/bin/interceptor
COPY --from=binaries /${TARGETARCH}/interceptor.cdx.json /usr/share/doc/httpscale/sbom.cdx.json
LABEL org.opencontainers.image.title="httpscale interceptor" \
      org.opencontainers.image.description="HTTP proxy that holds requests while a workload scales from zero"
ENTRYPOINT ["/usr/local/bin/interceptor"]

FROM base AS scaler
ARG TARGETARCH
COPY --from=binaries /${TARGETARCH}/scaler /usr/local/bin/scaler
COPY --from=binaries /${TARGETARCH}/scaler.cdx.json /usr/share/doc/httpscale/sbom.cdx.json
LABEL org.opencontainers.image.title="httpscale scaler" \
      org.opencontainers.image.description="KEDA external scaler fed by the interceptors' request counts"
ENTRYPOINT ["/usr/local/bin/scaler"]

FROM base AS operator
ARG TARGETARCH
COPY --from=binaries /${TARGETARCH}/operator /usr/local/bin/operator
COPY --from=binaries /${TARGETARCH}/operator.cdx.json /usr/share/doc/httpscale/sbom.cdx.json
LABEL org.opencontainers.image.title="httpscale operator" \
      org.opencontainers.image.description="Turns HTTPScaledObjects into KEDA ScaledObjects"
ENTRYPOINT ["/usr/local/bin/operator"]
