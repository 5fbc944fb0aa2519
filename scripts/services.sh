#!/usr/bin/env bash
# Throwaway local services for development and tests, on free loopback ports.
#
#   scripts/services.sh install                    install what is missing (redis-server, chromium and
#                                                  fonts-dejavu-core for the dashboard previews, .venv
#                                                  with moto, cargo-deny, cargo-cyclonedx, promtool)
#   scripts/services.sh start DIR [SERVICE...]     start services (default: postgres redis moto) under DIR
#   scripts/services.sh stop  DIR [SERVICE...]     stop exactly what DIR started
#
# `moto` is the AWS emulator plus scripts/cwfront.py in front of it for CloudWatch (metrics):
# the Rust SDK speaks rpc-v2-cbor to CloudWatch, which moto does not; the front translates.
# `start` writes DIR/env (shell `export` lines: DATABASE_URL, REDIS_URL, AWS_ENDPOINT_URL,
# AWS_ENDPOINT_URL_CLOUDWATCH (the front; the AWS SDKs prefer it for CloudWatch over
# AWS_ENDPOINT_URL) and test credentials) and prints it. Starting a service again in the same DIR reuses its port
# and data, so a test can stop a dependency and bring the same one back.
# Nothing listens beyond 127.0.0.1, and nothing talks to real AWS.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${VENV:-$ROOT/.venv}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
[ -x "$PGBIN/initdb" ] || PGBIN=$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/initdb)")

log() { printf 'services: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local deadline=$((SECONDS + $1)) what=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || die "$what did not become ready"
    sleep 0.1
  done
}

kill_and_wait() { # kill_and_wait PIDFILE: SIGTERM, wait up to 10 s, then SIGKILL
  local pidfile=$1 pid
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  kill "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + 10))
  while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.05; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$pidfile"
}

# PostgreSQL refuses to run as root; run its tools as the `postgres` user then.
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

install() {
  if ! command -v redis-server >/dev/null 2>&1; then
    log "installing redis-server with apt"
    local sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=300 install -y -qq redis-server >/dev/null
    # The package starts a system-wide server on 6379; we never use it.
    $sudo systemctl disable --now redis-server >/dev/null 2>&1 || $sudo service redis-server stop >/dev/null 2>&1 || true
  fi
  # Dashboard previews: resvg draws their text with DejaVu (fonts-dejavu-core); a test
  # screenshots their HTML in headless Chromium. A machine where apt cannot install them
  # still runs everything else (that test then says it skipped Chromium).
  local preview_packages=()
  [ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || preview_packages+=(fonts-dejavu-core)
  command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || preview_packages+=(chromium)
  if [ ${#preview_packages[@]} -gt 0 ]; then
    log "installing ${preview_packages[*]} with apt"
    local sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    { $sudo apt-get update -qq >/dev/null &&
      DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
        --no-install-recommends "${preview_packages[@]}" >/dev/null; } ||
      log "could not install ${preview_packages[*]}: previews lose their text or the Chromium check"
  fi
  if ! command -v promtool >/dev/null 2>&1; then
    # promtool (Debian's prometheus package) checks the agent's live /metrics in the tests.
    log "installing promtool (prometheus) with apt"
    local sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends prometheus >/dev/null
    # The package starts a Prometheus server on 9090; we only want promtool.
    $sudo systemctl disable --now prometheus >/dev/null 2>&1 || $sudo service prometheus stop >/dev/null 2>&1 || true
  fi
  if [ ! -x "$VENV/bin/moto_server" ] || ! cmp -s "$ROOT/scripts/requirements-dev.txt" "$VENV/.requirements"; then
    log "installing Python tools into $VENV"
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q -r "$ROOT/scripts/requirements-dev.txt"
    cp "$ROOT/scripts/requirements-dev.txt" "$VENV/.requirements"
  fi
  # Cargo tools of the test command (a one-time compile each, a few minutes): cargo-deny
  # checks licences, bans and sources; cargo-cyclonedx writes the release SBOM.
  install_cargo_tool cargo-deny 0.20.2
  install_cargo_tool cargo-cyclonedx 0.5.9
  [ -x "$PGBIN/initdb" ] || die "PostgreSQL 15 server binaries not found (set PGBIN)"
}

install_cargo_tool() { # install_cargo_tool NAME VERSION: cargo install when missing or another version
  local name=$1 version=$2 subcommand=${1#cargo-}
  if ! cargo "$subcommand" --version 2>/dev/null | grep -qF " $version"; then
    log "installing $name $version (cargo install, one-time compile)"
    cargo install --locked --quiet "$name@$version"
  fi
}

start_postgres() {
  local dir=$1/postgres port
  mkdir -p "$dir"
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    port=$(free_port); echo "$port" >"$dir/port"
    # The server runs as `postgres` when we are root: let it reach and own its directory.
    if [ "$(id -u)" = 0 ]; then chmod o+x "$1"; chown postgres "$dir"; fi
    as_pg "$PGBIN/initdb" -D "$dir/data" -U app --auth=trust -E UTF8 --no-locale >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
  fi
  port=$(cat "$dir/port")
  as_pg "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
    -o "-p $port -c listen_addresses=127.0.0.1 -k $dir -c fsync=off -c full_page_writes=off" start >/dev/null \
    || { tail -20 "$dir/server.log" >&2; die "postgres did not start"; }
  if ! as_pg "$PGBIN/psql" -h 127.0.0.1 -p "$port" -U app -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname='app'" | grep -q 1; then
    as_pg "$PGBIN/psql" -h 127.0.0.1 -p "$port" -U app -d postgres -qc "CREATE DATABASE app" >/dev/null
  fi
  echo "export DATABASE_URL=postgres://app@127.0.0.1:$port/app" >"$dir/env"
  log "postgres on 127.0.0.1:$port"
}

stop_postgres() {
  local dir=$1/postgres
  [ -f "$dir/data/postmaster.pid" ] || return 0
  as_pg "$PGBIN/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
}

start_redis() {
  local dir=$1/redis port
  mkdir -p "$dir"
  [ -f "$dir/port" ] || free_port >"$dir/port"
  port=$(cat "$dir/port")
  redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no --daemonize yes \
    --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --dir "$dir" >/dev/null
  wait_for 10 redis redis-cli -p "$port" ping
  echo "export REDIS_URL=redis://127.0.0.1:$port" >"$dir/env"
  log "redis on 127.0.0.1:$port"
}

stop_redis() { kill_and_wait "$1/redis/redis.pid"; }

start_moto() {
  local dir=$1/moto port
  mkdir -p "$dir"
  [ -f "$dir/port" ] || free_port >"$dir/port"
  port=$(cat "$dir/port")
  [ -x "$VENV/bin/moto_server" ] || die "moto is not installed: run scripts/services.sh install"
  nohup "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" >"$dir/moto.log" 2>&1 &
  echo $! >"$dir/moto.pid"
  wait_for 30 moto curl -sf "http://127.0.0.1:$port/moto-api/data.json"
  # The CloudWatch front, on its own port, forwarding to this moto.
  [ -f "$dir/cwfront.port" ] || free_port >"$dir/cwfront.port"
  local front_port; front_port=$(cat "$dir/cwfront.port")
  nohup "$VENV/bin/python" "$ROOT/scripts/cwfront.py" --port "$front_port" \
    --upstream "http://127.0.0.1:$port" >"$dir/cwfront.log" 2>&1 &
  echo $! >"$dir/cwfront.pid"
  wait_for 30 cwfront curl -sf "http://127.0.0.1:$front_port/ping"
  cat >"$dir/env" <<ENV
export AWS_ENDPOINT_URL=http://127.0.0.1:$port
export AWS_ENDPOINT_URL_CLOUDWATCH=http://127.0.0.1:$front_port
export AWS_ACCESS_KEY_ID=testing
export AWS_SECRET_ACCESS_KEY=testing
export AWS_REGION=us-east-1
export AWS_DEFAULT_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
ENV
  log "moto (AWS emulator) on 127.0.0.1:$port, its CloudWatch front on 127.0.0.1:$front_port"
}

stop_moto() { kill_and_wait "$1/moto/cwfront.pid"; kill_and_wait "$1/moto/moto.pid"; }

write_env() {
  local dir=$1
  cat "$dir"/*/env >"$dir/env" 2>/dev/null || true
}

cmd=${1:-}; shift || true
case "$cmd" in
  install) install ;;
  start|stop)
    [ $# -ge 1 ] || die "usage: $0 $cmd DIR [postgres|redis|moto...]"
    dir=$1; shift
    mkdir -p "$dir"; dir=$(cd "$dir" && pwd)
    services=("$@"); [ ${#services[@]} -gt 0 ] || services=(postgres redis moto)
    for service in "${services[@]}"; do
      case "$service" in postgres|redis|moto) ;; *) die "unknown service: $service" ;; esac
      "${cmd}_${service}" "$dir"
    done
    if [ "$cmd" = start ]; then write_env "$dir"; cat "$dir/env"; fi
    ;;
  *) die "usage: $0 install | start DIR [SERVICE...] | stop DIR [SERVICE...]" ;;
esac
