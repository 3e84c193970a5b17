# Shared by scripts/test.sh, scripts/demo.sh and scripts/bench.sh: installs
# what the checks need and starts the AWS emulators on free loopback ports,
# stopping them again when the calling script exits.

VENV=.venv
# ministack speaks the CBOR protocol of the current AWS SDK only with cbor2
# installed beside it; without it, requests are silently dropped.
# moto serves Auto Scaling, EC2, SSM and Secrets Manager (its CloudWatch
# does not speak the SDK's CBOR protocol, hence the two emulators).
PY_PACKAGES=(ministack==1.5.33 cbor2==6.3.0 "moto[server]==5.2.5")

step() { printf '\n== %s\n' "$*"; }

ensure_tools() {
  local missing=() sudo=
  command -v python3 >/dev/null || missing+=(python3)
  python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
  command -v readelf >/dev/null || missing+=(binutils)
  command -v cargo >/dev/null || { echo "cargo is not installed: install Rust 1.94.1 or newer (rustup) first" >&2; exit 1; }
  if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || sudo=sudo
    step "apt-get install ${missing[*]}"
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
  fi
}

# Debian's prometheus server for the tests, which run it as a plain process
# on loopback. Installing the package would also start its system service
# (listening on every address) where systemd runs, so only its binary is
# taken: the package is downloaded with apt-get and unpacked under .tmp.
# Sets PROMETHEUS_BIN.
ensure_prometheus() {
  local dir=.tmp/prometheus-deb sudo=
  if [ -x /usr/bin/prometheus ]; then
    PROMETHEUS_BIN=/usr/bin/prometheus
    return 0
  fi
  PROMETHEUS_BIN=$PWD/$dir/usr/bin/prometheus
  [ -x "$PROMETHEUS_BIN" ] && return 0
  [ "$(id -u)" = 0 ] || sudo=sudo
  step "Debian package prometheus, unpacked into $dir"
  if ! apt-cache show prometheus >/dev/null 2>&1; then
    $sudo apt-get update -qq
  fi
  mkdir -p "$dir"
  (cd "$dir" && rm -f prometheus_*.deb && apt-get download -qq prometheus 2>&1 | grep -v '^W: Download is performed unsandboxed' || true)
  dpkg-deb -x "$dir"/prometheus_*.deb "$dir"
  [ -x "$PROMETHEUS_BIN" ] || { echo "could not unpack prometheus from Debian's package" >&2; exit 1; }
}

ensure_venv() {
  if [ ! -x "$VENV/bin/ministack" ] || [ ! -x "$VENV/bin/moto_server" ] ||
    ! "$VENV/bin/python" -c 'import cbor2' 2>/dev/null; then
    step "Python packages into $VENV: ${PY_PACKAGES[*]}"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "${PY_PACKAGES[@]}"
  fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

EMULATOR_PID=
MOTO_PID=
stop_emulator() {
  local pid
  for pid in $EMULATOR_PID $MOTO_PID; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  EMULATOR_PID=
  MOTO_PID=
}

# Waits until $1 answers, or fails naming the log $3 of process $2.
wait_for() {
  local url=$1 pid=$2 log=$3
  for _ in $(seq 1 150); do
    if python3 -c "import urllib.request,sys; urllib.request.urlopen('$url', timeout=1)" 2>/dev/null; then
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; echo "the emulator behind $url exited" >&2; exit 1; }
    sleep 0.2
  done
  cat "$log" >&2
  echo "the emulator behind $url did not answer within 30 s" >&2
  exit 1
}

# moto for Auto Scaling, EC2, SSM and Secrets Manager. Sets MOTO_URL.
start_moto() {
  local port log
  port=$(free_port)
  mkdir -p .tmp
  log=.tmp/moto.log
  step "moto (Auto Scaling, EC2, SSM, Secrets Manager) on 127.0.0.1:$port (log: $log)"
  "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
  MOTO_PID=$!
  trap stop_emulator EXIT
  MOTO_URL="http://127.0.0.1:$port"
  wait_for "$MOTO_URL/moto-api/" "$MOTO_PID" "$log"
}

start_emulator() {
  local port log
  port=$(free_port)
  mkdir -p .tmp
  log=.tmp/emulator.log
  step "CloudWatch emulator on 127.0.0.1:$port (log: $log)"
  # Its IoT service opens an MQTT port on every address whatever BIND_HOST
  # says; the tests need none of it.
  BIND_HOST=127.0.0.1 GATEWAY_PORT=$port SERVICES=cloudwatch LOG_LEVEL=WARNING IOT_MTLS_ENABLED=0 \
    "$VENV/bin/ministack" >"$log" 2>&1 &
  EMULATOR_PID=$!
  trap stop_emulator EXIT
  EMULATOR_URL="http://127.0.0.1:$port"
  wait_for "$EMULATOR_URL/_ministack/health" "$EMULATOR_PID" "$log"
}
