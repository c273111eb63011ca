#!/usr/bin/env bash
# Git-gate benchmark: push and clone through the gate vs straight to the same sshd, scanner
# throughput and recall vs detect-secrets. Figures are ratios measured in one run.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin bot-bottle-git-gate --example git_gate_bench
exec nice -n 19 target/release/examples/git_gate_bench
