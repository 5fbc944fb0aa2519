"""Command line of the deploy steps: argument parsing, output, exit codes (0 ok, 1 failed, 2 usage).

Values meant for other steps (ARNs, key=value lines for $GITHUB_OUTPUT, Markdown) go to stdout;
progress and errors go to stderr.
"""

import argparse
import os
import secrets
import sys
import time

from . import migration, service, summary, taskdef
from .aws import Clients, DeployError


def main(argv=None, *, env=None, clients=None, stdout=None, stderr=None, clock=None, sleep=None) -> int:
    env = os.environ if env is None else env
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    args = _parser(env).parse_args(argv)
    ctx = _Context(env, clients or Clients(env), out, err, clock or time.monotonic, sleep or time.sleep)
    try:
        return args.run(ctx, args) or 0
    except DeployError as error:
        ctx.error(str(error))
        return 1


class _Context:
    def __init__(self, env, clients, out, err, clock, sleep):
        self.env, self.clients, self.out, self.err = env, clients, out, err
        self.clock, self.sleep = clock, sleep

    def log(self, message: str) -> None:
        print(message, file=self.err, flush=True)

    def error(self, message: str) -> None:
        # An annotation on the run page in GitHub Actions; a plain line elsewhere.
        prefix = "::error::" if self.in_actions else "error: "
        print(prefix + message.replace("\n", " "), file=self.err, flush=True)

    @property
    def in_actions(self) -> bool:
        return self.env.get("GITHUB_ACTIONS") == "true"

    def print_untrusted(self, title: str, lines: list[str]) -> None:
        """Print lines we did not write (a task's log) so that none of them can act as a
        workflow command (`::add-mask::`, `::set-env::`...) in GitHub Actions."""
        if not self.in_actions:
            print(f"--- {title}", file=self.out)
            print("\n".join(lines), file=self.out, flush=True)
            return
        token = secrets.token_hex(16)
        print(f"::group::{title}", file=self.out)
        print(f"::stop-commands::{token}", file=self.out)
        print("\n".join(lines), file=self.out)
        print(f"::{token}::", file=self.out)
        print("::endgroup::", file=self.out, flush=True)


def _parser(env) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python3 -m scripts.deploy", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="command")

    def command(name, run, help_text, service_args=True):
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(run=run)
        if service_args:
            sub.add_argument("--cluster", default=env.get("ECS_CLUSTER"), required=not env.get("ECS_CLUSTER"),
                             help="ECS cluster (default: $ECS_CLUSTER)")
            sub.add_argument("--service", default=env.get("ECS_SERVICE"), required=not env.get("ECS_SERVICE"),
                             help="ECS service (default: $ECS_SERVICE)")
        return sub

    def waiting(sub, timeout, poll=15):
        sub.add_argument("--timeout", type=float, default=timeout, help=f"seconds (default {timeout})")
        sub.add_argument("--poll", type=float, default=poll, help=f"seconds between checks (default {poll})")

    command("current", _current,
            "Print the service's task definition ARN and each container's image, tag and repository "
            "as key=value lines (append them to $GITHUB_OUTPUT).")

    sub = command("render-task-definition", _render,
                  "Register a copy of the service's task definition with new images (read-only fields "
                  "dropped); print the new revision's ARN.")
    sub.add_argument("--from", dest="source", help="task definition to copy (default: the service's)")
    sub.add_argument("--tag", help="new tag for the images of --container")
    sub.add_argument("--container", action="append", default=[],
                     help="container whose image gets --tag (repeatable; default: api and agent)")
    sub.add_argument("--image", action="append", default=[], metavar="NAME=URI",
                     help="set a container's image to a full URI (repeatable)")
    sub.add_argument("--no-verify-images", action="store_true",
                     help="skip checking that ECR has every new image")

    sub = command("rollback-target", _rollback_target,
                  "Print the revision a rollback goes to: --recorded (checked to exist), else the "
                  "ACTIVE revision of the family before the one the service runs.")
    sub.add_argument("--recorded", help="task definition recorded before the deploy")

    sub = command("run-migration", _run_migration,
                  "Run `api migrate up` as a one-off task with the service's network settings, wait "
                  "until it stops, print its exit code and log; exit 1 unless the container exited 0.")
    sub.add_argument("--task-definition", required=True, help="revision to run (the new one)")
    sub.add_argument("--container", default="api")
    sub.add_argument("--command", nargs="+", default=["migrate", "up"], help="default: migrate up")
    sub.add_argument("--log-group",
                     help="log group of the container's output (default: from the task definition)")
    sub.add_argument("--log-stream-template",
                     help=f"sidecar stream template (default {migration.DEFAULT_STREAM_TEMPLATE})")
    sub.add_argument("--log-wait", type=float, default=60,
                     help="seconds to wait for the log stream (default 60)")
    waiting(sub, 900, poll=6)

    sub = command("update-service", _update_service,
                  "Point the service at a task definition revision; with --wait, wait as wait-stable does.")
    sub.add_argument("--task-definition", required=True)
    sub.add_argument("--wait", action="store_true")
    waiting(sub, 1800)

    sub = command("wait-stable", _wait_stable,
                  "Wait until the revision's deployment completed; exit 1 if it failed, was rolled back "
                  "by the circuit breaker, or timed out.")
    sub.add_argument("--task-definition", required=True)
    waiting(sub, 1800)

    sub = command("rollback", _rollback,
                  "Update the service to --to (the revision recorded before the deploy) or to the "
                  "rollback target, and wait until it is stable.")
    sub.add_argument("--to", help="task definition to go back to (default: rollback-target)")
    sub.add_argument("--no-wait", action="store_true")
    waiting(sub, 1800)

    sub = command("summary", _summary,
                  "Append a step's outcome and output to $GITHUB_STEP_SUMMARY (print it when unset).",
                  service_args=False)
    sub.add_argument("--title", required=True)
    sub.add_argument("--status", required=True, help="the step's outcome: success, failure, cancelled, skipped")
    sub.add_argument("--file", help="the step's output (a missing file counts as no output)")

    sub = command("plan-comment", _plan_comment,
                  "Print the Markdown pull-request comment for a terraform plan.", service_args=False)
    sub.add_argument("--environment", required=True)
    sub.add_argument("--exit-code", type=int, required=True, help="terraform plan -detailed-exitcode's status")
    sub.add_argument("--plan-file", required=True)
    return parser


def _current(ctx, args):
    for key, value in service.current(ctx.clients, args.cluster, args.service).items():
        print(f"{key}={value}", file=ctx.out)


def _render(ctx, args):
    source = args.source or service.describe(ctx.clients, args.cluster, args.service)["taskDefinition"]
    definition, tags = taskdef.describe(ctx.clients, source)
    images = {}
    if args.tag:
        images.update(taskdef.images_with_tag(definition, args.container or ["api", "agent"], args.tag))
    elif args.container:
        raise DeployError("--container needs --tag")
    for item in args.image:
        name, sep, uri = item.partition("=")
        if not sep or not name or not uri:
            raise DeployError(f"--image takes NAME=URI, not {item!r}")
        images[name] = uri
    if not images:
        raise DeployError("nothing to change: give --tag or --image")
    if not args.no_verify_images:
        taskdef.verify_images_exist(ctx.clients, images.values())
    arn = taskdef.register(ctx.clients, taskdef.render(definition, images), tags)
    for name, uri in sorted(images.items()):
        ctx.log(f"{name}: {uri}")
    ctx.log(f"registered {arn} (from {definition['taskDefinitionArn']})")
    print(arn, file=ctx.out)


def _rollback_target(ctx, args):
    if args.recorded:
        target = taskdef.describe(ctx.clients, args.recorded)[0]
        if target.get("status") != "ACTIVE":
            raise DeployError(f"the recorded revision {target['taskDefinitionArn']} is {target.get('status')}")
        print(target["taskDefinitionArn"], file=ctx.out)
        return
    running = service.describe(ctx.clients, args.cluster, args.service)["taskDefinition"]
    print(taskdef.previous_active(ctx.clients, running), file=ctx.out)


def _run_migration(ctx, args):
    result = migration.run(
        ctx.clients, args.cluster, args.service, args.task_definition,
        container=args.container, command=args.command, timeout=args.timeout, poll=args.poll,
        log_group=args.log_group, stream_template=args.log_stream_template, log_wait=args.log_wait,
        clock=ctx.clock, sleep=ctx.sleep, log=ctx.log,
    )
    if result.log_lines is None:
        ctx.log(f"no log stream {result.log_stream} in {result.log_group}")
    else:
        ctx.print_untrusted(f"migration log ({result.log_group} {result.log_stream})", result.log_lines)
    summary.append(summary.migration_markdown(args.cluster, result), ctx.env)
    exit_code = "none" if result.exit_code is None else result.exit_code
    if not result.ok:
        raise DeployError(f"migration failed: task {result.task_id} exit code {exit_code}"
                          + (f" ({result.reason})" if result.reason else ""))
    ctx.log(f"migration succeeded: task {result.task_id} exit code 0")


def _wait_kwargs(ctx, args):
    return {"timeout": args.timeout, "poll": args.poll, "clock": ctx.clock, "sleep": ctx.sleep, "log": ctx.log}


def _update_service(ctx, args):
    target = taskdef.describe(ctx.clients, args.task_definition)[0]["taskDefinitionArn"]
    service.update(ctx.clients, args.cluster, args.service, target)
    ctx.log(f"service {args.service} updated to {target}")
    if args.wait:
        service.wait_stable(ctx.clients, args.cluster, args.service, target, **_wait_kwargs(ctx, args))


def _wait_stable(ctx, args):
    target = taskdef.describe(ctx.clients, args.task_definition)[0]["taskDefinitionArn"]
    service.wait_stable(ctx.clients, args.cluster, args.service, target, **_wait_kwargs(ctx, args))


def _rollback(ctx, args):
    try:
        target = service.rollback(ctx.clients, args.cluster, args.service, args.to,
                                  wait=not args.no_wait, **_wait_kwargs(ctx, args))
    except DeployError as error:
        summary.append(f"### {summary.icon(False)} Rollback of {args.service} failed\n\n{error}", ctx.env)
        raise
    summary.append(f"### ↩️ Rolled {args.service} back to `{target}`", ctx.env)
    print(target, file=ctx.out)


def _summary(ctx, args):
    text = None
    if args.file and os.path.exists(args.file):
        with open(args.file, encoding="utf-8", errors="replace") as f:
            text = f.read()
    markdown = summary.step_markdown(args.title, args.status, text)
    if not summary.append(markdown, ctx.env):
        print(markdown, file=ctx.out)


def _plan_comment(ctx, args):
    with open(args.plan_file, encoding="utf-8", errors="replace") as f:
        plan_text = f.read()
    print(summary.plan_markdown(args.environment, args.exit_code, plan_text), file=ctx.out)
