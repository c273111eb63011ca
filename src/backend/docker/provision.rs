//! Provisioning after start, batched: everything the agent container needs (CA trust, prompt,
//! provider files, skills, workspace, gitconfig, a resumed transcript) goes in as ONE tar
//! stream into ONE root `docker exec`, instead of an exec per file.

use std::collections::BTreeSet;
use std::path::Path;

use super::DockerError;
use crate::plan::BottlePlan;

pub(crate) const AGENT_USER: &str = "node";
pub(crate) const AGENT_UID: u64 = 1000;
pub(crate) const AGENT_HOME: &str = "/home/node";
pub(crate) const WORKDIR: &str = "/home/node/workspace";
/// The bottle CA inside the agent; also the agent's `NODE_EXTRA_CA_CERTS`.
pub(crate) const CA_PATH: &str = "/usr/local/share/ca-certificates/bot-bottle.crt";
/// System bundle after `update-ca-certificates`: `SSL_CERT_FILE`, `REQUESTS_CA_BUNDLE`.
pub(crate) const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Written by the root script as its last step; the session waits for it (see
/// [`gated_command`]). `/run` is root's, so the agent user cannot create it early.
pub(crate) const PROVISIONED_MARKER: &str = "/run/bot-bottle-provisioned";
/// Written instead of [`PROVISIONED_MARKER`] when provisioning fails; it holds the error.
pub(crate) const PROVISION_FAILED: &str = "/run/bot-bottle-provision-failed";
/// Exit code of a gated command whose bottle could not be provisioned. The launcher checks
/// [`PROVISION_FAILED`] before it believes it (the provider may exit with it too).
pub(crate) const PROVISION_FAILED_EXIT: i32 = 86;
/// Where the Docker backend's one config copy leaves the agent's provisioning stream: in the
/// socket volume both containers share, root-only (`0600`), so the agent container's own
/// root process unpacks it (see [`volume_script`]). No root `docker exec` is needed.
pub(crate) const PROVISION_TAR: &str = "/run/bot-bottle/.provision.tar";

/// After the stream is unpacked: the bottle CA is appended to the system bundle rather than
/// installed with `update-ca-certificates`, which rehashes every certificate and costs over a
/// second per start; every client the agent uses reads the bundle (`SSL_CERT_FILE`,
/// `REQUESTS_CA_BUNDLE`) or `NODE_EXTRA_CA_CERTS`. An `&&` chain, so it also stops at the
/// first failure where `set -e` does not apply (an `if` condition).
fn trust_ca() -> String {
    format!(
        "mkdir -p /etc/ssl/certs && printf '\\n' >> {SYSTEM_BUNDLE} && cat {CA_PATH} >> {SYSTEM_BUNDLE}"
    )
}

/// The root-side script run with the tar stream on stdin (smolmachines' `machine exec`).
pub(crate) fn root_script() -> String {
    format!(
        "set -e; tar -x -C /; {}; touch {PROVISIONED_MARKER}",
        trust_ca()
    )
}

/// The Docker agent container's root step before it starts the relay: unpack
/// [`PROVISION_TAR`] (complete by then: the bundle publishes the relay only after the copy's
/// ready marker, which follows the stream), trust the CA, remove the stream, and write
/// [`PROVISIONED_MARKER`], or [`PROVISION_FAILED`] with the error. A bottle without a stream
/// (none was copied) is left alone.
pub(crate) fn volume_script() -> String {
    let err = "/run/bot-bottle-provision.err";
    format!(
        "if [ -e {PROVISION_TAR} ]; then \
         if {{ tar -x -C / -f {PROVISION_TAR} && {}; }} 2>{err}; \
         then touch {PROVISIONED_MARKER}; else mv -f {err} {PROVISION_FAILED}; fi; \
         rm -f {PROVISION_TAR}; fi",
        trust_ca()
    )
}

/// The provider command behind a gate: wait until provisioning is complete, then run it in
/// the workspace. This lets the session's exec start while provisioning still runs (one
/// engine round trip less before the agent starts) without the provider ever seeing a
/// half-provisioned home. A failed provisioning ends the gate with its error on stderr and
/// [`PROVISION_FAILED_EXIT`].
pub(crate) fn gated_command(command: &[String]) -> Vec<String> {
    let mut argv = vec![
        "sh".to_string(),
        "-c".to_string(),
        format!(
            "while [ ! -e {PROVISIONED_MARKER} ]; do \
             if [ -e {PROVISION_FAILED} ]; then \
             echo \"bot-bottle: provisioning failed: $(cat {PROVISION_FAILED})\" >&2; \
             exit {PROVISION_FAILED_EXIT}; fi; sleep 0.02; done; \
             cd {WORKDIR} && exec \"$@\""
        ),
        "bot-bottle-session".to_string(),
    ];
    argv.extend(command.iter().cloned());
    argv
}

/// `~/.gitconfig` for the agent: identity, a safe-directory rule for the copied workspace and,
/// for each declared upstream, `insteadOf` rules that send every spelling of its URL to the
/// git-gate (reached through the agent's loopback relay), so clone, fetch, pull, push and
/// ls-remote of the real URL go through the gate without the agent doing anything.
pub(crate) fn gitconfig(plan: &BottlePlan) -> String {
    let mut s = String::new();
    let name = plan.git_user.name.as_ref().map(|(v, _)| v.as_str());
    let email = plan.git_user.email.as_ref().map(|(v, _)| v.as_str());
    if name.is_some() || email.is_some() {
        s.push_str("[user]\n");
        if let Some(n) = name {
            s.push_str(&format!("\tname = {}\n", quote_git(n)));
        }
        if let Some(e) = email {
            s.push_str(&format!("\temail = {}\n", quote_git(e)));
        }
    }
    s.push_str("[safe]\n\tdirectory = *\n");
    for u in &plan.git_upstreams {
        s.push_str(&format!("[url {}]\n", quote_git(&gate_url(&u.name))));
        for form in url_forms(u) {
            s.push_str(&format!("\tinsteadOf = {}\n", quote_git(&form)));
        }
    }
    s
}

/// The git-gate's URL for repo `name`, as the agent reaches it.
pub(crate) fn gate_url(name: &str) -> String {
    format!(
        "http://127.0.0.1:{}/{name}.git",
        super::sidecar_config::GIT_HTTP_PORT
    )
}

/// Every way the agent may write the upstream's URL. `insteadOf` matches prefixes and the
/// longest match wins, so both the `.git` and the bare path are listed: `repo` alone would
/// turn `repo.git` into `<name>.git.git`. The scp-like (`user@host:path`) and https forms
/// cannot carry a port, so they are listed only for port 22, where a hosting service serves
/// the same path over both.
pub(crate) fn url_forms(u: &crate::plan::GitUpstream) -> Vec<String> {
    let bare = u.path.strip_suffix(".git").unwrap_or(&u.path);
    let paths = [bare.to_string(), format!("{bare}.git")];
    let (user, host, port) = (&u.user, &u.host, u.port);
    let mut out = BTreeSet::new();
    out.insert(u.url.clone());
    for p in &paths {
        out.insert(format!("ssh://{user}@{host}:{port}/{p}"));
        if port == 22 {
            out.insert(format!("ssh://{user}@{host}/{p}"));
            out.insert(format!("{user}@{host}:{p}"));
            out.insert(format!("{user}@{host}:/{p}"));
            out.insert(format!("https://{host}/{p}"));
        }
    }
    out.into_iter().collect()
}

fn quote_git(v: &str) -> String {
    let escaped = v.replace('\\', "\\\\").replace('"', "\\\"");
    format!("\"{escaped}\"")
}

/// Builds the tar stream; directories under the agent's home are created owned by the agent.
pub(crate) struct TarStream {
    builder: tar::Builder<Vec<u8>>,
    dirs: BTreeSet<String>,
    mtime: u64,
    /// Host paths never packed (the bot-bottle home: it holds bottle files and every
    /// bottle's state, CA keys included).
    exclude: Vec<std::path::PathBuf>,
}

impl TarStream {
    pub(crate) fn new(mtime: u64) -> Self {
        TarStream {
            builder: tar::Builder::new(Vec::new()),
            dirs: BTreeSet::new(),
            mtime,
            exclude: Vec::new(),
        }
    }

    /// Never pack `path` (or anything under it) from the host.
    pub(crate) fn exclude(&mut self, path: &Path) {
        self.exclude
            .push(path.canonicalize().unwrap_or_else(|_| path.to_path_buf()));
    }

    fn header(&self, kind: tar::EntryType, mode: u32, size: u64, agent_owned: bool) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(self.mtime);
        let (uid, name) = if agent_owned {
            (AGENT_UID, AGENT_USER)
        } else {
            (0, "root")
        };
        h.set_uid(uid);
        h.set_gid(uid);
        let _ = h.set_username(name);
        let _ = h.set_groupname(name);
        h
    }

    /// Parent directories below the agent's home, agent-owned, added once.
    fn parents(&mut self, path: &str) -> Result<(), DockerError> {
        let Some(rest) = path.strip_prefix(AGENT_HOME) else {
            return Ok(());
        };
        let mut cur = AGENT_HOME.to_string();
        let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
        for part in parts.iter().take(parts.len().saturating_sub(1)) {
            cur.push('/');
            cur.push_str(part);
            if self.dirs.insert(cur.clone()) {
                let mut h = self.header(tar::EntryType::Directory, 0o755, 0, true);
                self.append(&mut h, &cur, &[][..])?;
            }
        }
        Ok(())
    }

    fn append(&mut self, h: &mut tar::Header, path: &str, data: &[u8]) -> Result<(), DockerError> {
        let rel = path.trim_start_matches('/');
        self.builder
            .append_data(h, rel, data)
            .map_err(|e| DockerError::Other(format!("cannot pack `{path}`: {e}")))
    }

    pub(crate) fn dir(&mut self, path: &str, mode: u32) -> Result<(), DockerError> {
        self.parents(path)?;
        if self.dirs.insert(path.to_string()) {
            let owned = path.starts_with(AGENT_HOME);
            let mut h = self.header(tar::EntryType::Directory, mode, 0, owned);
            self.append(&mut h, path, &[][..])?;
        }
        Ok(())
    }

    pub(crate) fn file(&mut self, path: &str, data: &[u8], mode: u32) -> Result<(), DockerError> {
        self.parents(path)?;
        let owned = path.starts_with(AGENT_HOME);
        let mut h = self.header(tar::EntryType::Regular, mode, data.len() as u64, owned);
        self.append(&mut h, path, data)
    }

    /// A host directory, recursively, under `dest`. Symlinks are kept as links (never
    /// followed, so a link cannot pull a host file outside the tree into the bottle).
    pub(crate) fn host_tree(&mut self, src: &Path, dest: &str) -> Result<(), DockerError> {
        self.dir(dest, 0o755)?;
        let mut entries: Vec<_> = std::fs::read_dir(src)
            .map_err(|e| DockerError::io(src, e))?
            .filter_map(Result::ok)
            .collect();
        entries.sort_by_key(std::fs::DirEntry::file_name);
        for entry in entries {
            let path = entry.path();
            if self
                .exclude
                .iter()
                .any(|x| path == *x || path.canonicalize().is_ok_and(|c| c == *x))
            {
                tracing::info!("not copied into the bottle: {}", path.display());
                continue;
            }
            let name = entry.file_name().to_string_lossy().to_string();
            let target = format!("{dest}/{name}");
            let meta = std::fs::symlink_metadata(&path).map_err(|e| DockerError::io(&path, e))?;
            let ft = meta.file_type();
            if ft.is_dir() {
                self.host_tree(&path, &target)?;
            } else if ft.is_file() {
                use std::os::unix::fs::PermissionsExt;
                let data = std::fs::read(&path).map_err(|e| DockerError::io(&path, e))?;
                let mode = meta.permissions().mode() & 0o755 | 0o600;
                self.file(&target, &data, mode)?;
            } else if ft.is_symlink() {
                let link = std::fs::read_link(&path).map_err(|e| DockerError::io(&path, e))?;
                let mut h = self.header(tar::EntryType::Symlink, 0o777, 0, true);
                let rel = target.trim_start_matches('/').to_string();
                self.builder
                    .append_link(&mut h, rel, &link)
                    .map_err(|e| DockerError::Other(format!("cannot pack `{target}`: {e}")))?;
            }
            // Sockets, fifos and devices are skipped: they mean nothing in the bottle.
        }
        Ok(())
    }

    pub(crate) fn finish(self) -> Result<Vec<u8>, DockerError> {
        self.builder
            .into_inner()
            .map_err(|e| DockerError::Other(format!("cannot finish the provisioning stream: {e}")))
    }
}

/// Everything that goes into the agent container after start.
pub(crate) struct ProvisionInput<'a> {
    pub plan: &'a BottlePlan,
    pub ca_cert_pem: &'a str,
    /// Host transcript snapshot to restore (resume).
    pub transcript: Option<&'a Path>,
}

pub(crate) fn build(input: &ProvisionInput<'_>) -> Result<Vec<u8>, DockerError> {
    let plan = input.plan;
    // Entries carry the plan's start time: the stream is the same for the same plan.
    let mut t = TarStream::new(plan.started_at);
    t.exclude(&plan.root);
    t.file(CA_PATH, input.ca_cert_pem.as_bytes(), 0o644)?;
    t.dir(&format!("{AGENT_HOME}/.bot-bottle"), 0o700)?;
    t.file(&plan.provider.prompt_path, plan.prompt.as_bytes(), 0o600)?;
    for f in &plan.provider.files {
        t.file(&f.path, f.contents.as_bytes(), f.mode)?;
    }
    for skill in &plan.skills {
        let dest = format!("{AGENT_HOME}/.claude/skills/{}", skill.name);
        t.host_tree(&skill.host_path, &dest)?;
    }
    t.file(
        &format!("{AGENT_HOME}/.gitconfig"),
        gitconfig(plan).as_bytes(),
        0o644,
    )?;
    if plan.copy_cwd {
        t.host_tree(&plan.cwd, WORKDIR)?;
    } else {
        t.dir(WORKDIR, 0o755)?;
    }
    if let Some(dir) = input.transcript.filter(|d| d.is_dir()) {
        t.host_tree(dir, &plan.provider.transcript_dir)?;
    }
    t.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::GitUpstream;

    fn upstream(url: &str) -> GitUpstream {
        let (user, host, port, path) = crate::plan::parse_ssh_url(url).unwrap();
        GitUpstream {
            name: "proj".into(),
            url: url.into(),
            user,
            host,
            port,
            path,
            identity: "/k".into(),
            host_key: None,
            refs: Default::default(),
            extra_hosts: Default::default(),
        }
    }

    /// What git does with `insteadOf`: the longest matching prefix is replaced.
    fn rewrite(config: &str, url: &str) -> String {
        let mut base = None;
        let mut best: Option<(usize, String)> = None;
        for line in config.lines() {
            if let Some(b) = line.strip_prefix("[url \"") {
                base = b.strip_suffix("\"]").map(str::to_string);
            } else if let Some(v) = line.trim().strip_prefix("insteadOf = ") {
                let v = v.trim_matches('"');
                if url.starts_with(v) && best.as_ref().is_none_or(|(n, _)| v.len() > *n) {
                    let to = base.clone().unwrap();
                    best = Some((v.len(), format!("{to}{}", &url[v.len()..])));
                }
            }
        }
        best.map_or_else(|| url.to_string(), |(_, u)| u)
    }

    #[test]
    fn every_spelling_of_the_upstream_goes_to_the_gate() {
        use crate::plan::testutil::{agent, bottle, host, manifest};
        let m = manifest(vec![bottle("dev")], vec![agent("reviewer", "dev")]);
        let opts = crate::plan::StartOptions {
            gvisor: Some(false),
            ..crate::plan::StartOptions::fresh(crate::plan::BackendKind::Docker)
        };
        let mut plan = crate::plan::resolve(&m, "reviewer", &opts, &host()).unwrap();
        plan.git_upstreams = vec![upstream("ssh://git@github.com/org/proj.git")];
        let config = gitconfig(&plan);
        let gate = "http://127.0.0.1:9420/proj.git";
        for url in [
            "ssh://git@github.com/org/proj.git",
            "ssh://git@github.com/org/proj",
            "ssh://git@github.com:22/org/proj.git",
            "git@github.com:org/proj.git",
            "git@github.com:org/proj",
            "git@github.com:/org/proj.git",
            "https://github.com/org/proj.git",
            "https://github.com/org/proj",
        ] {
            assert_eq!(rewrite(&config, url), gate, "{url}\n{config}");
        }
        // Other repos of the host are left alone (the agent has no route to them anyway).
        assert_eq!(
            rewrite(&config, "git@github.com:org/other.git"),
            "git@github.com:org/other.git"
        );
        assert!(config.contains("[safe]\n\tdirectory = *\n"));
    }

    #[test]
    fn a_custom_port_has_only_ssh_url_forms() {
        let u = upstream("ssh://gitea@code.example:2222/me/p.git");
        let forms = url_forms(&u);
        assert_eq!(
            forms,
            [
                "ssh://gitea@code.example:2222/me/p",
                "ssh://gitea@code.example:2222/me/p.git"
            ]
        );
    }
}
