//! `bot-bottle-git-gate`: the bottle's git gate (see `bot_bottle::sidecar::git_gate`).
//! `bot-bottle-git-gate pre-receive` is the hook mode git runs inside a push.

use std::process::ExitCode;

use anyhow::Context;
use bot_bottle::sidecar::git_gate::{GateArgs, GateServer, hook};

fn main() -> ExitCode {
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == "pre-receive")
    {
        let stdin = std::io::stdin().lock();
        let code = hook::pre_receive(stdin, &mut std::io::stderr());
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    bot_bottle::sidecar::daemon::main::<GateArgs, _>("bot-bottle-git-gate", run)
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
