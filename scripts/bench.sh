#!/usr/bin/env bash
# Builds the release agent and the shared fake CloudWatch Logs endpoint, then runs the W1
# benchmark (scripts/bench.py). Arguments are passed through, e.g. --runs 5 --inputs stdin.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/services.sh install
cargo build --release --locked -p agent
cargo build --release --manifest-path ../shared/bench/fake-cwl/Cargo.toml --target-dir target/fake-cwl
exec .venv/bin/python scripts/bench.py --agent target/release/agent --fake target/fake-cwl/release/fake-cwl "$@"
