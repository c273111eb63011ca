//! `bot-bottle-supervise`: the bottle's supervise daemon (see `bot_bottle::sidecar::supervise`).
//!
//! `serve` runs the MCP server. `pending`, `decide` and `submit` are how the host, which
//! shares no directory with the bundle, reads requests out and hands decisions in (run
//! through `docker exec`): `pending` prints one JSON request per line, `decide` reads one
//! JSON decision on stdin, `submit` queues a request the operator wrote.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use bot_bottle::sidecar::egress::ListenAddr;
use bot_bottle::sidecar::supervise::apply_decision;
use bot_bottle::sidecar::supervise::grants::Grants;
use bot_bottle::sidecar::supervise::server::{self, Listener, SuperviseConfig};
use bot_bottle::sidecar::supervise::spool::{Change, Decision, Spool};
use bot_bottle::sidecar::supervise::validate;
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "bot-bottle-supervise",
    about = "MCP server through which the agent asks the operator for changes"
)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Serve the MCP tools over streamable HTTP.
    Serve {
        /// Listen address: `host:port` or `unix:/path/to/socket`.
        #[arg(long, value_name = "ADDR")]
        listen: ListenAddr,
        /// Directory holding requests and decisions.
        #[arg(long, value_name = "DIR")]
        spool: PathBuf,
        /// Egress's routes file (read for `list-routes`).
        #[arg(long, value_name = "FILE")]
        routes: PathBuf,
        /// A gate's audit log, read for `list-refusals` (repeat for each gate).
        #[arg(long, value_name = "FILE")]
        audit_log: Vec<PathBuf>,
        /// The bottle's identity, named in refusal events.
        #[arg(long, default_value = "")]
        bottle: String,
        /// Largest request body accepted, in bytes.
        #[arg(long, default_value_t = server::DEFAULT_MAX_BODY)]
        max_body: usize,
    },
    /// Print the undecided requests, one JSON object per line, oldest first.
    Pending {
        #[arg(long, value_name = "DIR")]
        spool: PathBuf,
    },
    /// Record the decision read as JSON on stdin; an approved route goes live at once.
    Decide {
        #[arg(long, value_name = "DIR")]
        spool: PathBuf,
        /// Egress's routes file (rewritten with the granted route).
        #[arg(long, value_name = "FILE")]
        routes: PathBuf,
    },
    /// Print grant events (granted, expired) after the first `skip` lines, one JSON per line.
    Events {
        #[arg(long, value_name = "DIR")]
        spool: PathBuf,
        #[arg(long, default_value_t = 0)]
        skip: usize,
    },
    /// Queue a route request for the operator, as if the agent had asked (the dashboard turns
    /// a refusal into one); prints the new request's id.
    Submit {
        #[arg(long, value_name = "DIR")]
        spool: PathBuf,
        #[arg(long)]
        host: String,
        /// A path prefix (repeat for more; none means the whole host).
        #[arg(long = "path")]
        paths: Vec<String>,
        /// A method (repeat for more; none means any).
        #[arg(long = "method")]
        methods: Vec<String>,
        #[arg(long)]
        reason: String,
    },
}

/// Largest decision accepted on stdin.
const MAX_DECISION: u64 = 64 * 1024;

fn main() -> ExitCode {
    bot_bottle::sidecar::daemon::main::<Args, _>("bot-bottle-supervise", run)
}

fn run(args: Args) -> anyhow::Result<()> {
    match args.cmd {
        Cmd::Serve {
            listen,
            spool,
            routes,
            audit_log,
            bottle,
            max_body,
        } => {
            let cfg = SuperviseConfig {
                bottle,
                spool,
                routes_file: routes,
                audit_files: audit_log,
                max_body,
            };
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            runtime.block_on(async move {
                let listener = match &listen {
                    ListenAddr::Tcp(a) => Listener::Tcp(
                        tokio::net::TcpListener::bind(a)
                            .await
                            .with_context(|| format!("cannot listen on {a}"))?,
                    ),
                    ListenAddr::Unix(p) => {
                        // A socket left by a previous run would make bind fail.
                        let _ = std::fs::remove_file(p);
                        let l = tokio::net::UnixListener::bind(p)
                            .with_context(|| format!("cannot listen on {}", p.display()))?;
                        use std::os::unix::fs::PermissionsExt;
                        std::fs::set_permissions(
                            p,
                            std::fs::Permissions::from_mode(
                                bot_bottle::sidecar::relay::SOCKET_MODE,
                            ),
                        )
                        .with_context(|| format!("cannot open up {}", p.display()))?;
                        Listener::Unix(l)
                    }
                };
                tracing::info!(%listen, "supervise listening");
                server::serve(listener, cfg).await?;
                Ok(())
            })
        }
        Cmd::Pending { spool } => {
            let spool = Spool::open(&spool)?;
            let mut out = String::new();
            for r in spool.pending()? {
                out.push_str(&serde_json::to_string(&r)?);
                out.push('\n');
            }
            print!("{out}");
            Ok(())
        }
        Cmd::Submit {
            spool,
            host,
            paths,
            methods,
            reason,
        } => {
            // Checked like the agent's own proposals.
            let route = validate::route(&host, &paths, &methods).map_err(anyhow::Error::msg)?;
            let reason = validate::reason(&reason).map_err(anyhow::Error::msg)?;
            let req = Spool::open(&spool)?.submit(Change::Route(route), reason)?;
            println!("{}", req.id);
            Ok(())
        }
        Cmd::Events { spool, skip } => {
            let path = spool.join("events.jsonl");
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
                Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
            };
            for line in text.lines().skip(skip) {
                println!("{line}");
            }
            Ok(())
        }
        Cmd::Decide { spool, routes } => {
            let grants = Grants::new(&spool, &routes);
            let spool = Spool::open(&spool)?;
            let mut buf = String::new();
            std::io::stdin()
                .take(MAX_DECISION + 1)
                .read_to_string(&mut buf)
                .context("cannot read the decision on stdin")?;
            anyhow::ensure!(
                buf.len() as u64 <= MAX_DECISION,
                "the decision on stdin is larger than 64 KiB"
            );
            let d: Decision =
                serde_json::from_str(&buf).context("the decision on stdin is not valid")?;
            apply_decision(&spool, &grants, &d)?;
            Ok(())
        }
    }
}
