#!/usr/bin/env bash
# Usage: build/lambda.sh [--arch x86_64|arm64]
# TODO(#2): the arm64 zip is built by the same path but never tested here:
# this machine has no aarch64 target or linker, and CI runs on x86_64.
#
# Builds the release binary for an AWS Lambda on provided.al2023 and packages
# it as <target dir>/lambda/drone-queue-cloudwatch-<arch>.zip, with the
# executable `bootstrap` (mode 0755) as its only entry. The arch defaults to
# the host's. The binary is checked with build/check-bootstrap.sh (ELF for
# that arch, glibc <= 2.34) before it is zipped.
#
# For the host's arch it runs `cargo build --release --locked`. For the other
# arch it needs cargo-lambda (which cross-links with zig) and the Rust target,
# and runs `cargo lambda build --release --locked --arm64|--x86-64`.
set -euo pipefail

BIN=drone-queue-cloudwatch
MAX_GLIBC=2.34 # provided.al2023

prog=${0##*/}
usage() {
  echo "usage: $prog [--arch x86_64|arm64]   (default: the host's, $host_arch)" >&2
  exit 2
}
die() {
  echo "$prog: $*" >&2
  exit 1
}

case "$(uname -m)" in
  x86_64 | amd64) host_arch=x86_64 ;;
  aarch64 | arm64) host_arch=arm64 ;;
  *) host_arch=$(uname -m) ;;
esac

arch=$host_arch
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) [ $# -ge 2 ] || usage; arch=$2; shift 2 ;;
    --arch=*) arch=${1#--arch=}; shift ;;
    -h | --help) sed -n '2,/^set -euo/{/^set/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) echo "$prog: unknown argument '$1'" >&2; usage ;;
  esac
done
case "$arch" in
  x86_64) triple=x86_64-unknown-linux-gnu cl_flag=--x86-64 ;;
  arm64) triple=aarch64-unknown-linux-gnu cl_flag=--arm64 ;;
  *) echo "$prog: unknown arch '$arch': Lambda has x86_64 and arm64" >&2; usage ;;
esac

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$root"

command -v cargo >/dev/null || die "cargo not found: install Rust (rustup) first"
command -v python3 >/dev/null || die "python3 not found (it writes the zip): apt-get install python3"

target_dir=$(cargo metadata --no-deps --format-version 1 --offline |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
out_dir=$target_dir/lambda
zip_path=$out_dir/$BIN-$arch.zip
stage=$out_dir/stage-$arch
mkdir -p "$out_dir"
# A failed run must not leave an older zip behind that looks current.
rm -rf "$zip_path" "$stage"

if [ "$arch" = "$host_arch" ]; then
  echo "== cargo build --release --locked ($arch, host target)" >&2
  cargo build --release --locked
  built=$target_dir/release/$BIN
else
  # Cross build: check both prerequisites up front and name every missing one.
  missing=()
  if ! cargo lambda --version >/dev/null 2>&1; then
    missing+=("cargo-lambda (with zig, its cross linker): pip install cargo-lambda, or see its install guide")
  fi
  sysroot=$(rustc --print sysroot)
  if [ ! -d "$sysroot/lib/rustlib/$triple/lib" ]; then
    missing+=("the Rust standard library for $triple: rustup target add $triple (it downloads from the Rust distribution server)")
  fi
  if [ ${#missing[@]} -gt 0 ]; then
    {
      echo "$prog: cannot build for $arch on this $host_arch host; missing:"
      printf '  - %s\n' "${missing[@]}"
      echo "Or run build/lambda.sh on an $arch machine (native build), e.g. a Graviton instance or an arm64 CI runner."
    } >&2
    exit 1
  fi
  echo "== cargo lambda build --release --locked $cl_flag" >&2
  cargo lambda build --release --locked "$cl_flag" --bin "$BIN"
  # cargo-lambda leaves the binary, already named bootstrap, in lambda/<bin>/.
  built=$out_dir/$BIN/bootstrap
fi
[ -f "$built" ] || die "the build succeeded but left no binary at $built"

mkdir -p "$stage"
cp "$built" "$stage/bootstrap"
chmod 0755 "$stage/bootstrap"
"$root/build/check-bootstrap.sh" "$stage/bootstrap" "$arch" "$MAX_GLIBC"

# zip(1) is not on a base Debian image; Python's zipfile is. The entry gets
# Unix mode 0755 (create_system 3 = Unix, so unzip and Lambda honour
# external_attr) and a fixed timestamp, so one binary always gives one zip.
python3 - "$stage/bootstrap" "$zip_path" <<'EOF'
import os, shutil, stat, sys, zipfile

src, dest = sys.argv[1], sys.argv[2]
info = zipfile.ZipInfo("bootstrap", date_time=(1980, 1, 1, 0, 0, 0))
info.create_system = 3
info.external_attr = (stat.S_IFREG | 0o755) << 16
info.compress_type = zipfile.ZIP_DEFLATED
tmp = dest + ".tmp"
with zipfile.ZipFile(tmp, "w", compresslevel=9) as zf:
    with open(src, "rb") as f, zf.open(info, "w") as entry:
        shutil.copyfileobj(f, entry, 1 << 20)
os.replace(tmp, dest)
EOF

size=$(stat -c %s "$zip_path")
echo "$zip_path ($(python3 -c "print(f'{$size / 1048576:.1f}')") MiB, $size bytes)"
