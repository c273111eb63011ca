//! CLI tests of the Docker launch sequence against a fake `docker` on `PATH` that records
//! every call: call order, teardown after a failure at each step, the name-conflict retry,
//! `list active`, `cleanup`, and that no secret value reaches argv or a written file.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::PredicateBooleanExt as _;

const SECRET_ENV: &str = "sk-fwd-0123456789abcdefSECRETVALUE";
const SECRET_TOKEN: &str = "tok-0123456789abcdefTOKENVALUE";

struct Env {
    _tmp: tempfile::TempDir,
    home: PathBuf,
    bin: PathBuf,
    log: PathBuf,
    cwd: PathBuf,
}

impl Env {
    /// A home whose `dev` bottle is exactly `frontmatter`.
    fn with_bottle(frontmatter: &str) -> Env {
        let env = Env::new("");
        std::fs::write(
            env.home.join("bottles/dev.md"),
            format!("---\n{frontmatter}---\n"),
        )
        .unwrap();
        env
    }

    fn new(bottle_extra: &str) -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("bbhome");
        let bin = tmp.path().join("bin");
        let cwd = tmp.path().join("work");
        for d in [&home.join("bottles"), &home.join("agents"), &bin, &cwd] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(
            home.join("bottles/dev.md"),
            format!(
                "---\nenv:\n  PLAIN: \"visible\"\n  FORWARDED: \"${{HOST_FWD}}\"\negress:\n  routes:\n    - host: api.example.com\n      auth:\n        scheme: Bearer\n        token_ref: HOST_TOKEN\n{bottle_extra}---\n"
            ),
        )
        .unwrap();
        std::fs::write(
            home.join("agents/worker.md"),
            "---\nbottle: dev\n---\nDo the work.\n",
        )
        .unwrap();
        let fake = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake/docker");
        std::fs::copy(&fake, bin.join("docker")).unwrap();
        let log = tmp.path().join("docker.log");
        std::fs::write(&log, "").unwrap();
        Env {
            _tmp: tmp,
            home,
            bin,
            log,
            cwd,
        }
    }

    fn cmd(&self) -> Command {
        let mut cmd = Command::cargo_bin("bot-bottle").unwrap();
        let path = format!(
            "{}:{}",
            self.bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        cmd.env_clear()
            .env("PATH", path)
            .env("HOME", &self.cwd)
            .env("BOT_BOTTLE_HOME", &self.home)
            .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
            .env("BOT_BOTTLE_IMAGE", "fake-agent:1")
            .env("BOT_BOTTLE_SIDECAR_IMAGE", "fake-sidecar:1")
            .env("HOST_FWD", SECRET_ENV)
            .env("HOST_TOKEN", SECRET_TOKEN)
            .env("FAKE_DOCKER_LOG", &self.log)
            .env("FAKE_ENV_NAMES", "FORWARDED EGRESS_TOKEN_0")
            .current_dir(&self.cwd);
        cmd
    }

    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with("ENV "))
            .map(str::to_string)
            .collect()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap()
    }

    fn state_dirs(&self) -> Vec<PathBuf> {
        match std::fs::read_dir(self.home.join("state")) {
            Ok(rd) => rd.filter_map(Result::ok).map(|e| e.path()).collect(),
            Err(_) => Vec::new(),
        }
    }
}

fn position(calls: &[String], needle: &str) -> Option<usize> {
    calls.iter().position(|c| c.contains(needle))
}

fn sha16(s: &str) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))[..16].to_string()
}

/// Every file under `dir`, recursively, as bytes.
fn all_files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.filter_map(Result::ok) {
            let p = e.path();
            if p.is_dir() {
                out.extend(all_files(&p));
            } else if let Ok(b) = std::fs::read(&p) {
                out.push((p, b));
            }
        }
    }
    out
}

/// Paths and owner uids of a provisioning stream, sorted.
fn tar_entries(tar: &[u8]) -> Vec<(String, u64)> {
    let mut archive = tar::Archive::new(tar);
    let mut entries: Vec<(String, u64)> = archive
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.path().unwrap().display().to_string(),
                e.header().uid().unwrap(),
            )
        })
        .collect();
    entries.sort();
    entries
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn launch_runs_in_order_and_tears_down() {
    let env = Env::new("");
    env.cmd()
        .args(["start", "--yes", "worker"])
        .assert()
        .success();
    let calls = env.calls();
    let up = position(&calls, " up -d").expect("compose up");
    let config = position(&calls, "docker cp - bot-bottle-sidecars-worker-").expect("config copy");
    let session = position(&calls, "-u node").expect("session exec");
    let snapshot = position(&calls, "docker cp bot-bottle-").expect("transcript snapshot");
    let down = position(&calls, " down ").expect("compose down");
    assert!(up < config && up < session, "{calls:#?}");
    assert!(config < snapshot && session < snapshot && snapshot < down);
    // The session's exec starts beside the copy, but the provider runs only once the root
    // script has written its marker, as its last step.
    assert!(
        calls[session].contains("/run/bot-bottle-provisioned"),
        "{}",
        calls[session]
    );
    // Exactly one copy carries the bundle's config and the agent's provisioning stream; the
    // agent container's own root process unpacks it, so there is no root exec.
    assert_eq!(calls.iter().filter(|c| c.contains("-u root")).count(), 0);
    assert_eq!(calls.iter().filter(|c| c.contains("cp - ")).count(), 1);
    assert_eq!(
        calls
            .iter()
            .filter(|c| c.starts_with("docker exec"))
            .count(),
        1
    );
    let config_tar = std::fs::read(env.log.with_extension("log.cp.tar")).unwrap();
    let order: Vec<String> = tar::Archive::new(config_tar.as_slice())
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    let names: Vec<&str> = order.iter().map(String::as_str).collect();
    assert!(names.contains(&"etc/bot-bottle/routes.json"), "{names:?}");
    assert!(names.contains(&"etc/bot-bottle/ca-key.pem"), "{names:?}");
    assert!(
        names.contains(&"run/bot-bottle/.provision.tar"),
        "{names:?}"
    );
    // The ready marker comes last, so the bundle never starts on a partial config and the
    // agent never unpacks a partial stream.
    assert_eq!(names.last(), Some(&"etc/bot-bottle/.ready"), "{names:?}");
    // The provisioning stream is root's alone in the shared volume.
    let mut archive = tar::Archive::new(config_tar.as_slice());
    let provision = archive
        .entries()
        .unwrap()
        .map(Result::unwrap)
        .find(|e| e.path().unwrap().ends_with(".provision.tar"))
        .unwrap();
    assert_eq!(provision.header().mode().unwrap(), 0o600);
    assert_eq!(provision.header().uid().unwrap(), 0);
    // The session runs the provider command as the agent user.
    assert!(calls[session].contains("claude"), "{}", calls[session]);
    assert!(
        env.state_dirs().is_empty(),
        "state dir left: {:?}",
        env.state_dirs()
    );
}

#[test]
fn secrets_reach_compose_only_through_its_environment() {
    let env = Env::new("");
    // A non-zero session keeps the state dir, so every file written can be inspected.
    env.cmd()
        .env("FAKE_SESSION_EXIT", "3")
        .args(["start", "--yes", "worker"])
        .assert()
        .code(1);
    let log = env.log_text();
    for secret in [SECRET_ENV, SECRET_TOKEN] {
        assert!(!log.contains(secret), "secret on argv:\n{log}");
    }
    assert!(
        log.contains(&format!("ENV FORWARDED={}", sha16(SECRET_ENV))),
        "{log}"
    );
    assert!(
        log.contains(&format!("ENV EGRESS_TOKEN_0={}", sha16(SECRET_TOKEN))),
        "{log}"
    );
    let states = env.state_dirs();
    assert_eq!(states.len(), 1, "preserved state expected");
    let files = all_files(&states[0]);
    assert!(files.iter().any(|(p, _)| p.ends_with("compose.yaml")));
    for (path, bytes) in &files {
        for secret in [SECRET_ENV, SECRET_TOKEN] {
            assert!(!contains(bytes, secret), "secret in {}", path.display());
        }
    }
    let tar = std::fs::read(env.log.with_extension("log.tar")).unwrap();
    let config = std::fs::read(env.log.with_extension("log.cp.tar")).unwrap();
    for secret in [SECRET_ENV, SECRET_TOKEN] {
        assert!(!contains(&tar, secret), "secret in the provisioning stream");
        assert!(!contains(&config, secret), "secret in the sidecar config");
    }
    assert!(states[0].join(".preserve").exists());
    // No sidecar config (the CA key among it) is left on the host.
    assert!(
        !files.iter().any(|(p, _)| p.ends_with("ca-key.pem")),
        "{:?}",
        files.iter().map(|(p, _)| p).collect::<Vec<_>>()
    );
}

#[test]
fn a_failure_at_each_step_tears_down_what_was_created() {
    // The last step fails inside the bottle: the agent container's root process could not
    // unpack the stream, and the session's gate reports it.
    let unpack = [
        ("FAKE_SESSION_EXIT", "86"),
        ("FAKE_PROVISION_FAILED", "tar: No space left on device"),
    ];
    for (step, knobs, created_up) in [
        (
            "image inspect",
            &[("FAKE_DOCKER_FAIL", "image inspect")][..],
            false,
        ),
        (" up -d", &[("FAKE_DOCKER_FAIL", " up -d")][..], true),
        ("cp - ", &[("FAKE_DOCKER_FAIL", "cp - ")][..], true),
        ("provisioning", &unpack[..], true),
    ] {
        let env = Env::new("");
        let out = env
            .cmd()
            .envs(knobs.iter().copied())
            .args(["start", "--yes", "worker"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "step {step}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            stderr
                .lines()
                .filter(|l| l.starts_with("bot-bottle: error:"))
                .count(),
            1,
            "step {step}: {stderr}"
        );
        if step == "provisioning" {
            assert!(stderr.contains("No space left on device"), "{stderr}");
        }
        let calls = env.calls();
        let downs = calls.iter().filter(|c| c.contains(" down ")).count();
        assert_eq!(downs, usize::from(created_up), "step {step}: {calls:#?}");
        assert!(env.state_dirs().is_empty(), "step {step}: state left");
    }
}

#[test]
fn a_provider_exiting_with_the_gates_code_is_not_a_provisioning_failure() {
    let env = Env::new("");
    // No failure file in the bottle: code 86 is the provider's own.
    env.cmd()
        .env("FAKE_SESSION_EXIT", "86")
        .args(["start", "--yes", "worker"])
        .assert()
        .code(1)
        .stderr(predicates::str::contains("exited with code 86"));
}

#[test]
fn a_name_conflict_retries_with_the_next_suffix() {
    let env = Env::new("");
    env.cmd()
        .env("FAKE_DOCKER_FAIL", " up -d")
        .env("FAKE_DOCKER_FAIL_ONCE", "1")
        .env(
            "FAKE_DOCKER_FAIL_MSG",
            "Error response from daemon: Conflict. The container name is already in use",
        )
        .args(["start", "--yes", "worker"])
        .assert()
        .success();
    let calls = env.calls();
    let ups: Vec<&String> = calls.iter().filter(|c| c.contains(" up -d")).collect();
    assert_eq!(ups.len(), 2, "{calls:#?}");
    assert!(
        ups[1].contains("-2 "),
        "second try uses the -2 suffix: {}",
        ups[1]
    );
    assert!(env.state_dirs().is_empty());
}

#[test]
fn a_taken_pinned_name_is_an_error_before_anything_is_created() {
    let env = Env::new("");
    env.cmd()
        .env("BOT_BOTTLE_CONTAINER", "bot-bottle-pinned")
        .env("FAKE_PS_NAMES", "bot-bottle-pinned")
        .args(["start", "--yes", "worker"])
        .assert()
        .code(1)
        .stderr(predicates::str::contains("bot-bottle-pinned"));
    assert!(!env.calls().iter().any(|c| c.contains(" up ")));
    assert!(env.state_dirs().is_empty());
}

/// Key material fixture: a fake OpenSSH private key body, assembled at run time.
fn fake_git_key() -> String {
    format!(
        "-----BEGIN OPENSSH PRIVATE KEY-----\n{}\n-----END OPENSSH PRIVATE KEY-----\n",
        "b3BlbnNzaC1rZXktdjEAAAAAKEYMATERIAL0123456789zz"
    )
}

#[test]
fn a_git_gate_bottle_starts_the_gate_with_its_key_in_the_bundle_only() {
    let env = Env::new(
        "git-gate:\n  user:\n    name: Agent Smith\n    email: agent@example.test\n  repos:\n    proj:\n      url: ssh://git@git.internal/org/proj.git\n      identity: gate.key\n      host_key: git.internal ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPINNED\n      extra_hosts:\n        git.internal: 192.0.2.7\n      refs:\n        allow: [\"agent/*\"]\n",
    );
    let key = fake_git_key();
    std::fs::write(env.home.join("bottles/gate.key"), &key).unwrap();
    env.cmd()
        .env("FAKE_SESSION_EXIT", "3")
        .args(["start", "--yes", "worker"])
        .assert()
        .code(1)
        // The preflight shows the upstream, its pins and its ref policy.
        .stderr(predicates::str::contains(
            "proj → git.internal:22 (host key pinned; git.internal at 192.0.2.7; push: branches agent/*, no force, no tags, no deletes)",
        ))
        // The fake sidecar image is a named one: whether it has gitleaks is the gate's call.
        .stderr(predicates::str::contains(
            "gitleaks   used when image fake-sidecar:1 has it on PATH",
        ));
    let body = "KEYMATERIAL0123456789zz";
    assert!(!env.log_text().contains(body), "key on argv");
    // The bundle's config stream: the repos file, the gate's argv and the key at 0600.
    let config = std::fs::read(env.log.with_extension("log.cp.tar")).unwrap();
    let mut seen = std::collections::BTreeMap::new();
    for e in tar::Archive::new(config.as_slice()).entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().display().to_string();
        let mode = e.header().mode().unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut e, &mut text).unwrap();
        seen.insert(path, (mode, text));
    }
    let (mode, text) = &seen["etc/bot-bottle/git-gate-proj.key"];
    assert_eq!((*mode & 0o777, text.as_str()), (0o600, key.as_str()));
    let repos: serde_json::Value =
        serde_json::from_str(&seen["etc/bot-bottle/git-gate.json"].1).unwrap();
    assert_eq!(
        repos["repos"][0]["identity"],
        "/etc/bot-bottle/git-gate-proj.key"
    );
    assert_eq!(repos["repos"][0]["refs"]["allow"][0], "agent/*");
    assert!(!seen["etc/bot-bottle/git-gate.json"].1.contains(body));
    assert!(
        seen["etc/bot-bottle/git-gate.args.json"]
            .1
            .contains("bot-bottle-git-gate")
    );
    // The agent's provisioning stream: insteadOf rules and the identity, never the key.
    let tar = std::fs::read(env.log.with_extension("log.tar")).unwrap();
    assert!(!contains(&tar, body), "key in the agent's provisioning");
    let mut gitconfig = String::new();
    for e in tar::Archive::new(tar.as_slice()).entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().ends_with(".gitconfig") {
            std::io::Read::read_to_string(&mut e, &mut gitconfig).unwrap();
        }
    }
    for needle in [
        "[url \"http://127.0.0.1:9420/proj.git\"]",
        "insteadOf = \"ssh://git@git.internal/org/proj.git\"",
        "insteadOf = \"git@git.internal:org/proj.git\"",
        "insteadOf = \"https://git.internal/org/proj\"",
        "name = \"Agent Smith\"",
    ] {
        assert!(gitconfig.contains(needle), "{needle} missing:\n{gitconfig}");
    }
    // The compose file starts the gate and pins the host on the bundle only; no key in it
    // or anywhere in the state dir.
    let states = env.state_dirs();
    assert_eq!(states.len(), 1);
    let compose = std::fs::read_to_string(states[0].join("compose.yaml")).unwrap();
    assert!(compose.contains("egress,git-gate"), "{compose}");
    assert!(compose.contains("git.internal:192.0.2.7"), "{compose}");
    for (path, bytes) in all_files(&states[0]) {
        assert!(!contains(&bytes, body), "key in {}", path.display());
    }
}

#[test]
fn a_git_gate_bottle_is_noted_as_unavailable_on_smolmachines_only() {
    let env = Env::new(
        "git-gate:\n  repos:\n    proj:\n      url: ssh://git@git.internal/org/proj.git\n      identity: gate.key\n",
    );
    std::fs::write(env.home.join("bottles/gate.key"), fake_git_key()).unwrap();
    env.cmd()
        .args(["start", "--dry-run", "--backend", "smolmachines", "worker"])
        .assert()
        .success()
        .stderr(predicates::str::contains(
            "`git-gate.repos` (the git gate) on the smolmachines backend is not available yet",
        ));
    env.cmd()
        .args(["start", "--dry-run", "worker"])
        .assert()
        .success()
        .stderr(predicates::str::contains("not available yet").not());
    assert!(env.calls().iter().all(|c| !c.contains(" up ")));
}

/// The one file `name` of a tar stream, as text.
fn tar_file(tar: &[u8], name: &str) -> Option<String> {
    use std::io::Read;
    let mut a = tar::Archive::new(tar);
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().display().to_string() == name {
            let mut s = String::new();
            e.read_to_string(&mut s).unwrap();
            return Some(s);
        }
    }
    None
}

#[test]
fn a_supervised_bottle_runs_supervise_in_the_bundle_and_registers_it_for_the_agent() {
    let env = Env::new("supervise: true\n");
    env.cmd()
        .env("FAKE_SESSION_EXIT", "2")
        .args(["start", "--yes", "worker"])
        .assert()
        .code(1);
    // The init starts supervise beside egress, with the argv the config copy carries.
    let states = env.state_dirs();
    let compose = std::fs::read_to_string(states[0].join("compose.yaml")).unwrap();
    assert!(
        compose.contains("BOT_BOTTLE_SIDECAR_DAEMONS: \"egress,supervise\""),
        "{compose}"
    );
    let config = std::fs::read(env.log.with_extension("log.cp.tar")).unwrap();
    let argv: Vec<String> = serde_json::from_str(
        &tar_file(&config, "etc/bot-bottle/supervise.args.json").expect("supervise argv"),
    )
    .unwrap();
    assert_eq!(argv[0], "/usr/local/bin/bot-bottle-supervise");
    let listen = argv.iter().position(|a| a == "--listen").unwrap();
    // On the socket the agent's relay forwards its port 9100 to.
    assert_eq!(argv[listen + 1], "unix:/run/bot-bottle/supervise.sock");
    let bottle = argv.iter().position(|a| a == "--bottle").unwrap();
    assert!(argv[bottle + 1].starts_with("worker-"), "{argv:?}");
    // The agent's Claude config registers it (the provisioning stream).
    let prov = std::fs::read(env.log.with_extension("log.tar")).unwrap();
    let claude: serde_json::Value =
        serde_json::from_str(&tar_file(&prov, "home/node/.claude.json").unwrap()).unwrap();
    assert_eq!(
        claude["mcpServers"]["supervise"]["url"],
        "http://127.0.0.1:9100/mcp"
    );
    // Without supervise, neither the daemon nor the registration.
    let plain = Env::new("");
    plain
        .cmd()
        .args(["start", "--yes", "worker"])
        .assert()
        .success();
    let config = std::fs::read(plain.log.with_extension("log.cp.tar")).unwrap();
    assert!(tar_file(&config, "etc/bot-bottle/supervise.args.json").is_none());
    let prov = std::fs::read(plain.log.with_extension("log.tar")).unwrap();
    assert!(
        !tar_file(&prov, "home/node/.claude.json")
            .unwrap()
            .contains("mcpServers")
    );
}

#[test]
fn list_active_is_one_engine_call() {
    let env = Env::new("");
    let ps = "{\"Names\":\"bot-bottle-w-1\",\"State\":\"running\",\"Labels\":\"dev.bot-bottle.identity=w-1,dev.bot-bottle.agent=worker,dev.bot-bottle.service=agent\"}\n\
              {\"Names\":\"bot-bottle-sidecars-w-1\",\"State\":\"running\",\"Labels\":\"dev.bot-bottle.identity=w-1,dev.bot-bottle.agent=worker,dev.bot-bottle.service=sidecars\"}\n";
    env.cmd()
        .env("FAKE_PS_JSON", ps)
        .args(["list", "active"])
        .assert()
        .success()
        .stdout("docker\tw-1\tworker\tagent,sidecars\n");
    assert_eq!(env.calls().len(), 1);
    let out = env
        .cmd()
        .env("FAKE_PS_JSON", ps)
        .args(["list", "active", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["id"], "w-1");
}

#[test]
fn list_active_shows_both_backends_from_one_engine_call() {
    let env = Env::new("");
    // A smolmachines bottle's bundle runs in Docker and carries its backend label.
    let ps = "{\"Names\":\"bot-bottle-d-1\",\"State\":\"running\",\"Labels\":\"dev.bot-bottle.identity=d-1,dev.bot-bottle.agent=worker,dev.bot-bottle.backend=docker,dev.bot-bottle.service=agent\"}\n\
              {\"Names\":\"bot-bottle-sidecars-v-1\",\"State\":\"running\",\"Labels\":\"dev.bot-bottle.identity=v-1,dev.bot-bottle.agent=worker,dev.bot-bottle.backend=smolmachines,dev.bot-bottle.service=sidecars\"}\n";
    env.cmd()
        .env("FAKE_PS_JSON", ps)
        .args(["list", "active"])
        .assert()
        .success()
        .stdout("docker\td-1\tworker\tagent\nsmolmachines\tv-1\tworker\tsidecars\n");
    assert_eq!(env.calls().len(), 1, "{:#?}", env.calls());
}

#[test]
fn the_compose_file_carries_the_backend_label_and_no_host_path() {
    let env = Env::new("");
    env.cmd()
        .env("FAKE_SESSION_EXIT", "2")
        .args(["start", "--yes", "worker"])
        .assert()
        .code(1);
    let states = env.state_dirs();
    let compose = std::fs::read_to_string(states[0].join("compose.yaml")).unwrap();
    assert!(
        compose.contains("dev.bot-bottle.backend: docker"),
        "{compose}"
    );
    assert!(
        !compose.contains(&env.home.display().to_string()),
        "{compose}"
    );
    // The agent container provisions itself from the copied stream before its relay runs.
    let unpack = compose.find("tar -x -C / -f /run/bot-bottle/.provision.tar");
    let relay = compose.find("exec /run/bot-bottle/bot-bottle-relay");
    assert!(unpack.is_some() && unpack < relay, "{compose}");
    assert!(!compose.contains("depends_on"), "{compose}");
    // The bundle's log dir came back through the engine into the state dir.
    assert!(states[0].join("logs").is_dir());
    assert!(!states[0].join("sidecar").exists());
}

#[test]
fn cleanup_lists_asks_and_removes() {
    let env = Env::new("");
    let ps = "{\"Names\":\"bot-bottle-w-1\",\"State\":\"exited\",\"Labels\":\"dev.bot-bottle.identity=w-1\"}\n";
    // Without a terminal and without --yes nothing is removed.
    env.cmd()
        .env("FAKE_PS_JSON", ps)
        .arg("cleanup")
        .assert()
        .code(1)
        .stderr(predicates::str::contains("--yes"));
    assert!(!env.calls().iter().any(|c| c.contains(" rm ")));
    // An orphan state dir (a killed launch) is removed too; a preserved one is kept.
    std::fs::create_dir_all(env.home.join("state/w-1")).unwrap();
    std::fs::create_dir_all(env.home.join("state/kept-1")).unwrap();
    std::fs::write(env.home.join("state/kept-1/.preserve"), "").unwrap();
    env.cmd()
        .env("FAKE_PS_JSON", ps)
        .env("FAKE_LS_NAMES", "bot-bottle-net-w-1 bridge")
        .args(["cleanup", "--yes"])
        .assert()
        .success();
    let calls = env.calls();
    assert!(
        calls.iter().any(|c| c.contains("rm -f -v bot-bottle-w-1")),
        "{calls:#?}"
    );
    assert!(
        calls
            .iter()
            .any(|c| c.contains("network rm bot-bottle-net-w-1")),
        "{calls:#?}"
    );
    assert!(
        !calls
            .iter()
            .any(|c| c.contains("bridge") && c.contains(" rm"))
    );
    assert!(!env.home.join("state/w-1").exists());
    assert!(env.home.join("state/kept-1").exists());
}

#[test]
fn a_failing_snapshot_or_teardown_step_warns_and_goes_on() {
    let env = Env::new("");
    let out = env
        .cmd()
        .env("FAKE_DOCKER_FAIL", " down ")
        .args(["start", "--yes", "worker"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bot-bottle cleanup"), "{stderr}");
    // The state dir is still removed after the compose teardown failed.
    assert!(env.state_dirs().is_empty());
    let env = Env::new("");
    env.cmd()
        .env("FAKE_DOCKER_FAIL", "docker cp bot-bottle-")
        .args(["start", "--yes", "worker"])
        .assert()
        .success();
    assert!(env.calls().iter().any(|c| c.contains(" down ")));
}

#[test]
fn a_non_zero_session_keeps_state_and_prints_the_resume_hint() {
    let env = Env::new("");
    env.cmd()
        .env("FAKE_SESSION_EXIT", "7")
        .args(["start", "--yes", "worker"])
        .assert()
        .code(1)
        .stderr(predicates::str::contains("bot-bottle resume worker-"));
    let states = env.state_dirs();
    assert_eq!(states.len(), 1);
    assert!(states[0].join("metadata.json").exists());
    // Teardown still ran: nothing of the bottle keeps running.
    assert!(env.calls().iter().any(|c| c.contains(" down ")));
    // The preserved bottle resumes under its identity with the provider's resume args.
    let id = states[0].file_name().unwrap().to_string_lossy().to_string();
    std::fs::write(env.log.clone(), "").unwrap();
    env.cmd().args(["resume", "--yes", &id]).assert().success();
    let calls = env.calls();
    let session = calls
        .iter()
        .find(|c| c.contains("-u node"))
        .expect("session");
    assert!(session.contains("--continue"), "{session}");
    assert!(
        calls
            .iter()
            .any(|c| c.contains(&format!("-p bot-bottle-{id} ")) && c.contains(" up -d"))
    );
    // A clean exit after resume removes the state.
    assert!(env.state_dirs().is_empty(), "{:?}", env.state_dirs());
}

#[test]
fn compose_v1_is_used_when_v2_is_missing() {
    let env = Env::new("");
    let fake = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake/docker");
    std::fs::copy(&fake, env.bin.join("docker-compose")).unwrap();
    env.cmd()
        .env("FAKE_DOCKER_FAIL", "compose -p")
        .env(
            "FAKE_DOCKER_FAIL_MSG",
            "docker: unknown command: docker compose",
        )
        .env("FAKE_SESSION_EXIT", "5")
        .args(["start", "--yes", "worker"])
        .assert()
        .code(1);
    let calls = env.calls();
    let ups: Vec<&String> = calls.iter().filter(|c| c.contains(" up -d")).collect();
    assert_eq!(ups.len(), 2, "{calls:#?}");
    assert!(ups[0].starts_with("docker compose -p "), "{}", ups[0]);
    assert!(
        ups[1].starts_with("docker-compose -p bot-bottle-worker-"),
        "{}",
        ups[1]
    );
    // Teardown uses v1 too.
    assert!(
        calls
            .iter()
            .any(|c| c.starts_with("docker-compose") && c.contains(" down "))
    );
    // v1 needs a file-format version and has no top-level `name`.
    let states = env.state_dirs();
    let compose = std::fs::read_to_string(states[0].join("compose.yaml")).unwrap();
    assert!(compose.contains("version: \"2.4\""), "{compose}");
    assert!(!compose.contains("\nname:"), "{compose}");
}

#[test]
fn ctrl_c_mid_launch_tears_down_and_exits_130() {
    let env = Env::new("");
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("bot-bottle"));
    // Same environment as `Env::cmd`, on a plain `Command` so the child can be signalled.
    let probe = env.cmd();
    cmd.env_clear();
    for (k, v) in probe.get_envs() {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    cmd.env("FAKE_DOCKER_SLOW", " up -d")
        .args(["start", "--yes", "worker"])
        .current_dir(&env.cwd)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    let slow = env.log.with_extension("log.slow");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !slow.exists() {
        assert!(std::time::Instant::now() < deadline, "compose up never ran");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // SIGINT to the CLI alone (not its process group), as if the terminal's Ctrl-C reached it
    // while `compose up` was running.
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let calls = env.calls();
    let up = position(&calls, " up -d").unwrap();
    let down = position(&calls, " down ").expect("teardown after the interrupt");
    assert!(up < down);
    assert!(
        !calls
            .iter()
            .any(|c| c.contains("cp - ") || c.contains("-u node")),
        "provisioning or the session ran after Ctrl-C"
    );
    assert!(env.state_dirs().is_empty());
}

#[test]
fn no_compose_at_all_is_a_clear_error_and_nothing_is_left() {
    let env = Env::new("");
    env.cmd()
        .env("FAKE_DOCKER_FAIL", "compose -p")
        .env(
            "FAKE_DOCKER_FAIL_MSG",
            "docker: 'compose' is not a docker command.",
        )
        .args(["start", "--yes", "worker"])
        .assert()
        .code(1)
        .stderr(predicates::str::contains(
            "install the Docker compose plugin",
        ));
    assert!(env.state_dirs().is_empty());
    assert!(!env.calls().iter().any(|c| c.contains("cp - ")));
}

/// A Codex login of the shape the host CLI writes, with an access token valid for an hour.
fn codex_login(dir: &Path) -> (String, String) {
    use base64::Engine as _;
    let b64 = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(&v).unwrap())
    };
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let access = format!(
        "{}.{}.SIGaccessQ9w8e7r6t5y4u3i2o1p0",
        b64(serde_json::json!({"alg": "RS256", "typ": "JWT"})),
        b64(serde_json::json!({
            "exp": exp,
            "sub": "user-abc",
            "https://api.openai.com/auth": {"chatgpt_account_id": "acct-1", "chatgpt_plan_type": "plus"}
        }))
    );
    let refresh = "rt_REFRESHzzz0123456789abcdefghij".to_string();
    std::fs::create_dir_all(dir.join(".codex")).unwrap();
    std::fs::write(
        dir.join(".codex/auth.json"),
        serde_json::json!({
            "auth_mode": "chatgpt",
            "OPENAI_API_KEY": null,
            "tokens": {"access_token": access, "id_token": access, "refresh_token": refresh, "account_id": "acct-1"}
        })
        .to_string(),
    )
    .unwrap();
    (access, refresh)
}

#[test]
fn codex_credentials_reach_egress_only_and_the_login_is_verified() {
    let env =
        Env::with_bottle("agent_provider:\n  template: codex\n  forward_host_credentials: true\n");
    let (access, refresh) = codex_login(&env.cwd);
    env.cmd()
        .env("FAKE_ENV_NAMES", "EGRESS_TOKEN_0")
        .env("FAKE_SESSION_EXIT", "9")
        .args(["start", "--yes", "worker"])
        .assert()
        .code(1);
    let log = env.log_text();
    let calls = env.calls();
    let provision = position(&calls, "cp - ").unwrap();
    let verify = position(&calls, "login status").expect("codex login status runs");
    let session = calls
        .iter()
        .rposition(|c| c.contains("-u node") && !c.contains("login status"))
        .unwrap();
    assert!(provision < verify && verify < session, "{calls:#?}");
    assert!(
        log.contains(&format!("ENV EGRESS_TOKEN_0={}", sha16(&access))),
        "{log}"
    );
    let tar = std::fs::read(env.log.with_extension("log.tar")).unwrap();
    let states = env.state_dirs();
    let files = all_files(&states[0]);
    for secret in [
        access.as_str(),
        refresh.as_str(),
        "SIGaccessQ9w8e7r6t5y4u3i2o1p0",
    ] {
        assert!(!log.contains(secret), "secret on argv");
        assert!(!contains(&tar, secret), "secret in the provisioning stream");
        for (path, bytes) in &files {
            assert!(!contains(bytes, secret), "secret in {}", path.display());
        }
    }
    // The dummy auth.json goes in, keeping the account id.
    assert!(contains(&tar, "acct-1"));
}

#[test]
fn a_failing_login_check_refuses_the_bottle_and_tears_down() {
    let env =
        Env::with_bottle("agent_provider:\n  template: codex\n  forward_host_credentials: true\n");
    codex_login(&env.cwd);
    env.cmd()
        .env("FAKE_DOCKER_FAIL", "login status")
        .args(["start", "--yes", "worker"])
        .assert()
        .code(1)
        .stderr(predicates::str::contains("login status"));
    let calls = env.calls();
    assert!(calls.iter().any(|c| c.contains(" down ")));
    assert!(
        !calls.iter().any(|c| c.contains("codex --dangerously")),
        "{calls:#?}"
    );
    assert!(env.state_dirs().is_empty());
}

#[test]
fn cwd_workspace_and_its_git_dir_go_in_the_one_provisioning_stream() {
    let env = Env::new("");
    std::fs::write(env.cwd.join("main.rs"), "fn main() {}\n").unwrap();
    std::fs::create_dir_all(env.cwd.join(".git/refs")).unwrap();
    std::fs::write(env.cwd.join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();
    env.cmd()
        .args(["start", "--yes", "--cwd", "worker"])
        .assert()
        .success();
    let tar = std::fs::read(env.log.with_extension("log.tar")).unwrap();
    let entries = tar_entries(&tar);
    let has = |p: &str| entries.iter().any(|(n, _)| n == p);
    assert!(has("home/node/workspace/main.rs"), "{entries:?}");
    assert!(has("home/node/workspace/.git/HEAD"), "{entries:?}");
    assert!(has("home/node/.bot-bottle/prompt.md"), "{entries:?}");
    assert!(
        has("usr/local/share/ca-certificates/bot-bottle.crt"),
        "{entries:?}"
    );
    // Everything under the agent's home belongs to the agent user.
    for (name, uid) in &entries {
        if name.starts_with("home/node") {
            assert_eq!(*uid, 1000, "{name}");
        }
    }
    // One stream, in the one config copy.
    assert_eq!(
        env.calls().iter().filter(|c| c.contains("cp - ")).count(),
        1
    );
}

#[test]
fn the_home_root_is_never_copied_into_the_workspace() {
    // The operator starts from a directory that contains the bot-bottle home (and with it
    // every bottle's state, CA keys included).
    let env = Env::new("");
    let out = env
        .cmd()
        .current_dir(env.home.parent().unwrap())
        .env("FAKE_SESSION_EXIT", "1")
        .args(["start", "--yes", "--cwd", "worker"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let tar = std::fs::read(env.log.with_extension("log.tar")).unwrap();
    let names: Vec<String> = tar_entries(&tar).into_iter().map(|(n, _)| n).collect();
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("home/node/workspace/work")),
        "{names:?}"
    );
    assert!(!names.iter().any(|n| n.contains("bbhome")), "{names:?}");
    assert!(!contains(&tar, "PRIVATE KEY"));
}

#[test]
fn an_unwritable_state_dir_stops_the_launch_before_any_container() {
    let env = Env::new("");
    // `state` exists as a file: no state dir can be created under it.
    std::fs::write(env.home.join("state"), "not a directory").unwrap();
    let out = env
        .cmd()
        .args(["start", "--yes", "worker"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr
            .lines()
            .filter(|l| l.starts_with("bot-bottle: error:"))
            .count(),
        1,
        "{stderr}"
    );
    assert!(stderr.contains("state"), "{stderr}");
    assert!(
        !env.calls().iter().any(|c| c.contains(" up ")),
        "{:#?}",
        env.calls()
    );
}

#[test]
fn build_images_builds_every_provider_image_and_checks_a_named_sidecar() {
    let env = Env::new("");
    env.cmd().args(["build-images"]).assert().success();
    let calls = env.calls();
    // The fake's inspect prints no context-hash label: both provider images are stale.
    for tag in ["bot-bottle-claude:latest", "bot-bottle-codex:latest"] {
        let inspect = calls
            .iter()
            .position(|c| c.starts_with("docker image inspect") && c.trim_end().ends_with(tag))
            .unwrap_or_else(|| panic!("{tag} not checked: {calls:#?}"));
        let build = position(
            &calls,
            &format!("docker build -t {tag} --label dev.bot-bottle.context-hash="),
        )
        .unwrap_or_else(|| panic!("{tag} not built: {calls:#?}"));
        assert!(inspect < build, "{calls:#?}");
    }
    // A sidecar image named by BOT_BOTTLE_SIDECAR_IMAGE must exist and is never built.
    assert!(
        position(
            &calls,
            "image inspect --format \\{\\{.Id\\}\\} fake-sidecar:1"
        )
        .is_some(),
        "{calls:#?}"
    );
    assert!(
        position(&calls, "build -t fake-sidecar").is_none(),
        "{calls:#?}"
    );
    // Each build is followed by the prune of the image it superseded, bot-bottle's only.
    let prune = "docker image prune --force --filter label=dev.bot-bottle.context-hash";
    assert_eq!(
        calls.iter().filter(|c| c.trim_end() == prune).count(),
        calls
            .iter()
            .filter(|c| c.starts_with("docker build"))
            .count(),
        "{calls:#?}"
    );
    // No container, network or compose call.
    assert!(
        calls.iter().all(|c| c.starts_with("docker image inspect")
            || c.starts_with("docker build")
            || c.trim_end() == prune),
        "{calls:#?}"
    );
}

#[test]
fn a_failed_image_build_is_one_error_line_naming_the_image() {
    let env = Env::new("");
    let out = env
        .cmd()
        .env("FAKE_DOCKER_FAIL", "build -t")
        .env("FAKE_DOCKER_FAIL_MSG", "")
        .args(["build-images"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("bot-bottle: error:"))
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("bot-bottle-claude:latest"), "{stderr}");
}
