//! Rule-by-rule tests of validation, `extends` resolution and the loader.

use std::fs;
use std::path::{Path, PathBuf};

use super::*;

const BOTTLE: &str = "/h/bottles/dev.md";
const AGENT: &str = "/h/agents/helper.md";

fn bottle(yaml: &str) -> RawBottle {
    match parse_bottle_file(Path::new(BOTTLE), &format!("---\n{yaml}---\nDocs.\n")) {
        Ok(b) => b,
        Err(e) => panic!("unexpected error: {e}"),
    }
}

/// The error for a bottle file; asserts it names the file and the key path.
fn bottle_err(yaml: &str, key: &str) -> String {
    let e = parse_bottle_file(Path::new(BOTTLE), &format!("---\n{yaml}---\n"))
        .expect_err("expected an error");
    let s = e.to_string();
    let prefix = if key.is_empty() {
        format!("{BOTTLE}: ")
    } else {
        format!("{BOTTLE}: `{key}`: ")
    };
    assert!(
        s.starts_with(&prefix),
        "{s:?} does not start with {prefix:?}"
    );
    assert!(!s.contains('\n'));
    s
}

fn agent(yaml: &str, body: &str) -> Agent {
    match parse_agent_file(Path::new(AGENT), &format!("---\n{yaml}---\n{body}")) {
        Ok(a) => a,
        Err(e) => panic!("unexpected error: {e}"),
    }
}

fn agent_err(yaml: &str, key: &str) -> String {
    let e = parse_agent_file(Path::new(AGENT), &format!("---\n{yaml}---\n"))
        .expect_err("expected an error");
    let s = e.to_string();
    let prefix = if key.is_empty() {
        format!("{AGENT}: ")
    } else {
        format!("{AGENT}: `{key}`: ")
    };
    assert!(
        s.starts_with(&prefix),
        "{s:?} does not start with {prefix:?}"
    );
    assert!(!s.contains('\n'));
    s
}

// ---------------------------------------------------------------- names

#[test]
fn entity_names() {
    for ok in ["a", "dev", "gitea-dev", "a1-b2"] {
        assert!(is_valid_entity_name(ok), "{ok}");
    }
    for bad in ["", "Dev", "1dev", "-dev", "dev_x", "dev.md", "dév", "a b"] {
        assert!(!is_valid_entity_name(bad), "{bad}");
    }
}

#[test]
fn home_root_resolution() {
    use std::ffi::OsStr;
    let home = Path::new("/home/u");
    assert_eq!(
        home_root(Some(OsStr::new("/custom")), Some(home)).unwrap(),
        PathBuf::from("/custom")
    );
    assert_eq!(
        home_root(Some(OsStr::new("")), Some(home)).unwrap(),
        PathBuf::from("/home/u/.bot-bottle")
    );
    assert_eq!(
        home_root(None, Some(home)).unwrap(),
        PathBuf::from("/home/u/.bot-bottle")
    );
    let e = home_root(None, None).unwrap_err();
    assert!(matches!(e, ManifestError::NoHome));
    assert!(e.to_string().contains("BOT_BOTTLE_HOME"));
}

// ---------------------------------------------------------------- bottle: top level

#[test]
fn empty_bottle_is_valid() {
    let b = bottle("");
    assert_eq!(b.name, "dev");
    assert!(b.env.is_none() && b.egress.is_none() && b.supervise.is_none());
}

#[test]
fn unknown_bottle_key_with_hint() {
    let s = bottle_err("egres: {}\n", "egres");
    assert!(s.contains("did you mean `egress`?"), "{s}");
    assert!(s.contains(
        "allowed keys: agent_provider, egress, env, extends, git-gate, limits, supervise"
    ));
    let s = bottle_err("zzzzzz: 1\n", "zzzzzz");
    assert!(!s.contains("did you mean"), "{s}");
}

#[test]
fn removed_keys_say_what_replaced_them() {
    assert!(bottle_err("runtime: runsc\n", "runtime").contains("automatically"));
    assert!(bottle_err("ssh: {}\n", "ssh").contains("git-gate.repos"));
    let s = bottle_err("git: {}\n", "git");
    assert!(
        s.contains("git-gate.user") && s.contains("git-gate.repos"),
        "{s}"
    );
    assert!(bottle_err("git_user: {}\n", "git_user").contains("git-gate.user"));
}

#[test]
fn frontmatter_must_be_a_mapping() {
    assert!(bottle_err("- a\n- b\n", "").contains("must be a mapping"));
    assert!(bottle_err("just text\n", "").contains("must be a mapping"));
}

#[test]
fn missing_frontmatter_is_an_error() {
    let e = parse_bottle_file(Path::new(BOTTLE), "env: {}\n").unwrap_err();
    assert!(
        e.to_string()
            .starts_with(&format!("{BOTTLE}: no frontmatter"))
    );
    let e = parse_bottle_file(Path::new(BOTTLE), "---\nenv: {}\n").unwrap_err();
    assert!(e.to_string().contains("not closed"));
}

#[test]
fn yaml_errors_report_file_lines() {
    let e = parse_bottle_file(
        Path::new(BOTTLE),
        "---\nsupervise: true\nsupervise: false\n---\n",
    )
    .unwrap_err();
    let s = e.to_string();
    assert!(
        s.starts_with(&format!("{BOTTLE}:3:1: duplicate key `supervise`")),
        "{s}"
    );
    let s = parse_bottle_file(Path::new(BOTTLE), "---\na: &x 1\n---\n")
        .unwrap_err()
        .to_string();
    assert!(
        s.starts_with(&format!("{BOTTLE}:2:")) && s.contains("anchors"),
        "{s}"
    );
    let s = parse_bottle_file(Path::new(BOTTLE), "---\nenv: !!map {}\n---\n")
        .unwrap_err()
        .to_string();
    assert!(s.contains("tags"), "{s}");
}

// ---------------------------------------------------------------- env

#[test]
fn env_classification() {
    let b = bottle(
        "env:\n  A: plain\n  B: \"?Enter the token\"\n  C: \"${HOST_C}\"\n  D: \"pre-${X}-${Y_2}\"\n  E: \"pa$$word\"\n  F: \"\"\n",
    );
    let env = b.env.unwrap();
    assert_eq!(env["A"], EnvValue::Literal("plain".into()));
    assert_eq!(env["B"], EnvValue::Prompt("Enter the token".into()));
    assert_eq!(env["C"], EnvValue::Interpolate("${HOST_C}".into()));
    assert_eq!(env["D"], EnvValue::Interpolate("pre-${X}-${Y_2}".into()));
    assert_eq!(env["E"], EnvValue::Literal("pa$$word".into()));
    assert_eq!(env["F"], EnvValue::Literal(String::new()));
}

#[test]
fn env_values_are_strings_only_and_never_echoed() {
    let s = bottle_err("env:\n  PORT: 8080\n", "env.PORT");
    assert!(s.contains("quote it") && !s.contains("8080"), "{s}");
    let s = bottle_err("env:\n  ON: yes_secret_value\n  FLAG: true\n", "env.FLAG");
    assert!(s.contains("a boolean"), "{s}");
    bottle_err("env:\n  LIST: [a]\n", "env.LIST");
    bottle_err("env:\n  NONE:\n", "env.NONE");
    bottle_err("env: [A]\n", "env");
}

#[test]
fn env_names_and_references_are_checked() {
    bottle_err("env:\n  \"1BAD\": x\n", "env.1BAD");
    bottle_err("env:\n  \"A-B\": x\n", "env.A-B");
    let s = bottle_err("env:\n  A: \"${OPEN\"\n", "env.A");
    assert!(s.contains("closing"), "{s}");
    bottle_err("env:\n  A: \"${}\"\n", "env.A");
    bottle_err("env:\n  A: \"${1X}\"\n", "env.A");
    bottle_err("env:\n  A: \"${A B}\"\n", "env.A");
    bottle_err("env:\n  A: \"nul\\0here\"\n", "env.A");
}

// ---------------------------------------------------------------- supervise / extends types

#[test]
fn supervise_is_a_strict_boolean() {
    assert_eq!(bottle("supervise: true\n").supervise, Some(true));
    let s = bottle_err("supervise: yes\n", "supervise");
    assert!(s.contains("YAML 1.2"), "{s}");
    bottle_err("supervise: 1\n", "supervise");
    bottle_err("supervise: \"true\"\n", "supervise");
}

#[test]
fn extends_must_be_a_name_string() {
    assert_eq!(bottle("extends: base\n").extends.as_deref(), Some("base"));
    bottle_err("extends: [base]\n", "extends");
    bottle_err("extends: \"\"\n", "extends");
}

// ---------------------------------------------------------------- agent_provider

#[test]
fn provider_defaults_and_values() {
    let p = bottle("agent_provider: {}\n").agent_provider.unwrap();
    assert_eq!(p, AgentProvider::default());
    assert_eq!(p.template, ProviderKind::Claude);
    let p = bottle(
        "agent_provider:\n  template: claude\n  dockerfile: ~/df/Dockerfile\n  auth_token: CLAUDE_TOKEN\n",
    )
    .agent_provider
    .unwrap();
    assert_eq!(p.dockerfile.as_deref(), Some("~/df/Dockerfile"));
    assert_eq!(p.auth_token.as_deref(), Some("CLAUDE_TOKEN"));
    let p = bottle("agent_provider:\n  template: codex\n  forward_host_credentials: true\n")
        .agent_provider
        .unwrap();
    assert_eq!(p.template, ProviderKind::Codex);
    assert!(p.forward_host_credentials);
}

#[test]
fn provider_rules() {
    let s = bottle_err(
        "agent_provider:\n  template: gpt\n",
        "agent_provider.template",
    );
    assert!(s.contains("`claude` or `codex`"), "{s}");
    bottle_err(
        "agent_provider:\n  template: codex\n  auth_token: TOK\n",
        "agent_provider.auth_token",
    );
    bottle_err(
        "agent_provider:\n  forward_host_credentials: true\n",
        "agent_provider.forward_host_credentials",
    );
    bottle_err(
        "agent_provider:\n  forward_host_credentials: yes\n",
        "agent_provider.forward_host_credentials",
    );
    bottle_err(
        "agent_provider:\n  auth_token: \"BAD-NAME\"\n",
        "agent_provider.auth_token",
    );
    let s = bottle_err(
        "agent_provider:\n  templte: claude\n",
        "agent_provider.templte",
    );
    assert!(s.contains("did you mean `template`?"), "{s}");
    bottle_err("agent_provider: claude\n", "agent_provider");
}

// ---------------------------------------------------------------- git-gate

#[test]
fn git_gate_values() {
    let b = bottle(
        "git-gate:\n  user: {name: Ann}\n  repos:\n    bot-bottle:\n      url: ssh://git@example.com:30009/o/r.git\n      identity: ~/.ssh/id\n      host_key: ssh-ed25519 AAAA\n",
    );
    assert_eq!(b.git_user.unwrap().name.as_deref(), Some("Ann"));
    let repos = b.git_repos.unwrap();
    let r = &repos["bot-bottle"];
    assert_eq!(r.url, "ssh://git@example.com:30009/o/r.git");
    assert_eq!(r.identity, "~/.ssh/id");
    assert_eq!(r.host_key.as_deref(), Some("ssh-ed25519 AAAA"));
    assert_eq!(
        bottle("git-gate: {repos: {}}\n").git_repos,
        Some(Default::default())
    );
}

#[test]
fn git_user_needs_name_or_email() {
    let s = bottle_err("git-gate:\n  user: {}\n", "git-gate.user");
    assert!(s.contains("at least one"), "{s}");
    bottle_err("git-gate:\n  user: {name: \"\"}\n", "git-gate.user.name");
    bottle_err("git-gate:\n  user: {name: 5}\n", "git-gate.user.name");
    bottle_err("git-gate:\n  user: {nam: a}\n", "git-gate.user.nam");
    bottle_err("git-gate:\n  remotes: {}\n", "git-gate.remotes");
}

#[test]
fn repo_names_and_fields() {
    let repo = |name: &str, body: &str| format!("git-gate:\n  repos:\n    \"{name}\":\n{body}");
    let good = "      url: ssh://git@h/p\n      identity: k\n";
    bottle(&repo("A.b_c-1", good));
    bottle_err(&repo("bad/name", good), "git-gate.repos.bad/name");
    bottle_err(&repo("a b", good), "git-gate.repos.a b");
    bottle_err(&repo("..", good), "git-gate.repos...");
    bottle_err(
        "git-gate:\n  repos:\n    Repo: {url: ssh://git@h/a, identity: k}\n    repo: {url: ssh://git@h/b, identity: k}\n",
        "git-gate.repos.Repo",
    );
    bottle_err(&repo("r", "      identity: k\n"), "git-gate.repos.r.url");
    bottle_err(
        &repo("r", "      url: ssh://git@h/p\n"),
        "git-gate.repos.r.identity",
    );
    bottle_err(
        &repo("r", &format!("{good}      extra: 1\n")),
        "git-gate.repos.r.extra",
    );
    bottle_err(
        &repo("r", &format!("{good}      host_key: \"a\\nb\"\n")),
        "git-gate.repos.r.host_key",
    );
}

#[test]
fn extra_hosts_pin_names_to_addresses() {
    let repo = |body: &str| {
        format!("git-gate:\n  repos:\n    r:\n      url: ssh://git@h/p\n      identity: k\n{body}")
    };
    let b = bottle(&repo(
        "      extra_hosts:\n        Git.Internal: 192.0.2.7\n        v6.internal: \"2001:db8::1\"\n",
    ));
    let pins = &b.git_repos.unwrap()["r"].extra_hosts;
    assert_eq!(pins["git.internal"].to_string(), "192.0.2.7");
    assert_eq!(pins["v6.internal"].to_string(), "2001:db8::1");
    for (body, key) in [
        (
            "      extra_hosts:\n        git.internal: not-an-ip\n",
            "git-gate.repos.r.extra_hosts.git.internal",
        ),
        (
            "      extra_hosts:\n        \"a/b\": 192.0.2.7\n",
            "git-gate.repos.r.extra_hosts.a/b",
        ),
        (
            "      extra_hosts:\n        h: \"\"\n",
            "git-gate.repos.r.extra_hosts.h",
        ),
        (
            "      extra_hosts:\n        H: 192.0.2.7\n        h: 192.0.2.8\n",
            "git-gate.repos.r.extra_hosts.h",
        ),
        ("      extra_hosts: [h]\n", "git-gate.repos.r.extra_hosts"),
    ] {
        bottle_err(&repo(body), key);
    }
}

#[test]
fn ssh_url_shape() {
    for ok in [
        "ssh://git@github.com/o/r.git",
        "ssh://git@h:2222/o/r",
        "ssh://u.x@h-1.example/~u/r",
    ] {
        assert!(validate::check_ssh_url(ok).is_ok(), "{ok}");
    }
    for bad in [
        "https://github.com/o/r",
        "git@github.com:o/r.git",
        "ssh://github.com/o/r",
        "ssh://@h/p",
        "ssh://git@/p",
        "ssh://git@h",
        "ssh://git@h/",
        "ssh://git@h:/p",
        "ssh://git@h:0/p",
        "ssh://git@h:70000/p",
        "ssh://git@h:22x/p",
        "ssh://git@h/p;rm -rf",
        "ssh://git@h/p q",
    ] {
        assert!(validate::check_ssh_url(bad).is_err(), "{bad}");
    }
    let s = bottle_err(
        "git-gate:\n  repos:\n    r:\n      url: https://x/y\n      identity: k\n",
        "git-gate.repos.r.url",
    );
    assert!(s.contains("ssh://user@host[:port]/path"), "{s}");
}

// ---------------------------------------------------------------- egress

#[test]
fn egress_route_values() {
    let b = bottle(
        "egress:\n  routes:\n    - host: API.GitHub.com\n      path_allowlist: [/repos/, /user]\n      auth: {scheme: Bearer, token_ref: GH_PAT}\n      pipelock:\n        tls_passthrough: true\n        ssrf_ip_allowlist: [10.0.0.5, 10.1.0.0/16, \"::1\"]\n    - host: gitea.example\n      auth: {scheme: token, token_ref: GITEA}\n",
    );
    let routes = b.egress.unwrap().routes;
    assert_eq!(routes.len(), 2);
    assert_eq!(routes[0].host, "api.github.com");
    assert_eq!(routes[0].path_allowlist, vec!["/repos/", "/user"]);
    let auth = routes[0].auth.as_ref().unwrap();
    assert_eq!(auth.scheme, AuthScheme::Bearer);
    assert_eq!(auth.token_ref, "GH_PAT");
    assert!(routes[0].pipelock.tls_passthrough);
    let nets: Vec<String> = routes[0]
        .pipelock
        .ssrf_ip_allowlist
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(nets, vec!["10.0.0.5/32", "10.1.0.0/16", "::1/128"]);
    assert_eq!(routes[1].auth.as_ref().unwrap().scheme, AuthScheme::Token);
    assert!(routes[1].path_allowlist.is_empty());
}

#[test]
fn egress_hosts_unique_case_insensitive() {
    let s = bottle_err(
        "egress:\n  routes:\n    - host: a.example\n    - host: A.Example\n",
        "egress.routes[1].host",
    );
    assert!(s.contains("egress.routes[0]"), "{s}");
}

#[test]
fn egress_route_rules() {
    let r = |body: &str| format!("egress:\n  routes:\n    - {body}\n");
    bottle_err(&r("path_allowlist: [/x]"), "egress.routes[0].host");
    bottle_err(
        &r("host: \"https://api.github.com\""),
        "egress.routes[0].host",
    );
    bottle_err(&r("host: \"a.example:443\""), "egress.routes[0].host");
    bottle_err(&r("host: \"a.example.\""), "egress.routes[0].host");
    bottle_err(
        &r("host: a\n      path_allowlist: [repos]"),
        "egress.routes[0].path_allowlist[0]",
    );
    bottle_err(
        &r("host: a\n      path_allowlist: /x"),
        "egress.routes[0].path_allowlist",
    );
    let s = bottle_err(&r("host: a\n      auth: {}"), "egress.routes[0].auth");
    assert!(s.contains("omit `auth`"), "{s}");
    let s = bottle_err(
        &r("host: a\n      auth: {scheme: basic, token_ref: T}"),
        "egress.routes[0].auth.scheme",
    );
    assert!(
        s.ends_with("expected `Bearer` or `token`, got `basic`"),
        "{s}"
    );
    bottle_err(
        &r("host: a\n      auth: {scheme: bearer, token_ref: T}"),
        "egress.routes[0].auth.scheme",
    );
    bottle_err(
        &r("host: a\n      auth: {scheme: Bearer}"),
        "egress.routes[0].auth.token_ref",
    );
    bottle_err(
        &r("host: a\n      auth: {token_ref: T}"),
        "egress.routes[0].auth.scheme",
    );
    bottle_err(
        &r("host: a\n      auth: {scheme: Bearer, token_ref: \"$T\"}"),
        "egress.routes[0].auth.token_ref",
    );
    bottle_err(
        &r("host: a\n      auth: {scheme: Bearer, token_ref: T, extra: 1}"),
        "egress.routes[0].auth.extra",
    );
    let s = bottle_err(
        &r("host: a\n      role: claude_code_oauth"),
        "egress.routes[0].role",
    );
    assert!(s.contains("reserved"), "{s}");
    bottle_err(&r("host: a\n      role: []"), "egress.routes[0].role");
    bottle_err(
        &r("host: a\n      pipelock: {tls_passthrough: on}"),
        "egress.routes[0].pipelock.tls_passthrough",
    );
    bottle_err(
        &r("host: a\n      pipelock: {ssrf_ip_allowlist: [10.0.0.0/33]}"),
        "egress.routes[0].pipelock.ssrf_ip_allowlist[0]",
    );
    bottle_err(
        &r("host: a\n      pipelock: {ssrf_ip_allowlist: [metadata.google]}"),
        "egress.routes[0].pipelock.ssrf_ip_allowlist[0]",
    );
    bottle_err(
        &r("host: a\n      pipelock: {block: true}"),
        "egress.routes[0].pipelock.block",
    );
    bottle_err(&r("hots: a"), "egress.routes[0].hots");
    bottle_err("egress:\n  allowlist: [a]\n", "egress.allowlist");
    bottle_err("egress:\n  routes: {}\n", "egress.routes");
    bottle_err("egress:\n  routes: [a.example]\n", "egress.routes[0]");
}

// ---------------------------------------------------------------- agents

#[test]
fn agent_values() {
    let a = agent(
        "bottle: dev\nskills: [init-prd, x.y_z]\ngit-gate:\n  user: {email: a@b}\nname: helper\ndescription: Helps.\nmodel: opus\ncolor: blue\nmemory: project\n",
        "\n  You help.  \n\n",
    );
    assert_eq!(a.name, "helper");
    assert_eq!(a.bottle, "dev");
    assert_eq!(a.skills, vec!["init-prd", "x.y_z"]);
    assert_eq!(a.git_user.email.as_deref(), Some("a@b"));
    assert_eq!(a.git_user.name, None);
    assert_eq!(a.prompt, "You help.");
    assert_eq!(a.description.as_deref(), Some("Helps."));
    assert_eq!(a.source, AgentSource::Home);
    assert_eq!(agent("bottle: dev\n", "").description, None);
}

#[test]
fn agent_rules() {
    let s = agent_err("skills: []\n", "bottle");
    assert!(s.contains("required"), "{s}");
    agent_err("bottle: 3\n", "bottle");
    agent_err("bottle: dev\nskills: a\n", "skills");
    agent_err("bottle: dev\nskills: [1]\n", "skills[0]");
    agent_err("bottle: dev\nskills: [../../.ssh]\n", "skills[0]");
    agent_err("bottle: dev\nskills: [a/b]\n", "skills[0]");
    agent_err("bottle: dev\ndescription: [x]\n", "description");
    agent_err("bottle: dev\ndescription: \"\\e[2Jgone\"\n", "description");
    let s = agent_err("bottle: dev\nbotle: x\n", "botle");
    assert!(s.contains("did you mean `bottle`?"), "{s}");
    agent_err("bottle: dev\ntools: [Read]\n", "tools");
    agent_err("bottle: dev\ngit-gate:\n  user: {}\n", "git-gate.user");
}

#[test]
fn agent_cannot_set_bottle_only_keys() {
    for k in [
        "env: {A: b}",
        "egress: {routes: []}",
        "agent_provider: {}",
        "extends: dev",
        "supervise: true",
    ] {
        let key = k.split(':').next().unwrap();
        let s = agent_err(&format!("bottle: dev\n{k}\n"), key);
        assert!(s.contains("bottle key"), "{s}");
    }
    let s = agent_err(
        "bottle: dev\ngit-gate:\n  repos:\n    r: {url: ssh://git@h/p, identity: k}\n",
        "git-gate.repos",
    );
    assert!(s.contains("bottle-only"), "{s}");
    agent_err("bottle: dev\ngit: {}\n", "git");
}

// ---------------------------------------------------------------- extends

fn raws(files: &[(&str, &str)]) -> std::collections::BTreeMap<String, RawBottle> {
    files
        .iter()
        .map(|(name, yaml)| {
            let path = format!("/h/bottles/{name}.md");
            let b = parse_bottle_file(Path::new(&path), &format!("---\n{yaml}---\n"))
                .unwrap_or_else(|e| panic!("{e}"));
            ((*name).to_owned(), b)
        })
        .collect()
}

#[test]
fn extends_merge_rules() {
    let r = raws(&[
        (
            "base",
            "env: {A: base, B: base}\nagent_provider: {template: codex}\nsupervise: true\ngit-gate:\n  user: {name: Base, email: base@x}\n  repos:\n    one: {url: ssh://git@h/one, identity: k1}\n    two: {url: ssh://git@h/two, identity: k2}\negress:\n  routes: [{host: base.example}]\n",
        ),
        (
            "child",
            "extends: base\nenv: {B: child, C: child}\ngit-gate:\n  user: {email: child@x}\n  repos:\n    two: {url: ssh://git@h/two2, identity: k3}\n    three: {url: ssh://git@h/three, identity: k4}\n",
        ),
        (
            "clear",
            "extends: base\ngit-gate: {repos: {}}\nsupervise: false\negress: {}\nagent_provider: {}\n",
        ),
        ("grand", "extends: child\nenv: {A: grand}\n"),
    ]);
    let b = extends::resolve(&r).unwrap();
    let child = &b["child"];
    assert_eq!(child.env["A"], EnvValue::Literal("base".into()));
    assert_eq!(child.env["B"], EnvValue::Literal("child".into()));
    assert_eq!(child.env["C"], EnvValue::Literal("child".into()));
    assert_eq!(child.git_gate.user.name.as_deref(), Some("Base"));
    assert_eq!(child.git_gate.user.email.as_deref(), Some("child@x"));
    let names: Vec<&str> = child.git_gate.repos.keys().map(String::as_str).collect();
    assert_eq!(names, vec!["one", "three", "two"]);
    assert_eq!(child.git_gate.repos["two"].url, "ssh://git@h/two2");
    assert_eq!(child.agent_provider.template, ProviderKind::Codex);
    assert!(child.supervise);
    assert_eq!(child.egress.routes[0].host, "base.example");
    assert_eq!(child.path, PathBuf::from("/h/bottles/child.md"));

    let clear = &b["clear"];
    assert!(clear.git_gate.repos.is_empty());
    assert!(!clear.supervise);
    assert!(clear.egress.routes.is_empty());
    assert_eq!(clear.agent_provider.template, ProviderKind::Claude);
    assert_eq!(clear.git_gate.user.name.as_deref(), Some("Base"));

    let grand = &b["grand"];
    assert_eq!(grand.env["A"], EnvValue::Literal("grand".into()));
    assert_eq!(grand.env["C"], EnvValue::Literal("child".into()));
    assert_eq!(grand.git_gate.repos.len(), 3);
}

#[test]
fn extends_errors_show_the_chain() {
    let e = extends::resolve(&raws(&[("a", "extends: a\n")]))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("/h/bottles/a.md: `extends`: ") && e.contains("itself"),
        "{e}"
    );

    let e = extends::resolve(&raws(&[("a", "extends: b\n"), ("b", "extends: a\n")]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("a -> b -> a"), "{e}");
    assert!(e.starts_with("/h/bottles/b.md: `extends`: "), "{e}");

    let e = extends::resolve(&raws(&[
        ("a", "extends: b\n"),
        ("b", "extends: c\n"),
        ("c", "extends: b\n"),
    ]))
    .unwrap_err()
    .to_string();
    assert!(e.contains("a -> b -> c -> b"), "{e}");

    let e = extends::resolve(&raws(&[("a", "extends: b\n"), ("b", "extends: nope\n")]))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("/h/bottles/b.md: `extends`: unknown bottle `nope`"),
        "{e}"
    );
    assert!(
        e.contains("a -> b -> nope") && e.contains("available: a, b"),
        "{e}"
    );
}

#[test]
fn long_extends_chain_does_not_overflow() {
    let n = 5000;
    let mut m = std::collections::BTreeMap::new();
    for i in 0..n {
        let yaml = if i == 0 {
            "env: {ROOT: x}\n".to_owned()
        } else {
            format!("extends: b{}\n", i - 1)
        };
        let path = format!("/h/bottles/b{i}.md");
        let mut b = parse_bottle_file(Path::new(&path), &format!("---\n{yaml}---\n")).unwrap();
        b.name = format!("b{i}");
        m.insert(format!("b{i}"), b);
    }
    let resolved = extends::resolve(&m).unwrap();
    assert_eq!(resolved.len(), n);
    assert!(resolved[&format!("b{}", n - 1)].env.contains_key("ROOT"));
}

// ---------------------------------------------------------------- loader

struct Tree {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    cwd: PathBuf,
}

impl Tree {
    fn new() -> Tree {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("home/.bot-bottle");
        let cwd = tmp.path().join("project");
        fs::create_dir_all(root.join("bottles")).unwrap();
        fs::create_dir_all(root.join("agents")).unwrap();
        fs::create_dir_all(&cwd).unwrap();
        Tree {
            _tmp: tmp,
            root,
            cwd,
        }
    }

    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = if let Some(r) = rel.strip_prefix("cwd/") {
            self.cwd.join(r)
        } else {
            self.root.join(rel)
        };
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, text).unwrap();
        p
    }

    fn opts(&self) -> LoadOptions {
        LoadOptions {
            root: self.root.clone(),
            cwd: self.cwd.clone(),
        }
    }

    fn load(&self) -> Result<Manifest, ManifestError> {
        load(&self.opts())
    }
}

#[test]
fn loads_home_and_cwd_agents_cwd_wins() {
    let t = Tree::new();
    t.write("bottles/dev.md", "---\nenv: {A: a}\n---\nThe dev bottle.\n");
    t.write("bottles/child.md", "---\nextends: dev\n---\n");
    t.write("agents/helper.md", "---\nbottle: dev\n---\nHome prompt.\n");
    t.write("agents/other.md", "---\nbottle: child\n---\nOther.\n");
    t.write(
        "cwd/.bot-bottle/agents/helper.md",
        "---\nbottle: child\ndescription: d\n---\nRepo prompt.\n",
    );
    let m = t.load().unwrap();
    assert_eq!(m.root, t.root);
    assert_eq!(m.bottles.len(), 2);
    assert!(m.bottles["child"].env.contains_key("A"));
    let h = &m.agents["helper"];
    assert_eq!(h.source, AgentSource::Cwd);
    assert_eq!(h.prompt, "Repo prompt.");
    assert_eq!(h.bottle, "child");
    assert_eq!(h.description.as_deref(), Some("d"));
    assert_eq!(m.agents["other"].source, AgentSource::Home);
    assert!(m.warnings.is_empty(), "{:?}", m.warnings);
    let (a, b) = m.agent_and_bottle("other").unwrap();
    assert_eq!((a.name.as_str(), b.name.as_str()), ("other", "child"));
}

#[test]
fn cwd_bottles_are_ignored_with_a_warning() {
    let t = Tree::new();
    t.write("bottles/dev.md", "---\n---\n");
    t.write(
        "cwd/.bot-bottle/bottles/dev.md",
        "---\negress:\n  routes: [{host: evil.example}]\n---\n",
    );
    t.write("cwd/.bot-bottle/bottles/evil.md", "---\n---\n");
    t.write("cwd/.bot-bottle/agents/a.md", "---\nbottle: dev\n---\n");
    let m = t.load().unwrap();
    assert!(m.bottles["dev"].egress.routes.is_empty());
    assert!(!m.bottles.contains_key("evil"));
    assert_eq!(m.warnings.len(), 1, "{:?}", m.warnings);
    assert!(m.warnings[0].contains("ignoring") && m.warnings[0].contains("bottles"));
    // A repo agent naming a bottle only the repo declared is broken (and only it).
    t.write("cwd/.bot-bottle/agents/b.md", "---\nbottle: evil\n---\n");
    let m = t.load().unwrap();
    let e = &m.broken["b"].error;
    assert!(e.contains("b.md: `bottle`: no bottle named `evil`"), "{e}");
    assert!(m.agents.contains_key("a") && !m.agents.contains_key("b"));
}

#[test]
fn cwd_equal_to_home_loads_once() {
    let t = Tree::new();
    t.write("bottles/dev.md", "---\n---\n");
    t.write("agents/a.md", "---\nbottle: dev\n---\n");
    let opts = LoadOptions {
        root: t.root.clone(),
        cwd: t.root.parent().unwrap().to_path_buf(),
    };
    let m = load(&opts).unwrap();
    assert_eq!(m.agents["a"].source, AgentSource::Home);
    assert!(m.warnings.is_empty(), "{:?}", m.warnings);
}

#[test]
fn badly_named_files_are_skipped_with_a_warning() {
    let t = Tree::new();
    t.write("bottles/dev.md", "---\n---\n");
    t.write("bottles/Dev_2.md", "not even frontmatter");
    t.write("bottles/README.txt", "ignored silently");
    t.write("bottles/.dev.md.swp", "ignored silently");
    t.write("agents/1st.md", "---\nbottle: missing\n---\n");
    fs::create_dir_all(t.root.join("agents/dir.md")).unwrap();
    let m = t.load().unwrap();
    assert_eq!(m.bottles.len(), 1);
    assert!(m.agents.is_empty() && m.broken.is_empty());
    assert_eq!(m.warnings.len(), 3, "{:?}", m.warnings);
    assert!(m.warnings.iter().any(|w| w.contains("Dev_2.md")));
    assert!(m.warnings.iter().any(|w| w.contains("1st.md")));
    assert!(m.warnings.iter().any(|w| w.contains("not a regular file")));
}

#[test]
fn missing_home_root_suggests_init() {
    let t = Tree::new();
    let opts = LoadOptions {
        root: t.root.join("nope"),
        cwd: t.cwd.clone(),
    };
    let e = load(&opts).unwrap_err();
    assert!(matches!(e, ManifestError::NoHomeRoot { .. }));
    assert!(e.to_string().contains("bot-bottle init"), "{e}");
}

#[test]
fn missing_subdirs_are_empty() {
    let t = Tree::new();
    fs::remove_dir(t.root.join("agents")).unwrap();
    fs::remove_dir(t.root.join("bottles")).unwrap();
    let m = t.load().unwrap();
    assert!(m.bottles.is_empty() && m.agents.is_empty());
}

#[test]
fn legacy_json_points_at_the_new_layout() {
    let t = Tree::new();
    t.write("cwd/bot-bottle.json", "{}");
    let e = t.load().unwrap_err();
    let s = e.to_string();
    assert!(matches!(e, ManifestError::LegacyJson { .. }));
    assert!(
        s.contains("bot-bottle.json") && s.contains("agents/"),
        "{s}"
    );
    // With a `.bot-bottle/` beside it, the JSON file is not in the way.
    fs::create_dir_all(t.cwd.join(".bot-bottle")).unwrap();
    assert!(t.load().is_ok());
}

#[test]
fn agent_naming_a_missing_bottle_is_broken() {
    let t = Tree::new();
    t.write("bottles/dev.md", "---\n---\n");
    let p = t.write("agents/a.md", "---\nbottle: prod\n---\n");
    let m = t.load().unwrap();
    assert!(m.agents.is_empty());
    let s = m.broken["a"].error.clone();
    assert!(
        s.starts_with(&format!(
            "{}: `bottle`: no bottle named `prod`",
            p.display()
        )),
        "{s}"
    );
    assert!(s.contains("available: dev"), "{s}");
}

#[test]
fn one_broken_agent_leaves_the_others_loadable() {
    let t = Tree::new();
    t.write("bottles/dev.md", "---\n---\n");
    t.write("agents/good.md", "---\nbottle: dev\n---\nGood.\n");
    let bad = t.write("agents/bad.md", "---\nbottle: dev\nbotle: x\n---\n");
    t.write("agents/worse.md", "---\nbottle: [dev\n---\n");
    let m = t.load().unwrap();
    assert_eq!(m.agents.keys().collect::<Vec<_>>(), ["good"]);
    assert_eq!(m.broken.keys().collect::<Vec<_>>(), ["bad", "worse"]);
    let e = &m.broken["bad"].error;
    assert!(
        e.starts_with(&format!("{}: `botle`: unknown key", bad.display()))
            && e.contains("did you mean `bottle`?"),
        "{e}"
    );
    assert_eq!(m.broken["bad"].path, bad);
    // A valid repo agent of the same name replaces a broken home agent, and the other way round.
    t.write("cwd/.bot-bottle/agents/bad.md", "---\nbottle: dev\n---\n");
    t.write("cwd/.bot-bottle/agents/good.md", "---\nbotle: dev\n---\n");
    let m = t.load().unwrap();
    assert_eq!(m.agents.keys().collect::<Vec<_>>(), ["bad"]);
    assert_eq!(m.agents["bad"].source, AgentSource::Cwd);
    assert_eq!(m.broken.keys().collect::<Vec<_>>(), ["good", "worse"]);
    assert_eq!(m.broken["good"].source, AgentSource::Cwd);
}

#[test]
fn files_over_one_mib_are_refused() {
    let t = Tree::new();
    let mut text = "---\n---\n".to_owned();
    text.push_str(&"x".repeat(loader::MAX_FILE_BYTES as usize));
    let p = t.write("bottles/dev.md", &text);
    let e = t.load().unwrap_err();
    assert!(matches!(e, ManifestError::TooLarge { .. }));
    assert!(e.to_string().starts_with(&p.display().to_string()));
}

#[test]
fn non_utf8_and_yaml_errors_name_the_file() {
    let t = Tree::new();
    let p = t.root.join("bottles/dev.md");
    fs::write(&p, b"---\n\xff\xfe\n---\n").unwrap();
    let s = t.load().unwrap_err().to_string();
    assert!(
        s.starts_with(&p.display().to_string()) && s.contains("UTF-8"),
        "{s}"
    );
    t.write("bottles/dev.md", "---\nenv: {A: 1}\n---\n");
    let s = t.load().unwrap_err().to_string();
    assert!(s.starts_with(&format!("{}: `env.A`", p.display())), "{s}");
}

#[test]
fn extends_errors_surface_through_load() {
    let t = Tree::new();
    t.write("bottles/a.md", "---\nextends: b\n---\n");
    t.write("bottles/b.md", "---\nextends: a\n---\n");
    let s = t.load().unwrap_err().to_string();
    assert!(s.contains("a -> b -> a"), "{s}");
}

#[cfg(unix)]
#[test]
fn fifo_is_skipped_not_read() {
    let t = Tree::new();
    t.write("bottles/dev.md", "---\n---\n");
    let fifo = t.root.join("agents/pipe.md");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: c is a valid NUL-terminated path.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
    assert_eq!(rc, 0);
    let m = t.load().unwrap();
    assert!(m.agents.is_empty());
    assert!(m.warnings.iter().any(|w| w.contains("pipe.md")));
}

#[test]
fn hostile_keys_are_clipped_in_errors() {
    let long = "k".repeat(10_000);
    let s = parse_bottle_file(Path::new(BOTTLE), &format!("---\n? {long}\n: 1\n---\n"))
        .unwrap_err()
        .to_string();
    assert!(s.len() < 1_000, "{} bytes", s.len());
    assert!(s.contains("unknown key"), "{s}");
    let s = parse_bottle_file(
        Path::new(BOTTLE),
        &format!("---\nenv:\n  ? {long}\n  : a\n  ? {long}\n  : b\n---\n"),
    )
    .unwrap_err()
    .to_string();
    assert!(s.len() < 1_000 && s.contains("duplicate key"), "{s}");
}

// ---------------------------------------------------------------- limits

#[test]
fn limits_are_validated_strictly() {
    let b = bottle(
        "limits:\n  agent: {cpus: 1.5, memory: 8g, pids: 4096}\n  bundle: {memory: \"512M\"}\n",
    );
    let l = b.limits.unwrap();
    assert_eq!(l.agent.cpus_centi, Some(150));
    assert_eq!(l.agent.memory_bytes, Some(8 << 30));
    assert_eq!(l.agent.pids, Some(4096));
    assert_eq!(l.bundle.memory_bytes, Some(512 << 20));
    assert_eq!(l.bundle.cpus_centi, None);
    assert_eq!(
        bottle("limits: {agent: {cpus: 2}}\n")
            .limits
            .unwrap()
            .agent
            .cpus_centi,
        Some(200)
    );
    assert!(bottle("").limits.is_none());
    let k = "limits.agent";
    for (yaml, key, want) in [
        (
            "limits: {agent: {cpu: 1}}",
            format!("{k}.cpu"),
            "did you mean `cpus`?",
        ),
        (
            "limits: {agnet: {}}",
            "limits.agnet".into(),
            "did you mean `agent`?",
        ),
        (
            "limits: {agent: {cpus: \"2\"}}",
            format!("{k}.cpus"),
            "unquoted",
        ),
        (
            "limits: {agent: {cpus: 0}}",
            format!("{k}.cpus"),
            "out of range",
        ),
        (
            "limits: {agent: {cpus: -1}}",
            format!("{k}.cpus"),
            "out of range",
        ),
        (
            "limits: {agent: {cpus: 1.255}}",
            format!("{k}.cpus"),
            "two decimals",
        ),
        (
            "limits: {agent: {cpus: 5000}}",
            format!("{k}.cpus"),
            "out of range",
        ),
        (
            "limits: {agent: {memory: 4096}}",
            format!("{k}.memory"),
            "\"4g\"",
        ),
        (
            "limits: {agent: {memory: \"4096\"}}",
            format!("{k}.memory"),
            "no unit",
        ),
        (
            "limits: {agent: {memory: 4t}}",
            format!("{k}.memory"),
            "not a size",
        ),
        (
            "limits: {agent: {memory: 1.5g}}",
            format!("{k}.memory"),
            "not a size",
        ),
        (
            "limits: {agent: {memory: 1m}}",
            format!("{k}.memory"),
            "64m to 1024g",
        ),
        (
            "limits: {agent: {memory: 99999999999999g}}",
            format!("{k}.memory"),
            "out of range",
        ),
        (
            "limits: {agent: {pids: 10}}",
            format!("{k}.pids"),
            "32 to 4194304",
        ),
        (
            "limits: {agent: {pids: 2.5}}",
            format!("{k}.pids"),
            "whole number",
        ),
        (
            "limits: {agent: {pids: \"100\"}}",
            format!("{k}.pids"),
            "whole number",
        ),
        (
            "limits: {bundle: []}",
            "limits.bundle".into(),
            "expected a mapping",
        ),
        ("limits: 4g", "limits".into(), "expected a mapping"),
    ] {
        let s = bottle_err(&format!("{yaml}\n"), &key);
        assert!(s.contains(want), "{yaml}: {s}");
    }
    // A repo-shipped agent cannot loosen (or tighten) a bottle's limits.
    let s = agent_err("bottle: dev\nlimits: {agent: {pids: 99999}}\n", "limits");
    assert!(s.contains("bottle key"), "{s}");
}

#[test]
fn limits_overlay_per_field_through_extends() {
    let r = raws(&[
        (
            "base",
            "limits: {agent: {cpus: 2, memory: 2g}, bundle: {pids: 64}}\n",
        ),
        ("child", "extends: base\nlimits: {agent: {memory: 8g}}\n"),
        ("plain", ""),
    ]);
    let b = extends::resolve(&r).unwrap();
    let child = &b["child"].limits;
    assert_eq!(child.agent.cpus_centi, Some(200));
    assert_eq!(child.agent.memory_bytes, Some(8 << 30));
    assert_eq!(child.bundle.pids, Some(64));
    assert_eq!(b["plain"].limits, Limits::default());
}

// ---------------------------------------------------------------- documentation

#[test]
fn every_accepted_key_is_documented() {
    let doc = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(validate::FORMAT_DOC))
        .unwrap();
    let mut missing = Vec::new();
    let mut checked = 0;
    for (kind, prefix, keys) in validate::KEY_TABLES {
        for key in *keys {
            let path = if prefix.is_empty() {
                (*key).to_string()
            } else {
                format!("{prefix}.{key}")
            };
            checked += 1;
            if !doc.contains(&format!("| `{path}` |")) {
                missing.push(format!("{kind} key `{path}`"));
            }
        }
    }
    assert!(checked >= 30, "only {checked} keys walked");
    assert!(
        missing.is_empty(),
        "not documented in a table row: {missing:?}"
    );
    // The env forms and the provider credentials are described.
    for want in [
        "`$VAR` without braces",
        "`${NAME}`",
        "\"?",
        "`agent_provider.auth_token`",
        "`agent_provider.forward_host_credentials`",
        "## The trust boundary",
    ] {
        assert!(doc.contains(want), "doc lacks {want:?}");
    }
}

#[test]
fn unknown_key_error_points_at_the_format_doc() {
    let s = bottle_err("egres: {}\n", "egres");
    assert!(s.contains("docs/manifest.md"), "{s}");
}

#[test]
fn git_refs_policy_is_validated_and_defaults_to_any_branch_no_force() {
    let base = "git-gate:\n  repos:\n    p:\n      url: ssh://git@h.example/o/r.git\n      identity: ~/.ssh/id\n";
    let b = bottle(base);
    assert_eq!(b.git_repos.unwrap()["p"].refs, GitRefs::default());
    let b = bottle(&format!(
        "{base}      refs: {{allow: [agent/*, \"fix-*\"], force: true, tags: false}}\n"
    ));
    let refs = &b.git_repos.unwrap()["p"].refs;
    assert_eq!(refs.allow, ["agent/*", "fix-*"]);
    assert!(refs.force && !refs.tags);
    assert_eq!(
        refs.to_string(),
        "branches agent/* fix-*, force allowed, no tags, no deletes"
    );
    let with = |refs: &str| format!("{base}      refs: {refs}\n");
    let k = "git-gate.repos.p.refs";
    assert!(
        bottle_err(&with("{delete: true}"), &format!("{k}.delete")).contains("allow, force, tags")
    );
    bottle_err(&with("{force: yes}"), &format!("{k}.force"));
    bottle_err(&with("{tags: 1}"), &format!("{k}.tags"));
    bottle_err(&with("{allow: agent/*}"), &format!("{k}.allow"));
    bottle_err(&with("{allow: [refs/heads/x]}"), &format!("{k}.allow[0]"));
    bottle_err(&with("{allow: [\"a b\"]}"), &format!("{k}.allow[0]"));
    bottle_err(&with("{allow: [\"\"]}"), &format!("{k}.allow[0]"));
    bottle_err(&with("[agent/*]"), k);
}
