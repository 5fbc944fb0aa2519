"""Markdown for the job summary ($GITHUB_STEP_SUMMARY) and pull-request comments."""

import os
import re

# GitHub caps a step summary at 1 MiB and a comment at 65,536 characters: stay well under.
MAX_BLOCK_CHARS = 60_000

_PLAN_LINE = re.compile(r"^(Plan: .*|No changes\..*|Error: .*)$", re.MULTILINE)


def append(markdown: str, env=None) -> bool:
    """Append `markdown` to the job summary when GITHUB_STEP_SUMMARY is set; True if written."""
    env = os.environ if env is None else env
    path = env.get("GITHUB_STEP_SUMMARY")
    if not path:
        return False
    with open(path, "a", encoding="utf-8") as summary:
        summary.write(markdown.rstrip("\n") + "\n\n")
    return True


def icon(ok: bool) -> str:
    return "✅" if ok else "❌"


def cell(value) -> str:
    """A table cell: one line, pipes escaped."""
    return str(value).replace("\r", " ").replace("\n", " ").replace("|", "\\|")


def table(headers: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(cell(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def code_block(text: str, max_chars: int = MAX_BLOCK_CHARS) -> str:
    """`text` fenced so that nothing inside can close the fence; the tail kept if too long
    (the end of a log or plan is where the error is)."""
    if len(text) > max_chars:
        dropped = text[: len(text) - max_chars].count("\n") + 1
        text = f"[... {dropped} earlier lines cut ...]\n" + text[-max_chars:].split("\n", 1)[-1]
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{text.rstrip()}\n{fence}"


def details(summary: str, body: str) -> str:
    return f"<details><summary>{summary}</summary>\n\n{body}\n\n</details>"


def step_markdown(title: str, status: str, text: str | None) -> str:
    """A heading with the step's outcome (success, failure, cancelled, skipped) and its output."""
    parts = [f"### {icon(status == 'success')} {title}: {status}"]
    if text is not None:
        parts.append(code_block(text) if text.strip() else "_(no output)_")
    return "\n\n".join(parts)


def migration_markdown(environment: str, result) -> str:
    """The migration step for the summary: outcome, task, exit code, reason, log."""
    outcome = "succeeded" if result.ok else "failed"
    parts = [
        f"### {icon(result.ok)} Database migration ({environment}): {outcome}",
        table(
            ["task", "exit code", "stopped because"],
            [[f"`{result.task_id}`", "none" if result.exit_code is None else result.exit_code,
              result.reason or "-"]],
        ),
    ]
    parts += [f"> {note}" for note in result.notes]
    if result.log_lines is None:
        parts.append(f"No log stream `{result.log_stream}` in `{result.log_group}`.")
    else:
        parts.append(details(
            f"log: {result.log_group} {result.log_stream} ({len(result.log_lines)} lines)",
            code_block("\n".join(result.log_lines)),
        ))
    return "\n\n".join(parts)


def plan_markdown(environment: str, exit_code: int, plan_text: str) -> str:
    """A pull-request comment for `terraform plan -detailed-exitcode` (0 none, 2 changes, 1 error).

    It starts with a marker so the workflow updates its own comment instead of adding one per push.
    """
    status = {0: "no changes", 2: "changes"}.get(exit_code, "failed")
    lines = _PLAN_LINE.findall(plan_text)
    headline = lines[-1] if lines else status
    return "\n\n".join([
        plan_marker(environment),
        f"### {icon(exit_code in (0, 2))} Terraform plan: `{environment}` ({status})",
        f"`{cell(headline)}`",
        details("plan output", code_block(plan_text)),
    ])


def plan_marker(environment: str) -> str:
    return f"<!-- infra-plan:{environment} -->"
