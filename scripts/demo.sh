#!/usr/bin/env bash
# The main job: bring the local stack up from a fresh clone and show it working end to end.
#
#   services (PostgreSQL, Redis, the AWS emulator, a fake Sentry) → secret in Secrets Manager
#   → migrations → the API (configured from the secret) → traffic, including a Redis outage
#   → summary (logs, metrics, Sentry events) → dashboards and alarms (agent provision apply)
#   → dashboard previews (agent provision preview).
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
# --features agent/preview: the dashboard previews at the end (the sidecar image leaves them out).
cargo build --locked --bins --quiet --features agent/preview

WORK=$(mktemp -d -t stack-XXXXXX)
API_PID=""
AGENT_PID=""
KENT_PID=""
cleanup() {
  [ -n "$API_PID" ] && kill "$API_PID" 2>/dev/null || true
  [ -n "$AGENT_PID" ] && kill "$AGENT_PID" 2>/dev/null || true
  [ -n "$KENT_PID" ] && kill "$KENT_PID" 2>/dev/null || true
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

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port); ADMIN_PORT=$(free_port); SENTRY_PORT=$(free_port)
export PORT

say "starting a fake Sentry (kent) on 127.0.0.1:$SENTRY_PORT"
"$ROOT/.venv/bin/kent-server" run --host 127.0.0.1 --port "$SENTRY_PORT" >"$WORK/kent.log" 2>&1 &
KENT_PID=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$SENTRY_PORT/api/eventlist/" >/dev/null && break; sleep 0.1; done
# Project 1 receives the sidecar's events (from the API's error log lines), project 2 the
# API's own SDK reports (panics, 5xx). Real deployments read the DSNs from Secrets Manager.
export SENTRY_DSN="http://demoapikey@127.0.0.1:$SENTRY_PORT/2"
say "starting the sidecar (stdin → CloudWatch Logs, admin on 127.0.0.1:$ADMIN_PORT) and the API on 127.0.0.1:$PORT"
cat >"$WORK/agent.toml" <<TOML
shutdown_grace_secs = 10
[admin]
address = "127.0.0.1:$ADMIN_PORT"
[sources.stdin]
[sinks.cloudwatch_logs]
log_group = "/demo/api"
endpoint = "$AWS_ENDPOINT_URL"
batch_timeout_ms = 500
[metrics]
period_secs = 10
namespace = "Demo/Api"
static_dimensions = { Service = "api", Environment = "dev" }
endpoint = "$AWS_ENDPOINT_URL_CLOUDWATCH"
[sinks.sentry]
dsn = "http://demoagentkey@127.0.0.1:$SENTRY_PORT/1"
environment = "dev"
release = "api@$(target/debug/api --version | awk '{print $2}')"
[uptime]
urls = ["http://127.0.0.1:$PORT/health", "http://127.0.0.1:$PORT/api/health/db", "http://127.0.0.1:$PORT/api/health/redis"]
interval_secs = 2
timeout_ms = 1000
TOML
target/debug/agent validate --config "$WORK/agent.toml"
# The API's stdout goes through a FIFO into the sidecar, as FireLens would carry it.
mkfifo "$WORK/api.pipe"
target/debug/agent run --config "$WORK/agent.toml" <"$WORK/api.pipe" 2>"$WORK/agent.log" &
AGENT_PID=$!
target/debug/api serve >"$WORK/api.pipe" 2>&1 &
API_PID=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.1; done
echo "smoke test (agent probe):"
target/debug/agent probe --url "http://127.0.0.1:$PORT/health" --url "http://127.0.0.1:$PORT/api/health/db" \
  --url "http://127.0.0.1:$PORT/api/health/redis" --wait 10

say "sending traffic (and stopping Redis for a moment)"
for i in $(seq 1 40); do
  curl -s -o /dev/null -H "x-request-id: demo-$i" "http://127.0.0.1:$PORT/health"
  curl -s -o /dev/null "http://127.0.0.1:$PORT/api/health/db"
  curl -s -o /dev/null "http://127.0.0.1:$PORT/api/users/$i"
done
scripts/services.sh stop "$WORK" redis >/dev/null
curl -s "http://127.0.0.1:$PORT/api/health/redis"; echo "  ← Redis stopped"
target/debug/agent probe --url "http://127.0.0.1:$PORT/api/health/redis" --timeout 3 || echo "  (agent probe exits $? while Redis is down)"
sleep 3   # let the uptime prober see the outage too
scripts/services.sh start "$WORK" redis >/dev/null
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/api/health/redis" >/dev/null && break; sleep 0.1; done
curl -s "http://127.0.0.1:$PORT/api/health/redis"; echo "  ← Redis back"
for _ in $(seq 50); do
  curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | grep -q '^agent_events_sent_total [1-9]' && break; sleep 0.1
done
echo "sidecar metrics:"
curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | grep -E '^agent_(events_received_total\{source="stdin"\}|events_sent_total|put_log_events_total\{outcome="ok"\}|buffer_bytes|resident_memory_bytes) '

say "stopping the API (SIGTERM, graceful); the sidecar drains and exits when its input ends"
kill -TERM "$API_PID"; API_PID=""
wait "$AGENT_PID" || true; AGENT_PID=""
grep -h '"message":"flushed everything; exiting"' "$WORK/agent.log" || tail -3 "$WORK/agent.log"

say "summary (read back from the emulated AWS)"
"$ROOT/.venv/bin/python" - <<PY
import collections, json, boto3
endpoint = "$AWS_ENDPOINT_URL"
sm = boto3.client("secretsmanager", endpoint_url=endpoint)
names = [s["Name"] for s in sm.list_secrets()["SecretList"]]
secret = json.loads(sm.get_secret_value(SecretId="demo/api")["SecretString"])
print(f"Secrets Manager: {names}; the API read its configuration from it")

logs = boto3.client("logs", endpoint_url=endpoint)
group = logs.describe_log_groups(logGroupNamePrefix="/demo/api")["logGroups"][0]
streams = [s["logStreamName"] for s in logs.describe_log_streams(logGroupName="/demo/api")["logStreams"]]
events = []
for stream in streams:
    token = None
    while True:
        kw = dict(logGroupName="/demo/api", logStreamName=stream, startFromHead=True)
        if token:
            kw["nextToken"] = token
        page = logs.get_log_events(**kw)
        events += page["events"]
        if not page["events"] or page["nextForwardToken"] == token:
            break
        token = page["nextForwardToken"]
print(f"CloudWatch Logs: group {group['logGroupName']} (retention {group.get('retentionInDays')} days), "
      f"streams {streams}, {len(events)} events")
parsed = []
for e in events:
    try:
        parsed.append(json.loads(e["message"]))
    except ValueError:
        pass
access = [p for p in parsed if p.get("target") == "access"]
print(f"  {len(access)} access-log events:")
for (route, status), n in sorted(collections.Counter((p["route"], p["status"]) for p in access).items()):
    print(f"    {route:<20} {status}  x{n}")
errors = [p for p in parsed if p.get("level") == "error"]
print(f"  error events: {len(errors)} ({', '.join(sorted({p.get('error_kind', '?') for p in errors}))})")
lat = sorted(p["latency_ms"] for p in access)
if lat:
    pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
    print(f"  latency ms: p50 {pick(0.5):.2f}  p90 {pick(0.9):.2f}  p99 {pick(0.99):.2f}")
print("  migrations:", [f'{p["version"]} {p["name"]}' for p in parsed if p.get("message") == "migration applied"] or "(run before the sidecar started)")
leaked = [k for k, v in secret.items() if any(v in e["message"] for e in events)]
print("  secret values found in CloudWatch:", leaked or "none")

import datetime
cw = boto3.client("cloudwatch", endpoint_url=endpoint)
now = datetime.datetime.now(datetime.timezone.utc)
def stat(name, dims, statistic):
    points = cw.get_metric_statistics(Namespace="Demo/Api", MetricName=name, Dimensions=dims,
        StartTime=now - datetime.timedelta(minutes=10), EndTime=now + datetime.timedelta(minutes=10),
        Period=600, Statistics=[statistic])["Datapoints"]
    return points[0][statistic] if points else None
svc = [{"Name": "Service", "Value": "api"}, {"Name": "Environment", "Value": "dev"}]
metrics = cw.list_metrics(Namespace="Demo/Api")["Metrics"]
print(f"CloudWatch Metrics: namespace Demo/Api, {len(metrics)} metrics: {sorted({m['MetricName'] for m in metrics})}")
for route in sorted({d["Value"] for m in metrics for d in m["Dimensions"] if d["Name"] == "Route"}):
    dims = svc + [{"Name": "Route", "Value": route}, {"Name": "Method", "Value": "GET"}]
    print(f"  {route:<20} RequestCount {stat('RequestCount', dims, 'Sum')}  ErrorCount {stat('ErrorCount', dims, 'Sum')}  "
          f"Latency max {stat('Latency', dims, 'Maximum')} ms")
for endpoint in ["/health", "/api/health/db", "/api/health/redis"]:
    dims = svc + [{"Name": "Endpoint", "Value": endpoint}]
    print(f"  HealthCheck {endpoint:<18} min {stat('HealthCheck', dims, 'Minimum')}  samples {stat('HealthCheck', dims, 'SampleCount')}")
print(f"  Heartbeat samples: {stat('Heartbeat', svc, 'SampleCount')}")
PY
say "dashboards and alarms as code (agent provision, env dev, against the emulator)"
# provision/dev.json names the real dev environment; here the namespace, the log group and
# the account differ (moto's account is 123456789012). The pager topic is created first.
"$ROOT/.venv/bin/python" - <<PY
import boto3
arn = boto3.client("sns", endpoint_url="$AWS_ENDPOINT_URL").create_topic(Name="app-dev-pager")["TopicArn"]
print(f"pager topic {arn}")
PY
PROVISION=(--env dev --var AccountId=123456789012 --var Namespace=Demo/Api
  --var LogGroup=/demo/api --var AgentLogGroup=/demo/agent)
target/debug/agent provision validate "${PROVISION[@]}"
target/debug/agent provision apply "${PROVISION[@]}"
echo "a second apply:"
target/debug/agent provision apply "${PROVISION[@]}" | tail -1
"$ROOT/.venv/bin/python" - <<PY
import boto3, json
cw = boto3.client("cloudwatch", endpoint_url="$AWS_ENDPOINT_URL")
print("read back from the emulated CloudWatch:")
for d in cw.list_dashboards(DashboardNamePrefix="app-dev-agent-")["DashboardEntries"]:
    body = json.loads(cw.get_dashboard(DashboardName=d["DashboardName"])["DashboardBody"])
    kinds = sorted({w["type"] for w in body["widgets"]})
    print(f"  dashboard {d['DashboardName']:<32} {len(body['widgets'])} widgets ({', '.join(kinds)})")
for a in cw.describe_alarms(AlarmNamePrefix="app-dev-agent-")["MetricAlarms"]:
    metric = a.get("MetricName") or "+".join(q["MetricStat"]["Metric"]["MetricName"] for q in a.get("Metrics", []) if "MetricStat" in q)
    print(f"  alarm     {a['AlarmName']:<36} {a['StateValue']:<17} {a.get('Namespace') or 'metric math'}: {metric}")
PY

say "dashboard previews (agent provision preview, drawn from the data just published)"
# --since 5m: the demo's minute or two of metrics spread over the charts' width.
target/debug/agent provision preview "${PROVISION[@]}" --since 5m --out "$ROOT/target/dashboard-preview" \
  >"$WORK/preview.txt" 2>&1 || { cat "$WORK/preview.txt"; exit 1; }
grep '^wrote' "$WORK/preview.txt"
echo "open file://$ROOT/target/dashboard-preview/index.html (one HTML page and one PNG per dashboard)"

say "Sentry events (read back from the fake Sentry)"
"$ROOT/.venv/bin/python" - <<PY
import json, urllib.request
base = "http://127.0.0.1:$SENTRY_PORT"
get = lambda path: json.load(urllib.request.urlopen(base + path))
events = get("/api/eventlist/")["events"]
senders = {"1": "sidecar", "2": "API SDK"}
print(f"{len(events)} events")
for summary in events:
    body = get(f"/api/event/{summary['event_id']}")["payload"]["body"]
    tags = body.get("tags", {})
    tags = dict(tags) if isinstance(tags, dict) else dict(tuple(t) for t in tags)
    crumbs = body.get("breadcrumbs", {})
    crumbs = crumbs.get("values", []) if isinstance(crumbs, dict) else crumbs
    exception = (body.get("exception") or {}).get("values") or [{}]
    title = exception[0].get("type") or (body.get("logentry") or {}).get("formatted") or body.get("message")
    print(f"  [{senders.get(str(summary['project_id']), summary['project_id'])}] {body.get('level', 'error')}: {title}")
    print(f"      route={tags.get('route') or tags.get('http.route')} status={tags.get('status')} "
          f"request_id={tags.get('request_id')} environment={body.get('environment')} "
          f"release={body.get('release')} breadcrumbs={len(crumbs)}")
    for crumb in crumbs:
        print(f"      breadcrumb: {crumb.get('level')} {crumb.get('message')}")
    suppressed = (body.get("extra") or {}).get("suppressed_count")
    if suppressed:
        print(f"      + {suppressed} identical errors folded into this event (de-duplication window)")
PY
