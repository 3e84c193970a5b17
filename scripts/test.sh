#!/usr/bin/env bash
# Runs every check and test: formatting, lints, unit and end-to-end tests
# against the AWS emulators it starts itself, and the Lambda packaging
# test. Installs what it needs first (Python packages into .venv, Debian
# packages with apt-get, and Debian's Prometheus server, which the tests
# start on loopback themselves), so it works on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_tools
ensure_prometheus
ensure_venv
start_emulator
start_moto

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --all-targets --locked -- -D warnings

step "cargo test"
DQC_TEST_CLOUDWATCH_ENDPOINT="$EMULATOR_URL" DQC_TEST_MOTO_ENDPOINT="$MOTO_URL" \
  DQC_TEST_PROMETHEUS="$PROMETHEUS_BIN" cargo test --locked

step "Lambda packaging"
bash tests/packaging.sh
