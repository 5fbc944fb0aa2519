"""Offline invariants of the Terraform code in terraform/.

Parses every .tf file with python-hcl2 (no provider, no AWS account, no
`terraform init`) and asserts the properties the project relies on: log
retention, private and encrypted RDS, S3 public-access blocks, the ECS
deployment circuit breaker, the task's two containers wired through FireLens,
secrets never passed as plain environment values, one S3 backend with lock
files per environment, and the prod-only settings that checkov's skip list
(terraform/.checkov.yaml) leaves to this file. Also where Terraform meets
`agent provision` (dashboards/, alerts/, provision/ at the repository root, read
but never changed): no dashboards and no alarm on a metric alerts/ already
watches, names the provision files rely on, and the GitHub deploy roles of
bootstrap/github.tf, scoped to exactly what the deploy workflows call.

Run: python terraform/tests/test_invariants.py   (from the repo root or anywhere)
"""

import json
import os
import re
import sys
import unittest
from pathlib import Path

import hcl2

try:  # python-hcl2 >= 7: strings keep their quotes unless told otherwise.
    from hcl2.utils import SerializationOptions

    _OPTIONS = SerializationOptions(strip_string_quotes=True, explicit_blocks=False, with_comments=False)

    def _parse(text):
        return hcl2.loads(text, serialization_options=_OPTIONS)

except ImportError:  # python-hcl2 < 7 already returns unquoted strings.

    def _parse(text):
        return hcl2.loads(text)


TF_ROOT = Path(os.environ.get("TF_ROOT", Path(__file__).resolve().parent.parent))
# dashboards/, alerts/ and provision/ live next to terraform/; mutants.py moves TF_ROOT
# to a temporary copy of terraform/ only, so the repository root is kept apart.
REPO_ROOT = Path(os.environ.get("REPO_ROOT", Path(__file__).resolve().parents[2]))
ENVS = ("dev", "staging", "prod")
SECRET_NAMES = (
    "DATABASE_URL",
    "REDIS_URL",
    "OPENAI_API_KEY",
    "REPLICATE_API_KEY",
    "SUNO_API_KEY",
    "JWT_SECRET",
    "SENTRY_DSN",
)
REF = re.compile(r"^\$\{(local|var)\.([A-Za-z0-9_]+)\}$")


# ------------------------------------------------------------------ loading --


def _tf_files():
    return sorted(p for p in TF_ROOT.rglob("*.tf") if ".terraform" not in p.parts)


def _load():
    parsed = {}
    for path in _tf_files():
        text = path.read_text(encoding="utf-8")
        try:
            parsed[path] = _parse(text)
        except Exception as exc:  # a parse failure is a test failure, with the file named
            raise AssertionError(f"{path.relative_to(TF_ROOT)}: cannot parse: {exc}") from exc
    return parsed


PARSED = _load()


def _rel(path):
    return str(Path(path).relative_to(TF_ROOT))


def blocks(kind, path=None):
    """Top-level blocks of one kind (resource, variable, locals, ...) per file."""
    for p, doc in PARSED.items():
        if path is not None and p != path:
            continue
        for block in doc.get(kind, []):
            yield p, block


def resources(rtype=None, directory=None):
    """(path, type, name, body) of every resource, optionally filtered."""
    for p, block in blocks("resource"):
        if directory is not None and p.parent != directory:
            continue
        for t, named in block.items():
            if rtype is not None and t != rtype:
                continue
            for name, body in named.items():
                yield p, t, name, body


def data_sources(dtype, directory=None):
    """(path, name, body) of every data source of one type, optionally in one directory."""
    for p, block in blocks("data"):
        if directory is not None and p.parent != directory:
            continue
        for name, body in block.get(dtype, {}).items():
            yield p, name, body


def variables(directory):
    out = {}
    for p, block in blocks("variable"):
        if p.parent == directory:
            out.update(block)
    return out


def locals_of(directory):
    out = {}
    for p, block in blocks("locals"):
        if p.parent == directory:
            out.update(block)
    return out


def first(value):
    """Nested blocks come as a list of one dict; attributes as plain values."""
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict):
        return value[0]
    return value


def resolve(value, directory, depth=0):
    """Resolve whole-value `${local.x}` / `${var.x}` references (var -> default)."""
    if depth > 10:
        return value
    if isinstance(value, str):
        m = REF.match(value)
        if not m:
            return value
        kind, name = m.groups()
        if kind == "local":
            scope = locals_of(directory)
            if name not in scope:
                return value
            return resolve(scope[name], directory, depth + 1)
        var = variables(directory).get(name)
        if var is None or "default" not in var:
            return value
        return resolve(var["default"], directory, depth + 1)
    if isinstance(value, dict):
        return {k: resolve(v, directory, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, directory, depth + 1) for v in value]
    return value


def container_definitions(directory, body):
    """The task's containers as dicts, from `jsonencode([...])` of locals or literals."""
    expr = body["container_definitions"]
    text = expr if isinstance(expr, str) else json.dumps(expr)
    m = re.match(r"^\$\{jsonencode\(\[(.*)\]\)\}$", text, re.S)
    if not m:
        raise AssertionError(f"container_definitions is not jsonencode([...]): {text[:120]}")
    containers = []
    for item in m.group(1).split(","):
        item = item.strip()
        ref = re.match(r"^local\.([A-Za-z0-9_]+)$", item)
        if not ref:
            raise AssertionError(
                "container_definitions should list containers as locals (jsonencode([local.a, local.b])); "
                f"got {item[:80]!r}: extend this test if the layout changed"
            )
        value = resolve("${local.%s}" % ref.group(1), directory)
        if not isinstance(value, dict):
            raise AssertionError(f"local.{ref.group(1)} is not an object")
        containers.append(value)
    return {resolve(c.get("name"), directory): c for c in containers}


def secret_names(container, directory):
    """Names in a container's `secrets`, literal or `[for n in local.x : {name = n, ...}]`."""
    secrets = container.get("secrets", [])
    if isinstance(secrets, list):
        return [s["name"] for s in secrets]
    m = re.search(r"for (\w+) in local\.(\w+)\s*:\s*\{\s*name\s*=\s*\1\s*,\s*valueFrom\s*=", secrets)
    if not m:
        raise AssertionError(f"unrecognised secrets expression: {secrets[:120]}")
    return list(resolve("${local.%s}" % m.group(2), directory))


def the(rtype, name, directory):
    """The body of one resource, which must exist."""
    found = [body for _, _, n, body in resources(rtype, directory) if n == name]
    if len(found) != 1:
        raise AssertionError(f"{_rel(directory)}: expected one {rtype}.{name}, found {len(found)}")
    return found[0]


def mod(name):
    return TF_ROOT / "modules" / name


def expand(text, directory):
    """`text` with every `${local.x}` / `${var.x}` inside it replaced when it resolves to a string."""

    def one(m):
        value = resolve("${%s.%s}" % (m.group(1), m.group(2)), directory)
        return value if isinstance(value, str) and not REF.match(value) else m.group(0)

    return re.sub(r"\$\{(local|var)\.([A-Za-z0-9_]+)\}", one, text)


def fill(text, values):
    """`${Name}` placeholders of dashboards/alerts/provision filled from `values` (others kept)."""
    return re.sub(r"\$\{(\w+)\}", lambda m: str(values.get(m.group(1), m.group(0))), text)


def provision_vars(env):
    """provision/<env>.json with its own `${Name}` references filled; AccountId is a dummy
    (the deploy workflow passes the real one)."""
    path = REPO_ROOT / "provision" / f"{env}.json"
    values = json.loads(path.read_text(encoding="utf-8"))
    values.setdefault("AccountId", "123456789012")
    for _ in range(5):
        values = {k: fill(v, values) if isinstance(v, str) else v for k, v in values.items()}
    return values


def alert_alarms():
    """(file name, alarm) of every alarm in alerts/*.json (one object or a list per file)."""
    found = []
    for path in sorted((REPO_ROOT / "alerts").glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        for alarm in doc if isinstance(doc, list) else [doc]:
            found.append((path.name, alarm))
    return found


def alert_metrics(alarm, values):
    """(namespace, metric name) of every metric an alerts/ alarm reads, placeholders filled."""
    found = []
    if alarm.get("MetricName"):
        found.append((alarm.get("Namespace", ""), alarm["MetricName"]))
    for query in alarm.get("Metrics", []):
        metric = (query.get("MetricStat") or {}).get("Metric")
        if metric:
            found.append((metric.get("Namespace", ""), metric.get("MetricName", "")))
    return {(fill(ns, values), fill(name, values)) for ns, name in found}


def terraform_alarm_metrics(body, directory):
    """(namespace, metric name) of every metric an aws_cloudwatch_metric_alarm reads."""
    found = []
    if body.get("metric_name"):
        found.append((body.get("namespace"), body["metric_name"]))
    for query in body.get("metric_query", []):
        for metric in query.get("metric", []):
            found.append((metric.get("namespace"), metric.get("metric_name")))
    return {(expand(str(ns), directory), expand(str(name), directory)) for ns, name in found}


def tf_name(expr, name):
    """A module's name expression (`${var.name}-api`, `${substr("${var.name}-alb", 0, 32)}`)
    for the module input `name`."""
    m = re.match(r'^\$\{substr\("(.*)", 0, (\d+)\)\}$', expr)
    if m:
        return m.group(1).replace("${var.name}", name)[: int(m.group(2))]
    return expr.replace("${var.name}", name)


def module_dirs():
    return sorted({p.parent for p in PARSED})


def env_dir(env):
    return TF_ROOT / "envs" / env


# -------------------------------------------------------------------- tests --


class LogGroups(unittest.TestCase):
    def test_every_log_group_retains_30_days(self):
        found = list(resources("aws_cloudwatch_log_group"))
        self.assertGreaterEqual(len(found), 6, "expected the api, agent, flow-log, RDS, Redis and WAF log groups")
        for path, _, name, body in found:
            where = f"{_rel(path)}: aws_cloudwatch_log_group.{name}"
            retention = body.get("retention_in_days")
            self.assertIsNotNone(retention, f"{where} has no retention_in_days (never expires)")
            if isinstance(retention, str):
                m = REF.match(retention)
                self.assertTrue(m and m.group(1) == "var", f"{where}: retention {retention!r} is not 30 or a variable")
                var = variables(path.parent).get(m.group(2))
                self.assertIsNotNone(var, f"{where}: variable {m.group(2)} not declared")
                self.assertEqual(var.get("default"), 30, f"{where}: variable {m.group(2)} must default to 30")
                self.assertTrue(var.get("validation"), f"{where}: variable {m.group(2)} must be validated")
            else:
                self.assertEqual(retention, 30, f"{where}: retention_in_days must be 30")

    def test_env_roots_do_not_override_retention(self):
        for env in ENVS:
            for path, block in blocks("module"):
                if path.parent != env_dir(env):
                    continue
                for name, call in block.items():
                    value = call.get("log_retention_days", 30)
                    self.assertEqual(value, 30, f"{_rel(path)}: module.{name} sets log_retention_days = {value}")


class Database(unittest.TestCase):
    def test_rds_private_and_encrypted(self):
        found = list(resources("aws_db_instance"))
        self.assertTrue(found, "no aws_db_instance found")
        for path, _, name, body in found:
            where = f"{_rel(path)}: aws_db_instance.{name}"
            self.assertIs(resolve(body.get("publicly_accessible"), path.parent), False, f"{where} must set publicly_accessible = false")
            self.assertIs(resolve(body.get("storage_encrypted"), path.parent), True, f"{where} must set storage_encrypted = true")
            self.assertTrue(body.get("kms_key_id"), f"{where} must encrypt with the environment's KMS key")
            self.assertGreaterEqual(
                resolve(body.get("backup_retention_period", 0), path.parent) or 0, 1, f"{where} needs automated backups"
            )

    def test_slow_query_logging(self):
        found = list(resources("aws_db_parameter_group"))
        self.assertTrue(found, "no aws_db_parameter_group found")
        for path, _, name, body in found:
            params = {p["name"] for p in body.get("parameter", [])}
            self.assertIn("log_min_duration_statement", params, f"{_rel(path)}: aws_db_parameter_group.{name}")


class Buckets(unittest.TestCase):
    def test_every_bucket_blocks_public_access(self):
        buckets = list(resources("aws_s3_bucket"))
        self.assertGreaterEqual(len(buckets), 4, "expected the assets, logs, state and state-logs buckets")
        for path, _, name, _ in buckets:
            blocks_for_bucket = [
                body
                for p, _, _, body in resources("aws_s3_bucket_public_access_block", path.parent)
                if re.match(r"^\$\{aws_s3_bucket\.%s\.(id|bucket)\}$" % re.escape(name), str(body.get("bucket")))
            ]
            self.assertEqual(len(blocks_for_bucket), 1, f"{_rel(path)}: aws_s3_bucket.{name} needs one public access block")
            pab = blocks_for_bucket[0]
            for flag in ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets"):
                self.assertIs(pab.get(flag), True, f"{_rel(path)}: aws_s3_bucket.{name}: {flag} must be true")

    def test_assets_and_state_buckets_use_kms(self):
        # checkov's CKV_AWS_145 is skipped for the SSE-S3 log buckets; the data buckets must stay on KMS.
        for directory, bucket in ((TF_ROOT / "modules" / "storage", "assets"), (TF_ROOT / "bootstrap", "state")):
            configs = [
                body
                for _, _, _, body in resources("aws_s3_bucket_server_side_encryption_configuration", directory)
                if str(body.get("bucket")) == "${aws_s3_bucket.%s.id}" % bucket
            ]
            self.assertEqual(len(configs), 1, f"{bucket}: one encryption configuration expected")
            default = first(first(configs[0]["rule"])["apply_server_side_encryption_by_default"])
            self.assertEqual(default.get("sse_algorithm"), "aws:kms", f"{bucket} bucket must use SSE-KMS")


class EcsService(unittest.TestCase):
    def test_circuit_breaker_with_rollback(self):
        found = list(resources("aws_ecs_service"))
        self.assertTrue(found, "no aws_ecs_service found")
        for path, _, name, body in found:
            cb = first(body.get("deployment_circuit_breaker"))
            self.assertIsInstance(cb, dict, f"{_rel(path)}: aws_ecs_service.{name} has no deployment_circuit_breaker")
            self.assertIs(cb.get("enable"), True, f"{_rel(path)}: circuit breaker must be enabled")
            self.assertIs(cb.get("rollback"), True, f"{_rel(path)}: circuit breaker must roll back")

    def test_target_group_checks_health_endpoint(self):
        found = list(resources("aws_lb_target_group"))
        self.assertTrue(found, "no aws_lb_target_group found")
        for path, _, name, body in found:
            hc = first(body.get("health_check"))
            self.assertEqual(hc.get("path"), "/health", f"{_rel(path)}: aws_lb_target_group.{name}")


class TaskDefinition(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        found = list(resources("aws_ecs_task_definition"))
        assert len(found) == 1, f"expected exactly one aws_ecs_task_definition, found {len(found)}"
        cls.path, _, _, cls.body = found[0]
        cls.dir = cls.path.parent
        cls.containers = container_definitions(cls.dir, cls.body)

    def test_both_containers_present_and_essential(self):
        self.assertEqual(set(self.containers), {"api", "agent"})
        for name, c in self.containers.items():
            self.assertIs(c.get("essential"), True, f"container {name} must be essential")

    def test_api_logs_through_firelens_to_the_sidecar(self):
        api, agent = self.containers["api"], self.containers["agent"]
        self.assertEqual(api["logConfiguration"]["logDriver"], "awsfirelens")
        self.assertEqual(resolve(agent["firelensConfiguration"]["type"], self.dir), "fluentbit")
        self.assertEqual(agent["logConfiguration"]["logDriver"], "awslogs", "the sidecar's own logs must not go through itself")

    def test_startup_and_shutdown_order(self):
        api, agent = self.containers["api"], self.containers["agent"]
        depends = [(resolve(d["containerName"], self.dir), d["condition"]) for d in api.get("dependsOn", [])]
        self.assertIn(("agent", "HEALTHY"), depends)
        self.assertEqual(agent["healthCheck"]["command"], ["CMD", "/usr/local/bin/agent", "health"])
        api_stop = resolve(api.get("stopTimeout"), self.dir)
        agent_stop = resolve(agent.get("stopTimeout"), self.dir)
        self.assertEqual((api_stop, agent_stop), (30, 60), "the sidecar must outlive the API at shutdown")

    def test_api_settings(self):
        api = self.containers["api"]
        env = {e["name"]: resolve(e["value"], self.dir) for e in api["environment"]}
        self.assertEqual(env.get("OTEL_EXPORTER_OTLP_ENDPOINT"), "http://127.0.0.1:4318")
        self.assertIn("APP_ENV", env)
        self.assertIn("PORT", env)
        ports = [resolve(p["containerPort"], self.dir) for p in api["portMappings"]]
        self.assertEqual(ports, [8080])

    def test_agent_settings(self):
        env = {e["name"] for e in self.containers["agent"]["environment"]}
        self.assertLessEqual({"AGENT_LOG_GROUP", "AGENT_METRICS_NAMESPACE", "AWS_REGION"}, env)

    def test_both_containers_get_the_environment_name(self):
        # The sidecar's config sets its metrics' Environment dimension to ${APP_ENV:-dev}.
        for name, c in self.containers.items():
            env = {e["name"]: e["value"] for e in c.get("environment", [])}
            self.assertEqual(env.get("APP_ENV"), "${var.environment}", f"container {name}: APP_ENV = var.environment")

    def test_secrets_injected_as_secrets_never_as_environment(self):
        for name, c in self.containers.items():
            plain = {e["name"] for e in c.get("environment", [])}
            leaked = plain & set(SECRET_NAMES)
            self.assertFalse(leaked, f"container {name} passes {sorted(leaked)} as plain environment values")
        self.assertEqual(sorted(secret_names(self.containers["api"], self.dir)), sorted(SECRET_NAMES))
        self.assertEqual(secret_names(self.containers["agent"], self.dir), ["SENTRY_DSN"])


class NoPlainSecretsAnywhere(unittest.TestCase):
    def test_no_secret_name_with_a_plain_value(self):
        # Catches `{ name = "JWT_SECRET", value = ... }` anywhere, also outside the task definition.
        pattern = re.compile(r'name\s*=\s*"(%s)"\s*,?\s*value\s*=' % "|".join(SECRET_NAMES))
        for path in _tf_files():
            for m in pattern.finditer(path.read_text(encoding="utf-8")):
                self.fail(f"{_rel(path)}: {m.group(1)} is given as a plain value")


class Backends(unittest.TestCase):
    def test_each_env_has_s3_backend_with_lockfile_and_distinct_key(self):
        keys = {}
        for env in ENVS:
            directory = env_dir(env)
            self.assertTrue(directory.is_dir(), f"missing env root {directory}")
            backends = [
                b
                for p, tf in blocks("terraform")
                if p.parent == directory
                for b in tf.get("backend", [])
            ]
            self.assertEqual(len(backends), 1, f"envs/{env}: exactly one backend block expected")
            self.assertEqual(list(backends[0]), ["s3"], f"envs/{env}: backend must be s3")
            s3 = backends[0]["s3"]
            self.assertIs(s3.get("use_lockfile"), True, f"envs/{env}: use_lockfile = true required")
            self.assertIs(s3.get("encrypt"), True, f"envs/{env}: encrypt = true required")
            self.assertTrue(s3.get("key"), f"envs/{env}: backend key missing")
            keys[env] = s3["key"]
        self.assertEqual(len(set(keys.values())), len(ENVS), f"state keys must be distinct: {keys}")


class Versions(unittest.TestCase):
    def test_pins(self):
        terraform_blocks = list(blocks("terraform"))
        self.assertTrue(terraform_blocks)
        for path, tf in terraform_blocks:
            self.assertEqual(tf.get("required_version"), ">= 1.10", _rel(path))
            providers = {}
            for rp in tf.get("required_providers", []):
                providers.update(rp)
            self.assertEqual(providers.get("aws", {}).get("version"), "~> 5.80", _rel(path))
            if "random" in providers:
                self.assertEqual(providers["random"].get("version"), "~> 3.6", _rel(path))


class Environments(unittest.TestCase):
    def settings(self, env):
        return resolve("${local.settings}", env_dir(env))

    def test_prod_is_highly_available_and_protected(self):
        prod = self.settings("prod")
        self.assertIs(prod["db_multi_az"], True)
        self.assertIs(prod["deletion_protection"], True)
        self.assertIs(prod["single_nat_gateway"], False)
        self.assertIs(prod["db_skip_final_snapshot"], False)
        self.assertGreaterEqual(prod["min_tasks"], 2)
        self.assertGreaterEqual(prod["cache_nodes"], 2)

    def test_dev_is_small(self):
        dev = self.settings("dev")
        self.assertIs(dev["single_nat_gateway"], True)
        self.assertIs(dev["db_multi_az"], False)

    def test_env_roots_share_the_same_wiring(self):
        # Differences between environments belong in settings.tf and the backend key only.
        for name in ("main.tf", "variables.tf", "providers.tf", "outputs.tf"):
            texts = {env: (env_dir(env) / name).read_text(encoding="utf-8") for env in ENVS}
            self.assertEqual(len(set(texts.values())), 1, f"envs/*/{name} differ between environments")


class AgentProvisionOwnsDashboardsAndAlerts(unittest.TestCase):
    """dashboards/*.json and alerts/*.json are created by `agent provision apply` in the deploy
    workflow, as "<project>-<env>-agent-<name>"; Terraform keeps only what alerts/ lacks."""

    def test_no_dashboard_in_terraform(self):
        found = [f"{_rel(p)}: {t}.{n}" for p, t, n, _ in resources("aws_cloudwatch_dashboard")]
        self.assertEqual(found, [], "dashboards are provisioned by `agent provision`, not Terraform")
        for path in _tf_files():
            self.assertNotIn("dashboards_dir", path.read_text(encoding="utf-8"), f"{_rel(path)} still wires dashboards_dir")

    def test_no_terraform_alarm_on_a_metric_alerts_watch(self):
        alarms = alert_alarms()
        self.assertTrue(alarms, f"no alarm found in {REPO_ROOT / 'alerts'}")
        watched = {}
        for env in ENVS:
            values = provision_vars(env)
            for file, alarm in alarms:
                for metric in alert_metrics(alarm, values):
                    watched.setdefault(metric, f"alerts/{file} ({alarm.get('AlarmName')})")
        self.assertTrue(watched, "no metric found in the alerts/ alarms")
        found = list(resources("aws_cloudwatch_metric_alarm"))
        self.assertTrue(found, "no aws_cloudwatch_metric_alarm found")
        for path, _, name, body in found:
            for metric in terraform_alarm_metrics(body, path.parent):
                self.assertNotIn(
                    metric, watched,
                    f"{_rel(path)}: aws_cloudwatch_metric_alarm.{name} watches {metric}, as {watched.get(metric)} "
                    "does: the pager would be called twice",
                )

    def test_terraform_keeps_the_alarms_alerts_do_not_cover(self):
        metrics = set()
        for path, _, _, body in resources("aws_cloudwatch_metric_alarm"):
            metrics |= terraform_alarm_metrics(body, path.parent)
        for metric in [
            ("ECS/ContainerInsights", "RunningTaskCount"),
            ("AWS/ApplicationELB", "UnHealthyHostCount"),
            ("AWS/ApplicationELB", "HTTPCode_Target_5XX_Count"),
            ("AWS/ApplicationELB", "TargetResponseTime"),
            ("AWS/ElastiCache", "DatabaseMemoryUsagePercentage"),
        ]:
            self.assertIn(metric, metrics, f"no Terraform alarm on {metric} (alerts/ does not cover it)")

    def test_terraform_alarm_names_stay_out_of_the_agent_prefix(self):
        # `agent provision apply --prune` deletes "<project>-<env>-agent-*" names no file defines.
        self.assertEqual(locals_of(mod("observability")).get("prefix"), "${var.name}-")
        for path, _, name, body in resources("aws_cloudwatch_metric_alarm"):
            alarm_name = str(body.get("alarm_name"))
            where = f"{_rel(path)}: aws_cloudwatch_metric_alarm.{name}"
            self.assertTrue(alarm_name.startswith("${local.prefix}"), f"{where}: {alarm_name} lacks the environment prefix")
            self.assertFalse(
                alarm_name[len("${local.prefix}"):].startswith("agent-"),
                f"{where}: {alarm_name} is under the prefix `agent provision --prune` owns",
            )


class ProvisionNames(unittest.TestCase):
    """provision/<env>.json repeats Terraform's names; above all PagerTopicArn, which every alarm
    in alerts/ notifies. A rename on either side must fail here."""

    def test_provision_files_match_terraform_names(self):
        service, obs, database, cache = mod("service"), mod("observability"), mod("database"), mod("cache")
        terraform = {
            "Cluster": the("aws_ecs_cluster", "this", service)["name"],
            "Service": the("aws_ecs_service", "this", service)["name"],
            "LoadBalancer": the("aws_lb", "this", service)["name"],
            "LogGroup": the("aws_cloudwatch_log_group", "api", obs)["name"],
            "AgentLogGroup": the("aws_cloudwatch_log_group", "agent", obs)["name"],
            "PagerTopicArn": "arn:aws:sns:${Region}:${AccountId}:" + the("aws_sns_topic", "pager", obs)["name"],
            "DbInstance": resolve(the("aws_db_instance", "this", database)["identifier"], database),
            "CacheReplicationGroup": resolve(
                the("aws_elasticache_replication_group", "this", cache)["replication_group_id"], cache
            ),
        }
        for env in ENVS:
            root = env_dir(env)
            self.assertEqual(resolve("${local.name}", root), "${var.project}-${local.environment}", f"envs/{env}")
            calls = {}
            for path, block in blocks("module"):
                if path.parent == root:
                    calls.update(block)
            for module in ("service", "observability", "database", "cache"):
                self.assertEqual(calls[module].get("name"), "${local.name}", f"envs/{env}: module.{module} name")
            values = provision_vars(env)
            self.assertEqual(values.get("Environment"), resolve("${local.environment}", root), f"provision/{env}.json")
            self.assertEqual(values.get("Project"), variables(root)["project"].get("default"), f"provision/{env}.json")
            name = f"{values['Project']}-{values['Environment']}"
            for key, expr in terraform.items():
                self.assertEqual(values.get(key), fill(tf_name(expr, name), values), f"provision/{env}.json: {key}")


GITHUB_OIDC = "token.actions.githubusercontent.com"
# What .github/workflows/deploy-environment.yml calls with AWS_DEPLOY_ROLE_ARN: scripts/deploy
# (current, render-task-definition, run-migration, update-service, rollback --to), the smoke
# test's `aws ecr get-login-password` + docker pull of the agent image, `aws sts
# get-caller-identity` and `agent provision apply --prune`.
DEPLOY_ACTIONS = {
    "ecs:DescribeServices", "ecs:DescribeTaskDefinition", "ecs:RegisterTaskDefinition", "ecs:TagResource",
    "ecs:UpdateService", "ecs:RunTask", "ecs:DescribeTasks", "ecs:StopTask", "iam:PassRole", "logs:GetLogEvents",
    "ecr:GetAuthorizationToken", "ecr:DescribeImages", "ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage",
    "ecr:GetDownloadUrlForLayer", "sts:GetCallerIdentity", "cloudwatch:ListDashboards", "cloudwatch:GetDashboard",
    "cloudwatch:PutDashboard", "cloudwatch:DeleteDashboards", "cloudwatch:DescribeAlarms",
    "cloudwatch:PutMetricAlarm", "cloudwatch:DeleteAlarms",
}
# What deploy.yml's images job calls with AWS_ECR_PUSH_ROLE_ARN.
ECR_PUSH_ACTIONS = {
    "sts:GetCallerIdentity", "ecr:GetAuthorizationToken", "ecr:DescribeImages", "ecr:BatchCheckLayerAvailability",
    "ecr:BatchGetImage", "ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload", "ecr:PutImage",
}
# Actions without resource-level permissions: the only ones allowed on Resource "*".
UNSCOPED_ACTIONS = {
    "ecs:DescribeTaskDefinition", "ecs:RegisterTaskDefinition", "ecr:GetAuthorizationToken",
    "cloudwatch:ListDashboards", "sts:GetCallerIdentity",
}


class GitHubDeployRoles(unittest.TestCase):
    """bootstrap/github.tf: the OIDC provider and the roles of the deploy workflows."""

    def setUp(self):
        self.dir = TF_ROOT / "bootstrap"

    def statements(self, name):
        found = [body for _, n, body in data_sources("aws_iam_policy_document", self.dir) if n == name]
        self.assertEqual(len(found), 1, f"bootstrap: data.aws_iam_policy_document.{name} expected once")
        return found[0].get("statement", [])

    def conditions(self, statement):
        return {(c["test"], expand(c["variable"], self.dir)): c["values"] for c in statement.get("condition", [])}

    def by_action(self, name):
        out = {}
        for st in self.statements(name):
            for action in st.get("actions", []):
                self.assertNotIn(action, out, f"{name}: {action} granted twice")
                out[action] = (st.get("resources"), self.conditions(st))
        return out

    def test_oidc_provider(self):
        found = list(resources("aws_iam_openid_connect_provider", self.dir))
        self.assertEqual(len(found), 1, "bootstrap: one aws_iam_openid_connect_provider expected")
        body = found[0][3]
        self.assertEqual(expand(body["url"], self.dir), f"https://{GITHUB_OIDC}")
        self.assertEqual(body["client_id_list"], ["sts.amazonaws.com"])

    def test_roles_trust_only_this_repository(self):
        expected = {
            "github_deploy_assume": "repo:${var.github_repository}:environment:${each.key}",
            "github_ecr_push_assume": "repo:${var.github_repository}:ref:refs/heads/${var.github_ecr_push_branch}",
        }
        for doc, sub in expected.items():
            statements = self.statements(doc)
            self.assertEqual(len(statements), 1, doc)
            st = statements[0]
            self.assertEqual(st.get("effect", "Allow"), "Allow", doc)
            self.assertEqual(st.get("actions"), ["sts:AssumeRoleWithWebIdentity"], doc)
            self.assertEqual(st.get("principals"), [{"type": "Federated", "identifiers": ["${local.github_oidc_provider_arn}"]}], doc)
            self.assertEqual(
                self.conditions(st),
                {("StringEquals", f"{GITHUB_OIDC}:aud"): ["sts.amazonaws.com"], ("StringEquals", f"{GITHUB_OIDC}:sub"): [sub]},
                f"{doc}: exactly aud = sts.amazonaws.com and sub = {sub}",
            )
        deploy = the("aws_iam_role", "github_deploy", self.dir)
        self.assertEqual(deploy.get("for_each"), "${local.deploy_names}")
        self.assertEqual(deploy.get("assume_role_policy"), "${data.aws_iam_policy_document.github_deploy_assume[each.key].json}")
        push = the("aws_iam_role", "github_ecr_push", self.dir)
        self.assertEqual(push.get("assume_role_policy"), "${data.aws_iam_policy_document.github_ecr_push_assume.json}")
        repository = variables(self.dir)["github_repository"]
        self.assertNotIn("default", repository, "github_repository must be given, never defaulted")
        self.assertTrue(repository.get("validation"), "github_repository must be validated (owner/name, no wildcard)")
        self.assertEqual(
            locals_of(self.dir).get("deploy_names"),
            '${{for env in var.github_deploy_environments : env => "${var.project}-${env}"}}',
            "one deploy role per GitHub environment, for the env root <project>-<env>",
        )

    def test_policies_grant_exactly_what_the_workflows_call(self):
        for doc, expected in (("github_deploy", DEPLOY_ACTIONS), ("github_ecr_push", ECR_PUSH_ACTIONS)):
            granted = set()
            for st in self.statements(doc):
                self.assertEqual(st.get("effect", "Allow"), "Allow", doc)
                self.assertFalse({"not_actions", "not_resources", "principals"} & set(st), f"{doc}: {st.get('sid')}")
                for action in st["actions"]:
                    self.assertNotIn("*", action, f"{doc}: wildcard action {action}")
                    granted.add(action)
                if "*" in st["resources"]:
                    extra = set(st["actions"]) - UNSCOPED_ACTIONS
                    self.assertFalse(extra, f"{doc}: {sorted(extra)} on Resource * (they support resource-level permissions)")
            self.assertEqual(granted, expected, f"{doc}: missing {sorted(expected - granted)}, extra {sorted(granted - expected)}")
        for policy in ("github_deploy", "github_ecr_push"):
            attached = the("aws_iam_role_policy", policy, self.dir)
            self.assertIn(f"aws_iam_policy_document.{policy}", attached["policy"])
            self.assertIn(f"aws_iam_role.{policy}", attached["role"])

    def test_deploy_role_is_scoped_to_its_environment(self):
        service, obs, registry = mod("service"), mod("observability"), mod("registry")

        def own(expr):  # a module's `${var.name}...` as the deploy role names it
            return expr.replace("${var.name}", "${each.value}")

        ra = "${var.region}:${local.account_id}"
        cluster = own(the("aws_ecs_cluster", "this", service)["name"])
        family = own(the("aws_ecs_task_definition", "this", service)["family"])
        task_definitions = [f"arn:aws:ecs:{ra}:task-definition/{family}:*"]
        tasks = [f"arn:aws:ecs:{ra}:task/{cluster}/*"]
        service_arn = [f"arn:aws:ecs:{ra}:service/{cluster}/" + own(the("aws_ecs_service", "this", service)["name"])]
        log_group = f"arn:aws:logs:{ra}:log-group:" + own(the("aws_cloudwatch_log_group", "api", obs)["name"])
        repo = own(the("aws_ecr_repository", "this", registry)["name"])
        images = resolve("${var.repositories}", registry)
        self.assertEqual(sorted(images), ["agent", "api"])
        repos = {i: f"arn:aws:ecr:{ra}:repository/" + repo.replace("${each.key}", i) for i in images}
        dashboards = ["arn:aws:cloudwatch::${local.account_id}:dashboard/${each.value}-agent-*"]
        alarms = [f"arn:aws:cloudwatch:{ra}:alarm:${{each.value}}-agent-*"]
        expected = {
            "ecs:DescribeServices": service_arn,
            "ecs:UpdateService": service_arn,
            "ecs:RunTask": task_definitions,
            "ecs:TagResource": task_definitions,
            "ecs:DescribeTasks": tasks,
            "ecs:StopTask": tasks,
            "iam:PassRole": sorted(
                "arn:aws:iam::${local.account_id}:role/" + own(the("aws_iam_role", r, service)["name"]) for r in ("execution", "task")
            ),
            "logs:GetLogEvents": [log_group, log_group + ":*"],
            "ecr:DescribeImages": sorted(repos.values()),
            "ecr:BatchCheckLayerAvailability": [repos["agent"]],
            "ecr:BatchGetImage": [repos["agent"]],
            "ecr:GetDownloadUrlForLayer": [repos["agent"]],
            "cloudwatch:GetDashboard": dashboards,
            "cloudwatch:PutDashboard": dashboards,
            "cloudwatch:DeleteDashboards": dashboards,
            "cloudwatch:DescribeAlarms": alarms,
            "cloudwatch:PutMetricAlarm": alarms,
            "cloudwatch:DeleteAlarms": alarms,
        }
        granted = self.by_action("github_deploy")
        for action, arns in expected.items():
            self.assertEqual(sorted(granted[action][0]), sorted(arns), f"github_deploy: {action}")
        topic = f"arn:aws:sns:{ra}:" + own(the("aws_sns_topic", "pager", obs)["name"])
        for action, condition in {
            "ecs:RunTask": {("ArnEquals", "ecs:cluster"): [f"arn:aws:ecs:{ra}:cluster/{cluster}"]},
            "ecs:TagResource": {("StringEquals", "ecs:CreateAction"): ["RegisterTaskDefinition"]},
            "iam:PassRole": {("StringEquals", "iam:PassedToService"): ["ecs-tasks.amazonaws.com"]},
            "cloudwatch:PutMetricAlarm": {("ForAllValues:StringEquals", "cloudwatch:AlarmActions"): [topic]},
        }.items():
            self.assertEqual(granted[action][1], condition, f"github_deploy: {action} condition")

    def test_ecr_push_role_reaches_the_deploy_environments_repositories_only(self):
        granted = self.by_action("github_ecr_push")
        push = {a for a in ECR_PUSH_ACTIONS if a not in UNSCOPED_ACTIONS}
        for action in push:
            self.assertEqual(granted[action][0], "${local.ecr_repository_arns}", f"github_ecr_push: {action}")
        arns = locals_of(self.dir).get("ecr_repository_arns", "")
        self.assertIn("for name in values(local.deploy_names)", arns)
        self.assertIn('for image in ["api", "agent"]', arns)
        self.assertIn('"arn:aws:ecr:${var.region}:${local.account_id}:repository/${name}/${image}"', arns)
        self.assertEqual(the("aws_ecr_repository", "this", mod("registry"))["name"], "${var.name}/${each.key}")

    def test_role_arns_are_outputs(self):
        outputs = {}
        for path, block in blocks("output"):
            if path.parent == self.dir:
                outputs.update(block)
        self.assertIn("aws_iam_role.github_deploy", str(outputs.get("github_deploy_role_arns", {}).get("value")))
        self.assertIn("aws_iam_role.github_ecr_push.arn", str(outputs.get("github_ecr_push_role_arn", {}).get("value")))


class Documentation(unittest.TestCase):
    def test_every_variable_and_output_is_described(self):
        for kind in ("variable", "output"):
            for path, block in blocks(kind):
                for name, body in block.items():
                    self.assertTrue(body.get("description"), f"{_rel(path)}: {kind} {name} has no description")


if __name__ == "__main__":
    result = unittest.main(exit=False, verbosity=1).result
    failed = len(result.failures) + len(result.errors)
    print(f"{result.testsRun - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)
