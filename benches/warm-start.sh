#!/usr/bin/env bash
# Warm start of a bottle (images cached) against the floor measured in the same run.
#
#   ours : `bot-bottle start --yes <agent>` until the provider command runs
#   floor: `docker compose up -d` of the same two images + one `docker exec true`
#
# Needs a Docker engine and a built `bot-bottle` (cargo build --release). Prints medians of
# RUNS runs each and their ratio. The provider is a stub that prints the time it started.
# The series are interleaved (ours, floor, ours, …) so that a load change on a shared machine
# hits both alike; the load average is printed with the figures.
#
# BASELINE=<path to another bot-bottle> adds a third interleaved series, e.g. the previous
# release, for a before/after comparison in the same run. Its sidecar image is built from the
# binaries next to it and given to it as a named image (BOT_BOTTLE_SIDECAR_IMAGE), which
# skips its sidecar-binary check: a slight advantage to the baseline.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${RUNS:-7}"
BIN="$(realpath "${BIN:-target/release/bot-bottle}")"
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
BASE="${BASELINE:+$(realpath "$BASELINE")}"
export COMPOSE_BAKE=false

work="$(mktemp -d)"
trap 'rm -rf "$work"; docker rm -f bb-floor-agent bb-floor-sidecar >/dev/null 2>&1 || true' EXIT
mkdir -p "$work/home/bottles" "$work/home/agents" "$work/img" "$work/cwd"
printf -- '---\negress:\n  routes:\n    - host: example.com\n---\n' > "$work/home/bottles/bench.md"
printf -- '---\nbottle: bench\n---\nBenchmark.\n' > "$work/home/agents/bench.md"

base_env=()
if [ -n "$BASE" ]; then
  "$BASE" build-images >&2
  docker tag bot-bottle-sidecars:latest bot-bottle-bench-sidecars-baseline:latest
  base_env=(BOT_BOTTLE_SIDECAR_IMAGE=bot-bottle-bench-sidecars-baseline:latest)
fi
"$BIN" build-images >&2
# Stub provider: report when it started, then exit 0 (the session ends at once).
printf '#!/bin/sh\ndate +STARTED=%%s%%N\n' > "$work/img/claude"
printf 'FROM bot-bottle-claude:latest\nUSER root\nRUN rm -f /usr/local/bin/claude\nCOPY claude /usr/local/bin/claude\nRUN chmod 755 /usr/local/bin/claude\nUSER node\n' > "$work/img/Dockerfile"
docker build -q -t bot-bottle-bench-agent:latest "$work/img" >/dev/null

now_ns() { date +%s%N; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

# One start of `$1` (a bot-bottle binary) with extra environment `$2…`; prints milliseconds.
start_once() {
  local bin="$1"; shift
  local t0 out t1
  t0=$(now_ns)
  out=$(cd "$work/cwd" && env BOT_BOTTLE_HOME="$work/home" BOT_BOTTLE_IMAGE=bot-bottle-bench-agent:latest \
        "$@" "$bin" start --yes bench 2>/dev/null </dev/null)
  t1=$(printf '%s\n' "$out" | sed -n 's/.*STARTED=\([0-9]*\).*/\1/p' | head -1)
  [ -n "$t1" ] || { echo "provider never reported; output: $out" >&2; exit 1; }
  echo $(( (t1 - t0) / 1000000 ))
}

cat > "$work/floor.yaml" <<YAML
name: bb-floor
services:
  agent:
    image: bot-bottle-bench-agent:latest
    container_name: bb-floor-agent
    network_mode: none
    init: true
    command: ["sleep", "infinity"]
    pull_policy: never
  sidecar:
    image: bot-bottle-sidecars:latest
    container_name: bb-floor-sidecar
    init: true
    entrypoint: ["sleep", "infinity"]
    pull_policy: never
    networks: [internal, egress]
networks:
  internal:
    internal: true
  egress: {}
YAML
floor_once() {
  local t0 t1
  t0=$(now_ns)
  docker compose -f "$work/floor.yaml" up -d >/dev/null 2>&1
  docker exec bb-floor-agent true
  t1=$(now_ns)
  docker compose -f "$work/floor.yaml" down -v -t 1 >/dev/null 2>&1
  echo $(( (t1 - t0) / 1000000 ))
}

ours=(); floor=(); base=()
load0=$(cut -d' ' -f1 /proc/loadavg)
for _ in $(seq "$RUNS"); do
  v=$(start_once "$BIN"); ours+=( "$v" )
  v=$(floor_once); floor+=( "$v" )
  if [ -n "$BASE" ]; then v=$(start_once "$BASE" "${base_env[@]}"); base+=( "$v" ); fi
done
load1=$(cut -d' ' -f1 /proc/loadavg)

m_ours=$(printf '%s\n' "${ours[@]}" | median)
m_floor=$(printf '%s\n' "${floor[@]}" | median)
echo "load average (1 min) before/after: $load0 / $load1"
echo "warm start (start --yes -> provider running), median of $RUNS: ${m_ours} ms  [${ours[*]}]"
echo "floor (compose up -d of 2 services + docker exec true), median of $RUNS: ${m_floor} ms  [${floor[*]}]"
awk -v a="$m_ours" -v b="$m_floor" 'BEGIN { printf "ratio: %.2f (target <= 1.20)\n", a / b }'
if [ -n "$BASE" ]; then
  m_base=$(printf '%s\n' "${base[@]}" | median)
  echo "baseline $BASE, median of $RUNS: ${m_base} ms  [${base[*]}]"
  awk -v a="$m_base" -v b="$m_floor" 'BEGIN { printf "baseline ratio: %.2f\n", a / b }'
fi
