#!/usr/bin/env bash
# Offline checks of terraform/ (no provider download, no AWS account):
#   1. terraform fmt -check           (skipped with a notice when the CLI is absent)
#   2. terraform/tests/test_invariants.py, parsing every .tf with python-hcl2 (.venv-hcl/),
#      then terraform/tests/mutants.py, which proves each invariant can fail
#   3. checkov, failing on any check not skipped in terraform/.checkov.yaml (.venv-checkov/)
# The virtualenvs live at the repository root, are created when absent and only call pip
# when the pinned version is not already installed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

HCL2_VERSION=8.1.4
CHECKOV_VERSION=3.3.30
PYTHON=${PYTHON:-python3}

step() { printf '\n-- %s\n' "$*"; }

# ensure_venv DIR DIST VERSION: DIR has DIST==VERSION installed, quietly and idempotently.
ensure_venv() {
  local dir=$1 dist=$2 version=$3
  if [ -x "$dir/bin/python" ] && ! "$dir/bin/python" -c 'import sys' 2>/dev/null; then
    rm -rf "$dir" # left over from another Python: rebuild it
  fi
  if [ ! -x "$dir/bin/python" ]; then
    "$PYTHON" -m venv "$dir"
  fi
  if ! "$dir/bin/python" - "$dist" "$version" <<'PY' 2>/dev/null; then
import sys
from importlib.metadata import version
sys.exit(0 if version(sys.argv[1]) == sys.argv[2] else 1)
PY
    echo "installing $dist==$version into $dir"
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check "$dist==$version"
  fi
}

step "terraform fmt -check"
if command -v terraform >/dev/null 2>&1; then
  if ! terraform fmt -check -recursive -list=true terraform; then
    echo "terraform fmt: the files above need formatting (run: terraform fmt -recursive terraform)" >&2
    exit 1
  fi
  echo "terraform fmt: ok"
else
  echo "terraform CLI not found: fmt check skipped"
fi

step "invariants (python-hcl2 $HCL2_VERSION)"
ensure_venv .venv-hcl python-hcl2 "$HCL2_VERSION"
# No __pycache__ in terraform/tests/.
PYTHONDONTWRITEBYTECODE=1 .venv-hcl/bin/python terraform/tests/test_invariants.py
if ! mutants=$(PYTHONDONTWRITEBYTECODE=1 .venv-hcl/bin/python terraform/tests/mutants.py); then
  printf '%s\n' "$mutants"
  exit 1
fi
printf '%s\n' "${mutants##*$'\n'}" # the summary line only

step "checkov $CHECKOV_VERSION"
ensure_venv .venv-checkov checkov "$CHECKOV_VERSION"
.venv-checkov/bin/checkov -d terraform --framework terraform --skip-download --quiet --compact \
  --config-file terraform/.checkov.yaml

step "terraform checks passed"
