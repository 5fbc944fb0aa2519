"""Proves that test_invariants.py can fail: each mutant breaks one invariant in a
copy of terraform/, and the invariant tests must then fail (the mutant is
"caught"). A mutant that survives, or whose pattern no longer matches the code
(update the pattern after a refactor), fails this script.

Runs in-process on a temporary copy (the working tree is never modified); only the
mutated file is parsed again, so the whole run takes a few seconds.

Run: python terraform/tests/mutants.py
"""

import io
import re
import shutil
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_invariants as inv  # noqa: E402  (after the path tweak)

# (what breaks, file relative to terraform/, regex, replacement)
MUTANTS = [
    ("log group retention literal 7", "modules/observability/main.tf",
     r'(name\s*=\s*"/ecs/\$\{var\.name\}/api"\s*\n\s*retention_in_days\s*=\s*)var\.log_retention_days', r"\g<1>7"),
    ("log group without retention", "modules/cache/main.tf", r"\n\s*retention_in_days\s*=\s*var\.log_retention_days", ""),
    ("retention variable defaults to 14", "modules/network/variables.tf",
     r'(variable "log_retention_days" \{[^}]*?default\s*=\s*)30', r"\g<1>14"),
    ("env root overrides retention", "envs/staging/main.tf",
     r'(module "network" \{\n)', '\\g<1>  log_retention_days = 7\n'),
    ("RDS publicly accessible", "modules/database/main.tf", r"(publicly_accessible\s*=\s*)false", r"\g<1>true"),
    ("RDS unencrypted", "modules/database/main.tf", r"(storage_encrypted\s*=\s*)true", r"\g<1>false"),
    ("RDS without slow-query log", "modules/database/main.tf", r'"log_min_duration_statement"', '"log_min_messages"'),
    ("public access block flag off", "modules/storage/main.tf",
     r'(resource "aws_s3_bucket_public_access_block" "logs" \{[^}]*?restrict_public_buckets\s*=\s*)true', r"\g<1>false"),
    ("public access block on the wrong bucket", "bootstrap/main.tf",
     r'(resource "aws_s3_bucket_public_access_block" "state_logs" \{\s*bucket\s*=\s*)aws_s3_bucket\.state_logs\.id',
     r"\g<1>aws_s3_bucket.state.id"),
    ("assets bucket on SSE-S3", "modules/storage/main.tf",
     r'sse_algorithm\s*=\s*"aws:kms"\n\s*kms_master_key_id\s*=\s*var\.kms_key_arn', 'sse_algorithm = "AES256"'),
    ("circuit breaker without rollback", "modules/service/main.tf", r"(rollback\s*=\s*)true", r"\g<1>false"),
    ("circuit breaker disabled", "modules/service/main.tf",
     r"(deployment_circuit_breaker \{\s*enable\s*=\s*)true", r"\g<1>false"),
    ("target group checks /", "modules/service/alb.tf", r'(path\s*=\s*)"/health"', r'\g<1>"/"'),
    ("API logs via awslogs", "modules/service/main.tf", r'logDriver = "awsfirelens"', 'logDriver = "awslogs"'),
    ("FireLens type fluentd", "modules/service/main.tf", r'type = "fluentbit"', 'type = "fluentd"'),
    ("sidecar container dropped", "modules/service/main.tf",
     r"jsonencode\(\[local\.agent_definition, local\.api_definition\]\)", "jsonencode([local.api_definition])"),
    ("API starts when the sidecar merely starts", "modules/service/main.tf",
     r'(condition\s*=\s*)"HEALTHY"', r'\g<1>"START"'),
    ("sidecar stops before the API", "modules/service/variables.tf",
     r'(variable "agent_stop_timeout_seconds" \{[^}]*?default\s*=\s*)60', r"\g<1>20"),
    ("sidecar health check command", "modules/service/main.tf",
     r'"/usr/local/bin/agent", "health"', '"/usr/local/bin/agent", "ready"'),
    ("secret as a plain environment value", "modules/service/main.tf",
     r'(\{ name = "PORT", value = tostring\(var\.app_port\) \},)', '\\g<1>\n      { name = "JWT_SECRET", value = "x" },'),
    ("secret missing from the API's secrets", "modules/service/main.tf", r'\n\s*"JWT_SECRET",', ""),
    ("plain secret value outside the task", "modules/observability/main.tf",
     r'(locals \{\n  prefix = "\$\{var\.name\}-"\n\})', '\\g<1>\nlocals {\n  x = [{ name = "OPENAI_API_KEY", value = "sk" }]\n}'),
    ("OTLP endpoint changed", "modules/service/main.tf", r'"http://127\.0\.0\.1:4318"', '"http://localhost:4317"'),
    ("backend without lock file", "envs/dev/versions.tf", r"(use_lockfile\s*=\s*)true", r"\g<1>false"),
    ("two envs share a state key", "envs/staging/versions.tf", r"envs/staging/terraform\.tfstate", "envs/dev/terraform.tfstate"),
    ("local backend", "envs/prod/versions.tf", r'backend "s3"', 'backend "local"'),
    ("prod RDS single-AZ", "envs/prod/settings.tf", r"(db_multi_az\s*=\s*)true", r"\g<1>false"),
    ("prod without deletion protection", "envs/prod/settings.tf", r"(deletion_protection\s*=\s*)true", r"\g<1>false"),
    ("env roots drift apart", "envs/dev/main.tf", r"(force_destroy\s*=\s*)local\.settings\.force_destroy", r"\g<1>true"),
    ("variable without description", "modules/kms/variables.tf",
     r'(variable "tags" \{)\n\s*description\s*=\s*"[^"]*"', r"\g<1>"),
    ("provider pin loosened", "modules/cache/versions.tf", r"~> 5\.80", ">= 5.0"),
    # agent provision owns dashboards/ and alerts/; Terraform keeps the rest
    ("dashboard back in Terraform", "modules/observability/main.tf", r"\Z",
     '\nresource "aws_cloudwatch_dashboard" "x" {\n  dashboard_name = "${var.name}-x"\n  dashboard_body = "{}"\n}\n'),
    ("dashboards_dir input back", "modules/observability/variables.tf", r"\Z",
     '\nvariable "dashboards_dir" {\n  description = "x"\n  type        = string\n}\n'),
    ("RDS CPU alarm duplicated in Terraform", "modules/observability/alarms.tf", r"\Z",
     '\nresource "aws_cloudwatch_metric_alarm" "db_cpu" {\n  alarm_name  = "${local.prefix}db-cpu-high"\n'
     '  namespace   = "AWS/RDS"\n  metric_name = "CPUUtilization"\n  threshold   = 80\n}\n'),
    ("ALB latency alarm dropped", "modules/observability/alarms.tf",
     r'(?s)resource "aws_cloudwatch_metric_alarm" "latency_p99" \{.*?\n\}\n', ""),
    ("Terraform alarm under the agent prefix", "modules/observability/alarms.tf",
     r'"\$\{local\.prefix\}api-5xx"', '"${local.prefix}agent-5xx"'),
    ("pager topic renamed", "modules/observability/main.tf", r'"\$\{var\.name\}-pager"', '"${var.name}-alerts"'),
    ("RDS identifier renamed", "modules/database/main.tf", r'"\$\{var\.name\}-postgres"', '"${var.name}-pg"'),
    ("sidecar without APP_ENV", "modules/service/main.tf",
     r'\n\s*\{ name = "APP_ENV", value = var\.environment \},(\n\s*\{ name = "AWS_REGION")', r"\g<1>"),
    ("sidecar APP_ENV hard-coded", "modules/service/main.tf",
     r'\{ name = "APP_ENV", value = var\.environment \},(\n\s*\{ name = "AWS_REGION")',
     '{ name = "APP_ENV", value = "prod" },\\g<1>'),
    # bootstrap/github.tf: the deploy workflows' roles
    ("OIDC provider for another audience", "bootstrap/github.tf",
     r'(client_id_list\s*=\s*)\["sts\.amazonaws\.com"\]', '\\g<1>["sigstore"]'),
    ("deploy role trusted for any ref", "bootstrap/github.tf",
     r'test\s*=\s*"StringEquals"(\s*variable\s*=\s*"\$\{local\.github_oidc_host\}:sub"\s*values\s*=\s*)'
     r'\["repo:\$\{var\.github_repository\}:environment:\$\{each\.key\}"\]',
     'test     = "StringLike"\\g<1>["repo:${var.github_repository}:*"]'),
    ("ECR push role trusts any repository", "bootstrap/github.tf",
     r'"repo:\$\{var\.github_repository\}:ref:', '"repo:*:ref:'),
    ("deploy role without audience", "bootstrap/github.tf",
     r'(?s)(data "aws_iam_policy_document" "github_deploy_assume" \{.*?)condition \{\s*test\s*=\s*"StringEquals"\s*'
     r'variable\s*=\s*"\$\{local\.github_oidc_host\}:aud"\s*values\s*=\s*\["sts\.amazonaws\.com"\]\s*\}', r"\g<1>"),
    ("repository variable defaulted", "bootstrap/variables.tf",
     r'(variable "github_repository" \{\n[^\n]*\n\s*type\s*=\s*string)', '\\g<1>\n  default = "octo/app"'),
    ("deploy role gets ecs:*", "bootstrap/github.tf",
     r'actions\s*=\s*\["ecs:DescribeServices", "ecs:UpdateService"\]', 'actions = ["ecs:DescribeServices", "ecs:UpdateService", "ecs:*"]'),
    ("deploy role may delete the service", "bootstrap/github.tf",
     r'"ecs:DescribeServices", "ecs:UpdateService"\]', '"ecs:DescribeServices", "ecs:UpdateService", "ecs:DeleteService"]'),
    ("scoped action on Resource *", "bootstrap/github.tf",
     r'actions\s*=\s*\["ecs:DescribeTaskDefinition"\]', 'actions = ["ecs:DescribeTaskDefinition", "ecs:StopTask"]'),
    ("alarms of every prefix", "bootstrap/github.tf",
     r'(?s)(sid\s*=\s*"PutAlarms".*?resources\s*=\s*\[")[^"]*"', '\\g<1>arn:aws:cloudwatch:*:*:alarm:*"'),
    ("dashboards outside the agent prefix", "bootstrap/github.tf",
     r"dashboard/\$\{each\.value\}-agent-\*", "dashboard/${each.value}-*"),
    ("alarms may call any action", "bootstrap/github.tf",
     r'(?s)\n\s*# The alarms may only notify[^\n]*\n\s*condition \{.*?\n    \}', ""),
    ("PassRole on any role", "bootstrap/github.tf", r"role/\$\{each\.value\}-api-task", "role/*"),
    ("PassRole to any service", "bootstrap/github.tf", r'\["ecs-tasks\.amazonaws\.com"\]', '["ec2.amazonaws.com"]'),
    ("RunTask on any cluster", "bootstrap/github.tf", r'(test\s*=\s*)"ArnEquals"(\s*variable\s*=\s*"ecs:cluster"\s*values\s*=\s*)\[[^\]]*\]',
     '\\g<1>"ArnLike"\\g<2>["*"]'),
    ("deploy role of another environment's service", "bootstrap/github.tf",
     r"service/\$\{each\.value\}/\$\{each\.value\}-api", "service/${each.value}/*"),
    ("service module role renamed", "modules/service/iam.tf", r'"\$\{var\.name\}-ecs-execution"', '"${var.name}-execution"'),
    ("ECR push to every repository", "bootstrap/github.tf", r"repository/\$\{name\}/\$\{image\}", "repository/*"),
    ("deploy role ARNs not an output", "bootstrap/outputs.tf", r'output "github_deploy_role_arns"', 'output "deploy_roles"'),
]


def run_suite():
    suite = unittest.defaultTestLoader.loadTestsFromModule(inv)
    result = unittest.TextTestRunner(stream=io.StringIO(), verbosity=0).run(suite)
    return result.testsRun, [t.id().rsplit(".", 1)[-1] for t, _ in result.failures + result.errors]


def main():
    source_root = inv.TF_ROOT
    original = {p.relative_to(source_root): doc for p, doc in inv.PARSED.items()}
    caught = survived = 0
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "terraform"
        shutil.copytree(source_root, root, ignore=shutil.ignore_patterns(".terraform", "__pycache__"))
        inv.TF_ROOT = root
        for label, rel, pattern, replacement in MUTANTS:
            path = root / rel
            text = path.read_text(encoding="utf-8")
            mutated, n = re.subn(pattern, replacement, text, count=1)
            if n == 0:
                print(f"STALE     {label}: pattern not found in {rel} (update mutants.py)")
                survived += 1
                continue
            path.write_text(mutated, encoding="utf-8")
            try:
                inv.PARSED = {root / r: doc for r, doc in original.items()}
                inv.PARSED[path] = inv._parse(mutated)
                _, failing = run_suite()
            finally:
                path.write_text(text, encoding="utf-8")
            if failing:
                caught += 1
                print(f"caught    {label}: {', '.join(sorted(set(failing)))}")
            else:
                survived += 1
                print(f"SURVIVED  {label}: no invariant test failed")
    # The unmutated code must pass, or every mutant above was caught for nothing.
    inv.TF_ROOT = source_root
    inv.PARSED = {source_root / r: doc for r, doc in original.items()}
    runs, failing = run_suite()
    if failing:
        print(f"baseline fails: {failing}")
        survived += 1
    print(f"mutants: {caught} caught, {survived} survived or stale (baseline: {runs} tests)")
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
