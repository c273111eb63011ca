#!/usr/bin/env bash
# A guided look at a bottle refusing things, for a person to watch. Safe to run: it uses a
# temporary home, a throwaway bottle with a made-up credential, touches nothing of yours, and
# removes everything it started (also on Ctrl-C).
#
#   scripts/demo.sh            # uses `bot-bottle` from PATH, or target/debug/bot-bottle
#   BB=/path/to/bot-bottle scripts/demo.sh
set -euo pipefail

BB=${BB:-$(command -v bot-bottle || echo "$(dirname "$0")/../target/debug/bot-bottle")}
[ -x "$BB" ] || { echo "demo: no bot-bottle binary (build with cargo build, or set BB)" >&2; exit 1; }
command -v docker >/dev/null || { echo "demo: needs docker" >&2; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/bot-bottle-demo.XXXXXX")
agent="demo$$"
starter=""
id=""

cleanup() {
  if [ -n "$id" ]; then
    docker exec "bot-bottle-$id" sh -c 'echo 0 > /tmp/stop' >/dev/null 2>&1 || true
  fi
  if [ -n "$starter" ]; then
    for _ in $(seq 1 100); do kill -0 "$starter" 2>/dev/null || break; sleep 0.2; done
    kill "$starter" 2>/dev/null || true
    wait "$starter" 2>/dev/null || true
  fi
  if [ -n "$id" ]; then
    # Only this demo's bottle, by its own compose project (never `cleanup`, which removes all).
    docker rm -f "bot-bottle-$id" "bot-bottle-sidecars-$id" >/dev/null 2>&1 || true
    docker network rm "bot-bottle-net-$id" "bot-bottle-egress-$id" >/dev/null 2>&1 || true
    docker volume ls -q --filter "label=dev.bot-bottle.identity=$id" | xargs -r docker volume rm >/dev/null 2>&1 || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

export BOT_BOTTLE_HOME="$tmp/home" HOME="$tmp/hosthome" COMPOSE_BAKE=false
mkdir -p "$BOT_BOTTLE_HOME/bottles" "$BOT_BOTTLE_HOME/agents" "$HOME" "$tmp/stub"
# A made-up credential, shaped like a real GitHub token; it authenticates nothing.
DEMO_TOKEN="ghp_$(head -c 200 /dev/urandom | tr -dc 'A-Za-z0-9' | head -c 36)"
export DEMO_TOKEN
cat > "$BOT_BOTTLE_HOME/bottles/demo.md" <<'YAML'
---
egress:
  routes:
    - host: api.github.com
      auth:
        scheme: Bearer
        token_ref: DEMO_TOKEN
    # The bundle's own loopback, where nothing listens: a route that resolves everywhere,
    # so the demo shows egress's checks even on a machine without internet access.
    - host: ip6-localhost
      pipelock:
        ssrf_ip_allowlist: ["::1"]
---
YAML
printf -- '---\nbottle: demo\n---\ndemo agent\n' > "$BOT_BOTTLE_HOME/agents/$agent.md"

# The provider image with its CLI replaced by a stub that waits, so the bottle stays up.
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
step "building the images (cached after the first run)"
"$BB" build-images
printf '#!/bin/sh\nwhile [ ! -f /tmp/stop ]; do sleep 0.2; done\n' > "$tmp/stub/claude"
printf 'FROM bot-bottle-claude:latest\nUSER root\nCOPY claude /usr/local/bin/claude\nRUN chmod 755 /usr/local/bin/claude\nUSER node\n' > "$tmp/stub/Dockerfile"
docker build -q -t bot-bottle-demo-agent:latest "$tmp/stub" >/dev/null
export BOT_BOTTLE_IMAGE=bot-bottle-demo-agent:latest

step "starting a bottle (routes: api.github.com with a credential only egress holds, and ip6-localhost)"
"$BB" start --yes "$agent" </dev/null >/dev/null 2>"$tmp/start.log" &
starter=$!
for _ in $(seq 1 600); do
  id=$("$BB" list active 2>/dev/null | awk -F'\t' -v a="$agent" '$3 == a {print $2; exit}')
  [ -n "$id" ] && break
  kill -0 "$starter" 2>/dev/null || { cat "$tmp/start.log" >&2; exit 1; }
  sleep 0.5
done
[ -n "$id" ] || { echo "demo: the bottle did not start" >&2; exit 1; }
for _ in $(seq 1 120); do docker exec -u node "bot-bottle-$id" bash -c '(exec 3<>/dev/tcp/127.0.0.1/9099)' 2>/dev/null && break; sleep 0.5; done
echo "bottle $id is up"

show() {
  printf '\n\033[36m$ %s\033[0m\n' "$1"
  docker exec -u node "bot-bottle-$id" bash -c "$1" 2>&1 | sed 's/^/  /' || true
}
step "inside the agent: a host without a route is refused by egress, which says why"
show "curl -sS -i https://example.com/ 2>&1 | grep -i -E '^(HTTP|x-bot-bottle-refusal)' || curl -sS https://example.com/"
step "going around the proxy: there is no network at all"
show "env -u HTTPS_PROXY -u https_proxy curl -sS --max-time 5 https://example.com/"
show "curl --noproxy '*' -sS --max-time 5 http://1.1.1.1/; bash -c 'exec 3<>/dev/tcp/1.1.1.1/443'"
step "a credential-shaped value on its way out is refused by the secret scan"
# Another made-up token, minted now so no token-shaped string lives in this file.
leak="ghp_$(head -c 200 /dev/urandom | tr -dc 'A-Za-z0-9' | head -c 36)"
show "curl -sS -o /dev/null -D - 'https://ip6-localhost/?leak=$leak' | grep -i x-bot-bottle-refusal"
step "the credential is nowhere in the agent"
show "env | grep -c \"\$(printf %s ghp_)\" || echo 'no ghp_ value in the environment'"
step "no privileges: capabilities, namespaces, mounts, raw sockets"
show "grep -E '^(CapEff|NoNewPrivs)' /proc/self/status"
show "unshare -U -r true; mount -t tmpfs none /tmp; perl -e 'socket(S,2,3,1) or print \"raw socket: \$!\n\"'"
show "ls /var/run/docker.sock /run/docker.sock"
step "what egress wrote to its audit log"
docker exec "bot-bottle-sidecars-$id" cat /var/log/bot-bottle/egress-audit.jsonl | tail -n 4 | sed 's/^/  /'
step "done; removing the bottle"
