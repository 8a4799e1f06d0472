#!/usr/bin/env bash
# Runs every check the project has: formatting, clippy with warnings as errors, every Rust test, and the
# Helm chart's tests.
# Installs the test peers it needs first (scripts/setup-test-peers.sh, and the OpenTelemetry Collector, built with
# Go by scripts/e2e-build.sh --only otelcol: minutes once, cached after). This is the README's test command and
# what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-test-peers.sh
bash scripts/e2e-build.sh --only otelcol >/dev/null
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
# The Helm chart under Helm 3 and 4 (installs Helm and kubernetes-validate into .peers on first use).
bash charts/test.sh
