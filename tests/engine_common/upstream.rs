//! The TLS upstream of the engine tests: `certs/server.js` under node in the provider image,
//! on a bottle's egress network only, so the agent reaches it through egress alone.

use std::path::Path;
use std::time::{Duration, Instant};

use super::{docker, docker_ok};

/// The running upstream (its container name), removed on drop.
pub(crate) struct Upstream(pub(crate) String);

impl Upstream {
    /// Starts the upstream with `certs` at `/certs`, answering for `aliases` on bottle `id`'s
    /// egress network; returns once it listens (30 s at most).
    pub(crate) fn start(certs: &Path, id: &str, aliases: &[&str]) -> Upstream {
        let name = format!("bot-bottle-test-upstream-{id}");
        let network = format!("bot-bottle-egress-{id}");
        let volume = format!("{}:/certs:ro", certs.display());
        let mut args = vec!["run", "-d", "--name", &name, "--network", &network];
        for a in aliases {
            args.extend(["--network-alias", a]);
        }
        args.extend([
            "-v",
            &volume,
            "--entrypoint",
            "node",
            "bot-bottle-claude:latest",
            "/certs/server.js",
        ]);
        docker_ok(&args);
        let up = Upstream(name);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !up.log().contains("LISTENING") {
            assert!(Instant::now() < deadline, "upstream never listened");
            std::thread::sleep(Duration::from_millis(200));
        }
        up
    }

    /// What the upstream printed so far (`docker logs`).
    pub(crate) fn log(&self) -> String {
        docker_ok(&["logs", &self.0])
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.0]);
    }
}
