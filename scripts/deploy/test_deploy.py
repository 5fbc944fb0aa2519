"""Tests of the deploy commands against the AWS emulator (moto, started by scripts/services.sh).

    .venv/bin/python -m unittest discover -s scripts/deploy

The emulator registers task definitions, keeps ECR images and log streams, and updates
services, so those paths run for real. It does not run containers or roll deployments out:
a task it starts never stops and a service deployment never completes. The tests of the
migration's wait/exit-code logic therefore replace DescribeTasks (and those of wait-stable
replace DescribeServices) with the answers ECS gives; every other call of those tests still
goes to the emulator.
"""

import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
from unittest import mock

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

from scripts.deploy import cli, migration, service, summary, taskdef  # noqa: E402
from scripts.deploy.aws import Clients, DeployError  # noqa: E402

_SERVICES_DIR = None
_ENV = {}


def setUpModule():
    global _SERVICES_DIR
    _SERVICES_DIR = tempfile.mkdtemp(prefix="deploy-tests-")
    subprocess.run(
        [os.path.join(REPO, "scripts", "services.sh"), "start", _SERVICES_DIR, "moto"],
        check=True, stdout=subprocess.DEVNULL,
    )
    with open(os.path.join(_SERVICES_DIR, "env"), encoding="utf-8") as f:
        for line in f:
            key, _, value = line.strip().removeprefix("export ").partition("=")
            if key.startswith("AWS_"):
                _ENV[key] = value


def tearDownModule():
    if _SERVICES_DIR:
        subprocess.run(
            [os.path.join(REPO, "scripts", "services.sh"), "stop", _SERVICES_DIR, "moto"],
            check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        shutil.rmtree(_SERVICES_DIR, ignore_errors=True)


class FakeClock:
    """time.monotonic and time.sleep for the polling loops: sleeping only moves the clock."""

    def __init__(self):
        self.now = 0.0
        self.sleeps = 0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds
        self.sleeps += 1


_MANIFEST = json.dumps({
    "schemaVersion": 2,
    "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
    "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 2,
               "digest": "sha256:" + "0" * 64},
    "layers": [],
})


class Stack:
    """An environment as Terraform leaves it, in the emulator: VPC, ECR repositories with
    images, the API log group, a cluster, the API + sidecar task definition and the service."""

    _count = 0

    def __init__(self, clients, name=None):
        Stack._count += 1
        self.clients = clients
        self.name = name or f"app-t{Stack._count}"
        self.cluster = self.name
        self.service = f"{self.name}-api"
        self.family = f"{self.name}-api"
        self.log_group = f"/ecs/{self.name}/api"

        ec2 = clients.client("ec2")
        vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
        # As modules/network sets it (the emulator's RunTask also needs it for the task's ENI).
        ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
        self.subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.20.1.0/24")["Subnet"]["SubnetId"]
        self.security_group = ec2.create_security_group(
            GroupName=f"{self.name}-api", Description="api tasks", VpcId=vpc)["GroupId"]

        self.repositories = {}
        for image in ("api", "agent"):
            repo = clients.ecr.create_repository(
                repositoryName=f"{self.name}/{image}", imageTagMutability="IMMUTABLE")["repository"]
            self.repositories[image] = repo["repositoryUri"]
            for tag in ("v1", "v2"):
                self.push(image, tag)

        clients.logs.create_log_group(logGroupName=self.log_group)
        clients.ecs.create_cluster(clusterName=self.cluster)
        self.revisions = [self.register_revision("v1")]
        clients.ecs.create_service(
            cluster=self.cluster, serviceName=self.service, taskDefinition=self.revisions[0],
            desiredCount=2, launchType="FARGATE", platformVersion="LATEST",
            networkConfiguration={"awsvpcConfiguration": {
                "subnets": [self.subnet], "securityGroups": [self.security_group],
                "assignPublicIp": "DISABLED"}},
            deploymentConfiguration={
                "deploymentCircuitBreaker": {"enable": True, "rollback": True},
                "minimumHealthyPercent": 100, "maximumPercent": 200},
        )

    def push(self, image, tag):
        self.clients.ecr.put_image(
            repositoryName=f"{self.name}/{image}", imageManifest=_MANIFEST, imageTag=tag)

    def register_revision(self, tag, family=None):
        arn = self.clients.ecs.register_task_definition(
            family=family or self.family,
            requiresCompatibilities=["FARGATE"], networkMode="awsvpc", cpu="512", memory="1024",
            executionRoleArn="arn:aws:iam::123456789012:role/app-ecs-execution",
            taskRoleArn="arn:aws:iam::123456789012:role/app-ecs-task",
            runtimePlatform={"operatingSystemFamily": "LINUX", "cpuArchitecture": "X86_64"},
            volumes=[{"name": "api-tmp"}, {"name": "agent-tmp"}],
            containerDefinitions=[
                {
                    "name": "agent", "image": f"{self.repositories['agent']}:{tag}", "essential": True,
                    "memoryReservation": 128,
                    "firelensConfiguration": {"type": "fluentbit",
                                              "options": {"enable-ecs-log-metadata": "true"}},
                    "environment": [{"name": "AGENT_LOG_GROUP", "value": self.log_group}],
                    "logConfiguration": {"logDriver": "awslogs", "options": {
                        "awslogs-group": f"/ecs/{self.name}/agent", "awslogs-region": "us-east-1",
                        "awslogs-stream-prefix": "agent"}},
                },
                {
                    "name": "api", "image": f"{self.repositories['api']}:{tag}", "essential": True,
                    # The emulator's RunTask adds up container memory (Terraform sets only the
                    # task's), so the API gets a reservation here.
                    "memoryReservation": 512,
                    "portMappings": [{"containerPort": 8080, "hostPort": 8080, "protocol": "tcp"}],
                    "environment": [{"name": "APP_ENV", "value": "staging"}],
                    "secrets": [{"name": "DATABASE_URL", "valueFrom":
                                 "arn:aws:secretsmanager:us-east-1:123456789012:secret:app/staging/DATABASE_URL"}],
                    "logConfiguration": {"logDriver": "awsfirelens"},
                    "dependsOn": [{"containerName": "agent", "condition": "HEALTHY"}],
                    "healthCheck": {"command": ["CMD", "/usr/local/bin/api", "healthcheck"],
                                    "interval": 10, "timeout": 5, "retries": 3, "startPeriod": 15},
                },
            ],
            tags=[{"key": "Environment", "value": "staging"}],
        )["taskDefinition"]["taskDefinitionArn"]
        return arn

    def service_task_definition(self):
        return service.describe(self.clients, self.cluster, self.service)["taskDefinition"]


class DeployTestCase(unittest.TestCase):
    def setUp(self):
        self.clients = Clients(_ENV)
        self.stack = Stack(self.clients)
        tmp = tempfile.mkdtemp(prefix="deploy-test-")
        self.addCleanup(shutil.rmtree, tmp, ignore_errors=True)
        self.summary_path = os.path.join(tmp, "summary.md")
        self.clock = FakeClock()

    def run_cli(self, *args, github_actions=False):
        env = dict(_ENV, GITHUB_STEP_SUMMARY=self.summary_path)
        if github_actions:
            env["GITHUB_ACTIONS"] = "true"
        out, err = io.StringIO(), io.StringIO()
        code = cli.main(
            list(args), env=env, clients=self.clients, stdout=out, stderr=err,
            clock=self.clock, sleep=self.clock.sleep,
        )
        return code, out.getvalue(), err.getvalue()

    def service_args(self):
        return ["--cluster", self.stack.cluster, "--service", self.stack.service]

    def job_summary(self):
        if not os.path.exists(self.summary_path):
            return ""
        with open(self.summary_path, encoding="utf-8") as f:
            return f.read()


class RenderTaskDefinitionTest(DeployTestCase):
    def test_render_swaps_both_images_and_registers_the_next_revision(self):
        code, out, err = self.run_cli("render-task-definition", *self.service_args(), "--tag", "v2")
        self.assertEqual(code, 0, err)
        new_arn = out.strip()
        self.assertEqual(taskdef.family_and_revision(new_arn), (self.stack.family, 2))

        old, _ = taskdef.describe(self.clients, self.stack.revisions[0])
        new, tags = taskdef.describe(self.clients, new_arn)
        images = {c["name"]: c["image"] for c in new["containerDefinitions"]}
        self.assertEqual(images, {
            "agent": f"{self.stack.repositories['agent']}:v2",
            "api": f"{self.stack.repositories['api']}:v2",
        })
        # Everything but the images is carried over, tags included.
        for key in ("cpu", "memory", "networkMode", "executionRoleArn", "taskRoleArn", "volumes"):
            self.assertEqual(new.get(key), old.get(key), key)
        for before, after in zip(old["containerDefinitions"], new["containerDefinitions"]):
            self.assertEqual({**before, "image": None}, {**after, "image": None})
        self.assertEqual(tags, [{"key": "Environment", "value": "staging"}])
        # Registering does not deploy.
        self.assertEqual(self.stack.service_task_definition(), self.stack.revisions[0])

    def test_render_drops_every_read_only_field(self):
        described, _ = taskdef.describe(self.clients, self.stack.revisions[0])
        present = [f for f in taskdef.READ_ONLY_FIELDS if f in described]
        self.assertIn("taskDefinitionArn", present)  # the emulator does return them
        self.assertIn("revision", present)
        request = taskdef.render(described, {"api": "example.com/api:x"})
        self.assertEqual([f for f in taskdef.READ_ONLY_FIELDS if f in request], [])
        self.assertEqual(request["family"], self.stack.family)

    def test_render_with_one_container_leaves_the_other_alone(self):
        code, out, err = self.run_cli(
            "render-task-definition", *self.service_args(), "--tag", "v2", "--container", "api")
        self.assertEqual(code, 0, err)
        new, _ = taskdef.describe(self.clients, out.strip())
        images = {c["name"]: c["image"] for c in new["containerDefinitions"]}
        self.assertEqual(images["api"], f"{self.stack.repositories['api']}:v2")
        self.assertEqual(images["agent"], f"{self.stack.repositories['agent']}:v1")

    def test_render_refuses_an_image_missing_from_ecr_and_registers_nothing(self):
        code, out, err = self.run_cli("render-task-definition", *self.service_args(), "--tag", "v3")
        self.assertEqual(code, 1)
        self.assertEqual(out, "")
        self.assertIn("image not found in ECR", err)
        self.assertIn(f"{self.stack.repositories['api']}:v3", err)
        arns = self.clients.ecs.list_task_definitions(familyPrefix=self.stack.family)["taskDefinitionArns"]
        self.assertEqual(arns, self.stack.revisions)

    def test_render_refuses_an_unknown_container(self):
        code, _, err = self.run_cli(
            "render-task-definition", *self.service_args(), "--tag", "v2", "--container", "worker")
        self.assertEqual(code, 1)
        self.assertIn("no container named worker", err)

    def test_image_references_split_into_repository_tag_and_digest(self):
        image = taskdef.Image.parse("123456789012.dkr.ecr.us-east-1.amazonaws.com/app-prod/api:abc")
        self.assertEqual(image.ecr(), ("123456789012", "us-east-1", "app-prod/api"))
        self.assertEqual(image.tag, "abc")
        pinned = taskdef.Image.parse("registry:5000/team/api@sha256:" + "a" * 64)
        self.assertEqual((pinned.repository, pinned.tag), ("registry:5000/team/api", None))
        self.assertIsNone(pinned.ecr())
        self.assertEqual(pinned.with_tag("def"), "registry:5000/team/api:def")
        with self.assertRaises(DeployError):
            image.with_tag("bad tag")


class RollbackTest(DeployTestCase):
    def test_rollback_target_is_the_previous_active_revision(self):
        # Revisions 2 and 3, then 3 deregistered; another family sharing the prefix.
        self.stack.revisions += [self.stack.register_revision("v2"), self.stack.register_revision("v2")]
        self.clients.ecs.deregister_task_definition(taskDefinition=self.stack.revisions[2])
        self.stack.register_revision("v2", family=f"{self.stack.family}-worker")
        fourth = self.stack.register_revision("v2")
        service.update(self.clients, self.stack.cluster, self.stack.service, fourth)

        code, out, err = self.run_cli("rollback-target", *self.service_args())
        self.assertEqual(code, 0, err)
        self.assertEqual(out.strip(), self.stack.revisions[1])

    def test_rollback_target_ignores_families_that_share_the_prefix(self):
        # ECS's familyPrefix is a prefix match; the emulator matches the family exactly.
        arn = "arn:aws:ecs:us-east-1:123456789012:task-definition/{}:{}"
        listed = [arn.format("app-prod-api-worker", 9), arn.format("app-prod-api", 7),
                  arn.format("app-prod-api", 5), arn.format("app-prod-api", 8)]
        self.assertEqual(taskdef.latest_before(listed, arn.format("app-prod-api", 8)),
                         arn.format("app-prod-api", 7))
        with self.assertRaises(DeployError):
            taskdef.latest_before([arn.format("app-prod-api-worker", 1)], arn.format("app-prod-api", 8))

    def test_rollback_target_checks_the_recorded_revision(self):
        code, out, _ = self.run_cli(
            "rollback-target", *self.service_args(), "--recorded", f"{self.stack.family}:1")
        self.assertEqual((code, out.strip()), (0, self.stack.revisions[0]))
        self.clients.ecs.deregister_task_definition(taskDefinition=self.stack.revisions[0])
        code, _, err = self.run_cli("rollback-target", *self.service_args(), "--recorded", self.stack.revisions[0])
        self.assertEqual(code, 1)
        self.assertIn("INACTIVE", err)

    def test_rollback_target_without_an_earlier_revision_fails(self):
        code, out, err = self.run_cli("rollback-target", *self.service_args())
        self.assertEqual((code, out), (1, ""))
        self.assertIn("no ACTIVE revision", err)

    def test_update_service_to_a_new_revision_then_roll_back_to_the_recorded_one(self):
        code, recorded, _ = self.run_cli("current", *self.service_args())
        self.assertEqual(code, 0)
        before = dict(line.split("=", 1) for line in recorded.splitlines())
        self.assertEqual(before["task_definition_arn"], self.stack.revisions[0])
        self.assertEqual(before["api_image_tag"], "v1")
        self.assertEqual(before["agent_image_repository"], self.stack.repositories["agent"])

        _, new_arn, _ = self.run_cli("render-task-definition", *self.service_args(), "--tag", "v2")
        code, _, err = self.run_cli("update-service", *self.service_args(), "--task-definition", new_arn.strip())
        self.assertEqual(code, 0, err)
        self.assertEqual(self.stack.service_task_definition(), new_arn.strip())

        code, out, err = self.run_cli(
            "rollback", *self.service_args(), "--to", before["task_definition_arn"], "--no-wait")
        self.assertEqual(code, 0, err)
        self.assertEqual(out.strip(), self.stack.revisions[0])
        self.assertEqual(self.stack.service_task_definition(), self.stack.revisions[0])
        self.assertIn(f"Rolled {self.stack.service} back to `{self.stack.revisions[0]}`", self.job_summary())

    def test_rollback_without_a_recorded_revision_goes_to_the_previous_one(self):
        second = self.stack.register_revision("v2")
        service.update(self.clients, self.stack.cluster, self.stack.service, second)
        code, out, err = self.run_cli("rollback", *self.service_args(), "--no-wait")
        self.assertEqual(code, 0, err)
        self.assertEqual(self.stack.service_task_definition(), self.stack.revisions[0])


def _deployments(*items):
    return {"services": [{"status": "ACTIVE", "serviceName": "svc", "taskDefinition": items[0][0],
                          "events": [], "deployments": [
                              {"status": status, "taskDefinition": arn, "rolloutState": state,
                               "rolloutStateReason": f"reason for {state}", "runningCount": running,
                               "desiredCount": 2}
                              for arn, status, state, running in items]}]}


class WaitStableTest(DeployTestCase):
    """DescribeServices answers as ECS gives them during a rollout (the emulator never rolls out)."""

    def wait(self, *answers):
        with mock.patch.object(self.clients.ecs, "describe_services", side_effect=list(answers)):
            return self.run_cli("wait-stable", *self.service_args(), "--task-definition",
                                self.new, "--timeout", "600", "--poll", "15")

    def setUp(self):
        super().setUp()
        self.old = self.stack.revisions[0]
        self.new = self.stack.register_revision("v2")

    def test_waits_until_the_new_deployment_completed_alone(self):
        code, _, err = self.wait(
            _deployments((self.new, "PRIMARY", "IN_PROGRESS", 1), (self.old, "ACTIVE", "COMPLETED", 2)),
            _deployments((self.new, "PRIMARY", "COMPLETED", 2), (self.old, "ACTIVE", "COMPLETED", 1)),
            _deployments((self.new, "PRIMARY", "COMPLETED", 2)),
        )
        self.assertEqual(code, 0, err)
        self.assertEqual(self.clock.sleeps, 2)

    def test_a_circuit_breaker_rollback_fails_the_wait(self):
        code, _, err = self.wait(
            _deployments((self.new, "PRIMARY", "IN_PROGRESS", 0), (self.old, "ACTIVE", "COMPLETED", 2)),
            _deployments((self.old, "PRIMARY", "IN_PROGRESS", 2), (self.new, "ACTIVE", "FAILED", 0)),
        )
        self.assertEqual(code, 1)
        self.assertIn("replaced by one of " + self.old, err)
        self.assertIn("reason for FAILED", err)

    def test_a_failed_rollout_fails_the_wait(self):
        code, _, err = self.wait(_deployments((self.new, "PRIMARY", "FAILED", 0)))
        self.assertEqual(code, 1)
        self.assertIn("failed: reason for FAILED", err)

    def test_gives_up_after_the_timeout(self):
        stuck = _deployments((self.new, "PRIMARY", "IN_PROGRESS", 1), (self.old, "ACTIVE", "COMPLETED", 2))
        code, _, err = self.wait(*[stuck] * 50)
        self.assertEqual(code, 1)
        self.assertIn("not stable", err)
        self.assertEqual(self.clock.now, 600)


class RunMigrationTest(DeployTestCase):
    """RunTask, StopTask, the task definition and the log stream are the emulator's; DescribeTasks
    is replaced by the answers ECS gives for a task that runs and stops (the emulator cannot run
    containers)."""

    def setUp(self):
        super().setUp()
        self.new = self.stack.register_revision("v2")

    def migrate(self, *task_states, log_lines=None, timeout=900, github_actions=False):
        """Run `run-migration`; task_states are (lastStatus, exitCode, reason) per DescribeTasks call."""
        started = []
        now_ms = int(time.time() * 1000)
        real_run_task = self.clients.ecs.run_task

        def run_task(**params):
            response = real_run_task(**params)
            started.append(response["tasks"][0]["taskArn"])
            if log_lines is not None:
                stream = f"api/{started[0].rsplit('/', 1)[-1]}"
                self.clients.logs.create_log_stream(logGroupName=self.stack.log_group, logStreamName=stream)
                self.clients.logs.put_log_events(
                    logGroupName=self.stack.log_group, logStreamName=stream,
                    logEvents=[{"timestamp": now_ms + i, "message": m} for i, m in enumerate(log_lines)])
            return response

        def describe_tasks(cluster, tasks):
            state, exit_code, reason = next(states)
            container = {"name": "api", "lastStatus": state}
            if exit_code is not None:
                container["exitCode"] = exit_code
            if reason:
                container["reason"] = reason
            task = {"taskArn": tasks[0], "lastStatus": state,
                    "containers": [container, {"name": "agent", "lastStatus": state, "exitCode": 0}]}
            if state == "STOPPED":
                task["stoppedReason"] = "Essential container in task exited"
            return {"tasks": [task], "failures": []}

        states = iter(task_states)
        with mock.patch.object(self.clients.ecs, "run_task", side_effect=run_task), \
                mock.patch.object(self.clients.ecs, "describe_tasks", side_effect=describe_tasks):
            result = self.run_cli("run-migration", *self.service_args(), "--task-definition", self.new,
                                  "--timeout", str(timeout), "--log-wait", "30",
                                  github_actions=github_actions)
        return result, started

    def the_task(self, task_arn):
        """The task as the emulator recorded it (not the replaced DescribeTasks)."""
        return self.clients.ecs.describe_tasks(cluster=self.stack.cluster, tasks=[task_arn])["tasks"][0]

    def test_exit_code_0_succeeds_and_prints_the_log(self):
        log = ['{"level":"info","message":"applied","version":3,"name":"add_users"}',
               '{"level":"info","message":"migrations up to date"}']
        (code, out, err), started = self.migrate(
            ("PROVISIONING", None, None), ("RUNNING", None, None), ("STOPPED", 0, None), log_lines=log)
        self.assertEqual(code, 0, err)
        self.assertIn("migration succeeded", err)
        for line in log:
            self.assertIn(line, out)
        # The task ran the new revision with the service's network and `migrate up` in api.
        task = self.the_task(started[0])
        self.assertEqual(task["taskDefinitionArn"], self.new)
        self.assertEqual(task["overrides"]["containerOverrides"], [{"name": "api", "command": ["migrate", "up"]}])
        self.assertEqual(task["launchType"], "FARGATE")
        self.assertIn("✅ Database migration", self.job_summary())
        self.assertIn("migrations up to date", self.job_summary())
        self.assertEqual(self.stack.service_task_definition(), self.stack.revisions[0])

    def test_exit_code_1_fails_prints_the_log_and_leaves_the_service_alone(self):
        log = ['{"level":"error","message":"migration 0004_add_index failed: relation exists"}']
        (code, out, err), _ = self.migrate(("RUNNING", None, None), ("STOPPED", 1, None), log_lines=log)
        self.assertEqual(code, 1)
        self.assertIn("migration failed", err)
        self.assertIn("exit code 1", err)
        self.assertIn(log[0], out)
        self.assertIn("❌ Database migration", self.job_summary())
        self.assertIn("0004_add_index failed", self.job_summary())
        self.assertEqual(self.stack.service_task_definition(), self.stack.revisions[0])

    def test_a_container_that_never_ran_fails_with_its_reason(self):
        (code, _, err), _ = self.migrate(
            ("STOPPED", None, "CannotPullContainerError: pull image manifest has been retried 5 times"))
        self.assertEqual(code, 1)
        self.assertIn("exit code none", err)
        self.assertIn("CannotPullContainerError", err)
        self.assertIn("no log stream", err)

    def test_a_task_that_cannot_start_fails_with_the_reason(self):
        refused = {"tasks": [], "failures": [{"arn": self.new, "reason": "RESOURCE:ENI"}]}
        with mock.patch.object(self.clients.ecs, "run_task", return_value=refused):
            code, _, err = self.run_cli("run-migration", *self.service_args(), "--task-definition", self.new)
        self.assertEqual(code, 1)
        self.assertIn("failed to start", err)
        self.assertIn("RESOURCE:ENI", err)

    def test_a_migration_that_outlasts_the_timeout_is_stopped_and_fails(self):
        (code, _, err), started = self.migrate(
            *[("RUNNING", None, None)] * 20, ("STOPPED", 137, None), timeout=60)
        self.assertEqual(code, 1)
        self.assertIn("did not stop within 60s", err)
        self.assertEqual(self.the_task(started[0])["lastStatus"], "STOPPED")  # StopTask reached the emulator
        self.assertIn("exit code 137", err)

    def test_log_lines_cannot_issue_workflow_commands(self):
        log = ["::add-mask::nothing", "::error::forged"]
        (code, out, _), _ = self.migrate(("STOPPED", 0, None), log_lines=log, github_actions=True)
        self.assertEqual(code, 0)
        lines = out.splitlines()
        stop = next(i for i, line in enumerate(lines) if line.startswith("::stop-commands::"))
        token = lines[stop].split("::")[2]
        resume = lines.index(f"::{token}::")
        self.assertLess(stop, lines.index("::add-mask::nothing"))
        self.assertGreater(resume, lines.index("::error::forged"))

    def test_log_location_follows_the_log_driver(self):
        definition, _ = taskdef.describe(self.clients, self.new)
        self.assertEqual(migration.log_location(definition, "api", "abc"), (self.stack.log_group, "api/abc"))
        self.assertEqual(migration.log_location(definition, "agent", "abc"),
                         (f"/ecs/{self.stack.name}/agent", "agent/agent/abc"))
        self.assertEqual(migration.log_location(definition, "api", "abc", "/other", "{task_id}:{container}"),
                         ("/other", "abc_api"))


class SummaryTest(unittest.TestCase):
    def test_nothing_is_written_without_github_step_summary(self):
        self.assertFalse(summary.append("# x", {}))

    def test_appends_to_the_step_summary(self):
        with tempfile.NamedTemporaryFile("r", suffix=".md") as f:
            self.assertTrue(summary.append("one", {"GITHUB_STEP_SUMMARY": f.name}))
            self.assertTrue(summary.append("two", {"GITHUB_STEP_SUMMARY": f.name}))
            self.assertEqual(f.read(), "one\n\ntwo\n\n")

    def test_output_cannot_close_its_code_block(self):
        block = summary.code_block("a\n````\nb")
        self.assertTrue(block.startswith("`````text\n"))
        self.assertTrue(block.endswith("\n`````"))

    def test_long_output_keeps_its_end(self):
        text = "\n".join(f"line {i}" for i in range(10_000))
        block = summary.code_block(text, max_chars=1_000)
        self.assertIn("line 9999", block)
        self.assertNotIn("line 1\n", block)
        self.assertIn("earlier lines cut", block)
        self.assertLess(len(block), 1_100)

    def test_smoke_test_summary_shows_the_outcome_and_the_probe_output(self):
        markdown = summary.step_markdown("Smoke test (staging)", "failure", "FAIL /api/health/db 503\n")
        self.assertIn("❌ Smoke test (staging): failure", markdown)
        self.assertIn("FAIL /api/health/db 503", markdown)

    def test_plan_comment_has_its_marker_and_the_plan_line(self):
        markdown = summary.plan_markdown("prod", 2, "...\nPlan: 1 to add, 2 to change, 0 to destroy.\n")
        self.assertTrue(markdown.startswith("<!-- infra-plan:prod -->"))
        self.assertIn("Plan: 1 to add, 2 to change, 0 to destroy.", markdown)
        self.assertIn("(changes)", summary.plan_markdown("prod", 2, ""))
        self.assertIn("(failed)", summary.plan_markdown("prod", 1, "Error: x"))


if __name__ == "__main__":
    unittest.main()
