#!/usr/bin/env bash
# Usage: build/check-bootstrap.sh FILE ARCH [MAX_GLIBC]
#   ARCH       x86_64 or arm64 (the Lambda function's architecture)
#   MAX_GLIBC  highest glibc the runtime has; default 2.34 (provided.al2023)
#
# Checks that FILE can run as a Lambda custom-runtime `bootstrap`: an
# executable, little-endian 64-bit ELF for ARCH, with the mode bits to run,
# whose loader (if dynamic) is glibc's for ARCH, and that needs no glibc
# symbol version newer than MAX_GLIBC. Prints one line on success; on any
# mismatch explains it on stderr and exits 1. Exits 2 on bad usage.
set -euo pipefail

prog=${0##*/}
usage() {
  echo "usage: $prog FILE x86_64|arm64 [MAX_GLIBC (default 2.34)]" >&2
  exit 2
}
if [ $# -lt 2 ] || [ $# -gt 3 ]; then usage; fi
file=$1 arch=$2 max_glibc=${3:-2.34}

case "$arch" in
  x86_64) want_machine=62 want_name=EM_X86_64 loader=/lib64/ld-linux-x86-64.so.2 ;;
  arm64) want_machine=183 want_name=EM_AARCH64 loader=/lib/ld-linux-aarch64.so.1 ;;
  *) echo "$prog: unknown ARCH '$arch': expected x86_64 or arm64" >&2; usage ;;
esac
[[ $max_glibc =~ ^[0-9]+(\.[0-9]+)*$ ]] || {
  echo "$prog: MAX_GLIBC '$max_glibc' is not a version like 2.34" >&2
  usage
}

fail() {
  echo "$prog: $file: $*" >&2
  exit 1
}

[ -e "$file" ] || fail "no such file"
[ -f "$file" ] || fail "not a regular file"
[ -r "$file" ] || fail "cannot read it"
command -v readelf >/dev/null || {
  echo "$prog: readelf not found: install binutils (apt-get install binutils)" >&2
  exit 2
}

# --- ELF header (first 20 bytes), read with coreutils' od -------------------
# shellcheck disable=SC2207
hdr=($(od -An -v -tx1 -N20 -- "$file"))
if [ ${#hdr[@]} -ne 20 ] || [ "${hdr[*]:0:4}" != "7f 45 4c 46" ]; then
  fail "not an ELF file (no \\x7fELF magic): expected the compiled $arch binary," \
    "found $(file -b -- "$file" 2>/dev/null || echo 'something else');" \
    "zip target/release/drone-queue-cloudwatch, not a script or a wrapper"
fi
[ "${hdr[4]}" = 02 ] || fail "expected a 64-bit ELF (ELFCLASS64), found class byte 0x${hdr[4]}"
case "${hdr[5]}" in
  01) u16() { echo $((16#$2$1)); } ;;
  02) u16() { echo $((16#$1$2)); } ;;
  *) fail "invalid ELF data encoding byte 0x${hdr[5]}" ;;
esac
e_type=$(u16 "${hdr[16]}" "${hdr[17]}")
e_machine=$(u16 "${hdr[18]}" "${hdr[19]}")

problems=()
problem() { problems+=("$*"); }

machine_name() {
  case "$1" in
    3) echo "EM_386 (i386)" ;; 40) echo "EM_ARM (32-bit arm)" ;; 62) echo "EM_X86_64 (x86_64)" ;;
    183) echo "EM_AARCH64 (arm64)" ;; 243) echo "EM_RISCV (riscv)" ;; *) echo "e_machine $1" ;;
  esac
}
if [ "$e_machine" -ne "$want_machine" ]; then
  problem "wrong architecture: expected $want_name ($arch), found $(machine_name "$e_machine");" \
    "build for the function's architecture (build/lambda.sh --arch $arch)" \
    "or declare the function's architecture to match the binary"
fi
[ "${hdr[5]}" = 01 ] || problem "expected little-endian (ELFDATA2LSB), found big-endian"

# --- executable, static or dynamic ------------------------------------------
phdrs=$(readelf -l -W -- "$file" 2>/dev/null) || fail "readelf cannot read its program headers"
interp=$(sed -n 's/.*\[Requesting program interpreter: \(.*\)\]$/\1/p' <<<"$phdrs")
case "$e_type" in
  2) kind=executable ;;
  3)
    if [ -n "$interp" ]; then
      kind="PIE executable"
    elif readelf -d -W -- "$file" 2>/dev/null | grep -q 'FLAGS_1.*\bPIE\b'; then
      kind="static-PIE executable"
    else
      kind="shared library"
      problem "expected an executable, found a shared library (ET_DYN without a loader or PIE flag)"
    fi
    ;;
  1) kind="object file"; problem "expected an executable, found a relocatable object file (ET_REL)" ;;
  4) kind="core dump"; problem "expected an executable, found a core dump (ET_CORE)" ;;
  *) kind="ELF type $e_type"; problem "expected an executable, found ELF type $e_type" ;;
esac
if [ -n "$interp" ]; then
  linkage="dynamically linked"
  # A musl or non-standard loader is not on provided.al2023.
  [ "$interp" = "$loader" ] ||
    problem "expected glibc's loader $loader for $arch, found program interpreter $interp;" \
      "build for the *-unknown-linux-gnu target or link statically"
else
  linkage="statically linked"
fi
[ -x "$file" ] ||
  problem "not executable (mode $(stat -c %a -- "$file")): Lambda must be able to run it; chmod 0755 it before zipping"

# --- glibc symbol versions ---------------------------------------------------
# 0 if version $1 <= version $2, compared component by component as numbers.
version_le() {
  local i a b
  IFS=. read -ra a <<<"$1"
  IFS=. read -ra b <<<"$2"
  for ((i = 0; i < ${#a[@]} || i < ${#b[@]}; i++)); do
    local x=$((10#${a[i]:-0})) y=$((10#${b[i]:-0}))
    ((x < y)) && return 0
    ((x > y)) && return 1
  done
  return 0
}

# Only the "Version needs" section says what the file requires from others;
# version definitions (if any) are the file's own.
verneed=$(readelf -V -W -- "$file" 2>/dev/null) || fail "readelf cannot read its version sections"
glibc_names=$(awk '
  /^Version needs section/ { inside = 1; next }
  /^[^ ]/ { inside = 0 }
  inside && match($0, /Name: GLIBC_[^ ]+/) { print substr($0, RSTART + 6, RLENGTH - 6) }
' <<<"$verneed" | sort -u -V)

highest="" highest_from=""
declare -A needed=()
for name in $glibc_names; do
  case "$name" in
    GLIBC_[0-9]*) v=${name#GLIBC_} ;;
    GLIBC_ABI_DT_RELR) v=2.36 ;; # packed relative relocations, glibc 2.36 on
    *)
      problem "needs $name, which no glibc release number vouches for; expected only GLIBC_x.y versions"
      continue
      ;;
  esac
  [[ $v =~ ^[0-9]+(\.[0-9]+)*$ ]] || { problem "cannot read glibc version '$name'"; continue; }
  needed[$name]=$v
  if [ -z "$highest" ] || ! version_le "$v" "$highest"; then
    highest=$v highest_from=$name
  fi
done

if [ -n "$highest" ] && ! version_le "$highest" "$max_glibc"; then
  newer=()
  for name in "${!needed[@]}"; do
    if ! version_le "${needed[$name]}" "$max_glibc"; then newer+=("$name"); fi
  done
  case "$arch" in x86_64) triple=x86_64-unknown-linux-gnu ;; arm64) triple=aarch64-unknown-linux-gnu ;; esac
  where="on a distribution whose glibc is at most $max_glibc"
  if version_le 2.34 "$max_glibc"; then where+=" (e.g. in an Amazon Linux 2023 container)"; fi
  msg="needs glibc $highest ($highest_from), expected at most $max_glibc;"
  msg+=" newer than $max_glibc: $(printf '%s\n' "${newer[@]}" | sort -V | paste -sd' ')."
  msg+=$'\n    '"It was linked against a newer glibc than the runtime has. Build against glibc"
  msg+=" $max_glibc instead: with cargo-lambda, which links with zig (pip install cargo-lambda;"
  msg+=" cargo lambda build --release --target $triple.$max_glibc), or build $where."
  problem "$msg"
fi

if [ ${#problems[@]} -gt 0 ]; then
  echo "$prog: $file is not a valid $arch Lambda bootstrap (glibc <= $max_glibc):" >&2
  printf '  - %s\n' "${problems[@]}" >&2
  exit 1
fi

if [ -n "$highest" ]; then
  glibc_msg="highest glibc needed $highest ($highest_from) <= $max_glibc"
else
  glibc_msg="needs no glibc symbol versions"
fi
echo "ok: $file: $arch ($want_name) ELF $kind, $linkage, $glibc_msg"
