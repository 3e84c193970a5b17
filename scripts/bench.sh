#!/usr/bin/env bash
# The benchmark of the 5,000-stage fixture, with the CloudWatch emulator.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_tools
ensure_venv
start_emulator
step "cargo bench"
DQC_TEST_CLOUDWATCH_ENDPOINT="$EMULATOR_URL" cargo bench --locked --bench queue
