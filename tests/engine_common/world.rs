//! A temporary home for one test run (`BOT_BOTTLE_HOME` with its bottle and agent files, the
//! host's `HOME`, a working directory, a test CA, the host's credential), the CLI run against
//! it, and a bottle's session started in the background and ended.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use bot_bottle::doctor::bottle::mint_token;

use super::{KillOnPanic, STUB_IMAGE, bin, wait_exit};

/// A route's `pipelock` block that lets egress reach the engine's private networks, where the
/// tests' upstreams run (the SSRF guard refuses them otherwise).
pub(crate) const SSRF_ALLOW_PRIVATE: &str = "      pipelock:\n        ssrf_ip_allowlist: [\"172.16.0.0/12\", \"10.0.0.0/8\", \"192.168.0.0/16\"]\n";

pub(crate) struct World {
    pub(crate) tmp: tempfile::TempDir,
    /// Unique per test run (`<kind><pid>`), so concurrent runs on one engine never pick up
    /// each other's bottle: the agent's name, or the stem of several agents' names.
    pub(crate) agent: String,
    pub(crate) home: PathBuf,
    pub(crate) host_home: PathBuf,
    pub(crate) work: PathBuf,
    pub(crate) certs: PathBuf,
    /// The host's credential, minted per run; the CLI gets it as `$<token_var>` when that is
    /// set (the name routes give as `token_ref`).
    pub(crate) token: String,
    pub(crate) token_var: Option<&'static str>,
    /// The agent image (`BOT_BOTTLE_IMAGE`).
    pub(crate) image: &'static str,
    /// `certs/ca.pem` is the operator's extra CA (once `upstream_certs` wrote it).
    extra_ca: bool,
}

impl World {
    /// Empty `bottles/` and `agents/` in a new home; nothing written yet.
    pub(crate) fn new(kind: &str) -> World {
        let tmp = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
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
        World {
            tmp,
            agent: format!("{kind}{}", std::process::id()),
            home,
            host_home,
            work,
            certs,
            token: mint_token(),
            token_var: None,
            image: STUB_IMAGE,
            extra_ca: false,
        }
    }

    /// Writes `bottles/<name>.md`.
    pub(crate) fn bottle(&self, name: &str, text: &str) {
        std::fs::write(self.home.join(format!("bottles/{name}.md")), text).unwrap();
    }

    /// Writes `agents/<name>.md`.
    pub(crate) fn agent_file(&self, name: &str, text: &str) {
        std::fs::write(self.home.join(format!("agents/{name}.md")), text).unwrap();
    }

    /// A test CA (from now on the operator's extra CA), a leaf for `hosts` and the upstream's
    /// `server_js`, all in `certs` (the upstream mounts it at `/certs`).
    pub(crate) fn upstream_certs(&mut self, hosts: &[&str], server_js: &str) {
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "engine test CA");
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let names: Vec<String> = hosts.iter().map(|h| (*h).to_string()).collect();
        let leaf_params = rcgen::CertificateParams::new(names).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
        std::fs::write(self.certs.join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(self.certs.join("cert.pem"), leaf.pem()).unwrap();
        std::fs::write(self.certs.join("key.pem"), leaf_key.serialize_pem()).unwrap();
        std::fs::write(self.certs.join("server.js"), server_js).unwrap();
        self.extra_ca = true;
    }

    /// The CLI against this world; an operator's container pin or test weakening in the
    /// environment never reaches it.
    pub(crate) fn cmd(&self) -> Command {
        self.cmd_in(&self.home)
    }

    /// [`World::cmd`] with another `BOT_BOTTLE_HOME`.
    pub(crate) fn cmd_in(&self, home: &Path) -> Command {
        let mut c = Command::new(bin());
        c.env("BOT_BOTTLE_HOME", home)
            .env("HOME", &self.host_home)
            .env("BOT_BOTTLE_IMAGE", self.image);
        if self.extra_ca {
            c.env("BOT_BOTTLE_EXTRA_CA_CERTS", self.certs.join("ca.pem"));
        }
        if let Some(var) = self.token_var {
            c.env(var, &self.token);
        }
        c.env("COMPOSE_BAKE", "false")
            .env_remove("BOT_BOTTLE_TEST_WEAKEN")
            .env_remove("BOT_BOTTLE_CONTAINER")
            .current_dir(&self.work);
        c
    }

    /// `bot-bottle <args>`'s stdout; a failure fails the test.
    pub(crate) fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd().args(args).stdin(Stdio::null()).output().unwrap();
        assert!(
            out.status.success(),
            "bot-bottle {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// `list active`; a failure fails the test.
    pub(crate) fn active(&self) -> Vec<serde_json::Value> {
        serde_json::from_str::<serde_json::Value>(&self.ok(&["list", "active", "--json"]))
            .unwrap()
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Waits until a bottle of `agent` is listed (240 s); returns its identity. `child` (its
    /// `start`) exiting first fails the test.
    pub(crate) fn wait_active(&self, agent: &str, child: &mut Child) -> String {
        let deadline = Instant::now() + Duration::from_secs(240);
        loop {
            if let Some(b) = self.active().into_iter().find(|b| b["agent"] == agent) {
                return b["id"].as_str().unwrap().to_string();
            }
            if let Ok(Some(st)) = child.try_wait() {
                panic!("start exited early: {st}");
            }
            assert!(Instant::now() < deadline, "bottle never became active");
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// `bot-bottle exec <id> -- sh -c <script>`, not yet run.
    pub(crate) fn exec_cmd(&self, id: &str, script: &str) -> Command {
        let mut c = self.cmd();
        c.args(["exec", id, "--", "sh", "-c", script])
            .stdin(Stdio::null());
        c
    }

    pub(crate) fn exec_output(&self, id: &str, script: &str) -> Output {
        self.exec_cmd(id, script).output().unwrap()
    }

    /// Whether `script` succeeded in the agent, and its stdout then stderr.
    pub(crate) fn exec(&self, id: &str, script: &str) -> (bool, String) {
        let out = self.exec_output(id, script);
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    /// `script`'s stdout in the agent; a failure fails the test.
    pub(crate) fn exec_ok(&self, id: &str, script: &str) -> String {
        let out = self.exec_output(id, script);
        assert!(
            out.status.success(),
            "exec `{script}` failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// Runs `script` in the agent until it succeeds; more than `secs` fails the test.
    pub(crate) fn wait_exec(&self, id: &str, script: &str, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !self.exec_output(id, script).status.success() {
            assert!(Instant::now() < deadline, "`{script}` never succeeded");
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// The HTTP status of a GET of `https://upstream.test<path>` through egress from inside
    /// the bottle.
    pub(crate) fn status(&self, id: &str, path: &str) -> String {
        self.exec(
            id,
            &format!(
                "curl -sS --max-time 20 -o /dev/null -w '%{{http_code}}' https://upstream.test{path}"
            ),
        )
        .1
    }

    /// `bot-bottle <args>` under a pseudo-terminal (as an operator's shell runs it), with
    /// [`World::cmd`]'s environment, not yet spawned. Its stdin is a pipe the test holds.
    pub(crate) fn pty(&self, args: &str) -> Command {
        let mut c = Command::new("script");
        c.args(["-qfec", &format!("{} {args}", bin().display()), "/dev/null"]);
        for (k, v) in self.cmd().get_envs() {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        c.current_dir(&self.work)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    }

    /// `start --yes <agent>` under a pseudo-terminal; returns once the bottle is listed and
    /// its session has started (within `started_secs`).
    pub(crate) fn start_session(&self, agent: &str, started_secs: u64) -> Session {
        let mut child = self.pty(&format!("start --yes {agent}")).spawn().unwrap();
        let kill = KillOnPanic(vec![child.id()]);
        let id = self.wait_active(agent, &mut child);
        self.wait_exec(&id, "test -f /tmp/started", started_secs);
        Session { child, id, kill }
    }

    /// Ends the session (the stub exits 0); `start` must then exit 0 within 120 s.
    pub(crate) fn stop(&self, mut s: Session) {
        self.exec_ok(&s.id, "echo 0 > /tmp/stop");
        let st = wait_exit(&mut s.child, 120);
        assert!(st.success(), "start exited with {st}");
    }
}

/// A bottle's session: its `start` running in the background, and its identity.
pub(crate) struct Session {
    pub(crate) child: Child,
    pub(crate) id: String,
    /// `start`, and what else the test adds, killed if the test fails.
    pub(crate) kill: KillOnPanic,
}

impl World {
    /// A home with one supervised bottle `sup` whose only route is `upstream.test/base/`, its
    /// agent, and a TLS upstream's CA as the operator's extra CA.
    pub(crate) fn supervised(kind: &str) -> World {
        let mut w = World::new(kind);
        w.bottle(
            "sup",
            &format!(
                "---\nsupervise: true\negress:\n  routes:\n    - host: upstream.test\n      path_allowlist: [\"/base/\"]\n{SSRF_ALLOW_PRIVATE}---\n"
            ),
        );
        w.agent_file(&w.agent, "---\nbottle: sup\n---\nWork.\n");
        w.upstream_certs(
            &["upstream.test"],
            "const https=require('https');const fs=require('fs');\n\
             https.createServer({key:fs.readFileSync('/certs/key.pem'),cert:fs.readFileSync('/certs/cert.pem')},(q,s)=>{\n\
             console.log('REQ '+q.method+' '+q.url);s.end('upstream-says-hi\\n');}).listen(443,()=>console.log('LISTENING'));\n",
        );
        w
    }
}
