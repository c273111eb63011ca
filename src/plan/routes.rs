//! The effective egress route table. Provider routes own their hosts; the bottle's routes for
//! any other host follow in declared order. Each distinct token source gets one slot
//! `EGRESS_TOKEN_<n>`, numbered in route order: the egress sidecar reads the value from that
//! variable of its own environment, so the route table itself never holds a secret.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;

use super::creds::Creds;
use super::{HostEnv, PlanError};
use crate::manifest::{AuthScheme, Route};
use crate::secret::Secret;

/// Prefix of the egress sidecar's token variables.
pub(crate) const TOKEN_SLOT_PREFIX: &str = "EGRESS_TOKEN_";

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EgressRoute {
    /// Lower-cased host name.
    pub host: String,
    /// Path prefixes; empty allows every path.
    pub path_allowlist: Vec<String>,
    pub auth: Option<RouteAuthPlan>,
    /// pipelock passes this host through without TLS interception.
    pub tls_passthrough: bool,
    pub(crate) ssrf_ip_allowlist: Vec<IpNet>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RouteAuthPlan {
    pub(crate) scheme: AuthScheme,
    /// The egress variable holding the credential, `EGRESS_TOKEN_<n>`.
    pub token_env: String,
    /// Where the value came from: a host variable name, or a provider label. Never a value.
    pub(crate) token_ref: String,
}

/// A route a provider needs, with its credential (if any) already read.
#[derive(Debug, Clone)]
pub(crate) struct ProviderRoute {
    pub host: String,
    pub tls_passthrough: bool,
    pub auth: Option<ProviderRouteAuth>,
}

#[derive(Debug, Clone)]
pub(crate) struct ProviderRouteAuth {
    pub(crate) scheme: AuthScheme,
    /// Sharing key and label (host variable name or provider label).
    pub(crate) token_ref: String,
    pub value: Secret,
}

/// The merged table and the slot values (`EGRESS_TOKEN_<n>` → credential).
#[cfg(test)]
pub(crate) fn effective_routes(
    provider: &[ProviderRoute],
    manifest: &[Route],
    host: &HostEnv,
) -> Result<(Vec<EgressRoute>, BTreeMap<String, Secret>), PlanError> {
    effective_routes_with(provider, manifest, host, &mut Creds::strict())
}

/// [`effective_routes`], recording the route credentials it reads in `creds`.
pub(crate) fn effective_routes_with(
    provider: &[ProviderRoute],
    manifest: &[Route],
    host: &HostEnv,
    creds: &mut Creds,
) -> Result<(Vec<EgressRoute>, BTreeMap<String, Secret>), PlanError> {
    let owned: BTreeSet<String> = provider
        .iter()
        .map(|r| r.host.to_ascii_lowercase())
        .collect();
    let mut slots = Slots::default();
    let mut out = Vec::with_capacity(provider.len() + manifest.len());
    for r in provider {
        let auth = r
            .auth
            .as_ref()
            .map(|a| slots.assign(a.scheme, &a.token_ref, || Ok(a.value.clone())))
            .transpose()?;
        out.push(EgressRoute {
            host: r.host.to_ascii_lowercase(),
            path_allowlist: Vec::new(),
            auth,
            tls_passthrough: r.tls_passthrough,
            ssrf_ip_allowlist: Vec::new(),
        });
    }
    for r in manifest {
        let host_name = r.host.to_ascii_lowercase();
        if owned.contains(&host_name) {
            continue;
        }
        let auth = r
            .auth
            .as_ref()
            .map(|a| {
                let used_by = format!("egress {host_name}");
                let value = creds.var(host, &a.token_ref, &used_by, || {
                    PlanError::MissingTokenRef {
                        host: host_name.clone(),
                        var: a.token_ref.clone(),
                    }
                })?;
                slots.assign(a.scheme, &a.token_ref, || Ok(value))
            })
            .transpose()?;
        out.push(EgressRoute {
            host: host_name,
            path_allowlist: r.path_allowlist.clone(),
            auth,
            tls_passthrough: r.pipelock.tls_passthrough,
            ssrf_ip_allowlist: r.pipelock.ssrf_ip_allowlist.clone(),
        });
    }
    Ok((out, slots.values))
}

#[derive(Default)]
struct Slots {
    by_ref: BTreeMap<String, String>,
    values: BTreeMap<String, Secret>,
}

impl Slots {
    fn assign(
        &mut self,
        scheme: AuthScheme,
        token_ref: &str,
        value: impl FnOnce() -> Result<Secret, PlanError>,
    ) -> Result<RouteAuthPlan, PlanError> {
        let token_env = match self.by_ref.get(token_ref) {
            Some(slot) => slot.clone(),
            None => {
                let slot = format!("{TOKEN_SLOT_PREFIX}{}", self.by_ref.len());
                self.values.insert(slot.clone(), value()?);
                self.by_ref.insert(token_ref.to_string(), slot.clone());
                slot
            }
        };
        Ok(RouteAuthPlan {
            scheme,
            token_env,
            token_ref: token_ref.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{PipelockOpts, RouteAuth};

    fn host(vars: &[(&str, &str)]) -> HostEnv {
        crate::plan::testutil::host_with(vars)
    }

    fn route(h: &str, auth: Option<(AuthScheme, &str)>) -> Route {
        Route {
            host: h.into(),
            path_allowlist: vec![],
            auth: auth.map(|(scheme, r)| RouteAuth {
                scheme,
                token_ref: r.into(),
            }),
            pipelock: PipelockOpts::default(),
        }
    }

    fn prov(h: &str, tok: Option<(&str, &str)>) -> ProviderRoute {
        ProviderRoute {
            host: h.into(),
            tls_passthrough: true,
            auth: tok.map(|(r, v)| ProviderRouteAuth {
                scheme: AuthScheme::Bearer,
                token_ref: r.into(),
                value: Secret::new(v),
            }),
        }
    }

    #[test]
    fn provider_routes_own_their_hosts_and_manifest_routes_follow() {
        let manifest = vec![
            route("github.com", None),
            route("API.Anthropic.com", Some((AuthScheme::Bearer, "MINE"))),
            route("pypi.example", None),
        ];
        let (routes, tokens) =
            effective_routes(&[prov("api.anthropic.com", None)], &manifest, &host(&[])).unwrap();
        let hosts: Vec<_> = routes.iter().map(|r| r.host.as_str()).collect();
        assert_eq!(hosts, ["api.anthropic.com", "github.com", "pypi.example"]);
        // The manifest's auth for a provider-owned host is dropped, and its var not needed.
        assert!(routes[0].auth.is_none());
        assert!(routes[0].tls_passthrough);
        assert!(tokens.is_empty());
    }

    #[test]
    fn slots_are_assigned_in_order_and_shared_by_token_ref() {
        let manifest = vec![
            route("a.example", Some((AuthScheme::Bearer, "GH"))),
            route("b.example", None),
            route("c.example", Some((AuthScheme::Token, "GITEA"))),
            route("d.example", Some((AuthScheme::Bearer, "GH"))),
        ];
        let h = host(&[
            ("GH", "gh-value"),
            ("GITEA", "gitea-value"),
            ("OAUTH", "oauth-value"),
        ]);
        let (routes, tokens) = effective_routes(
            &[prov("api.anthropic.com", Some(("OAUTH", "oauth-value")))],
            &manifest,
            &h,
        )
        .unwrap();
        let slot = |i: usize| routes[i].auth.as_ref().map(|a| a.token_env.as_str());
        assert_eq!(slot(0), Some("EGRESS_TOKEN_0"));
        assert_eq!(slot(1), Some("EGRESS_TOKEN_1"));
        assert_eq!(slot(2), None);
        assert_eq!(slot(3), Some("EGRESS_TOKEN_2"));
        assert_eq!(slot(4), Some("EGRESS_TOKEN_1"));
        assert_eq!(routes[3].auth.as_ref().unwrap().scheme, AuthScheme::Token);
        assert_eq!(tokens.len(), 3);
        assert_eq!(tokens["EGRESS_TOKEN_0"].expose(), "oauth-value");
        assert_eq!(tokens["EGRESS_TOKEN_1"].expose(), "gh-value");
        assert_eq!(tokens["EGRESS_TOKEN_2"].expose(), "gitea-value");
    }

    #[test]
    fn missing_or_empty_token_ref_var_is_an_error_naming_it() {
        let manifest = vec![route("a.example", Some((AuthScheme::Bearer, "GH_PAT")))];
        for h in [host(&[]), host(&[("GH_PAT", "")])] {
            let err = effective_routes(&[], &manifest, &h).unwrap_err();
            assert!(
                matches!(&err, PlanError::MissingTokenRef { var, host } if var == "GH_PAT" && host == "a.example")
            );
            assert!(err.to_string().contains("GH_PAT"));
        }
    }

    #[test]
    fn route_options_are_carried_over() {
        let mut r = route("Git.Example", None);
        r.path_allowlist = vec!["/api/".into()];
        r.pipelock.tls_passthrough = true;
        r.pipelock.ssrf_ip_allowlist = vec!["10.0.0.0/8".parse().unwrap()];
        let (routes, _) = effective_routes(&[], &[r], &host(&[])).unwrap();
        assert_eq!(routes[0].host, "git.example");
        assert_eq!(routes[0].path_allowlist, ["/api/"]);
        assert!(routes[0].tls_passthrough);
        assert_eq!(routes[0].ssrf_ip_allowlist.len(), 1);
    }
}
