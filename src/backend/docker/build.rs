//! Image builds: the embedded Dockerfiles, build-context assembly and a cache check that
//! costs one `docker image inspect` when nothing changed.
//!
//! An installed `bot-bottle` has no source tree, so the Dockerfiles are compiled in and the
//! build context is packed in memory as a tar stream for `docker build -`: the Dockerfile, `extra-ca/` (the
//! operator's extra CA certificates, for TLS-intercepting proxies) and, for the sidecar image,
//! `bin/` with the crate's own sidecar binaries. A SHA-256 over everything that goes into the
//! context is stored in the image label [`CONTEXT_HASH_LABEL`]; [`ensure_image`] builds only
//! when the label of the existing image differs.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::envvars;
use crate::plan::provider::default_image;
use crate::plan::{ProviderKind, SIDECAR_TAG};
use crate::runner::{ProcessSpec, RunError, Runner};

/// Dockerfile of the Claude Code agent image.
pub const CLAUDE_DOCKERFILE: &str = include_str!("../../../Dockerfile.claude");
/// Dockerfile of the Codex agent image.
pub(crate) const CODEX_DOCKERFILE: &str = include_str!("../../../Dockerfile.codex");
/// Dockerfile of the sidecar bundle image.
pub(crate) const SIDECARS_DOCKERFILE: &str = include_str!("../../../Dockerfile.sidecars");

/// Image label holding the hash of the build context the image was built from.
pub(crate) const CONTEXT_HASH_LABEL: &str = "dev.bot-bottle.context-hash";
/// Build argument naming the base image in every embedded Dockerfile.
pub(crate) const BASE_IMAGE_ARG: &str = "BASE_IMAGE";
/// Sidecar binaries copied into the sidecar image's `bin/`.
pub(crate) const SIDECAR_BINARIES: [&str; 5] = [
    "bot-bottle-egress",
    "bot-bottle-git-gate",
    "bot-bottle-init",
    "bot-bottle-relay",
    "bot-bottle-supervise",
];
/// Directory of the extra CA certificates inside a build context.
pub(crate) const EXTRA_CA_DIR: &str = "extra-ca";

const DOCKER: &str = "docker";

#[derive(thiserror::Error, Debug)]
pub enum ImageError {
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(
        "the Docker engine did not answer: {detail}; start Docker (or check access to its socket) and try again"
    )]
    Engine { detail: String },
    #[error("building image `{tag}` failed (exit code {code}); see the build output above")]
    BuildFailed { tag: String, code: i32 },
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot pack `{}` into the build context: {source}; check free memory", .path.display())]
    Context {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "sidecar binary `{name}` not found in {searched}; build the crate's binaries (`cargo build --bins`) or set {} to a published image",
        envvars::SIDECAR_IMAGE
    )]
    MissingBinary { name: String, searched: String },
}

/// Where a context file's bytes come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Bytes(Vec<u8>),
    /// Read at hash and assembly time (large binaries stay on disk).
    File(PathBuf),
}

/// One file of a build context.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContextFile {
    pub source: Source,
    pub mode: u32,
}

/// Everything needed to build (or find) one image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSpec {
    pub tag: String,
    /// Dockerfile contents (written as `Dockerfile` at the context root).
    pub dockerfile: String,
    /// `--build-arg`s; [`BASE_IMAGE_ARG`] among them when a base is pinned.
    pub build_args: BTreeMap<String, String>,
    /// Context files by relative path (`extra-ca/x.crt`, `bin/bot-bottle-init`).
    pub files: BTreeMap<String, ContextFile>,
    /// Directories that must exist in the context even when empty (`COPY extra-ca/ …`).
    pub dirs: Vec<String>,
}

/// Was the image already there?
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageStatus {
    Cached,
    Built,
}

impl fmt::Display for ImageStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ImageStatus::Cached => "cached",
            ImageStatus::Built => "built",
        })
    }
}

/// The embedded Dockerfile of a provider's default image (its tag is the plan's
/// [`default_image`]).
pub(crate) fn provider_dockerfile(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::Claude => CLAUDE_DOCKERFILE,
        ProviderKind::Codex => CODEX_DOCKERFILE,
    }
}

impl ImageSpec {
    /// A spec with just a Dockerfile and an empty `extra-ca/` dir.
    pub fn new(tag: impl Into<String>, dockerfile: impl Into<String>) -> Self {
        ImageSpec {
            tag: tag.into(),
            dockerfile: dockerfile.into(),
            build_args: BTreeMap::new(),
            files: BTreeMap::new(),
            dirs: vec![EXTRA_CA_DIR.to_string()],
        }
    }

    /// The agent image of `provider`, with the given extra CAs and optional base image.
    pub fn agent(provider: ProviderKind, extra_cas: &[Vec<u8>], base_image: Option<&str>) -> Self {
        ImageSpec::new(default_image(provider), provider_dockerfile(provider))
            .with_extra_cas(extra_cas)
            .with_base_image(base_image)
    }

    /// The sidecar image, with binaries from `bin_dir` (see [`find_sidecar_bin_dir_from`]).
    pub fn sidecars(bin_dir: &Path, extra_cas: &[Vec<u8>], base_image: Option<&str>) -> Self {
        let mut spec = ImageSpec::new(SIDECAR_TAG, SIDECARS_DOCKERFILE)
            .with_extra_cas(extra_cas)
            .with_base_image(base_image);
        for name in SIDECAR_BINARIES {
            spec = spec.with_file(
                format!("bin/{name}"),
                Source::File(bin_dir.join(name)),
                0o755,
            );
        }
        // Optional: the git-gate's second opinion, when the operator put it beside them.
        let gitleaks = bin_dir.join(crate::plan::GITLEAKS_BIN);
        if gitleaks.is_file() {
            spec = spec.with_file(
                format!("bin/{}", crate::plan::GITLEAKS_BIN),
                Source::File(gitleaks),
                0o755,
            );
        }
        spec
    }

    #[must_use]
    pub(crate) fn with_base_image(mut self, base: Option<&str>) -> Self {
        if let Some(b) = base {
            self.build_args
                .insert(BASE_IMAGE_ARG.to_string(), b.to_string());
        }
        self
    }

    #[must_use]
    pub(crate) fn with_file(mut self, name: impl Into<String>, source: Source, mode: u32) -> Self {
        self.files.insert(name.into(), ContextFile { source, mode });
        self
    }

    /// Adds each certificate (one PEM block each) as `extra-ca/bot-bottle-extra-<hash>.crt`.
    #[must_use]
    pub(crate) fn with_extra_cas(mut self, certs: &[Vec<u8>]) -> Self {
        for pem in certs {
            let h = hex::encode(Sha256::digest(pem));
            self.files.insert(
                format!("{EXTRA_CA_DIR}/bot-bottle-extra-{}.crt", &h[..16]),
                ContextFile {
                    source: Source::Bytes(pem.clone()),
                    mode: 0o644,
                },
            );
        }
        self
    }

    /// SHA-256 (hex) over the Dockerfile, build args, directories and every file's name, mode
    /// and bytes: any change there means a rebuild.
    pub(crate) fn context_hash(&self) -> Result<String, ImageError> {
        let mut h = Hasher::new();
        let mut field = |tag: &str, bytes: &[u8]| {
            h.update(tag.as_bytes());
            h.update(&(bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        };
        field("dockerfile", self.dockerfile.as_bytes());
        for (k, v) in &self.build_args {
            field("arg", k.as_bytes());
            field("val", v.as_bytes());
        }
        let mut dirs = self.dirs.clone();
        dirs.sort();
        for d in &dirs {
            field("dir", d.as_bytes());
        }
        let mut buf = vec![0u8; 1 << 20];
        for (name, f) in &self.files {
            field("file", name.as_bytes());
            field("mode", &f.mode.to_le_bytes());
            match &f.source {
                Source::Bytes(b) => field("bytes", b),
                Source::File(p) => {
                    let mut file = fs::File::open(p).map_err(|source| ImageError::Read {
                        path: p.clone(),
                        source,
                    })?;
                    let mut fh = Hasher::new();
                    loop {
                        let n = file.read(&mut buf).map_err(|source| ImageError::Read {
                            path: p.clone(),
                            source,
                        })?;
                        if n == 0 {
                            break;
                        }
                        fh.update(&buf[..n]);
                    }
                    field("filehash", &fh.finish());
                }
            }
        }
        Ok(hex::encode(h.finish()))
    }

    /// The build context as one tar stream (Dockerfile, dirs, files with their modes), sent
    /// to `docker build -` on stdin: nothing is written on the host and no temp dir is
    /// needed, and a remote engine gets the same context.
    pub(crate) fn context_tar(&self) -> Result<Vec<u8>, ImageError> {
        let ctx = |name: &str| {
            let path = PathBuf::from(name);
            move |source| ImageError::Context { path, source }
        };
        let mut t = tar::Builder::new(Vec::new());
        let header = |kind: tar::EntryType, mode: u32, size: u64| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_mode(mode);
            h.set_size(size);
            h.set_mtime(0);
            h
        };
        let mut h = header(tar::EntryType::Regular, 0o644, self.dockerfile.len() as u64);
        t.append_data(&mut h, "Dockerfile", self.dockerfile.as_bytes())
            .map_err(ctx("Dockerfile"))?;
        let mut dirs: std::collections::BTreeSet<String> = self.dirs.iter().cloned().collect();
        for name in self.files.keys() {
            let mut p = Path::new(name).parent();
            while let Some(d) = p.filter(|d| !d.as_os_str().is_empty()) {
                dirs.insert(d.to_string_lossy().into_owned());
                p = d.parent();
            }
        }
        for d in &dirs {
            let mut h = header(tar::EntryType::Directory, 0o755, 0);
            t.append_data(&mut h, format!("{d}/"), &[][..])
                .map_err(ctx(d))?;
        }
        for (name, f) in &self.files {
            let bytes = match &f.source {
                Source::Bytes(b) => b.clone(),
                Source::File(src) => fs::read(src).map_err(|source| ImageError::Read {
                    path: src.clone(),
                    source,
                })?,
            };
            let mut h = header(tar::EntryType::Regular, f.mode, bytes.len() as u64);
            t.append_data(&mut h, name, bytes.as_slice())
                .map_err(ctx(name))?;
        }
        t.into_inner().map_err(ctx("."))
    }
}

/// `docker image inspect` reading the context-hash label of `tag`.
pub(crate) fn inspect_spec(tag: &str) -> ProcessSpec {
    ProcessSpec::new(DOCKER).args([
        "image",
        "inspect",
        "--format",
        &format!("{{{{index .Config.Labels \"{CONTEXT_HASH_LABEL}\"}}}}"),
        tag,
    ])
}

/// One `docker image inspect` printing the context-hash label of each tag, one line per tag
/// in order (it fails when any tag is missing).
pub(crate) fn inspect_spec_many(tags: &[&str]) -> ProcessSpec {
    ProcessSpec::new(DOCKER)
        .args([
            "image",
            "inspect",
            "--format",
            &format!("{{{{index .Config.Labels \"{CONTEXT_HASH_LABEL}\"}}}}"),
        ])
        .args(tags.iter().copied())
}

/// `docker build` of `spec` from `context` (a tar stream on stdin), labelled with `hash`.
pub(crate) fn build_spec(spec: &ImageSpec, context: Vec<u8>, hash: &str) -> ProcessSpec {
    let mut p = ProcessSpec::new(DOCKER).args(["build", "-t", &spec.tag]);
    p = p.arg("--label").arg(format!("{CONTEXT_HASH_LABEL}={hash}"));
    for (k, v) in &spec.build_args {
        p = p.arg("--build-arg").arg(format!("{k}={v}"));
    }
    p.arg("-").stdin(context)
}

/// `docker image prune` of the untagged images bot-bottle built: a rebuild moves the tag and
/// leaves the old image (hundreds of MB) behind. Images a container still uses are kept by
/// the engine, and nothing without the context-hash label is touched.
pub(crate) fn prune_superseded_spec() -> ProcessSpec {
    ProcessSpec::new(DOCKER).args([
        "image",
        "prune",
        "--force",
        "--filter",
        &format!("label={CONTEXT_HASH_LABEL}"),
    ])
}

/// Makes sure `spec.tag` exists and was built from exactly this context: one inspect when it
/// was, else a build with its progress streamed to the terminal, then a prune of the image it
/// replaced.
pub fn ensure_image(runner: &dyn Runner, spec: &ImageSpec) -> Result<ImageStatus, ImageError> {
    let hash = spec.context_hash()?;
    let out = runner.run(&inspect_spec(&spec.tag))?;
    if out.success() && out.stdout_str().trim() == hash {
        tracing::debug!(tag = %spec.tag, "image up to date");
        return Ok(ImageStatus::Cached);
    }
    if !out.success() {
        // A missing image means "build"; an engine that does not answer must not be
        // reported as a failed build.
        let err = out.stderr_str();
        if engine_unreachable(&err) {
            return Err(ImageError::Engine {
                detail: err.trim().lines().last().unwrap_or("").to_string(),
            });
        }
    }
    let context = spec.context_tar()?;
    tracing::info!(tag = %spec.tag, "building image");
    let code = runner.run_streaming(&build_spec(spec, context, &hash))?;
    if code != 0 {
        return Err(ImageError::BuildFailed {
            tag: spec.tag.clone(),
            code,
        });
    }
    // Best effort: a failed prune costs disk space, never the launch.
    match runner.run(&prune_superseded_spec()) {
        Ok(out) if out.success() => {}
        Ok(out) => {
            tracing::warn!(detail = %out.stderr_str().trim(), "pruning superseded images failed")
        }
        Err(e) => tracing::warn!(error = %e, "pruning superseded images failed"),
    }
    Ok(ImageStatus::Built)
}

/// SHA-256 for context hashing. ring's implementation (reached through rustls's provider, so no
/// extra dependency) is assembly and stays fast in debug builds, where the pure-Rust `sha2`
/// is ~30x slower; debug sidecar binaries are ~100 MB.
enum Hasher {
    Ring(Box<dyn rustls::crypto::hash::Context>),
    Sha2(Sha256),
}

impl Hasher {
    fn new() -> Self {
        match rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256.tls13() {
            Some(suite) => Hasher::Ring(suite.common.hash_provider.start()),
            None => Hasher::Sha2(Sha256::new()),
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Ring(c) => c.update(bytes),
            Hasher::Sha2(h) => h.update(bytes),
        }
    }

    fn finish(self) -> Vec<u8> {
        match self {
            Hasher::Ring(c) => c.finish().as_ref().to_vec(),
            Hasher::Sha2(h) => h.finalize().to_vec(),
        }
    }
}

/// Does this `docker` stderr say the engine itself is unreachable?
fn engine_unreachable(stderr: &str) -> bool {
    let s = stderr.to_ascii_lowercase();
    s.contains("cannot connect to the docker daemon")
        || s.contains("is the docker daemon running")
        || (s.contains("permission denied") && s.contains("docker.sock"))
}

/// Finds the directory holding all [`SIDECAR_BINARIES`]: next to `exe`, or its parent (test
/// binaries live in `target/<profile>/deps`).
pub fn find_sidecar_bin_dir_from(exe: &Path) -> Result<PathBuf, ImageError> {
    let mut candidates = Vec::new();
    if let Some(dir) = exe.parent() {
        candidates.push(dir.to_path_buf());
        if let Some(up) = dir.parent() {
            candidates.push(up.to_path_buf());
        }
    }
    for c in &candidates {
        if SIDECAR_BINARIES.iter().all(|b| c.join(b).is_file()) {
            return Ok(c.clone());
        }
    }
    let missing = SIDECAR_BINARIES
        .iter()
        .find(|b| !candidates.iter().any(|c| c.join(b).is_file()))
        .unwrap_or(&SIDECAR_BINARIES[0]);
    Err(ImageError::MissingBinary {
        name: (*missing).to_string(),
        searched: candidates
            .iter()
            .map(|c| c.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::{Mode, Output, RecordingRunner};
    use std::os::unix::fs::PermissionsExt;

    const PEM_A: &str = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    const PEM_B: &str = "-----BEGIN CERTIFICATE-----\nBBBB\n-----END CERTIFICATE-----\n";

    fn spec() -> ImageSpec {
        ImageSpec::agent(
            ProviderKind::Claude,
            &[PEM_A.as_bytes().to_vec()],
            Some("node:22-slim"),
        )
    }

    /// A fake docker whose inspect answers with `label` (None: image missing).
    fn fake(label: Option<String>) -> RecordingRunner {
        RecordingRunner::new(move |s| match s.args.first().map(String::as_str) {
            Some("image") => match &label {
                Some(l) => Output::ok(format!("{l}\n")),
                None => Output::failed(1, "Error: No such image"),
            },
            _ => Output::default(),
        })
    }

    #[test]
    fn embedded_dockerfiles_take_the_base_image_as_build_arg() {
        for (df, base) in [
            (CLAUDE_DOCKERFILE, "node:22-slim"),
            (CODEX_DOCKERFILE, "node:22-slim"),
            (SIDECARS_DOCKERFILE, "debian:bookworm-slim"),
        ] {
            assert!(df.contains(&format!("ARG BASE_IMAGE={base}")));
            assert!(df.contains("FROM ${BASE_IMAGE}"));
            assert!(df.contains("COPY extra-ca/"));
            // legacy builder compatible
            assert!(!df.contains("--chmod") && !df.contains("<<") && !df.contains("# syntax="));
        }
        assert!(CLAUDE_DOCKERFILE.contains("@anthropic-ai/claude-code@"));
        assert!(CODEX_DOCKERFILE.contains("@openai/codex@"));
        assert!(CLAUDE_DOCKERFILE.contains("USER node"));
        assert!(SIDECARS_DOCKERFILE.contains("bot-bottle-init"));
    }

    #[test]
    fn cache_hit_is_one_inspect_and_no_build() {
        let s = spec();
        let rec = fake(Some(s.context_hash().unwrap()));
        assert_eq!(ensure_image(&rec, &s).unwrap(), ImageStatus::Cached);
        let calls = rec.calls();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0], inspect_spec(default_image(ProviderKind::Claude)));
        assert_eq!(
            calls[0].to_string(),
            "docker image inspect --format '{{index .Config.Labels \"dev.bot-bottle.context-hash\"}}' bot-bottle-claude:latest"
        );
    }

    #[test]
    fn mismatch_or_missing_image_builds_with_label_and_base_arg_streamed() {
        for label in [None, Some("stale".to_string()), Some(String::new())] {
            let s = spec();
            let rec = fake(label.clone());
            assert_eq!(
                ensure_image(&rec, &s).unwrap(),
                ImageStatus::Built,
                "{label:?}"
            );
            let calls = rec.calls_with_mode();
            assert_eq!(calls.len(), 3);
            assert_eq!(calls[0].0, Mode::Captured);
            // the image the build superseded goes, and only images bot-bottle labelled
            assert_eq!(calls[2], (Mode::Captured, prune_superseded_spec()));
            assert_eq!(
                calls[2].1.to_string(),
                "docker image prune --force --filter label=dev.bot-bottle.context-hash"
            );
            let (mode, build) = &calls[1];
            assert_eq!(*mode, Mode::Streaming);
            let argv = build.argv();
            assert_eq!(
                &argv[..4],
                ["docker", "build", "-t", default_image(ProviderKind::Claude)]
            );
            let hash = s.context_hash().unwrap();
            assert!(
                argv.windows(2)
                    .any(|w| w == ["--label", &format!("{CONTEXT_HASH_LABEL}={hash}")])
            );
            assert!(
                argv.windows(2)
                    .any(|w| w == ["--build-arg", "BASE_IMAGE=node:22-slim"])
            );
            // the context is a tar stream on stdin: nothing on the host
            assert_eq!(argv[argv.len() - 1], "-");
            let sent = build.stdin.as_deref().expect("context on stdin");
            assert_eq!(sent, s.context_tar().unwrap());
            let names: Vec<String> = tar::Archive::new(sent)
                .entries()
                .unwrap()
                .map(|e| e.unwrap().path().unwrap().display().to_string())
                .collect();
            assert!(names.contains(&"Dockerfile".to_string()), "{names:?}");
        }
    }

    #[test]
    fn failed_build_is_an_error_naming_the_tag() {
        let rec = RecordingRunner::new(|s| {
            if s.args[0] == "build" {
                Output::failed(3, "")
            } else {
                Output::failed(1, "no such image")
            }
        });
        let err = ensure_image(&rec, &spec()).unwrap_err();
        assert!(matches!(err, ImageError::BuildFailed { code: 3, .. }));
        assert!(
            err.to_string()
                .contains(default_image(ProviderKind::Claude))
        );
        // the old image stays when no new one replaced it
        assert!(
            !rec.calls()
                .iter()
                .any(|c| c.args.first().map(String::as_str) == Some("image")
                    && c.args.get(1).map(String::as_str) == Some("prune"))
        );
    }

    #[test]
    fn a_failed_prune_does_not_fail_the_build() {
        let rec = RecordingRunner::new(|s| match (s.args[0].as_str(), s.args[1].as_str()) {
            ("build", _) => Output::ok(""),
            (_, "prune") => Output::failed(
                1,
                "Error response from daemon: a prune operation is already running",
            ),
            _ => Output::failed(1, "no such image"),
        });
        assert_eq!(ensure_image(&rec, &spec()).unwrap(), ImageStatus::Built);
        assert_eq!(rec.calls().len(), 3);
    }

    #[test]
    fn an_unreachable_engine_is_not_a_build_failure() {
        let rec = RecordingRunner::new(|_| {
            Output::failed(
                1,
                "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?\n",
            )
        });
        let err = ensure_image(&rec, &spec()).unwrap_err();
        assert!(matches!(err, ImageError::Engine { .. }), "{err}");
        assert!(err.to_string().contains("start Docker"), "{err}");
        assert_eq!(rec.calls().len(), 1, "no build after an engine error");
    }

    #[test]
    fn missing_docker_surfaces_the_runner_hint() {
        let rec = RecordingRunner::fallible(|s| {
            Err(RunError::NotFound {
                program: s.program.clone(),
            })
        });
        let err = ensure_image(&rec, &spec()).unwrap_err();
        assert!(err.to_string().contains("install Docker"), "{err}");
    }

    #[test]
    fn hasher_is_sha256() {
        let mut h = Hasher::new();
        h.update(b"abc");
        assert_eq!(
            hex::encode(h.finish()),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(matches!(Hasher::new(), Hasher::Ring(_)));
    }

    #[test]
    fn context_hash_tracks_every_input() {
        let base = spec();
        let h = base.context_hash().unwrap();
        assert_eq!(h, spec().context_hash().unwrap(), "hash must be stable");
        let variants = [
            base.clone().with_base_image(Some("other:1")),
            base.clone().with_extra_cas(&[PEM_B.as_bytes().to_vec()]),
            ImageSpec {
                dockerfile: format!("{}\n# changed", base.dockerfile),
                ..base.clone()
            },
            base.clone()
                .with_file("x", Source::Bytes(b"1".to_vec()), 0o644),
            base.clone()
                .with_file("x", Source::Bytes(b"1".to_vec()), 0o755),
        ];
        let hashes: std::collections::BTreeSet<_> = variants
            .iter()
            .map(|v| v.context_hash().unwrap())
            .chain([h])
            .collect();
        assert_eq!(hashes.len(), variants.len() + 1);
    }

    /// What `docker build -` sees of a spec's context.
    fn unpack(spec: &ImageSpec, dir: &Path) {
        let tar = spec.context_tar().unwrap();
        let mut a = tar::Archive::new(tar.as_slice());
        a.set_preserve_permissions(true);
        a.unpack(dir).unwrap();
    }

    #[test]
    fn gitleaks_beside_the_sidecar_binaries_is_bundled_and_otherwise_left_out() {
        let bins = tempfile::tempdir().unwrap();
        for b in SIDECAR_BINARIES {
            fs::write(bins.path().join(b), "bin").unwrap();
        }
        let image = crate::plan::SidecarImage::Bundled {
            exe: Some(bins.path().join("bot-bottle")),
        };
        let without = ImageSpec::sidecars(bins.path(), &[], None);
        let ctx = tempfile::tempdir().unwrap();
        unpack(&without, ctx.path());
        assert!(!ctx.path().join("bin/gitleaks").exists());
        assert!(image.gitleaks_beside().is_none());
        assert!(image.gitleaks_note().starts_with("not bundled"));

        fs::write(bins.path().join("gitleaks"), "leaks").unwrap();
        let with = ImageSpec::sidecars(bins.path(), &[], None);
        assert_ne!(
            with.context_hash().unwrap(),
            without.context_hash().unwrap()
        );
        let ctx = tempfile::tempdir().unwrap();
        unpack(&with, ctx.path());
        assert_eq!(
            fs::read_to_string(ctx.path().join("bin/gitleaks")).unwrap(),
            "leaks"
        );
        assert_eq!(image.gitleaks_beside(), Some(bins.path().join("gitleaks")));
        assert!(image.gitleaks_note().starts_with("bundled from"));
        let named = crate::plan::SidecarImage::Named("corp/sidecars:1".into());
        assert!(named.gitleaks_note().contains("corp/sidecars:1"));
    }

    #[test]
    fn file_sources_are_hashed_by_content_and_written_with_modes() {
        let bins = tempfile::tempdir().unwrap();
        for b in SIDECAR_BINARIES {
            fs::write(bins.path().join(b), format!("#!/bin/sh\necho {b}\n")).unwrap();
        }
        let s = ImageSpec::sidecars(bins.path(), &[PEM_A.as_bytes().to_vec()], None);
        let h1 = s.context_hash().unwrap();
        fs::write(bins.path().join("bot-bottle-relay"), "changed").unwrap();
        assert_ne!(h1, s.context_hash().unwrap());

        let ctx = tempfile::tempdir().unwrap();
        unpack(&s, ctx.path());
        assert_eq!(
            fs::read_to_string(ctx.path().join("Dockerfile")).unwrap(),
            SIDECARS_DOCKERFILE
        );
        let relay = ctx.path().join("bin/bot-bottle-relay");
        assert_eq!(fs::read_to_string(&relay).unwrap(), "changed");
        assert_eq!(
            fs::metadata(&relay).unwrap().permissions().mode() & 0o777,
            0o755
        );
        let cas: Vec<_> = fs::read_dir(ctx.path().join(EXTRA_CA_DIR))
            .unwrap()
            .map(|e| fs::read_to_string(e.unwrap().path()).unwrap())
            .collect();
        assert_eq!(cas, [PEM_A]);
        assert!(!s.build_args.contains_key(BASE_IMAGE_ARG));

        // an empty extra-ca dir still exists (the Dockerfiles COPY it)
        let ctx2 = tempfile::tempdir().unwrap();
        unpack(
            &ImageSpec::agent(ProviderKind::Codex, &[], None),
            ctx2.path(),
        );
        assert!(ctx2.path().join(EXTRA_CA_DIR).is_dir());

        let gone = ImageSpec::sidecars(Path::new("/nonexistent"), &[], None);
        assert!(matches!(gone.context_hash(), Err(ImageError::Read { .. })));
    }

    #[test]
    fn sidecar_binaries_are_found_next_to_the_exe_or_one_level_up() {
        let t = tempfile::tempdir().unwrap();
        let deps = t.path().join("deps");
        fs::create_dir(&deps).unwrap();
        let err = find_sidecar_bin_dir_from(&deps.join("test-bin")).unwrap_err();
        assert!(err.to_string().contains("bot-bottle-egress"), "{err}");
        for b in SIDECAR_BINARIES {
            fs::write(t.path().join(b), "").unwrap();
        }
        assert_eq!(
            find_sidecar_bin_dir_from(&deps.join("test-bin")).unwrap(),
            t.path()
        );
        assert_eq!(
            find_sidecar_bin_dir_from(&t.path().join("bot-bottle")).unwrap(),
            t.path()
        );
    }
}
