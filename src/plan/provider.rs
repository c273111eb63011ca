//! What each agent provider (claude, codex) needs in the bottle: the command the session runs,
//! its environment, the non-secret files written into the guest home, and the egress routes
//! (with credentials) it cannot work without.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;

use super::codex_auth;
use super::creds::Creds;
use super::routes::{ProviderRoute, ProviderRouteAuth};
use super::{HostEnv, PlanError};
use crate::manifest::{AuthScheme, Bottle, ProviderKind};
use crate::secret::Secret;

/// The container user's home.
pub(crate) const GUEST_HOME: &str = "/home/node";
/// The agent's working directory in the container.
pub(crate) const GUEST_WORKDIR: &str = "/home/node/workspace";
/// Where the agent's prompt file is provisioned.
pub(crate) const PROMPT_PATH: &str = "/home/node/.bot-bottle/prompt.md";
/// The guest CA bundle (rebuilt after the bottle CA is installed).
pub(crate) const GUEST_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// What the agent sees in place of a credential egress injects.
pub(crate) const EGRESS_PLACEHOLDER: &str = "egress-placeholder";
/// The Claude OAuth variable the placeholder goes into.
pub(crate) const CLAUDE_OAUTH_ENV: &str = "CLAUDE_CODE_OAUTH_TOKEN";

const CLAUDE_API_HOST: &str = "api.anthropic.com";
/// Hosts Codex talks to with its ChatGPT bearer.
pub(crate) const CODEX_HOSTS: [&str; 2] = ["api.openai.com", "chatgpt.com"];
const CODEX_GUEST_HOME: &str = "/home/node/.codex";
/// Name the supervise MCP server is registered under in the provider's config.
pub(crate) const SUPERVISE_MCP_NAME: &str = "supervise";
/// Where the agent reaches supervise: its loopback relay, which forwards to the daemon's
/// socket in the bundle (`NO_PROXY` covers loopback, so the call never goes through egress).
pub(crate) const SUPERVISE_MCP_URL: &str = "http://127.0.0.1:9100/mcp";

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProviderPlan {
    pub kind: ProviderKind,
    /// Full argv run in the agent container (`docker exec … <command>`).
    pub command: Vec<String>,
    /// Provider literal env; holds placeholders, never a credential.
    pub env: BTreeMap<String, String>,
    /// Placeholder names, left out of the preflight summary.
    pub(crate) hidden_env: BTreeSet<String>,
    /// Files written into the guest; never a secret.
    pub files: Vec<ProvisionFile>,
    /// Commands run in the guest (as `node`) after provisioning; each must exit 0.
    pub(crate) verify: Vec<Vec<String>>,
    pub(crate) prompt_path: String,
    /// The provider's session directory, snapshotted into state at session end.
    pub(crate) transcript_dir: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProvisionFile {
    /// Absolute guest path under [`GUEST_HOME`].
    pub path: String,
    pub mode: u32,
    pub(crate) contents: String,
}

/// The default image tag of a provider.
pub fn default_image(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::Claude => "bot-bottle-claude:latest",
        ProviderKind::Codex => "bot-bottle-codex:latest",
    }
}

/// The session argv. `resume` continues the last session; `remote_control` is claude-only.
pub fn command(
    kind: ProviderKind,
    resume: bool,
    remote_control: bool,
    prompt_path: &str,
) -> Result<Vec<String>, PlanError> {
    let mut argv: Vec<String> = Vec::new();
    match kind {
        ProviderKind::Claude => {
            argv.extend(["claude", "--dangerously-skip-permissions"].map(String::from));
            if remote_control {
                argv.push("--remote-control".into());
            }
            if resume {
                argv.push("--continue".into());
            }
            argv.extend([
                "--append-system-prompt-file".to_string(),
                prompt_path.to_string(),
            ]);
        }
        ProviderKind::Codex => {
            if remote_control {
                return Err(PlanError::RemoteControlUnsupported {
                    provider: kind.as_str(),
                });
            }
            argv.extend(["codex", "--dangerously-bypass-approvals-and-sandbox"].map(String::from));
            if resume {
                // The resumed session already holds the instructions.
                argv.extend(["resume", "--last"].map(String::from));
            } else {
                argv.push(format!(
                    "Read and follow the instructions in {prompt_path}."
                ));
            }
        }
    }
    Ok(argv)
}

/// The provider's plan and the routes it owns (credentials read from the host).
#[cfg(test)]
pub(crate) fn resolve_provider(
    bottle: &Bottle,
    resume: bool,
    remote_control: bool,
    host: &HostEnv,
) -> Result<(ProviderPlan, Vec<ProviderRoute>), PlanError> {
    resolve_provider_with(bottle, resume, remote_control, host, &mut Creds::strict())
}

/// [`resolve_provider`], recording the credentials it reads in `creds`.
pub(crate) fn resolve_provider_with(
    bottle: &Bottle,
    resume: bool,
    remote_control: bool,
    host: &HostEnv,
    creds: &mut Creds,
) -> Result<(ProviderPlan, Vec<ProviderRoute>), PlanError> {
    let ap = &bottle.agent_provider;
    let kind = ap.template;
    if ap.auth_token.is_some() && kind != ProviderKind::Claude {
        return Err(PlanError::AuthTokenNotClaude {
            bottle: bottle.name.clone(),
        });
    }
    if ap.forward_host_credentials && kind != ProviderKind::Codex {
        return Err(PlanError::ForwardCredentialsNotCodex {
            bottle: bottle.name.clone(),
        });
    }
    let mut plan = ProviderPlan {
        kind,
        command: command(kind, resume, remote_control, PROMPT_PATH)?,
        env: BTreeMap::new(),
        hidden_env: BTreeSet::new(),
        files: Vec::new(),
        verify: Vec::new(),
        prompt_path: PROMPT_PATH.to_string(),
        transcript_dir: String::new(),
    };
    let mut routes = Vec::new();
    match kind {
        ProviderKind::Claude => {
            plan.transcript_dir = format!("{GUEST_HOME}/.claude/projects");
            plan.env.insert(
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC".into(),
                "1".into(),
            );
            plan.env
                .insert("DISABLE_ERROR_REPORTING".into(), "1".into());
            plan.files.push(ProvisionFile {
                path: format!("{GUEST_HOME}/.claude.json"),
                mode: 0o600,
                contents: claude_json(bottle.supervise),
            });
            let auth = match &ap.auth_token {
                None => None,
                Some(var) => {
                    let value = creds.var(host, var, "agent_provider.auth_token", || {
                        PlanError::MissingAuthToken { var: var.clone() }
                    })?;
                    plan.env
                        .insert(CLAUDE_OAUTH_ENV.into(), EGRESS_PLACEHOLDER.into());
                    plan.hidden_env.insert(CLAUDE_OAUTH_ENV.into());
                    Some(ProviderRouteAuth {
                        scheme: AuthScheme::Bearer,
                        token_ref: var.clone(),
                        value,
                    })
                }
            };
            routes.push(ProviderRoute {
                host: CLAUDE_API_HOST.into(),
                tls_passthrough: true,
                auth,
            });
        }
        ProviderKind::Codex => {
            plan.transcript_dir = format!("{CODEX_GUEST_HOME}/sessions");
            plan.env
                .insert("CODEX_CA_CERTIFICATE".into(), GUEST_CA_BUNDLE.into());
            plan.files.push(ProvisionFile {
                path: format!("{CODEX_GUEST_HOME}/config.toml"),
                mode: 0o600,
                contents: codex_config_toml(GUEST_WORKDIR, bottle.supervise),
            });
            const USED_BY: &str = "agent_provider.forward_host_credentials";
            let fwd = if ap.forward_host_credentials {
                let read = codex_auth::auth_path(
                    host.vars.get("CODEX_HOME").map(String::as_str),
                    host.home.as_deref(),
                )
                // A relative $CODEX_HOME is taken against the host cwd, not the process cwd.
                .and_then(|path| codex_auth::read_host_auth(&host.cwd.join(path), host.now_unix));
                match read {
                    Ok(fwd) => {
                        creds.note(USED_BY, codex_auth::TOKEN_SOURCE, true);
                        Some(fwd)
                    }
                    Err(_) if creds.record_unset => {
                        creds.note(USED_BY, codex_auth::TOKEN_SOURCE, false);
                        None
                    }
                    Err(e) => return Err(e.into()),
                }
            } else {
                None
            };
            let auth = if let Some(fwd) = fwd {
                plan.env
                    .insert("CODEX_HOME".into(), CODEX_GUEST_HOME.into());
                plan.files.push(ProvisionFile {
                    path: format!("{CODEX_GUEST_HOME}/auth.json"),
                    mode: 0o600,
                    contents: fwd.dummy_auth_json,
                });
                plan.verify.push(
                    [
                        "env",
                        &format!("CODEX_HOME={CODEX_GUEST_HOME}"),
                        "codex",
                        "login",
                        "status",
                    ]
                    .map(String::from)
                    .to_vec(),
                );
                Some(ProviderRouteAuth {
                    scheme: AuthScheme::Bearer,
                    token_ref: codex_auth::TOKEN_SOURCE.into(),
                    value: fwd.access_token,
                })
            } else if ap.forward_host_credentials {
                // Recorded as not set above: the routes still show who would inject what.
                Some(ProviderRouteAuth {
                    scheme: AuthScheme::Bearer,
                    token_ref: codex_auth::TOKEN_SOURCE.into(),
                    value: Secret::new(""),
                })
            } else {
                None
            };
            for h in CODEX_HOSTS {
                routes.push(ProviderRoute {
                    host: h.into(),
                    tls_passthrough: true,
                    auth: auth.clone(),
                });
            }
        }
    }
    Ok((plan, routes))
}

/// `~/.claude.json` with onboarding done, bypass mode accepted and the home and workdir
/// trusted; with `supervise`, the supervise MCP server registered at user scope (streamable
/// HTTP), so every session in the bottle has its tools.
fn claude_json(supervise: bool) -> String {
    let trusted = json!({"hasTrustDialogAccepted": true});
    let mut doc = json!({
        "hasCompletedOnboarding": true,
        "bypassPermissionsModeAccepted": true,
        "theme": "dark",
        "projects": { GUEST_HOME: trusted.clone(), GUEST_WORKDIR: trusted },
    });
    if supervise {
        doc["mcpServers"] = json!({
            SUPERVISE_MCP_NAME: {"type": "http", "url": SUPERVISE_MCP_URL},
        });
    }
    let mut s = serde_json::to_string_pretty(&doc).unwrap_or_default();
    s.push('\n');
    s
}

/// Codex `config.toml` trusting `dir` (a TOML basic string, escaped); with `supervise`, the
/// supervise MCP server as a streamable HTTP entry of `[mcp_servers]`.
fn codex_config_toml(dir: &str, supervise: bool) -> String {
    let escaped = dir.replace('\\', "\\\\").replace('"', "\\\"");
    let mut s = format!("[projects.\"{escaped}\"]\ntrust_level = \"trusted\"\n");
    if supervise {
        s.push_str(&format!(
            "\n[mcp_servers.{SUPERVISE_MCP_NAME}]\nurl = \"{SUPERVISE_MCP_URL}\"\n"
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::AgentProvider;
    use crate::plan::testutil::{bottle, host};
    use serde_json::Value;

    fn with_provider(ap: AgentProvider) -> Bottle {
        let mut b = bottle("dev");
        b.agent_provider = ap;
        b
    }

    #[test]
    fn claude_command_variants() {
        let p = PROMPT_PATH;
        assert_eq!(
            command(ProviderKind::Claude, false, false, p).unwrap(),
            [
                "claude",
                "--dangerously-skip-permissions",
                "--append-system-prompt-file",
                p
            ]
        );
        assert_eq!(
            command(ProviderKind::Claude, true, true, p).unwrap(),
            [
                "claude",
                "--dangerously-skip-permissions",
                "--remote-control",
                "--continue",
                "--append-system-prompt-file",
                p
            ]
        );
    }

    #[test]
    fn codex_command_variants() {
        let p = PROMPT_PATH;
        let fresh = command(ProviderKind::Codex, false, false, p).unwrap();
        assert_eq!(
            fresh[..2],
            ["codex", "--dangerously-bypass-approvals-and-sandbox"]
        );
        assert_eq!(
            fresh[2],
            format!("Read and follow the instructions in {p}.")
        );
        assert_eq!(fresh.len(), 3);
        let resumed = command(ProviderKind::Codex, true, false, p).unwrap();
        assert_eq!(
            resumed,
            [
                "codex",
                "--dangerously-bypass-approvals-and-sandbox",
                "resume",
                "--last"
            ]
        );
    }

    #[test]
    fn remote_control_is_an_error_for_codex() {
        let err = command(ProviderKind::Codex, false, true, PROMPT_PATH).unwrap_err();
        assert!(matches!(
            err,
            PlanError::RemoteControlUnsupported { provider: "codex" }
        ));
        assert!(err.to_string().contains("--remote-control"));
    }

    #[test]
    fn claude_without_token_has_passthrough_route_and_files() {
        let (plan, routes) = resolve_provider(&bottle("dev"), false, false, &host()).unwrap();
        assert_eq!(plan.env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"], "1");
        assert_eq!(plan.env["DISABLE_ERROR_REPORTING"], "1");
        assert!(!plan.env.contains_key(CLAUDE_OAUTH_ENV));
        assert!(plan.hidden_env.is_empty());
        assert_eq!(plan.transcript_dir, "/home/node/.claude/projects");
        assert_eq!(routes.len(), 1);
        assert_eq!(routes[0].host, "api.anthropic.com");
        assert!(routes[0].tls_passthrough && routes[0].auth.is_none());
        let f = &plan.files[0];
        assert_eq!(
            (f.path.as_str(), f.mode),
            ("/home/node/.claude.json", 0o600)
        );
        let doc: Value = serde_json::from_str(&f.contents).unwrap();
        assert_eq!(doc["hasCompletedOnboarding"], true);
        assert_eq!(doc["bypassPermissionsModeAccepted"], true);
        assert_eq!(doc["projects"][GUEST_HOME]["hasTrustDialogAccepted"], true);
        assert_eq!(
            doc["projects"][GUEST_WORKDIR]["hasTrustDialogAccepted"],
            true
        );
    }

    #[test]
    fn claude_auth_token_goes_to_egress_and_the_agent_gets_a_hidden_placeholder() {
        let b = with_provider(AgentProvider {
            auth_token: Some("CLAUDE_TOK".into()),
            ..Default::default()
        });
        let mut h = host();
        h.vars
            .insert("CLAUDE_TOK".into(), "sk-ant-oat01-SECRET".into());
        let (plan, routes) = resolve_provider(&b, false, false, &h).unwrap();
        assert_eq!(plan.env[CLAUDE_OAUTH_ENV], EGRESS_PLACEHOLDER);
        assert!(plan.hidden_env.contains(CLAUDE_OAUTH_ENV));
        let auth = routes[0].auth.as_ref().unwrap();
        assert_eq!(auth.scheme, AuthScheme::Bearer);
        assert_eq!(auth.token_ref, "CLAUDE_TOK");
        assert_eq!(auth.value.expose(), "sk-ant-oat01-SECRET");
        assert!(!format!("{plan:?}").contains("SECRET"));
    }

    #[test]
    fn claude_auth_token_unset_is_an_error_naming_the_var() {
        let b = with_provider(AgentProvider {
            auth_token: Some("CLAUDE_TOK".into()),
            ..Default::default()
        });
        let err = resolve_provider(&b, false, false, &host()).unwrap_err();
        assert!(matches!(&err, PlanError::MissingAuthToken { var } if var == "CLAUDE_TOK"));
    }

    #[test]
    fn provider_options_for_the_wrong_template_are_errors() {
        let b = with_provider(AgentProvider {
            template: ProviderKind::Codex,
            auth_token: Some("T".into()),
            ..Default::default()
        });
        assert!(matches!(
            resolve_provider(&b, false, false, &host()),
            Err(PlanError::AuthTokenNotClaude { .. })
        ));
        let b = with_provider(AgentProvider {
            forward_host_credentials: true,
            ..Default::default()
        });
        assert!(matches!(
            resolve_provider(&b, false, false, &host()),
            Err(PlanError::ForwardCredentialsNotCodex { .. })
        ));
    }

    #[test]
    fn codex_without_forwarding_has_config_and_unauthenticated_routes() {
        let b = with_provider(AgentProvider {
            template: ProviderKind::Codex,
            ..Default::default()
        });
        let (plan, routes) = resolve_provider(&b, false, false, &host()).unwrap();
        assert_eq!(plan.env["CODEX_CA_CERTIFICATE"], GUEST_CA_BUNDLE);
        assert_eq!(plan.transcript_dir, "/home/node/.codex/sessions");
        assert_eq!(plan.files.len(), 1);
        assert_eq!(plan.files[0].path, "/home/node/.codex/config.toml");
        assert_eq!(
            plan.files[0].contents,
            "[projects.\"/home/node/workspace\"]\ntrust_level = \"trusted\"\n"
        );
        let hosts: Vec<_> = routes.iter().map(|r| r.host.as_str()).collect();
        assert_eq!(hosts, CODEX_HOSTS);
        assert!(routes.iter().all(|r| r.auth.is_none() && r.tls_passthrough));
        assert!(plan.verify.is_empty());
    }

    #[test]
    fn codex_forwarding_reads_host_auth_and_writes_only_the_dummy() {
        use crate::plan::codex_auth::tests::{NOW, REFRESH, sample_auth};
        let dir = tempfile::tempdir().unwrap();
        let (text, access, _) = sample_auth(NOW + 600);
        std::fs::write(dir.path().join("auth.json"), &text).unwrap();
        let mut h = host();
        h.now_unix = NOW;
        h.vars
            .insert("CODEX_HOME".into(), dir.path().display().to_string());
        let b = with_provider(AgentProvider {
            template: ProviderKind::Codex,
            forward_host_credentials: true,
            ..Default::default()
        });
        let (plan, routes) = resolve_provider(&b, false, false, &h).unwrap();
        assert_eq!(plan.env["CODEX_HOME"], "/home/node/.codex");
        let auth_file = plan
            .files
            .iter()
            .find(|f| f.path == "/home/node/.codex/auth.json")
            .unwrap();
        assert_eq!(auth_file.mode, 0o600);
        for f in &plan.files {
            assert!(
                !f.contents.contains(&access) && !f.contents.contains(REFRESH),
                "{}",
                f.path
            );
        }
        assert_eq!(plan.verify.len(), 1);
        assert!(plan.verify[0].ends_with(&["login".to_string(), "status".to_string()]));
        for r in &routes {
            let a = r.auth.as_ref().unwrap();
            assert_eq!(a.value.expose(), access);
            assert_eq!(a.token_ref, codex_auth::TOKEN_SOURCE);
        }
    }

    #[test]
    fn codex_forwarding_with_expired_login_is_an_error() {
        use crate::plan::codex_auth::tests::{NOW, sample_auth};
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("auth.json"), sample_auth(NOW - 5).0).unwrap();
        let mut h = host();
        h.now_unix = NOW;
        h.vars
            .insert("CODEX_HOME".into(), dir.path().display().to_string());
        let b = with_provider(AgentProvider {
            template: ProviderKind::Codex,
            forward_host_credentials: true,
            ..Default::default()
        });
        let err = resolve_provider(&b, false, false, &h).unwrap_err();
        assert!(matches!(
            err,
            PlanError::CodexAuth(codex_auth::CodexAuthError::Expired(_))
        ));
    }

    #[test]
    fn codex_config_escapes_quotes() {
        assert_eq!(
            codex_config_toml("/a\"b", false),
            "[projects.\"/a\\\"b\"]\ntrust_level = \"trusted\"\n"
        );
    }

    #[test]
    fn supervise_is_registered_in_each_providers_config() {
        let mut b = bottle("dev");
        b.supervise = true;
        let (plan, _) = resolve_provider(&b, false, false, &host()).unwrap();
        let doc: Value = serde_json::from_str(&plan.files[0].contents).unwrap();
        let server = &doc["mcpServers"][SUPERVISE_MCP_NAME];
        assert_eq!(server["type"], "http");
        assert_eq!(server["url"], SUPERVISE_MCP_URL);
        // The URL is the agent's relay listener for supervise's socket.
        let port = SUPERVISE_MCP_URL
            .trim_start_matches("http://127.0.0.1:")
            .split('/')
            .next()
            .unwrap();
        assert!(
            crate::backend::docker::compose::RELAY_PORTS
                .iter()
                .any(|(p, sock)| p.to_string() == port && *sock == "supervise.sock")
        );
        b.agent_provider.template = ProviderKind::Codex;
        let (plan, _) = resolve_provider(&b, false, false, &host()).unwrap();
        let toml = &plan.files[0].contents;
        assert!(
            toml.ends_with(&format!(
                "\n[mcp_servers.supervise]\nurl = \"{SUPERVISE_MCP_URL}\"\n"
            )),
            "{toml}"
        );
        // Without supervise neither config names it.
        let (plain, _) = resolve_provider(&bottle("dev"), false, false, &host()).unwrap();
        assert!(!plain.files[0].contents.contains("mcpServers"));
    }
}
