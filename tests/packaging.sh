#!/usr/bin/env bash
# The Lambda packaging test: runs build/lambda.sh for the host's arch, checks
# the zip it writes, and checks that build/check-bootstrap.sh rejects what it
# must, for the reason it must. Prints `ok - NAME` / `not ok - NAME` per check
# and closes with `N passed, M failed`; exits 1 if any check failed.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$root"
BIN=drone-queue-cloudwatch
check=$root/build/check-bootstrap.sh

case "$(uname -m)" in
  aarch64 | arm64) arch=arm64 other=x86_64 ;;
  *) arch=x86_64 other=arm64 ;;
esac

tmp=$(mktemp -d "${TMPDIR:-/tmp}/packaging.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

passed=0 failed=0
# ok NAME COMMAND...: runs COMMAND, whose output goes to $tmp/out.
ok() {
  local name=$1
  shift
  if "$@" >"$tmp/out" 2>&1; then
    echo "ok - $name"
    passed=$((passed + 1))
  else
    echo "not ok - $name"
    sed 's/^/#   /' "$tmp/out"
    failed=$((failed + 1))
  fi
}

# rejects WHY_REGEX CHECK_ARGS...: check-bootstrap.sh must exit 1 (a check
# failed, not a usage error or a crash) and say why on stderr.
rejects() {
  local why=$1 rc=0
  shift
  "$check" "$@" >"$tmp/stdout" 2>"$tmp/stderr" || rc=$?
  cat "$tmp/stderr"
  if [ "$rc" -ne 1 ]; then
    echo "expected exit status 1, got $rc"
    return 1
  fi
  grep -Eq -- "$why" "$tmp/stderr" || { echo "stderr does not match /$why/"; return 1; }
  [ ! -s "$tmp/stdout" ] || { echo "printed on stdout:"; cat "$tmp/stdout"; return 1; }
}

target_dir=$(cargo metadata --no-deps --format-version 1 --offline |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
zip=$target_dir/lambda/$BIN-$arch.zip
built=$target_dir/release/$BIN

# The build's own output is long: keep it out of the TAP-like lines unless it fails.
ok "build/lambda.sh --arch $arch builds the zip" build/lambda.sh --arch "$arch"
ok "the zip exists: ${zip#"$root"/}" test -s "$zip"

# One line per entry: name, creator system (3 = Unix), Unix mode in octal.
zip_entries() {
  python3 - "$zip" <<'EOF'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as zf:
    bad = zf.testzip()
    if bad:
        sys.exit(f"bad CRC for {bad}")
    for i in zf.infolist():
        print(i.filename, i.create_system, oct(i.external_attr >> 16))
EOF
}
only_bootstrap() {
  local entries
  entries=$(zip_entries)
  echo "$entries"
  [ "$(cut -d' ' -f1 <<<"$entries")" = bootstrap ]
}
mode_0755() {
  local entries
  entries=$(zip_entries)
  echo "$entries"
  [ "$entries" = "bootstrap 3 0o100755" ]
}
ok "its only entry is bootstrap at the root" only_bootstrap
ok "the entry is a Unix regular file with mode 0755" mode_0755

# Unzip with unzip(1) where it is installed: an independent reader of the
# mode bits. Elsewhere, Python (which does not restore modes) sets the mode
# the entry records.
unpack() {
  mkdir -p "$tmp/unzipped"
  if command -v unzip >/dev/null; then
    unzip -o -q "$zip" -d "$tmp/unzipped"
  else
    python3 - "$zip" "$tmp/unzipped" <<'EOF'
import os, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as zf:
    for i in zf.infolist():
        os.chmod(zf.extract(i, sys.argv[2]), (i.external_attr >> 16) & 0o7777)
EOF
  fi
  local mode
  mode=$(stat -c %a "$tmp/unzipped/bootstrap")
  echo "unzipped bootstrap has mode $mode"
  [ "$mode" = 755 ]
}
ok "unzipped, bootstrap is executable (0755)" unpack
boot=$tmp/unzipped/bootstrap
ok "unzipped, bootstrap is the release binary" cmp "$boot" "$built"
ok "check-bootstrap.sh passes it for $arch (glibc <= 2.34)" "$check" "$boot" "$arch"

# Each must fail, and for the stated reason.
ok "check-bootstrap.sh rejects it for $other (wrong machine)" \
  rejects "wrong architecture: expected EM_[A-Z0-9_]+ \($other\)" "$boot" "$other"
ok "check-bootstrap.sh rejects it with MAX_GLIBC 2.2 (needs newer)" \
  rejects "needs glibc [0-9.]+ \(GLIBC_[0-9.]+\), expected at most 2\.2;" "$boot" "$arch" 2.2
# 2.34 > 2.4 as versions but not as strings.
ok "check-bootstrap.sh rejects it with MAX_GLIBC 2.4 (compared as versions)" \
  rejects "needs glibc [0-9.]+ \(GLIBC_[0-9.]+\), expected at most 2\.4;" "$boot" "$arch" 2.4
printf '#!/bin/sh\nexec /var/task/%s "$@"\n' "$BIN" >"$tmp/wrapper.sh"
chmod 0755 "$tmp/wrapper.sh"
ok "check-bootstrap.sh rejects a shell script (not ELF)" \
  rejects "not an ELF file" "$tmp/wrapper.sh" "$arch"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
