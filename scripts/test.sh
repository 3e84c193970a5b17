#!/usr/bin/env bash
# Runs every check and test: formatting, lints, unit and end-to-end tests
# against the AWS emulators it starts itself, and the Lambda packaging
# test and the Terraform checks. Installs what it needs first (Python
# packages into .venv, and for the Terraform checks into .tmp; Debian
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

step "Terraform: every file parses, checkov, the module's IAM statements"
bash tests/terraform/check.sh

step "Lambda packaging"
bash tests/packaging.sh
