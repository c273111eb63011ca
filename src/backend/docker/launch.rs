//! The launch sequence (SPEC F-DOCK): images → names → state dir → CA and sidecar config →
//! compose file → `compose up` (secrets only in the child's environment) → one provisioning
//! stream → the interactive session → transcript snapshot → teardown in reverse order.
//!
//! Every step that creates something pushes its undo first, so a failure, a Ctrl-C or a
//! normal exit all unwind the same stack. A SIGKILL leaves labelled, prefixed resources and
//! an unpreserved state dir, which `cleanup` finds.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::compose::{self, ComposeInput};
use super::provision::{self, AGENT_USER, CA_PATH, SYSTEM_BUNDLE, WORKDIR};
use super::{ComposeCmd, DockerError, NAME_PREFIX, check, command_error, docker, sidecar_config};
use crate::backend::interrupt;
use crate::plan::BottlePlan;
use crate::runner::{ProcessSpec, Runner};
use crate::secret::Secret;

/// Loopback port of the relay that forwards to egress inside the agent.
pub const PROXY_URL: &str = "http://127.0.0.1:9099";
pub const COMPOSE_FILE: &str = "compose.yaml";
const MAX_NAME_TRIES: u32 = 100;

/// Names of one bottle's resources, all derived from its identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BottleNames {
    pub identity: String,
    pub project: String,
    pub agent_container: String,
    pub sidecar_container: String,
    pub internal_network: String,
    pub egress_network: String,
}

impl BottleNames {
    pub fn for_identity(identity: &str, pinned_container: Option<&str>) -> Self {
        BottleNames {
            identity: identity.to_string(),
            project: format!("{NAME_PREFIX}{identity}"),
            agent_container: pinned_container
                .map(str::to_string)
                .unwrap_or_else(|| format!("{NAME_PREFIX}{identity}")),
            sidecar_container: format!("{NAME_PREFIX}sidecars-{identity}"),
            internal_network: format!("{NAME_PREFIX}net-{identity}"),
            egress_network: format!("{NAME_PREFIX}egress-{identity}"),
        }
    }
}

/// The candidate identities in order: `id`, `id-2`, … `id-100`.
pub fn candidate_identity(base: &str, attempt: u32) -> String {
    if attempt <= 1 {
        base.to_string()
    } else {
        format!("{base}-{attempt}")
    }
}

/// Agent environment that is not secret: proxy through the relay, CA trust, provider and
/// literal bottle env. Forwarded names are listed separately (their values never touch the
/// compose file).
pub fn agent_env(plan: &BottlePlan) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for k in ["HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"] {
        env.insert(k.to_string(), PROXY_URL.to_string());
    }
    for k in ["NO_PROXY", "no_proxy"] {
        env.insert(k.to_string(), "localhost,127.0.0.1".to_string());
    }
    env.insert("NODE_EXTRA_CA_CERTS".into(), CA_PATH.into());
    env.insert("SSL_CERT_FILE".into(), SYSTEM_BUNDLE.into());
    env.insert("REQUESTS_CA_BUNDLE".into(), SYSTEM_BUNDLE.into());
    env.insert("BOT_BOTTLE_IDENTITY".into(), plan.identity.clone());
    for (k, v) in &plan.provider.env {
        env.insert(k.clone(), v.clone());
    }
    for (k, v) in &plan.env.literal {
        env.insert(k.clone(), v.clone());
    }
    env
}

pub fn compose_input(
    plan: &BottlePlan,
    names: &BottleNames,
    agent_image: &str,
    sidecar_image: &str,
    state_dir: &Path,
    compose_v1: bool,
) -> ComposeInput {
    ComposeInput {
        identity: names.identity.clone(),
        agent_name: plan.agent.clone(),
        project: names.project.clone(),
        agent_container: names.agent_container.clone(),
        sidecar_container: names.sidecar_container.clone(),
        internal_network: names.internal_network.clone(),
        egress_network: names.egress_network.clone(),
        agent_image: agent_image.to_string(),
        sidecar_image: sidecar_image.to_string(),
        runtime: plan.runtime.is_runsc().then(|| "runsc".to_string()),
        agent_env: agent_env(plan),
        agent_env_forwarded: plan.env.forwarded.keys().cloned().collect(),
        sidecar_env_forwarded: plan.egress_tokens.keys().cloned().collect(),
        sidecar_config_dir: state_dir.join("sidecar"),
        sidecar_log_dir: state_dir.join("logs"),
        daemons: sidecar_config::daemons(plan),
        compose_v1,
    }
}

/// The secret environment of the `compose up` child: forwarded bottle env and egress tokens.
pub fn secret_env(plan: &BottlePlan) -> BTreeMap<String, Secret> {
    let mut env = BTreeMap::new();
    for (k, v) in &plan.env.forwarded {
        env.insert(k.clone(), v.clone());
    }
    for (k, v) in &plan.egress_tokens {
        env.insert(k.clone(), v.clone());
    }
    env
}

/// What the launch undoes, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Undo {
    ComposeDown { project: String, file: PathBuf },
    StateDir(PathBuf),
}

/// What the caller passes in: everything that is not the plan.
pub struct Launcher<'a> {
    pub runner: &'a dyn Runner,
    /// Starts as [`ComposeCmd::assume_v2`]; switches to v1 when `docker compose` is missing.
    pub compose: std::cell::Cell<ComposeCmd>,
    pub agent_image: String,
    pub sidecar_image: String,
    pub extra_ca_pem: Option<String>,
    pub say: &'a dyn Fn(&str),
    pub warn: &'a dyn Fn(&str),
    /// Unix seconds, for metadata and tar mtimes.
    pub now: u64,
}

/// How a launch ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub identity: String,
    pub exit_code: i32,
    pub preserved: bool,
}

/// The live part of a launch: what was created, for teardown.
pub struct Bottle {
    pub names: BottleNames,
    pub state_dir: PathBuf,
    pub compose_file: PathBuf,
    undo: Vec<Undo>,
}

impl Launcher<'_> {
    fn check_interrupt(&self) -> Result<(), DockerError> {
        if interrupt::interrupted() {
            Err(DockerError::Interrupted)
        } else {
            Ok(())
        }
    }

    /// Every container name that exists now (one call).
    fn taken_names(&self) -> Result<BTreeSet<String>, DockerError> {
        let out = check(self.runner, &docker(["ps", "-a", "--format", "{{.Names}}"]))?;
        Ok(out
            .stdout_str()
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect())
    }

    /// Create the bottle: state dir, config, compose up. On failure everything created so
    /// far is removed before the error is returned.
    pub fn create(&self, plan: &BottlePlan, pinned: Option<&str>) -> Result<Bottle, DockerError> {
        // Only a pinned name is checked up front (it is never retried). Random identities
        // rarely collide; when one does, `compose up` reports it and the loop below retries,
        // which saves an engine call on every start.
        let taken = if pinned.is_some() {
            self.taken_names()?
        } else {
            BTreeSet::new()
        };
        let mut attempt = 1;
        loop {
            self.check_interrupt()?;
            let identity = if plan.resume {
                plan.identity.clone()
            } else {
                candidate_identity(&plan.identity, attempt)
            };
            let names = BottleNames::for_identity(&identity, pinned);
            if taken.contains(&names.agent_container) || taken.contains(&names.sidecar_container) {
                if pinned.is_some() {
                    return Err(DockerError::PinnedNameTaken(names.agent_container));
                }
                if plan.resume {
                    return Err(DockerError::Refused(format!(
                        "bottle `{identity}` is already running; attach with `bot-bottle exec {identity} -- …` or stop it with `bot-bottle cleanup`"
                    )));
                }
                attempt += 1;
                if attempt > MAX_NAME_TRIES {
                    return Err(DockerError::NoFreeName(plan.identity.clone()));
                }
                continue;
            }
            let mut bottle = Bottle {
                state_dir: plan.root.join("state").join(&identity),
                compose_file: PathBuf::new(),
                names,
                undo: Vec::new(),
            };
            match self.bring_up(plan, &mut bottle) {
                Ok(()) => return Ok(bottle),
                Err(e) => {
                    let conflict = matches!(&e, DockerError::Command { stderr, .. } if stderr.contains("already in use"));
                    self.teardown(&mut bottle);
                    if conflict && pinned.is_none() && !plan.resume && attempt < MAX_NAME_TRIES {
                        (self.say)(&format!(
                            "name `{}` was taken meanwhile; trying the next one",
                            bottle.names.agent_container
                        ));
                        attempt += 1;
                        continue;
                    }
                    if conflict && pinned.is_some() {
                        return Err(DockerError::PinnedNameTaken(bottle.names.agent_container));
                    }
                    return Err(e);
                }
            }
        }
    }

    fn bring_up(&self, plan: &BottlePlan, b: &mut Bottle) -> Result<(), DockerError> {
        let existed = b.state_dir.exists();
        if !existed {
            b.undo.push(Undo::StateDir(b.state_dir.clone()));
        }
        let state = if plan.resume {
            crate::state::StateDir::open(&plan.root, &b.names.identity)
        } else {
            crate::state::StateDir::create(&plan.root, &b.names.identity)
        }
        .map_err(|e| DockerError::Other(e.to_string()))?;
        state
            .write_metadata(&crate::state::Metadata {
                identity: b.names.identity.clone(),
                agent: plan.agent.clone(),
                bottle: plan.bottle.clone(),
                cwd: plan.cwd.clone(),
                copy_cwd: plan.copy_cwd,
                started_at: crate::state::Metadata::now_rfc3339(),
                compose_project: b.names.project.clone(),
                backend: plan.backend.as_str().to_string(),
            })
            .map_err(|e| DockerError::Other(e.to_string()))?;
        self.check_interrupt()?;

        let (ca_cert, ca_key) = crate::sidecar::egress::ca::mint_bottle_ca()
            .map_err(|e| DockerError::Other(format!("cannot mint the bottle CA: {e}")))?;
        let state_err = |e: crate::state::StateError| DockerError::Other(e.to_string());
        let files = sidecar_config::files(plan, &ca_cert, &ca_key, self.extra_ca_pem.as_deref());
        for (name, contents, mode) in &files {
            state
                .write_file(&format!("sidecar/{name}"), contents, Some(*mode))
                .map_err(state_err)?;
        }
        std::fs::create_dir_all(b.state_dir.join("logs"))
            .map_err(|e| DockerError::io(b.state_dir.join("logs"), e))?;
        state
            .write_file("ca.pem", &ca_cert, Some(0o644))
            .map_err(state_err)?;

        b.compose_file = state
            .write_file(COMPOSE_FILE, self.render_compose(plan, b), Some(0o644))
            .map_err(state_err)?;
        self.check_interrupt()?;

        (self.say)(&format!("starting bottle `{}`", b.names.identity));
        b.undo.push(Undo::ComposeDown {
            project: b.names.project.clone(),
            file: b.compose_file.clone(),
        });
        match self.compose_up(plan, b) {
            Err(e) if !self.compose.get().v1 && ComposeCmd::is_missing_v2(&e) => {
                if !ComposeCmd::v1_available(self.runner) {
                    return Err(DockerError::NoCompose);
                }
                tracing::info!("`docker compose` is missing; using `docker-compose` (v1)");
                self.compose.set(ComposeCmd { v1: true });
                state
                    .write_file(COMPOSE_FILE, self.render_compose(plan, b), Some(0o644))
                    .map_err(state_err)?;
                self.compose_up(plan, b)?;
            }
            other => other?,
        }
        self.check_interrupt()?;

        (self.say)("provisioning");
        let transcript = b.state_dir.join("transcript");
        let stream = provision::build(&provision::ProvisionInput {
            plan,
            ca_cert_pem: &ca_cert,
            transcript: plan.resume.then_some(transcript.as_path()),
            mtime: self.now,
        })?;
        let exec = docker([
            "exec",
            "-i",
            "-u",
            "root",
            b.names.agent_container.as_str(),
            "sh",
            "-c",
            provision::root_script().as_str(),
        ])
        .stdin(stream);
        check(self.runner, &exec)?;
        self.check_interrupt()?;
        // Provider checks (e.g. `codex login status` with forwarded credentials): the bottle
        // is refused rather than handed to an agent that cannot work.
        for cmd in &plan.provider.verify {
            let spec = exec_spec(&b.names.agent_container, cmd, false);
            let out = self.runner.run(&spec)?;
            if !out.success() {
                return Err(DockerError::Refused(format!(
                    "`{}` failed in the bottle ({}); check the provider login on the host",
                    cmd.join(" "),
                    out.stderr_str()
                        .trim()
                        .lines()
                        .last()
                        .unwrap_or("no output")
                )));
            }
        }
        Ok(())
    }

    /// The compose file for the compose flavour in use (v1 has another shape).
    fn render_compose(&self, plan: &BottlePlan, b: &Bottle) -> String {
        let input = compose_input(
            plan,
            &b.names,
            &self.agent_image,
            &self.sidecar_image,
            &b.state_dir,
            self.compose.get().v1,
        );
        crate::yaml::to_yaml_string(&compose::render(&input))
    }

    /// `compose up -d` with the secrets in the child's environment only.
    fn compose_up(&self, plan: &BottlePlan, b: &Bottle) -> Result<(), DockerError> {
        let compose = self.compose.get();
        let args: &[&str] = if compose.v1 {
            &["up", "-d"]
        } else {
            &["up", "-d", "--no-build"]
        };
        let mut up = compose.spec(&b.names.project, &b.compose_file, args);
        for (k, v) in secret_env(plan) {
            up = up.secret_env(k, v);
        }
        check(self.runner, &up)?;
        Ok(())
    }

    /// The interactive session: `docker exec -it` as the agent user in the workspace.
    pub fn session(&self, plan: &BottlePlan, b: &Bottle, tty: bool) -> Result<i32, DockerError> {
        let spec = exec_spec(&b.names.agent_container, &plan.provider.command, tty);
        Ok(self.runner.run_interactive(&spec)?)
    }

    /// Copy the provider's transcript dir out of the agent into the state dir.
    pub fn snapshot_transcript(&self, plan: &BottlePlan, b: &Bottle) {
        let dest = b.state_dir.join("transcript");
        let _ = std::fs::remove_dir_all(&dest);
        if let Err(e) = std::fs::create_dir_all(&dest) {
            (self.warn)(&format!("cannot create `{}`: {e}", dest.display()));
            return;
        }
        let src = format!(
            "{}:{}/.",
            b.names.agent_container, plan.provider.transcript_dir
        );
        let spec = docker(["cp".to_string(), src, dest.display().to_string()]);
        match self.runner.run(&spec) {
            Ok(o) if o.success() => {}
            Ok(o) => tracing::info!("no transcript copied: {}", o.stderr_str().trim()),
            Err(e) => (self.warn)(&format!("transcript snapshot failed: {e}")),
        }
    }

    /// Undo in reverse order; every step is attempted even when an earlier one failed.
    pub fn teardown(&self, b: &mut Bottle) {
        while let Some(step) = b.undo.pop() {
            match step {
                Undo::ComposeDown { project, file } => {
                    let spec = self.compose.get().spec(
                        &project,
                        &file,
                        &["down", "--volumes", "--remove-orphans", "--timeout", "2"],
                    );
                    match self.runner.run(&spec) {
                        Ok(o) if o.success() => {}
                        Ok(o) => (self.warn)(&format!(
                            "teardown: {}; run `bot-bottle cleanup`",
                            command_error(&spec, &o)
                        )),
                        Err(e) => (self.warn)(&format!("teardown: {e}; run `bot-bottle cleanup`")),
                    }
                }
                Undo::StateDir(dir) => {
                    if !dir.join(crate::state::PRESERVE_MARKER).exists() {
                        if let Err(e) = std::fs::remove_dir_all(&dir) {
                            if e.kind() != std::io::ErrorKind::NotFound {
                                (self.warn)(&format!("cannot remove `{}`: {e}", dir.display()));
                            }
                        }
                    }
                }
            }
        }
    }

    /// Mark the state preserved (non-zero exit, or a pending resume).
    pub fn preserve(&self, b: &Bottle) {
        let marker = b.state_dir.join(crate::state::PRESERVE_MARKER);
        if let Err(e) = std::fs::write(&marker, b"") {
            (self.warn)(&format!("cannot write `{}`: {e}", marker.display()));
        }
    }

    /// The whole launch: create, session, snapshot, preserve on failure, teardown.
    pub fn run(
        &self,
        plan: &BottlePlan,
        pinned: Option<&str>,
        tty: bool,
    ) -> Result<Outcome, DockerError> {
        let mut b = self.create(plan, pinned)?;
        if plan.resume {
            // A resumed bottle's state dir is the preserved one: drop the marker only after
            // a clean exit.
            b.undo.insert(0, Undo::StateDir(b.state_dir.clone()));
        }
        (self.say)(&format!(
            "session: {} (exit the agent to tear the bottle down)",
            plan.provider
                .command
                .first()
                .map(String::as_str)
                .unwrap_or("")
        ));
        let code = match self.session(plan, &b, tty) {
            Ok(c) => c,
            Err(e) => {
                self.teardown(&mut b);
                return Err(e);
            }
        };
        self.snapshot_transcript(plan, &b);
        let preserved = code != 0;
        if preserved {
            self.preserve(&b);
        } else {
            let _ = std::fs::remove_file(b.state_dir.join(crate::state::PRESERVE_MARKER));
        }
        self.teardown(&mut b);
        Ok(Outcome {
            identity: b.names.identity.clone(),
            exit_code: code,
            preserved,
        })
    }
}

/// Run a command in a running bottle as the agent user (`bot-bottle exec`).
pub fn exec_spec(container: &str, command: &[String], tty: bool) -> ProcessSpec {
    let mut args: Vec<String> = vec!["exec".into(), "-i".into()];
    if tty {
        args.push("-t".into());
    }
    args.extend([
        "-u".into(),
        AGENT_USER.into(),
        "-w".into(),
        WORKDIR.into(),
        container.to_string(),
    ]);
    args.extend(command.iter().cloned());
    docker(args)
}
