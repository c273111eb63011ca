#!/usr/bin/env bash
# Median wall time of `bot-bottle start --dry-run` over N runs (default 30), against the
# floor of the same binary printing `--version`, measured in the same run.
#   scripts/bench-dry-run.sh [runs]
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-30}"
cargo build --release --locked --quiet --bin bot-bottle
bin="$PWD/target/release/bot-bottle"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp -r examples/home "$work/home"

python3 - "$bin" "$work" "$runs" <<'PY'
import os, statistics, subprocess, sys, time
binary, work, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
env = dict(os.environ, BOT_BOTTLE_HOME=f"{work}/home", HOME=work)

def median_ms(args):
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run([binary, *args], env=env, cwd=work, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        samples.append((time.perf_counter() - t) * 1000)
    return statistics.median(samples), max(samples)

floor, floor_max = median_ms(["--version"])
dry, dry_max = median_ms(["start", "--dry-run", "reviewer"])
engine = "answering" if os.path.exists("/var/run/docker.sock") else "absent"
print(f"runs: {runs}  (docker engine socket: {engine})")
print(f"floor  `bot-bottle --version`          median {floor:7.2f} ms  max {floor_max:7.2f} ms")
print(f"dry    `bot-bottle start --dry-run`    median {dry:7.2f} ms  max {dry_max:7.2f} ms")
print(f"ratio  dry-run / floor                 {dry / floor:7.2f}x")
PY
