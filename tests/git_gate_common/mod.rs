//! Loopback fixtures for the git-gate: a real `sshd` upstream on a free port with a throwaway
//! host key and user key, bare upstream repos, the gate binary, and an "agent" git that
//! reaches its upstream only through the gate (`insteadOf`), with no key of its own.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub(crate) const SSHD: &str = "/usr/sbin/sshd";

/// The sshd binary, or `None` after saying loudly why the test does not run. Where the suite
/// is expected to have it (CI, engine builds), its absence fails the test instead.
pub(crate) fn sshd_or_skip(test: &str) -> Option<&'static str> {
    if Path::new(SSHD).is_file() {
        return Some(SSHD);
    }
    let required =
        std::env::var_os("CI").is_some() || option_env!("BOT_BOTTLE_ENGINE_TESTS") == Some("1");
    assert!(
        !required,
        "{SSHD} is missing; CI must install openssh-server (see .ci/run)"
    );
    eprintln!("SKIPPED: {test}: needs {SSHD} (apt-get install openssh-server)");
    None
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

pub(crate) fn wait_port(port: u16, what: &str) {
    wait_addr(([127, 0, 0, 1], port).into(), what);
}

pub(crate) fn wait_addr(addr: SocketAddr, what: &str) {
    let port = addr.port();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(30));
    }
    panic!("{what} did not listen on {port}");
}

pub(crate) fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("spawn")
}

pub(crate) fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub(crate) fn keygen(path: &Path) -> String {
    ok(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "throwaway", "-f"])
        .arg(path));
    std::fs::read_to_string(path.with_extension("pub")).expect("pub key")
}

fn whoami() -> String {
    ok(Command::new("id").arg("-un"))
}

/// A running sshd serving bare repos under `root`.
pub(crate) struct Upstream {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) port: u16,
    pub(crate) user: String,
    pub(crate) user_key: PathBuf,
    pub(crate) host_pub: String,
    /// The address sshd listens on (loopback unless [`Upstream::start_on`] chose another).
    pub(crate) addr: std::net::IpAddr,
    child: Option<Child>,
    config: PathBuf,
}

impl Upstream {
    pub(crate) fn start() -> Upstream {
        Upstream::start_on([127, 0, 0, 1].into())
    }

    /// An upstream listening on `addr` (e.g. the engine's bridge address, so containers
    /// reach it); the port is free on loopback, which is checked, not reserved.
    pub(crate) fn start_on(addr: std::net::IpAddr) -> Upstream {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let host_key = d.join("host_ed25519");
        let host_pub = keygen(&host_key);
        let user_key = d.join("user_ed25519");
        let user_pub = keygen(&user_key);
        std::fs::write(d.join("authorized_keys"), &user_pub).unwrap();
        std::fs::create_dir_all(d.join("repos")).unwrap();
        // Privilege separation directory sshd insists on when run as root.
        let _ = std::fs::create_dir_all("/run/sshd");
        let port = free_port();
        let config = d.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress {addr}\nHostKey {hk}\nAuthorizedKeysFile {ak}\n\
                 PidFile {pid}\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
                 PermitRootLogin prohibit-password\nAllowTcpForwarding no\nX11Forwarding no\n\
                 PrintMotd no\nLogLevel ERROR\nMaxStartups 100\n",
                hk = host_key.display(),
                ak = d.join("authorized_keys").display(),
                pid = d.join("sshd.pid").display(),
            ),
        )
        .unwrap();
        let mut up = Upstream {
            dir,
            port,
            user: whoami(),
            user_key,
            host_pub: host_pub.trim().to_string(),
            addr,
            child: None,
            config,
        };
        up.restart();
        up
    }

    pub(crate) fn restart(&mut self) {
        let child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sshd");
        self.child = Some(child);
        wait_addr((self.addr, self.port).into(), "sshd");
    }

    pub(crate) fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A new bare repo on the upstream with one commit on `main`; returns its ssh URL.
    pub(crate) fn repo(&self, name: &str) -> String {
        let bare = self.dir.path().join("repos").join(format!("{name}.git"));
        ok(Command::new("git")
            .args(["init", "--quiet", "--bare", "-b", "main"])
            .arg(&bare));
        let seed = self.dir.path().join(format!("seed-{name}"));
        ok(Command::new("git")
            .args(["init", "--quiet", "-b", "main"])
            .arg(&seed));
        std::fs::write(seed.join("README.md"), "hello\n").unwrap();
        ok(plain_git(&seed).args(["add", "."]));
        ok(plain_git(&seed).args(["commit", "--quiet", "-m", "initial"]));
        ok(plain_git(&seed)
            .arg("push")
            .arg("--quiet")
            .arg(&bare)
            .arg("main"));
        self.url(name)
    }

    pub(crate) fn url(&self, name: &str) -> String {
        let bare = self.dir.path().join("repos").join(format!("{name}.git"));
        format!(
            "ssh://{}@127.0.0.1:{}{}",
            self.user,
            self.port,
            bare.display()
        )
    }

    pub(crate) fn bare(&self, name: &str) -> PathBuf {
        self.dir.path().join("repos").join(format!("{name}.git"))
    }

    /// The upstream's value of `refname`, or `None`.
    pub(crate) fn rev(&self, name: &str, refname: &str) -> Option<String> {
        let out =
            run(plain_git(&self.bare(name)).args(["rev-parse", "--verify", "--quiet", refname]));
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// A bottle file whose git gate serves repo `name` of this upstream (listening on
    /// `bridge`, the engine's bridge address) under the name `git.test`, pinned through
    /// `extra_hosts`; `refs` is an optional `refs:` value. Returns the repo's URL and the file.
    pub(crate) fn gated_bottle(
        &self,
        name: &str,
        bridge: std::net::IpAddr,
        refs: &str,
    ) -> (String, String) {
        let url = format!(
            "ssh://{}@git.test:{}{}",
            self.user,
            self.port,
            self.bare(name).display()
        );
        let refs = if refs.is_empty() {
            String::new()
        } else {
            format!("      refs: {refs}\n")
        };
        let file = format!(
            "---\ngit-gate:\n  user:\n    name: Gate Tester\n    email: gate@example.test\n  repos:\n    {name}:\n      url: {url}\n      identity: {key}\n      host_key: \"git.test {host_key}\"\n{refs}      extra_hosts:\n        git.test: {bridge}\n---\n",
            key = self.user_key.display(),
            host_key = self.host_pub,
        );
        (url, file)
    }

    /// The ssh command a direct (gate-less) client uses to reach this upstream.
    pub(crate) fn direct_ssh(&self) -> String {
        format!(
            "ssh -F /dev/null -i {} -o IdentitiesOnly=yes -o StrictHostKeyChecking=no \
             -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR",
            self.user_key.display()
        )
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop();
    }
}

/// git with a fixed identity and no user or system config.
pub(crate) fn plain_git(dir: &Path) -> Command {
    let mut c = Command::new("git");
    c.current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.test")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.test")
        .env("GIT_TERMINAL_PROMPT", "0");
    c
}

/// One repo entry of the gate's repos file.
pub(crate) struct RepoSpec {
    pub(crate) name: String,
    pub(crate) url: String,
    pub(crate) host_key: Option<String>,
    pub(crate) refs: serde_json::Value,
}

/// The gate binary: cargo names it for tests; an example finds it beside its own directory
/// (`target/<profile>/examples/..` → `target/<profile>/bot-bottle-git-gate`).
pub(crate) fn gate_bin() -> PathBuf {
    if let Some(p) = option_env!("CARGO_BIN_EXE_bot-bottle-git-gate") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(Path::parent)
        .map(|d| d.join("bot-bottle-git-gate"))
        .expect("target dir")
}

/// A running gate (the real binary) on a free loopback port.
pub(crate) struct Gate {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) port: u16,
    child: Child,
}

impl Gate {
    pub(crate) fn start(identity: &Path, repos: &[RepoSpec]) -> Gate {
        Gate::start_with_path(identity, repos, None)
    }

    /// A gate whose `PATH` starts with `extra_path` (e.g. a directory with a fake `gitleaks`).
    pub(crate) fn start_with_path(
        identity: &Path,
        repos: &[RepoSpec],
        extra_path: Option<&Path>,
    ) -> Gate {
        let dir = tempfile::tempdir().expect("tempdir");
        let list: Vec<serde_json::Value> = repos
            .iter()
            .map(|r| {
                let mut v = serde_json::json!({
                    "name": r.name, "url": r.url, "identity": identity, "refs": r.refs,
                });
                if let Some(k) = &r.host_key {
                    v["host_key"] = k.clone().into();
                }
                v
            })
            .collect();
        let repos_file = dir.path().join("repos.json");
        std::fs::write(
            &repos_file,
            serde_json::json!({ "repos": list }).to_string(),
        )
        .unwrap();
        let port = free_port();
        let mut cmd = Command::new(gate_bin());
        if let Some(dir) = extra_path {
            let path = std::env::var("PATH").unwrap_or_default();
            cmd.env("PATH", format!("{}:{path}", dir.display()));
        }
        let child = cmd
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--repos")
            .arg(&repos_file)
            .arg("--state")
            .arg(dir.path().join("state"))
            .arg("--audit")
            .arg(dir.path().join("audit.log"))
            .stdin(Stdio::null())
            .spawn()
            .expect("start gate");
        wait_port(port, "git-gate");
        Gate { dir, port, child }
    }

    pub(crate) fn http_url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}.git", self.port)
    }

    /// Audit lines written so far, parsed.
    pub(crate) fn audit(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.path().join("audit.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("audit line is JSON"))
            .collect()
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The agent's side: a home with a `.gitconfig` whose `insteadOf` rules send each upstream URL
/// to the gate, and an ssh that cannot work (the agent has no key and no route).
pub(crate) struct Agent {
    pub(crate) home: tempfile::TempDir,
}

impl Agent {
    pub(crate) fn new(gate: &Gate, upstreams: &[(&str, &str)]) -> Agent {
        let home = tempfile::tempdir().expect("tempdir");
        let mut cfg = String::from("[user]\n\tname = agent\n\temail = agent@example.test\n");
        for (name, url) in upstreams {
            cfg.push_str(&format!(
                "[url \"{}\"]\n\tinsteadOf = {url}\n",
                gate.http_url(name)
            ));
        }
        std::fs::write(home.path().join(".gitconfig"), cfg).unwrap();
        Agent { home }
    }

    pub(crate) fn git(&self, dir: &Path) -> Command {
        let mut c = Command::new("git");
        c.current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.home.path())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_SSH_COMMAND", "false");
        c
    }

    pub(crate) fn clone(&self, url: &str, into: &str) -> PathBuf {
        ok(self
            .git(self.home.path())
            .args(["clone", "--quiet", url, into]));
        self.home.path().join(into)
    }

    pub(crate) fn commit(&self, work: &Path, file: &str, content: &[u8], msg: &str) -> String {
        let p = work.join(file);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, content).unwrap();
        ok(self.git(work).args(["add", "-A"]));
        ok(self.git(work).args(["commit", "--quiet", "-m", msg]));
        ok(self.git(work).args(["rev-parse", "HEAD"]))
    }
}

/// The host's address on the engine's default bridge: a container on any bottle network
/// reaches a host service there (through its gateway), which is what `extra_hosts` pins.
pub(crate) fn bridge_address() -> std::net::IpAddr {
    let out = Command::new("docker")
        .args([
            "network",
            "inspect",
            "bridge",
            "-f",
            "{{range .IPAM.Config}}{{.Gateway}} {{.Subnet}}{{end}}",
        ])
        .output()
        .expect("docker runs");
    assert!(out.status.success(), "docker network inspect bridge failed");
    let out = String::from_utf8_lossy(&out.stdout).to_string();
    let mut parts = out.split_whitespace();
    let first = parts.next().unwrap_or_default();
    if let Ok(ip) = first.parse() {
        return ip;
    }
    // No gateway recorded: the engine gives the bridge the subnet's first address.
    let subnet = if first.contains('/') {
        first
    } else {
        parts.next().expect("bridge subnet")
    };
    let base: std::net::Ipv4Addr = subnet.split('/').next().unwrap().parse().unwrap();
    std::net::Ipv4Addr::from(u32::from(base) + 1).into()
}

/// Byte strings that would betray the upstream key: each base64 line of the key file, the
/// private ed25519 seed raw and in base64.
pub(crate) fn key_needles(key_file: &Path) -> Vec<Vec<u8>> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let text = std::fs::read_to_string(key_file).unwrap();
    let body: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with("-----") && !l.trim().is_empty())
        .collect();
    let blob = b64.decode(body.concat()).unwrap();
    let public = std::fs::read_to_string(key_file.with_extension("pub")).unwrap();
    let pub_blob = b64
        .decode(public.split_whitespace().nth(1).unwrap())
        .unwrap();
    let pub32 = &pub_blob[pub_blob.len() - 32..];
    // The private section holds `seed || pub`: the seed is just before the last copy of pub.
    let at = blob
        .windows(32)
        .rposition(|w| w == pub32)
        .expect("public key inside the private blob");
    let seed = blob[at - 32..at].to_vec();
    let mut needles: Vec<Vec<u8>> = body.iter().map(|l| l.as_bytes().to_vec()).collect();
    needles.push(b64.encode(&seed).trim_end_matches('=').as_bytes().to_vec());
    needles.push(seed);
    needles
}

/// The first needle found in `reader`'s bytes (read in chunks, overlapping by the longest
/// needle so a match across two chunks is not missed).
pub(crate) fn stream_find(mut reader: impl std::io::Read, needles: &[Vec<u8>]) -> Option<usize> {
    let keep = needles.iter().map(Vec::len).max().unwrap_or(1);
    let mut window: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut buf).unwrap();
        if n == 0 {
            return None;
        }
        window.extend_from_slice(&buf[..n]);
        for (i, needle) in needles.iter().enumerate() {
            if window.windows(needle.len()).any(|w| w == needle.as_slice()) {
                return Some(i);
            }
        }
        let cut = window.len().saturating_sub(keep);
        window.drain(..cut);
    }
}

/// Secret fixtures assembled at run time (no literal secret in the source).
pub(crate) fn aws_key() -> String {
    format!("AKIA{}", "Q7LMZ2XW4RT9PK3N")
}

pub(crate) fn github_pat() -> String {
    format!("ghp_{}", "x9Kq2LmZ8vT4pR7nW1sY6bH3cJ5dF0gA2eUi")
}
