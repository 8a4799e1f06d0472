#!/usr/bin/env bash
# Installs what the test suite needs beyond the Rust toolchain: a Python venv with the official Ollama
# and OpenAI clients, grpcio with its health service and reflection client (a gRPC stack that is not tonic, to
# drive the scaler the way KEDA and grpcurl do, and a gRPC backend for the real-cluster suite), h2 (raw HTTP/2
# frames), PyYAML (the real-cluster harness) and kmock (an in-memory Kubernetes API server), and nginx, wrk and
# valgrind from Debian.
# Idempotent; a second run takes about a second.
# Only PyPI is used. Result: .peers/venv/bin/python
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
peers="${PEERS_DIR:-$root/.peers}"
py="${PYTHON:-python3}"
stamp="$peers/.installed-v6"
# nginx and wrk, for the load generator's side-by-side smoke tests (Debian packages; needs root and apt).
if { ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; } || ! command -v wrk >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    { DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx wrk >/dev/null; } \
      || echo "warning: could not install nginx/wrk; the load generator's nginx and wrk legs will be skipped" >&2
  fi
fi
# valgrind, for the instructions scenario's smoke test (callgrind counts instructions per request): Debian package.
if ! command -v valgrind >/dev/null 2>&1 || ! command -v callgrind_control >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    { DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null; } \
      || echo "warning: could not install valgrind; the instructions scenario's smoke test will be skipped" >&2
  fi
fi
# curl and openssl, the TLS tests' clients (interceptor/tests/tls.rs): Debian packages, when missing.
if ! command -v curl >/dev/null 2>&1 || ! command -v openssl >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    { DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl openssl >/dev/null; } \
      || echo "warning: could not install curl/openssl; the TLS tests need them" >&2
  fi
fi
if [ -f "$stamp" ] && [ -x "$peers/venv/bin/python" ]; then
  exit 0
fi
mkdir -p "$peers"
[ -x "$peers/venv/bin/python" ] || "$py" -m venv "$peers/venv"
"$peers/venv/bin/pip" install -q --disable-pip-version-check ollama==0.6.3 openai==3.57.0 grpcio==1.85.1 grpcio-tools==1.85.1 \
  grpcio-health-checking==1.85.1 grpcio-reflection==1.85.1 h2==4.3.0 PyYAML==6.0.3 kmock==0.8
touch "$stamp"
echo "test peers installed in $peers"
