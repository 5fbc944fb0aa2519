"""Offline invariants of the Terraform code in terraform/.

Parses every .tf file with python-hcl2 (no provider, no AWS account, no
`terraform init`) and asserts the properties the project relies on: log
retention, private and encrypted RDS, S3 public-access blocks, the ECS
deployment circuit breaker, the task's two containers wired through FireLens,
secrets never passed as plain environment values, one S3 backend with lock
files per environment, and the prod-only settings that checkov's skip list
(terraform/.checkov.yaml) leaves to this file.

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
