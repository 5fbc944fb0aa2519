"""The database migration as a one-off ECS task: run it, wait for it, fetch its exit code and log."""

from dataclasses import dataclass, field

from botocore.exceptions import ClientError

from . import service as ecs_service
from . import taskdef
from .aws import DeployError, error_code

# The sidecar names the API's log streams with this template (agent.example.toml, log_stream).
DEFAULT_STREAM_TEMPLATE = "{container}/{task_id}"
# How long a stopped task may take to be reported after StopTask (timeout path).
_STOP_GRACE_SECONDS = 120


@dataclass
class MigrationResult:
    task_arn: str
    exit_code: int | None
    reason: str
    log_group: str | None = None
    log_stream: str | None = None
    log_lines: list[str] | None = None  # None: no log stream found
    notes: list[str] = field(default_factory=list)

    @property
    def task_id(self) -> str:
        return self.task_arn.rsplit("/", 1)[-1]

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


def run(
    clients,
    cluster: str,
    service: str,
    task_definition_arn: str,
    *,
    container: str,
    command: list[str],
    timeout: float,
    poll: float,
    log_group: str | None,
    stream_template: str | None,
    log_wait: float,
    clock,
    sleep,
    log,
) -> MigrationResult:
    """Run `command` in `container` of `task_definition_arn` with the service's network settings.

    Raises DeployError when the task cannot be started at all; otherwise returns the result,
    whose `ok` says whether the container exited 0 (a task that timed out is stopped: each
    migration runs in its own transaction, so stopping one leaves the schema as it was).
    """
    svc = ecs_service.describe(clients, cluster, service)
    definition, _tags = taskdef.describe(clients, task_definition_arn)
    params = {
        "cluster": cluster,
        "taskDefinition": task_definition_arn,
        "count": 1,
        "startedBy": "deploy-migration",
        "overrides": {"containerOverrides": [{"name": container, "command": list(command)}]},
    }
    if svc.get("networkConfiguration"):
        params["networkConfiguration"] = svc["networkConfiguration"]
    if svc.get("capacityProviderStrategy"):
        params["capacityProviderStrategy"] = svc["capacityProviderStrategy"]
    else:
        params["launchType"] = svc.get("launchType") or "FARGATE"
        if params["launchType"] == "FARGATE" and svc.get("platformVersion"):
            params["platformVersion"] = svc["platformVersion"]
    try:
        response = clients.ecs.run_task(**params)
    except ClientError as error:
        raise DeployError(f"the migration task failed to start: {error}") from error
    failures = response.get("failures") or []
    tasks = response.get("tasks") or []
    if failures or not tasks:
        reasons = "; ".join(
            " ".join(f.get(key, "") for key in ("arn", "reason", "detail")).strip() for f in failures
        )
        raise DeployError(f"the migration task failed to start: {reasons or 'no task returned'}")
    task_arn = tasks[0]["taskArn"]
    log(f"migration task {task_arn} started ({' '.join(command)} in {container})")

    notes = []
    task = _wait_stopped(clients, cluster, task_arn, clock() + timeout, poll, clock, sleep, log)
    if task is None:
        notes.append(f"the task did not stop within {timeout:.0f}s and was stopped")
        log(notes[-1])
        try:
            clients.ecs.stop_task(cluster=cluster, task=task_arn, reason="migration timed out (deploy)")
        except ClientError as error:
            notes.append(f"StopTask failed: {error}")
        task = _wait_stopped(
            clients, cluster, task_arn, clock() + _STOP_GRACE_SECONDS, poll, clock, sleep, log
        ) or {"containers": [], "stoppedReason": "timed out"}

    # No exit code means the container never ran (image pull, secrets, network) or was killed.
    exit_code, reason = _container_outcome(task, container)
    result = MigrationResult(task_arn, exit_code, reason, notes=notes)
    group, stream = log_location(definition, container, result.task_id, log_group, stream_template)
    result.log_group, result.log_stream = group, stream
    if group and stream:
        result.log_lines = fetch_log(clients, group, stream, clock() + log_wait, poll, clock, sleep)
    else:
        notes.append(f"no log location known for container {container} (set --log-group)")
    return result


def _wait_stopped(clients, cluster, task_arn, deadline, poll, clock, sleep, log):
    """The task once its lastStatus is STOPPED, or None at the deadline."""
    last_status = None
    while True:
        try:
            response = clients.ecs.describe_tasks(cluster=cluster, tasks=[task_arn])
        except ClientError as error:
            raise DeployError(f"cannot describe the migration task: {error}") from error
        tasks = response.get("tasks") or []
        if tasks:
            task = tasks[0]
            if task.get("lastStatus") != last_status:
                last_status = task.get("lastStatus")
                log(f"migration task: {last_status}")
            if last_status == "STOPPED":
                return task
        if clock() >= deadline:
            return None
        sleep(poll)


def _container_outcome(task: dict, container: str) -> tuple[int | None, str]:
    reasons = []
    exit_code = None
    for c in task.get("containers", []):
        if c.get("name") == container:
            exit_code = c.get("exitCode")
            if c.get("reason"):
                reasons.append(c["reason"])
    for key in ("stopCode", "stoppedReason"):
        if task.get(key):
            reasons.append(task[key])
    return exit_code, " / ".join(reasons)


def log_location(
    definition: dict,
    container: str,
    task_id: str,
    group_override: str | None = None,
    stream_template: str | None = None,
) -> tuple[str | None, str | None]:
    """(log group, log stream) of `container`'s output in task `task_id`.

    awslogs: the driver's group and `<stream-prefix>/<container>/<task id>`. awsfirelens (the API
    here): the log router (the sidecar) writes to its AGENT_LOG_GROUP under its stream template,
    `{container}/{task_id}` by default.
    """
    containers = definition.get("containerDefinitions", [])
    target = next((c for c in containers if c.get("name") == container), None)
    if target is None:
        raise DeployError(f"no container named {container} in {definition.get('family')}")
    config = target.get("logConfiguration") or {}
    driver = config.get("logDriver")
    if driver == "awslogs":
        options = config.get("options") or {}
        prefix = options.get("awslogs-stream-prefix")
        stream = f"{prefix}/{container}/{task_id}" if prefix else None
        return group_override or options.get("awslogs-group"), stream
    if driver == "awsfirelens":
        router = next((c for c in containers if c.get("firelensConfiguration")), {})
        env = {e.get("name"): e.get("value") for e in router.get("environment", [])}
        template = stream_template or DEFAULT_STREAM_TEMPLATE
        stream = template.replace("{container}", container).replace("{task_id}", task_id)
        # The sidecar replaces what CloudWatch refuses in stream names.
        stream = stream.replace(":", "_").replace("*", "_")
        return group_override or env.get("AGENT_LOG_GROUP"), stream
    return group_override, None


def fetch_log(clients, group: str, stream: str, deadline, poll, clock, sleep) -> list[str] | None:
    """Every event of the stream, oldest first; None if the stream does not appear by `deadline`
    (the sidecar flushes within a second, but CloudWatch may take a moment to show it)."""
    while True:
        try:
            return _read_stream(clients, group, stream)
        except ClientError as error:
            if error_code(error) != "ResourceNotFoundException":
                raise DeployError(f"cannot read log stream {group} {stream}: {error}") from error
        if clock() >= deadline:
            return None
        sleep(poll)


def _read_stream(clients, group: str, stream: str) -> list[str]:
    lines = []
    params = {"logGroupName": group, "logStreamName": stream, "startFromHead": True}
    while True:
        page = clients.logs.get_log_events(**params)
        lines.extend(event["message"].rstrip("\n") for event in page.get("events", []))
        token = page.get("nextForwardToken")
        # The end of the stream is reached when the forward token stops changing.
        if not token or token == params.get("nextToken"):
            return lines
        params["nextToken"] = token
