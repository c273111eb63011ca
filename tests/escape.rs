//! The escape suite (THREATS groups Network, Credentials, Git, Escape, Trust boundary): every case
//! is an attack tried against real bottles on a real Docker engine, judged by which layer
//! refused. Each case prints one line; the suite ends with `N passed, N failed, N skipped`
//! and fails if anything failed. A case that cannot run here says skipped and why.
//!
//! Engine test: runs when the build saw `BOT_BOTTLE_ENGINE_TESTS=1` (otherwise listed as
//! ignored with the reason). Run it under `flock /tmp/bb-engine.lock` on a shared engine.
//!
//! The in-agent probes are the library's (`bot_bottle::doctor::probes`), the same ones
//! `bot-bottle doctor` runs; this file adds what needs the host side: an upstream that echoes
//! the credential, the compose file, state dir and `docker inspect`, argv sampled during the
//! launch, a second bottle (E7), a bottle behind the git gate with a real sshd upstream on
//! the engine's bridge (G1-G3, G5-G7, set up by `git_gate_common` as the engine launch test
//! does), the CLI's trust boundary (M1, M2, M5), and `doctor` itself on a sound and on a
//! deliberately weakened bottle.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bot_bottle::doctor::bottle::mint_token;
use bot_bottle::doctor::probes::{self, Context};
use bot_bottle::doctor::targets;
use bot_bottle::runner::RealRunner;

mod engine_common;
mod git_gate_common;

use engine_common::mcp::{find_request_id, mcp_call_within};
use engine_common::upstream::Upstream;
use engine_common::world::{SSRF_ALLOW_PRIVATE, World};
use engine_common::{bin, build_stub_image, docker, docker_ok, engine_turn, tree_contains};

/// The suite's result lines.
#[derive(Default)]
struct Report {
    lines: Vec<(String, String, String)>,
}

impl Report {
    fn record(&mut self, case: &str, name: &str, result: Result<String, String>) {
        let (tag, seen) = match result {
            Ok(s) => ("PASS", s),
            Err(s) => ("FAIL", s),
        };
        self.print(tag, case, name, &seen);
    }

    fn skip(&mut self, case: &str, name: &str, why: &str) {
        self.print("SKIP", case, name, why);
    }

    fn print(&mut self, tag: &str, case: &str, name: &str, seen: &str) {
        let seen: String = seen.replace('\n', " ").chars().take(220).collect();
        println!("{tag:<4} {case:<10} {name}: {seen}");
        self.lines.push((tag.into(), case.into(), name.into()));
    }

    fn count(&self, tag: &str) -> usize {
        self.lines.iter().filter(|l| l.0 == tag).count()
    }

    fn finish(&self, started: Instant) {
        let (p, f, s) = (self.count("PASS"), self.count("FAIL"), self.count("SKIP"));
        println!(
            "{p} passed, {f} failed, {s} skipped ({} s)",
            started.elapsed().as_secs()
        );
        let failed: Vec<String> = self
            .lines
            .iter()
            .filter(|l| l.0 == "FAIL")
            .map(|l| format!("{} {}", l.1, l.2))
            .collect();
        assert!(failed.is_empty(), "failed cases: {failed:?}");
    }
}

const AUTH_ROUTE: &str = "upstream.test";
const PLAIN_ROUTE: &str = "plain.test";

/// A home with one bottle (an auth route and a plain route, both served by the echo
/// upstream) and two agents (`<agent>a`, `<agent>b`), a CA for the upstream, and the host's
/// minted token.
fn world() -> World {
    let mut w = World::new("esc");
    w.token_var = Some("ESCAPE_TOKEN");
    let allow = SSRF_ALLOW_PRIVATE;
    w.bottle(
        "dev",
        &format!(
            "---\negress:\n  routes:\n    - host: {AUTH_ROUTE}\n      auth:\n        scheme: Bearer\n        token_ref: ESCAPE_TOKEN\n{allow}    - host: {PLAIN_ROUTE}\n{allow}---\n"
        ),
    );
    // Bottle B also runs supervise (E8); A is the plain bottle every probe runs in.
    w.bottle(
        "sup",
        &format!(
            "---\nsupervise: true\negress:\n  routes:\n    - host: {PLAIN_ROUTE}\n{allow}---\n"
        ),
    );
    for (who, bottle) in [("a", "dev"), ("b", "sup")] {
        w.agent_file(
            &format!("{}{who}", w.agent),
            &format!("---\nbottle: {bottle}\n---\nescape suite agent\n"),
        );
    }
    // Echoes the Authorization it got, in a header and the body; `/redirect` sends the
    // client to the plain route.
    w.upstream_certs(
        &[AUTH_ROUTE, PLAIN_ROUTE],
        "const https=require('https');const fs=require('fs');\n\
         https.createServer({key:fs.readFileSync('/certs/key.pem'),cert:fs.readFileSync('/certs/cert.pem')},(q,s)=>{\n\
         const a=q.headers['authorization']||'none';\n\
         console.log('REQ host='+q.headers.host+' '+q.method+' '+q.url+' auth='+a);\n\
         if(q.url.startsWith('/redirect')){s.writeHead(302,{Location:'https://plain.test/after-redirect'});return s.end();}\n\
         s.setHeader('x-echo-auth',a);s.end('echo auth='+a+' json='+JSON.stringify({a})+'\\n');}).listen(443,()=>console.log('LISTENING'));\n",
    );
    w
}

impl World {
    /// The identity of `agent`'s active bottle; none while `list active` fails.
    fn active_id(&self, agent: &str) -> Option<String> {
        let out = self
            .cmd()
            .args(["list", "active", "--json"])
            .output()
            .ok()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        v.as_array()?
            .iter()
            .find(|b| b["agent"] == agent)
            .and_then(|b| b["id"].as_str().map(str::to_string))
    }
}

/// A running bottle of the world, stopped (and waited for) on drop.
struct Running {
    child: Child,
    id: String,
}

impl Running {
    fn agent(&self) -> String {
        format!("bot-bottle-{}", self.id)
    }
    fn sidecar(&self) -> String {
        format!("bot-bottle-sidecars-{}", self.id)
    }
    fn networks(&self) -> [String; 2] {
        [
            format!("bot-bottle-net-{}", self.id),
            format!("bot-bottle-egress-{}", self.id),
        ]
    }

    fn exec(&self, script: &str) -> std::process::Output {
        Command::new("docker")
            .args(["exec", "-u", "node", &self.agent(), "bash", "-c", script])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn stop(mut self) -> bool {
        let _ = self.exec("echo 0 > /tmp/stop");
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.success();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return false;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("docker")
                .args(["exec", &self.agent(), "sh", "-c", "echo 0 > /tmp/stop"])
                .output();
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(200));
            }
            let _ = self.child.kill();
        }
    }
}

/// Start an agent of the world; while it starts, sample every process's argv on this host
/// for the token (C3). Returns the bottle and what the sampler saw.
fn start(w: &World, agent: &str, weaken: Option<&str>) -> (Running, Result<String, String>) {
    let stop = Arc::new(AtomicBool::new(false));
    let token = w.token.clone();
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut samples = 0u64;
            while !stop.load(Ordering::SeqCst) {
                for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                    if let Ok(b) = std::fs::read(e.path().join("cmdline")) {
                        if b.windows(token.len()).any(|x| x == token.as_bytes()) {
                            let argv = String::from_utf8_lossy(&b).replace('\0', " ");
                            return Err(format!(
                                "token on argv of pid {:?}: {}",
                                e.file_name(),
                                argv.replace(&token, "[TOKEN]")
                            ));
                        }
                    }
                }
                samples += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(format!(
                "{samples} samples of every process's argv, no token"
            ))
        })
    };
    let mut c = w.cmd();
    if let Some(k) = weaken {
        c.env("BOT_BOTTLE_TEST_WEAKEN", k);
    }
    let mut child = c
        .args(["start", "--yes", agent])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    let id = loop {
        if let Some(id) = w.active_id(agent) {
            break id;
        }
        if let Ok(Some(st)) = child.try_wait() {
            panic!("start of {agent} exited early: {st}");
        }
        assert!(Instant::now() < deadline, "{agent} never became active");
        std::thread::sleep(Duration::from_millis(300));
    };
    let running = Running { child, id };
    let deadline = Instant::now() + Duration::from_secs(120);
    while !running
        .exec("test -f /tmp/started && (exec 3<>/dev/tcp/127.0.0.1/9099) 2>/dev/null")
        .status
        .success()
    {
        assert!(Instant::now() < deadline, "{agent}'s session never started");
        std::thread::sleep(Duration::from_millis(300));
    }
    stop.store(true, Ordering::SeqCst);
    let sampled = sampler.join().unwrap();
    (running, sampled)
}

/// Run every library probe in `bottle`'s agent; one line each.
fn run_probes(r: &mut Report, bottle: &Running, ctx: &Context, secret: &str, label: &str) {
    for p in probes::all(ctx) {
        let out = p
            .run(
                &RealRunner,
                &bottle.agent(),
                &bottle.sidecar(),
                Some(secret),
            )
            .expect("docker exec runs");
        let v = p.judge(&out.stdout_str(), &out.stderr_str());
        let name = format!("{label}{}", p.id);
        r.record(p.case, &name, if v.pass { Ok(v.seen) } else { Err(v.seen) });
    }
}

fn context_for(bottle: &Running, w: &World) -> Context {
    let nets = bottle.networks();
    let (all, common) = targets::for_bottle(
        &RealRunner,
        &bottle.sidecar(),
        &[nets[0].as_str(), nets[1].as_str()],
    );
    Context {
        all_port_targets: all,
        common_port_targets: common,
        auth_route: Some(AUTH_ROUTE.into()),
        plain_route: Some(PLAIN_ROUTE.into()),
        has_secret: true,
        scanner_bait: mint_token(),
        exfil_label: hex::encode(w.token.as_bytes())[..48].to_string(),
        gvisor: probes::under_gvisor(&RealRunner, &bottle.agent()).expect("docker inspect runs"),
    }
}

fn out_text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// N5 and N15 as the echo upstream saw them, after the probes ran (`label` prefixes the names):
/// the second request of a kept-alive connection never arrived, and during the live reloads
/// the credential arrived on every request to its route and on no other.
fn upstream_log_cases(r: &mut Report, w: &World, up: &Upstream, label: &str) {
    let log = up.log();
    let firsts = log.matches("/bb-n5/first").count();
    let seconds: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("/bb-n5/second"))
        .collect();
    r.record(
        "N5",
        &format!("{label}keep-alive-second-request-never-forwarded"),
        if !seconds.is_empty() {
            Err(format!(
                "forwarded: {}",
                seconds.join(" | ").replace(&w.token, "[TOKEN]")
            ))
        } else if firsts < 3 {
            Err(format!(
                "only {firsts} first requests reached the upstream (nothing was tested)"
            ))
        } else {
            Ok(format!(
                "{firsts} first requests reached the upstream, no second one did"
            ))
        },
    );
    let with_token = format!("auth=Bearer {}", w.token);
    let reload: Vec<&str> = log.lines().filter(|l| l.contains(" /bb-n15")).collect();
    let on_auth = reload
        .iter()
        .filter(|l| l.contains(&format!("host={AUTH_ROUTE} ")))
        .count();
    let wrong: Vec<&&str> = reload
        .iter()
        .filter(|l| {
            if l.contains(&format!("host={AUTH_ROUTE} ")) {
                !l.ends_with(&with_token)
            } else {
                !(l.contains(&format!("host={PLAIN_ROUTE} ")) && l.ends_with("auth=none"))
            }
        })
        .collect();
    r.record(
        "N15",
        &format!("{label}live-reload-credential-only-on-its-route"),
        if !wrong.is_empty() {
            Err(format!(
                "{} of {} requests with the wrong credential or host: {}",
                wrong.len(),
                reload.len(),
                wrong[0].replace(&w.token, "[TOKEN]")
            ))
        } else if on_auth == 0 || on_auth == reload.len() {
            Err(format!(
                "{} requests during the reloads, {on_auth} on the credential route: not both routes seen",
                reload.len()
            ))
        } else {
            Ok(format!(
                "{} requests reached the upstream during the reloads; the {on_auth} on {AUTH_ROUTE} all carried the credential, the others none",
                reload.len()
            ))
        },
    );
}

/// C3–C6 and N15: the credential path end to end, with the echo upstream.
fn credential_cases(r: &mut Report, w: &World, a: &Running, up: &Upstream) {
    let token = &w.token;
    let needles = probes::needles(token);
    // C3: host side.
    let state = w.home.join("state").join(&a.id);
    r.record(
        "C3",
        "compose-file-and-state-dir",
        match tree_contains(&state, &needles) {
            None if state.join("compose.yaml").is_file() => {
                Ok(format!("no raw/hex/base64 token under {}", state.display()))
            }
            None => Err(format!("no compose file in {}", state.display())),
            Some(p) => Err(format!("token found in {}", p.display())),
        },
    );
    let inspect = docker_ok(&["inspect", &a.agent()]);
    r.record(
        "C3",
        "docker-inspect-agent",
        if needles.iter().any(|n| inspect.contains(n.as_str())) {
            Err("token in `docker inspect` of the agent".into())
        } else {
            Ok(format!("{} bytes of inspect, no token", inspect.len()))
        },
    );
    let mounts = docker_ok(&[
        "inspect",
        "-f",
        "{{range .Mounts}}{{.Type}}:{{.Destination}} {{end}}",
        &a.agent(),
        &a.sidecar(),
    ]);
    r.record(
        "E4 C3",
        "host-side-mounts",
        if mounts.split_whitespace().all(|m| m.starts_with("volume:")) {
            Ok(format!(
                "only volumes: {}",
                mounts.trim().replace('\n', " | ")
            ))
        } else {
            Err(format!("a host path is mounted: {mounts}"))
        },
    );

    // C4: the upstream echoes the injected token back; the agent sees it masked.
    let got = a.exec(&format!(
        "curl -sS -i --max-time 20 https://{AUTH_ROUTE}/echo"
    ));
    let seen = out_text(&got);
    let log = up.log();
    r.record(
        "C4",
        "echoed-token-masked",
        if !got.status.success() {
            Err(format!("request failed: {seen}"))
        } else if needles.iter().any(|n| seen.contains(n.as_str())) {
            Err("the agent received the token".into())
        } else if !log.contains(&format!("auth=Bearer {token}")) {
            Err("the upstream never got the injected token (nothing was tested)".into())
        } else if !seen.contains("echo auth=Bearer ****") {
            Err(format!("unexpected answer: {seen}"))
        } else {
            Ok("upstream got the token; agent saw `Bearer ****…` in header and body".into())
        },
    );
    // C5: the agent's own Authorization is replaced on the auth route.
    let got = a.exec(&format!(
        "curl -sS --max-time 20 -H 'Authorization: Bearer agent-own-value-7Qd2' https://{AUTH_ROUTE}/own"
    ));
    let log = up.log();
    r.record(
        "C5",
        "agent-authorization-replaced",
        if got.status.success()
            && log.contains("/own auth=Bearer ")
            && !log.contains("agent-own-value-7Qd2")
        {
            Ok("upstream saw only the injected credential".into())
        } else {
            Err(format!("log: {}", log.lines().last().unwrap_or("")))
        },
    );
    // C6: case and trailing-dot tricks, and a redirect to another host, get no credential.
    let mut c6 = Vec::new();
    for (label, url) in [
        ("upper-case", "https://UPSTREAM.TEST/case".to_string()),
        ("trailing-dot", "https://upstream.test./dot".to_string()),
        ("plain-route", format!("https://{PLAIN_ROUTE}/plain")),
        ("redirect", format!("https://{AUTH_ROUTE}/redirect")),
    ] {
        let o = a.exec(&format!(
            "curl -sS -L --max-time 20 -o /dev/null -w '%{{http_code}}' '{url}'"
        ));
        c6.push(format!("{label}={}", String::from_utf8_lossy(&o.stdout)));
    }
    let log = up.log();
    let leaked: Vec<&str> = log
        .lines()
        .filter(|l| {
            (l.contains("/case")
                || l.contains("/dot")
                || l.contains("/plain")
                || l.contains("/after-redirect"))
                && !l.contains("auth=none")
        })
        .collect();
    r.record(
        "C6",
        "credential-only-on-exact-host",
        if leaked.is_empty() && log.contains("/after-redirect auth=none") {
            Ok(format!(
                "no credential off the exact host ({})",
                c6.join(", ")
            ))
        } else if leaked.is_empty() {
            Err(format!(
                "the redirect was not followed to the plain route ({})",
                c6.join(", ")
            ))
        } else {
            Err(format!(
                "credential sent: {}",
                leaked.join(" | ").replace(token.as_str(), "[TOKEN]")
            ))
        },
    );
    // The audit log (read through the engine) never holds the token.
    let audit = docker(&[
        "exec",
        &a.sidecar(),
        "cat",
        "/var/log/bot-bottle/egress-audit.jsonl",
    ]);
    let audit = String::from_utf8_lossy(&audit.stdout).to_string();
    r.record(
        "C4 C3",
        "audit-log-clean",
        if audit.is_empty() {
            Err("no audit log read".into())
        } else if needles.iter().any(|n| audit.contains(n.as_str())) {
            Err("token in the audit log".into())
        } else {
            Ok(format!("{} audit lines, no token", audit.lines().count()))
        },
    );
}

/// N15: an empty route table denies everything, applied live.
fn empty_routes_case(r: &mut Report, a: &Running) {
    bot_bottle::backend::docker::launch::update_routes(
        &RealRunner,
        &a.sidecar(),
        "{\"routes\": []}\n",
        1_800_000_000,
    )
    .expect("routes copied in");
    let deadline = Instant::now() + Duration::from_secs(30);
    let result = loop {
        let o = a.exec(&format!(
            "curl -sS -o /dev/null -D - --max-time 10 https://{AUTH_ROUTE}/after-reload | tr -d '\\r' | grep -i '^x-bot-bottle-refusal' | head -n 1"
        ));
        let s = String::from_utf8_lossy(&o.stdout).to_string();
        if s.contains("layer=allowlist") {
            break Ok(format!(
                "after the live reload: {}",
                s.trim().chars().take(60).collect::<String>()
            ));
        }
        if Instant::now() > deadline {
            break Err(format!("the routed host still answered after reload: {s}"));
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    r.record("N15", "empty-route-table-live", result);
}

/// E7: bottle A's agent cannot reach bottle B by any path.
fn cross_bottle_case(r: &mut Report, a: &Running, b: &Running) {
    let b_ips = targets::container_addresses(&RealRunner, &b.sidecar());
    let nets = b.networks();
    let mut b_side = b_ips.clone();
    b_side.extend(targets::gateways(
        &RealRunner,
        &[nets[0].as_str(), nets[1].as_str()],
    ));
    let ips: Vec<String> = b_side.iter().map(ToString::to_string).collect();
    let scan = a.exec(&format!(
        "perl -e {} 1-65535 {}",
        bot_bottle::runner::shell_escape(probes::TCP_SCAN_SCRIPT),
        ips.join(" ")
    ));
    // gVisor's interface-less stack answers EHOSTUNREACH at once (see `probes::gvisor_codes`).
    let gvisor = probes::under_gvisor(&RealRunner, &a.agent()).expect("docker inspect runs");
    let no_route: &[&str] = if gvisor {
        &["ENETUNREACH", "EHOSTUNREACH"]
    } else {
        &["ENETUNREACH"]
    };
    let v = probes::judge(
        no_route,
        &format!("{}\ndone\n", String::from_utf8_lossy(&scan.stdout)),
        "",
    );
    let mut problems = Vec::new();
    if !v.pass {
        problems.push(format!("direct: {}", v.seen));
    }
    for ip in &ips {
        let o = a.exec(&format!(
            "curl -sS -o /dev/null -D - --max-time 10 http://{ip}:9099/ | tr -d '\\r' | grep -i '^x-bot-bottle-refusal'"
        ));
        if !String::from_utf8_lossy(&o.stdout).contains("layer=allowlist") {
            problems.push(format!("via egress to {ip}: {}", out_text(&o)));
        }
    }
    let socks = a.exec(&format!(
        "ls -a /run/bot-bottle; grep -rl {} /run/bot-bottle 2>/dev/null",
        b.id
    ));
    let listing = String::from_utf8_lossy(&socks.stdout).to_string();
    if listing.contains(&b.id) {
        problems.push(format!(
            "B's identity visible in A's socket volume: {listing}"
        ));
    }
    r.record(
        "E7",
        "bottle-a-cannot-reach-bottle-b",
        if problems.is_empty() {
            Ok(format!(
                "B's {} addresses: every port no route from A; via A's egress 403 allowlist; no shared socket",
                ips.len()
            ))
        } else {
            Err(problems.join("; "))
        },
    );
}

/// One MCP tool call to supervise through the agent's relay; none of E8's calls waits long.
fn mcp_call(tool: &str, arguments: &serde_json::Value) -> String {
    mcp_call_within(tool, arguments, 30)
}

/// E8: the agent cannot approve its own proposal; control characters in a proposal reach
/// the operator's screen harmlessly.
fn self_approval_case(r: &mut Report, w: &World, b: &Running) {
    // ESC [2J (clear screen), a colour, CR LF and a forged line, BEL: as JSON escapes, so no
    // raw control byte is on any argv.
    let reason = "needed\u{1b}[2J\u{1b}[31mAPPROVED by operator\r\nbot-bottle: approved\u{7}";
    let asked = b.exec(&mcp_call(
        "propose-egress-route",
        &serde_json::json!({"host": "e8.example.com", "reason": reason}),
    ));
    let answer = out_text(&asked);
    let refused_at_input = answer.contains("control characters");
    let proposed = b.exec(&mcp_call(
        "propose-egress-route",
        &serde_json::json!({"host": "e8.example.com", "reason": "the escape suite asks for it"}),
    ));
    // The request id from the answer (`<13 digits>-<6 hex>`), then the operator's queue.
    let text = out_text(&proposed);
    let id = find_request_id(&text);
    let listed = |id: &str| {
        let out = w.cmd().args(["requests", "--json"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).contains(id)
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    let id = id.filter(|id| {
        loop {
            if listed(id) {
                break true;
            }
            if Instant::now() > deadline {
                break false;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    });
    let Some(id) = id else {
        r.record(
            "E8",
            "supervise-self-approval",
            Err(format!(
                "no queued request: {}",
                out_text(&proposed).chars().take(200).collect::<String>()
            )),
        );
        return;
    };
    // The agent's ways to decide: a tool named like the operator's command, the spool's
    // files (not in its filesystem), the host CLI (not in its image).
    let mut tries = Vec::new();
    for tool in ["approve", "decide"] {
        let o = b.exec(&mcp_call(
            tool,
            &serde_json::json!({"id": id, "decision": "approve"}),
        ));
        tries.push(format!(
            "tool `{tool}`: {}",
            if out_text(&o).to_lowercase().contains("approved\"") {
                "APPROVED"
            } else {
                "refused"
            }
        ));
    }
    let o = b.exec(&format!(
        "ls -d /run/bot-bottle/queue /var/lib/bot-bottle 2>&1; command -v bot-bottle docker || echo no-cli; \
         echo '{{\"decision\":\"approve\"}}' > /run/bot-bottle/{id}.decision 2>&1 || echo write-refused"
    ));
    tries.push(
        out_text(&o)
            .replace('\n', " ")
            .trim()
            .chars()
            .take(120)
            .collect(),
    );
    std::thread::sleep(Duration::from_secs(1));
    let still_pending = listed(&id);
    let route = b.exec(
        "curl -sS -o /dev/null -D - --max-time 10 https://e8.example.com/ | tr -d '\\r' | grep -i '^x-bot-bottle-refusal'",
    );
    let route_closed = String::from_utf8_lossy(&route.stdout).contains("layer=allowlist");
    let table = w.cmd().args(["requests"]).output().unwrap();
    let shown = [table.stdout.clone(), table.stderr.clone()].concat();
    let raw_control = shown
        .iter()
        .any(|c| *c == 0x1b || *c == 0x07 || *c == b'\r');
    let forged_line = String::from_utf8_lossy(&shown)
        .lines()
        .any(|l| l.starts_with("bot-bottle: approved"));
    r.record(
        "E8",
        "supervise-self-approval",
        if refused_at_input
            && still_pending
            && route_closed
            && !raw_control
            && !forged_line
            && table.status.success()
        {
            Ok(format!(
                "control characters refused at input; request {id} still pending after the agent's tries, route still 403; `requests` shows no raw control character ({})",
                tries.join("; ")
            ))
        } else {
            Err(format!(
                "refused_at_input={refused_at_input} pending={still_pending} route_closed={route_closed} raw_control={raw_control} forged_line={forged_line} ({})",
                tries.join("; ")
            ))
        },
    );
    let _ = w
        .cmd()
        .args(["reject", &id, "--reason", "escape suite"])
        .output();
}

/// M1, M2, M5 through the CLI (no engine needed, but part of the suite's one report).
fn trust_boundary_cases(r: &mut Report, w: &World) {
    let repo = w.tmp.path().join("repo");
    std::fs::create_dir_all(repo.join(".bot-bottle/bottles")).unwrap();
    std::fs::create_dir_all(repo.join(".bot-bottle/agents")).unwrap();
    std::fs::write(
        repo.join(".bot-bottle/bottles/dev.md"),
        "---\negress:\n  routes:\n    - host: evil.example\n---\n",
    )
    .unwrap();
    std::fs::write(
        repo.join(".bot-bottle/agents/repo-agent.md"),
        "---\nbottle: dev\n---\nrepo agent\n",
    )
    .unwrap();
    let out = w
        .cmd()
        .current_dir(&repo)
        .args(["info", "repo-agent", "--json"])
        .output()
        .unwrap();
    let text = out_text(&out);
    r.record(
        "M1",
        "repo-shipped-bottle-ignored",
        if text.contains("evil.example") {
            Err(format!(
                "the repo's bottle took effect: {}",
                text.chars().take(200).collect::<String>()
            ))
        } else if !text.to_lowercase().contains("warning") || !text.contains("bottles") {
            Err(format!(
                "no warning about the repo's bottles/: {}",
                text.chars().take(200).collect::<String>()
            ))
        } else {
            Ok("warned; the home's bottle `dev` was used, not the repo's".into())
        },
    );
    std::fs::write(
        repo.join(".bot-bottle/agents/reacher.md"),
        "---\nbottle: dev\negress:\n  routes:\n    - host: evil.example\n---\nreach\n",
    )
    .unwrap();
    let out = w
        .cmd()
        .current_dir(&repo)
        .args(["info", "reacher"])
        .output()
        .unwrap();
    let text = out_text(&out);
    r.record(
        "M2",
        "agent-sets-bottle-only-key",
        if !out.status.success() && text.contains("egress") && text.contains("reacher.md") {
            Ok(text
                .lines()
                .last()
                .unwrap_or("")
                .chars()
                .take(160)
                .collect())
        } else {
            Err(format!(
                "accepted or unclear: {}",
                text.chars().take(200).collect::<String>()
            ))
        },
    );
    let mut bomb = String::from("---\nbottle: dev\nskills:\n");
    for i in 0..200_000 {
        bomb.push_str(&format!("  - s{i}\n"));
    }
    bomb.push_str("---\n");
    let cases = [
        ("alias-bomb", "---\nbottle: dev\na: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n---\n".to_string()),
        ("duplicate-keys", "---\nbottle: dev\nbottle: other\n---\n".to_string()),
        ("huge-file", bomb),
        ("deep-nesting", format!("---\nbottle: dev\nx: {}{}\n---\n", "[".repeat(5000), "]".repeat(5000))),
    ];
    for (name, body) in cases {
        std::fs::write(repo.join(".bot-bottle/agents/bomb.md"), body).unwrap();
        let start = Instant::now();
        let out = w
            .cmd()
            .current_dir(&repo)
            .args(["info", "bomb"])
            .output()
            .unwrap();
        let took = start.elapsed();
        let text = String::from_utf8_lossy(&out.stderr).to_string();
        let one_error = text
            .lines()
            .filter(|l| l.starts_with("bot-bottle: error:"))
            .count()
            == 1;
        r.record(
            "M5",
            &format!("yaml-{name}"),
            if out.status.code() == Some(1) && one_error && text.contains("bomb.md") {
                Ok(format!(
                    "one error naming the file ({} ms)",
                    took.as_millis()
                ))
            } else {
                Err(format!(
                    "exit {:?}: {}",
                    out.status.code(),
                    text.chars().take(200).collect::<String>()
                ))
            },
        );
    }
}

#[test]
#[cfg_attr(
    not(engine_tests),
    ignore = "SKIPPED: engine test; build with BOT_BOTTLE_ENGINE_TESTS=1 and a Docker engine"
)]
fn escape_suite() {
    let _turn = engine_turn();
    let started = Instant::now();
    build_stub_image();
    let w = world();
    let mut r = Report::default();
    let (agent_a, agent_b) = (format!("{}a", w.agent), format!("{}b", w.agent));

    let (a, argv) = start(&w, &agent_a, None);
    r.record("C3", "launch-argv-sampled", argv);
    let runtime = docker_ok(&["inspect", "-f", "{{.HostConfig.Runtime}}", &a.agent()]);
    let runtime = runtime.trim().to_string();
    println!("---- bottle A `{}` (agent runtime {runtime})", a.id);
    let up = Upstream::start(&w.certs, &a.id, &[AUTH_ROUTE, PLAIN_ROUTE]);
    let ctx = context_for(&a, &w);
    run_probes(&mut r, &a, &ctx, &w.token, "");
    upstream_log_cases(&mut r, &w, &up, "");
    credential_cases(&mut r, &w, &a, &up);

    let (b, _) = start(&w, &agent_b, None);
    cross_bottle_case(&mut r, &a, &b);
    self_approval_case(&mut r, &w, &b);
    empty_routes_case(&mut r, &a);
    let stopped_b = b.stop();
    drop(up);
    let stopped_a = a.stop();
    r.record(
        "F-DOCK",
        "bottles-end-cleanly",
        if stopped_a && stopped_b {
            Ok("both sessions ended and were torn down".into())
        } else {
            Err("a session did not end cleanly".into())
        },
    );
    r.record(
        "C3",
        "home-after-teardown",
        match tree_contains(&w.home, &probes::needles(&w.token)) {
            None => Ok("no token anywhere under the home".into()),
            Some(p) => Err(format!("token in {}", p.display())),
        },
    );

    // E5: the whole probe set again with the agent under the other runtime.
    let gvisor = docker_ok(&["info", "--format", "{{json .Runtimes}}"]).contains("\"runsc\"");
    if gvisor && runtime == "runsc" {
        println!("---- E5: bottle under runc (BOT_BOTTLE_TEST_WEAKEN=runc) for comparison");
        let (c, _) = start(&w, &agent_a, Some("runc"));
        // The routes need their upstream here too, or a request egress lets through fails
        // at name resolution instead of reaching the layer the probe judges.
        let up = Upstream::start(&w.certs, &c.id, &[AUTH_ROUTE, PLAIN_ROUTE]);
        let ctx = context_for(&c, &w);
        run_probes(&mut r, &c, &ctx, &w.token, "runc/");
        upstream_log_cases(&mut r, &w, &up, "runc/");
        drop(up);
        c.stop();
    } else if gvisor {
        r.record(
            "E5",
            "agent-under-gvisor",
            Err(format!(
                "runsc is registered but the agent ran under `{runtime}`"
            )),
        );
    } else {
        r.skip(
            "E5",
            "agent-under-gvisor",
            "runsc is not registered with this engine (CI: BB_WITH_RUNSC=1); every probe above ran under runc",
        );
    }
    if runtime == "runsc" {
        r.record(
            "E5",
            "agent-under-gvisor",
            Ok("every probe above ran under runsc".into()),
        );
    }

    trust_boundary_cases(&mut r, &w);

    git_gate_cases(&mut r, &w);
    r.finish(started);
}

/// `doctor` on this engine: every line passes, exit 0.
#[test]
#[cfg_attr(
    not(engine_tests),
    ignore = "SKIPPED: engine test; build with BOT_BOTTLE_ENGINE_TESTS=1 and a Docker engine"
)]
fn doctor_passes_on_this_engine() {
    let _turn = engine_turn();
    let out = Command::new(bin())
        .args(["doctor", "--json"])
        .env_remove("BOT_BOTTLE_TEST_WEAKEN")
        .env("COMPOSE_BAKE", "false")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    let failed: Vec<&serde_json::Value> = doc["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == "fail")
        .collect();
    assert!(failed.is_empty(), "doctor failed: {failed:#?}");
    assert!(out.status.success());
    assert!(doc["passed"].as_u64().unwrap() >= 20, "{doc}");
    assert_no_doctor_leftovers();
}

/// A bottle weakened by the test knob (the agent gets a normal network): `doctor` fails on
/// the direct-path lines, passes the egress and escape lines, exits non-zero, and still
/// removes its bottle.
#[test]
#[cfg_attr(
    not(engine_tests),
    ignore = "SKIPPED: engine test; build with BOT_BOTTLE_ENGINE_TESTS=1 and a Docker engine"
)]
fn a_weakened_bottle_fails_doctor_on_the_network_lines() {
    let _turn = engine_turn();
    let out = Command::new(bin())
        .args(["doctor"])
        .env("BOT_BOTTLE_TEST_WEAKEN", "network")
        .env("COMPOSE_BAKE", "false")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(1), "{table}");
    let status_of = |probe: &str| -> String {
        table
            .lines()
            .find(|l| l.contains(&format!("/{probe} ")))
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or_else(|| panic!("no line for {probe} in\n{table}"))
            .to_string()
    };
    for open in [
        "direct-tcp-host-and-gateways-all-ports",
        "direct-http-request",
        "dev-tcp-and-dev-udp",
    ] {
        assert_eq!(status_of(open), "FAIL", "{open} should fail:\n{table}");
    }
    for closed in [
        "proxy-unrouted-hosts",
        "proxy-secret-scan",
        "capabilities-and-no-new-privs",
        "namespaces-mount-keyctl-bpf",
        "secret-anywhere-in-filesystem",
    ] {
        assert_eq!(status_of(closed), "pass", "{closed} should pass:\n{table}");
    }
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("WEAKENED"),
        "the weakening is announced"
    );
    assert_no_doctor_leftovers();
}

fn assert_no_doctor_leftovers() {
    let left = docker_ok(&["ps", "-a", "--format", "{{.Names}}"]);
    let mine: Vec<&str> = left.lines().filter(|n| n.contains("doctor-")).collect();
    assert!(mine.is_empty(), "doctor left containers: {mine:?}");
}

/// A git command's exit and everything it said, stdout then stderr.
fn said(out: &std::process::Output) -> (bool, String) {
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The last line holding `marker` (the refusal's own line), else the last line.
fn line_with(text: &str, marker: &str) -> String {
    text.lines()
        .rfind(|l| l.contains(marker))
        .or_else(|| text.lines().next_back())
        .unwrap_or("")
        .trim()
        .to_string()
}

/// A push the gate must refuse: exit non-zero, the gate's `text` in the output, the secret
/// never echoed, and the upstream's `refname` still at `before`.
fn gate_refused(
    up: &git_gate_common::Upstream,
    (pushed, text): (bool, String),
    refusal: &str,
    secret: &str,
    refname: &str,
    before: Option<&str>,
) -> Result<String, String> {
    let now = up.rev("proj", refname);
    if pushed {
        Err(format!("the push succeeded: {text}"))
    } else if !text.contains(refusal) {
        Err(format!("refused, but not by `{refusal}`: {text}"))
    } else if text.contains(secret) {
        Err(format!("the refusal echoed the secret: {text}"))
    } else if now.as_deref() != before {
        Err(format!("upstream {refname} moved to {now:?}"))
    } else {
        Ok(format!(
            "{}; upstream {refname} unchanged",
            line_with(&text, refusal)
        ))
    }
}

/// The git-gate cases (G1-G3, G5-G7) in one bottle of their own whose gate serves `proj` of
/// a real sshd upstream on the engine's bridge. Every verdict comes from a git command run
/// in the agent.
fn git_gate_cases(r: &mut Report, w: &World) {
    const CASES: [&str; 6] = ["G1", "G2", "G3", "G5", "G6", "G7"];
    if git_gate_common::sshd_or_skip("escape git-gate cases").is_none() {
        for g in CASES {
            r.skip(g, "git-gate", "needs /usr/sbin/sshd for the upstream");
        }
        return;
    }
    let bridge = git_gate_common::bridge_address();
    let mut up = git_gate_common::Upstream::start_on(bridge);
    up.repo("proj");
    up.repo("other");
    // Tags are allowed so that a tag's message reaches the scan; force stays refused.
    let (url, bottle) = up.gated_bottle("proj", bridge, "{tags: true}");
    std::fs::write(w.home.join("bottles/gate.md"), bottle).unwrap();
    let agent = format!("{}g", w.agent);
    std::fs::write(
        w.home.join(format!("agents/{agent}.md")),
        "---\nbottle: gate\n---\nescape suite agent behind the git gate\n",
    )
    .unwrap();
    let (g, _) = start(w, &agent, None);
    println!(
        "---- bottle G `{}` (git gate, upstream {bridge}:{})",
        g.id, up.port
    );
    let git = |script: &str| said(&g.exec(&format!("cd /tmp/work && {script}")));
    let (cloned, text) = said(&g.exec(&format!("cd /tmp && git clone -q {url} work")));
    if !cloned {
        for c in CASES {
            r.record(
                c,
                "git-gate",
                Err(format!("clone through the gate failed: {text}")),
            );
        }
        g.stop();
        return;
    }
    let secret = git_gate_common::aws_key();
    let main = |up: &git_gate_common::Upstream| up.rev("proj", "refs/heads/main");
    let reset = "git fetch -q origin && git checkout -q main && git reset -q --hard origin/main";

    // G1: one commit with a cloud key. The bad commit never reaches the upstream.
    let before = main(&up);
    let out = git(&format!(
        "printf 'aws_access_key_id = %s\\n' {secret} > creds.ini && git add . && git commit -qm creds && git rev-parse HEAD >&2 && git push origin HEAD:main"
    ));
    let bad = out
        .1
        .lines()
        .find(|l| l.len() == 40)
        .unwrap_or("")
        .to_string();
    let mut v = gate_refused(
        &up,
        out,
        "secret scan found",
        &secret,
        "refs/heads/main",
        before.as_deref(),
    );
    let reached = git_gate_common::run(
        git_gate_common::plain_git(&up.bare("proj")).args(["cat-file", "-e", &bad]),
    );
    if v.is_ok() && (bad.is_empty() || reached.status.success()) {
        v = Err(format!("commit `{bad}` reached the upstream"));
    }
    r.record("G1", "push-cloud-key", v);

    // G2: the secret added in one commit and removed in the next; the range is scanned.
    git(reset);
    let out = git(&format!(
        "printf 'key = %s\\n' {secret} > a.env && git add . && git commit -qm add && git rm -q a.env && git commit -qm remove && git push origin HEAD:main"
    ));
    r.record(
        "G2",
        "secret-added-then-removed",
        gate_refused(
            &up,
            out,
            "secret scan found",
            &secret,
            "refs/heads/main",
            before.as_deref(),
        ),
    );

    // G3: a new branch carrying a secret, a force-push, a tag whose message holds a secret.
    git(reset);
    let out = git(&format!(
        "git checkout -qb agent/g3 && printf 'token %s\\n' {secret} > t.txt && git add . && git commit -qm branch && git push origin agent/g3"
    ));
    r.record(
        "G3",
        "new-branch-with-secret",
        gate_refused(
            &up,
            out,
            "secret scan found",
            &secret,
            "refs/heads/agent/g3",
            None,
        ),
    );
    git(reset);
    let (clean, text) = git(
        "echo clean > clean.txt && git add . && git commit -qm clean && git push -q origin HEAD:main",
    );
    let pushed = main(&up);
    let out = git("git commit -q --amend -m rewritten && git push --force origin HEAD:main");
    r.record(
        "G3",
        "force-push",
        if clean {
            gate_refused(
                &up,
                out,
                "force-pushes are not allowed",
                &secret,
                "refs/heads/main",
                pushed.as_deref(),
            )
        } else {
            Err(format!(
                "the clean push before the force-push failed: {text}"
            ))
        },
    );
    git(reset);
    let out = git(&format!(
        "git tag -a v-g3 -m \"release notes {secret}\" && git push origin refs/tags/v-g3"
    ));
    r.record(
        "G3",
        "tag-message-with-secret",
        gate_refused(
            &up,
            out,
            "secret scan found",
            &secret,
            "refs/tags/v-g3",
            None,
        ),
    );

    // G5: remotes the bottle did not declare. The gate's own URL comes from the agent's
    // git config (the `insteadOf` rule for `proj`).
    let (_, rules) = git("git config --global --get-regexp '^url\\.'");
    let gate_other = rules
        .split_whitespace()
        .find_map(|t| {
            t.strip_prefix("url.")
                .and_then(|u| u.strip_suffix(".insteadof"))
        })
        .map(|u| u.replace("/proj.git", "/other.git"))
        .unwrap_or_default();
    // The agent's network has no path out: ssh fails at name resolution or connect.
    const NO_PATH: [&str; 5] = [
        "Could not resolve hostname",
        "Network is unreachable",
        "Connection timed out",
        "Connection refused",
        "No route to host",
    ];
    let remotes = [
        (
            "undeclared-https-remote",
            "https://github.com/bot-bottle/undeclared.git".to_string(),
            "403",
            "x-bot-bottle-refusal: layer=allowlist",
        ),
        (
            "undeclared-ssh-host",
            "ssh://git@gitlab.com/bot-bottle/undeclared.git".to_string(),
            "ssh: ",
            "",
        ),
        (
            "gate-url-other-repo",
            gate_other.clone(),
            "is not declared in this bottle's git-gate.repos",
            "",
        ),
    ];
    for (name, remote, refusal, detail) in remotes {
        let (ok, text) = git(&format!(
            "GIT_TRACE_CURL=1 GIT_TRACE_CURL_NO_DATA=1 timeout 60 git ls-remote {remote} 2>&1 | grep -i 'refusal\\|fatal\\|error\\|ssh:\\|remote:'; exit ${{PIPESTATUS[0]}}"
        ));
        let lower = text.to_lowercase();
        r.record(
            "G5",
            name,
            if remote.is_empty() {
                Err(format!("no gate URL in the agent's git config: {rules}"))
            } else if ok {
                Err(format!("`git ls-remote {remote}` succeeded"))
            } else if !text.contains(refusal)
                || !lower.contains(&detail.to_lowercase())
                || (name == "undeclared-ssh-host" && !NO_PATH.iter().any(|m| text.contains(m)))
            {
                Err(format!("refused, but not by `{refusal}` {detail}: {text}"))
            } else {
                Ok(format!("{remote}: {}", line_with(&text, refusal)))
            },
        );
    }

    // G6: no key and no agent socket in the agent, the key's bytes nowhere in its filesystem
    // (a positive control in the bundle proves the needles), and no direct path to the
    // upstream's ssh port or to port 22.
    let needles = git_gate_common::key_needles(&up.user_key);
    let in_bundle = docker_ok(&[
        "exec",
        &g.sidecar(),
        "cat",
        "/etc/bot-bottle/git-gate-proj.key",
    ]);
    let (_, ssh_dir) = said(&g.exec("ls -A ~/.ssh 2>/dev/null; true"));
    let (_, env) = said(&g.exec(
        "printenv; for f in /proc/[0-9]*/environ; do tr '\\0' '\\n' < $f; done 2>/dev/null; true",
    ));
    let mut export = Command::new("docker")
        .args(["export", &g.agent()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let in_fs = git_gate_common::stream_find(export.stdout.take().unwrap(), &needles);
    let exported = export.wait().map(|s| s.success()).unwrap_or(false);
    r.record(
        "G6",
        "no-key-in-agent",
        if git_gate_common::stream_find(in_bundle.as_bytes(), &needles).is_none() {
            Err("positive control: the key is not in the bundle either".into())
        } else if !ssh_dir.trim().is_empty() {
            Err(format!("~/.ssh holds {ssh_dir}"))
        } else if env.contains("SSH_AUTH_SOCK") {
            Err("SSH_AUTH_SOCK in the agent's environment".into())
        } else if git_gate_common::stream_find(env.as_bytes(), &needles).is_some() {
            Err("key material in the agent's environment".into())
        } else if !exported || in_fs.is_some() {
            Err(format!("key material in the agent's filesystem (export ok: {exported})"))
        } else {
            Ok("~/.ssh empty, no SSH_AUTH_SOCK, key bytes in no env and nowhere in the exported filesystem (present in the bundle)".into())
        },
    );
    let mut direct = Vec::new();
    for port in [22, up.port] {
        let (open, text) = said(&g.exec(&format!(
            "timeout 5 bash -c 'exec 3<>/dev/tcp/{bridge}/{port}' 2>&1 && echo OPEN"
        )));
        direct.push((port, open, text));
    }
    let (ssh_ok, ssh_text) = said(&g.exec(&format!(
        "timeout 20 ssh -o BatchMode=yes -o StrictHostKeyChecking=no -o ConnectTimeout=5 -p {} {}@{bridge} true 2>&1",
        up.port, up.user
    )));
    r.record(
        "G6",
        "upstream-ssh-unreachable",
        if let Some((port, _, text)) = direct.iter().find(|d| d.1) {
            Err(format!(
                "the agent reached {bridge}:{port} directly: {text}"
            ))
        } else if ssh_ok {
            Err(format!("ssh to {bridge}:{} succeeded: {ssh_text}", up.port))
        } else {
            Ok(direct
                .iter()
                .map(|(p, _, t)| format!("{bridge}:{p} {}", line_with(t, "")))
                .chain(std::iter::once(format!(
                    "ssh: {}",
                    line_with(&ssh_text, "")
                )))
                .collect::<Vec<_>>()
                .join("; "))
        },
    );

    // G7: the upstream down: fetch and push fail saying so, nothing stale is served; back
    // up, fetch works again.
    git(reset);
    up.stop();
    let fetch = git("git fetch origin");
    let before = main(&up);
    let push = git(
        "echo late > late.txt && git add . && git commit -qm late && git push origin HEAD:main",
    );
    let stale = "cannot sync `proj` from its upstream";
    r.record(
        "G7",
        "upstream-down-fetch",
        match &fetch {
            (true, t) => Err(format!("fetch succeeded with the upstream down: {t}")),
            (false, t) if t.contains(stale) && t.contains("stale") => Ok(line_with(t, stale)),
            (false, t) => Err(format!("fetch failed without saying why: {t}")),
        },
    );
    r.record(
        "G7",
        "upstream-down-push",
        // A push is not synced first: the gate forwards it and reports the upstream's failure.
        gate_refused(
            &up,
            push,
            "refused or could not be reached (see above); nothing was pushed",
            &secret,
            "refs/heads/main",
            before.as_deref(),
        ),
    );
    up.restart();
    let (back, text) = git("git fetch origin");
    r.record(
        "G7",
        "upstream-back",
        if back {
            Ok("fetch works again once the upstream is back".into())
        } else {
            Err(format!("fetch still fails: {text}"))
        },
    );
    if !g.stop() {
        r.record(
            "G7",
            "gate-bottle-ends",
            Err("the git-gate bottle did not end cleanly".into()),
        );
    }
}
