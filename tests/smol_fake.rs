//! CLI tests of the smolmachines backend against a fake `smolvm` and a fake `docker` on
//! `PATH` that record every call in one log: the full call sequence, the /32 allowlist, the
//! allowlist workaround for smolvm 0.8, the artifact cache, teardown after a failure at each
//! step, `list active` across both backends, `cleanup`, `resume`, and that no secret reaches
//! argv or a written file. The VM itself cannot run here (smolvm is macOS-only); what these
//! tests prove is what bot-bottle asks smolvm and Docker to do, and in which order.

use std::path::{Path, PathBuf};

use assert_cmd::Command;

const SECRET_TOKEN: &str = "tok-0123456789abcdefTOKENVALUE";

struct Env {
    _tmp: tempfile::TempDir,
    home: PathBuf,
    bin: PathBuf,
    log: PathBuf,
    cwd: PathBuf,
    /// `$HOME` of the CLI (holds the artifact cache and smolvm's database).
    user_home: PathBuf,
}

impl Env {
    fn new(bottle_extra: &str) -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("bbhome");
        let bin = tmp.path().join("bin");
        let cwd = tmp.path().join("work");
        let user_home = tmp.path().join("user");
        for d in [
            &home.join("bottles"),
            &home.join("agents"),
            &bin,
            &cwd,
            &user_home,
        ] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(
            home.join("bottles/dev.md"),
            format!(
                "---\nenv:\n  PLAIN: \"visible\"\negress:\n  routes:\n    - host: api.example.com\n      auth:\n        scheme: Bearer\n        token_ref: HOST_TOKEN\n{bottle_extra}---\n"
            ),
        )
        .unwrap();
        std::fs::write(
            home.join("agents/worker.md"),
            "---\nbottle: dev\n---\nDo the work.\n",
        )
        .unwrap();
        let fakes = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake");
        for prog in ["docker", "smolvm"] {
            std::fs::copy(fakes.join(prog), bin.join(prog)).unwrap();
        }
        let log = tmp.path().join("calls.log");
        std::fs::write(&log, "").unwrap();
        Env {
            _tmp: tmp,
            home,
            bin,
            log,
            cwd,
            user_home,
        }
    }

    /// The CLI with the fakes first on PATH and only the system dirs after them, so a real
    /// smolvm or docker elsewhere can never answer.
    fn cmd(&self) -> Command {
        self.cmd_with_path(&format!("{}:/usr/bin:/bin", self.bin.display()))
    }

    fn cmd_with_path(&self, path: &str) -> Command {
        let mut cmd = Command::cargo_bin("bot-bottle").unwrap();
        cmd.env_clear()
            .env("PATH", path)
            .env("HOME", &self.user_home)
            .env("BOT_BOTTLE_HOME", &self.home)
            .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
            .env("BOT_BOTTLE_IMAGE", "fake-agent:1")
            .env("BOT_BOTTLE_SIDECAR_IMAGE", "fake-sidecar:1")
            .env("HOST_TOKEN", SECRET_TOKEN)
            .env("FAKE_DOCKER_LOG", &self.log)
            .env("FAKE_ENV_NAMES", "EGRESS_TOKEN_0")
            .current_dir(&self.cwd);
        cmd
    }

    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with("ENV ") && !l.starts_with("ALLOWLIST "))
            // The fakes log shell-quoted argv; the backslashes only get in the way here.
            .map(|l| l.replace('\\', ""))
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

    fn cache_dir(&self) -> PathBuf {
        self.user_home.join(".cache/bot-bottle/smolmachines")
    }

    fn cache_files(&self) -> Vec<String> {
        let mut v: Vec<String> = match std::fs::read_dir(self.cache_dir()) {
            Ok(rd) => rd
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect(),
            Err(_) => Vec::new(),
        };
        v.sort();
        v
    }

    fn start(&self) -> Command {
        let mut cmd = self.cmd();
        cmd.args(["start", "--yes", "--backend", "smolmachines", "worker"]);
        cmd
    }
}

fn position(calls: &[String], needle: &str) -> Option<usize> {
    calls.iter().position(|c| c.contains(needle))
}

fn error_lines(stderr: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter(|l| l.starts_with("bot-bottle: error:"))
        .map(str::to_string)
        .collect()
}

fn have_sqlite3() -> bool {
    std::process::Command::new("sqlite3")
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn without_smolvm_start_is_one_line_saying_what_to_install() {
    let env = Env::new("");
    std::fs::remove_file(env.bin.join("smolvm")).unwrap();
    let out = env.start().output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("bot-bottle: error:"), "{stderr}");
    assert!(
        stderr.contains("smolvm") && stderr.contains("install"),
        "{stderr}"
    );
    assert!(env.calls().is_empty(), "{:#?}", env.calls());
    assert!(env.state_dirs().is_empty());
}

#[test]
fn launch_runs_the_full_sequence_in_order_and_tears_down() {
    let env = Env::new("");
    env.start().assert().success();
    let calls = env.calls();
    let identity = {
        let create = &calls[position(&calls, "machine create").expect("machine create")];
        let i = create.find("--name bot-bottle-").unwrap() + "--name bot-bottle-".len();
        create[i..].split_whitespace().next().unwrap().to_string()
    };
    let machine = format!("bot-bottle-{identity}");
    let steps = [
        "smolvm --version",
        "label=dev.bot-bottle.backend=smolmachines",
        " up -d",
        "docker cp - bot-bottle-sidecars-",
        "{{.Id}}",
        "network create",
        "docker run -d --rm --name bot-bottle-registry-",
        "docker port bot-bottle-registry-",
        "wget",
        "docker save",
        "push --insecure /image.tar",
        "smolvm pack create --image localhost:49153/bot-bottle-agent:",
        "docker rm -f bot-bottle-registry-",
        "docker network rm bot-bottle-registry-net-",
        "smolvm machine create",
        "smolvm machine start",
        " -- true",
        "chown -R node:node",
        "tar -x",
        "--dangerously",
        "tar -cf -",
        "docker cp bot-bottle-sidecars-",
        "smolvm machine stop",
        "smolvm machine delete -f",
        " down ",
    ];
    let mut last = 0;
    for step in steps {
        let at = calls[last..]
            .iter()
            .position(|c| c.contains(step))
            .map(|i| i + last)
            .unwrap_or_else(|| panic!("`{step}` missing after call {last}: {calls:#?}"));
        last = at;
    }
    // The VM gets the alias as its only allowed CIDR, from the packed payload, with the
    // agent's CPU and memory limits (4 GiB by default; smolvm takes MiB).
    let create = &calls[position(&calls, "machine create").unwrap()];
    assert!(
        create.contains(&format!("--name {machine} --cpus ")),
        "{create}"
    );
    assert!(
        create.contains(&format!(
            " --mem 4096 --from {}/",
            env.cache_dir().display()
        )),
        "{create}"
    );
    assert!(
        create.contains(".smolmachine --net --allow-cidr 127.0.0.16/32"),
        "{create}"
    );
    assert_eq!(create.matches("--allow-cidr").count(), 1, "{create}");
    // The session runs the provider as the agent, proxied through the bundle on the alias.
    let session = &calls[position(&calls, "--dangerously").unwrap()];
    assert!(session.contains("runuser -u node"), "{session}");
    assert!(
        session.contains("HTTPS_PROXY=http://127.0.0.16:9099"),
        "{session}"
    );
    assert!(session.contains("claude"), "{session}");
    // Exactly one provisioning stream, as root, into the VM.
    assert_eq!(calls.iter().filter(|c| c.contains("tar -x")).count(), 1);
    assert!(env.state_dirs().is_empty(), "{:?}", env.state_dirs());
    // The artifact is cached by image id; the registry's tarball and partial files are gone.
    let cached = env.cache_files();
    assert_eq!(cached.len(), 3, "{cached:?}");
    assert!(cached.iter().any(|f| f == "alias.lock"));
    let payload = cached.iter().find(|f| f.ends_with(".smolmachine")).unwrap();
    assert_eq!(payload.len(), 16 + ".smolmachine".len(), "{payload}");
}

#[test]
fn a_cached_artifact_skips_the_registry_and_pack() {
    let env = Env::new("");
    env.start().assert().success();
    let first = env.calls().len();
    env.start().assert().success();
    let second: Vec<String> = env.calls().split_off(first);
    assert!(position(&second, "{{.Id}}").is_some(), "{second:#?}");
    for absent in ["pack create", "registry", "docker save", "crane"] {
        assert!(
            position(&second, absent).is_none(),
            "`{absent}` on a cache hit: {second:#?}"
        );
    }
    assert!(position(&second, "machine create").is_some());
    // A rebuilt image (a new id) packs again.
    env.start()
        .env("FAKE_IMAGE_ID", format!("sha256:{}", "ab".repeat(32)))
        .assert()
        .success();
    assert!(env.log_text().matches("pack create").count() == 2);
}

#[test]
fn the_alias_skips_those_of_running_bottles_and_is_the_only_allowed_cidr() {
    let env = Env::new("");
    let ps = "{\"Names\":\"bot-bottle-sidecars-a-1\",\"State\":\"running\",\"Labels\":\"dev.bot-bottle.identity=a-1,dev.bot-bottle.backend=smolmachines,dev.bot-bottle.alias=127.0.0.16\"}\n\
              {\"Names\":\"bot-bottle-sidecars-b-2\",\"State\":\"running\",\"Labels\":\"dev.bot-bottle.identity=b-2,dev.bot-bottle.backend=smolmachines,dev.bot-bottle.alias=127.0.0.18\"}\n";
    // Keep the state so the compose file can be read.
    env.start()
        .env("FAKE_PS_JSON", ps)
        .env("FAKE_SESSION_EXIT", "3")
        .assert()
        .code(1);
    let calls = env.calls();
    let create = &calls[position(&calls, "machine create").unwrap()];
    assert!(create.ends_with("--allow-cidr 127.0.0.17/32 "), "{create}");
    let session = &calls[position(&calls, "--dangerously").unwrap()];
    assert!(
        session.contains("HTTPS_PROXY=http://127.0.0.17:9099"),
        "{session}"
    );
    let states = env.state_dirs();
    assert_eq!(states.len(), 1);
    let compose = std::fs::read_to_string(states[0].join("compose.yaml")).unwrap();
    assert!(compose.contains("127.0.0.17:9099:9099"), "{compose}");
    assert!(
        !compose.contains("agent:\n"),
        "no agent container: {compose}"
    );
    assert!(
        compose.contains("dev.bot-bottle.backend: smolmachines"),
        "{compose}"
    );
    assert!(
        !compose.contains("dev.bot-bottle.backend: docker"),
        "{compose}"
    );
    let meta = std::fs::read_to_string(states[0].join("metadata.json")).unwrap();
    assert!(meta.contains("\"backend\": \"smolmachines\""), "{meta}");
}

#[test]
fn smolvm_0_8_gets_the_allowlist_written_before_the_vm_starts() {
    if !have_sqlite3() {
        eprintln!("SKIPPED: `sqlite3` is not installed; the smolvm 0.8 workaround was not run");
        return;
    }
    let env = Env::new("");
    let db = env.user_home.join(".local/share/smolvm/server/smolvm.db");
    std::fs::create_dir_all(db.parent().unwrap()).unwrap();
    let made = std::process::Command::new("sqlite3")
        .arg(&db)
        .arg("CREATE TABLE vms (name TEXT PRIMARY KEY, data BLOB);")
        .status()
        .unwrap();
    assert!(made.success());
    env.start()
        .env("FAKE_SMOLVM_VERSION", "smolvm 0.8.0")
        .env("FAKE_SMOLVM_DB", &db)
        .assert()
        .success();
    // What the fake smolvm saw stored when the VM started: the alias /32, not the `null`
    // smolvm 0.8 leaves behind.
    let log = env.log_text();
    assert!(log.contains("ALLOWLIST [\"127.0.0.16/32\"]\n"), "{log}");

    // A fixed smolvm is left alone: the dropped value stays what the fake stored.
    let env = Env::new("");
    let db = env.user_home.join(".local/share/smolvm/server/smolvm.db");
    std::fs::create_dir_all(db.parent().unwrap()).unwrap();
    std::process::Command::new("sqlite3")
        .arg(&db)
        .arg("CREATE TABLE vms (name TEXT PRIMARY KEY, data BLOB);")
        .status()
        .unwrap();
    env.start()
        .env("FAKE_SMOLVM_VERSION", "smolvm 0.9.1")
        .env("FAKE_SMOLVM_DB", &db)
        .assert()
        .success();
    assert!(
        env.log_text().contains("ALLOWLIST \n"),
        "{}",
        env.log_text()
    );
}

#[test]
fn smolvm_0_8_without_its_database_is_refused_and_torn_down() {
    let env = Env::new("");
    let out = env
        .start()
        .env("FAKE_SMOLVM_VERSION", "smolvm 0.8.0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let errors = error_lines(&out.stderr);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("smolvm.db") && errors[0].contains("0.8.0"),
        "{errors:?}"
    );
    let calls = env.calls();
    assert!(position(&calls, "machine start").is_none(), "{calls:#?}");
    let create = position(&calls, "machine create").unwrap();
    let delete = position(&calls, "machine delete -f").unwrap();
    let down = position(&calls, " down ").unwrap();
    assert!(create < delete && delete < down, "{calls:#?}");
    assert!(env.state_dirs().is_empty());
}

#[test]
fn a_failure_at_each_step_tears_down_what_was_created() {
    // (knob, its value, the call that fails, the undo calls that must follow it in order)
    let cases: &[(&str, &str, &str, &[&str])] = &[
        (
            "FAKE_DOCKER_FAIL",
            "label=dev.bot-bottle.backend",
            "label=dev.bot-bottle.backend",
            &[],
        ),
        ("FAKE_DOCKER_FAIL", " up -d", " up -d", &[" down "]),
        // The sidecar config does not reach the bundle.
        ("FAKE_DOCKER_FAIL", "cp - ", "cp - ", &[" down "]),
        // The engine answers the image-id question with something that is not an id.
        (
            "FAKE_IMAGE_ID",
            "Error: No such image",
            "{{.Id}}",
            &[" down "],
        ),
        (
            "FAKE_DOCKER_FAIL",
            "network create",
            "network create",
            &["network rm bot-bottle-registry-net-", " down "],
        ),
        (
            "FAKE_DOCKER_FAIL",
            "crane",
            "crane",
            &[
                "rm -f bot-bottle-registry-",
                "network rm bot-bottle-registry-net-",
                " down ",
            ],
        ),
        (
            "FAKE_SMOLVM_FAIL",
            "pack create",
            "pack create",
            &[
                "rm -f bot-bottle-registry-",
                "network rm bot-bottle-registry-net-",
                " down ",
            ],
        ),
        (
            "FAKE_SMOLVM_FAIL",
            "machine create",
            "machine create",
            &["machine delete -f", " down "],
        ),
        (
            "FAKE_SMOLVM_FAIL",
            "machine start",
            "machine start",
            &["machine stop", "machine delete -f", " down "],
        ),
        (
            "FAKE_SMOLVM_FAIL",
            "chown -R node",
            "chown -R node",
            &["machine stop", "machine delete -f", " down "],
        ),
        (
            "FAKE_SMOLVM_FAIL",
            "tar -x",
            "tar -x",
            &["machine stop", "machine delete -f", " down "],
        ),
    ];
    for (knob, value, step, undo) in cases {
        let env = Env::new("");
        let out = env.start().env(knob, value).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "step {step}");
        let errors = error_lines(&out.stderr);
        assert_eq!(errors.len(), 1, "step {step}: {errors:?}");
        let calls = env.calls();
        let failed = calls
            .iter()
            .rposition(|c| c.contains(step))
            .unwrap_or_else(|| panic!("{step}: {calls:#?}"));
        // Each undo runs after the failure, in reverse order of creation.
        let mut last = failed;
        for u in *undo {
            let at = calls[last..]
                .iter()
                .position(|c| c.contains(u))
                .map(|i| i + last)
                .unwrap_or_else(|| panic!("step {step}: `{u}` missing: {calls:#?}"));
            last = at;
        }
        if undo.is_empty() {
            assert_eq!(failed, calls.len() - 1, "step {step}: {calls:#?}");
        }
        // Nothing the launch never created is undone.
        if !undo.contains(&" down ") {
            assert!(position(&calls, " down ").is_none(), "step {step}");
        }
        if !undo.contains(&"machine delete -f") {
            assert!(position(&calls, "machine delete").is_none(), "step {step}");
        }
        assert!(env.state_dirs().is_empty(), "step {step}: state left");
        // No tarball or half-packed artifact is left in the cache.
        for f in env.cache_files() {
            assert!(
                f == "alias.lock" || !f.starts_with('.'),
                "step {step}: {f} left"
            );
        }
    }
}

#[test]
fn the_egress_token_never_reaches_argv_or_a_written_file() {
    let env = Env::new("");
    env.start().env("FAKE_SESSION_EXIT", "3").assert().code(1);
    let log = env.log_text();
    assert!(!log.contains(SECRET_TOKEN), "secret on argv:\n{log}");
    // It reaches the bundle through compose's environment.
    use sha2::Digest as _;
    let hash = hex::encode(sha2::Sha256::digest(SECRET_TOKEN.as_bytes()));
    assert!(
        log.contains(&format!("ENV EGRESS_TOKEN_0={}", &hash[..16])),
        "{log}"
    );
    for dir in env.state_dirs() {
        for entry in walk(&dir) {
            let bytes = std::fs::read(&entry).unwrap();
            assert!(
                !bytes
                    .windows(SECRET_TOKEN.len())
                    .any(|w| w == SECRET_TOKEN.as_bytes()),
                "secret in {}",
                entry.display()
            );
        }
    }
    let tar = std::fs::read(env.log.with_extension("log.tar")).unwrap();
    assert!(
        !tar.windows(SECRET_TOKEN.len())
            .any(|w| w == SECRET_TOKEN.as_bytes())
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().filter_map(Result::ok) {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn forwarded_host_values_are_refused_before_anything_runs() {
    let env = Env::new("");
    std::fs::write(
        env.home.join("bottles/dev.md"),
        "---\nenv:\n  FORWARDED: \"${HOST_TOKEN}\"\n---\n",
    )
    .unwrap();
    let out = env.start().output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let errors = error_lines(&out.stderr);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("`FORWARDED`"), "{errors:?}");
    let calls = env.calls();
    assert_eq!(calls, vec!["smolvm --version ".to_string()], "{calls:#?}");
}

#[test]
fn list_active_shows_both_backends_in_one_listing() {
    let env = Env::new("");
    let ps = "{\"Names\":\"bot-bottle-w-1\",\"State\":\"running\",\"Labels\":\"dev.bot-bottle.identity=w-1,dev.bot-bottle.agent=worker,dev.bot-bottle.backend=docker,dev.bot-bottle.service=agent\"}\n\
              {\"Names\":\"bot-bottle-sidecars-w-1\",\"State\":\"running\",\"Labels\":\"dev.bot-bottle.identity=w-1,dev.bot-bottle.agent=worker,dev.bot-bottle.backend=docker,dev.bot-bottle.service=sidecars\"}\n\
              {\"Names\":\"bot-bottle-sidecars-s-2\",\"State\":\"running\",\"Labels\":\"dev.bot-bottle.identity=s-2,dev.bot-bottle.agent=worker,dev.bot-bottle.backend=smolmachines,dev.bot-bottle.service=sidecars,dev.bot-bottle.alias=127.0.0.16\"}\n";
    let ls = r#"[{"name":"bot-bottle-s-2","state":"running"},{"name":"bot-bottle-gone-3","state":"stopped"},{"name":"other","state":"running"}]"#;
    env.cmd()
        .env("FAKE_PS_JSON", ps)
        .env("FAKE_SMOLVM_LS_JSON", ls)
        .args(["list", "active"])
        .assert()
        .success()
        .stdout("smolmachines\ts-2\tworker\tsidecars,vm\ndocker\tw-1\tworker\tagent,sidecars\n");
    let calls = env.calls();
    assert_eq!(calls.len(), 2, "{calls:#?}");
    assert!(calls[1].starts_with("smolvm machine ls --json"));
    // Without smolvm the Docker part is listed as before.
    std::fs::remove_file(env.bin.join("smolvm")).unwrap();
    env.cmd()
        .env("FAKE_PS_JSON", ps)
        .args(["list", "active"])
        .assert()
        .success()
        .stdout("smolmachines\ts-2\tworker\tsidecars\ndocker\tw-1\tworker\tagent,sidecars\n");
}

#[test]
fn cleanup_removes_vms_then_the_docker_resources() {
    let env = Env::new("");
    let ps = "{\"Names\":\"bot-bottle-sidecars-s-2\",\"State\":\"running\",\"Labels\":\"dev.bot-bottle.identity=s-2,dev.bot-bottle.backend=smolmachines\"}\n";
    let ls = r#"[{"name":"bot-bottle-s-2","state":"running"},{"name":"bot-bottle-gone-3","state":"stopped"},{"name":"other","state":"running"}]"#;
    let out = env
        .cmd()
        .env("FAKE_PS_JSON", ps)
        .env("FAKE_SMOLVM_LS_JSON", ls)
        .args(["cleanup", "--yes"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("vm        bot-bottle-gone-3"), "{stderr}");
    assert!(stderr.contains("removed 2 VMs, 1 containers"), "{stderr}");
    let calls = env.calls();
    for m in ["bot-bottle-s-2", "bot-bottle-gone-3"] {
        assert!(
            position(&calls, &format!("machine delete -f {m}")).is_some(),
            "{calls:#?}"
        );
    }
    assert!(position(&calls, " other").is_none(), "not ours: {calls:#?}");
    let last_vm = calls
        .iter()
        .rposition(|c| c.contains("machine delete"))
        .unwrap();
    let rm = position(&calls, "docker rm -f").unwrap();
    assert!(last_vm < rm, "{calls:#?}");
}

#[test]
fn resume_uses_the_backend_recorded_in_the_metadata() {
    let env = Env::new("");
    // A preserved smolmachines bottle.
    env.start().env("FAKE_SESSION_EXIT", "3").assert().code(1);
    let states = env.state_dirs();
    assert_eq!(states.len(), 1);
    let id = states[0].file_name().unwrap().to_string_lossy().to_string();
    let before = env.calls().len();
    // No --backend flag: the metadata decides.
    env.cmd().args(["resume", "--yes", &id]).assert().success();
    let calls: Vec<String> = env.calls().split_off(before);
    assert!(calls[0].starts_with("smolvm --version"), "{calls:#?}");
    let create = &calls[position(&calls, "machine create").expect("a VM on resume")];
    assert!(
        create.contains(&format!("--name bot-bottle-{id} ")),
        "{create}"
    );
    assert!(
        position(&calls, "-u root").is_none(),
        "no agent container: {calls:#?}"
    );
    // A clean exit of the resumed bottle removes its state.
    assert!(env.state_dirs().is_empty());
}

#[test]
fn exec_sets_the_bottles_environment_in_the_vm() {
    let env = Env::new("");
    // A bottle whose state (with its compose file) is kept.
    env.start().env("FAKE_SESSION_EXIT", "3").assert().code(1);
    let states = env.state_dirs();
    let id = states[0].file_name().unwrap().to_string_lossy().to_string();
    let compose = std::fs::read_to_string(states[0].join("compose.yaml")).unwrap();
    let label = compose
        .lines()
        .find_map(|l| l.trim().strip_prefix("dev.bot-bottle.agent-env: "))
        .expect("agent env label on the bundle")
        .trim_matches('"')
        .to_string();
    let alias = compose
        .lines()
        .find_map(|l| l.trim().strip_prefix("dev.bot-bottle.alias: "))
        .unwrap()
        .trim_matches('"')
        .to_string();
    // The bundle as `docker ps` shows it while the bottle runs.
    let ps = format!(
        "{{\"Names\":\"bot-bottle-sidecars-{id}\",\"State\":\"running\",\"Labels\":\"dev.bot-bottle.identity={id},dev.bot-bottle.backend=smolmachines,dev.bot-bottle.alias={alias},dev.bot-bottle.agent-env={label}\"}}\n"
    );
    let ls = format!(r#"[{{"name":"bot-bottle-{id}","state":"running"}}]"#);
    let before = env.calls().len();
    env.cmd()
        .env("FAKE_PS_JSON", ps)
        .env("FAKE_SMOLVM_LS_JSON", ls)
        .args(["exec", &id, "--", "printenv", "PLAIN"])
        .assert()
        .success();
    let calls: Vec<String> = env.calls().split_off(before);
    let exec = &calls[position(&calls, "machine exec").expect("an exec into the VM")];
    // The bottle's literal env, the CA settings and the proxy on the bottle's alias, as the
    // session had them.
    for want in [
        "PLAIN=visible",
        "NODE_EXTRA_CA_CERTS=/usr/local/share/ca-certificates/bot-bottle.crt",
        &format!("HTTPS_PROXY=http://{alias}:9099"),
        &format!("BOT_BOTTLE_IDENTITY={id}"),
    ] {
        assert!(exec.contains(want), "{want} missing: {exec}");
    }
    assert!(exec.ends_with("printenv PLAIN "), "{exec}");
}
