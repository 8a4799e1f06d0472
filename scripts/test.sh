#!/usr/bin/env bash
# Runs every check the project has: formatting, clippy with warnings as errors, and every test.
# Installs the test peers it needs first (scripts/setup-test-peers.sh). This is the README's test command
# and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-test-peers.sh
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
