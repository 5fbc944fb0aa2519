#!/usr/bin/env bash
# The main job: bring the local stack up from a fresh clone and show it working end to end.
#
#   services (PostgreSQL, Redis, the AWS emulator) → secret in Secrets Manager → migrations →
#   the API (configured from the secret) → traffic, including a Redis outage → summary.
#
# Everything runs on free loopback ports and is stopped on exit. Nothing talks to real AWS.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 \
  AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "installing what is missing, building"
scripts/services.sh install
cargo build --locked --bins --quiet

WORK=$(mktemp -d -t stack-XXXXXX)
API_PID=""
cleanup() {
  [ -n "$API_PID" ] && kill "$API_PID" 2>/dev/null || true
  "$ROOT/scripts/services.sh" stop "$WORK" >/dev/null 2>&1 || true
}
trap cleanup EXIT

say "starting PostgreSQL, Redis and the AWS emulator"
scripts/services.sh start "$WORK" >/dev/null
# shellcheck disable=SC1091
source "$WORK/env"

say "storing the API's configuration in Secrets Manager (emulated)"
"$ROOT/.venv/bin/python" - <<PY
import json, secrets, boto3
client = boto3.client("secretsmanager", endpoint_url="$AWS_ENDPOINT_URL")
client.create_secret(Name="demo/api", SecretString=json.dumps({
    "DATABASE_URL": "$DATABASE_URL",
    "REDIS_URL": "$REDIS_URL",
    "OPENAI_API_KEY": "sk-demo-" + secrets.token_hex(8),
    "REPLICATE_API_KEY": "r8_demo_" + secrets.token_hex(8),
    "SUNO_API_KEY": "suno_demo_" + secrets.token_hex(8),
    "JWT_SECRET": secrets.token_hex(32),
}))
print("secret demo/api created")
PY
# Only the secret's id travels in the environment; the values come from Secrets Manager.
export APP_SECRETS_ID=demo/api APP_ENV=dev
unset DATABASE_URL REDIS_URL
target/debug/api check-config

say "migrating the database"
target/debug/api migrate up
target/debug/api migrate status

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export PORT
say "starting the API on 127.0.0.1:$PORT"
target/debug/api serve >"$WORK/api.log" 2>&1 &
API_PID=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.1; done
curl -s "http://127.0.0.1:$PORT/health"; echo
curl -s "http://127.0.0.1:$PORT/api/health/db"; echo
curl -s "http://127.0.0.1:$PORT/api/health/redis"; echo

say "sending traffic (and stopping Redis for a moment)"
for i in $(seq 1 40); do
  curl -s -o /dev/null -H "x-request-id: demo-$i" "http://127.0.0.1:$PORT/health"
  curl -s -o /dev/null "http://127.0.0.1:$PORT/api/health/db"
  curl -s -o /dev/null "http://127.0.0.1:$PORT/api/users/$i"
done
scripts/services.sh stop "$WORK" redis >/dev/null
curl -s "http://127.0.0.1:$PORT/api/health/redis"; echo "  ← Redis stopped"
scripts/services.sh start "$WORK" redis >/dev/null
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/api/health/redis" >/dev/null && break; sleep 0.1; done
curl -s "http://127.0.0.1:$PORT/api/health/redis"; echo "  ← Redis back"

say "stopping the API (SIGTERM, graceful)"
kill -TERM "$API_PID"; wait "$API_PID" || true; API_PID=""

say "summary"
python3 - "$WORK/api.log" <<'PY'
import collections, json, sys
events, raw = [], 0
for line in open(sys.argv[1], encoding="utf-8", errors="replace"):
    try:
        events.append(json.loads(line))
    except ValueError:
        raw += 1
access = [e for e in events if e.get("target") == "access"]
by_route = collections.Counter((e["route"], e["status"]) for e in access)
print(f"API log: {len(events)} JSON events ({raw} non-JSON lines), {len(access)} access-log events")
for (route, status), n in sorted(by_route.items()):
    print(f"  {route:<20} {status}  x{n}")
errors = [e for e in events if e.get("level") == "error"]
print(f"error events: {len(errors)} ({', '.join(sorted({e.get('error_kind', '?') for e in errors}))})")
lat = sorted(e["latency_ms"] for e in access)
if lat:
    pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
    print(f"latency ms: p50 {pick(0.5):.2f}  p90 {pick(0.9):.2f}  p99 {pick(0.99):.2f}")
print("migrations applied:", [f'{e["version"]} {e["name"]}' for e in events if e.get("message") == "migration applied"] or "(see above)")
PY
"$ROOT/.venv/bin/python" - <<PY
import boto3
sm = boto3.client("secretsmanager", endpoint_url="$AWS_ENDPOINT_URL")
names = [s["Name"] for s in sm.list_secrets()["SecretList"]]
print(f"emulated AWS: Secrets Manager holds {names}; the API read its configuration from it")
PY
echo "The sidecar (agent/) is a skeleton until the log pipeline lands: CloudWatch Logs, metrics,"
echo "alarms and Sentry join this run then."
