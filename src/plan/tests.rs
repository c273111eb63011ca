//! Tests of `resolve`, the summary and `answer_prompts` over whole manifests.

use std::collections::BTreeMap;

use super::testutil::{agent, bottle, host, manifest};
use super::*;
use crate::manifest::AuthScheme;
use crate::manifest::{AgentProvider, EnvValue, GitRepo, GitUser, PipelockOpts, Route, RouteAuth};

fn opts() -> StartOptions {
    StartOptions {
        gvisor: Some(true),
        ..StartOptions::fresh(BackendKind::Docker)
    }
}

fn route(h: &str, token_ref: Option<&str>) -> Route {
    Route {
        host: h.into(),
        path_allowlist: vec![],
        auth: token_ref.map(|r| RouteAuth {
            scheme: AuthScheme::Bearer,
            token_ref: r.into(),
        }),
        pipelock: PipelockOpts::default(),
    }
}

fn simple() -> Manifest {
    manifest(vec![bottle("dev")], vec![agent("reviewer", "dev")])
}

#[test]
fn fresh_start_mints_identity_and_names() {
    let plan = resolve(&simple(), "reviewer", &opts(), &host()).unwrap();
    assert_eq!(plan.identity, "reviewer-k3j9x2");
    assert_eq!(plan.names.agent_container, "bot-bottle-reviewer-k3j9x2");
    assert_eq!(
        plan.names.sidecar_container,
        "bot-bottle-sidecars-reviewer-k3j9x2"
    );
    assert_eq!(plan.root, PathBuf::from("/root/.bot-bottle"));
    assert_eq!(plan.agent, "reviewer");
    assert_eq!(plan.bottle, "dev");
    assert_eq!(plan.prompt, "You review code.");
    assert_eq!(plan.image.tag, "bot-bottle-claude:latest");
    assert_eq!(plan.runtime, Runtime::Runsc);
    assert_eq!(plan.provider.command[0], "claude");
    assert!(!plan.names.container_pinned);
}

#[test]
fn parallel_starts_get_distinct_identities() {
    let mut h2 = host();
    h2.random_suffix = "zz0000".into();
    let a = resolve(&simple(), "reviewer", &opts(), &host()).unwrap();
    let b = resolve(&simple(), "reviewer", &opts(), &h2).unwrap();
    assert_ne!(a.identity, b.identity);
    assert_ne!(a.names.project, b.names.project);
}

#[test]
fn resume_pins_identity_and_uses_resume_command() {
    let o = StartOptions {
        identity: Some("reviewer-old111".into()),
        resume: true,
        ..opts()
    };
    let plan = resolve(&simple(), "reviewer", &o, &host()).unwrap();
    assert_eq!(plan.identity, "reviewer-old111");
    assert!(plan.provider.command.contains(&"--continue".to_string()));
    let bad = StartOptions {
        identity: Some("../../etc".into()),
        ..opts()
    };
    assert!(matches!(
        resolve(&simple(), "reviewer", &bad, &host()),
        Err(PlanError::InvalidIdentity(_))
    ));
}

#[test]
fn container_pin_comes_from_the_host_env() {
    let mut h = host();
    h.vars
        .insert("BOT_BOTTLE_CONTAINER".into(), "bot-bottle-fixed".into());
    let plan = resolve(&simple(), "reviewer", &opts(), &h).unwrap();
    assert_eq!(plan.names.agent_container, "bot-bottle-fixed");
    assert!(plan.names.container_pinned);
    assert!(format!("{plan}").contains("bot-bottle-fixed (BOT_BOTTLE_CONTAINER)"));
}

#[test]
fn runtime_follows_the_probe() {
    let cases = [
        (BackendKind::Docker, Some(true), Runtime::Runsc, "runsc"),
        (BackendKind::Docker, Some(false), Runtime::Runc, "runc"),
        (
            BackendKind::Docker,
            None,
            Runtime::RuncUnknown,
            "runc (engine not answering)",
        ),
        (BackendKind::Smolmachines, None, Runtime::MicroVm, "smolvm"),
    ];
    for (backend, gvisor, want, shown) in cases {
        let o = StartOptions {
            backend,
            gvisor,
            ..opts()
        };
        let plan = resolve(&simple(), "reviewer", &o, &host()).unwrap();
        assert_eq!(plan.runtime, want);
        assert_eq!(plan.runtime.is_runsc(), want == Runtime::Runsc);
        assert!(format!("{plan}").contains(shown), "{shown}");
    }
}

#[test]
fn unknown_agent_and_bottle_are_errors() {
    assert!(matches!(
        resolve(&simple(), "nobody", &opts(), &host()),
        Err(PlanError::UnknownAgent(_))
    ));
    let m = manifest(vec![], vec![agent("a", "gone")]);
    let err = resolve(&m, "a", &opts(), &host()).unwrap_err();
    assert!(matches!(&err, PlanError::UnknownBottle { bottle, .. } if bottle == "gone"));
}

#[test]
fn remote_control_passes_for_claude_and_fails_for_codex() {
    let o = StartOptions {
        remote_control: true,
        ..opts()
    };
    let plan = resolve(&simple(), "reviewer", &o, &host()).unwrap();
    assert!(
        plan.provider
            .command
            .contains(&"--remote-control".to_string())
    );
    assert!(plan.remote_control);
    let mut b = bottle("dev");
    b.agent_provider.template = ProviderKind::Codex;
    let m = manifest(vec![b], vec![agent("reviewer", "dev")]);
    assert!(matches!(
        resolve(&m, "reviewer", &o, &host()),
        Err(PlanError::RemoteControlUnsupported { .. })
    ));
}

#[test]
fn missing_forwarded_host_var_stops_resolution() {
    let mut b = bottle("dev");
    b.env.insert(
        "GH".into(),
        EnvValue::Interpolate("${GH_TOKEN_HOST}".into()),
    );
    let m = manifest(vec![b], vec![agent("reviewer", "dev")]);
    let err = resolve(&m, "reviewer", &opts(), &host()).unwrap_err();
    assert!(err.to_string().contains("GH_TOKEN_HOST"));
}

#[test]
fn git_identity_has_per_field_provenance_in_the_summary() {
    let mut b = bottle("dev");
    b.git_gate.user = GitUser {
        name: Some("ann".into()),
        email: Some("ann@x.example".into()),
    };
    let mut a = agent("reviewer", "dev");
    a.git_user.name = Some("review-bot".into());
    let plan = resolve(&manifest(vec![b], vec![a]), "reviewer", &opts(), &host()).unwrap();
    assert!(format!("{plan}").contains("name=review-bot (agent), email=ann@x.example (bottle)"));
}

/// A bottle touching every secret path: forwarded env, token_ref routes, a claude auth token.
fn secretful() -> (Manifest, HostEnv, Vec<&'static str>) {
    let mut b = bottle("dev");
    b.env
        .insert("LIT".into(), EnvValue::Literal("not-secret".into()));
    b.env
        .insert("GH".into(), EnvValue::Interpolate("x-${GH_HOST}".into()));
    b.env
        .insert("PIN".into(), EnvValue::Prompt("Enter PIN".into()));
    b.agent_provider = AgentProvider {
        auth_token: Some("CLAUDE_TOK".into()),
        ..Default::default()
    };
    b.egress.routes = vec![
        route("github.com", Some("GH_PAT")),
        route("api.anthropic.com", None),
        route("pypi.example", None),
        route("uploads.github.com", Some("GH_PAT")),
    ];
    b.supervise = true;
    let mut h = host();
    let secrets = vec!["FWD-SECRET-111", "PAT-SECRET-222", "OAUTH-SECRET-333"];
    h.vars.insert("GH_HOST".into(), secrets[0].into());
    h.vars.insert("GH_PAT".into(), secrets[1].into());
    h.vars.insert("CLAUDE_TOK".into(), secrets[2].into());
    (
        manifest(vec![b], vec![agent("reviewer", "dev")]),
        h,
        secrets,
    )
}

#[test]
fn effective_routes_and_token_slots_in_the_plan() {
    let (m, h, secrets) = secretful();
    let plan = resolve(&m, "reviewer", &opts(), &h).unwrap();
    let hosts: Vec<_> = plan.routes.iter().map(|r| r.host.as_str()).collect();
    assert_eq!(
        hosts,
        [
            "api.anthropic.com",
            "github.com",
            "pypi.example",
            "uploads.github.com"
        ]
    );
    let slot = |i: usize| plan.routes[i].auth.as_ref().map(|a| a.token_env.clone());
    assert_eq!(slot(0).as_deref(), Some("EGRESS_TOKEN_0"));
    assert_eq!(slot(1).as_deref(), Some("EGRESS_TOKEN_1"));
    assert_eq!(slot(2), None);
    assert_eq!(slot(3).as_deref(), Some("EGRESS_TOKEN_1"));
    assert_eq!(plan.egress_tokens["EGRESS_TOKEN_0"].expose(), secrets[2]);
    assert_eq!(plan.egress_tokens["EGRESS_TOKEN_1"].expose(), secrets[1]);
    assert_eq!(
        plan.env.forwarded["GH"].expose(),
        format!("x-{}", secrets[0])
    );
    assert_eq!(
        plan.provider.env["CLAUDE_CODE_OAUTH_TOKEN"],
        "egress-placeholder"
    );
}

#[test]
fn no_secret_in_summary_debug_or_provider_files() {
    let (m, h, secrets) = secretful();
    let mut plan = resolve(&m, "reviewer", &opts(), &h).unwrap();
    answer_prompts(&mut plan, &mut |_, _| Ok("PROMPT-SECRET-444".to_string())).unwrap();
    let shown = format!("{plan}");
    let debug = format!("{plan:?}");
    let files: String = plan
        .provider
        .files
        .iter()
        .map(|f| f.contents.as_str())
        .collect();
    for s in secrets.iter().chain(&["PROMPT-SECRET-444"]) {
        assert!(!shown.contains(s), "summary leaks {s}");
        assert!(!debug.contains(s), "debug leaks {s}");
        assert!(!files.contains(s), "provider files leak {s}");
        assert!(
            !plan.provider.command.iter().any(|a| a.contains(s)),
            "argv leaks {s}"
        );
        assert!(
            !plan.provider.env.values().any(|v| v.contains(s)),
            "provider env leaks {s}"
        );
    }
    // Literal values are not printed either: summary and debug show names only.
    assert!(!shown.contains("not-secret") && !debug.contains("not-secret"));
}

#[test]
fn no_codex_token_in_summary_debug_or_files() {
    use super::codex_auth::tests::{NOW, REFRESH, sample_auth};
    let dir = tempfile::tempdir().unwrap();
    let (text, access, id) = sample_auth(NOW + 600);
    std::fs::write(dir.path().join("auth.json"), &text).unwrap();
    let mut b = bottle("dev");
    b.agent_provider = AgentProvider {
        template: ProviderKind::Codex,
        forward_host_credentials: true,
        ..Default::default()
    };
    b.egress.routes = vec![route("chatgpt.com", None), route("auth.openai.com", None)];
    let mut h = host();
    h.now_unix = NOW;
    h.vars
        .insert("CODEX_HOME".into(), dir.path().display().to_string());
    let m = manifest(vec![b], vec![agent("coder", "dev")]);
    let plan = resolve(&m, "coder", &opts(), &h).unwrap();
    let hosts: Vec<_> = plan.routes.iter().map(|r| r.host.as_str()).collect();
    assert_eq!(hosts, ["api.openai.com", "chatgpt.com", "auth.openai.com"]);
    assert_eq!(plan.egress_tokens.len(), 1);
    assert_eq!(plan.egress_tokens["EGRESS_TOKEN_0"].expose(), access);
    let sig = access.rsplit('.').next().unwrap();
    let files: String = plan
        .provider
        .files
        .iter()
        .map(|f| f.contents.as_str())
        .collect();
    for blob in [format!("{plan}"), format!("{plan:?}"), files] {
        for s in [access.as_str(), id.as_str(), sig, REFRESH] {
            assert!(!blob.contains(s), "leak of {s}");
        }
    }
    assert!(format!("{plan}").contains("chatgpt.com [auth:Bearer from "));
}

#[test]
fn summary_shows_names_markers_and_hides_placeholders() {
    let (m, h, _) = secretful();
    let plan = resolve(&m, "reviewer", &opts(), &h).unwrap();
    let s = format!("{plan}");
    for want in [
        "reviewer-k3j9x2",
        "bot-bottle-claude:latest",
        "bot-bottle-reviewer-k3j9x2",
        "runsc",
        "GH, LIT, PIN (prompt)",
        "api.anthropic.com [auth:Bearer from CLAUDE_TOK, set]\n",
        "github.com [auth:Bearer from GH_PAT, set]",
        "egress github.com ← GH_PAT (set)",
        "pypi.example",
        "supervise  on",
        "claude",
    ] {
        assert!(s.contains(want), "missing {want:?} in\n{s}");
    }
    assert!(!s.contains("CLAUDE_CODE_OAUTH_TOKEN"), "{s}");
    assert!(s.contains("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"));
    assert!(
        !s.contains("Enter PIN"),
        "prompt messages are not part of the summary"
    );
    assert!(!s.contains("set]\n  egress"));
}

#[test]
fn summary_lists_skills_and_git_gate_upstreams() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join(".claude/skills/review")).unwrap();
    std::fs::write(dir.path().join("key"), "k").unwrap();
    let mut b = bottle("dev");
    b.git_gate.repos = BTreeMap::from([(
        "proj".to_string(),
        GitRepo {
            url: "ssh://git@code.example:2222/me/proj.git".into(),
            identity: "~/key".into(),
            host_key: None,
            refs: Default::default(),
            extra_hosts: Default::default(),
        },
    )]);
    let mut a = agent("reviewer", "dev");
    a.skills = vec!["review".into()];
    let mut h = host();
    h.home = Some(dir.path().to_path_buf());
    let plan = resolve(&manifest(vec![b], vec![a]), "reviewer", &opts(), &h).unwrap();
    let s = format!("{plan}");
    assert!(s.contains("review"));
    assert!(s.contains("proj → code.example:2222"), "{s}");
    assert_eq!(plan.git_upstreams[0].identity, dir.path().join("key"));
}

#[test]
fn validation_errors_stop_resolution() {
    // Missing skill.
    let mut a = agent("reviewer", "dev");
    a.skills = vec!["absent".into()];
    let m = manifest(vec![bottle("dev")], vec![a]);
    assert!(matches!(
        resolve(&m, "reviewer", &opts(), &host()),
        Err(PlanError::SkillMissing { .. })
    ));
    // Missing git identity file.
    let mut b = bottle("dev");
    b.git_gate.repos.insert(
        "r".into(),
        GitRepo {
            url: "ssh://git@h/x.git".into(),
            identity: "/nonexistent/key".into(),
            host_key: None,
            refs: Default::default(),
            extra_hosts: Default::default(),
        },
    );
    let m = manifest(vec![b], vec![agent("reviewer", "dev")]);
    assert!(matches!(
        resolve(&m, "reviewer", &opts(), &host()),
        Err(PlanError::GitIdentityMissing { .. })
    ));
    // Missing custom Dockerfile.
    let mut b = bottle("dev");
    b.agent_provider.dockerfile = Some("/nonexistent/Dockerfile".into());
    let m = manifest(vec![b], vec![agent("reviewer", "dev")]);
    assert!(matches!(
        resolve(&m, "reviewer", &opts(), &host()),
        Err(PlanError::DockerfileMissing { .. })
    ));
    // Missing token_ref var.
    let mut b = bottle("dev");
    b.egress.routes = vec![route("github.com", Some("NOPE_PAT"))];
    let m = manifest(vec![b], vec![agent("reviewer", "dev")]);
    let err = resolve(&m, "reviewer", &opts(), &host()).unwrap_err();
    assert!(err.to_string().contains("NOPE_PAT"));
}

#[test]
fn missing_credentials_name_the_bottle_file() {
    let (m, mut h, _) = secretful();
    let path = m.bottles["dev"].path.display().to_string();
    for var in ["CLAUDE_TOK", "GH_PAT", "GH_HOST"] {
        let mut h2 = h.clone();
        h2.vars.remove(var);
        let e = resolve(&m, "reviewer", &opts(), &h2)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!("{path}: ")) && e.contains(var),
            "{e}"
        );
    }
    h.vars.remove("GH_PAT");
    assert!(matches!(
        resolve(&m, "reviewer", &opts(), &h),
        Err(PlanError::InBottle { .. })
    ));
}

#[test]
fn info_plan_records_which_credentials_are_set() {
    let (m, mut h, secrets) = secretful();
    h.vars.remove("GH_PAT");
    h.vars.remove("GH_HOST");
    let plan = resolve_for_info(&m, "reviewer", &opts(), &h).unwrap();
    let state: Vec<(&str, &str, bool)> = plan
        .credentials
        .iter()
        .map(|c| (c.used_by.as_str(), c.source.as_str(), c.set))
        .collect();
    assert_eq!(
        state,
        [
            ("agent_provider.auth_token", "CLAUDE_TOK", true),
            ("env.GH", "GH_HOST", false),
            ("egress github.com", "GH_PAT", false),
            ("egress uploads.github.com", "GH_PAT", false),
        ]
    );
    let s = format!("{plan}");
    assert!(
        s.contains("github.com [auth:Bearer from GH_PAT, NOT SET]"),
        "{s}"
    );
    assert!(s.contains("[auth:Bearer from CLAUDE_TOK, set]"), "{s}");
    for v in secrets {
        assert!(!s.contains(v) && !format!("{plan:?}").contains(v));
    }
    // The same bottle with everything set gives the same routes from `resolve`.
    let (m, h, _) = secretful();
    let strict = resolve(&m, "reviewer", &opts(), &h).unwrap();
    let info = resolve_for_info(&m, "reviewer", &opts(), &h).unwrap();
    assert_eq!(strict.route_lines(), info.route_lines());
    assert!(strict.credentials.iter().all(|c| c.set));
}

#[test]
fn every_error_message_is_one_line_with_a_way_out() {
    use super::codex_auth::CodexAuthError as C;
    let p = || PathBuf::from("/p");
    let s = || "x".to_string();
    let errs = [
        PlanError::UnknownBackend(s()),
        PlanError::UnknownAgent(s()),
        PlanError::UnknownBottle {
            agent: s(),
            bottle: s(),
        },
        PlanError::InvalidIdentity(s()),
        PlanError::NoHome,
        PlanError::MissingHostVar {
            name: s(),
            var: s(),
        },
        PlanError::BadInterpolation { name: s() },
        PlanError::MissingTokenRef {
            host: s(),
            var: s(),
        },
        PlanError::MissingAuthToken { var: s() },
        PlanError::InBottle {
            path: p(),
            inner: Box::new(PlanError::MissingAuthToken { var: s() }),
        },
        PlanError::AuthTokenNotClaude { bottle: s() },
        PlanError::ForwardCredentialsNotCodex { bottle: s() },
        PlanError::RemoteControlUnsupported { provider: "codex" },
        PlanError::SkillMissing {
            name: s(),
            path: p(),
        },
        PlanError::BadSkillName(s()),
        PlanError::GitIdentityMissing {
            repo: s(),
            path: p(),
        },
        PlanError::GitUrl {
            repo: s(),
            url: s(),
            reason: "path is missing",
        },
        PlanError::DockerfileMissing {
            bottle: s(),
            path: p(),
        },
        PlanError::BadPinnedContainer(s()),
        PlanError::Prompt {
            name: s(),
            reason: "eof".into(),
        },
        PlanError::CodexAuth(C::NoLocation),
        PlanError::CodexAuth(C::Missing(p())),
        PlanError::CodexAuth(C::Read {
            path: p(),
            reason: "denied".into(),
        }),
        PlanError::CodexAuth(C::NotJson(p())),
        PlanError::CodexAuth(C::ApiKeyOnly(p())),
        PlanError::CodexAuth(C::NoAccessToken(p())),
        PlanError::CodexAuth(C::NotJwt(p())),
        PlanError::CodexAuth(C::Expired(p())),
    ];
    for e in errs {
        let m = e.to_string();
        assert!(!m.contains('\n') && m.contains("; "), "{m}");
        assert!(!m.ends_with('.'), "{m}");
    }
}

#[test]
fn answer_prompts_moves_values_into_forwarded_and_stops_on_error() {
    let mut b = bottle("dev");
    b.env
        .insert("A_PIN".into(), EnvValue::Prompt("first".into()));
    b.env
        .insert("B_PIN".into(), EnvValue::Prompt("second".into()));
    let m = manifest(vec![b], vec![agent("reviewer", "dev")]);
    let mut plan = resolve(&m, "reviewer", &opts(), &host()).unwrap();
    let mut asked = Vec::new();
    answer_prompts(&mut plan, &mut |n, msg| {
        asked.push((n.to_string(), msg.to_string()));
        Ok(format!("{n}-value"))
    })
    .unwrap();
    assert_eq!(
        asked,
        [
            ("A_PIN".into(), "first".into()),
            ("B_PIN".into(), "second".into())
        ]
    );
    assert!(plan.env.prompted.is_empty());
    assert_eq!(plan.env.forwarded["B_PIN"].expose(), "B_PIN-value");
    assert!(!format!("{plan}").contains("(prompt)"));

    let mut plan = resolve(&m, "reviewer", &opts(), &host()).unwrap();
    let err = answer_prompts(&mut plan, &mut |n, _| {
        if n == "B_PIN" {
            Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "no terminal",
            ))
        } else {
            Ok("v".into())
        }
    })
    .unwrap_err();
    assert!(matches!(&err, PlanError::Prompt { name, .. } if name == "B_PIN"));
    assert!(plan.env.forwarded.contains_key("A_PIN"));
    assert!(plan.env.prompted.contains_key("B_PIN"));
}

#[test]
fn copy_cwd_is_recorded_and_shown() {
    let o = StartOptions {
        copy_cwd: true,
        ..opts()
    };
    let plan = resolve(&simple(), "reviewer", &o, &host()).unwrap();
    assert!(plan.copy_cwd);
    assert_eq!(plan.cwd, host().cwd);
    assert!(format!("{plan}").contains("/nonexistent-cwd (copied in)"));
}

#[test]
fn backend_names_round_trip_and_unknown_ones_are_refused() {
    let err = BackendKind::parse("podman").unwrap_err();
    assert!(matches!(&err, PlanError::UnknownBackend(b) if b == "podman"));
    assert!(err.to_string().contains("docker"));
    for b in [BackendKind::Docker, BackendKind::Smolmachines] {
        assert_eq!(BackendKind::parse(b.as_str()).unwrap(), b);
    }
}

#[test]
fn summary_snapshot_claude() {
    let (m, h, _) = secretful();
    let o = StartOptions {
        remote_control: true,
        ..opts()
    };
    let plan = resolve(&m, "reviewer", &o, &h).unwrap();
    insta::assert_snapshot!("summary_claude", plan.to_string());
}

#[test]
fn summary_snapshot_codex_resume_engine_down() {
    let mut b = bottle("work");
    b.agent_provider.template = ProviderKind::Codex;
    b.git_gate.user = GitUser {
        name: Some("ann".into()),
        email: None,
    };
    b.egress.routes = vec![Route {
        path_allowlist: vec!["/api/accounts/deviceauth/".into()],
        ..route("auth.openai.com", None)
    }];
    let m = manifest(vec![b], vec![agent("coder", "work")]);
    let o = StartOptions {
        identity: Some("coder-abc123".into()),
        resume: true,
        gvisor: None,
        ..opts()
    };
    let plan = resolve(&m, "coder", &o, &host()).unwrap();
    insta::assert_snapshot!("summary_codex_resume", plan.to_string());
}

#[test]
fn the_bottles_limits_reach_the_plan_and_the_preflight_names_what_each_backend_applies() {
    let mut b = bottle("dev");
    b.limits.agent.memory_bytes = Some(8 << 30);
    b.limits.bundle.pids = Some(256);
    let m = manifest(vec![b], vec![agent("reviewer", "dev")]);
    let plan = resolve(&m, "reviewer", &opts(), &host()).unwrap();
    assert_eq!(plan.limits.agent.memory_bytes, 8 << 30);
    assert_eq!(plan.limits.bundle.pids, 256);
    let text = plan.to_string();
    assert!(
        text.contains("limits     agent    cpus 3, memory 8g (bottle), pids 2048\n"),
        "{text}"
    );
    assert!(
        text.contains("bundle   cpus 1, memory 1g, pids 256 (bottle)\n"),
        "{text}"
    );
    let smol = StartOptions {
        backend: BackendKind::Smolmachines,
        ..opts()
    };
    let plan = resolve(&m, "reviewer", &smol, &host()).unwrap();
    let lines = plan.limit_lines();
    assert!(
        lines[0].starts_with("agent VM cpus 3, memory 8g (bottle), pids not limited"),
        "{lines:?}"
    );
    assert!(lines[1].ends_with("pids 256 (bottle)"), "{lines:?}");
}

/// The weakening knob exists only in debug builds, and the preflight always says so.
#[test]
fn the_test_weakening_is_debug_only_and_shown() {
    let m = manifest(vec![bottle("dev")], vec![agent("reviewer", "dev")]);
    let mut h = host();
    let opts = StartOptions {
        gvisor: Some(true),
        ..StartOptions::fresh(BackendKind::Docker)
    };
    let plain = resolve(&m, "reviewer", &opts, &h).unwrap();
    assert_eq!(plain.weakened, None);
    assert!(!plain.to_string().contains("WEAKENED"));
    h.vars
        .insert(crate::envvars::TEST_WEAKEN.into(), "runc".into());
    let weak = resolve(&m, "reviewer", &opts, &h).unwrap();
    if cfg!(debug_assertions) {
        assert_eq!(weak.weakened, Some(Weakening::Runc));
        assert_eq!(
            weak.runtime,
            Runtime::Runc,
            "gVisor is registered but runc is forced"
        );
        assert!(weak.to_string().contains("WEAKENED"));
    } else {
        assert_eq!(weak.weakened, None);
        assert_eq!(weak.runtime, Runtime::Runsc);
    }
    h.vars
        .insert(crate::envvars::TEST_WEAKEN.into(), "network".into());
    let weak = resolve(&m, "reviewer", &opts, &h).unwrap();
    if cfg!(debug_assertions) {
        assert_eq!(weak.weakened, Some(Weakening::Network));
        assert_eq!(weak.runtime, Runtime::Runc, "the open network needs runc");
    } else {
        assert_eq!(weak.runtime, Runtime::Runsc);
    }
    h.vars
        .insert(crate::envvars::TEST_WEAKEN.into(), "everything".into());
    assert_eq!(resolve(&m, "reviewer", &opts, &h).unwrap().weakened, None);
}
