//! `bot-bottle-init`: the sidecar bundle's entrypoint (see `bot_bottle::sidecar::init`).

use std::process::ExitCode;

use bot_bottle::sidecar::init::{self, InitConfig};

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
    let code = match InitConfig::from_env().map_err(anyhow::Error::from) {
        Err(e) => {
            eprintln!("bot-bottle-init: error: {e}");
            init::EXIT_CONFIG
        }
        Ok(config) => match init::run(&config) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("bot-bottle-init: error: {e}");
                1
            }
        },
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
