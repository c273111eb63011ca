//! Rendering of the per-bottle compose project (pure: a value in, a document out).
//!
//! Isolation (DESIGN "Isolation of the agent container"): the agent runs with no network at
//! all (`network_mode: none`). It reaches its gates only through unix sockets in a volume it
//! shares with the sidecar bundle, via a loopback relay. A direct request has no route and no
//! DNS; if the relay or a gate dies, the agent simply has no way out.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::plan::ContainerLimits;

/// Where the shared socket volume is mounted in both containers.
pub(crate) const SOCKET_DIR: &str = "/run/bot-bottle";
/// Where the sidecar configuration (routes, CA, daemon argv) is copied into the bundle,
/// through the engine (`docker cp`), never from a host path.
pub(crate) const SIDECAR_CONFIG_DIR: &str = "/etc/bot-bottle";
/// Marker the config copy writes last; the bundle starts its daemons only once it exists.
pub(crate) const SIDECAR_READY: &str = ".ready";
/// Where the bundle writes its audit log; read back through the engine.
pub(crate) const SIDECAR_LOG_DIR: &str = "/var/log/bot-bottle";
/// The relay binary inside the sidecar image; the bundle publishes a copy in the socket volume.
pub(crate) const SIDECAR_RELAY_BIN: &str = "/usr/local/bin/bot-bottle-relay";
/// The sidecar init inside the sidecar image.
pub(crate) const SIDECAR_INIT_BIN: &str = "/usr/local/bin/bot-bottle-init";
pub(crate) const LABEL_SERVICE: &str = "dev.bot-bottle.service";
/// Label every bot-bottle container carries: the bottle identity.
pub(crate) const LABEL_IDENTITY: &str = "dev.bot-bottle.identity";
pub(crate) const LABEL_AGENT: &str = "dev.bot-bottle.agent";
pub(crate) const LABEL_BACKEND: &str = "dev.bot-bottle.backend";

/// Loopback ports the relay in the agent listens on, and the socket each forwards to.
pub(crate) const RELAY_PORTS: &[(u16, &str)] = &[
    (9099, "egress.sock"),
    (9418, "git-gate.sock"),
    (9420, "git-http.sock"),
    (9100, "supervise.sock"),
];

/// Everything the compose document depends on; filled from the plan by the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ComposeInput {
    pub identity: String,
    pub(crate) agent_name: String,
    /// The backend label value (`docker`, `smolmachines`): one `docker ps` lists the
    /// bundles of every backend.
    pub backend: String,
    pub(crate) project: String,
    pub(crate) agent_container: String,
    pub(crate) sidecar_container: String,
    pub(crate) internal_network: String,
    pub(crate) egress_network: String,
    pub(crate) agent_image: String,
    pub(crate) sidecar_image: String,
    /// `Some("runsc")` under gVisor.
    pub runtime: Option<String>,
    /// Literal agent env (not secret), including proxy and CA settings.
    pub(crate) agent_env: BTreeMap<String, String>,
    /// Names whose values reach the agent from the compose process's environment.
    pub(crate) agent_env_forwarded: Vec<String>,
    /// Names whose values reach the bundle from the compose process's environment
    /// (`EGRESS_TOKEN_N`): the compose file never holds a value.
    pub(crate) sidecar_env_forwarded: Vec<String>,
    /// Daemons the bundle's init starts.
    pub daemons: Vec<String>,
    /// `host:ip` entries for the bundle's `/etc/hosts` (git-gate upstreams pinned by address);
    /// the agent gets none: it resolves nothing.
    pub(crate) extra_hosts: Vec<String>,
    /// Compose v1 needs a file-format version and has no top-level `name`.
    pub(crate) compose_v1: bool,
    /// pids, memory and CPU limits of the agent container and of the bundle (F-LIMITS).
    pub(crate) agent_limits: ContainerLimits,
    pub(crate) sidecar_limits: ContainerLimits,
    /// A test's weakening: `Network` gives the agent Docker's default bridge.
    pub(crate) weakened: Option<crate::plan::Weakening>,
}

/// Service-level limit keys, which compose v2 and the v1 file format 2.4 both apply (the
/// `deploy.resources` form is ignored by v1 outside swarm). Swap equals memory: a hog gets
/// no swap beyond its limit.
fn limit_keys(service: &mut Value, limits: &ContainerLimits) {
    service["cpus"] = json!(limits.cpus());
    service["mem_limit"] = json!(limits.memory_bytes);
    service["memswap_limit"] = json!(limits.memory_bytes);
    service["pids_limit"] = json!(limits.pids);
}

/// The agent's command, as root: wait for the bundle to publish the relay (it does so only
/// once the launcher's config copy, which carries the provisioning stream, is complete),
/// provision the container ([`super::provision::volume_script`]), then run the relay. The
/// relay blocks for the container's life, so it also plays the part of `sleep infinity`.
/// Provisioning here, by the container's own process, saves a root `docker exec` per start.
pub(crate) fn agent_command() -> Vec<String> {
    let mut relay = format!("exec {SOCKET_DIR}/bot-bottle-relay");
    for (port, sock) in RELAY_PORTS {
        relay.push_str(&format!(" {port}={SOCKET_DIR}/{sock}"));
    }
    vec![
        "sh".into(),
        "-c".into(),
        format!(
            "while [ ! -x {SOCKET_DIR}/bot-bottle-relay ]; do sleep 0.02; done; {}; {relay}",
            super::provision::volume_script()
        ),
    ]
}

/// The bundle's entrypoint: wait until the launcher has copied the config in (its ready
/// marker comes last), publish the relay binary into the shared volume (copy, then an atomic
/// rename, so the agent never runs a half-written file), then hand over to the init.
pub(crate) fn sidecar_entrypoint() -> Vec<String> {
    vec![
        "/bin/sh".into(),
        "-c".into(),
        format!(
            "while [ ! -e {SIDECAR_CONFIG_DIR}/{SIDECAR_READY} ]; do sleep 0.02; done; \
             mkdir -p {SIDECAR_LOG_DIR} \
             && cp {SIDECAR_RELAY_BIN} {SOCKET_DIR}/.relay.tmp && chmod 0755 {SOCKET_DIR}/.relay.tmp \
             && mv -f {SOCKET_DIR}/.relay.tmp {SOCKET_DIR}/bot-bottle-relay && exec {SIDECAR_INIT_BIN}"
        ),
    ]
}

pub(crate) fn render(input: &ComposeInput) -> Value {
    let labels = |service: &str| {
        json!({
            LABEL_IDENTITY: input.identity,
            LABEL_AGENT: input.agent_name,
            LABEL_BACKEND: input.backend,
            LABEL_SERVICE: service,
        })
    };
    let socket_volume = format!("sockets:{SOCKET_DIR}");

    let mut agent_env = Map::new();
    for (k, v) in &input.agent_env {
        agent_env.insert(k.clone(), Value::String(v.clone()));
    }
    // A null value in the mapping form means "take it from the compose process".
    for k in &input.agent_env_forwarded {
        agent_env.insert(k.clone(), Value::Null);
    }
    let mut sidecar_env = Map::new();
    sidecar_env.insert(
        "BOT_BOTTLE_SIDECAR_DAEMONS".into(),
        Value::String(input.daemons.join(",")),
    );
    sidecar_env.insert(
        "BOT_BOTTLE_SIDECAR_CONFIG_DIR".into(),
        Value::String(SIDECAR_CONFIG_DIR.into()),
    );
    for k in &input.sidecar_env_forwarded {
        sidecar_env.insert(k.clone(), Value::Null);
    }

    let mut agent = json!({
        "image": input.agent_image,
        "container_name": input.agent_container,
        // The container's own process runs as root: it unpacks the provisioning stream with
        // root's default capabilities, then becomes the relay. The agent's session is a
        // separate `exec -u node` with no capabilities, and `no-new-privileges` stops it
        // from regaining any. No `depends_on`: both containers start side by side (the
        // agent's command waits for the bundle's relay by itself), which `compose up`
        // would otherwise do one after the other.
        "user": "0:0",
        "network_mode": "none",
        "init": true,
        "security_opt": ["no-new-privileges:true"],
        "command": agent_command(),
        "environment": Value::Object(agent_env),
        "volumes": [socket_volume],
        "labels": labels("agent"),
    });
    if input.weakened == Some(crate::plan::Weakening::Network) {
        agent["network_mode"] = json!("bridge");
    }
    if let Some(rt) = &input.runtime {
        agent["runtime"] = Value::String(rt.clone());
    }
    limit_keys(&mut agent, &input.agent_limits);
    if !input.compose_v1 {
        // Images are built (or found by label) before `up`; compose must never pull.
        agent["pull_policy"] = json!("never");
    }
    let mut sidecars = json!({
        "image": input.sidecar_image,
        "container_name": input.sidecar_container,
        "init": true,
        "security_opt": ["no-new-privileges:true"],
        "entrypoint": sidecar_entrypoint(),
        "environment": Value::Object(sidecar_env),
        // Only the relay-socket volume: config and logs travel through the engine, so a
        // remote engine (`DOCKER_HOST`, contexts) works the same as a local one.
        "volumes": [socket_volume],
        "networks": {
            "internal": {"aliases": ["egress", "pipelock", "git-gate", "supervise"]},
            "egress": {},
        },
        "labels": labels("sidecars"),
    });
    if !input.compose_v1 {
        sidecars["pull_policy"] = json!("never");
    }
    if !input.extra_hosts.is_empty() {
        sidecars["extra_hosts"] = json!(input.extra_hosts);
    }
    limit_keys(&mut sidecars, &input.sidecar_limits);

    let mut doc = Map::new();
    if input.compose_v1 {
        doc.insert("version".into(), json!("2.4"));
    } else {
        doc.insert("name".into(), json!(input.project));
    }
    doc.insert(
        "services".into(),
        json!({ "agent": agent, "sidecars": sidecars }),
    );
    doc.insert(
        "networks".into(),
        json!({
            "internal": {"name": input.internal_network, "internal": true, "labels": labels("network")},
            "egress": {"name": input.egress_network, "labels": labels("network")},
        }),
    );
    doc.insert(
        "volumes".into(),
        json!({ "sockets": {"labels": labels("volume")} }),
    );
    Value::Object(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(v1: bool) -> ComposeInput {
        ComposeInput {
            identity: "reviewer-ab12cd".into(),
            agent_name: "reviewer".into(),
            backend: "docker".into(),
            project: "bot-bottle-reviewer-ab12cd".into(),
            agent_container: "bot-bottle-reviewer-ab12cd".into(),
            sidecar_container: "bot-bottle-sidecars-reviewer-ab12cd".into(),
            internal_network: "bot-bottle-net-reviewer-ab12cd".into(),
            egress_network: "bot-bottle-egress-reviewer-ab12cd".into(),
            agent_image: "bot-bottle-claude:latest".into(),
            sidecar_image: "bot-bottle-sidecars:latest".into(),
            runtime: None,
            weakened: None,
            agent_env: BTreeMap::from([
                (
                    "HTTPS_PROXY".to_string(),
                    "http://127.0.0.1:9099".to_string(),
                ),
                ("TZ".to_string(), "UTC".to_string()),
            ]),
            agent_env_forwarded: vec!["API_KEY".into()],
            sidecar_env_forwarded: vec!["EGRESS_TOKEN_0".into()],
            daemons: vec!["egress".into()],
            extra_hosts: vec![],
            compose_v1: v1,
            agent_limits: limits(150, 4 << 30, 2048),
            sidecar_limits: limits(100, 1 << 30, 1024),
        }
    }

    fn limits(cpus_centi: u32, memory_bytes: u64, pids: u32) -> ContainerLimits {
        ContainerLimits {
            cpus_centi,
            memory_bytes,
            pids,
            from_bottle: Default::default(),
            cpus_capped_from: None,
        }
    }

    #[test]
    fn both_services_are_limited_in_either_compose_flavour() {
        for v1 in [false, true] {
            let doc = render(&input(v1));
            let agent = &doc["services"]["agent"];
            assert_eq!(agent["cpus"], json!(1.5));
            assert_eq!(agent["mem_limit"], json!(4u64 << 30));
            assert_eq!(agent["memswap_limit"], agent["mem_limit"]);
            assert_eq!(agent["pids_limit"], json!(2048));
            let sidecars = &doc["services"]["sidecars"];
            assert_eq!(sidecars["cpus"], json!(1.0));
            assert_eq!(sidecars["mem_limit"], json!(1u64 << 30));
            assert_eq!(sidecars["memswap_limit"], sidecars["mem_limit"]);
            assert_eq!(sidecars["pids_limit"], json!(1024));
            assert!(agent.get("deploy").is_none() && sidecars.get("deploy").is_none());
        }
    }

    #[test]
    fn the_agent_has_no_network_and_no_privileges() {
        let doc = render(&input(false));
        let agent = &doc["services"]["agent"];
        assert_eq!(agent["network_mode"], "none");
        assert!(agent.get("networks").is_none());
        assert!(agent.get("ports").is_none());
        assert_eq!(agent["init"], true);
        assert_eq!(agent["security_opt"][0], "no-new-privileges:true");
        assert!(agent.get("cap_add").is_none());
        assert!(agent.get("privileged").is_none());
        // Only the shared socket volume: no host directory reaches the agent.
        assert_eq!(agent["volumes"], json!(["sockets:/run/bot-bottle"]));
        let sidecars = &doc["services"]["sidecars"];
        assert!(
            sidecars["networks"]["internal"]["aliases"]
                .as_array()
                .unwrap()
                .contains(&json!("egress"))
        );
        assert_eq!(doc["networks"]["internal"]["internal"], true);
    }

    #[test]
    fn forwarded_values_are_names_only() {
        let doc = render(&input(false));
        assert_eq!(
            doc["services"]["agent"]["environment"]["API_KEY"],
            Value::Null
        );
        assert_eq!(
            doc["services"]["sidecars"]["environment"]["EGRESS_TOKEN_0"],
            Value::Null
        );
    }

    #[test]
    fn only_the_test_weakening_gives_the_agent_a_network() {
        assert_eq!(
            render(&input(false))["services"]["agent"]["network_mode"],
            "none"
        );
        let mut i = input(false);
        i.weakened = Some(crate::plan::Weakening::Runc);
        assert_eq!(render(&i)["services"]["agent"]["network_mode"], "none");
        i.weakened = Some(crate::plan::Weakening::Network);
        assert_eq!(render(&i)["services"]["agent"]["network_mode"], "bridge");
    }

    #[test]
    fn runtime_and_compose_v1_shape() {
        let mut i = input(true);
        i.runtime = Some("runsc".into());
        let doc = render(&i);
        assert_eq!(doc["version"], "2.4");
        assert!(doc.get("name").is_none());
        assert_eq!(doc["services"]["agent"]["runtime"], "runsc");
        assert!(doc["services"]["agent"].get("pull_policy").is_none());
        let v2 = render(&input(false));
        assert_eq!(v2["name"], "bot-bottle-reviewer-ab12cd");
        assert_eq!(v2["services"]["agent"]["pull_policy"], "never");
    }

    #[test]
    fn every_resource_is_labelled_and_prefixed() {
        let doc = render(&input(false));
        for svc in ["agent", "sidecars"] {
            let s = &doc["services"][svc];
            assert_eq!(s["labels"][LABEL_IDENTITY], "reviewer-ab12cd");
            assert!(
                s["container_name"]
                    .as_str()
                    .unwrap()
                    .starts_with("bot-bottle-")
            );
        }
        for net in ["internal", "egress"] {
            assert!(
                doc["networks"][net]["name"]
                    .as_str()
                    .unwrap()
                    .starts_with("bot-bottle-")
            );
        }
    }

    #[test]
    fn no_volume_entry_is_a_host_path() {
        for v1 in [false, true] {
            let doc = render(&input(v1));
            let mut seen = 0;
            for (name, svc) in doc["services"].as_object().unwrap() {
                for v in svc["volumes"].as_array().unwrap() {
                    let v = v.as_str().unwrap();
                    let source = v.split(':').next().unwrap();
                    // A named volume, declared at the top level; a host path would start
                    // with `/`, `.` or `~`.
                    assert!(
                        doc["volumes"].get(source).is_some(),
                        "{name}: `{v}` is not a named volume"
                    );
                    assert!(!source.starts_with(['/', '.', '~']), "{name}: {v}");
                    seen += 1;
                }
            }
            assert_eq!(seen, 2, "one socket volume per service");
            assert_eq!(
                doc["volumes"]
                    .as_object()
                    .unwrap()
                    .keys()
                    .collect::<Vec<_>>(),
                ["sockets"]
            );
        }
    }

    #[test]
    fn the_backend_label_names_the_backend() {
        let mut i = input(false);
        i.backend = "smolmachines".into();
        let doc = render(&i);
        assert_eq!(
            doc["services"]["sidecars"]["labels"][LABEL_BACKEND],
            "smolmachines"
        );
        assert_eq!(
            render(&input(false))["services"]["agent"]["labels"][LABEL_BACKEND],
            "docker"
        );
    }

    #[test]
    fn the_bundle_waits_for_its_config_before_starting_the_daemons() {
        let script = &sidecar_entrypoint()[2];
        let wait = script.find("/etc/bot-bottle/.ready").unwrap();
        let init = script.find(SIDECAR_INIT_BIN).unwrap();
        let publish = script.find(".relay.tmp").unwrap();
        assert!(wait < publish && publish < init, "{script}");
    }

    #[test]
    fn pinned_hosts_go_to_the_bundle_only() {
        for v1 in [false, true] {
            let mut i = input(v1);
            i.extra_hosts = vec!["git.internal:192.0.2.7".into()];
            let doc = render(&i);
            assert_eq!(
                doc["services"]["sidecars"]["extra_hosts"],
                json!(["git.internal:192.0.2.7"])
            );
            assert!(doc["services"]["agent"].get("extra_hosts").is_none());
        }
        assert!(
            render(&input(false))["services"]["sidecars"]
                .get("extra_hosts")
                .is_none()
        );
    }

    #[test]
    fn the_agent_provisions_itself_before_it_runs_the_relay() {
        use super::super::provision::{PROVISION_TAR, PROVISIONED_MARKER};
        let script = &agent_command()[2];
        let wait = script.find("bot-bottle-relay ]").unwrap();
        let unpack = script.find(&format!("-f {PROVISION_TAR}")).unwrap();
        let marker = script.find(&format!("touch {PROVISIONED_MARKER}")).unwrap();
        let relay = script
            .find("exec /run/bot-bottle/bot-bottle-relay")
            .unwrap();
        assert!(
            wait < unpack && unpack < marker && marker < relay,
            "{script}"
        );
        // The stream travels in the shared socket volume.
        assert!(PROVISION_TAR.starts_with(&format!("{SOCKET_DIR}/")));
        assert!(
            render(&input(false))["services"]["agent"]
                .get("depends_on")
                .is_none()
        );
    }

    #[test]
    fn snapshot() {
        insta::assert_snapshot!(crate::yaml::to_yaml_string(&render(&input(false))));
    }
}
