//! Which images a plan needs and making sure they exist: one `image inspect` per image when
//! cached (label hash matches), a build with progress otherwise.

use std::path::{Path, PathBuf};

use super::{DockerError, check, docker};
use crate::envvars;
use crate::images::{self, ImageSpec, Provider};
use crate::manifest::ProviderKind;
use crate::plan::{BottlePlan, HostEnv, ImageSource};
use crate::runner::Runner;

/// The two images a bottle runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BottleImages {
    pub agent: String,
    pub sidecar: String,
}

fn provider(kind: ProviderKind) -> Provider {
    match kind {
        ProviderKind::Claude => Provider::Claude,
        ProviderKind::Codex => Provider::Codex,
    }
}

/// Extra CA certificates for builds: the host's `/usr/local/share/ca-certificates` and
/// `BOT_BOTTLE_EXTRA_CA_CERTS`.
pub fn extra_cas(host: &HostEnv) -> Result<Vec<Vec<u8>>, DockerError> {
    let extra = host
        .vars
        .get(envvars::EXTRA_CA_CERTS)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    images::collect_extra_cas(Path::new(images::SYSTEM_EXTRA_CA_DIR), extra.as_deref())
        .map_err(|e| DockerError::Other(e.to_string()))
}

fn ensure(
    runner: &dyn Runner,
    spec: &ImageSpec,
    say: &dyn Fn(&str),
) -> Result<String, DockerError> {
    let status =
        images::ensure_image(runner, spec).map_err(|e| DockerError::Other(e.to_string()))?;
    if status == images::ImageStatus::Built {
        say(&format!("built image `{}`", spec.tag));
    }
    Ok(spec.tag.clone())
}

/// A named image given by the operator must exist; it is never built or pulled.
fn require(runner: &dyn Runner, tag: &str, var: &str) -> Result<String, DockerError> {
    check(
        runner,
        &docker(["image", "inspect", "--format", "{{.Id}}", tag]),
    )
    .map_err(|_| {
        DockerError::Other(format!(
            "image `{tag}` (from `{var}`) does not exist; build it or unset `{var}`"
        ))
    })?;
    Ok(tag.to_string())
}

pub fn sidecar_image(
    runner: &dyn Runner,
    host: &HostEnv,
    cas: &[Vec<u8>],
    say: &dyn Fn(&str),
) -> Result<String, DockerError> {
    if let Some(tag) = host
        .vars
        .get(envvars::SIDECAR_IMAGE)
        .filter(|v| !v.is_empty())
    {
        return require(runner, tag, envvars::SIDECAR_IMAGE);
    }
    let bin_dir = images::find_sidecar_bin_dir().map_err(|e| DockerError::Other(e.to_string()))?;
    ensure(runner, &ImageSpec::sidecars(&bin_dir, cas, None), say)
}

/// `cas` are the operator's extra CA certificates ([`extra_cas`]), built into both images.
pub fn for_plan(
    runner: &dyn Runner,
    plan: &BottlePlan,
    host: &HostEnv,
    cas: &[Vec<u8>],
) -> Result<BottleImages, DockerError> {
    // The two checks are independent engine calls: run them side by side.
    let (agent, sidecar) = std::thread::scope(|scope| {
        let sidecar = scope.spawn(|| sidecar_image(runner, host, cas, &say_sync));
        let agent = agent_image(runner, plan, cas, &say_sync);
        let sidecar = sidecar
            .join()
            .unwrap_or_else(|_| Err(DockerError::Other("image check failed".into())));
        (agent, sidecar)
    });
    Ok(BottleImages {
        agent: agent?,
        sidecar: sidecar?,
    })
}

/// Progress from either image thread goes straight to stderr.
fn say_sync(msg: &str) {
    eprintln!("bot-bottle: {msg}");
}

fn agent_image(
    runner: &dyn Runner,
    plan: &BottlePlan,
    cas: &[Vec<u8>],
    say: &dyn Fn(&str),
) -> Result<String, DockerError> {
    Ok(match &plan.image.source {
        ImageSource::Override => require(runner, &plan.image.tag, envvars::IMAGE)?,
        ImageSource::Provider(kind) => {
            ensure(runner, &ImageSpec::agent(provider(*kind), cas, None), say)?
        }
        ImageSource::Dockerfile(path) | ImageSource::Rebuilt(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| DockerError::io(path, e))?;
            let spec = ImageSpec::new(plan.image.tag.clone(), text).with_extra_cas(cas);
            ensure(runner, &spec, say)?
        }
    })
}

/// Both provider images and the sidecar image (`bot-bottle build-images`).
pub fn build_all(
    runner: &dyn Runner,
    host: &HostEnv,
    say: &dyn Fn(&str),
) -> Result<(), DockerError> {
    let cas = extra_cas(host)?;
    for p in [Provider::Claude, Provider::Codex] {
        say(&format!("image `{}`", p.tag()));
        ensure(runner, &ImageSpec::agent(p, &cas, None), say)?;
    }
    say(&format!("image `{}`", images::SIDECARS_TAG));
    sidecar_image(runner, host, &cas, say)?;
    Ok(())
}
