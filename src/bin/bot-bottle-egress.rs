//! `bot-bottle-egress`: the bottle's egress proxy (see `bot_bottle::sidecar::egress`).

use std::process::ExitCode;

use anyhow::Context;
use bot_bottle::sidecar::egress::{EgressArgs, EgressConfig, EgressServer};
use clap::Parser;

fn main() -> ExitCode {
    let args = match EgressArgs::try_parse() {
        Ok(a) => a,
        Err(e) => return usage_exit(&e),
    };
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

/// `--help` succeeds; a bad argument is a one-line error and exit 1, like every other error.
fn usage_exit(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    let rendered = e.render().to_string();
    let first = rendered.lines().next().unwrap_or("invalid arguments");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    eprintln!("bot-bottle-egress: error: {first}; see --help");
    ExitCode::from(1)
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
