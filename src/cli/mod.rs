//! Command-line entry: clap definitions and dispatch. Each command is a thin function over
//! the library layers; errors become one `bot-bottle: error:` line and an exit code here.

mod bottles;
mod complete;
mod context;
mod dashboard;
mod doctor;
mod edit;
mod info;
mod init;
mod list;
mod output;
mod requests;
mod start;

use std::io::Write;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub(crate) use output::{say, warn};

#[derive(Debug, Parser)]
#[command(
    name = "bot-bottle",
    version,
    about = "Run AI coding agents with full permissions inside sandboxes that hold only what you granted",
    long_about = "Run AI coding agents (Claude Code, Codex) with full permissions inside a sandbox \
(a bottle) that holds only the secrets, skills, network routes and git remotes you granted.\n\n\
Bottles and agents are Markdown files with YAML frontmatter under `$BOT_BOTTLE_HOME` \
(default `~/.bot-bottle`): `bottles/<name>.md` and `agents/<name>.md`. A repository may \
ship agents in `.bot-bottle/agents/`, never bottles.",
    propagate_version = true
)]
pub(crate) struct Cli {
    /// More log output on stderr (repeat for more); `RUST_LOG` works too
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start an agent in a new bottle (shows the plan and asks before launching)
    Start(StartArgs),
    /// Start a preserved bottle again under its recorded identity
    Resume(ResumeArgs),
    /// List agents you can start, or bottles that are running
    List(ListArgs),
    /// Remove every bot-bottle container, network and orphaned state dir
    Cleanup(CleanupArgs),
    /// Show what an agent would run with
    Info(InfoArgs),
    /// Create an agent file interactively (and a starter bottle when none exists)
    Init(InitArgs),
    /// Open an agent's file in `$EDITOR`, then check it still loads
    Edit(EditArgs),
    /// Run a command inside a running bottle as the agent user
    Exec(ExecArgs),
    /// Terminal dashboard: pending requests, refusals, running bottles, new launches
    Dashboard,
    /// Requests agents made through supervise that wait for you, oldest first
    Requests(RequestsArgs),
    /// Approve a request (a route goes live at once, without a restart)
    Approve(ApproveArgs),
    /// Reject a request (the waiting agent gets your reason)
    Reject(RejectArgs),
    /// Prove this host's bottles fail closed: host checks, then attacks from inside a throwaway bottle
    Doctor(DoctorArgs),
    /// Print a shell completion script to stdout
    Completions(CompletionsArgs),
    /// Build (or find cached) the provider and sidecar images without starting anything
    #[command(name = "build-images")]
    BuildImages,
    /// Agent names for shell completion, one per line (used by the completion scripts)
    #[command(name = "__complete-agents", hide = true)]
    CompleteAgents,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum BackendArg {
    Docker,
    Smolmachines,
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// Agent to start (see `bot-bottle list available`)
    pub agent: String,
    /// Print the preflight summary and stop; creates nothing (also `BOT_BOTTLE_DRY_RUN=1`)
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Launch without asking for confirmation (for scripts)
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Copy the current directory into the bottle as the agent's workspace
    #[arg(long)]
    pub cwd: bool,
    /// Pass `--remote-control` to Claude Code
    #[arg(long)]
    pub(crate) remote_control: bool,
    /// Where the agent runs
    #[arg(long, value_enum, env = "BOT_BOTTLE_BACKEND", default_value = "docker")]
    pub(crate) backend: BackendArg,
}

#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// Identity of the preserved bottle (printed when its session ended)
    pub identity: String,
    /// Print the preflight summary and stop
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Launch without asking for confirmation
    #[arg(long, short = 'y')]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(subcommand)]
    pub(crate) what: ListWhat,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ListWhat {
    /// Agents you can start, one name per line on stdout
    Available {
        /// Machine-readable output
        #[arg(long)]
        json: bool,
    },
    /// Running bottles: `backend<TAB>id<TAB>agent<TAB>services`
    Active {
        /// Machine-readable output
        #[arg(long)]
        json: bool,
    },
    /// Preserved bottles you can `resume`: `id<TAB>agent<TAB>bottle<TAB>backend<TAB>started`
    Preserved {
        /// Machine-readable output
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct CleanupArgs {
    /// Remove without asking
    #[arg(long, short = 'y')]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Agent to describe
    pub agent: String,
    /// Machine-readable output
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Name of the new agent (asked when omitted)
    pub name: Option<String>,
    /// Existing bottle the agent runs in (asked when omitted; an empty home gets `default`)
    #[arg(long)]
    pub bottle: Option<String>,
    /// Create the `--bottle` named when it does not exist yet (otherwise an unknown name is an error)
    #[arg(long, requires = "bottle")]
    pub(crate) create_bottle: bool,
    /// Provider of the bottle `init` creates; an error when the bottle already exists
    #[arg(long, value_enum)]
    pub(crate) provider: Option<ProviderArg>,
    /// Overwrite an existing agent file (otherwise `init` refuses before asking anything)
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ProviderArg {
    Claude,
    Codex,
}

#[derive(Debug, Args)]
pub struct EditArgs {
    /// Agent whose file to edit
    pub agent: String,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Identity of a running bottle (see `bot-bottle list active`)
    pub identity: String,
    /// Command and arguments to run
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RequestsArgs {
    /// Machine-readable output
    #[arg(long)]
    pub json: bool,
    /// Show the running bottles' recent refusals (egress and git-gate) instead of requests
    #[arg(long)]
    pub refusals: bool,
    /// With `--refusals`: only this bottle's
    #[arg(long, requires = "refusals", value_name = "ID")]
    pub(crate) bottle: Option<String>,
    /// With `--refusals`: print each refusal as it happens, from the bottle's start on
    /// (Ctrl-C ends)
    #[arg(long, requires = "refusals")]
    pub(crate) follow: bool,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("lifetime").args(["for_", "once", "session", "save"])))]
pub struct ApproveArgs {
    /// Request id (see `bot-bottle requests`)
    pub id: String,
    /// Keep the grant this long, e.g. 10m or 2h
    #[arg(long = "for", value_name = "DURATION")]
    pub(crate) for_: Option<String>,
    /// Only the next matching request; then the grant is gone
    #[arg(long)]
    pub once: bool,
    /// Until the bottle ends (the default)
    #[arg(long)]
    pub session: bool,
    /// Also save the route to the bottle file (shows the change and asks first)
    #[arg(long)]
    pub save: bool,
    /// With `--save`: write the bottle file without asking (for scripts)
    #[arg(long, requires = "save")]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct RejectArgs {
    /// Request id (see `bot-bottle requests`)
    pub id: String,
    /// Why, in one line; the waiting agent reads it
    #[arg(long)]
    pub reason: Option<String>,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Machine-readable output
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// Shell to generate for
    pub shell: clap_complete::Shell,
}

/// Parse argv and run; the process exit code follows SPEC F-CLI (0 ok, 1 error, 130 Ctrl-C).
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return clap_exit(&e),
    };
    init_tracing(cli.verbose);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            output::error_line(&e);
            ExitCode::from(1)
        }
    }
}

/// `--help`/`--version` succeed; every argument error is exit 1 (not clap's 2), as is any
/// other error of ours.
fn clap_exit(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            ExitCode::from(1)
        }
        _ => {
            let rendered = e.render().to_string();
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "bot-bottle: {rendered}");
            ExitCode::from(1)
        }
    }
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    // From `-vv` on, lines carry the time since start, so a launch's steps can be timed.
    let _ = if verbose >= 2 {
        fmt.with_timer(tracing_subscriber::fmt::time::uptime())
            .try_init()
    } else {
        fmt.without_time().try_init()
    };
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Start(args) => start::start(&args),
        Command::Info(args) => info::info(&args),
        Command::List(ListArgs {
            what: ListWhat::Available { json },
        }) => list::available(json),
        Command::Init(args) => init::init(&args),
        Command::Edit(args) => edit::edit(&args),
        Command::Completions(args) => {
            output::stdout_write(&complete::script(args.shell))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::CompleteAgents => Ok(complete::agents()),
        Command::Resume(args) => start::resume(&args),
        Command::List(ListArgs {
            what: ListWhat::Active { json },
        }) => bottles::list_active(json),
        Command::List(ListArgs {
            what: ListWhat::Preserved { json },
        }) => bottles::list_preserved(json),
        Command::Cleanup(args) => bottles::cleanup(&args),
        Command::Exec(args) => bottles::exec(&args),
        Command::Dashboard => dashboard::dashboard(),
        Command::Requests(args) => requests::list(&args),
        Command::Approve(args) => requests::approve(&args),
        Command::Reject(args) => requests::reject(&args),
        Command::BuildImages => start::build_images(),
        Command::Doctor(args) => doctor::doctor(&args),
    }
}
