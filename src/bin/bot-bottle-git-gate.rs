//! `bot-bottle-git-gate`: the bottle's git gate (see `bot_bottle::sidecar::git_gate`).
//! `bot-bottle-git-gate pre-receive` is the hook mode git runs inside a push.

use std::process::ExitCode;

use anyhow::Context;
use bot_bottle::sidecar::git_gate::{GateArgs, GateServer, hook};
use clap::Parser;

fn main() -> ExitCode {
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == "pre-receive")
    {
        let stdin = std::io::stdin().lock();
        let code = hook::pre_receive(stdin, &mut std::io::stderr());
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    let args = match GateArgs::try_parse() {
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
            eprintln!("bot-bottle-git-gate: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// `--help` succeeds; a bad argument is a one-line error and exit 1.
fn usage_exit(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    let rendered = e.render().to_string();
    let first = rendered.lines().next().unwrap_or("invalid arguments");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    eprintln!("bot-bottle-git-gate: error: {first}; see --help");
    ExitCode::from(1)
}

fn run(args: GateArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let server = GateServer::bind(args).await?;
        tracing::info!("git-gate listening");
        server.run().await?;
        Ok(())
    })
}
