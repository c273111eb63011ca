#!/usr/bin/env bash
# Approval→live benchmark (issue goal: under 200 ms median): the decision applied in the bundle
# the way `bot-bottle-supervise decide` applies it, then requests through a real egress until
# the granted host answers. Also prints one request through egress as the baseline measured in
# the same run. Prints figures; asserts nothing.
#
#   benches/supervise-approve.sh          # SAMPLES=30; PROFILE=release builds optimised
#   flock /tmp/bb-engine.lock nice -n 19 env ENGINE=1 benches/supervise-approve.sh
#                                         # the whole path on a real bottle, from the host's
#                                         # `bot-bottle approve` (supervise-approve-engine.sh)
set -euo pipefail
if [ "${ENGINE:-0}" = 1 ]; then
  exec "$(dirname "$0")/supervise-approve-engine.sh"
fi

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SAMPLES="${SAMPLES:-30}"
cd "$ROOT"
if [ "${PROFILE:-dev}" = release ]; then
  cargo run --release --quiet --example supervise_approve -- "$SAMPLES"
else
  cargo run --quiet --example supervise_approve -- "$SAMPLES"
fi
