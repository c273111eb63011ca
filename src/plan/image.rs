//! Which image the agent runs: `BOT_BOTTLE_IMAGE` if set, else a per-bottle Dockerfile left by
//! an approved change (in the state dir), else the bottle's custom Dockerfile, else the
//! provider's default. A named Dockerfile must exist before anything starts.

use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::provider::default_image;
use super::{HostEnv, PlanError};
use crate::envvars;
use crate::manifest::{Bottle, ProviderKind};

/// Name of the per-bottle Dockerfile an approved image change writes into the state dir.
pub(crate) const REBUILT_DOCKERFILE: &str = "Dockerfile";

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ImagePlan {
    pub tag: String,
    pub(crate) source: ImageSource,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ImageSource {
    /// Built from the provider's embedded Dockerfile.
    Provider(ProviderKind),
    /// Built from the bottle's `agent_provider.dockerfile`.
    Dockerfile(PathBuf),
    /// Built from `<state>/Dockerfile` written by an approved image change.
    Rebuilt(PathBuf),
    /// `BOT_BOTTLE_IMAGE`: used as is, not built.
    Override,
}

pub(crate) fn resolve_image(
    bottle: &Bottle,
    identity: &str,
    state_dir: &Path,
    host: &HostEnv,
) -> Result<ImagePlan, PlanError> {
    // Checked even when overridden: a broken manifest should not hide behind an env var.
    let custom = match &bottle.agent_provider.dockerfile {
        None => None,
        Some(written) => {
            let path = host.resolve_path(written)?;
            if !path.is_file() {
                return Err(PlanError::DockerfileMissing {
                    bottle: bottle.name.clone(),
                    path,
                });
            }
            Some(path)
        }
    };
    if let Some(tag) = host.var_nonempty(envvars::IMAGE) {
        return Ok(ImagePlan {
            tag: tag.to_string(),
            source: ImageSource::Override,
        });
    }
    let rebuilt = state_dir.join(REBUILT_DOCKERFILE);
    if rebuilt.is_file() {
        return Ok(ImagePlan {
            tag: format!("bot-bottle-rebuilt-{identity}:latest"),
            source: ImageSource::Rebuilt(rebuilt),
        });
    }
    Ok(match custom {
        Some(path) => ImagePlan {
            tag: custom_tag(&path),
            source: ImageSource::Dockerfile(path),
        },
        None => ImagePlan {
            tag: default_image(bottle.agent_provider.template).to_string(),
            source: ImageSource::Provider(bottle.agent_provider.template),
        },
    })
}

/// The default tag of the sidecar bundle image, built from the embedded Dockerfile.
pub const SIDECAR_TAG: &str = "bot-bottle-sidecars:latest";

/// Which sidecar bundle image runs: the bundled one (built or found cached from the sidecar
/// binaries installed next to `exe`, the running `bot-bottle`), or a published one named by
/// `BOT_BOTTLE_SIDECAR_IMAGE` that must exist and is never built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SidecarImage {
    Bundled { exe: Option<PathBuf> },
    Named(String),
}

impl SidecarImage {
    pub(crate) fn resolve(host: &HostEnv) -> SidecarImage {
        match host.var_nonempty(envvars::SIDECAR_IMAGE) {
            Some(tag) => SidecarImage::Named(tag.to_string()),
            None => SidecarImage::Bundled {
                exe: host.exe.clone(),
            },
        }
    }

    pub(crate) fn tag(&self) -> &str {
        match self {
            SidecarImage::Bundled { .. } => SIDECAR_TAG,
            SidecarImage::Named(t) => t,
        }
    }

    /// A `gitleaks` program beside the sidecar binaries (the directory of `exe`, or its
    /// parent, that holds `bot-bottle-git-gate`): the bundled image is built with it.
    pub(crate) fn gitleaks_beside(&self) -> Option<PathBuf> {
        let SidecarImage::Bundled { exe: Some(exe) } = self else {
            return None;
        };
        let dir = exe.parent()?;
        [Some(dir), dir.parent()]
            .into_iter()
            .flatten()
            .find(|d| d.join("bot-bottle-git-gate").is_file())
            .map(|d| d.join(GITLEAKS_BIN))
            .filter(|p| p.is_file())
    }

    /// What the preflight says about gitleaks, the git-gate's optional second opinion.
    pub(crate) fn gitleaks_note(&self) -> String {
        match (self, self.gitleaks_beside()) {
            (_, Some(p)) => format!(
                "bundled from {}: a second opinion on every push",
                p.display()
            ),
            (SidecarImage::Named(t), None) => {
                format!("used when image {t} has it on PATH (checked by the gate at start)")
            }
            (SidecarImage::Bundled { .. }, None) => format!(
                "not bundled (no `{GITLEAKS_BIN}` beside the sidecar binaries): the built-in scanner alone judges pushes"
            ),
        }
    }
}

/// gitleaks' program name, in the sidecar image's `bin/` when bundled.
pub(crate) const GITLEAKS_BIN: &str = "gitleaks";

/// What `bot-bottle build-images` makes, resolved once from the host like a bottle's plan:
/// every provider image and the sidecar image, with the operator's extra CAs in each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BuildPlan {
    pub(crate) sidecar_image: SidecarImage,
    pub extra_cas: Vec<Vec<u8>>,
}

impl BuildPlan {
    pub(crate) fn resolve(host: &HostEnv) -> Result<BuildPlan, PlanError> {
        Ok(BuildPlan {
            sidecar_image: SidecarImage::resolve(host),
            extra_cas: super::extra_cas(host)?,
        })
    }
}

/// `bot-bottle-custom-<first 12 hex of sha256(path)>:latest`: one tag per Dockerfile location.
fn custom_tag(path: &Path) -> String {
    let digest = Sha256::digest(path.as_os_str().as_encoded_bytes());
    format!("bot-bottle-custom-{}:latest", &hex::encode(digest)[..12])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::testutil::{bottle, host};

    #[test]
    fn provider_default_images() {
        let mut b = bottle("dev");
        let state = Path::new("/nonexistent/state/x");
        let p = resolve_image(&b, "x", state, &host()).unwrap();
        assert_eq!(p.tag, "bot-bottle-claude:latest");
        assert_eq!(p.source, ImageSource::Provider(ProviderKind::Claude));
        b.agent_provider.template = ProviderKind::Codex;
        assert_eq!(
            resolve_image(&b, "x", state, &host()).unwrap().tag,
            "bot-bottle-codex:latest"
        );
    }

    #[test]
    fn custom_dockerfile_relative_to_cwd_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = host();
        h.cwd = dir.path().to_path_buf();
        let mut b = bottle("dev");
        b.agent_provider.dockerfile = Some("docker/Agent.Dockerfile".into());
        let err = resolve_image(&b, "x", dir.path(), &h).unwrap_err();
        assert!(matches!(&err, PlanError::DockerfileMissing { bottle, .. } if bottle == "dev"));
        assert!(err.to_string().contains("Agent.Dockerfile"));

        std::fs::create_dir(dir.path().join("docker")).unwrap();
        std::fs::write(dir.path().join("docker/Agent.Dockerfile"), "FROM x").unwrap();
        let p = resolve_image(&b, "x", &dir.path().join("state"), &h).unwrap();
        assert_eq!(
            p.source,
            ImageSource::Dockerfile(dir.path().join("docker/Agent.Dockerfile"))
        );
        assert!(p.tag.starts_with("bot-bottle-custom-") && p.tag.ends_with(":latest"));
        // A different location gets a different tag.
        std::fs::write(dir.path().join("Other"), "FROM y").unwrap();
        b.agent_provider.dockerfile = Some("Other".into());
        assert_ne!(
            resolve_image(&b, "x", &dir.path().join("state"), &h)
                .unwrap()
                .tag,
            p.tag
        );
    }

    #[test]
    fn image_override_wins() {
        let mut h = host();
        h.vars.insert(envvars::IMAGE.into(), "mine:dev".into());
        let p = resolve_image(&bottle("dev"), "x", Path::new("/nonexistent"), &h).unwrap();
        assert_eq!(
            (p.tag.as_str(), p.source),
            ("mine:dev", ImageSource::Override)
        );
    }

    #[test]
    fn sidecar_image_is_bundled_unless_named() {
        let mut h = host();
        assert_eq!(SidecarImage::resolve(&h).tag(), SIDECAR_TAG);
        h.vars.insert(envvars::SIDECAR_IMAGE.into(), String::new());
        assert_eq!(
            SidecarImage::resolve(&h),
            SidecarImage::Bundled { exe: None }
        );
        h.vars
            .insert(envvars::SIDECAR_IMAGE.into(), "reg/sidecars:1".into());
        assert_eq!(
            SidecarImage::resolve(&h),
            SidecarImage::Named("reg/sidecars:1".into())
        );
    }

    #[test]
    fn rebuilt_dockerfile_in_state_is_used() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(REBUILT_DOCKERFILE), "FROM z").unwrap();
        let p = resolve_image(&bottle("dev"), "dev-abc123", dir.path(), &host()).unwrap();
        assert_eq!(p.tag, "bot-bottle-rebuilt-dev-abc123:latest");
        assert_eq!(
            p.source,
            ImageSource::Rebuilt(dir.path().join(REBUILT_DOCKERFILE))
        );
    }
}
