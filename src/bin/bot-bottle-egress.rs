//! `bot-bottle-egress`: the bottle's egress proxy (see `bot_bottle::sidecar::egress`).

use std::process::ExitCode;

use anyhow::Context;
use bot_bottle::sidecar::egress::{EgressArgs, EgressConfig, EgressServer};
use clap::Parser;

fn main() -> ExitCode {
    let args = EgressArgs::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BOT_BOTTLE_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bot-bottle-egress: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(args: EgressArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
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
