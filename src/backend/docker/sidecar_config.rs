//! What the sidecar bundle reads at start: the egress routes file, the bottle CA and each
//! daemon's argv. Rendering is pure; [`write`] puts the files in the bottle's state dir,
//! which the bundle mounts read-only. No secret is ever in these files: credentials reach
//! egress only through its environment (`EGRESS_TOKEN_N`).

use serde_json::{Value, json};

use super::compose::{SIDECAR_CONFIG_DIR, SIDECAR_LOG_DIR, SOCKET_DIR};
use crate::plan::BottlePlan;

pub const ROUTES_FILE: &str = "routes.yaml";
pub const CA_CERT_FILE: &str = "ca.pem";
pub const CA_KEY_FILE: &str = "ca-key.pem";
pub const EXTRA_CA_FILE: &str = "extra-ca.pem";
pub const EGRESS_BIN: &str = "/usr/local/bin/bot-bottle-egress";

/// The daemons this bundle runs (the init's `BOT_BOTTLE_SIDECAR_DAEMONS`).
pub fn daemons(_plan: &BottlePlan) -> Vec<String> {
    vec!["egress".to_string()]
}

/// The routes file egress reads (and re-reads when an approved change rewrites it).
pub fn routes_document(plan: &BottlePlan) -> Value {
    let routes: Vec<Value> = plan
        .routes
        .iter()
        .map(|r| {
            let mut v = json!({
                "host": r.host,
                "path_allowlist": r.path_allowlist,
                "tls_passthrough": r.tls_passthrough,
                "ssrf_ip_allowlist": r.ssrf_ip_allowlist.iter().map(ToString::to_string).collect::<Vec<_>>(),
            });
            if let Some(auth) = &r.auth {
                v["auth_scheme"] = json!(auth.scheme.as_str());
                v["token_env"] = json!(auth.token_env);
            }
            v
        })
        .collect();
    json!({ "routes": routes })
}

/// Egress's argv inside the bundle. It listens on a unix socket in the shared volume: the
/// agent reaches it only through its loopback relay.
pub fn egress_args(has_extra_ca: bool) -> Vec<String> {
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
        format!("{SIDECAR_LOG_DIR}/egress-audit.jsonl"),
    ];
    if has_extra_ca {
        args.push("--extra-ca".into());
        args.push(format!("{SIDECAR_CONFIG_DIR}/{EXTRA_CA_FILE}"));
    }
    args
}

/// Files of the sidecar config dir: (name, contents, mode).
pub fn files(
    plan: &BottlePlan,
    ca_cert_pem: &str,
    ca_key_pem: &str,
    extra_ca_pem: Option<&str>,
) -> Vec<(String, String, u32)> {
    let routes = format!("{:#}\n", routes_document(plan));
    let egress = format!("{}\n", json!(egress_args(extra_ca_pem.is_some())));
    let mut out = vec![
        (ROUTES_FILE.to_string(), routes, 0o644),
        (CA_CERT_FILE.to_string(), ca_cert_pem.to_string(), 0o644),
        // The key is readable by the bundle (root in its container) and nobody else.
        (CA_KEY_FILE.to_string(), ca_key_pem.to_string(), 0o600),
        ("egress.args".to_string(), egress, 0o644),
    ];
    if let Some(extra) = extra_ca_pem {
        out.push((EXTRA_CA_FILE.to_string(), extra.to_string(), 0o644));
    }
    out
}
