#!/usr/bin/env bash
# Installs what the test suite needs beyond the Rust toolchain: a Python venv with the official Ollama
# client, grpcio (a gRPC stack that is not tonic, to drive the scaler the way KEDA does) and kmock (an
# in-memory Kubernetes API server, for the operator's end-to-end test), and nginx and wrk from Debian.
# Idempotent; a second run takes about a second.
# Only PyPI is used. Result: .peers/venv/bin/python
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
peers="${PEERS_DIR:-$root/.peers}"
py="${PYTHON:-python3}"
stamp="$peers/.installed-v3"
# nginx and wrk, for the load generator's side-by-side smoke tests (Debian packages; needs root and apt).
if { ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; } || ! command -v wrk >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    { DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx wrk >/dev/null; } \
      || echo "warning: could not install nginx/wrk; the load generator's nginx and wrk legs will be skipped" >&2
  fi
fi
if [ -f "$stamp" ] && [ -x "$peers/venv/bin/python" ]; then
  exit 0
fi
mkdir -p "$peers"
[ -x "$peers/venv/bin/python" ] || "$py" -m venv "$peers/venv"
"$peers/venv/bin/pip" install -q --disable-pip-version-check ollama==0.6.3 grpcio==1.85.1 grpcio-tools==1.85.1 kmock==0.8
touch "$stamp"
echo "test peers installed in $peers"
