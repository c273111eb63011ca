//! `bot-bottle-relay`: loopback TCP ⇄ unix socket relay (see `bot_bottle::sidecar::relay`).

use std::process::ExitCode;

use bot_bottle::sidecar::relay::{self, Relay};
use tokio::signal::unix::{SignalKind, signal};

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{}", relay::USAGE);
        return ExitCode::SUCCESS;
    }
    let config = match relay::parse_args(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bot-bottle-relay: error: {e}");
            return ExitCode::from(1);
        }
    };
    match serve(&config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bot-bottle-relay: error: {e}");
            ExitCode::from(1)
        }
    }
}

fn serve(config: &relay::RelayConfig) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let relay = Relay::bind(config).await?;
        for f in relay.forwards() {
            // One line per forward: the readiness signal scripts and tests wait for.
            eprintln!("bot-bottle-relay: listening {f}");
        }
        relay
            .run(async {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            })
            .await;
        Ok(())
    })
}
