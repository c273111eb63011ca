//! The smolmachines launch sequence: alias → state dir → sidecar bundle (Docker, published
//! on the alias) → agent artifact (cache or pack) → `machine create` with the alias /32 as
//! the only allowed CIDR (plus the database patch where smolvm drops it) → `machine start`
//! → ownership repair → one provisioning stream through `machine exec` → provider checks →
//! the session with terminal-size forwarding → transcript (a tar stream from `machine exec`)
//! and bundle logs snapshot → teardown in reverse order.
//!
//! Every step that creates something pushes its undo first, so a failure, a Ctrl-C or a
//! normal exit unwind the same stack, as in the Docker backend's launch.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::pack::{self, Artifact, Registry};
use super::{LABEL_ALIAS, LABEL_BACKEND_KV, SmolError, alias, bundle, check, version, vm};
use crate::backend::docker::{ComposeCmd, discover, launch as docker_launch, provision};
use crate::backend::{Outcome, Prepared, Ui, interrupt, lifecycle};
use crate::plan::{BottlePlan, PREFIX};
use crate::runner::{ProcessSpec, Runner};
use crate::state::{StateDir, TRANSCRIPT_DIR};

pub(crate) const COMPOSE_FILE: &str = "compose.yaml";
/// How often, and how long apart, readiness is asked after `machine start`.
const READY_TRIES: u32 = 50;
const READY_PAUSE: Duration = Duration::from_millis(200);
const REGISTRY_TRIES: u32 = 50;

/// Facts about the host the launch needs, resolved by the caller.
#[derive(Debug, Clone)]
pub(crate) struct SmolHost {
    /// macOS needs loopback aliases added; elsewhere `127.0.0.0/8` is routed already.
    pub(crate) macos: bool,
    /// `<cache>/bot-bottle/smolmachines`: artifacts and the allocation lock.
    pub(crate) cache_dir: PathBuf,
    /// smolvm's machine database (for the allowlist workaround).
    pub(crate) smolvm_db: PathBuf,
    /// From `smolvm --version`; `None` when unreadable.
    pub version: Option<version::SmolvmVersion>,
}

/// What the launch undoes, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Undo {
    /// A command that removes something (compose down, machine stop/delete, registry rm).
    Run(ProcessSpec),
    RemoveFile(PathBuf),
    /// Remove the state dir unless it carries the preserve marker.
    StateDir(StateDir),
}

/// What the caller passes in: everything that is not the plan.
pub(crate) struct Launcher<'a> {
    pub runner: &'a dyn Runner,
    pub host: &'a SmolHost,
    pub compose: ComposeCmd,
    pub(crate) prepared: &'a Prepared,
    pub(crate) ui: &'a dyn Ui,
}

/// The live part of a launch.
pub(crate) struct Bottle {
    pub identity: String,
    pub machine: String,
    pub alias: Ipv4Addr,
    pub state: StateDir,
    undo: Vec<Undo>,
}

/// The VM's name: `bot-bottle-<identity>`.
pub(crate) fn machine_name(identity: &str) -> String {
    format!("{PREFIX}{identity}")
}

/// The agent's environment in the VM: the Docker backend's, with the proxy pointed at the
/// bundle on the alias instead of the in-container relay.
pub(crate) fn agent_env(plan: &BottlePlan, alias: Ipv4Addr) -> BTreeMap<String, String> {
    let mut env = docker_launch::agent_env(plan);
    let proxy = format!("http://{alias}:{}", bundle::EGRESS_PORT);
    for k in ["HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"] {
        env.insert(k.to_string(), proxy.clone());
    }
    env
}

/// The proxy environment of a bottle's VM (for `exec` into a running bottle).
pub(crate) fn proxy_env(identity: &str, alias: Ipv4Addr) -> BTreeMap<String, String> {
    let proxy = format!("http://{alias}:{}", bundle::EGRESS_PORT);
    let mut env = BTreeMap::new();
    for k in ["HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"] {
        env.insert(k.to_string(), proxy.clone());
    }
    for k in ["NO_PROXY", "no_proxy"] {
        env.insert(k.to_string(), "localhost,127.0.0.1".to_string());
    }
    env.insert("BOT_BOTTLE_IDENTITY".into(), identity.to_string());
    env
}

/// Aliases carried by running smolmachines bundles (from `docker ps` labels).
pub(crate) fn aliases_in_use(ps_json: &str) -> BTreeSet<Ipv4Addr> {
    discover::parse_ps(ps_json)
        .iter()
        .filter_map(|c| c.labels.get(LABEL_ALIAS))
        .filter_map(|a| a.parse().ok())
        .collect()
}

/// `docker ps` of running smolmachines bundles.
pub(crate) fn bundles_spec() -> ProcessSpec {
    ProcessSpec::new("docker").args([
        "ps",
        "--filter",
        &format!("label={LABEL_BACKEND_KV}"),
        "--format",
        "{{json .}}",
    ])
}

impl Launcher<'_> {
    fn check_interrupt(&self) -> Result<(), SmolError> {
        if interrupt::interrupted() {
            Err(SmolError::Interrupted)
        } else {
            Ok(())
        }
    }

    /// Create the bottle; on failure everything created so far is removed first.
    pub(crate) fn create(&self, plan: &BottlePlan) -> Result<Bottle, SmolError> {
        super::check_plan(plan)?;
        let mut b = Bottle {
            identity: plan.identity.clone(),
            machine: machine_name(&plan.identity),
            alias: Ipv4Addr::LOCALHOST,
            state: StateDir::planned(&plan.root, &plan.identity),
            undo: Vec::new(),
        };
        match self.bring_up(plan, &mut b) {
            Ok(()) => Ok(b),
            Err(e) => {
                self.teardown(&mut b);
                Err(e)
            }
        }
    }

    fn bring_up(&self, plan: &BottlePlan, b: &mut Bottle) -> Result<(), SmolError> {
        // The lock covers reading the aliases in use until this bundle carries its own.
        let lock_path = self.host.cache_dir.join("alias.lock");
        let lock =
            alias::AllocationLock::acquire(&lock_path).map_err(|e| SmolError::io(&lock_path, e))?;
        let ps = check(self.runner, &bundles_spec())?;
        b.alias =
            alias::allocate(&aliases_in_use(&ps.stdout_str())).ok_or(SmolError::PoolExhausted)?;
        if self.host.macos {
            self.ensure_aliases()?;
        }
        self.check_interrupt()?;

        self.state_dir(plan, b)?;
        let (ca_cert, ca_key) = crate::sidecar::egress::ca::mint_bottle_ca()
            .map_err(|e| SmolError::Refused(format!("cannot mint the bottle CA: {e}")))?;
        // The bundle's config (CA key included) goes in through the engine after `up`, never
        // to the host disk, as in the Docker backend.
        let extra_ca = plan.extra_ca_pem();
        let files = bundle::files(plan, &ca_cert, &ca_key, extra_ca.as_deref());
        let config = docker_launch::sidecar_config_stream(&files, None, plan.started_at)?;
        b.state
            .write_file("ca.pem", &ca_cert, Some(0o644))
            .map_err(state_err)?;
        let input = bundle::compose_input(plan, self.prepared, self.compose.v1, b.alias);
        let compose_file = b
            .state
            .write_file(
                COMPOSE_FILE,
                crate::yaml::to_yaml_string(&bundle::render(&input, b.alias)),
                Some(0o644),
            )
            .map_err(state_err)?;
        self.check_interrupt()?;

        self.ui.say(&format!(
            "starting the sidecar bundle of `{}` on {}",
            b.identity, b.alias
        ));
        let project = plan.names.project.as_str();
        b.undo.push(Undo::Run(self.compose.spec(
            project,
            &compose_file,
            &["down", "--volumes", "--remove-orphans", "--timeout", "2"],
        )));
        let args: &[&str] = if self.compose.v1 {
            &["up", "-d"]
        } else {
            &["up", "-d", "--no-build"]
        };
        let mut up = self.compose.spec(project, &compose_file, args);
        // Egress tokens reach the bundle through the compose child's environment only.
        for (k, v) in &plan.egress_tokens {
            up = up.secret_env(k.clone(), v.clone());
        }
        check(self.runner, &up)?;
        drop(lock);
        check(
            self.runner,
            &docker_launch::copy_in_spec(&plan.names.sidecar_container, config),
        )?;
        self.check_interrupt()?;

        let payload = self.ensure_artifact(plan)?;
        self.check_interrupt()?;

        let cidr = alias::allow_cidr(b.alias);
        self.ui
            .say(&format!("creating VM `{}` (allowed: {cidr})", b.machine));
        b.undo.push(Undo::Run(vm::delete_spec(&b.machine)));
        check(
            self.runner,
            &vm::create_spec(&b.machine, &payload, &cidr, &plan.limits.agent),
        )?;
        if version::needs_allowlist_patch(self.host.version) {
            self.patch_allowlist(&b.machine, &cidr)?;
        }
        self.check_interrupt()?;
        b.undo.push(Undo::Run(vm::stop_spec(&b.machine)));
        check(self.runner, &vm::start_spec(&b.machine))?;
        self.wait_ready(&b.machine)?;
        check(
            self.runner,
            &vm::exec_root_spec(&b.machine, &["sh", "-c", vm::INIT_SCRIPT], false),
        )?;
        self.check_interrupt()?;

        self.ui.say("provisioning");
        let transcript = b.state.transcript_dir();
        let stream = provision::build(&provision::ProvisionInput {
            plan,
            ca_cert_pem: &ca_cert,
            transcript: plan.resume.then_some(transcript.as_path()),
        })?;
        let script = provision::root_script();
        check(
            self.runner,
            &vm::exec_root_spec(&b.machine, &["sh", "-c", script.as_str()], true).stdin(stream),
        )?;
        self.check_interrupt()?;
        let env = agent_env(plan, b.alias);
        for cmd in &plan.provider.verify {
            let out = self
                .runner
                .run(&vm::agent_exec_spec(&b.machine, &env, cmd, false))?;
            if !out.success() {
                return Err(SmolError::Refused(lifecycle::verify_refusal(cmd, &out)));
            }
        }
        Ok(())
    }

    fn state_dir(&self, plan: &BottlePlan, b: &mut Bottle) -> Result<(), SmolError> {
        let (state, created) =
            lifecycle::open_state(plan, &b.identity, &plan.names.project).map_err(state_err)?;
        if created {
            b.undo.push(Undo::StateDir(state.clone()));
        }
        b.state = state;
        Ok(())
    }

    /// macOS: add every missing pool alias with one sudo call (they last until reboot).
    fn ensure_aliases(&self) -> Result<(), SmolError> {
        let out = check(self.runner, &alias::show_lo0_spec())?;
        let missing = alias::missing_on_lo0(&out.stdout_str());
        if missing.is_empty() {
            return Ok(());
        }
        self.ui.say(&format!(
            "adding {} loopback aliases on lo0 (127.0.0.16-127.0.0.31) so each bottle's VM can reach only its own bundle; sudo asks once, they last until reboot",
            missing.len()
        ));
        let code = self
            .runner
            .run_interactive(&alias::add_aliases_spec(&missing))?;
        if code != 0 {
            return Err(SmolError::AliasSetup(code));
        }
        Ok(())
    }

    /// The smolvm versions that drop `--allow-cidr`: write it into the machine database
    /// before the VM starts, and refuse if that cannot be done.
    fn patch_allowlist(&self, machine: &str, cidr: &str) -> Result<(), SmolError> {
        let db = &self.host.smolvm_db;
        let shown = self
            .host
            .version
            .map_or_else(|| "(unknown version)".to_string(), |v| v.to_string());
        let fail = |reason: String| SmolError::Allowlist {
            version: shown.clone(),
            db: db.clone(),
            reason,
        };
        if !db.is_file() {
            return Err(fail("does not exist".into()));
        }
        tracing::info!(
            "smolvm {shown}: writing the allowlist of `{machine}` into {}",
            db.display()
        );
        let out = self
            .runner
            .run(&version::patch_spec(db, machine, &[cidr.to_string()]))
            .map_err(|e| fail(format!("could not be updated ({e})")))?;
        if !out.success() {
            return Err(fail(format!(
                "could not be updated ({})",
                out.stderr_str().trim()
            )));
        }
        if !version::patched_one_row(&out.stdout_str()) {
            return Err(fail(format!("has no row for `{machine}`")));
        }
        Ok(())
    }

    fn wait_ready(&self, machine: &str) -> Result<(), SmolError> {
        let probe = vm::exec_root_spec(machine, &["true"], false);
        for _ in 0..READY_TRIES {
            self.check_interrupt()?;
            if self.runner.run(&probe)?.success() {
                return Ok(());
            }
            std::thread::sleep(READY_PAUSE);
        }
        Err(SmolError::NotReady(machine.to_string()))
    }

    /// The agent image as a smolmachine payload: from the cache when this image id was
    /// packed before, else packed now through a throwaway registry.
    fn ensure_artifact(&self, plan: &BottlePlan) -> Result<PathBuf, SmolError> {
        let image = &self.prepared.agent_image;
        let out = check(self.runner, &pack::image_id_spec(image))?;
        let id = out.stdout_str();
        let key = pack::cache_key(&id).ok_or_else(|| SmolError::ImageId {
            image: image.clone(),
            got: id.trim().to_string(),
        })?;
        let cached = Artifact::cached(&self.host.cache_dir, &key);
        if cached.payload.is_file() {
            tracing::info!("agent artifact cached: {}", cached.payload.display());
            return Ok(cached.payload);
        }
        self.ui
            .say(&format!("packing `{}` for smolvm (once per image)", image));
        std::fs::create_dir_all(&self.host.cache_dir)
            .map_err(|e| SmolError::io(&self.host.cache_dir, e))?;
        let mut undo = Vec::new();
        let result = self.pack(plan, &key, &cached, &mut undo);
        self.unwind(&mut undo);
        result.map(|()| cached.payload)
    }

    fn pack(
        &self,
        plan: &BottlePlan,
        key: &str,
        cached: &Artifact,
        undo: &mut Vec<Undo>,
    ) -> Result<(), SmolError> {
        let reg = Registry::for_identity(&plan.identity);
        undo.push(Undo::Run(reg.network_remove()));
        check(self.runner, &reg.network_create(&plan.identity))?;
        undo.push(Undo::Run(reg.remove()));
        check(self.runner, &reg.run(&plan.identity))?;
        let port_out = check(self.runner, &reg.port())?;
        let port = pack::parse_port(&port_out.stdout_str()).ok_or_else(|| {
            SmolError::Refused(format!(
                "`docker port {}` named no port (`{}`)",
                reg.container,
                port_out.stdout_str().trim()
            ))
        })?;
        let mut ready = false;
        for _ in 0..REGISTRY_TRIES {
            self.check_interrupt()?;
            if self.runner.run(&reg.ready())?.success() {
                ready = true;
                break;
            }
            std::thread::sleep(READY_PAUSE);
        }
        if !ready {
            return Err(SmolError::Refused(format!(
                "the local registry `{}` did not answer; see `docker logs {}`",
                reg.container, reg.container
            )));
        }
        let tarball = self
            .host
            .cache_dir
            .join(format!(".{key}.{}.image.tar", plan.identity));
        undo.push(Undo::RemoveFile(tarball.clone()));
        check(
            self.runner,
            &pack::save_spec(&self.prepared.agent_image, &tarball),
        )?;
        check(self.runner, &reg.push(&tarball, key))?;
        self.check_interrupt()?;
        let partial = Artifact::partial(&self.host.cache_dir, key, &plan.identity);
        undo.push(Undo::RemoveFile(partial.stub.clone()));
        undo.push(Undo::RemoveFile(partial.payload.clone()));
        check(self.runner, &pack::pack_spec(port, key, &partial))?;
        if !partial.payload.is_file() {
            return Err(SmolError::Refused(format!(
                "`smolvm pack create` wrote no `{}`",
                partial.payload.display()
            )));
        }
        // Payload last: its presence is what marks the cache entry complete.
        if partial.stub.is_file() {
            rename(&partial.stub, &cached.stub)?;
        }
        rename(&partial.payload, &cached.payload)
    }

    /// The interactive session, with the terminal size forwarded while it runs.
    pub(crate) fn session(
        &self,
        plan: &BottlePlan,
        b: &Bottle,
        tty: bool,
    ) -> Result<i32, SmolError> {
        let spec = vm::agent_exec_spec(
            &b.machine,
            &agent_env(plan, b.alias),
            &plan.provider.command,
            tty,
        );
        let run = || self.runner.run_interactive(&spec);
        let code = if tty {
            vm::with_size_forwarding(self.runner, &b.machine, &vm::host_terminal_size, run)
        } else {
            run()
        }?;
        Ok(code)
    }

    /// Copy the provider's transcript out of the VM (a tar stream through `machine exec`)
    /// and the bundle's logs out of the bundle (through the engine) into the state dir.
    pub(crate) fn snapshot(&self, plan: &BottlePlan, b: &Bottle) {
        let out = self
            .runner
            .run(&vm::tar_out_spec(&b.machine, &plan.provider.transcript_dir));
        match out {
            Ok(o) if o.success() => {
                if let Err(e) = b.state.replace_from_tar(TRANSCRIPT_DIR, &o.stdout) {
                    self.ui.warn(&format!("transcript snapshot failed: {e}"));
                }
            }
            Ok(o) => tracing::info!("no transcript copied: {}", o.stderr_str().trim()),
            Err(e) => self.ui.warn(&format!("transcript snapshot failed: {e}")),
        }
        docker_launch::snapshot_bundle_logs(
            self.runner,
            &plan.names.sidecar_container,
            &b.state,
            self.ui,
        );
    }

    fn unwind(&self, undo: &mut Vec<Undo>) {
        while let Some(step) = undo.pop() {
            match step {
                Undo::Run(spec) => match self.runner.run(&spec) {
                    Ok(o) if o.success() => {}
                    Ok(o) => self.ui.warn(&format!(
                        "teardown: `{spec}` failed: {}; run `bot-bottle cleanup`",
                        o.stderr_str().trim()
                    )),
                    Err(e) => self
                        .ui
                        .warn(&format!("teardown: {e}; run `bot-bottle cleanup`")),
                },
                Undo::RemoveFile(path) => {
                    if let Err(e) = std::fs::remove_file(&path) {
                        if e.kind() != std::io::ErrorKind::NotFound {
                            self.ui
                                .warn(&format!("cannot remove `{}`: {e}", path.display()));
                        }
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

    /// Undo in reverse order; every step is attempted even when an earlier one failed.
    pub(crate) fn teardown(&self, b: &mut Bottle) {
        self.unwind(&mut b.undo);
    }

    /// The whole launch: create, session, snapshot, preserve on failure, teardown.
    pub(crate) fn run(&self, plan: &BottlePlan, tty: bool) -> Result<Outcome, SmolError> {
        lifecycle::run(self, plan, tty)
    }
}

impl lifecycle::LiveBottle for Bottle {
    fn identity(&self) -> &str {
        &self.identity
    }
    fn state(&self) -> &StateDir {
        &self.state
    }
    fn keep_state_until_the_end(&mut self) {
        self.undo.insert(0, Undo::StateDir(self.state.clone()));
    }
}

impl lifecycle::Steps for Launcher<'_> {
    type Bottle = Bottle;
    type Error = SmolError;
    fn ui(&self) -> &dyn Ui {
        self.ui
    }
    fn create(&self, plan: &BottlePlan) -> Result<Bottle, SmolError> {
        Launcher::create(self, plan)
    }
    fn session(&self, plan: &BottlePlan, b: &mut Bottle, tty: bool) -> Result<i32, SmolError> {
        Launcher::session(self, plan, b, tty)
    }
    fn snapshot(&self, plan: &BottlePlan, b: &Bottle) {
        Launcher::snapshot(self, plan, b);
    }
    fn teardown(&self, b: &mut Bottle) {
        Launcher::teardown(self, b);
    }
}

fn state_err(e: crate::state::StateError) -> SmolError {
    SmolError::Refused(e.to_string())
}

fn rename(from: &Path, to: &Path) -> Result<(), SmolError> {
    std::fs::rename(from, to).map_err(|e| SmolError::io(to, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::{Mode, Output, RecordingRunner};

    struct Quiet;
    impl Ui for Quiet {
        fn say(&self, _msg: &str) {}
        fn warn(&self, _msg: &str) {}
    }

    fn host(version: Option<version::SmolvmVersion>) -> SmolHost {
        SmolHost {
            macos: true,
            cache_dir: PathBuf::from("/nonexistent-cache"),
            smolvm_db: PathBuf::from("/nonexistent-db/smolvm.db"),
            version,
        }
    }

    fn with_launcher<T>(
        rec: &RecordingRunner,
        h: &SmolHost,
        f: impl FnOnce(&Launcher<'_>) -> T,
    ) -> T {
        let prepared = Prepared {
            agent_image: "a:1".into(),
            sidecar_image: "s:1".into(),
        };
        let l = Launcher {
            runner: rec,
            host: h,
            compose: ComposeCmd::assume_v2(),
            prepared: &prepared,
            ui: &Quiet,
        };
        f(&l)
    }

    #[test]
    fn macos_adds_missing_aliases_with_one_interactive_sudo() {
        let rec = RecordingRunner::new(|s| {
            if s.program == "ifconfig" {
                Output::ok(
                    "lo0: flags=8049\n\tinet 127.0.0.1 netmask 0xff000000\n\tinet 127.0.0.16 netmask 0xffffffff\n",
                )
            } else {
                Output::default()
            }
        });
        let h = host(None);
        with_launcher(&rec, &h, |l| l.ensure_aliases()).unwrap();
        let calls = rec.calls_with_mode();
        assert_eq!(calls.len(), 2, "{calls:#?}");
        assert_eq!(calls[0].1.argv(), vec!["ifconfig", "lo0"]);
        let (mode, sudo) = &calls[1];
        // Interactive: sudo needs the terminal for its one password prompt.
        assert_eq!(*mode, Mode::Interactive);
        assert_eq!(sudo.program, "sudo");
        let script = sudo.args.last().unwrap();
        assert_eq!(script.matches("ifconfig lo0 alias").count(), 15, "{script}");
        assert!(!script.contains("127.0.0.16/32"), "{script}");
        assert!(script.contains("127.0.0.31/32"), "{script}");
    }

    #[test]
    fn aliases_present_since_boot_ask_for_no_password() {
        let all: String = alias::pool()
            .iter()
            .map(|a| format!("\tinet {a} netmask 0xffffffff\n"))
            .collect();
        let rec = RecordingRunner::new(move |s| {
            if s.program == "ifconfig" {
                Output::ok(all.clone())
            } else {
                Output::default()
            }
        });
        let h = host(None);
        with_launcher(&rec, &h, |l| l.ensure_aliases()).unwrap();
        assert_eq!(rec.calls().len(), 1);
    }

    #[test]
    fn a_refused_sudo_is_an_error_that_says_what_to_do() {
        let rec = RecordingRunner::new(|s| {
            if s.program == "sudo" {
                Output::failed(1, "")
            } else {
                Output::ok("")
            }
        });
        let h = host(None);
        let err = with_launcher(&rec, &h, |l| l.ensure_aliases()).unwrap_err();
        assert!(matches!(err, SmolError::AliasSetup(1)));
        assert!(err.to_string().contains("sudo ifconfig lo0 alias"));
    }

    #[test]
    fn the_workaround_refuses_without_the_database_and_never_runs_sqlite() {
        let rec = RecordingRunner::succeeding();
        let h = host(version::parse("smolvm 0.8.0"));
        let err = with_launcher(&rec, &h, |l| {
            l.patch_allowlist("bot-bottle-x", "127.0.0.16/32")
        })
        .unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
        assert!(rec.calls().is_empty());
    }

    #[test]
    fn the_session_proxy_is_the_bundle_on_the_alias() {
        let p = super::super::tests::plan();
        let env = agent_env(&p, Ipv4Addr::new(127, 0, 0, 20));
        for k in ["HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"] {
            assert_eq!(env[k], "http://127.0.0.20:9099");
        }
        assert_eq!(env["NO_PROXY"], "localhost,127.0.0.1");
        let ps = "{\"Names\":\"bot-bottle-sidecars-a\",\"Labels\":\"dev.bot-bottle.alias=127.0.0.19,dev.bot-bottle.backend=smolmachines\"}\n{\"Names\":\"x\",\"Labels\":\"dev.bot-bottle.alias=nonsense\"}\n";
        assert_eq!(
            aliases_in_use(ps),
            BTreeSet::from([Ipv4Addr::new(127, 0, 0, 19)])
        );
    }
}
