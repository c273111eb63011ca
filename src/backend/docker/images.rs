//! Which images a plan needs and making sure they exist: one `image inspect` per image when
//! cached (label hash matches), a build with progress otherwise. Tags, extra CAs and a named
//! sidecar image all come from the plan.

use super::build::{self, ImageSpec};
use super::{DockerError, check, docker};
use crate::backend::{Prepared, Ui};
use crate::envvars;
use crate::plan::{BottlePlan, ImageSource, ProviderKind, SidecarImage};
use crate::runner::Runner;

fn ensure(runner: &dyn Runner, spec: &ImageSpec, ui: &dyn Ui) -> Result<String, DockerError> {
    let status =
        build::ensure_image(runner, spec).map_err(|e| DockerError::Other(e.to_string()))?;
    if status == build::ImageStatus::Built {
        ui.say(&format!("built image `{}`", spec.tag));
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

/// The sidecar bundle image: the named one must exist, the bundled one is built from the
/// crate's own binaries when its context changed.
pub fn sidecar_image(
    runner: &dyn Runner,
    image: &SidecarImage,
    cas: &[Vec<u8>],
    ui: &dyn Ui,
) -> Result<String, DockerError> {
    match image {
        SidecarImage::Named(tag) => require(runner, tag, envvars::SIDECAR_IMAGE),
        SidecarImage::Bundled { exe } => {
            let exe = exe.as_deref().ok_or_else(|| {
                DockerError::Other(
                    "cannot tell where `bot-bottle` runs from, so its sidecar binaries cannot be found; set BOT_BOTTLE_SIDECAR_IMAGE to a published image".into(),
                )
            })?;
            let bin_dir = build::find_sidecar_bin_dir_from(exe)
                .map_err(|e| DockerError::Other(e.to_string()))?;
            ensure(runner, &ImageSpec::sidecars(&bin_dir, cas, None), ui)
        }
    }
}

/// Both images of a plan, checked side by side (two independent engine calls).
pub fn for_plan(
    runner: &dyn Runner,
    plan: &BottlePlan,
    ui: &dyn Ui,
) -> Result<Prepared, DockerError> {
    let (agent, sidecar) = std::thread::scope(|scope| {
        let sidecar =
            scope.spawn(|| sidecar_image(runner, &plan.sidecar_image, &plan.extra_cas, ui));
        let agent = agent_image(runner, plan, ui);
        let sidecar = sidecar
            .join()
            .unwrap_or_else(|_| Err(DockerError::Other("image check failed".into())));
        (agent, sidecar)
    });
    Ok(Prepared {
        agent_image: agent?,
        sidecar_image: sidecar?,
    })
}

fn agent_image(runner: &dyn Runner, plan: &BottlePlan, ui: &dyn Ui) -> Result<String, DockerError> {
    let cas = &plan.extra_cas;
    Ok(match &plan.image.source {
        ImageSource::Override => require(runner, &plan.image.tag, envvars::IMAGE)?,
        ImageSource::Provider(kind) => ensure(runner, &ImageSpec::agent(*kind, cas, None), ui)?,
        ImageSource::Dockerfile(path) | ImageSource::Rebuilt(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| DockerError::io(path, e))?;
            let spec = ImageSpec::new(plan.image.tag.clone(), text).with_extra_cas(cas);
            ensure(runner, &spec, ui)?
        }
    })
}

/// Both provider images and the sidecar image (`bot-bottle build-images`).
pub fn build_all(
    runner: &dyn Runner,
    sidecar: &SidecarImage,
    cas: &[Vec<u8>],
    ui: &dyn Ui,
) -> Result<(), DockerError> {
    for p in [ProviderKind::Claude, ProviderKind::Codex] {
        let spec = ImageSpec::agent(p, cas, None);
        ui.say(&format!("image `{}`", spec.tag));
        ensure(runner, &spec, ui)?;
    }
    ui.say(&format!("image `{}`", sidecar.tag()));
    sidecar_image(runner, sidecar, cas, ui)?;
    Ok(())
}
