//! `bot-bottle-egress`: the bottle's egress proxy (see `bot_bottle::sidecar::egress`).

use std::process::ExitCode;

use anyhow::Context;
use bot_bottle::sidecar::egress::{EgressArgs, EgressConfig, EgressServer};

fn main() -> ExitCode {
    bot_bottle::sidecar::daemon::main::<EgressArgs, _>("bot-bottle-egress", run)
}

fn run(args: EgressArgs) -> anyhow::Result<()> {
    // One thread by default: per request, cross-thread wake-ups cost more than the work
    // itself (docs/decisions/0010-egress-event-loop.md).
    let mut builder = if args.threads > 1 {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(usize::from(args.threads));
        b
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let runtime = builder
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let config = EgressConfig::from_args(args)?;
        let server = EgressServer::bind(config).await?;
        tracing::info!("egress listening");
        server.run().await?;
        Ok(())
    })
}
