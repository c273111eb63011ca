//! The agent image as a smolmachine artifact, cached by image id.
//!
//! `smolvm pack create` reads only from an OCI registry, not from the engine's image store,
//! so the image travels: `docker save` to a tarball → a throwaway `registry` container on
//! its own network, published on host loopback → `crane push --insecure` from a container on
//! that network (Docker Desktop's daemon runs in a VM whose `localhost` is not the host's,
//! and a plain `docker push` to a non-loopback name insists on HTTPS) → `smolvm pack create`
//! pulling from `localhost:<port>`. The registry, its network and the tarball are removed
//! as soon as the artifact exists. Packing takes seconds even when nothing changed, so the
//! artifact is kept under the cache dir by image id: a rebuilt image has a new id and packs
//! again; an unchanged one boots from the cache.

use std::path::{Path, PathBuf};

use crate::plan::PREFIX;
use crate::runner::ProcessSpec;

use super::{LABEL_BACKEND_KV, smolvm};

/// The registry image (OCI distribution, plain HTTP on 5000).
pub(crate) const REGISTRY_IMAGE: &str = "registry:2.8.3";
/// The push helper (`crane`, a static binary with `--insecure`).
pub(crate) const CRANE_IMAGE: &str = "gcr.io/go-containerregistry/crane:v0.20.2";
/// The registry's port inside its container.
pub(crate) const REGISTRY_PORT: u16 = 5000;
/// Repository name the artifact is pushed under.
pub(crate) const REPOSITORY: &str = "bot-bottle-agent";

/// The cache key of an image id (`sha256:<64 hex>` or bare hex): the first 16 hex digits of
/// the digest. `None` for anything that is not an image id, so a bad answer from the engine
/// never names a cache file.
pub(crate) fn cache_key(image_id: &str) -> Option<String> {
    let hex = image_id.trim();
    let hex = hex.strip_prefix("sha256:").unwrap_or(hex);
    let ok = hex.len() >= 16
        && hex
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, 'a'..='f'));
    ok.then(|| hex[..16].to_string())
}

/// Where one image's artifact lives: `pack create --output` names the stub; smolvm writes
/// the payload beside it as `<stub>.smolmachine`, which is what `machine create --from`
/// takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Artifact {
    pub(crate) stub: PathBuf,
    pub payload: PathBuf,
}

impl Artifact {
    pub(crate) fn at(stub: PathBuf) -> Artifact {
        let mut payload = stub.clone().into_os_string();
        payload.push(".smolmachine");
        Artifact {
            stub,
            payload: PathBuf::from(payload),
        }
    }

    /// The cached artifact for `key`.
    pub(crate) fn cached(cache_dir: &Path, key: &str) -> Artifact {
        Artifact::at(cache_dir.join(key))
    }

    /// Where a launch packs before moving the result into the cache (so a failed or
    /// interrupted pack never leaves a half-written cache entry).
    pub(crate) fn partial(cache_dir: &Path, key: &str, identity: &str) -> Artifact {
        Artifact::at(cache_dir.join(format!(".{key}.{identity}.partial")))
    }
}

/// Names of the throwaway registry resources of one launch (prefixed, so `cleanup` finds
/// them after a crash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Registry {
    pub container: String,
    pub network: String,
}

impl Registry {
    pub(crate) fn for_identity(identity: &str) -> Registry {
        Registry {
            container: format!("{PREFIX}registry-{identity}"),
            network: format!("{PREFIX}registry-net-{identity}"),
        }
    }

    pub(crate) fn network_create(&self, identity: &str) -> ProcessSpec {
        ProcessSpec::new("docker")
            .args(["network", "create", "--label", LABEL_BACKEND_KV])
            .arg("--label")
            .arg(format!("{}={identity}", super::LABEL_IDENTITY))
            .arg(&self.network)
    }

    /// The registry, published on a random port of host loopback only.
    pub(crate) fn run(&self, identity: &str) -> ProcessSpec {
        ProcessSpec::new("docker")
            .args(["run", "-d", "--rm", "--name"])
            .arg(&self.container)
            .arg("--network")
            .arg(&self.network)
            .args(["--label", LABEL_BACKEND_KV, "--label"])
            .arg(format!("{}={identity}", super::LABEL_IDENTITY))
            .arg("--label")
            .arg(format!("{}=registry", super::LABEL_SERVICE))
            .arg("-p")
            .arg(format!("127.0.0.1::{REGISTRY_PORT}"))
            .arg(REGISTRY_IMAGE)
    }

    pub(crate) fn port(&self) -> ProcessSpec {
        ProcessSpec::new("docker")
            .arg("port")
            .arg(&self.container)
            .arg(format!("{REGISTRY_PORT}/tcp"))
    }

    /// Answers once the registry serves its API (busybox `wget` in the registry image).
    pub(crate) fn ready(&self) -> ProcessSpec {
        ProcessSpec::new("docker")
            .arg("exec")
            .arg(&self.container)
            .args(["wget", "-q", "-O", "/dev/null"])
            .arg(format!("http://127.0.0.1:{REGISTRY_PORT}/v2/"))
    }

    /// `crane push` of the saved tarball, from a container on the registry's network.
    pub(crate) fn push(&self, tarball: &Path, key: &str) -> ProcessSpec {
        ProcessSpec::new("docker")
            .args(["run", "--rm", "--network"])
            .arg(&self.network)
            .arg("-v")
            .arg(format!("{}:/image.tar:ro", tarball.display()))
            .arg(CRANE_IMAGE)
            .args(["push", "--insecure", "/image.tar"])
            .arg(format!(
                "{}:{REGISTRY_PORT}/{REPOSITORY}:{key}",
                self.container
            ))
    }

    pub(crate) fn remove(&self) -> ProcessSpec {
        ProcessSpec::new("docker")
            .args(["rm", "-f"])
            .arg(&self.container)
    }

    pub(crate) fn network_remove(&self) -> ProcessSpec {
        ProcessSpec::new("docker")
            .args(["network", "rm"])
            .arg(&self.network)
    }
}

/// The host port from `docker port` output (`127.0.0.1:49153`, one line per family).
pub(crate) fn parse_port(stdout: &str) -> Option<u16> {
    stdout
        .lines()
        .filter_map(|l| l.trim().rsplit_once(':'))
        .find_map(|(_, p)| p.parse().ok())
}

/// `docker image inspect --format {{.Id}} <image>`.
pub(crate) fn image_id_spec(image: &str) -> ProcessSpec {
    ProcessSpec::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}"])
        .arg(image)
}

pub(crate) fn save_spec(image: &str, tarball: &Path) -> ProcessSpec {
    ProcessSpec::new("docker")
        .args(["save", "-o"])
        .arg(tarball.display().to_string())
        .arg(image)
}

/// `smolvm pack create` from the registry's host port into `out`.
pub(crate) fn pack_spec(port: u16, key: &str, out: &Artifact) -> ProcessSpec {
    smolvm(["pack", "create", "--image"])
        .arg(format!("localhost:{port}/{REPOSITORY}:{key}"))
        .arg("--output")
        .arg(out.stub.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "sha256:4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945";

    #[test]
    fn cache_key_is_the_digest_prefix() {
        assert_eq!(cache_key(ID).as_deref(), Some("4f53cda18c2baa0c"));
        assert_eq!(
            cache_key(&format!("{ID}\n")).as_deref(),
            Some("4f53cda18c2baa0c")
        );
        assert_eq!(
            cache_key("4f53cda18c2baa0c0354").as_deref(),
            Some("4f53cda18c2baa0c")
        );
    }

    #[test]
    fn a_different_image_id_is_a_different_key() {
        let other = ID.replace("4f53", "4f54");
        assert_ne!(cache_key(ID), cache_key(&other));
        assert_eq!(cache_key(ID), cache_key(ID));
    }

    #[test]
    fn anything_but_an_image_id_has_no_key() {
        for bad in [
            "",
            "sha256:",
            "sha256:abc",
            "Error: No such image: x",
            "sha256:../../etc/passwd0000000",
            "SHA256:4F53CDA18C2BAA0C0354",
        ] {
            assert_eq!(cache_key(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_payload_sits_beside_the_stub() {
        let a = Artifact::cached(Path::new("/c"), "4f53cda18c2baa0c");
        assert_eq!(a.stub, Path::new("/c/4f53cda18c2baa0c"));
        assert_eq!(a.payload, Path::new("/c/4f53cda18c2baa0c.smolmachine"));
        let p = Artifact::partial(Path::new("/c"), "k", "rev-ab12cd");
        assert_eq!(p.payload, Path::new("/c/.k.rev-ab12cd.partial.smolmachine"));
    }

    #[test]
    fn registry_is_loopback_only_and_prefixed() {
        let r = Registry::for_identity("rev-ab12cd");
        assert!(r.container.starts_with(PREFIX) && r.network.starts_with(PREFIX));
        let run = r.run("rev-ab12cd").to_string();
        assert!(run.contains("-p 127.0.0.1::5000"), "{run}");
        assert_eq!(parse_port("127.0.0.1:49153\n[::1]:49153\n"), Some(49153));
        assert_eq!(parse_port(""), None);
        let pack = pack_spec(49153, "k", &Artifact::at(PathBuf::from("/c/k")));
        assert_eq!(
            pack.argv(),
            vec![
                "smolvm",
                "pack",
                "create",
                "--image",
                "localhost:49153/bot-bottle-agent:k",
                "--output",
                "/c/k"
            ]
        );
    }
}
