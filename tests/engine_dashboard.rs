//! Engine test of the dashboard end to end (run when `BOT_BOTTLE_ENGINE_TESTS=1`; otherwise
//! it is listed as ignored with a SKIPPED reason).
//!
//! A real supervised bottle; the agent asks for a route through MCP; the real
//! `bot-bottle dashboard`, in a detached tmux session driven with `send-keys` and read with
//! `capture-pane`, shows the request and approves it for one minute; the route then works
//! through egress until the grant expires, and is refused again after.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const STUB_IMAGE: &str = "bot-bottle-test-agent:latest";

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
        let agent = format!("dash{}", std::process::id());
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

/// A private tmux server (its own socket), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .env_remove("TMUX")
            .output()
            .expect("tmux runs; install it (`apt-get install tmux`)")
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "dash:0.0"]).stdout)
            .into_owned()
    }

    fn wait_for(&self, text: &str, secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let s = self.screen();
            if s.contains(text) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "the dashboard never showed {text:?}; the screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "dash:0.0"];
        args.extend_from_slice(keys);
        assert!(self.run(&args).status.success());
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

#[test]
#[cfg_attr(
    not(engine_tests),
    ignore = "SKIPPED: engine test; build with BOT_BOTTLE_ENGINE_TESTS=1 and a Docker engine"
)]
fn the_dashboard_approves_for_one_minute_and_the_route_expires() {
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
    let _guard = KillOnDrop(vec![child.id()]);
    let id = w.wait_active(&mut child);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !w.exec(&id, "test -f /tmp/started").0 {
        assert!(Instant::now() < deadline, "the session never started");
        std::thread::sleep(Duration::from_millis(300));
    }
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

    // The agent asks for the route.
    let (ok, answer) = w.exec(
        &id,
        &mcp_call(
            "propose-egress-route",
            &serde_json::json!({"host": "upstream.test", "path_prefixes": ["/granted/"],
                                "reason": "the dashboard test needs it"}),
        ),
    );
    assert!(ok, "{answer}");
    let req = request_id(&answer);

    // The dashboard, in tmux, with the test's home and engine settings.
    let tmux = Tmux {
        socket: format!("bb-dash-engine-{}", std::process::id()),
    };
    let mut env: Vec<String> = w
        .cmd()
        .get_envs()
        .filter_map(|(k, v)| Some(format!("{}={}", k.to_str()?, v?.to_str()?)))
        .collect();
    env.push(format!(
        "PATH={}",
        std::env::var("PATH").unwrap_or_default()
    ));
    let cmd = format!(
        "cd '{}' && {} dashboard; echo \"dashboard exited $?\"; sleep 600",
        w.work.display(),
        bin().display()
    );
    let mut args = vec![
        "new-session",
        "-d",
        "-s",
        "dash",
        "-x",
        "140",
        "-y",
        "40",
        "--",
        "env",
    ];
    args.extend(env.iter().map(String::as_str));
    args.extend(["sh", "-c", cmd.as_str()]);
    let out = tmux.run(&args);
    assert!(out.status.success(), "{out:?}");

    let s = tmux.wait_for("route upstream.test paths /granted/", 60);
    assert!(s.contains("the dashboard test needs it"), "{s}");
    assert!(s.contains(&id), "the bottles pane lists the bottle: {s}");
    tmux.keys(&["a"]);
    tmux.wait_for(&format!("Approve {req}"), 10);
    tmux.keys(&["1"]);
    tmux.wait_for("(*) [m] for 1 minutes", 10);
    tmux.keys(&["Enter"]);
    let s = tmux.wait_for(&format!("approved {req} for 1m"), 60);
    assert!(!s.contains("error:"), "{s}");

    // Live without a restart, for the minute.
    let deadline = Instant::now() + Duration::from_secs(10);
    while w.status(&id, "/granted/x") != "200" {
        assert!(
            Instant::now() < deadline,
            "the approved path never went live"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(w.status(&id, "/granted/y"), "200");
    // Then refused again once the grant expired (a minute after the approval, plus the
    // time egress takes to notice).
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut served_while_live = 0;
    loop {
        match w.status(&id, "/granted/x").as_str() {
            "200" => served_while_live += 1,
            "403" => break,
            other => panic!("unexpected status {other}"),
        }
        assert!(Instant::now() < deadline, "the grant never expired");
        std::thread::sleep(Duration::from_secs(2));
    }
    assert!(
        served_while_live > 0,
        "the route was live before it expired"
    );
    assert_eq!(
        w.status(&id, "/base/x"),
        "200",
        "the bottle's own route stays"
    );
    // The expiry reaches the host's audit log through the dashboard's polling.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let audit = std::fs::read_to_string(w.home.join("queue/audit.jsonl")).unwrap_or_default();
        if audit
            .lines()
            .any(|l| l.contains("\"expired\"") && l.contains(&req))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no expired event in the audit: {audit}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    tmux.keys(&["q"]);
    let s = tmux.wait_for("dashboard exited", 10);
    assert!(s.contains("dashboard exited 0"), "{s}");
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
fn a_stop_from_the_dashboard_ends_the_start_that_owns_the_bottle() {
    build_stub_image();
    let w = World::new();
    // The owning `start` on a terminal, its output kept to read how it ended.
    let typescript = w.work.with_file_name("start.typescript");
    let mut start = Command::new("script");
    start.args([
        "-qfec",
        &format!("{} start --yes {}", bin().display(), w.agent),
        &typescript.display().to_string(),
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
    let _guard = KillOnDrop(vec![child.id()]);
    let id = w.wait_active(&mut child);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !w.exec(&id, "test -f /tmp/started").0 {
        assert!(Instant::now() < deadline, "the session never started");
        std::thread::sleep(Duration::from_millis(300));
    }

    let tmux = Tmux {
        socket: format!("bb-dash-stop-engine-{}", std::process::id()),
    };
    let mut env: Vec<String> = w
        .cmd()
        .get_envs()
        .filter_map(|(k, v)| Some(format!("{}={}", k.to_str()?, v?.to_str()?)))
        .collect();
    env.push(format!(
        "PATH={}",
        std::env::var("PATH").unwrap_or_default()
    ));
    let cmd = format!(
        "cd '{}' && {} dashboard; echo \"dashboard exited $?\"; sleep 600",
        w.work.display(),
        bin().display()
    );
    let mut args = vec![
        "new-session",
        "-d",
        "-s",
        "dash",
        "-x",
        "140",
        "-y",
        "40",
        "--",
        "env",
    ];
    args.extend(env.iter().map(String::as_str));
    args.extend(["sh", "-c", cmd.as_str()]);
    assert!(tmux.run(&args).status.success());
    tmux.wait_for(&format!("Refusals: {id}"), 60);
    tmux.keys(&["BTab"]);
    tmux.wait_for("a attach  s stop", 10);
    tmux.keys(&["s"]);
    tmux.wait_for(&format!("stop {id}? y/N"), 10);
    tmux.keys(&["y"]);
    let s = tmux.wait_for(&format!("stopped {id}; its `start`"), 60);
    assert!(!s.contains("error:"), "{s}");

    // The `start` that owns the bottle ends (under gVisor its exec would not end by itself),
    // keeps the state for `resume` and says why.
    let stopped_at = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            stopped_at.elapsed() < Duration::from_secs(120),
            "start did not exit after the stop"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    println!(
        "start exited {status} {} ms after the dashboard's stop",
        stopped_at.elapsed().as_millis()
    );
    assert_eq!(status.code(), Some(1), "{status}");
    let said = std::fs::read_to_string(&typescript).unwrap_or_default();
    assert!(
        said.contains(&format!("bottle `{id}` was stopped outside this session")),
        "{said}"
    );
    assert!(said.contains(&format!("bot-bottle resume {id}")), "{said}");
    let state = w.home.join("state").join(&id);
    assert!(state.join(".preserve").exists(), "state kept");
    assert!(
        state.join("logs").exists(),
        "the bundle's logs were snapshotted"
    );
    let left = docker_ok(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=dev.bot-bottle.identity={id}"),
        "--format",
        "{{.Names}}",
    ]);
    assert_eq!(left.trim(), "", "containers left: {left}");
    tmux.keys(&["q"]);
    let s = tmux.wait_for("dashboard exited", 10);
    assert!(s.contains("dashboard exited 0"), "{s}");
}
