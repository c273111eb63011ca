//! Strict validation of one file's frontmatter: JSON value → typed bottle or agent.
//!
//! Every key is checked against an allowlist and every value against its type; nothing is
//! coerced. A bottle is validated on its own here (fields stay `Option` so `extends` can
//! tell "declared" from "omitted"); merging happens in [`super::extends`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::error::{ManifestError, did_you_mean};
use super::types::*;

pub(crate) const BOTTLE_KEYS: &[&str] = &[
    "agent_provider",
    "egress",
    "env",
    "extends",
    "git-gate",
    "limits",
    "supervise",
];
pub(crate) const AGENT_KEYS: &[&str] = &[
    "bottle",
    "color",
    "description",
    "git-gate",
    "memory",
    "model",
    "name",
    "skills",
];
const PROVIDER_KEYS: &[&str] = &[
    "auth_token",
    "dockerfile",
    "forward_host_credentials",
    "template",
];
const GIT_GATE_KEYS: &[&str] = &["repos", "user"];
const GIT_USER_KEYS: &[&str] = &["email", "name"];
const REPO_KEYS: &[&str] = &["extra_hosts", "host_key", "identity", "refs", "url"];
const REFS_KEYS: &[&str] = &["allow", "force", "tags"];
const EGRESS_KEYS: &[&str] = &["routes"];
const ROUTE_KEYS: &[&str] = &["auth", "host", "path_allowlist", "pipelock"];
const AUTH_KEYS: &[&str] = &["scheme", "token_ref"];
const PIPELOCK_KEYS: &[&str] = &["ssrf_ip_allowlist", "tls_passthrough"];
const LIMITS_KEYS: &[&str] = &["agent", "bundle"];
const LIMIT_SET_KEYS: &[&str] = &["cpus", "memory", "pids"];
/// Bounds of the `limits` values: below the minimums not even the relay or a shell starts
/// reliably; the maximums only catch typos (an extra zero or a unit mix-up).
pub(crate) const MIN_MEMORY_BYTES: u64 = 64 * 1024 * 1024;
pub(crate) const MAX_MEMORY_BYTES: u64 = 1024 * 1024 * 1024 * 1024;
pub(crate) const MIN_PIDS: u32 = 32;
pub(crate) const MAX_PIDS: u32 = 4_194_304;
pub(crate) const MAX_CPUS_CENTI: u32 = 1024 * 100;

/// Where the format is described; named by the "unknown key" error.
pub(crate) const FORMAT_DOC: &str = "docs/manifest.md";

/// Every key table the validator checks against, with the file kind and the dotted path it
/// applies under (`[]` marks a list item, `<name>` a map entry). The documentation test walks
/// this, so a key added to a table and not to `docs/manifest.md` fails the build.
#[cfg(test)]
pub(crate) const KEY_TABLES: &[(&str, &str, &[&str])] = &[
    ("bottle", "", BOTTLE_KEYS),
    ("bottle", "agent_provider", PROVIDER_KEYS),
    ("bottle", "git-gate", GIT_GATE_KEYS),
    ("bottle", "git-gate.user", GIT_USER_KEYS),
    ("bottle", "git-gate.repos.<name>", REPO_KEYS),
    ("bottle", "git-gate.repos.<name>.refs", REFS_KEYS),
    ("bottle", "egress", EGRESS_KEYS),
    ("bottle", "egress.routes[]", ROUTE_KEYS),
    ("bottle", "egress.routes[].auth", AUTH_KEYS),
    ("bottle", "egress.routes[].pipelock", PIPELOCK_KEYS),
    ("bottle", "limits", LIMITS_KEYS),
    ("bottle", "limits.agent", LIMIT_SET_KEYS),
    ("bottle", "limits.bundle", LIMIT_SET_KEYS),
    ("agent", "", AGENT_KEYS),
    ("agent", "git-gate.user", GIT_USER_KEYS),
];

/// A bottle as declared in its file; `None` means the key was omitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawBottle {
    pub name: String,
    pub path: PathBuf,
    pub(crate) extends: Option<String>,
    pub env: Option<BTreeMap<String, EnvValue>>,
    pub agent_provider: Option<AgentProvider>,
    pub(crate) git_user: Option<GitUser>,
    pub(crate) git_repos: Option<BTreeMap<String, GitRepo>>,
    pub egress: Option<Egress>,
    pub supervise: Option<bool>,
    pub limits: Option<Limits>,
}

/// `[A-Za-z_][A-Za-z0-9_]*`: a name that can be an environment variable.
pub(crate) fn is_env_name(s: &str) -> bool {
    let mut b = s.bytes();
    b.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// Checks the `${NAME}` references of an env value; returns whether it has any.
pub(crate) fn check_template(s: &str) -> Result<bool, String> {
    let parts = super::template::parse(s)?;
    Ok(parts
        .iter()
        .any(|p| matches!(p, super::template::Part::Var(_))))
}

/// Quotes a user value for an error message, shortened and on one line.
fn clip(s: &str) -> String {
    let mut out: String = s.chars().take(60).collect();
    if s.chars().count() > 60 {
        out.push('…');
    }
    out
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing (an empty value)",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

/// Validation context for one file.
struct V<'a> {
    path: &'a Path,
}

impl V<'_> {
    fn err(&self, key: &str, msg: impl Into<String>) -> ManifestError {
        ManifestError::invalid(self.path, key, msg)
    }

    fn map<'v>(&self, v: &'v Value, key: &str) -> Result<&'v Map<String, Value>, ManifestError> {
        v.as_object()
            .ok_or_else(|| self.err(key, format!("expected a mapping, got {}", kind(v))))
    }

    fn list<'v>(&self, v: &'v Value, key: &str) -> Result<&'v Vec<Value>, ManifestError> {
        v.as_array()
            .ok_or_else(|| self.err(key, format!("expected a list, got {}", kind(v))))
    }

    fn string<'v>(&self, v: &'v Value, key: &str) -> Result<&'v str, ManifestError> {
        match v {
            Value::String(s) => Ok(s),
            Value::Number(_) | Value::Bool(_) => {
                Err(self.err(key, format!("expected a string, got {}; quote it", kind(v))))
            }
            _ => Err(self.err(key, format!("expected a string, got {}", kind(v)))),
        }
    }

    fn nonempty<'v>(&self, v: &'v Value, key: &str) -> Result<&'v str, ManifestError> {
        let s = self.string(v, key)?;
        if s.trim().is_empty() {
            return Err(self.err(key, "must not be empty"));
        }
        Ok(s)
    }

    fn boolean(&self, v: &Value, key: &str) -> Result<bool, ManifestError> {
        match v {
            Value::Bool(b) => Ok(*b),
            Value::String(s)
                if ["yes", "no", "on", "off", "y", "n"].contains(&s.to_lowercase().as_str()) =>
            {
                Err(self.err(
                    key,
                    format!(
                        "expected a boolean, got the string `{}` (YAML 1.2 reads it as text); write true or false",
                        clip(s)
                    ),
                ))
            }
            _ => Err(self.err(
                key,
                format!("expected a boolean (true or false), got {}", kind(v)),
            )),
        }
    }

    fn env_name(&self, v: &Value, key: &str) -> Result<String, ManifestError> {
        let s = self.string(v, key)?;
        if !is_env_name(s) {
            return Err(self.err(
                key,
                format!(
                    "`{}` is not an environment variable name; use letters, digits and `_`, not starting with a digit",
                    clip(s)
                ),
            ));
        }
        Ok(s.to_owned())
    }

    /// Refuses keys outside `allowed`, with a hint for likely typos.
    fn keys(
        &self,
        m: &Map<String, Value>,
        prefix: &str,
        allowed: &[&str],
    ) -> Result<(), ManifestError> {
        for k in m.keys() {
            if allowed.contains(&k.as_str()) {
                continue;
            }
            let hint = did_you_mean(k, allowed)
                .map(|s| format!("did you mean `{s}`? "))
                .unwrap_or_default();
            return Err(self.err(
                &join(prefix, k),
                format!(
                    "unknown key; {hint}allowed keys: {} (the format is described in {FORMAT_DOC})",
                    allowed.join(", ")
                ),
            ));
        }
        Ok(())
    }
}

fn top_map<'v>(v: &V<'_>, fm: &'v Value) -> Result<Option<&'v Map<String, Value>>, ManifestError> {
    match fm {
        Value::Null => Ok(None),
        Value::Object(m) => Ok(Some(m)),
        other => Err(v.err(
            "",
            format!("frontmatter must be a mapping of keys, got {}", kind(other)),
        )),
    }
}

/// Validates a bottle file's frontmatter.
pub fn bottle(path: &Path, name: &str, fm: &Value) -> Result<RawBottle, ManifestError> {
    let v = V { path };
    let empty = Map::new();
    let m = top_map(&v, fm)?.unwrap_or(&empty);
    for (key, msg) in [
        (
            "runtime",
            "removed: the runtime is chosen automatically (runsc when Docker has gVisor registered); delete this key",
        ),
        (
            "ssh",
            "removed: declare SSH upstreams under `git-gate.repos` (url, identity, host_key); the git gate holds the key",
        ),
        (
            "git",
            "replaced by `git-gate`: move `git.user` to `git-gate.user` and `git.remotes` to `git-gate.repos` (url, identity, host_key)",
        ),
        ("git_user", "removed: move it to `git-gate.user`"),
        (
            "cred_proxy",
            "removed: declare credentialed hosts as `egress.routes` with an `auth` block",
        ),
    ] {
        if m.contains_key(key) {
            return Err(v.err(key, msg));
        }
    }
    v.keys(m, "", BOTTLE_KEYS)?;
    let extends = m
        .get("extends")
        .map(|x| v.nonempty(x, "extends").map(str::to_owned))
        .transpose()?;
    let env = m.get("env").map(|x| env(&v, x)).transpose()?;
    let agent_provider = m
        .get("agent_provider")
        .map(|x| provider(&v, x))
        .transpose()?;
    let (git_user, git_repos) = match m.get("git-gate") {
        None => (None, None),
        Some(x) => {
            let g = v.map(x, "git-gate")?;
            v.keys(g, "git-gate", GIT_GATE_KEYS)?;
            let user = g
                .get("user")
                .map(|u| git_user(&v, u, "git-gate.user"))
                .transpose()?;
            let repos = g.get("repos").map(|r| repos(&v, r)).transpose()?;
            (user, repos)
        }
    };
    let egress = m.get("egress").map(|x| egress(&v, x)).transpose()?;
    let supervise = m
        .get("supervise")
        .map(|x| v.boolean(x, "supervise"))
        .transpose()?;
    let limits = m.get("limits").map(|x| limits(&v, x)).transpose()?;
    Ok(RawBottle {
        name: name.to_owned(),
        path: path.to_path_buf(),
        extends,
        env,
        agent_provider,
        git_user,
        git_repos,
        egress,
        supervise,
        limits,
    })
}

/// `limits: {agent: {...}, bundle: {...}}` (F-LIMITS).
fn limits(v: &V<'_>, x: &Value) -> Result<Limits, ManifestError> {
    let m = v.map(x, "limits")?;
    v.keys(m, "limits", LIMITS_KEYS)?;
    let set = |name: &str| -> Result<LimitSet, ManifestError> {
        m.get(name)
            .map(|s| limit_set(v, s, &join("limits", name)))
            .transpose()
            .map(Option::unwrap_or_default)
    };
    Ok(Limits {
        agent: set("agent")?,
        bundle: set("bundle")?,
    })
}

fn limit_set(v: &V<'_>, x: &Value, key: &str) -> Result<LimitSet, ManifestError> {
    let m = v.map(x, key)?;
    v.keys(m, key, LIMIT_SET_KEYS)?;
    let cpus_centi = m
        .get("cpus")
        .map(|c| cpus(v, c, &join(key, "cpus")))
        .transpose()?;
    let memory_bytes = m
        .get("memory")
        .map(|b| {
            let k = join(key, "memory");
            parse_memory(v.string(b, &k).map_err(|_| {
                v.err(
                    &k,
                    format!(
                        "expected a size with a unit such as \"4g\" or \"512m\", got {}",
                        kind(b)
                    ),
                )
            })?)
            .map_err(|e| v.err(&k, e))
        })
        .transpose()?;
    let pids = m
        .get("pids")
        .map(|p| {
            let k = join(key, "pids");
            let n = p.as_u64().ok_or_else(|| {
                v.err(
                    &k,
                    format!("expected a whole number of processes, got {}", kind(p)),
                )
            })?;
            if !(u64::from(MIN_PIDS)..=u64::from(MAX_PIDS)).contains(&n) {
                return Err(v.err(
                    &k,
                    format!("{n} is out of range; use {MIN_PIDS} to {MAX_PIDS}"),
                ));
            }
            Ok(n as u32)
        })
        .transpose()?;
    Ok(LimitSet {
        cpus_centi,
        memory_bytes,
        pids,
    })
}

fn cpus(v: &V<'_>, x: &Value, key: &str) -> Result<u32, ManifestError> {
    let n = match x {
        Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
        other => {
            return Err(v.err(
                key,
                format!(
                    "expected a number of CPUs such as 2 or 1.5 (unquoted), got {}",
                    kind(other)
                ),
            ));
        }
    };
    let centi = (n * 100.0).round();
    if !n.is_finite() || (n * 100.0 - centi).abs() > 1e-6 {
        return Err(v.err(
            key,
            format!("`{n}` has more than two decimals; e.g. 1.5 or 0.25"),
        ));
    }
    if centi < 1.0 || centi > f64::from(MAX_CPUS_CENTI) {
        return Err(v.err(
            key,
            format!(
                "`{n}` is out of range; use 0.01 to {}",
                MAX_CPUS_CENTI / 100
            ),
        ));
    }
    Ok(centi as u32)
}

/// `<whole number><unit>` with unit `k`, `m` or `g` (binary, either case, as Docker reads
/// them): `512m`, `4g`. A bare number is refused: bytes or MiB would be a guess.
pub(crate) fn parse_memory(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let shift = match unit.to_ascii_lowercase().as_str() {
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "" => {
            return Err(format!(
                "`{}` has no unit; write e.g. \"4g\" or \"512m\"",
                clip(s)
            ));
        }
        _ => {
            return Err(format!(
                "`{}` is not a size; write a whole number and k, m or g (e.g. \"4g\", \"512m\")",
                clip(s)
            ));
        }
    };
    let n: u64 = digits.parse().map_err(|_| {
        format!(
            "`{}` is not a size; write a whole number and k, m or g (e.g. \"4g\", \"512m\")",
            clip(s)
        )
    })?;
    let bytes = n
        .checked_mul(1u64 << shift)
        .filter(|b| (MIN_MEMORY_BYTES..=MAX_MEMORY_BYTES).contains(b))
        .ok_or_else(|| format!("`{}` is out of range; use 64m to 1024g", clip(s)))?;
    Ok(bytes)
}

fn env(v: &V<'_>, x: &Value) -> Result<BTreeMap<String, EnvValue>, ManifestError> {
    let m = v.map(x, "env")?;
    let mut out = BTreeMap::new();
    for (k, val) in m {
        let key = format!("env.{k}");
        if !is_env_name(k) {
            return Err(v.err(
                &key,
                "not an environment variable name; use letters, digits and `_`, not starting with a digit",
            ));
        }
        // Values are never echoed: a literal may be a secret.
        let s = match val {
            Value::String(s) => s,
            Value::Number(_) | Value::Bool(_) => {
                return Err(v.err(
                    &key,
                    format!(
                        "expected a string, got {}; quote it (env values are strings only)",
                        kind(val)
                    ),
                ));
            }
            other => {
                return Err(v.err(&key, format!("expected a string, got {}", kind(other))));
            }
        };
        if s.contains('\0') {
            return Err(v.err(
                &key,
                "contains a NUL character, which no environment can hold",
            ));
        }
        let value = if let Some(msg) = s.strip_prefix('?') {
            EnvValue::Prompt(msg.to_owned())
        } else if check_template(s).map_err(|e| v.err(&key, format!("value {e}")))? {
            EnvValue::Interpolate(s.clone())
        } else {
            EnvValue::Literal(s.clone())
        };
        out.insert(k.clone(), value);
    }
    Ok(out)
}

fn provider(v: &V<'_>, x: &Value) -> Result<AgentProvider, ManifestError> {
    let m = v.map(x, "agent_provider")?;
    v.keys(m, "agent_provider", PROVIDER_KEYS)?;
    let template = match m.get("template") {
        None => ProviderKind::Claude,
        Some(t) => match v.string(t, "agent_provider.template")? {
            "claude" => ProviderKind::Claude,
            "codex" => ProviderKind::Codex,
            other => {
                return Err(v.err(
                    "agent_provider.template",
                    format!("expected `claude` or `codex`, got `{}`", clip(other)),
                ));
            }
        },
    };
    let dockerfile = m
        .get("dockerfile")
        .map(|d| {
            v.nonempty(d, "agent_provider.dockerfile")
                .map(str::to_owned)
        })
        .transpose()?;
    let auth_token = m
        .get("auth_token")
        .map(|a| v.env_name(a, "agent_provider.auth_token"))
        .transpose()?;
    if auth_token.is_some() && template != ProviderKind::Claude {
        return Err(v.err(
            "agent_provider.auth_token",
            "only the `claude` template takes an auth token; remove it or set `template: claude`",
        ));
    }
    let forward_host_credentials = m
        .get("forward_host_credentials")
        .map(|f| v.boolean(f, "agent_provider.forward_host_credentials"))
        .transpose()?
        .unwrap_or(false);
    if forward_host_credentials && template != ProviderKind::Codex {
        return Err(v.err(
            "agent_provider.forward_host_credentials",
            "only the `codex` template can forward host credentials; remove it or set `template: codex`",
        ));
    }
    Ok(AgentProvider {
        template,
        dockerfile,
        auth_token,
        forward_host_credentials,
    })
}

fn git_user(v: &V<'_>, x: &Value, key: &str) -> Result<GitUser, ManifestError> {
    let m = v.map(x, key)?;
    v.keys(m, key, GIT_USER_KEYS)?;
    let field = |f: &str| -> Result<Option<String>, ManifestError> {
        m.get(f)
            .map(|s| v.nonempty(s, &join(key, f)).map(str::to_owned))
            .transpose()
    };
    let user = GitUser {
        name: field("name")?,
        email: field("email")?,
    };
    if user.name.is_none() && user.email.is_none() {
        return Err(v.err(
            key,
            "set at least one of `name` and `email`, or remove the block",
        ));
    }
    for (f, val) in [("name", &user.name), ("email", &user.email)] {
        if val
            .as_deref()
            .is_some_and(|s| s.chars().any(char::is_control))
        {
            return Err(v.err(
                &join(key, f),
                "must be a single line without control characters",
            ));
        }
    }
    Ok(user)
}

fn is_repo_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && !s.bytes().all(|b| b == b'.')
}

fn repos(v: &V<'_>, x: &Value) -> Result<BTreeMap<String, GitRepo>, ManifestError> {
    let m = v.map(x, "git-gate.repos")?;
    let mut out = BTreeMap::new();
    for (name, entry) in m {
        let key = format!("git-gate.repos.{name}");
        if !is_repo_name(name) {
            return Err(v.err(
                &key,
                "invalid repo name; use only letters, digits, `.`, `_` and `-`",
            ));
        }
        // Bare repos are directories named after the key; keep them distinct on
        // case-insensitive file systems too.
        if let Some(other) = m
            .keys()
            .find(|o| *o != name && o.eq_ignore_ascii_case(name))
        {
            return Err(v.err(
                &key,
                format!(
                    "differs from repo `{}` only in letter case; rename one",
                    clip(other)
                ),
            ));
        }
        let e = v.map(entry, &key)?;
        v.keys(e, &key, REPO_KEYS)?;
        let url_key = join(&key, "url");
        let url = v.nonempty(
            e.get("url").ok_or_else(|| {
                v.err(
                    &url_key,
                    "required: the upstream as ssh://user@host[:port]/path",
                )
            })?,
            &url_key,
        )?;
        check_ssh_url(url).map_err(|m| v.err(&url_key, m))?;
        let id_key = join(&key, "identity");
        let identity = v.nonempty(
            e.get("identity").ok_or_else(|| {
                v.err(
                    &id_key,
                    "required: the path of the private key the gate pushes with",
                )
            })?,
            &id_key,
        )?;
        let host_key = e
            .get("host_key")
            .map(|h| {
                let hk_key = join(&key, "host_key");
                let s = v.nonempty(h, &hk_key)?;
                if s.contains(['\n', '\r', '\0']) {
                    return Err(v.err(&hk_key, "must be a single known-hosts line"));
                }
                Ok(s.to_owned())
            })
            .transpose()?;
        let refs = e
            .get("refs")
            .map(|r| git_refs(v, r, &join(&key, "refs")))
            .transpose()?
            .unwrap_or_default();
        let extra_hosts = e
            .get("extra_hosts")
            .map(|h| extra_hosts(v, h, &join(&key, "extra_hosts")))
            .transpose()?
            .unwrap_or_default();
        out.insert(
            name.clone(),
            GitRepo {
                url: url.to_owned(),
                identity: identity.to_owned(),
                host_key,
                refs,
                extra_hosts,
            },
        );
    }
    Ok(out)
}

/// `extra_hosts: {<host name>: <IP address>}`: names the git-gate resolves to a fixed address.
fn extra_hosts(
    v: &V<'_>,
    x: &Value,
    key: &str,
) -> Result<BTreeMap<String, std::net::IpAddr>, ManifestError> {
    let m = v.map(x, key)?;
    let mut out = BTreeMap::new();
    for (host, ip) in m {
        let hk = join(key, host);
        check_host(host).map_err(|e| v.err(&hk, e))?;
        let text = v.nonempty(ip, &hk)?;
        let addr = text.parse::<std::net::IpAddr>().map_err(|_| {
            v.err(
                &hk,
                format!(
                    "`{}` is not an IP address; give the address the upstream answers on (e.g. 192.0.2.10)",
                    clip(text)
                ),
            )
        })?;
        if out.insert(host.to_ascii_lowercase(), addr).is_some() {
            return Err(v.err(&hk, "host is pinned twice (names are case-insensitive)"));
        }
    }
    Ok(out)
}

/// `refs: {allow: [glob…], force: bool, tags: bool}` (F-REFS).
fn git_refs(v: &V<'_>, x: &Value, key: &str) -> Result<GitRefs, ManifestError> {
    let m = v.map(x, key)?;
    v.keys(m, key, REFS_KEYS)?;
    let mut refs = GitRefs::default();
    if let Some(a) = m.get("allow") {
        let ak = join(key, "allow");
        for (j, item) in v.list(a, &ak)?.iter().enumerate() {
            let ik = format!("{ak}[{j}]");
            let glob = v.nonempty(item, &ik)?;
            let one = crate::sidecar::git_gate::RefPolicy {
                allow: vec![glob.to_owned()],
                ..Default::default()
            };
            one.check().map_err(|m| v.err(&ik, m))?;
            refs.allow.push(glob.to_owned());
        }
    }
    if let Some(b) = m.get("force") {
        refs.force = v.boolean(b, &join(key, "force"))?;
    }
    if let Some(b) = m.get("tags") {
        refs.tags = v.boolean(b, &join(key, "tags"))?;
    }
    Ok(refs)
}

fn is_host_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_')
}

/// Checks the `ssh://user@host[:port]/path` shape.
pub(crate) fn check_ssh_url(url: &str) -> Result<(), String> {
    let shape = "expected ssh://user@host[:port]/path";
    let Some(rest) = url.strip_prefix("ssh://") else {
        return Err(format!("`{}` is not an ssh:// URL; {shape}", clip(url)));
    };
    let Some((user, hostpart)) = rest.split_once('@') else {
        return Err(format!("`{}` has no user; {shape}", clip(url)));
    };
    if user.is_empty() || !user.bytes().all(is_host_char) {
        return Err(format!(
            "`{}` has an empty or invalid user; {shape}",
            clip(url)
        ));
    }
    let Some((hostport, path)) = hostpart.split_once('/') else {
        return Err(format!("`{}` has no path; {shape}", clip(url)));
    };
    let (host, port) = match hostport.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (hostport, None),
    };
    if host.is_empty() || !host.bytes().all(is_host_char) {
        return Err(format!(
            "`{}` has an empty or invalid host; {shape}",
            clip(url)
        ));
    }
    if let Some(p) = port {
        let ok = !p.is_empty()
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u16>().is_ok_and(|n| n > 0);
        if !ok {
            return Err(format!(
                "`{}` has an invalid port (1-65535); {shape}",
                clip(url)
            ));
        }
    }
    let path_ok = !path.is_empty()
        && path.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/' | b'~' | b'+')
        });
    if !path_ok {
        return Err(format!(
            "`{}` has an empty path or one with unsupported characters; {shape}",
            clip(url)
        ));
    }
    Ok(())
}

fn egress(v: &V<'_>, x: &Value) -> Result<Egress, ManifestError> {
    let m = v.map(x, "egress")?;
    v.keys(m, "egress", EGRESS_KEYS)?;
    let mut routes: Vec<Route> = Vec::new();
    if let Some(r) = m.get("routes") {
        for (i, item) in v.list(r, "egress.routes")?.iter().enumerate() {
            let route = self::route(v, item, &format!("egress.routes[{i}]"))?;
            if let Some(j) = routes.iter().position(|o| o.host == route.host) {
                return Err(v.err(
                    &format!("egress.routes[{i}].host"),
                    format!(
                        "host `{}` is already declared by egress.routes[{j}]; hosts must be unique (case-insensitive)",
                        route.host
                    ),
                ));
            }
            routes.push(route);
        }
    }
    Ok(Egress { routes })
}

pub(crate) fn check_host(h: &str) -> Result<(), String> {
    if h.contains("://") || h.contains('/') {
        return Err(format!(
            "`{}` looks like a URL; give the host name only (e.g. api.github.com)",
            clip(h)
        ));
    }
    let labels_ok = h.len() <= 253
        && h.split('.')
            .all(|l| !l.is_empty() && l.len() <= 63 && l.bytes().all(is_host_char));
    if !labels_ok {
        return Err(format!(
            "`{}` is not a host name (letters, digits, `-`, dot-separated, no port or trailing dot)",
            clip(h)
        ));
    }
    Ok(())
}

fn route(v: &V<'_>, x: &Value, key: &str) -> Result<Route, ManifestError> {
    let m = v.map(x, key)?;
    if m.contains_key("role") {
        return Err(v.err(
            &join(key, "role"),
            "`role` is reserved and not accepted; remove it",
        ));
    }
    v.keys(m, key, ROUTE_KEYS)?;
    let host_key = join(key, "host");
    let host = v
        .nonempty(
            m.get("host")
                .ok_or_else(|| v.err(&host_key, "required: the host name this route allows"))?,
            &host_key,
        )?
        .to_lowercase();
    check_host(&host).map_err(|e| v.err(&host_key, e))?;
    let mut path_allowlist = Vec::new();
    if let Some(p) = m.get("path_allowlist") {
        let pk = join(key, "path_allowlist");
        for (j, item) in v.list(p, &pk)?.iter().enumerate() {
            let ik = format!("{pk}[{j}]");
            let s = v.string(item, &ik)?;
            if !s.starts_with('/') {
                return Err(v.err(
                    &ik,
                    format!("`{}` must be a path prefix starting with `/`", clip(s)),
                ));
            }
            if s.chars().any(|c| c.is_control() || c.is_whitespace()) {
                return Err(v.err(&ik, "must not contain spaces or control characters"));
            }
            path_allowlist.push(s.to_owned());
        }
    }
    let auth = m
        .get("auth")
        .map(|a| auth(v, a, &join(key, "auth")))
        .transpose()?;
    let pipelock = m
        .get("pipelock")
        .map(|p| pipelock(v, p, &join(key, "pipelock")))
        .transpose()?
        .unwrap_or_default();
    Ok(Route {
        host,
        path_allowlist,
        auth,
        pipelock,
    })
}

fn auth(v: &V<'_>, x: &Value, key: &str) -> Result<RouteAuth, ManifestError> {
    let m = v.map(x, key)?;
    if m.is_empty() {
        return Err(v.err(
            key,
            "empty `auth: {}`; omit `auth` for an unauthenticated route, or set `scheme` and `token_ref`",
        ));
    }
    v.keys(m, key, AUTH_KEYS)?;
    let sk = join(key, "scheme");
    let scheme = match v.string(
        m.get("scheme")
            .ok_or_else(|| v.err(&sk, "required: `Bearer` or `token`"))?,
        &sk,
    )? {
        "Bearer" => AuthScheme::Bearer,
        "token" => AuthScheme::Token,
        other => {
            return Err(v.err(
                &sk,
                format!("expected `Bearer` or `token`, got `{}`", clip(other)),
            ));
        }
    };
    let tk = join(key, "token_ref");
    let token_ref = v.env_name(
        m.get("token_ref").ok_or_else(|| {
            v.err(
                &tk,
                "required: the host environment variable holding the token",
            )
        })?,
        &tk,
    )?;
    Ok(RouteAuth { scheme, token_ref })
}

fn pipelock(v: &V<'_>, x: &Value, key: &str) -> Result<PipelockOpts, ManifestError> {
    let m = v.map(x, key)?;
    v.keys(m, key, PIPELOCK_KEYS)?;
    let tls_passthrough = m
        .get("tls_passthrough")
        .map(|t| v.boolean(t, &join(key, "tls_passthrough")))
        .transpose()?
        .unwrap_or(false);
    let mut ssrf_ip_allowlist = Vec::new();
    if let Some(l) = m.get("ssrf_ip_allowlist") {
        let lk = join(key, "ssrf_ip_allowlist");
        for (j, item) in v.list(l, &lk)?.iter().enumerate() {
            let ik = format!("{lk}[{j}]");
            let s = v.string(item, &ik)?;
            let net = s
                .parse::<ipnet::IpNet>()
                .ok()
                .or_else(|| s.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
                .ok_or_else(|| {
                    v.err(
                        &ik,
                        format!(
                            "`{}` is not an IP address or CIDR (e.g. 10.0.0.5 or 10.0.0.0/24)",
                            clip(s)
                        ),
                    )
                })?;
            ssrf_ip_allowlist.push(net);
        }
    }
    Ok(PipelockOpts {
        tls_passthrough,
        ssrf_ip_allowlist,
    })
}

fn is_skill_name(s: &str) -> bool {
    let mut b = s.bytes();
    b.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && b.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

/// Validates an agent file. `bottle` existence is checked by the loader.
pub(crate) fn agent(
    path: &Path,
    name: &str,
    source: AgentSource,
    fm: &Value,
    body: &str,
) -> Result<Agent, ManifestError> {
    let v = V { path };
    let empty = Map::new();
    let m = top_map(&v, fm)?.unwrap_or(&empty);
    // An agent (possibly shipped by a repo) must never carry what only a bottle may grant.
    for k in [
        "env",
        "egress",
        "agent_provider",
        "extends",
        "supervise",
        "limits",
    ] {
        if m.contains_key(k) {
            return Err(v.err(
                k,
                "is a bottle key; an agent cannot set it. Put it in a bottle under the home root and name that bottle in `bottle`",
            ));
        }
    }
    if m.contains_key("git") {
        return Err(v.err(
            "git",
            "replaced by `git-gate`: an agent may set only `git-gate.user` (name, email)",
        ));
    }
    v.keys(m, "", AGENT_KEYS)?;
    let bottle = v
        .nonempty(
            m.get("bottle").ok_or_else(|| {
                v.err(
                    "bottle",
                    "required: the name of the bottle this agent runs in",
                )
            })?,
            "bottle",
        )?
        .to_owned();
    let mut skills = Vec::new();
    if let Some(s) = m.get("skills") {
        for (i, item) in v.list(s, "skills")?.iter().enumerate() {
            let k = format!("skills[{i}]");
            let s = v.string(item, &k)?;
            if !is_skill_name(s) {
                return Err(v.err(
                    &k,
                    format!(
                        "`{}` is not a skill name (letters, digits, `.`, `_`, `-`; no path separators)",
                        clip(s)
                    ),
                ));
            }
            skills.push(s.to_owned());
        }
    }
    let mut git_user_v = GitUser::default();
    if let Some(g) = m.get("git-gate") {
        let gm = v.map(g, "git-gate")?;
        for k in gm.keys() {
            if k != "user" {
                return Err(v.err(
                    &format!("git-gate.{k}"),
                    "an agent may set only `git-gate.user`; repos are bottle-only (they carry keys and host trust)",
                ));
            }
        }
        if let Some(u) = gm.get("user") {
            git_user_v = git_user(&v, u, "git-gate.user")?;
        }
    }
    let description = m
        .get("description")
        .map(|d| {
            let s = v.string(d, "description")?;
            // Shown by `info`: a repo-shipped agent must not smuggle terminal escapes.
            if s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
                return Err(v.err("description", "must not contain control characters"));
            }
            Ok(s.to_owned())
        })
        .transpose()?;
    Ok(Agent {
        name: name.to_owned(),
        path: path.to_path_buf(),
        source,
        bottle,
        skills,
        git_user: git_user_v,
        prompt: body.trim().to_owned(),
        description,
    })
}
