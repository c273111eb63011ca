//! Engine tests of a whole bottle on a real Docker engine (run when
//! `BOT_BOTTLE_ENGINE_TESTS=1`; otherwise each test prints that it was skipped).
//!
//! The agent image is the real `bot-bottle-claude` image with `claude` replaced by a stub
//! that waits for a stop file, so the session can be driven from outside with `exec`.

use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bot_bottle::backend::docker::launch;
use bot_bottle::runner::RealRunner;

mod engine_common;
mod git_gate_common;

use engine_common::upstream::Upstream;
use engine_common::world::{SSRF_ALLOW_PRIVATE, World};
use engine_common::{build_stub_image, docker_ok, engine_turn, tree_contains};

const TOKEN: &str = "engine-test-token-7f3a9c2e51";

/// A home with one bottle routing `upstream.test` with an injected token, one agent with a
/// skill, a TLS upstream's CA as the operator's extra CA, and the stub agent image.
fn world(kind: &str) -> World {
    let mut w = World::new(kind);
    w.token = TOKEN.into();
    w.token_var = Some("ENGINE_TOKEN");
    let skill = w.host_home.join(".claude/skills/demo");
    std::fs::create_dir_all(&skill).unwrap();
    std::fs::write(skill.join("SKILL.md"), "demo skill\n").unwrap();
    w.bottle(
        "dev",
        &format!(
            "---\nenv:\n  GREETING: \"hello\"\negress:\n  routes:\n    - host: upstream.test\n      auth:\n        scheme: Bearer\n        token_ref: ENGINE_TOKEN\n{SSRF_ALLOW_PRIVATE}---\n"
        ),
    );
    w.agent_file(
        &w.agent,
        "---\nbottle: dev\nskills: [demo]\n---\nPROMPT-MARKER do the work.\n",
    );
    w.upstream_certs(
        &["upstream.test"],
        "const https=require('https');const fs=require('fs');\n\
         https.createServer({key:fs.readFileSync('/certs/key.pem'),cert:fs.readFileSync('/certs/cert.pem')},(q,s)=>{\n\
         console.log('REQ '+q.method+' '+q.url+' auth='+(q.headers['authorization']||'none'));\n\
         s.end('upstream-says-hi\\n');}).listen(443,()=>console.log('LISTENING'));\n",
    );
    w
}

impl World {
    /// What of bottle `id` is left: containers, networks, volumes, its state dir.
    fn leftovers(&self, id: &str) -> Vec<String> {
        let mut v = Vec::new();
        for args in [
            vec!["ps", "-a", "--format", "{{.Names}}"],
            vec!["network", "ls", "--format", "{{.Name}}"],
            vec!["volume", "ls", "--format", "{{.Name}}"],
        ] {
            v.extend(
                docker_ok(&args)
                    .lines()
                    .filter(|n| n.contains(id))
                    .map(str::to_string),
            );
        }
        if self.home.join("state").join(id).exists() {
            v.push(format!("state dir {id}"));
        }
        v
    }
}

#[test]
#[cfg_attr(
    not(engine_tests),
    ignore = "SKIPPED: engine test; build with BOT_BOTTLE_ENGINE_TESTS=1 and a Docker engine"
)]
fn a_bottle_starts_provisions_routes_through_egress_and_leaves_nothing() {
    let _turn = engine_turn();
    build_stub_image();
    let w = world("launch");
    // Under a pseudo-terminal, as an operator's shell runs it.
    let session = w.start_session(&w.agent, 60);
    let id = session.id.clone();

    // Provisioning: prompt, provider files, skills.
    assert!(
        w.exec_ok(&id, "cat /home/node/.bot-bottle/prompt.md")
            .contains("PROMPT-MARKER")
    );
    w.exec_ok(&id, "test -s /home/node/.claude.json");
    assert_eq!(
        w.exec_ok(&id, "cat /home/node/.claude/skills/demo/SKILL.md"),
        "demo skill\n"
    );
    assert_eq!(w.exec_ok(&id, "echo $GREETING"), "hello\n");
    // No secret in the agent's environment or filesystem.
    let environ = w.exec_ok(
        &id,
        "cat /proc/1/environ /proc/self/environ | tr '\\0' '\\n'; env",
    );
    assert!(!environ.contains(TOKEN));

    // Escape attempts from the agent's session (THREATS E1–E4, N9, N10).
    let status = w.exec_ok(&id, "grep -E '^CapEff' /proc/self/status");
    assert!(status.contains("CapEff:\t0000000000000000"), "{status}");
    // prctl(PR_GET_NO_NEW_PRIVS), not `/proc/self/status`: gVisor's has no such line.
    let nnp = w.exec_ok(
        &id,
        "case $(uname -m) in aarch64) n=167 ;; *) n=157 ;; esac; perl -e 'print syscall($ARGV[0], 39, 0, 0, 0, 0)' $n",
    );
    assert_eq!(nnp, "1", "no-new-privileges is not set");
    for (what, script) in [
        (
            "docker socket",
            "test -e /var/run/docker.sock || test -e /run/docker.sock",
        ),
        (
            "engine over TCP",
            "curl --noproxy '*' -sS --max-time 5 http://172.17.0.1:2375/info",
        ),
        (
            "bridge gateway",
            "curl --noproxy '*' -sS --max-time 5 http://172.17.0.1/",
        ),
        ("mount", "mkdir -p /tmp/m && mount -t tmpfs none /tmp/m"),
        ("mknod", "mknod /tmp/dev c 1 3"),
        ("raw socket", "ping -c 1 -W 2 127.0.0.1"),
        (
            "provisioning stream left in the shared volume",
            "test -e /run/bot-bottle/.provision.tar",
        ),
        ("sudo", "sudo -n true"),
        (
            "CA key",
            "grep -rl 'PRIVATE KEY' /run /etc/ssl /usr/local/share/ca-certificates /home/node",
        ),
    ] {
        let out = w.exec_output(&id, script);
        assert!(!out.status.success(), "{what} worked from inside the agent");
    }
    // What differs under gVisor (`docker inspect` says which runtime the agent has).
    // A user namespace: refused by the engine's seccomp profile under runc. gVisor does not load
    // that profile and makes the namespace inside its own kernel, which the host never sees
    // (the escape suite's E3 judges both runtimes).
    let gvisor = bot_bottle::doctor::probes::under_gvisor(
        &bot_bottle::runner::RealRunner,
        &format!("bot-bottle-{id}"),
    )
    .unwrap();
    let userns = w.exec_output(&id, "unshare -r true");
    assert!(
        gvisor || !userns.status.success(),
        "unshare worked from inside the agent under runc"
    );
    // Another user's `/proc/<pid>/environ`: refused by the kernel's ptrace check under runc;
    // this gVisor lets any user read it, so there the suite's C1 (no secret in any process's
    // environment) is what holds.
    let root_env = w.exec_output(&id, "cat /proc/1/environ");
    assert!(
        gvisor || !root_env.status.success(),
        "root's environment was readable from inside the agent under runc"
    );

    // A TLS upstream on the bottle's egress network, reached only through egress.
    let upstream = Upstream::start(&w.certs, &id, &["upstream.test"]);
    let body = w.exec_ok(
        &id,
        "curl -sS --max-time 20 -H 'Authorization: Bearer agent-own-value' https://upstream.test/hello",
    );
    assert_eq!(body, "upstream-says-hi\n");
    let seen = upstream.log();
    assert!(seen.contains(&format!("auth=Bearer {TOKEN}")), "{seen}");
    assert!(!seen.contains("agent-own-value"), "{seen}");
    // A host without a route is refused by egress.
    let refused = w.exec_output(
        &id,
        "curl -sS --max-time 20 -o /dev/null -w '%{http_code}' https://example.com/",
    );
    assert!(!refused.status.success() || String::from_utf8_lossy(&refused.stdout) == "403");
    // Bypassing the proxy: no route, no DNS.
    let direct = w.exec_output(&id, "curl --noproxy '*' -sS --max-time 5 http://1.1.1.1/");
    assert!(!direct.status.success(), "direct request succeeded");
    let dns = w.exec_output(&id, "getent hosts example.com");
    assert!(!dns.status.success(), "DNS answered inside the agent");

    // Nothing of the host is mounted into the bundle: its config came through the engine.
    let sidecar = format!("bot-bottle-sidecars-{id}");
    let mounts = docker_ok(&[
        "inspect",
        "-f",
        "{{range .Mounts}}{{.Type}} {{end}}",
        &sidecar,
    ]);
    assert_eq!(mounts.trim(), "volume", "bundle mounts: {mounts}");
    // The audit lines are read back through the engine too.
    let audit = launch::audit_lines(&RealRunner, &sidecar).expect("audit readable");
    assert!(
        audit.iter().any(|l| l.contains("upstream.test")),
        "{audit:?}"
    );
    assert!(!audit.iter().any(|l| l.contains(TOKEN)), "{audit:?}");

    // Live route reload: a new routes file copied in through the engine takes effect in the
    // running bundle (the route to upstream.test is withdrawn), with no restart.
    launch::update_routes(&RealRunner, &sidecar, "{\"routes\": []}\n", 1_800_000_000)
        .expect("routes copied in");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = w.exec_output(
            &id,
            "curl -sS --max-time 10 -o /dev/null -w '%{http_code}' https://upstream.test/hello",
        );
        if !out.status.success() || String::from_utf8_lossy(&out.stdout) == "403" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the withdrawn route still forwards"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    drop(upstream);

    // Fail closed: when egress dies, the bundle's init takes the bundle down and the agent
    // is left with no way out at all (never a direct path).
    let top = docker_ok(&["top", &sidecar, "-eo", "pid,args"]);
    let egress_pid = top
        .lines()
        .find(|l| l.contains("bot-bottle-egress"))
        .and_then(|l| l.split_whitespace().next())
        .expect("egress runs in the bundle")
        .to_string();
    assert!(
        Command::new("kill")
            .args(["-9", &egress_pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while docker_ok(&["inspect", "-f", "{{.State.Running}}", &sidecar]).trim() == "true" {
        assert!(
            Instant::now() < deadline,
            "the bundle kept running without egress"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let after = w.exec_output(&id, "curl -sS --max-time 10 https://upstream.test/hello");
    assert!(
        !after.status.success(),
        "a request got out with egress dead"
    );

    // End the session: the stub exits 0, the CLI tears everything down.
    w.stop(session);
    assert!(w.leftovers(&id).is_empty(), "left: {:?}", w.leftovers(&id));
    assert!(tree_contains(&w.home, &[TOKEN]).is_none());
    drop(w.tmp);
}

#[test]
#[cfg_attr(
    not(engine_tests),
    ignore = "SKIPPED: engine test; build with BOT_BOTTLE_ENGINE_TESTS=1 and a Docker engine"
)]
fn sigkill_mid_launch_leaves_only_what_cleanup_removes() {
    let _turn = engine_turn();
    build_stub_image();
    let w = world("killed");
    // In its own process group, killed whole (as a closed terminal would): `start`'s session
    // exec must not outlive it, because an exec into a container `cleanup` removes never
    // returns under gVisor, and it would keep every descriptor it inherited (the engine
    // lock's, when the suite runs under `flock`).
    let mut child = w
        .cmd()
        .args(["start", "--yes", &w.agent])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let id = w.wait_active(&w.agent, &mut child);
    // SIGKILL: no teardown runs.
    let group = format!("-{}", child.id());
    let killed = Command::new("kill")
        .args(["-KILL", "--", &group])
        .status()
        .unwrap();
    assert!(killed.success());
    let _ = child.wait();
    assert!(
        !w.leftovers(&id).is_empty(),
        "the kill should leave resources behind"
    );
    let out = w.cmd().args(["cleanup", "--yes"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        w.leftovers(&id).is_empty(),
        "left after cleanup: {:?}",
        w.leftovers(&id)
    );
}

#[test]
#[cfg_attr(
    not(engine_tests),
    ignore = "SKIPPED: engine test; build with BOT_BOTTLE_ENGINE_TESTS=1 and a Docker engine"
)]
fn the_agent_clones_and_pushes_its_real_upstream_through_the_git_gate_and_holds_no_key() {
    let _turn = engine_turn();
    if git_gate_common::sshd_or_skip("engine git-gate").is_none() {
        return;
    }
    build_stub_image();
    let w = world("gitgate");
    let bridge = git_gate_common::bridge_address();
    let up = git_gate_common::Upstream::start_on(bridge);
    up.repo("proj");
    let (url, bottle) = up.gated_bottle("proj", bridge, "");
    std::fs::write(w.home.join("bottles/dev.md"), bottle).unwrap();
    let session = w.start_session(&w.agent, 60);
    let id = session.id.clone();

    // Clone the real URL: `insteadOf` sends it to the gate, which syncs from the upstream.
    let log = w.exec_ok(
        &id,
        &format!("cd /tmp && git clone -q {url} work && git -C work log -1 --format=%s"),
    );
    assert_eq!(log.trim(), "initial");
    // Commit and push: the commit arrives upstream, under the bottle's git identity.
    let head = w.exec_ok(
        &id,
        "cd /tmp/work && echo change > change.txt && git add . && git commit -qm 'through the gate' && git push -q origin HEAD:main && git rev-parse HEAD",
    );
    assert_eq!(
        up.rev("proj", "refs/heads/main").as_deref(),
        Some(head.trim())
    );
    let author = git_gate_common::ok(git_gate_common::plain_git(&up.bare("proj")).args([
        "log",
        "-1",
        "--format=%an <%ae>",
    ]));
    assert_eq!(author, "Gate Tester <gate@example.test>");
    // ls-remote and pull of the real URL go through the gate too.
    let remote = w.exec_ok(&id, &format!("git ls-remote {url} refs/heads/main"));
    assert!(remote.starts_with(head.trim()), "{remote}");

    // A secret-bearing push is rejected by the gate and arrives nowhere.
    let secret = git_gate_common::aws_key();
    let out = w.exec_output(
        &id,
        &format!(
            "cd /tmp/work && printf 'aws = %s\\n' {secret} > settings.ini && git add . && git commit -qm 'add settings' && git rev-parse HEAD && git push origin HEAD:main"
        ),
    );
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "the secret push succeeded: {said}");
    assert!(said.contains("settings.ini"), "{said}");
    assert!(
        !said.contains(&secret),
        "the refusal echoed the secret: {said}"
    );
    let bad = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        up.rev("proj", "refs/heads/main").as_deref(),
        Some(head.trim())
    );
    let reached = git_gate_common::run(
        git_gate_common::plain_git(&up.bare("proj")).args(["cat-file", "-e", &bad]),
    );
    assert!(
        !reached.status.success(),
        "commit {bad} reached the upstream"
    );

    // No key material anywhere the agent can look. The bundle does hold it (positive
    // control: the needles are right).
    let needles = git_gate_common::key_needles(&up.user_key);
    let sidecar = format!("bot-bottle-sidecars-{id}");
    let in_bundle = docker_ok(&["exec", &sidecar, "cat", "/etc/bot-bottle/git-gate-proj.key"]);
    assert!(git_gate_common::stream_find(in_bundle.as_bytes(), &needles).is_some());
    let mode = docker_ok(&[
        "exec",
        &sidecar,
        "stat",
        "-c",
        "%a",
        "/etc/bot-bottle/git-gate-proj.key",
    ]);
    assert_eq!(mode.trim(), "600");
    let env = w.exec_ok(
        &id,
        "printenv; for f in /proc/[0-9]*/environ; do tr '\\0' '\\n' < $f; done 2>/dev/null; true",
    );
    assert!(
        git_gate_common::stream_find(env.as_bytes(), &needles).is_none(),
        "key in the environment"
    );
    assert!(!env.contains("SSH_AUTH_SOCK"), "{env}");
    let ssh_dir = w.exec_ok(&id, "ls -A /home/node/.ssh 2>/dev/null; true");
    assert_eq!(ssh_dir.trim(), "", "~/.ssh holds {ssh_dir}");
    let mut export = Command::new("docker")
        .args(["export", &format!("bot-bottle-{id}")])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let found = git_gate_common::stream_find(export.stdout.take().unwrap(), &needles);
    assert!(export.wait().unwrap().success());
    assert_eq!(found, None, "key material in the agent's filesystem");

    // The gate's decisions are audited in the bundle, the secret never.
    let audit = docker_ok(&[
        "exec",
        &sidecar,
        "cat",
        "/var/log/bot-bottle/git-gate-audit.jsonl",
    ]);
    assert!(audit.contains("git.test"), "{audit}");
    assert!(!audit.contains(&secret), "{audit}");
    // The refused push is a refusal event the host reads through the engine, like egress's.
    let runner = bot_bottle::runner::RealRunner;
    let seen = bot_bottle::requests::recent_refusals(&runner, &id, 10).unwrap();
    let push = seen
        .iter()
        .find(|e| e.layer == "git-gate")
        .unwrap_or_else(|| panic!("no git-gate refusal event: {seen:?}"));
    assert!(push.rule.starts_with("secret-scan:"), "{push:?}");
    assert_eq!(
        (push.method.as_str(), push.bottle.as_str()),
        ("PUSH", id.as_str())
    );
    let (followed, next) =
        bot_bottle::requests::follow_refusals(&runner, &id, Default::default()).unwrap();
    assert!(followed.iter().any(|e| e.layer == "git-gate") && next.git_gate > 0);

    w.stop(session);
    assert!(w.leftovers(&id).is_empty(), "left: {:?}", w.leftovers(&id));
    drop(w.tmp);
}
