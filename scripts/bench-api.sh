#!/usr/bin/env bash
# Overhead of the API's instrumentation (issue 4's benchmark): p50/p99 latency of
# GET /health under load, with OpenTelemetry export to a running sidecar versus without.
# A benchmark, not a test: run it by hand. Needs `wrk` (apt-get install wrk).
#   scripts/bench-api.sh [--duration 15] [--connections 16] [--runs 3]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
DURATION=15; CONNECTIONS=16; RUNS=3
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) DURATION=$2; shift 2 ;;
    --connections) CONNECTIONS=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 64 ;;
  esac
done
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 69; }
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
scripts/services.sh install
cargo build --release --locked -p api -p agent
WORK=$(mktemp -d -t bench-api-XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; scripts/services.sh stop "$WORK" >/dev/null 2>&1 || true; }
trap cleanup EXIT
scripts/services.sh start "$WORK" postgres redis >/dev/null
# shellcheck disable=SC1091
source "$WORK/env"
export OPENAI_API_KEY=x REPLICATE_API_KEY=x SUNO_API_KEY=x JWT_SECRET=0123456789abcdef0123456789abcdef
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

run_api() { # run_api LABEL [ENV...]: prints "label p50_us p99_us rps" per run
  local label=$1; shift
  local port; port=$(free_port)
  env "$@" PORT="$port" target/release/api serve >/dev/null 2>&1 &
  local pid=$!; PIDS+=("$pid")
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.05; done
  wrk -t1 -c"$CONNECTIONS" -d2s "http://127.0.0.1:$port/health" >/dev/null  # warm-up
  for _ in $(seq "$RUNS"); do
    wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency "http://127.0.0.1:$port/health" \
      | python3 scripts/bench_api_report.py parse "$label"
  done
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

ADMIN=$(free_port); OTLP=$(free_port)
cat >"$WORK/agent.toml" <<TOML
[admin]
address = "127.0.0.1:$ADMIN"
[sources.otlp]
grpc_address = ""
http_address = "127.0.0.1:$OTLP"
[sinks.cloudwatch_logs]
log_group = "/bench/api"
endpoint = "http://127.0.0.1:1"
[metrics]
publish = "none"
[metrics.access_log]
enabled = false
TOML
target/release/agent run --config "$WORK/agent.toml" 2>/dev/null &
PIDS+=("$!")
{
  run_api off
  run_api on OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$OTLP" OTEL_METRIC_EXPORT_INTERVAL=1000
} | python3 scripts/bench_api_report.py report "$CONNECTIONS" "$DURATION"
