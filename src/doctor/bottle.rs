//! The throwaway bottle `doctor` probes: a temporary home with one bottle (two routes, one
//! with an injected credential whose value is minted for this run), launched through the
//! Docker backend like any bottle but with no provider session, probed, and always torn down
//! (also after an error or a Ctrl-C).
//!
//! The operator's own home, credentials and provider files are never used: the plan is
//! resolved against a host environment that carries only what reaching the engine needs.

use std::collections::BTreeMap;
use std::path::PathBuf;

use rand::RngExt as _;

use super::probes::{self, Context, Probe};
use super::{Row, Status};
use crate::backend::docker::launch::{Bottle, Launcher};
use crate::backend::docker::{ComposeCmd, DockerBackend, DockerError, docker};
use crate::backend::{Backend, BackendError, Ui, interrupt};
use crate::manifest::{self, LoadOptions};
use crate::plan::{self, BackendKind, BottlePlan, HostEnv, StartOptions};
use crate::runner::Runner;

/// The host variable the throwaway bottle's credential is read from (set only in the plan's
/// own host view, never in the process environment).
const TOKEN_VAR: &str = "BOT_BOTTLE_DOCTOR_TOKEN";
/// Routed hosts of the throwaway bottle. Egress resolves a route's host before it intercepts
/// TLS, so they must resolve: both name the bundle's own loopback (allowed for these two
/// routes only), where nothing listens on 80/443, so a request let through goes nowhere.
/// (`localhost` itself is in the agent's `NO_PROXY`.)
pub const AUTH_ROUTE: &str = "ip6-loopback";
pub const PLAIN_ROUTE: &str = "ip6-localhost";

/// Host variables the throwaway plan may see: reaching the engine, images, CAs, the cache.
const PASS_THROUGH: &[&str] = &[
    "PATH",
    "DOCKER_HOST",
    "DOCKER_CONTEXT",
    "DOCKER_CONFIG",
    "DOCKER_CERT_PATH",
    "DOCKER_TLS_VERIFY",
    "XDG_CACHE_HOME",
    "COMPOSE_BAKE",
    crate::envvars::IMAGE,
    crate::envvars::SIDECAR_IMAGE,
    crate::envvars::EXTRA_CA_CERTS,
    crate::envvars::TEST_WEAKEN,
];

#[derive(Debug, thiserror::Error)]
pub(crate) enum DoctorError {
    #[error("cannot make the throwaway bottle's home in {}: {source}; check that the temp dir is writable", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the throwaway bottle's manifest did not load: {0}")]
    Manifest(#[from] manifest::ManifestError),
    #[error("the throwaway bottle's plan failed: {0}")]
    Plan(#[from] plan::PlanError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error("interrupted")]
    Interrupted,
}

/// A value shaped like a GitHub token (`ghp_` and 36 letters and digits), fresh per call:
/// scanners treat it as real, and it authenticates nothing.
pub fn mint_token() -> String {
    const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let tail: String = (0..36)
        .map(|_| char::from(ALNUM[rng.random_range(0..ALNUM.len())]))
        .collect();
    format!("ghp_{tail}")
}

fn random_hex(n: usize) -> String {
    let mut rng = rand::rng();
    (0..n)
        .map(|_| char::from(b"0123456789abcdef"[rng.random_range(0..16)]))
        .collect()
}

/// The temporary home: one bottle, one agent.
struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Result<Home, DoctorError> {
        let tmp = std::env::temp_dir();
        let io = |source| DoctorError::Io {
            path: tmp.clone(),
            source,
        };
        let dir = tempfile::Builder::new()
            .prefix("bot-bottle-doctor-")
            .tempdir_in(&tmp)
            .map_err(io)?;
        let root = dir.path().join("home");
        for d in [
            root.join("bottles"),
            root.join("agents"),
            dir.path().join("hosthome"),
            dir.path().join("work"),
        ] {
            std::fs::create_dir_all(&d).map_err(io)?;
        }
        std::fs::write(
            root.join("bottles/doctor.md"),
            format!(
                "---\negress:\n  routes:\n    - host: {AUTH_ROUTE}\n      auth:\n        scheme: Bearer\n        token_ref: {TOKEN_VAR}\n      pipelock:\n        ssrf_ip_allowlist: [\"127.0.0.1\", \"::1\"]\n    - host: {PLAIN_ROUTE}\n      pipelock:\n        ssrf_ip_allowlist: [\"127.0.0.1\", \"::1\"]\n---\nThrowaway bottle of `bot-bottle doctor`.\n"
            ),
        )
        .map_err(io)?;
        std::fs::write(
            root.join("agents/doctor.md"),
            "---\nbottle: doctor\n---\nProbed by `bot-bottle doctor`; never runs a provider.\n",
        )
        .map_err(io)?;
        Ok(Home { dir })
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("home")
    }
}

/// The plan's view of the host: only [`PASS_THROUGH`] variables, the minted token, a home
/// with no provider files.
fn host_view(real: &HostEnv, home: &Home, token: &str) -> HostEnv {
    let mut vars: BTreeMap<String, String> = real
        .vars
        .iter()
        .filter(|(k, _)| PASS_THROUGH.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    vars.insert(TOKEN_VAR.into(), token.into());
    HostEnv {
        vars,
        home: Some(home.dir.path().join("hosthome")),
        cwd: home.dir.path().join("work"),
        now_unix: real.now_unix,
        random_suffix: real.random_suffix.clone(),
        exe: real.exe.clone(),
        system_ca_dir: real.system_ca_dir.clone(),
        cpus: real.cpus,
    }
}

/// The throwaway bottle's plan (for the host checks' image names, then the launch).
pub struct Prepared {
    home: Home,
    pub(crate) plan: BottlePlan,
    token: String,
}

/// Resolve the throwaway bottle's plan.
pub(crate) fn plan(runner: &dyn Runner, real: &HostEnv) -> Result<Prepared, DoctorError> {
    let home = Home::new()?;
    let token = mint_token();
    let host = host_view(real, &home, &token);
    let m = manifest::load(&LoadOptions {
        root: home.root(),
        cwd: host.cwd.clone(),
    })?;
    let backend = DockerBackend::new(runner);
    let gvisor = backend.check_host(&host).ok().and_then(|c| c.gvisor);
    let opts = StartOptions {
        gvisor,
        ..StartOptions::fresh(BackendKind::Docker)
    };
    let plan = plan::resolve(&m, "doctor", &opts, &host)?;
    Ok(Prepared { home, plan, token })
}

/// Progress and results as they come.
pub trait Progress: Sync {
    /// The same sink as a backend [`Ui`] (launch steps, image builds).
    fn ui(&self) -> &dyn Ui;
    /// A probe is about to run (`index` from 1 of `total`).
    fn probe(&self, index: usize, total: usize, probe: &Probe);
}

/// Launch the throwaway bottle, run every probe, tear it down. Rows come back in probe order.
pub(crate) fn probe_bottle(
    runner: &dyn Runner,
    prepared: &Prepared,
    progress: &dyn Progress,
) -> Result<Vec<Row>, DoctorError> {
    let plan = &prepared.plan;
    let backend = DockerBackend::new(runner);
    progress.ui().say("checking (or building) the images");
    let images = backend.prepare(plan, progress.ui())?;
    let launcher = Launcher {
        runner,
        compose: std::cell::Cell::new(ComposeCmd::assume_v2()),
        prepared: &images,
        ui: progress.ui(),
    };
    let mut bottle = launcher.create(plan)?;
    let result = probe_created(runner, &launcher, &mut bottle, prepared, progress);
    progress.ui().say(&format!(
        "removing throwaway bottle `{}`",
        bottle.names.identity
    ));
    launcher.teardown(&mut bottle);
    let _ = &prepared.home;
    result
}

fn probe_created(
    runner: &dyn Runner,
    launcher: &Launcher<'_>,
    bottle: &mut Bottle,
    prepared: &Prepared,
    progress: &dyn Progress,
) -> Result<Vec<Row>, DoctorError> {
    launcher.finish_without_session(bottle)?;
    check_interrupt()?;
    let agent = bottle.names.agent_container.clone();
    wait_relay(runner, &agent)?;
    let networks = [
        bottle.names.internal_network.as_str(),
        bottle.names.egress_network.as_str(),
    ];
    let (all_ports, common) =
        super::targets::for_bottle(runner, &bottle.names.sidecar_container, &networks);
    let gvisor = probes::under_gvisor(runner, &agent).map_err(DockerError::from)?;
    let ctx = Context {
        all_port_targets: all_ports,
        common_port_targets: common,
        auth_route: Some(AUTH_ROUTE.into()),
        plain_route: Some(PLAIN_ROUTE.into()),
        has_secret: true,
        scanner_bait: mint_token(),
        exfil_label: random_hex(48),
        gvisor,
    };
    run_probes(
        runner,
        &agent,
        &bottle.names.sidecar_container,
        &probes::all(&ctx),
        Some(&prepared.token),
        progress,
    )
}

fn check_interrupt() -> Result<(), DoctorError> {
    if interrupt::interrupted() {
        Err(DoctorError::Interrupted)
    } else {
        Ok(())
    }
}

/// Wait until the agent's relay listens (the bundle publishes it after the config copy).
pub(crate) fn wait_relay(runner: &dyn Runner, agent_container: &str) -> Result<(), DoctorError> {
    let spec = docker([
        "exec",
        "-u",
        "node",
        agent_container,
        "bash",
        "-c",
        "for i in $(seq 1 300); do (exec 3<>/dev/tcp/127.0.0.1/9099) 2>/dev/null && exit 0; sleep 0.2; done; exit 1",
    ]);
    let out = runner.run(&spec).map_err(DockerError::from)?;
    if out.success() {
        Ok(())
    } else {
        Err(DockerError::Refused(
            "the agent's relay to egress never came up in the throwaway bottle; run `bot-bottle doctor -v` and check the sidecar image".into(),
        )
        .into())
    }
}

/// Run each probe in the agent container `container` of the bundle `sidecar` and judge it.
pub(crate) fn run_probes(
    runner: &dyn Runner,
    container: &str,
    sidecar: &str,
    list: &[Probe],
    secret: Option<&str>,
    progress: &dyn Progress,
) -> Result<Vec<Row>, DoctorError> {
    let mut rows = Vec::new();
    for (i, probe) in list.iter().enumerate() {
        check_interrupt()?;
        progress.probe(i + 1, list.len(), probe);
        let out = probe
            .run(runner, container, sidecar, secret)
            .map_err(DockerError::from)?;
        check_interrupt()?;
        let v = probe.judge(&out.stdout_str(), &out.stderr_str());
        rows.push(Row {
            group: probe.group.to_string(),
            probe: probe.id.clone(),
            case: probe.case.to_string(),
            expected: probe.expected.clone(),
            seen: v.seen,
            status: if v.pass { Status::Pass } else { Status::Fail },
        });
    }
    Ok(rows)
}
