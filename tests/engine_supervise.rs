//! Engine test of supervise in a real bottle (run when `BOT_BOTTLE_ENGINE_TESTS=1`; otherwise
//! it is listed as ignored with a SKIPPED reason).
//!
//! From inside the agent container, plain `curl` speaks MCP's streamable HTTP to supervise
//! through the relay (127.0.0.1:9100): it asks for a route and waits; the test approves it
//! with the real CLI; the wait answers `approved` and the path becomes reachable through
//! egress with no restart; a `--once` grant serves exactly one request.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const STUB_IMAGE: &str = "bot-bottle-test-agent:latest";

/// The tests of this file take turns: each runs a whole bottle.
static ENGINE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn engine_turn() -> std::sync::MutexGuard<'static, ()> {
    ENGINE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_bot-bottle"))
}

fn docker_ok(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("docker runs");
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// The real provider image with `claude` replaced by a stub that waits for a stop file.
fn build_stub_image() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("claude"),
        "#!/bin/sh\ntouch /tmp/started\nwhile [ ! -f /tmp/stop ]; do sleep 0.2; done\nexit \"$(cat /tmp/stop 2>/dev/null || echo 0)\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM bot-bottle-claude:latest\nUSER root\nRUN rm -f /usr/local/bin/claude\nCOPY claude /usr/local/bin/claude\nRUN chmod 755 /usr/local/bin/claude\nUSER node\n",
    )
    .unwrap();
    let out = Command::new(bin()).args(["build-images"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    docker_ok(&[
        "build",
        "-q",
        "-t",
        STUB_IMAGE,
        &dir.path().display().to_string(),
    ]);
}

/// A home with one supervised bottle whose only route is `upstream.test/base/`, and a TLS
/// upstream's CA as the operator's extra CA.
struct World {
    _tmp: tempfile::TempDir,
    agent: String,
    home: PathBuf,
    host_home: PathBuf,
    work: PathBuf,
    certs: PathBuf,
}

impl World {
    fn new() -> World {
        let agent = format!("sup{}", std::process::id());
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("bbhome");
        let host_home = tmp.path().join("hosthome");
        let work = tmp.path().join("work");
        let certs = tmp.path().join("certs");
        for d in [
            home.join("bottles"),
            home.join("agents"),
            host_home.clone(),
            work.clone(),
            certs.clone(),
        ] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(
            home.join("bottles/sup.md"),
            "---\nsupervise: true\negress:\n  routes:\n    - host: upstream.test\n      path_allowlist: [\"/base/\"]\n      pipelock:\n        ssrf_ip_allowlist: [\"172.16.0.0/12\", \"10.0.0.0/8\", \"192.168.0.0/16\"]\n---\n",
        )
        .unwrap();
        std::fs::write(
            home.join(format!("agents/{agent}.md")),
            "---\nbottle: sup\n---\nWork.\n",
        )
        .unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "supervise engine test CA");
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let leaf_params = rcgen::CertificateParams::new(vec!["upstream.test".to_string()]).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
        std::fs::write(certs.join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(certs.join("cert.pem"), leaf.pem()).unwrap();
        std::fs::write(certs.join("key.pem"), leaf_key.serialize_pem()).unwrap();
        std::fs::write(
            certs.join("server.js"),
            "const https=require('https');const fs=require('fs');\n\
             https.createServer({key:fs.readFileSync('/certs/key.pem'),cert:fs.readFileSync('/certs/cert.pem')},(q,s)=>{\n\
             console.log('REQ '+q.method+' '+q.url);s.end('upstream-says-hi\\n');}).listen(443,()=>console.log('LISTENING'));\n",
        )
        .unwrap();
        World {
            _tmp: tmp,
            agent,
            home,
            host_home,
            work,
            certs,
        }
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(bin());
        c.env("BOT_BOTTLE_HOME", &self.home)
            .env("HOME", &self.host_home)
            .env("BOT_BOTTLE_IMAGE", STUB_IMAGE)
            .env("BOT_BOTTLE_EXTRA_CA_CERTS", self.certs.join("ca.pem"))
            .env("COMPOSE_BAKE", "false")
            .current_dir(&self.work);
        c
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd().args(args).stdin(Stdio::null()).output().unwrap();
        assert!(
            out.status.success(),
            "bot-bottle {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    fn wait_active(&self, child: &mut Child) -> String {
        let deadline = Instant::now() + Duration::from_secs(240);
        loop {
            let list: serde_json::Value =
                serde_json::from_str(&self.ok(&["list", "active", "--json"])).unwrap();
            if let Some(b) = list
                .as_array()
                .into_iter()
                .flatten()
                .find(|b| b["agent"] == self.agent.as_str())
            {
                return b["id"].as_str().unwrap().to_string();
            }
            if let Ok(Some(st)) = child.try_wait() {
                panic!("start exited early: {st}");
            }
            assert!(Instant::now() < deadline, "bottle never became active");
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    fn exec_cmd(&self, id: &str, script: &str) -> Command {
        let mut c = self.cmd();
        c.args(["exec", id, "--", "sh", "-c", script])
            .stdin(Stdio::null());
        c
    }

    fn exec(&self, id: &str, script: &str) -> (bool, String) {
        let out = self.exec_cmd(id, script).output().unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    /// The HTTP status of a GET through egress from inside the bottle.
    fn status(&self, id: &str, path: &str) -> String {
        self.exec(
            id,
            &format!(
                "curl -sS --max-time 20 -o /dev/null -w '%{{http_code}}' https://upstream.test{path}"
            ),
        )
        .1
    }
}

/// `bot-bottle <args>` under a pseudo-terminal (as an operator's shell runs it), in the
/// background. `image` replaces the agent image override (`None`: no override).
fn spawn_pty(w: &World, args: &str, image: Option<&str>) -> Child {
    let mut c = Command::new("script");
    c.args(["-qfec", &format!("{} {args}", bin().display()), "/dev/null"]);
    for (k, v) in w.cmd().get_envs() {
        if let Some(v) = v {
            c.env(k, v);
        }
    }
    match image {
        Some(i) => c.env("BOT_BOTTLE_IMAGE", i),
        None => c.env_remove("BOT_BOTTLE_IMAGE"),
    };
    c.current_dir(&w.work)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn wait_started(w: &World, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !w.exec(id, "test -f /tmp/started").0 {
        assert!(Instant::now() < deadline, "the session never started");
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn wait_exit(child: &mut Child, secs: u64) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        assert!(Instant::now() < deadline, "the process did not exit");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A shell script that opens an MCP session with supervise through the relay and calls one
/// tool, printing the SSE answer: nothing but curl, as any agent could.
fn mcp_call(tool: &str, arguments: &serde_json::Value) -> String {
    let init = serde_json::json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "engine-test", "version": "1"}}
    });
    let call = serde_json::json!({
        "jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": tool, "arguments": arguments}
    });
    format!(
        "set -e; U=http://127.0.0.1:9100/mcp; \
         post() {{ curl -sS --max-time 200 -H 'content-type: application/json' -H 'accept: application/json, text/event-stream' -H 'mcp-protocol-version: 2025-06-18' \"$@\" \"$U\"; }}; \
         sid=$(post -D - -o /dev/null -d '{init}' | tr -d '\\r' | awk 'tolower($1)==\"mcp-session-id:\"{{print $2}}'); \
         test -n \"$sid\"; \
         post -H \"mcp-session-id: $sid\" -d '{{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}}' >/dev/null; \
         post -H \"mcp-session-id: $sid\" -d '{call}'"
    )
}

/// The request id in a `propose-*` answer.
fn request_id(answer: &str) -> String {
    let b = answer.as_bytes();
    (0..b.len().saturating_sub(19))
        .map(|i| &answer[i..i + 20])
        .find(|s| {
            s.as_bytes()[..13].iter().all(u8::is_ascii_digit)
                && s.as_bytes()[13] == b'-'
                && s.as_bytes()[14..]
                    .iter()
                    .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
        })
        .unwrap_or_else(|| panic!("no request id in {answer}"))
        .to_string()
}

struct KillOnDrop(Vec<u32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for pid in &self.0 {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
        }
    }
}

#[test]
#[cfg_attr(
    not(engine_tests),
    ignore = "SKIPPED: engine test; build with BOT_BOTTLE_ENGINE_TESTS=1 and a Docker engine"
)]
fn an_agent_asks_through_mcp_the_operator_approves_and_the_route_goes_live() {
    let _turn = engine_turn();
    build_stub_image();
    let w = World::new();
    let mut start = Command::new("script");
    start.args([
        "-qfec",
        &format!("{} start --yes {}", bin().display(), w.agent),
        "/dev/null",
    ]);
    for (k, v) in w.cmd().get_envs() {
        if let Some(v) = v {
            start.env(k, v);
        }
    }
    let mut child = start
        .current_dir(&w.work)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut guard = KillOnDrop(vec![child.id()]);
    let id = w.wait_active(&mut child);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !w.exec(&id, "test -f /tmp/started").0 {
        assert!(Instant::now() < deadline, "the session never started");
        std::thread::sleep(Duration::from_millis(300));
    }
    // The provider's config registers supervise at the relay's port.
    let claude = w.exec(&id, "cat /home/node/.claude.json").1;
    let claude: serde_json::Value = serde_json::from_str(&claude).unwrap();
    assert_eq!(
        claude["mcpServers"]["supervise"]["url"],
        "http://127.0.0.1:9100/mcp"
    );

    // The upstream, on the bottle's egress network (reached only through egress).
    let upstream = format!("bot-bottle-test-upstream-{id}");
    docker_ok(&[
        "run",
        "-d",
        "--name",
        &upstream,
        "--network",
        &format!("bot-bottle-egress-{id}"),
        "--network-alias",
        "upstream.test",
        "-v",
        &format!("{}:/certs:ro", w.certs.display()),
        "--entrypoint",
        "node",
        "bot-bottle-claude:latest",
        "/certs/server.js",
    ]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !docker_ok(&["logs", &upstream]).contains("LISTENING") {
        assert!(Instant::now() < deadline, "upstream never listened");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(w.status(&id, "/base/x"), "200");
    assert_eq!(w.status(&id, "/granted/x"), "403");
    // The host sees that refusal through the engine, as the dashboard reads it.
    let runner = bot_bottle::runner::RealRunner;
    let seen = bot_bottle::requests::recent_refusals(&runner, &id, 10).unwrap();
    let r = seen
        .iter()
        .find(|e| e.path == "/granted/x")
        .unwrap_or_else(|| panic!("{seen:?}"));
    assert_eq!(
        (r.layer.as_str(), r.rule.as_str()),
        ("path-allowlist", "path-not-allowed")
    );
    assert_eq!(
        (r.bottle.as_str(), r.host.as_str()),
        (id.as_str(), "upstream.test")
    );
    let (followed, next) =
        bot_bottle::requests::follow_refusals(&runner, &id, Default::default()).unwrap();
    assert!(followed.iter().any(|e| e.path == "/granted/x") && next.egress > 0);

    // The agent asks, then waits (in the background, as a blocked tool call).
    let (ok, answer) = w.exec(
        &id,
        &mcp_call(
            "propose-egress-route",
            &serde_json::json!({"host": "upstream.test", "path_prefixes": ["/granted/"],
                                "reason": "the engine test needs it"}),
        ),
    );
    assert!(ok, "{answer}");
    let req = request_id(&answer);
    let waiter = w
        .exec_cmd(
            &id,
            &mcp_call(
                "wait-for-decision",
                &serde_json::json!({"id": req, "timeout_seconds": 180}),
            ),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    guard.0.push(waiter.id());
    std::thread::sleep(Duration::from_secs(2));
    let queued = w.ok(&["requests", "--json"]);
    assert!(queued.contains(&req), "{queued}");
    let mut waiter = waiter;
    assert!(
        waiter.try_wait().unwrap().is_none(),
        "the wait returned before any decision"
    );

    // The operator approves through the CLI; the waiting call answers `approved`.
    w.ok(&["approve", &req, "--session"]);
    let out = waiter.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("\\\"status\\\":\\\"approved\\\"")
            || text.contains("\"status\":\"approved\""),
        "{text}"
    );
    // Live without a restart (egress picks the grants file up within its poll).
    let deadline = Instant::now() + Duration::from_secs(10);
    while w.status(&id, "/granted/x") != "200" {
        assert!(
            Instant::now() < deadline,
            "the approved path never went live"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // A once grant serves exactly one request.
    let (ok, answer) = w.exec(
        &id,
        &mcp_call(
            "propose-egress-route",
            &serde_json::json!({"host": "upstream.test", "path_prefixes": ["/once/"],
                                "methods": ["GET"], "reason": "one download"}),
        ),
    );
    assert!(ok, "{answer}");
    let once = request_id(&answer);
    w.ok(&["approve", &once, "--once"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut first = w.status(&id, "/once/a");
    while first == "403" {
        assert!(Instant::now() < deadline, "the once grant never went live");
        std::thread::sleep(Duration::from_millis(100));
        first = w.status(&id, "/once/a");
    }
    assert_eq!(first, "200");
    assert_eq!(w.status(&id, "/once/a"), "403");
    assert_eq!(w.status(&id, "/once/b"), "403");
    let served = docker_ok(&["logs", &upstream]);
    assert_eq!(served.matches("REQ GET /once/").count(), 1, "{served}");
    // The session grant is untouched by the once grant's end.
    assert_eq!(w.status(&id, "/granted/y"), "200");
    let audit = std::fs::read_to_string(w.home.join("queue/audit.jsonl")).unwrap();
    assert!(audit.contains(&once), "{audit}");

    let _ = Command::new("docker")
        .args(["rm", "-f", &upstream])
        .output();
    w.exec(&id, "echo 0 > /tmp/stop");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            assert!(st.success(), "start exited with {st}");
            break;
        }
        assert!(Instant::now() < deadline, "start did not exit");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
#[cfg_attr(
    not(engine_tests),
    ignore = "SKIPPED: engine test; build with BOT_BOTTLE_ENGINE_TESTS=1 and a Docker engine"
)]
fn an_approved_image_change_ends_the_bottle_and_resume_runs_the_new_image() {
    let _turn = engine_turn();
    build_stub_image();
    let w = World::new();
    let mut child = spawn_pty(&w, &format!("start --yes {}", w.agent), Some(STUB_IMAGE));
    let mut guard = KillOnDrop(vec![child.id()]);
    let id = w.wait_active(&mut child);
    wait_started(&w, &id);
    w.exec(&id, "mkdir -p /home/node/.claude/projects/p && echo TRANSCRIPT-MARK > /home/node/.claude/projects/p/s.jsonl");
    let dockerfile =
        format!("FROM {STUB_IMAGE}\nUSER root\nRUN touch /rebuilt-marker\nUSER node\n");
    let (ok, answer) = w.exec(
        &id,
        &mcp_call(
            "propose-image-change",
            &serde_json::json!({"dockerfile": dockerfile, "reason": "needs a marker"}),
        ),
    );
    assert!(ok, "{answer}");
    let req = request_id(&answer);
    let out = w
        .cmd()
        .args(["approve", &req])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    assert!(err.contains(&format!("bot-bottle resume {id}")), "{err}");
    // The session ended, the bottle is gone, its state is kept with the new Dockerfile.
    wait_exit(&mut child, 120);
    let state = w.home.join("state").join(&id);
    assert!(state.join(".preserve").exists());
    assert_eq!(
        std::fs::read_to_string(state.join("Dockerfile")).unwrap(),
        dockerfile
    );
    let transcript = state.join("transcript");
    assert!(
        std::fs::read_dir(&transcript).is_ok(),
        "no transcript in {}",
        state.display()
    );

    // `resume` builds the per-bottle image and runs on it (no image override now).
    let mut resumed = spawn_pty(&w, &format!("resume --yes {id}"), None);
    guard.0.push(resumed.id());
    let deadline = Instant::now() + Duration::from_secs(600);
    while !w.exec(&id, "test -f /tmp/started").0 {
        if let Ok(Some(st)) = resumed.try_wait() {
            panic!("resume exited early: {st}");
        }
        assert!(
            Instant::now() < deadline,
            "the resumed session never started"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        w.exec(&id, "test -f /rebuilt-marker").0,
        "not the rebuilt image"
    );
    assert!(
        w.exec(&id, "grep -r TRANSCRIPT-MARK /home/node/.claude/projects")
            .0,
        "the transcript did not come back"
    );
    w.exec(&id, "echo 0 > /tmp/stop");
    let st = wait_exit(&mut resumed, 120);
    assert!(st.success(), "resume exited with {st}");
    let _ = Command::new("docker")
        .args(["rmi", "-f", &format!("bot-bottle-rebuilt-{id}:latest")])
        .output();
}
