//! What the sidecar bundle reads at start: the egress routes file, the bottle CA, the
//! git-gate's repos file and each daemon's argv, rendered from the plan through the typed wire
//! format ([`crate::sidecar::wire`]) that the daemons parse. Rendering is pure; the launcher
//! copies the files into the bundle through the engine. No credential of egress is ever in
//! these files: those reach egress only through its environment (`EGRESS_TOKEN_N`). The one
//! exception is the git-gate's SSH identity file, which ssh can only read from a file: it goes
//! to the bundle alone, mode 0600, in the same tar stream (never the agent, never the host
//! disk, never the compose file).

use super::DockerError;
use super::compose::{SIDECAR_CONFIG_DIR, SIDECAR_LOG_DIR, SOCKET_DIR};
use crate::plan::BottlePlan;
use crate::sidecar::git_gate::{RefPolicy, RepoConfig, ReposFile};
use crate::sidecar::wire::{
    CA_CERT_FILE, CA_KEY_FILE, DaemonArgv, EXTRA_CA_FILE, GIT_GATE_REPOS_FILE, GRANTS_FILE,
    ROUTES_FILE, RouteEntry, RoutesFile, WireFile, daemon_args_file,
};

pub(crate) const EGRESS_BIN: &str = "/usr/local/bin/bot-bottle-egress";
/// The supervise daemon inside the sidecar image.
pub(crate) const SUPERVISE_BIN: &str = crate::requests::SUPERVISE_BIN;
/// Supervise's socket in the shared volume; the agent's relay forwards its loopback port
/// 9100 here.
pub(crate) const SUPERVISE_SOCKET: &str = "supervise.sock";

pub(crate) const GIT_GATE_BIN: &str = "/usr/local/bin/bot-bottle-git-gate";
/// The git-gate's mirrors, hook and known-hosts files inside the bundle.
pub(crate) const GIT_GATE_STATE_DIR: &str = "/var/lib/bot-bottle/git-gate";
/// The socket the git-gate serves smart HTTP on; the agent's relay forwards
/// [`GIT_HTTP_PORT`] to it.
pub(crate) const GIT_HTTP_SOCKET: &str = "git-http.sock";
/// The agent's loopback port for the git-gate (see `compose::RELAY_PORTS`).
pub(crate) const GIT_HTTP_PORT: u16 = 9420;
/// Egress's audit log in the bundle's log dir.
pub(crate) const EGRESS_AUDIT_LOG: &str = "egress-audit.jsonl";
/// The git-gate's audit log in the bundle's log dir (egress's line shape).
pub(crate) const GIT_GATE_AUDIT_LOG: &str = "git-gate-audit.jsonl";

/// The daemons this bundle runs (the init's `BOT_BOTTLE_SIDECAR_DAEMONS`): egress always, the
/// git-gate when the bottle declares repos, supervise with `supervise: true`.
pub(crate) fn daemons(plan: &BottlePlan) -> Vec<String> {
    let mut v = vec!["egress".to_string()];
    if !plan.git_upstreams.is_empty() {
        v.push("git-gate".to_string());
    }
    if plan.supervise {
        v.push("supervise".to_string());
    }
    v
}

/// The identity file of repo `name` in the sidecar config dir.
pub(crate) fn git_key_file(name: &str) -> String {
    format!("git-gate-{name}.key")
}

/// The repos file the git-gate reads: each upstream, where its key is inside the bundle, its
/// pinned host key and its ref policy.
pub(crate) fn repos_document(plan: &BottlePlan) -> ReposFile {
    let repos = plan
        .git_upstreams
        .iter()
        .map(|u| RepoConfig {
            name: u.name.clone(),
            url: u.url.clone(),
            identity: format!("{SIDECAR_CONFIG_DIR}/{}", git_key_file(&u.name)).into(),
            host_key: u.host_key.clone(),
            refs: RefPolicy {
                allow: u.refs.allow.clone(),
                force: u.refs.force,
                tags: u.refs.tags,
            },
        })
        .collect();
    ReposFile { repos }
}

/// The git-gate's argv inside the bundle: smart HTTP on a unix socket in the shared volume,
/// reached from the agent only through its loopback relay, like egress.
pub(crate) fn git_gate_args() -> Vec<String> {
    vec![
        GIT_GATE_BIN.into(),
        "--listen".into(),
        format!("unix:{SOCKET_DIR}/{GIT_HTTP_SOCKET}"),
        "--repos".into(),
        format!("{SIDECAR_CONFIG_DIR}/{GIT_GATE_REPOS_FILE}"),
        "--state".into(),
        GIT_GATE_STATE_DIR.into(),
        "--audit".into(),
        format!("{SIDECAR_LOG_DIR}/{GIT_GATE_AUDIT_LOG}"),
    ]
}

/// The git-gate's files when the bottle declares repos (none otherwise): repos file, argv and
/// one identity file per repo, read from the host here, at launch, and kept in memory only.
pub(crate) fn git_gate_files(plan: &BottlePlan) -> Result<Vec<(String, String, u32)>, DockerError> {
    if plan.git_upstreams.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = vec![
        (
            GIT_GATE_REPOS_FILE.to_string(),
            repos_document(plan).render(),
            0o644,
        ),
        (
            daemon_args_file("git-gate"),
            DaemonArgv(git_gate_args()).render(),
            0o644,
        ),
    ];
    for u in &plan.git_upstreams {
        let key = std::fs::read_to_string(&u.identity).map_err(|e| {
            DockerError::Other(format!(
                "git-gate repo `{}`: cannot read the identity file {}: {e}; check `identity` in the bottle (an OpenSSH private key file)",
                u.name,
                u.identity.display()
            ))
        })?;
        // Readable by the gate (root in the bundle) only; ssh refuses a key others can read.
        out.push((git_key_file(&u.name), key, 0o600));
    }
    Ok(out)
}

/// The routes file egress reads (and re-reads when an approved change rewrites it).
pub(crate) fn routes_document(plan: &BottlePlan) -> RoutesFile {
    let routes = plan
        .routes
        .iter()
        .map(|r| RouteEntry {
            host: r.host.clone(),
            path_allowlist: r.path_allowlist.clone(),
            auth_scheme: r.auth.as_ref().map(|a| a.scheme),
            token_env: r.auth.as_ref().map(|a| a.token_env.clone()),
            tls_passthrough: r.tls_passthrough,
            ssrf_ip_allowlist: r.ssrf_ip_allowlist.clone(),
        })
        .collect();
    RoutesFile { routes }
}

/// Egress's argv inside the bundle. It listens on a unix socket in the shared volume: the
/// agent reaches it only through its loopback relay.
pub(crate) fn egress_args(has_extra_ca: bool) -> Vec<String> {
    let mut args: Vec<String> = vec![
        EGRESS_BIN.into(),
        "--listen".into(),
        format!("unix:{SOCKET_DIR}/egress.sock"),
        "--routes".into(),
        format!("{SIDECAR_CONFIG_DIR}/{ROUTES_FILE}"),
        "--ca-cert".into(),
        format!("{SIDECAR_CONFIG_DIR}/{CA_CERT_FILE}"),
        "--ca-key".into(),
        format!("{SIDECAR_CONFIG_DIR}/{CA_KEY_FILE}"),
        "--audit-log".into(),
        format!("{SIDECAR_LOG_DIR}/{EGRESS_AUDIT_LOG}"),
    ];
    if has_extra_ca {
        args.push("--extra-ca".into());
        args.push(format!("{SIDECAR_CONFIG_DIR}/{EXTRA_CA_FILE}"));
    }
    args
}

/// Supervise's argv inside the bundle: the MCP server on a unix socket in the shared volume
/// (reached by the agent only through its relay), its spool outside that volume, egress's
/// live routes and the gates' audit logs beside it (the git-gate's is absent, and read as
/// empty, when the bottle has no repos).
pub(crate) fn supervise_args(identity: &str) -> Vec<String> {
    vec![
        SUPERVISE_BIN.into(),
        "serve".into(),
        "--listen".into(),
        format!("unix:{SOCKET_DIR}/{SUPERVISE_SOCKET}"),
        "--spool".into(),
        crate::requests::BUNDLE_SPOOL.into(),
        "--routes".into(),
        format!("{SIDECAR_CONFIG_DIR}/{ROUTES_FILE}"),
        "--audit-log".into(),
        format!("{SIDECAR_LOG_DIR}/{EGRESS_AUDIT_LOG}"),
        "--audit-log".into(),
        format!("{SIDECAR_LOG_DIR}/{GIT_GATE_AUDIT_LOG}"),
        "--bottle".into(),
        identity.into(),
    ]
}

/// Egress's extra flags beside supervise: the grants file supervise writes in its spool, and
/// where egress marks used `once` grants.
pub(crate) fn supervise_egress_args() -> Vec<String> {
    let spool = crate::requests::BUNDLE_SPOOL;
    vec![
        "--grants".into(),
        format!("{spool}/{GRANTS_FILE}"),
        "--once-used-dir".into(),
        format!(
            "{spool}/{}",
            crate::sidecar::supervise::grants::ONCE_USED_DIR
        ),
    ]
}

/// Files of the sidecar config dir: (name, contents, mode).
pub(crate) fn files(
    plan: &BottlePlan,
    ca_cert_pem: &str,
    ca_key_pem: &str,
    extra_ca_pem: Option<&str>,
) -> Vec<(String, String, u32)> {
    let routes = routes_document(plan).render();
    let mut egress = egress_args(extra_ca_pem.is_some());
    if plan.supervise {
        egress.extend(supervise_egress_args());
    }
    let egress = DaemonArgv(egress).render();
    let mut out = vec![
        (ROUTES_FILE.to_string(), routes, 0o644),
        (CA_CERT_FILE.to_string(), ca_cert_pem.to_string(), 0o644),
        // The key is readable by the bundle (root in its container) and nobody else.
        (CA_KEY_FILE.to_string(), ca_key_pem.to_string(), 0o600),
        (daemon_args_file("egress"), egress, 0o644),
    ];
    if let Some(extra) = extra_ca_pem {
        out.push((EXTRA_CA_FILE.to_string(), extra.to_string(), 0o644));
    }
    if plan.supervise {
        let argv = DaemonArgv(supervise_args(&plan.identity)).render();
        out.push((daemon_args_file("supervise"), argv, 0o644));
    }
    out
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::manifest::AuthScheme;
    use crate::manifest::{PipelockOpts, Route, RouteAuth};
    use crate::plan::testutil::{agent, bottle, host, manifest};
    use crate::plan::{BackendKind, StartOptions, resolve};
    use crate::sidecar::egress::EgressArgs;
    use crate::sidecar::egress::config::parse_routes;
    use crate::sidecar::egress::routes::RouteTable;

    const PAT: &str = "PAT-SECRET-222";

    fn plan() -> BottlePlan {
        let mut b = bottle("dev");
        b.egress.routes = vec![
            Route {
                host: "GitHub.com".into(),
                path_allowlist: vec!["/repos/".into()],
                auth: Some(RouteAuth {
                    scheme: AuthScheme::Token,
                    token_ref: "GH_PAT".into(),
                }),
                pipelock: PipelockOpts {
                    tls_passthrough: false,
                    ssrf_ip_allowlist: vec!["10.0.0.0/8".parse().unwrap()],
                },
            },
            Route {
                host: "pypi.example".into(),
                path_allowlist: vec![],
                auth: None,
                pipelock: PipelockOpts {
                    tls_passthrough: true,
                    ssrf_ip_allowlist: vec![],
                },
            },
        ];
        let mut h = host();
        h.vars.insert("GH_PAT".into(), PAT.into());
        let opts = StartOptions {
            gvisor: Some(true),
            ..StartOptions::fresh(BackendKind::Docker)
        };
        resolve(
            &manifest(vec![b], vec![agent("reviewer", "dev")]),
            "reviewer",
            &opts,
            &h,
        )
        .unwrap()
    }

    #[test]
    fn egress_loads_what_the_launcher_writes_and_no_file_holds_the_token() {
        let plan = plan();
        let files = files(&plan, "CERT", "KEY", Some("EXTRA"));
        let names: Vec<_> = files.iter().map(|f| f.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "routes.json",
                "ca.pem",
                "ca-key.pem",
                "egress.args.json",
                "extra-ca.pem"
            ]
        );
        for (name, text, _) in &files {
            assert!(!text.contains(PAT), "{name} holds the token value");
        }
        // The reader: egress's own parser and route table, with the token from the slot.
        let routes = parse_routes(&files[0].1).unwrap();
        let env = |k: &str| plan.egress_tokens.get(k).map(|s| s.expose().to_string());
        let table = RouteTable::build(routes, &env).unwrap();
        let gh = table.lookup("github.com").unwrap();
        let auth = gh.auth.as_ref().unwrap();
        assert_eq!(auth.scheme, AuthScheme::Token);
        assert_eq!(auth.value.expose(), PAT);
        assert!(gh.path_allowed("/repos/x") && !gh.path_allowed("/admin"));
        assert_eq!(gh.ssrf_ip_allowlist[0].to_string(), "10.0.0.0/8");
        assert!(table.lookup("pypi.example").unwrap().tunnels());
        // The argv file is what the init execs, and egress's flags accept it.
        let argv = DaemonArgv::parse(&files[3].1).unwrap().0;
        let args = EgressArgs::try_parse_from(&argv).unwrap();
        assert!(args.routes.ends_with(ROUTES_FILE));
        assert!(args.extra_ca[0].ends_with(EXTRA_CA_FILE));
        assert_eq!(files[2].2, 0o600, "the CA key is private");
    }

    #[test]
    fn the_gate_runs_only_with_repos_and_reads_what_the_launcher_writes() {
        let mut plan = plan();
        assert_eq!(daemons(&plan), ["egress"]);
        assert!(git_gate_files(&plan).unwrap().is_empty());
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("id");
        std::fs::write(&key, "KEY-BYTES\n").unwrap();
        plan.git_upstreams = vec![crate::plan::GitUpstream {
            name: "proj".into(),
            url: "ssh://git@git.internal:2222/org/proj.git".into(),
            user: "git".into(),
            host: "git.internal".into(),
            port: 2222,
            path: "org/proj.git".into(),
            identity: key.clone(),
            host_key: Some("ssh-ed25519 AAAAC3Nz".into()),
            refs: crate::manifest::GitRefs {
                allow: vec!["agent/*".into()],
                force: false,
                tags: true,
            },
            extra_hosts: Default::default(),
        }];
        assert_eq!(daemons(&plan), ["egress", "git-gate"]);
        let files = git_gate_files(&plan).unwrap();
        let names: Vec<_> = files.iter().map(|f| (f.0.as_str(), f.2)).collect();
        assert_eq!(
            names,
            [
                ("git-gate.json", 0o644),
                ("git-gate.args.json", 0o644),
                ("git-gate-proj.key", 0o600)
            ]
        );
        assert_eq!(files[2].1, "KEY-BYTES\n");
        assert!(!files[0].1.contains("KEY-BYTES"));
        // The gate's own parsers accept both files.
        let repos = ReposFile::parse(&files[0].1).unwrap().into_map().unwrap();
        assert_eq!(
            repos["proj"].identity,
            std::path::Path::new("/etc/bot-bottle/git-gate-proj.key")
        );
        assert!(repos["proj"].refs.tags);
        let argv = DaemonArgv::parse(&files[1].1).unwrap().0;
        let args = crate::sidecar::git_gate::GateArgs::try_parse_from(&argv).unwrap();
        assert!(args.repos.ends_with(GIT_GATE_REPOS_FILE));
        // A key file that went away between plan and launch is a clear error.
        std::fs::remove_file(&key).unwrap();
        let err = git_gate_files(&plan).unwrap_err().to_string();
        assert!(err.contains("proj") && err.contains("identity"), "{err}");
    }
}
