# syntax=docker/dockerfile:1
# One image per httpscale binary, static (musl) and running as non-root on an empty base:
#
#   docker build --build-arg BIN=interceptor -t ghcr.io/httpscale/interceptor:0.1.0 .
#   docker build --build-arg BIN=scaler      -t ghcr.io/httpscale/scaler:0.1.0 .
#   docker build --build-arg BIN=operator    -t ghcr.io/httpscale/operator:0.1.0 .
#
# Keep target/, .peers/ and .git/ out of the build context (a .dockerignore listing them).
# The chart (charts/keda-add-ons-http) runs these images with a read-only root filesystem, all capabilities
# dropped and runAsNonRoot, passing upstream's --zap-* flags as arguments.

ARG RUST_IMAGE=rust:1-alpine

FROM ${RUST_IMAGE} AS build
ARG BIN=interceptor
# musl-dev: the C runtime the Rust musl target links statically; ca-certificates: copied into the final image
# for HTTPS backends (the in-cluster API server is trusted through the service account's CA, not these).
RUN apk add --no-cache musl-dev ca-certificates
WORKDIR /src
COPY . .
# Cache mounts keep the crate registry and build artefacts between builds; the binary is copied out of the
# cached target directory in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin "${BIN}" \
    && install -D -m 0755 "target/release/${BIN}" /out/app

FROM scratch
ARG BIN=interceptor
LABEL org.opencontainers.image.source="https://github.com/httpscale/httpscale" \
      org.opencontainers.image.title="httpscale ${BIN}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/app /app
# 65532 is the conventional "nonroot" uid/gid; numeric so that Kubernetes' runAsNonRoot can verify it.
USER 65532:65532
ENTRYPOINT ["/app"]
