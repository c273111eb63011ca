//! `init`: create an agent file (and a starter bottle when the home has none) by asking a
//! few questions. Never overwrites without a yes.

use std::io::{BufRead as _, IsTerminal as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;

use crate::manifest::is_valid_entity_name;

use super::context::home_root;
use super::output::say;
use super::{InitArgs, ProviderArg};

pub(crate) fn init(args: &InitArgs) -> anyhow::Result<ExitCode> {
    let root = home_root()?;
    let terminal = std::io::stdin().is_terminal();
    let mut input = std::io::stdin().lock();
    let mut ask = |question: &str| -> anyhow::Result<Option<String>> {
        eprint!("{question}");
        let mut line = String::new();
        let n = input
            .read_line(&mut line)
            .context("cannot read the answer from stdin")?;
        // Without a terminal the answer is not echoed: end the question's line ourselves so
        // the next question or message starts on its own line.
        if !terminal {
            eprintln!();
        }
        Ok((n > 0).then(|| line.trim().to_string()))
    };

    let name = match &args.name {
        Some(n) => n.clone(),
        None => ask("agent name: ")?.ok_or_else(|| {
            anyhow::anyhow!("no agent name given; pass it as `bot-bottle init <name>`")
        })?,
    };
    if !is_valid_entity_name(&name) {
        anyhow::bail!("`{name}` is not a valid agent name; names match `[a-z][a-z0-9-]*`");
    }
    // Before any further question: an existing agent is never overwritten without `--force`.
    let agent_path = root.join("agents").join(format!("{name}.md"));
    if agent_path.exists() && !args.force {
        anyhow::bail!(
            "`{}` already exists and was left unchanged; edit it with `bot-bottle edit {name}`, or pass `--force` to overwrite it",
            agent_path.display()
        );
    }

    let bottles = existing_bottles(&root);
    let bottle = match &args.bottle {
        Some(b) => b.clone(),
        None if bottles.is_empty() => "default".to_string(),
        None => {
            let answer = ask(&format!(
                "bottle ({}) [{}]: ",
                bottles.join(", "),
                bottles[0]
            ))?
            .unwrap_or_default();
            if answer.is_empty() {
                bottles[0].clone()
            } else {
                answer
            }
        }
    };
    if !is_valid_entity_name(&bottle) {
        anyhow::bail!("`{bottle}` is not a valid bottle name; names match `[a-z][a-z0-9-]*`");
    }
    let bottle_path = root.join("bottles").join(format!("{bottle}.md"));
    // The starter bottle of an empty home is the one bottle made without being asked for.
    let create = !bottle_path.exists();
    let starter = args.bottle.is_none() && bottles.is_empty();
    if create && !starter && !args.create_bottle {
        let available = if bottles.is_empty() {
            "none".to_string()
        } else {
            bottles.join(", ")
        };
        anyhow::bail!(
            "no bottle named `{bottle}` in {} (available: {available}); pick an existing one, or pass `--bottle {bottle} --create-bottle` to create it",
            root.join("bottles").display()
        );
    }
    if !create {
        if let Some(p) = args.provider {
            anyhow::bail!(
                "`--provider {}` applies only to a bottle `init` creates, and bottle `{bottle}` exists ({}); drop `--provider`, or set `agent_provider.template` in that file",
                provider_name(p),
                bottle_path.display()
            );
        }
    }
    let provider = if create {
        Some(match args.provider {
            Some(p) => p,
            None => {
                let answer = ask("provider for the new bottle (claude, codex) [claude]: ")?
                    .unwrap_or_default();
                match answer.as_str() {
                    "" | "claude" => ProviderArg::Claude,
                    "codex" => ProviderArg::Codex,
                    other => {
                        anyhow::bail!("unknown provider `{other}`; choose `claude` or `codex`")
                    }
                }
            }
        })
    } else {
        None
    };

    let prompt = ask("system prompt (one line, optional): ")?.unwrap_or_default();

    let mut created = Vec::new();
    if let Some(provider) = provider {
        write_new(&bottle_path, &starter_bottle(provider))?;
        created.push(bottle_path.clone());
    }
    write_file(&agent_path, &agent_file(&bottle, &prompt))?;
    created.push(agent_path.clone());
    for p in &created {
        say(&format!("wrote `{}`", p.display()));
    }
    say(&format!(
        "next: `bot-bottle start --dry-run {name}` to see what it would run with (the bottle format: docs/manifest.md)"
    ));
    Ok(ExitCode::SUCCESS)
}

fn provider_name(p: ProviderArg) -> &'static str {
    match p {
        ProviderArg::Claude => "claude",
        ProviderArg::Codex => "codex",
    }
}

fn existing_bottles(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root.join("bottles"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let file = e.file_name().into_string().ok()?;
            let stem = file.strip_suffix(".md")?;
            is_valid_entity_name(stem).then(|| stem.to_string())
        })
        .collect();
    names.sort();
    names
}

fn agent_file(bottle: &str, prompt: &str) -> String {
    format!("---\nbottle: {bottle}\n---\n{}\n", prompt.trim())
}

fn starter_bottle(provider: ProviderArg) -> String {
    let (template, note) = match provider {
        ProviderArg::Claude => (
            "claude",
            "# auth_token: CLAUDE_CODE_OAUTH_TOKEN   # host env var egress injects; never reaches the agent",
        ),
        ProviderArg::Codex => (
            "codex",
            "# forward_host_credentials: true        # use your host `codex login`; the agent gets placeholders",
        ),
    };
    format!(
        "---\nagent_provider:\n  template: {template}\n  {note}\nenv: {{}}\negress:\n  routes: []\n---\nStarter bottle: add env, egress routes and git-gate remotes as the agent needs them.\n"
    )
}

fn write_new(path: &PathBuf, text: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create `{}`", dir.display()))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("cannot create `{}`", path.display()))?;
    std::io::Write::write_all(&mut f, text.as_bytes())
        .with_context(|| format!("cannot write `{}`", path.display()))
}

fn write_file(path: &PathBuf, text: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create `{}`", dir.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write `{}`", path.display()))
}
