//! `requests`, `approve`, `reject`: the operator answers what agents asked for through
//! supervise. Each command first pulls new requests out of the running bottles (see
//! `crate::requests`), so the queue is current.

use std::process::ExitCode;
use std::time::Duration;

use crate::requests::{DockerLink, Queue, decide, summary, sync};
use crate::runner::RealRunner;
use crate::sidecar::supervise::spool::{Decision, Lifetime, Verdict, now_rfc3339};

fn queue() -> anyhow::Result<Queue> {
    Ok(Queue::open(&super::context::home_root()?)?)
}

fn pull(q: &Queue, link: &DockerLink<'_>) -> anyhow::Result<()> {
    for w in sync(q, link)? {
        super::warn(&format!("cannot read requests from {w}"));
    }
    Ok(())
}

/// `bot-bottle requests [--json]`: undecided requests, oldest first.
pub fn list(args: &super::RequestsArgs) -> anyhow::Result<ExitCode> {
    let q = queue()?;
    let runner = RealRunner;
    pull(&q, &DockerLink { runner: &runner })?;
    let pending = q.pending()?;
    if args.json {
        let v: Vec<_> = pending
            .iter()
            .map(|e| serde_json::json!({"bottle": e.bottle, "request": e.request}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    if pending.is_empty() {
        super::say("no pending requests");
    }
    for e in &pending {
        println!(
            "{}\t{}\t{}\t{}",
            e.request.id,
            e.bottle,
            summary(&e.request),
            e.request.reason
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `bot-bottle approve <id> [--for D | --once | --session | --save]`.
pub fn approve(args: &super::ApproveArgs) -> anyhow::Result<ExitCode> {
    if args.save {
        anyhow::bail!(
            "`approve --save` is not available yet; approve with `--session` and add the route to the bottle file with `bot-bottle edit`"
        );
    }
    let lifetime = match &args.for_ {
        _ if args.once => Lifetime::Once,
        Some(d) => {
            let d: Duration = humantime::parse_duration(d).map_err(|e| {
                anyhow::anyhow!("`--for {d}`: {e}; give a duration such as 10m or 1h")
            })?;
            anyhow::ensure!(d.as_secs() > 0, "`--for` must be at least one second");
            Lifetime::Seconds(d.as_secs())
        }
        None => Lifetime::Session,
    };
    let q = queue()?;
    let runner = RealRunner;
    let link = DockerLink { runner: &runner };
    pull(&q, &link)?;
    let d = Decision {
        id: args.id.clone(),
        verdict: Verdict::Approved,
        decided_at: now_rfc3339(),
        lifetime: Some(lifetime),
        route: None,
        note: None,
    };
    decide(&q, &link, &d)?;
    super::say(&format!("approved {}", args.id));
    Ok(ExitCode::SUCCESS)
}

/// `bot-bottle reject <id> [--reason …]`.
pub fn reject(args: &super::RejectArgs) -> anyhow::Result<ExitCode> {
    let note = args
        .reason
        .as_deref()
        .map(crate::sidecar::supervise::validate::reason)
        .transpose()
        .map_err(|m| anyhow::anyhow!("--reason: {m}"))?;
    let q = queue()?;
    let runner = RealRunner;
    let link = DockerLink { runner: &runner };
    pull(&q, &link)?;
    let d = Decision {
        id: args.id.clone(),
        verdict: Verdict::Rejected,
        decided_at: now_rfc3339(),
        lifetime: None,
        route: None,
        note,
    };
    decide(&q, &link, &d)?;
    super::say(&format!("rejected {}", args.id));
    Ok(ExitCode::SUCCESS)
}
