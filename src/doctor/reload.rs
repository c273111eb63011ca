//! The host half of the live-reload probe (THREATS N15): while the probe's script fires
//! requests from the agent ([`super::scripts::RELOAD_JS`]), the bundle's routes are swapped
//! back and forth between the bottle's own routes and a second policy, through the engine copy
//! every live route change uses ([`launch::update_routes`]). The bottle's own routes are in
//! force again at the end, so the probes after this one see the bottle as it was.

use std::time::Duration;

use crate::backend::docker::{docker, launch};
use crate::runner::{Output, ProcessSpec, RunError, Runner};
use crate::sidecar::wire::{RoutesFile, WireFile};

/// The only path prefix the second policy leaves open on the plain route.
pub(crate) const NEW_PREFIX: &str = "/bb-n15-new/";
/// The file that tells the agent's script to stop firing.
pub(crate) const STOP_FILE: &str = "/tmp/bb-n15-stop";
/// Route swaps during one run (even: the last one puts the bottle's own routes back).
const SWAPS: usize = 12;
/// Time between swaps: several polls of egress (every 50 ms) and many requests per policy.
const SWAP_PAUSE: Duration = Duration::from_millis(400);
/// Time for the agent's script to start firing before the first swap.
const START_PAUSE: Duration = Duration::from_secs(1);
/// Time for egress to take the last swap before the script is told to stop.
const SETTLE: Duration = Duration::from_millis(300);
/// Modification time of the copied file (egress compares content, not times).
const MTIME: u64 = 0;

/// The second policy from the bottle's own routes text: the credential route removed, the
/// plain route open only under [`NEW_PREFIX`], everything else as it was.
pub(crate) fn second_policy(
    own: &str,
    auth_route: &str,
    plain_route: &str,
) -> Result<String, String> {
    let mut routes = RoutesFile::parse(own)?;
    let before = routes.routes.len();
    routes.routes.retain(|r| r.host != auth_route);
    if routes.routes.len() == before {
        return Err(format!("no route `{auth_route}` in the bundle's routes"));
    }
    let plain = routes
        .routes
        .iter_mut()
        .find(|r| r.host == plain_route)
        .ok_or_else(|| format!("no route `{plain_route}` in the bundle's routes"))?;
    plain.path_allowlist = vec![NEW_PREFIX.to_string()];
    Ok(routes.render())
}

/// Run the agent's half (`spec`) while swapping the routes of `sidecar`; what the host could
/// not do is appended to the script's output as observations that fail the probe.
pub(crate) fn run(
    runner: &dyn Runner,
    spec: &ProcessSpec,
    agent: &str,
    sidecar: &str,
    auth_route: &str,
    plain_route: &str,
) -> Result<Output, RunError> {
    let policies = launch::read_routes(runner, sidecar)
        .map_err(|e| e.to_string())
        .and_then(|own| second_policy(&own, auth_route, plain_route).map(|new| (own, new)));
    let (own, new) = match policies {
        Ok(p) => p,
        Err(e) => {
            let mut out = Output::failed(1, e.into_bytes());
            out.stdout = b"obs host:routes UNREADABLE\ndone\n".to_vec();
            return Ok(out);
        }
    };
    std::thread::scope(|s| {
        let script = s.spawn(|| runner.run(spec));
        let mut problems = Vec::new();
        std::thread::sleep(START_PAUSE);
        for i in 0..SWAPS {
            let text = if i % 2 == 0 { &new } else { &own };
            if let Err(e) = launch::update_routes(runner, sidecar, text, MTIME) {
                problems.push(format!("obs host:swap-{i} COPY-FAILED ({e})"));
                break;
            }
            std::thread::sleep(SWAP_PAUSE);
        }
        // Whatever happened above, the bottle's own routes go back (same content: no reload).
        if let Err(e) = launch::update_routes(runner, sidecar, &own, MTIME) {
            problems.push(format!("obs host:restore COPY-FAILED ({e})"));
        }
        std::thread::sleep(SETTLE);
        let stop = docker(["exec", "-u", "node", agent, "touch", STOP_FILE]);
        if !runner.run(&stop).is_ok_and(|o| o.success()) {
            problems.push("obs host:stop-file NOT-WRITTEN".to_string());
        }
        let mut out = match script.join() {
            Ok(r) => r?,
            Err(_) => Output::failed(1, "the probe's runner panicked"),
        };
        for p in problems {
            out.stdout
                .extend_from_slice(p.replace('\n', " ").as_bytes());
            out.stdout.push(b'\n');
        }
        Ok(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWN: &str = r#"{"routes": [
        {"host": "api.test", "auth_scheme": "Bearer", "token_env": "EGRESS_TOKEN_0", "ssrf_ip_allowlist": ["::1"]},
        {"host": "plain.test", "ssrf_ip_allowlist": ["::1"]},
        {"host": "third.test", "path_allowlist": ["/a/"]}
    ]}"#;

    #[test]
    fn the_second_policy_drops_the_credential_route_and_narrows_the_plain_one() {
        let new =
            RoutesFile::parse(&second_policy(OWN, "api.test", "plain.test").unwrap()).unwrap();
        let own = RoutesFile::parse(OWN).unwrap();
        assert_eq!(new.routes.len(), 2);
        assert!(new.routes.iter().all(|r| r.host != "api.test"));
        let plain = new.routes.iter().find(|r| r.host == "plain.test").unwrap();
        assert_eq!(plain.path_allowlist, [NEW_PREFIX]);
        assert_eq!(plain.ssrf_ip_allowlist, own.routes[1].ssrf_ip_allowlist);
        assert_eq!(
            new.routes[1], own.routes[2],
            "other routes are kept as they are"
        );
    }

    #[test]
    fn a_missing_route_or_a_broken_file_is_an_error_not_a_policy() {
        assert!(second_policy(OWN, "nope.test", "plain.test").is_err());
        assert!(second_policy(OWN, "api.test", "nope.test").is_err());
        assert!(second_policy("{not json", "api.test", "plain.test").is_err());
    }
}
