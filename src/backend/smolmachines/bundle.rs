//! The sidecar bundle of a smolmachines bottle: the Docker backend's compose project without
//! the agent service, egress listening on TCP, and its port published on the bottle's
//! loopback alias only. Rendering reuses the Docker backend's (one definition of the
//! bundle); this module only adapts the document.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::backend::Prepared;
use crate::backend::docker::compose::{self, ComposeInput};
use crate::backend::docker::{launch as docker_launch, sidecar_config};
use crate::plan::BottlePlan;
use crate::sidecar::wire::{DaemonArgv, WireFile as _, daemon_args_file};

use super::{BACKEND_NAME, LABEL_AGENT_ENV, LABEL_ALIAS};

/// Egress's port inside the bundle and on the alias.
pub(crate) const EGRESS_PORT: u16 = 9099;

/// The compose input for the bundle: the Docker backend's, labelled with this backend. The
/// agent's environment is the VM's (proxy on `alias`); it goes on the bundle as a label for
/// `exec`, the other agent fields go unused (the agent is a VM).
pub(crate) fn compose_input(
    plan: &BottlePlan,
    prepared: &Prepared,
    compose_v1: bool,
    alias: Ipv4Addr,
) -> ComposeInput {
    let mut input = docker_launch::compose_input(plan, &plan.names, prepared, compose_v1);
    input.backend = BACKEND_NAME.to_string();
    input.agent_env = super::launch::agent_env(plan, alias);
    input
}

/// The agent's environment as a label value: JSON in unpadded URL-safe base64, so that no
/// `,` or `=` can break the `k=v,k=v` label list `docker ps` prints.
pub(crate) fn encode_env(env: &BTreeMap<String, String>) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(env).unwrap_or_default())
}

/// The inverse of [`encode_env`]; `None` for anything else.
pub(crate) fn decode_env(label: &str) -> Option<BTreeMap<String, String>> {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(label).ok()?).ok()
}

/// The bundle document: sidecars only, on the egress network, port published on `alias`.
pub(crate) fn render(input: &ComposeInput, alias: Ipv4Addr) -> Value {
    let mut doc = compose::render(input);
    if let Some(services) = doc.get_mut("services").and_then(Value::as_object_mut) {
        services.remove("agent");
    }
    // The internal network joined the bundle to the agent container; there is none.
    if let Some(networks) = doc.get_mut("networks").and_then(Value::as_object_mut) {
        networks.remove("internal");
    }
    let sidecars = &mut doc["services"]["sidecars"];
    if let Some(nets) = sidecars.get_mut("networks").and_then(Value::as_object_mut) {
        nets.remove("internal");
    }
    sidecars["ports"] = json!([format!("{alias}:{EGRESS_PORT}:{EGRESS_PORT}")]);
    sidecars["labels"][LABEL_ALIAS] = json!(alias.to_string());
    sidecars["labels"][LABEL_AGENT_ENV] = json!(encode_env(&input.agent_env));
    doc
}

/// Egress's argv with a TCP listener instead of the agent-side unix socket.
pub(crate) fn egress_args(has_extra_ca: bool) -> Vec<String> {
    let mut args = sidecar_config::egress_args(has_extra_ca);
    if let Some(i) = args.iter().position(|a| a == "--listen") {
        if let Some(v) = args.get_mut(i + 1) {
            *v = format!("0.0.0.0:{EGRESS_PORT}");
        }
    }
    args
}

/// The sidecar config files, with egress listening on TCP.
pub(crate) fn files(
    plan: &BottlePlan,
    ca_cert_pem: &str,
    ca_key_pem: &str,
    extra_ca_pem: Option<&str>,
) -> Vec<(String, String, u32)> {
    let mut files = sidecar_config::files(plan, ca_cert_pem, ca_key_pem, extra_ca_pem);
    let egress_file = daemon_args_file("egress");
    for (name, contents, _) in &mut files {
        if *name == egress_file {
            *contents = DaemonArgv(egress_args(extra_ca_pem.is_some())).render();
        }
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::docker::compose::{LABEL_BACKEND, LABEL_IDENTITY, LABEL_SERVICE};

    fn plan() -> BottlePlan {
        super::super::tests::plan()
    }

    #[test]
    fn the_bundle_has_no_agent_and_publishes_on_the_alias_only() {
        let p = plan();
        let prepared = Prepared {
            agent_image: "bot-bottle-claude:latest".into(),
            sidecar_image: "bot-bottle-sidecars:latest".into(),
        };
        let input = compose_input(&p, &prepared, false, Ipv4Addr::new(127, 0, 0, 18));
        let doc = render(&input, Ipv4Addr::new(127, 0, 0, 18));
        assert!(doc["services"].get("agent").is_none());
        let sidecars = &doc["services"]["sidecars"];
        assert_eq!(sidecars["ports"], json!(["127.0.0.18:9099:9099"]));
        assert!(sidecars["networks"].get("internal").is_none());
        assert!(doc["networks"].get("internal").is_none());
        assert_eq!(sidecars["labels"][LABEL_BACKEND], BACKEND_NAME);
        assert_eq!(sidecars["labels"][LABEL_ALIAS], "127.0.0.18");
        assert_eq!(sidecars["labels"][LABEL_SERVICE], "sidecars");
        assert_eq!(sidecars["labels"][LABEL_IDENTITY], p.identity.as_str());
        assert_eq!(
            doc["networks"]["egress"]["labels"][LABEL_BACKEND],
            BACKEND_NAME
        );
        assert_eq!(
            doc["volumes"]["sockets"]["labels"][LABEL_BACKEND],
            BACKEND_NAME
        );
        // Nothing anywhere is labelled as the Docker backend.
        let text = doc.to_string();
        assert!(
            !text.contains(&format!("\"{LABEL_BACKEND}\":\"docker\"")),
            "{text}"
        );
    }

    #[test]
    fn the_bundle_carries_the_vms_environment_for_exec() {
        let mut p = plan();
        p.env.literal.insert("GREETING".into(), "a=b, c".into());
        let prepared = Prepared {
            agent_image: "a:1".into(),
            sidecar_image: "s:1".into(),
        };
        let alias = Ipv4Addr::new(127, 0, 0, 21);
        let doc = render(&compose_input(&p, &prepared, false, alias), alias);
        let label = doc["services"]["sidecars"]["labels"][LABEL_AGENT_ENV]
            .as_str()
            .unwrap();
        assert!(!label.contains([',', '=']), "{label}");
        let env = decode_env(label).unwrap();
        assert_eq!(env, super::super::launch::agent_env(&p, alias));
        assert_eq!(env["GREETING"], "a=b, c");
        assert_eq!(env["HTTPS_PROXY"], "http://127.0.0.21:9099");
        assert_eq!(decode_env("not base64!"), None);
    }

    #[test]
    fn egress_listens_on_tcp_inside_the_bundle() {
        let args = egress_args(false);
        let i = args.iter().position(|a| a == "--listen").unwrap();
        assert_eq!(args[i + 1], "0.0.0.0:9099");
        let p = plan();
        let files = files(&p, "CERT", "KEY", None);
        let egress = files
            .iter()
            .find(|(n, _, _)| *n == daemon_args_file("egress"))
            .unwrap();
        assert!(egress.1.contains("0.0.0.0:9099") && !egress.1.contains("unix:"));
    }
}
