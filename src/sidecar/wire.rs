//! The wire format between the launcher and the sidecar daemons: every file the launcher
//! writes for the sidecar bundle, as serde types that both sides use.
//!
//! Shape of the contract:
//! - **One type per file**, each implementing [`WireFile`]: its file name, its mode and its
//!   JSON rendering and parsing live together here. The writer (the backend's
//!   `sidecar_config`) renders these types; the readers (the init, egress) parse the same
//!   types. Nothing walks a generic JSON value by hand.
//! - **JSON, named `.json`**, rendered pretty with a final newline. Every struct is
//!   `#[serde(deny_unknown_fields)]`: a misspelt key, or a key from a newer launcher than the
//!   sidecar image understands, is refused with the key's name instead of being ignored.
//! - **No secrets.** A route names the environment slot holding its credential
//!   (`token_env`, e.g. `EGRESS_TOKEN_0`); the value reaches the daemon only through its
//!   environment.
//! - **Adding a daemon's config** (git-gate, supervise): add a struct here with
//!   `deny_unknown_fields`, implement [`WireFile`] for it (name `<daemon>.json`), add it to
//!   the round-trip test, render it in the backend and parse it in the daemon. A change that
//!   old readers cannot parse takes a new file name (`routes.v2.json`) rather than a version
//!   field, so a stale sidecar image fails with "file not found" naming the file.
//!
//! PEM files (`ca.pem`, `ca-key.pem`, `extra-ca.pem`) are written as they are; only their
//! names live here.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The egress routes file.
pub(crate) const ROUTES_FILE: &str = "routes.json";
/// The bottle CA certificate (PEM).
pub(crate) const CA_CERT_FILE: &str = "ca.pem";
/// The bottle CA private key (PEM, mode 0600).
pub(crate) const CA_KEY_FILE: &str = "ca-key.pem";
/// Extra upstream roots for egress (PEM), when the operator configured any.
pub(crate) const EXTRA_CA_FILE: &str = "extra-ca.pem";
/// The routes granted at run time (written by supervise in its spool, read by egress).
pub(crate) const GRANTS_FILE: &str = "granted.json";

/// The git-gate's repos file ([`crate::sidecar::git_gate::ReposFile`]): upstream, path of the
/// identity file inside the bundle, pinned host key and ref policy per repo. No key material.
pub(crate) const GIT_GATE_REPOS_FILE: &str = "git-gate.json";

/// Largest wire file a reader accepts; the launcher renders a few kilobytes.
pub(crate) const MAX_FILE_BYTES: u64 = 1 << 20;

/// The argv file of daemon `name`, read by the bundle's init.
pub(crate) fn daemon_args_file(name: &str) -> String {
    format!("{name}.args.json")
}

/// A file of the sidecar config dir with a typed JSON body.
pub(crate) trait WireFile: Serialize + DeserializeOwned {
    /// What the file is, for error messages ("routes file").
    const WHAT: &'static str;

    /// The text the launcher writes.
    fn render(&self) -> String {
        // Serialising these plain structs cannot fail: no maps with non-string keys.
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }

    /// Parse the text a reader found; the error names the key or position and the fix.
    fn parse(text: &str) -> Result<Self, String> {
        serde_json::from_str(text).map_err(|e| {
            format!(
                "not a valid {} ({e}); it is written by the launcher as JSON: rebuild the sidecar image if the launcher is newer",
                Self::WHAT
            )
        })
    }
}

/// How a route's credential is written: `Authorization: <scheme> <value>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) enum AuthScheme {
    #[serde(rename = "Bearer")]
    Bearer,
    #[serde(rename = "token")]
    Token,
}

impl AuthScheme {
    /// The spelling used in manifests, on the wire and in the header.
    #[cfg(test)]
    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "Bearer" => Some(AuthScheme::Bearer),
            "token" => Some(AuthScheme::Token),
            _ => None,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            AuthScheme::Bearer => "Bearer",
            AuthScheme::Token => "token",
        }
    }
}

/// `routes.json`: the hosts egress lets the agent reach. Re-read live when it changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RoutesFile {
    pub routes: Vec<RouteEntry>,
}

impl WireFile for RoutesFile {
    const WHAT: &'static str = "routes file";
}

/// One route of [`RoutesFile`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RouteEntry {
    /// Host name or address; egress normalises and validates it.
    pub host: String,
    /// Path prefixes, each starting with `/`; empty allows every path.
    #[serde(default)]
    pub path_allowlist: Vec<String>,
    /// Set together with `token_env` (egress refuses one without the other).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_scheme: Option<AuthScheme>,
    /// The egress environment variable holding the credential: a slot name, never a value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_env: Option<String>,
    #[serde(default)]
    pub tls_passthrough: bool,
    /// Internal destinations this route may reach: CIDRs, or bare addresses for one host.
    #[serde(default, with = "cidr_list")]
    pub(crate) ssrf_ip_allowlist: Vec<IpNet>,
}

impl RouteEntry {
    /// A route to `host` with no options.
    #[cfg(test)]
    pub(crate) fn host(host: impl Into<String>) -> Self {
        RouteEntry {
            host: host.into(),
            path_allowlist: Vec::new(),
            auth_scheme: None,
            token_env: None,
            tls_passthrough: false,
            ssrf_ip_allowlist: Vec::new(),
        }
    }
}

impl WireFile for crate::sidecar::git_gate::ReposFile {
    const WHAT: &'static str = "git-gate repos file";
}

/// `granted.json`: the routes the operator granted at run time, written whole by supervise
/// (its only writer) and read by egress beside `routes.json` (whose only writers are the
/// launcher and `launch::update_routes`). Egress's live policy is the two together, so
/// neither writer can undo the other's change. Re-read live when it changes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GrantsFile {
    pub grants: Vec<GrantEntry>,
}

impl WireFile for GrantsFile {
    const WHAT: &'static str = "granted routes file";
}

/// One grant of [`GrantsFile`]: on `host`, requests under `path_prefixes` (all paths when
/// empty) with one of `methods` (any when empty). A grant on a host with a route widens that
/// route (its credential and SSRF allowances apply); on another host it is the only way in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GrantEntry {
    /// The request id it answers (names the grant in audit lines).
    pub id: String,
    pub host: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub path_prefixes: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Serves one request, then refuses (egress marks it used).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub once: bool,
}

/// `<name>.args.json`: a daemon's argv, program first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct DaemonArgv(pub Vec<String>);

impl WireFile for DaemonArgv {
    const WHAT: &'static str = "daemon argv file (a JSON array of strings)";
}

/// A CIDR, or a bare address meaning a single host.
pub(crate) fn parse_cidr(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}

/// `Vec<IpNet>` as a list of strings, accepting bare addresses.
mod cidr_list {
    use super::*;

    pub(super) fn serialize<S: Serializer>(v: &[IpNet], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(ToString::to_string))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|c| {
                parse_cidr(c).ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        "`{c}` in `ssrf_ip_allowlist` is not a CIDR or address"
                    ))
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full_routes() -> RoutesFile {
        RoutesFile {
            routes: vec![
                RouteEntry {
                    host: "api.example.com".into(),
                    path_allowlist: vec!["/v1/".into()],
                    auth_scheme: Some(AuthScheme::Bearer),
                    token_env: Some("EGRESS_TOKEN_0".into()),
                    tls_passthrough: false,
                    ssrf_ip_allowlist: vec![
                        "10.0.0.0/8".parse().unwrap(),
                        "192.168.1.1/32".parse().unwrap(),
                    ],
                },
                RouteEntry {
                    tls_passthrough: true,
                    ..RouteEntry::host("pass.example.com")
                },
                RouteEntry {
                    auth_scheme: Some(AuthScheme::Token),
                    token_env: Some("EGRESS_TOKEN_1".into()),
                    ..RouteEntry::host("git.example")
                },
            ],
        }
    }

    #[test]
    fn every_wire_file_round_trips() {
        let routes = full_routes();
        let text = routes.render();
        assert!(text.ends_with('\n'));
        assert_eq!(RoutesFile::parse(&text).unwrap(), routes);
        let grants = GrantsFile {
            grants: vec![
                GrantEntry {
                    id: "0000000000001-00000a".into(),
                    host: "a.test".into(),
                    path_prefixes: vec!["/x/".into()],
                    methods: vec!["GET".into()],
                    once: true,
                },
                GrantEntry {
                    id: "0000000000001-00000b".into(),
                    host: "b.test".into(),
                    path_prefixes: vec![],
                    methods: vec![],
                    once: false,
                },
            ],
        };
        assert_eq!(GrantsFile::parse(&grants.render()).unwrap(), grants);
        assert!(GrantsFile::parse(r#"{"grants": [{"id": "1", "host": "a", "ttl": 1}]}"#).is_err());
        let argv = DaemonArgv(vec!["/bin/egress".into(), "--x".into(), "a b".into()]);
        assert_eq!(DaemonArgv::parse(&argv.render()).unwrap(), argv);
        assert_eq!(
            RoutesFile::parse(&RoutesFile { routes: vec![] }.render()).unwrap(),
            RoutesFile { routes: vec![] }
        );
        use crate::sidecar::git_gate::{RefPolicy, RepoConfig, ReposFile};
        let repos = ReposFile {
            repos: vec![RepoConfig {
                name: "proj".into(),
                url: "ssh://git@code.example:2222/me/proj.git".into(),
                identity: "/etc/bot-bottle/git-gate-proj.key".into(),
                host_key: Some("code.example ssh-ed25519 AAAA".into()),
                refs: RefPolicy {
                    allow: vec!["agent/*".into()],
                    force: true,
                    tags: false,
                },
            }],
        };
        assert_eq!(ReposFile::parse(&repos.render()).unwrap(), repos);
        let e = ReposFile::parse(r#"{"repos": [], "keys": 1}"#).unwrap_err();
        assert!(
            e.contains("keys") && e.contains("git-gate repos file"),
            "{e}"
        );
    }

    #[test]
    fn rendered_routes_use_the_documented_keys() {
        let v: serde_json::Value = serde_json::from_str(&full_routes().render()).unwrap();
        let r0 = &v["routes"][0];
        assert_eq!(r0["auth_scheme"], "Bearer");
        assert_eq!(r0["token_env"], "EGRESS_TOKEN_0");
        assert_eq!(r0["ssrf_ip_allowlist"][1], "192.168.1.1/32");
        assert_eq!(v["routes"][2]["auth_scheme"], "token");
        // Absent auth is absent, not null.
        assert!(v["routes"][1].get("auth_scheme").is_none());
    }

    #[test]
    fn optional_keys_default_and_bare_addresses_are_hosts() {
        let f = RoutesFile::parse(
            r#"{"routes": [{"host": "a.test", "ssrf_ip_allowlist": ["10.1.2.3", "fd00::/8"]}]}"#,
        )
        .unwrap();
        let r = &f.routes[0];
        assert!(r.path_allowlist.is_empty() && r.auth_scheme.is_none() && !r.tls_passthrough);
        assert_eq!(r.ssrf_ip_allowlist[0].to_string(), "10.1.2.3/32");
        assert_eq!(r.ssrf_ip_allowlist[1].to_string(), "fd00::/8");
    }

    #[test]
    fn malformed_files_are_refused_naming_the_problem() {
        for (text, needle) in [
            (r#"{"routes": [{"host": "a", "colour": 1}]}"#, "colour"),
            (r#"{"routes": [], "extra": 1}"#, "extra"),
            (
                r#"{"routes": [{"host": "a", "auth_scheme": "basic"}]}"#,
                "basic",
            ),
            (r#"{"routes": [{"path_allowlist": []}]}"#, "host"),
            (
                r#"{"routes": [{"host": "a", "ssrf_ip_allowlist": ["nope"]}]}"#,
                "nope",
            ),
            (
                r#"{"routes": [{"host": "a", "tls_passthrough": "yes"}]}"#,
                "yes",
            ),
            (r#"{"routes": [{"host": "a", "host": "b"}]}"#, "duplicate"),
            ("routes:\n  - host: a\n", "routes file"),
            ("", "routes file"),
            ("[1,2]", "routes file"),
        ] {
            let e = RoutesFile::parse(text).unwrap_err();
            assert!(e.contains(needle), "{text:?}: {e}");
        }
        assert!(DaemonArgv::parse(r#"{"a":1}"#).is_err());
        assert!(DaemonArgv::parse("[1]").is_err());
    }

    #[test]
    fn auth_scheme_spellings() {
        for s in [AuthScheme::Bearer, AuthScheme::Token] {
            assert_eq!(AuthScheme::parse(s.as_str()), Some(s));
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
        assert_eq!(AuthScheme::parse("bearer"), None);
    }

    #[test]
    fn file_names_match_their_format() {
        assert!(ROUTES_FILE.ends_with(".json"));
        assert!(GIT_GATE_REPOS_FILE.ends_with(".json"));
        assert_eq!(daemon_args_file("egress"), "egress.args.json");
    }
}
