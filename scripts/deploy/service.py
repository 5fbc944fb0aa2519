"""The ECS service: what it runs, rolling it onto a revision, waiting for the rollout, rollback."""

from botocore.exceptions import ClientError

from . import taskdef
from .aws import DeployError


def describe(clients, cluster: str, service: str) -> dict:
    try:
        response = clients.ecs.describe_services(cluster=cluster, services=[service])
    except ClientError as error:
        raise DeployError(f"cannot describe service {service} in {cluster}: {error}") from error
    services = [s for s in response.get("services", []) if s.get("status") == "ACTIVE"]
    if not services:
        reasons = ", ".join(f.get("reason", "?") for f in response.get("failures", []))
        raise DeployError(f"no ACTIVE service {service} in cluster {cluster} ({reasons or 'none'})")
    return services[0]


def current(clients, cluster: str, service: str) -> dict[str, str]:
    """What the service runs now, as flat key=value pairs (for $GITHUB_OUTPUT).

    task_definition_arn, and for each container <name>_image, <name>_image_repository and
    <name>_image_tag.
    """
    arn = describe(clients, cluster, service)["taskDefinition"]
    definition, _tags = taskdef.describe(clients, arn)
    values = {"task_definition_arn": definition["taskDefinitionArn"]}
    for container in definition["containerDefinitions"]:
        key = "".join(ch if ch.isalnum() else "_" for ch in container["name"])
        image = taskdef.Image.parse(container["image"])
        values[f"{key}_image"] = container["image"]
        values[f"{key}_image_repository"] = image.repository
        values[f"{key}_image_tag"] = image.tag or ""
    return values


def update(clients, cluster: str, service: str, task_definition_arn: str) -> None:
    try:
        clients.ecs.update_service(
            cluster=cluster, service=service, taskDefinition=task_definition_arn
        )
    except ClientError as error:
        raise DeployError(f"UpdateService to {task_definition_arn} failed: {error}") from error


def wait_stable(
    clients,
    cluster: str,
    service: str,
    task_definition_arn: str,
    *,
    timeout: float,
    poll: float,
    clock,
    sleep,
    log,
) -> None:
    """Return once `task_definition_arn`'s deployment is the only one and has completed.

    Raise DeployError when it failed (rolloutState FAILED), when another deployment replaced
    it (the circuit breaker rolls back by starting a deployment of the previous revision,
    which then becomes PRIMARY), or after `timeout` seconds. ECS's own `services_stable`
    waiter would report success after a circuit-breaker rollback, since the service is
    stable again, on the old revision.
    """
    deadline = clock() + timeout
    seen_events: set[str] | None = None
    while True:
        svc = describe(clients, cluster, service)
        seen_events = _log_new_events(svc, seen_events, log)
        deployments = svc.get("deployments", [])
        primary = next((d for d in deployments if d.get("status") == "PRIMARY"), None)
        ours = next((d for d in deployments if d.get("taskDefinition") == task_definition_arn), None)
        if primary is None:
            raise DeployError(f"service {service} has no PRIMARY deployment")
        if primary.get("taskDefinition") != task_definition_arn:
            detail = f": {ours.get('rolloutStateReason')}" if ours and ours.get("rolloutStateReason") else ""
            raise DeployError(
                f"the deployment of {task_definition_arn} was replaced by one of "
                f"{primary.get('taskDefinition')} (circuit breaker rollback?){detail}"
            )
        state = primary.get("rolloutState")
        if state == "FAILED":
            raise DeployError(
                f"deployment of {task_definition_arn} failed: {primary.get('rolloutStateReason', '')}"
            )
        running, desired = primary.get("runningCount", 0), primary.get("desiredCount", 0)
        # rolloutState is only reported with the circuit breaker on; without it, a single
        # deployment running its desired count is the steady state.
        if state in ("COMPLETED", None) and len(deployments) == 1 and running == desired:
            log(f"service {service} is stable on {task_definition_arn} ({running}/{desired} tasks)")
            return
        if clock() >= deadline:
            raise DeployError(
                f"service {service} not stable on {task_definition_arn} after {timeout:.0f}s "
                f"(rollout {state or 'unknown'}, {running}/{desired} tasks running, "
                f"{len(deployments)} deployments)"
            )
        sleep(poll)


def _log_new_events(svc: dict, seen: set[str] | None, log) -> set[str]:
    """Log service events not seen before; on the first call only remember them (history)."""
    events = svc.get("events", [])
    ids = {e.get("id", "") for e in events}
    if seen is not None:
        for event in reversed(events):  # ECS lists the newest first
            if event.get("id", "") not in seen:
                log(f"event: {event.get('message', '')}")
    return ids | (seen or set())


def rollback(
    clients,
    cluster: str,
    service: str,
    to: str | None,
    *,
    wait: bool,
    timeout: float,
    poll: float,
    clock,
    sleep,
    log,
) -> str:
    """Put the service back on `to` (the revision recorded before the deploy) or, without it,
    on the ACTIVE revision before the one it runs now. Returns the target ARN."""
    running = describe(clients, cluster, service)["taskDefinition"]
    if to:
        target = taskdef.describe(clients, to)[0]["taskDefinitionArn"]
    else:
        target = taskdef.previous_active(clients, running)
    if running == target:
        # The circuit breaker may already have rolled back; then only wait for stability.
        log(f"service {service} already runs {target}")
    else:
        log(f"rolling {service} back from {running} to {target}")
        update(clients, cluster, service, target)
    if wait:
        wait_stable(
            clients, cluster, service, target,
            timeout=timeout, poll=poll, clock=clock, sleep=sleep, log=log,
        )
    return target
