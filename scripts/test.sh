#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what the tests need, then runs the
# CloudWatch front's tests, formatting and lint checks, every Rust test (each starts its own PostgreSQL, Redis and
# AWS emulator on free loopback ports through scripts/services.sh), and the offline
# infrastructure, workflow and deploy-script checks.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# No test may reach real AWS or the instance-metadata address.
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 \
  AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

step() { printf '\n== %s\n' "$*"; }

step "install test dependencies"
scripts/services.sh install

step "CloudWatch rpc-v2-cbor front (scripts/test_cwfront.py, against the emulator)"
PYTHONDONTWRITEBYTECODE=1 .venv/bin/python -m pytest -q -p no:cacheprovider scripts/test_cwfront.py

step "cargo fmt --check"
cargo fmt --all -- --check

step "module layering: no import cycle among agent/src's top-level modules"
scripts/check-module-cycles.py agent/src

# Both builds of the agent: the sidecar's (default features) and the one with the
# dashboard previews (`--features preview`), which the tests run.
step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo clippy --workspace --all-targets --locked --all-features -- -D warnings

step "cargo deny check licenses bans sources (deny.toml; advisories need the network: CI only)"
cargo deny --log-level error check --hide-inclusion-graph licenses bans sources

step "cargo test"
cargo test --workspace --locked --all-features

step "release SBOM (scripts/release.sh sbom-check: CycloneDX from the lock file, checked; no build)"
scripts/release.sh sbom-check

if [ -x scripts/check-terraform.sh ]; then
  step "terraform checks"
  scripts/check-terraform.sh
fi

if [ -x scripts/check-workflows.sh ]; then
  step "workflow, Dockerfile and deploy-script checks"
  scripts/check-workflows.sh
fi

step "all tests passed"
