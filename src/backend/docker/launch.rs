//! The launch sequence (SPEC F-DOCK): names from the plan → state dir → CA → compose file →
//! `compose up` (secrets only in the child's environment) → the sidecar config copied into
//! the bundle through the engine, beside one provisioning stream into the agent → the
//! interactive session → transcript and log snapshot → teardown in reverse order.
//!
//! Every step that creates something pushes its undo first, so a failure, a Ctrl-C or a
//! normal exit all unwind the same stack. A SIGKILL leaves labelled, prefixed resources and
//! an unpreserved state dir, which `cleanup` finds.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::compose::{self, ComposeInput, SIDECAR_CONFIG_DIR, SIDECAR_LOG_DIR, SIDECAR_READY};
use super::provision::{self, AGENT_HOME, AGENT_USER, CA_PATH, SYSTEM_BUNDLE, TarStream, WORKDIR};
use super::{ComposeCmd, DockerError, check, command_error, docker, sidecar_config};
use crate::backend::{Outcome, Prepared, Ui, interrupt, lifecycle};
use crate::plan::{BottlePlan, Names};
use crate::runner::{ProcessSpec, Runner};
use crate::secret::Secret;
use crate::state::{StateDir, TRANSCRIPT_DIR};

/// Loopback port of the relay that forwards to egress inside the agent.
pub(crate) const PROXY_URL: &str = "http://127.0.0.1:9099";
pub(crate) const COMPOSE_FILE: &str = "compose.yaml";
/// Where the bundle's log dir is copied back into the state dir at session end.
pub(crate) const LOGS_DIR: &str = "logs";

/// Agent environment that is not secret: proxy through the relay, CA trust, provider and
/// literal bottle env. Forwarded names are listed separately (their values never touch the
/// compose file).
pub(crate) fn agent_env(plan: &BottlePlan) -> BTreeMap<String, String> {
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

pub(crate) fn compose_input(
    plan: &BottlePlan,
    names: &Names,
    prepared: &Prepared,
    compose_v1: bool,
) -> ComposeInput {
    ComposeInput {
        identity: names.identity.clone(),
        agent_name: plan.agent.clone(),
        backend: plan.backend.as_str().to_string(),
        project: names.project.clone(),
        agent_container: names.agent_container.clone(),
        sidecar_container: names.sidecar_container.clone(),
        internal_network: names.internal_network.clone(),
        egress_network: names.egress_network.clone(),
        agent_image: prepared.agent_image.clone(),
        sidecar_image: prepared.sidecar_image.clone(),
        runtime: plan.runtime.is_runsc().then(|| "runsc".to_string()),
        agent_env: agent_env(plan),
        agent_env_forwarded: plan.env.forwarded.keys().cloned().collect(),
        sidecar_env_forwarded: plan.egress_tokens.keys().cloned().collect(),
        daemons: sidecar_config::daemons(plan),
        // Validated when the plan was resolved; a conflict cannot reach here.
        extra_hosts: crate::plan::git_extra_hosts(&plan.git_upstreams).unwrap_or_default(),
        compose_v1,
        agent_limits: plan.limits.agent,
        sidecar_limits: plan.limits.bundle,
        weakened: plan.weakened,
    }
}

/// The secret environment of the `compose up` child: forwarded bottle env and egress tokens.
pub(crate) fn secret_env(plan: &BottlePlan) -> BTreeMap<String, Secret> {
    let mut env = BTreeMap::new();
    for (k, v) in &plan.env.forwarded {
        env.insert(k.clone(), v.clone());
    }
    for (k, v) in &plan.egress_tokens {
        env.insert(k.clone(), v.clone());
    }
    env
}

/// The sidecar configuration as one tar stream for `docker cp - <bundle>:/`: the config dir,
/// the (empty) log dir, the agent's provisioning stream when given (root-only, into the
/// socket volume, where the agent container's root process picks it up), and last the ready
/// marker the bundle's entrypoint waits for, so the daemons never start, and the agent never
/// provisions, on a half-copied stream.
pub(crate) fn sidecar_config_stream(
    files: &[(String, String, u32)],
    provision: Option<&[u8]>,
    mtime: u64,
) -> Result<Vec<u8>, DockerError> {
    let mut t = TarStream::new(mtime);
    t.dir(SIDECAR_CONFIG_DIR, 0o755)?;
    t.dir(SIDECAR_LOG_DIR, 0o755)?;
    for (name, contents, mode) in files {
        t.file(
            &format!("{SIDECAR_CONFIG_DIR}/{name}"),
            contents.as_bytes(),
            *mode,
        )?;
    }
    if let Some(stream) = provision {
        t.file(provision::PROVISION_TAR, stream, 0o600)?;
    }
    t.file(&format!("{SIDECAR_CONFIG_DIR}/{SIDECAR_READY}"), b"", 0o644)?;
    t.finish()
}

/// `docker cp - <container>:/` with `tar` on stdin: files reach the bundle through the
/// engine, so a remote engine works the same as a local one.
pub(crate) fn copy_in_spec(container: &str, tar: Vec<u8>) -> ProcessSpec {
    docker(["cp", "-", &format!("{container}:/")]).stdin(tar)
}

/// Replace the routes file of a running bundle; egress notices the new content and swaps its
/// policy (live reload). `routes` is the rendered routes document.
pub fn update_routes(
    runner: &dyn Runner,
    sidecar_container: &str,
    routes: &str,
    mtime: u64,
) -> Result<(), DockerError> {
    let mut t = TarStream::new(mtime);
    t.file(
        &format!("{SIDECAR_CONFIG_DIR}/{}", crate::sidecar::wire::ROUTES_FILE),
        routes.as_bytes(),
        0o644,
    )?;
    check(runner, &copy_in_spec(sidecar_container, t.finish()?))?;
    Ok(())
}

/// The routes file a running bundle's egress has now (what [`update_routes`] last wrote, or
/// the launch's), read through the engine.
pub fn read_routes(runner: &dyn Runner, sidecar_container: &str) -> Result<String, DockerError> {
    let path = format!("{SIDECAR_CONFIG_DIR}/{}", crate::sidecar::wire::ROUTES_FILE);
    let out = check(runner, &docker(["exec", sidecar_container, "cat", &path]))?;
    Ok(out.stdout_str())
}

/// The bundle's log dir, copied through the engine into the state dir's [`LOGS_DIR`] (every
/// backend runs its bundle in Docker). A bundle without logs is noted, not an error.
pub(crate) fn snapshot_bundle_logs(
    runner: &dyn Runner,
    sidecar_container: &str,
    state: &StateDir,
    ui: &dyn Ui,
) {
    match copy_out(runner, sidecar_container, SIDECAR_LOG_DIR) {
        Ok(tar) => {
            if let Err(e) = state.replace_from_tar(LOGS_DIR, &tar) {
                ui.warn(&format!("log snapshot failed: {e}"));
            }
        }
        Err(e) => tracing::info!("no bundle logs copied: {e}"),
    }
}

/// `docker cp <container>:<dir> -`: the directory as a tar stream on stdout.
fn copy_out(runner: &dyn Runner, container: &str, dir: &str) -> Result<Vec<u8>, DockerError> {
    let spec = docker(["cp".to_string(), format!("{container}:{dir}"), "-".into()]);
    Ok(check(runner, &spec)?.stdout)
}

/// The bundle's audit lines so far (`egress-audit.jsonl`), read through the engine.
pub fn audit_lines(
    runner: &dyn Runner,
    sidecar_container: &str,
) -> Result<Vec<String>, DockerError> {
    let spec = docker([
        "exec",
        sidecar_container,
        "cat",
        &format!("{SIDECAR_LOG_DIR}/{}", sidecar_config::EGRESS_AUDIT_LOG),
    ]);
    let out = check(runner, &spec)?;
    Ok(out
        .stdout_str()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect())
}

/// What the launch undoes, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Undo {
    ComposeDown {
        project: String,
        file: PathBuf,
    },
    /// Remove the state dir unless it carries the preserve marker.
    StateDir(StateDir),
}

/// Everything a launch needs besides the plan.
pub(crate) struct Launcher<'a> {
    pub runner: &'a dyn Runner,
    /// Starts as [`ComposeCmd::assume_v2`]; switches to v1 when `docker compose` is missing.
    pub compose: std::cell::Cell<ComposeCmd>,
    pub(crate) prepared: &'a Prepared,
    pub(crate) ui: &'a dyn Ui,
}

/// The live part of a launch: what was created, for teardown.
pub struct Bottle {
    pub names: Names,
    pub state: StateDir,
    pub(crate) compose_file: PathBuf,
    undo: Vec<Undo>,
    /// The one copy that finishes the bottle after `up` (the bundle's config and the agent's
    /// provisioning stream), when it runs beside the session's start instead of before it.
    setup: Option<ProcessSpec>,
    /// The agent container stopped under the session (see [`Launcher::session`]).
    stopped: bool,
}

fn state_err(e: crate::state::StateError) -> DockerError {
    DockerError::Other(e.to_string())
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
    /// far is removed before the error is returned. The names of each attempt come from the
    /// plan ([`Names::attempt`]).
    pub(crate) fn create(&self, plan: &BottlePlan) -> Result<Bottle, DockerError> {
        // Only a pinned or resumed name is checked up front (it is never retried). Random
        // identities rarely collide; when one does, `compose up` reports it and the loop
        // below retries, which saves an engine call on every start.
        let fixed = plan.names.container_pinned || plan.names.identity_pinned;
        let taken = if fixed {
            self.taken_names()?
        } else {
            BTreeSet::new()
        };
        let mut attempt = 1;
        loop {
            self.check_interrupt()?;
            let Some(names) = plan.names.attempt(attempt) else {
                return Err(DockerError::NoFreeName(plan.identity.clone()));
            };
            if taken.contains(&names.agent_container) || taken.contains(&names.sidecar_container) {
                if plan.names.container_pinned {
                    return Err(DockerError::PinnedNameTaken(names.agent_container));
                }
                return Err(DockerError::Refused(format!(
                    "bottle `{}` is already running; attach with `bot-bottle exec {} -- …` or stop it with `bot-bottle cleanup`",
                    names.identity, names.identity
                )));
            }
            let mut bottle = Bottle {
                state: StateDir::planned(&plan.root, &names.identity),
                compose_file: PathBuf::new(),
                names,
                undo: Vec::new(),
                setup: None,
                stopped: false,
            };
            match self.bring_up(plan, &mut bottle) {
                Ok(()) => return Ok(bottle),
                Err(e) => {
                    let conflict = matches!(&e, DockerError::Command { stderr, .. } if stderr.contains("already in use"));
                    self.teardown(&mut bottle);
                    if conflict && plan.names.container_pinned {
                        return Err(DockerError::PinnedNameTaken(bottle.names.agent_container));
                    }
                    if conflict && plan.names.attempt(attempt + 1).is_some() {
                        self.ui.say(&format!(
                            "name `{}` was taken meanwhile; trying the next one",
                            bottle.names.agent_container
                        ));
                        attempt += 1;
                        continue;
                    }
                    return Err(e);
                }
            }
        }
    }

    fn bring_up(&self, plan: &BottlePlan, b: &mut Bottle) -> Result<(), DockerError> {
        let (state, created) =
            lifecycle::open_state(plan, &b.names.identity, &b.names.project).map_err(state_err)?;
        if created {
            b.undo.push(Undo::StateDir(state.clone()));
        }
        b.state = state;
        self.check_interrupt()?;

        let (ca_cert, ca_key) = crate::sidecar::egress::ca::mint_bottle_ca()
            .map_err(|e| DockerError::Other(format!("cannot mint the bottle CA: {e}")))?;
        tracing::debug!("bottle CA minted");
        // The config (CA key included) never touches the host disk: it goes to the bundle
        // through the engine after `up`.
        let extra_ca = plan.extra_ca_pem();
        let mut files = sidecar_config::files(plan, &ca_cert, &ca_key, extra_ca.as_deref());
        files.extend(sidecar_config::git_gate_files(plan)?);
        let transcript = b.state.transcript_dir();
        let stream = provision::build(&provision::ProvisionInput {
            plan,
            ca_cert_pem: &ca_cert,
            transcript: plan.resume.then_some(transcript.as_path()),
        })?;
        let config = sidecar_config_stream(&files, Some(&stream), plan.started_at)?;
        drop(stream);
        tracing::debug!("config and provisioning packed ({} bytes)", config.len());
        b.state
            .write_file("ca.pem", &ca_cert, Some(0o644))
            .map_err(state_err)?;

        b.compose_file = b
            .state
            .write_file(COMPOSE_FILE, self.render_compose(plan, b), Some(0o644))
            .map_err(state_err)?;
        self.check_interrupt()?;

        self.ui
            .say(&format!("starting bottle `{}`", b.names.identity));
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
                b.state
                    .write_file(COMPOSE_FILE, self.render_compose(plan, b), Some(0o644))
                    .map_err(state_err)?;
                self.compose_up(plan, b)?;
            }
            other => other?,
        }
        self.check_interrupt()?;

        self.ui.say("provisioning");
        let setup = copy_in_spec(&b.names.sidecar_container, config);
        if plan.provider.verify.is_empty() {
            // Nothing has to run between provisioning and the session: the session starts
            // beside the copy, gated on provisioning's marker ([`provision::gated_command`]).
            b.setup = Some(setup);
            return Ok(());
        }
        check(self.runner, &setup)?;
        self.check_interrupt()?;
        // Provider checks (e.g. `codex login status` with forwarded credentials): the bottle
        // is refused rather than handed to an agent that cannot work. Gated like the
        // session, so they run on a provisioned home.
        for cmd in &plan.provider.verify {
            let spec = docker_exec(
                &b.names.agent_container,
                AGENT_HOME,
                &provision::gated_command(cmd),
                false,
            );
            let out = self.runner.run(&spec)?;
            if !out.success() {
                return Err(DockerError::Refused(lifecycle::verify_refusal(cmd, &out)));
            }
        }
        Ok(())
    }

    /// The compose file for the compose flavour in use (v1 has another shape).
    fn render_compose(&self, plan: &BottlePlan, b: &Bottle) -> String {
        let input = compose_input(plan, &b.names, self.prepared, self.compose.get().v1);
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

    /// Finish a created bottle without starting a session: the bundle's config copy and the
    /// agent's provisioning (`doctor` probes a bottle that runs no provider).
    pub(crate) fn finish_without_session(&self, b: &mut Bottle) -> Result<(), DockerError> {
        if let Some(setup) = b.setup.take() {
            check(self.runner, &setup)?;
        }
        // The agent container provisions itself once the copy is in: wait for it the way a
        // session would, with `true` as the command.
        let wait = docker_exec(
            &b.names.agent_container,
            AGENT_HOME,
            &provision::gated_command(&["true".to_string()]),
            false,
        );
        check(self.runner, &wait)?;
        Ok(())
    }

    /// The interactive session: `docker exec -it` as the agent user in the workspace. When
    /// setup is still pending it runs beside the session's start; if it fails, the agent
    /// container is stopped, which ends the waiting session, and the setup error is returned.
    /// `docker wait` on the agent watches the session: under gVisor an exec outlives the
    /// container it ran in, so when the agent is stopped (the dashboard's stop, `docker
    /// stop`) the session is ended here and the bottle counts as stopped.
    pub(crate) fn session(
        &self,
        plan: &BottlePlan,
        b: &mut Bottle,
        tty: bool,
    ) -> Result<i32, DockerError> {
        let gated = docker_exec(
            &b.names.agent_container,
            AGENT_HOME,
            &provision::gated_command(&plan.provider.command),
            tty,
        );
        let container = b.names.agent_container.as_str();
        let watch = docker(["wait", container]);
        let session = |runner: &dyn Runner| runner.run_interactive_watched(&gated, &watch);
        let watched = match b.setup.take() {
            None => session(self.runner)?,
            Some(setup) => {
                let runner = self.runner;
                let (code, set_up) = std::thread::scope(|scope| {
                    let set_up = scope.spawn(|| {
                        let r = check(runner, &setup);
                        if r.is_err() {
                            let _ = runner.run(&docker(["kill", "--signal", "KILL", container]));
                        }
                        r
                    });
                    let code = session(self.runner);
                    let set_up = set_up
                        .join()
                        .unwrap_or_else(|_| Err(DockerError::Other("config copy failed".into())));
                    (code, set_up)
                });
                set_up?;
                code?
            }
        };
        b.stopped = watched.fired;
        let code = watched.code;
        if code == provision::PROVISION_FAILED_EXIT {
            // The gate's code, or the provider's own? Only a failure file tells.
            let spec = docker(["exec", container, "cat", provision::PROVISION_FAILED]);
            if let Ok(out) = self.runner.run(&spec) {
                if out.success() {
                    return Err(DockerError::Refused(format!(
                        "the bottle could not be provisioned: {}; check free space on the engine and that the agent image has `sh` and `tar`",
                        out.stdout_str()
                            .trim()
                            .lines()
                            .last()
                            .unwrap_or("no output")
                    )));
                }
            }
        }
        Ok(code)
    }

    /// Copy the provider's transcript dir out of the agent, and the bundle's logs out of the
    /// bundle, into the state dir (both through the engine).
    pub(crate) fn snapshot(&self, plan: &BottlePlan, b: &Bottle) {
        let transcript = copy_out(
            self.runner,
            &b.names.agent_container,
            &plan.provider.transcript_dir,
        );
        match transcript {
            Ok(tar) => {
                if let Err(e) = b.state.replace_from_tar(TRANSCRIPT_DIR, &tar) {
                    self.ui.warn(&format!("transcript snapshot failed: {e}"));
                }
            }
            Err(DockerError::Command { stderr, .. }) => {
                tracing::info!("no transcript copied: {stderr}");
            }
            Err(e) => self.ui.warn(&format!("transcript snapshot failed: {e}")),
        }
        snapshot_bundle_logs(self.runner, &b.names.sidecar_container, &b.state, self.ui);
    }

    /// Undo in reverse order; every step is attempted even when an earlier one failed.
    pub(crate) fn teardown(&self, b: &mut Bottle) {
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
                        Ok(o) => self.ui.warn(&format!(
                            "teardown: {}; run `bot-bottle cleanup`",
                            command_error(&spec, &o)
                        )),
                        Err(e) => self
                            .ui
                            .warn(&format!("teardown: {e}; run `bot-bottle cleanup`")),
                    }
                }
                Undo::StateDir(state) => {
                    if let Err(e) = state.remove_unless_preserved() {
                        self.ui.warn(&e.to_string());
                    }
                }
            }
        }
    }

    /// The whole launch: create, session, snapshot, preserve on failure, teardown.
    pub(crate) fn run(&self, plan: &BottlePlan, tty: bool) -> Result<Outcome, DockerError> {
        lifecycle::run(self, plan, tty)
    }
}

impl lifecycle::LiveBottle for Bottle {
    fn identity(&self) -> &str {
        &self.names.identity
    }
    fn state(&self) -> &StateDir {
        &self.state
    }
    fn keep_state_until_the_end(&mut self) {
        self.undo.insert(0, Undo::StateDir(self.state.clone()));
    }
    fn stopped(&self) -> bool {
        self.stopped
    }
}

impl lifecycle::Steps for Launcher<'_> {
    type Bottle = Bottle;
    type Error = DockerError;
    fn ui(&self) -> &dyn Ui {
        self.ui
    }
    fn create(&self, plan: &BottlePlan) -> Result<Bottle, DockerError> {
        Launcher::create(self, plan)
    }
    fn session(&self, plan: &BottlePlan, b: &mut Bottle, tty: bool) -> Result<i32, DockerError> {
        Launcher::session(self, plan, b, tty)
    }
    fn snapshot(&self, plan: &BottlePlan, b: &Bottle) {
        Launcher::snapshot(self, plan, b);
    }
    fn teardown(&self, b: &mut Bottle) {
        Launcher::teardown(self, b);
    }
}

/// Run a command in a running bottle as the agent user (`bot-bottle exec`).
pub(crate) fn exec_spec(container: &str, command: &[String], tty: bool) -> ProcessSpec {
    docker_exec(container, WORKDIR, command, tty)
}

/// `docker exec -i [-t] -u node -w <dir> <container> <command…>`.
fn docker_exec(container: &str, dir: &str, command: &[String], tty: bool) -> ProcessSpec {
    let mut args: Vec<String> = vec!["exec".into(), "-i".into()];
    if tty {
        args.push("-t".into());
    }
    args.extend([
        "-u".into(),
        AGENT_USER.into(),
        "-w".into(),
        dir.into(),
        container.to_string(),
    ]);
    args.extend(command.iter().cloned());
    docker(args)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::testutil::{agent, bottle, host, manifest};
    use crate::plan::{BackendKind, StartOptions};
    use crate::runner::{Output, RecordingRunner};

    struct Quiet;
    impl Ui for Quiet {
        fn say(&self, _: &str) {}
        fn warn(&self, _: &str) {}
    }

    fn plan_in(root: &std::path::Path) -> BottlePlan {
        let mut m = manifest(vec![bottle("dev")], vec![agent("reviewer", "dev")]);
        m.root = root.to_path_buf();
        let opts = StartOptions {
            gvisor: Some(false),
            ..StartOptions::fresh(BackendKind::Docker)
        };
        crate::plan::resolve(&m, "reviewer", &opts, &host()).unwrap()
    }

    fn tar_mtimes(tar: &[u8]) -> Vec<u64> {
        tar::Archive::new(tar)
            .entries()
            .unwrap()
            .map(|e| e.unwrap().header().mtime().unwrap())
            .collect()
    }

    /// The launch takes its time from the plan, never from the clock: the same plan gives
    /// the same metadata and streams, whenever it runs.
    #[test]
    fn the_start_time_comes_from_the_plan() {
        let root = tempfile::tempdir().unwrap();
        let mut plan = plan_in(root.path());
        plan.started_at = 1_000_000_000; // 2001: far from any clock this test runs under
        // A non-zero session keeps the state dir for inspection.
        let runner = RecordingRunner::new(|spec| {
            if spec.argv().contains(&"-u") && spec.argv().contains(&AGENT_USER) {
                Output::failed(3, "")
            } else {
                Output::default()
            }
        });
        let prepared = Prepared {
            agent_image: "a:1".into(),
            sidecar_image: "s:1".into(),
        };
        let launcher = Launcher {
            runner: &runner,
            compose: std::cell::Cell::new(ComposeCmd::assume_v2()),
            prepared: &prepared,
            ui: &Quiet,
        };
        let outcome = launcher.run(&plan, false).unwrap();
        assert_eq!(outcome.exit_code, 3);
        assert!(outcome.preserved);
        let meta = crate::state::load_metadata(root.path(), &plan.identity).unwrap();
        assert_eq!(meta.started_at, "2001-09-09T01:46:40Z");
        let calls = runner.calls();
        let streams: Vec<&Vec<u8>> = calls.iter().filter_map(|c| c.stdin.as_ref()).collect();
        assert_eq!(
            streams.len(),
            1,
            "one copy: sidecar config and provisioning"
        );
        let mut archive = tar::Archive::new(streams[0].as_slice());
        let mut inner = Vec::new();
        for e in archive.entries().unwrap() {
            let mut e = e.unwrap();
            if e.path().unwrap().ends_with(".provision.tar") {
                std::io::Read::read_to_end(&mut e, &mut inner).unwrap();
            }
        }
        assert!(!inner.is_empty(), "no provisioning stream in the copy");
        for s in [streams[0].as_slice(), inner.as_slice()] {
            let mtimes = tar_mtimes(s);
            assert!(!mtimes.is_empty());
            assert!(mtimes.iter().all(|m| *m == 1_000_000_000), "{mtimes:?}");
        }
    }

    #[test]
    fn a_taken_name_retries_under_the_plans_next_identity() {
        let root = tempfile::tempdir().unwrap();
        let plan = plan_in(root.path());
        let ups = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let seen = ups.clone();
        let runner = RecordingRunner::new(move |spec| {
            let argv = spec.argv();
            if argv.contains(&"up") && seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                Output::failed(1, "Conflict. The container name is already in use")
            } else {
                Output::default()
            }
        });
        let prepared = Prepared {
            agent_image: "a:1".into(),
            sidecar_image: "s:1".into(),
        };
        let launcher = Launcher {
            runner: &runner,
            compose: std::cell::Cell::new(ComposeCmd::assume_v2()),
            prepared: &prepared,
            ui: &Quiet,
        };
        let outcome = launcher.run(&plan, false).unwrap();
        let second = plan.names.attempt(2).unwrap();
        assert_eq!(outcome.identity, second.identity);
        let projects: Vec<String> = runner
            .calls()
            .iter()
            .filter(|c| c.argv().contains(&"up"))
            .map(|c| c.argv()[3].to_string())
            .collect();
        assert_eq!(projects, [plan.names.project.clone(), second.project]);
        // Both attempts' state dirs are gone: the first by its teardown, the second at exit.
        assert!(crate::state::list(root.path()).unwrap().is_empty());
    }
}
