//! Shell completion: clap's generated script for the static parts (commands, flags), plus a
//! small per-shell addition that completes agent names for `start`, `info` and `edit` by
//! asking the hidden `__complete-agents` command, so the names stay current without
//! regenerating the script.

use std::io::Write as _;
use std::process::ExitCode;

use clap::CommandFactory as _;
use clap_complete::Shell;

use crate::manifest::{self, LoadOptions};

/// The hidden command the scripts call.
pub(crate) const AGENTS_COMMAND: &str = "__complete-agents";

/// Commands whose first positional argument is an agent name.
const AGENT_COMMANDS: [&str; 3] = ["start", "info", "edit"];

/// The completion script for `shell`.
pub(crate) fn script(shell: Shell) -> String {
    let mut cmd = super::Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "bot-bottle", &mut out);
    let generated = String::from_utf8_lossy(&out).into_owned();
    match shell {
        Shell::Bash => format!("{generated}\n{}", bash_addition()),
        Shell::Zsh => zsh(&generated),
        Shell::Fish => format!("{generated}\n{}", fish_addition()),
        _ => generated,
    }
}

fn bash_addition() -> String {
    format!(
        r#"# Agent names for `{cmds}`, from the current home (falls back to the above otherwise).
_bot_bottle_with_agents() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" prev="${{COMP_WORDS[COMP_CWORD-1]}}"
    local sub="" positionals=0 i w
    for ((i = 1; i < COMP_CWORD; i++)); do
        w="${{COMP_WORDS[i]}}"
        if [[ -z "$sub" ]]; then
            [[ "$w" != -* ]] && sub="$w"
        elif [[ "$w" != -* && "${{COMP_WORDS[i-1]}}" != --backend ]]; then
            positionals=$((positionals + 1))
        fi
    done
    case "$sub" in
        {alts})
            if [[ $positionals -eq 0 && "$cur" != -* && "$prev" != --backend ]]; then
                COMPREPLY=( $(compgen -W "$(bot-bottle {agents} 2>/dev/null)" -- "$cur") )
                return 0
            fi
            ;;
    esac
    _bot__bottle "$@"
}}
complete -F _bot_bottle_with_agents -o bashdefault -o default bot-bottle
"#,
        cmds = AGENT_COMMANDS.join("`, `"),
        alts = AGENT_COMMANDS.join("|"),
        agents = AGENTS_COMMAND,
    )
}

/// zsh: the agent positionals of the agent commands complete through a helper function.
fn zsh(generated: &str) -> String {
    let helper = format!(
        "_bot_bottle_agents() {{\n    local -a agents\n    agents=(${{(f)\"$(bot-bottle {AGENTS_COMMAND} 2>/dev/null)\"}})\n    compadd -a agents\n}}\n"
    );
    let mut out = String::with_capacity(generated.len() + helper.len());
    for (i, line) in generated.lines().enumerate() {
        if line.starts_with("':agent -- ") && line.ends_with(":_default' \\") {
            out.push_str(&line.replace(":_default' \\", ":_bot_bottle_agents' \\"));
        } else {
            out.push_str(line);
        }
        out.push('\n');
        // After the `#compdef` line, so the helper exists before the completer runs.
        if i == 0 {
            out.push_str(&helper);
        }
    }
    out
}

fn fish_addition() -> String {
    let mut s = String::from("# Agent names, from the current home.\n");
    for c in AGENT_COMMANDS {
        s.push_str(&format!(
            "complete -c bot-bottle -n \"__fish_bot_bottle_using_subcommand {c}\" -f -a \"(bot-bottle {AGENTS_COMMAND} 2>/dev/null)\"\n"
        ));
    }
    s
}

/// `__complete-agents`: the startable agents, one per line; silent on any problem (a
/// completion must never print errors into the operator's command line).
pub(crate) fn agents() -> ExitCode {
    let names = (|| {
        let root = super::context::home_root().ok()?;
        let cwd = std::env::current_dir().ok()?;
        let m = manifest::load(&LoadOptions { root, cwd }).ok()?;
        Some(m.agents.into_keys().collect::<Vec<_>>())
    })()
    .unwrap_or_default();
    let mut out = std::io::stdout().lock();
    for n in names {
        if writeln!(out, "{n}").is_err() {
            break;
        }
    }
    ExitCode::SUCCESS
}
