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
pub(crate) fn sidecar_image(
    runner: &dyn Runner,
    image: &SidecarImage,
    cas: &[Vec<u8>],
    ui: &dyn Ui,
) -> Result<String, DockerError> {
    match sidecar_spec(image, cas) {
        None => require(runner, image.tag(), envvars::SIDECAR_IMAGE),
        Some(spec) => ensure(runner, &spec?, ui),
    }
}

/// Both images of a plan. The warm case is one engine call: a single `image inspect` of both
/// tags whose context-hash labels match (a named image only has to exist). Anything else
/// (missing, stale, engine trouble) takes the per-image path, side by side, which builds
/// and explains.
pub(crate) fn for_plan(
    runner: &dyn Runner,
    plan: &BottlePlan,
    ui: &dyn Ui,
) -> Result<Prepared, DockerError> {
    if let Some(prepared) = all_cached(runner, plan) {
        return Ok(prepared);
    }
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

/// The spec whose context hash an image must carry; `None` for a named image, which is used
/// as it is.
fn agent_spec(plan: &BottlePlan) -> Option<Result<ImageSpec, DockerError>> {
    let cas = &plan.extra_cas;
    match &plan.image.source {
        ImageSource::Override => None,
        ImageSource::Provider(kind) => Some(Ok(ImageSpec::agent(*kind, cas, None))),
        ImageSource::Dockerfile(path) | ImageSource::Rebuilt(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| DockerError::io(path, e))
                .map(|text| ImageSpec::new(plan.image.tag.clone(), text).with_extra_cas(cas)),
        ),
    }
}

fn sidecar_spec(image: &SidecarImage, cas: &[Vec<u8>]) -> Option<Result<ImageSpec, DockerError>> {
    match image {
        SidecarImage::Named(_) => None,
        SidecarImage::Bundled { exe } => Some(
            exe.as_deref()
                .ok_or_else(|| {
                    DockerError::Other(
                        "cannot tell where `bot-bottle` runs from, so its sidecar binaries cannot be found; set BOT_BOTTLE_SIDECAR_IMAGE to a published image".into(),
                    )
                })
                .and_then(|exe| {
                    build::find_sidecar_bin_dir_from(exe)
                        .map_err(|e| DockerError::Other(e.to_string()))
                })
                .map(|dir| ImageSpec::sidecars(&dir, cas, None)),
        ),
    }
}

/// Both images answered by one `image inspect`, when both are there and current.
fn all_cached(runner: &dyn Runner, plan: &BottlePlan) -> Option<Prepared> {
    let expected = |spec: Option<Result<ImageSpec, DockerError>>| -> Option<Option<String>> {
        match spec {
            None => Some(None),
            Some(Ok(s)) => s.context_hash().ok().map(Some),
            Some(Err(_)) => None,
        }
    };
    let agent_tag = plan.image.tag.clone();
    let sidecar_tag = plan.sidecar_image.tag().to_string();
    // Hashing the sidecar binaries is the slow part: beside the agent's.
    let (agent_hash, sidecar_hash) = std::thread::scope(|scope| {
        let sidecar = scope.spawn(|| expected(sidecar_spec(&plan.sidecar_image, &plan.extra_cas)));
        let agent = expected(agent_spec(plan));
        (agent, sidecar.join().ok().flatten())
    });
    let (agent_hash, sidecar_hash) = (agent_hash?, sidecar_hash?);
    let out = runner
        .run(&build::inspect_spec_many(&[&agent_tag, &sidecar_tag]))
        .ok()
        .filter(crate::runner::Output::success)?;
    let text = out.stdout_str();
    let labels: Vec<&str> = text.lines().map(str::trim).collect();
    let current = |want: &Option<String>, got: Option<&&str>| match (want, got) {
        (None, Some(_)) => true,
        (Some(h), Some(g)) => h == g,
        (_, None) => false,
    };
    (labels.len() == 2
        && current(&agent_hash, labels.first())
        && current(&sidecar_hash, labels.get(1)))
    .then_some(Prepared {
        agent_image: agent_tag,
        sidecar_image: sidecar_tag,
    })
}

fn agent_image(runner: &dyn Runner, plan: &BottlePlan, ui: &dyn Ui) -> Result<String, DockerError> {
    match agent_spec(plan) {
        None => require(runner, &plan.image.tag, envvars::IMAGE),
        Some(spec) => ensure(runner, &spec?, ui),
    }
}

/// Both provider images and the sidecar image (`bot-bottle build-images`).
pub(crate) fn build_all(
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

    fn plan() -> BottlePlan {
        let m = manifest(vec![bottle("dev")], vec![agent("reviewer", "dev")]);
        let opts = StartOptions::fresh(BackendKind::Docker);
        let mut p = crate::plan::resolve(&m, "reviewer", &opts, &host()).unwrap();
        p.sidecar_image = SidecarImage::Named("reg/sidecars:1".into());
        p
    }

    #[test]
    fn a_warm_start_checks_both_images_in_one_call() {
        let p = plan();
        let hash = ImageSpec::agent(ProviderKind::Claude, &[], None)
            .context_hash()
            .unwrap();
        let runner = RecordingRunner::new(move |spec| {
            let argv = spec.argv();
            if argv.contains(&"bot-bottle-claude:latest") && argv.contains(&"reg/sidecars:1") {
                Output::ok(format!("{hash}\n\n"))
            } else {
                Output::failed(1, "unexpected")
            }
        });
        let prepared = for_plan(&runner, &p, &Quiet).unwrap();
        assert_eq!(prepared.agent_image, "bot-bottle-claude:latest");
        assert_eq!(prepared.sidecar_image, "reg/sidecars:1");
        assert_eq!(runner.calls().len(), 1, "{:?}", runner.calls());
    }

    #[test]
    fn a_stale_image_falls_back_to_the_checks_that_build() {
        let p = plan();
        let runner = RecordingRunner::new(|spec| {
            if spec.argv().contains(&"build") {
                Output::default()
            } else {
                Output::ok("stale\n")
            }
        });
        let prepared = for_plan(&runner, &p, &Quiet).unwrap();
        assert_eq!(prepared.agent_image, "bot-bottle-claude:latest");
        let calls = runner.calls();
        assert!(
            calls.iter().any(|c| c.argv()[..2] == ["docker", "build"]),
            "{calls:?}"
        );
    }
}
