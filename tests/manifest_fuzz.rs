//! Hostile-input tests for the YAML layer and the manifest loader: nothing panics, work is
//! bounded, and every error is a single line.

use std::fs;
use std::path::Path;

use bot_bottle::manifest::{self, LoadOptions, ManifestError};
use bot_bottle::yaml::{self, YamlErrorKind};
use proptest::prelude::*;

fn assert_one_line(s: &str) {
    assert!(
        !s.contains('\n') && !s.contains('\r'),
        "multi-line error: {s:?}"
    );
    assert!(!s.is_empty());
}

/// Parses text as YAML and as both kinds of manifest file; returns nothing, panics only on
/// a broken invariant.
fn exercise(text: &str) {
    match yaml::parse_value(text) {
        Ok(_) => {}
        Err(e) => {
            assert_ne!(
                e.kind,
                YamlErrorKind::Internal,
                "parser panicked on {text:?}"
            );
            assert_one_line(&e.to_string());
        }
    }
    let wrapped = format!("---\n{text}\n---\nbody\n");
    for t in [text, wrapped.as_str()] {
        if let Err(e) = manifest::parse_bottle_file(Path::new("/r/bottles/x.md"), t) {
            assert_one_line(&e.to_string());
        }
        if let Err(e) = manifest::parse_agent_file(Path::new("/r/agents/x.md"), t) {
            assert_one_line(&e.to_string());
        }
    }
}

/// Text built from YAML's structural characters, so the parser's odd corners are reached.
fn yamlish() -> impl Strategy<Value = String> {
    let atoms = prop::sample::select(vec![
        "-",
        " ",
        "  ",
        "\n",
        "\r\n",
        "\t",
        ":",
        ": ",
        "? ",
        "[",
        "]",
        "{",
        "}",
        ",",
        "&a ",
        "*a",
        "!",
        "!!str ",
        "|",
        ">",
        "|-",
        "'",
        "\"",
        "\\",
        "%YAML 1.2\n",
        "%TAG ! x\n",
        "#",
        "@",
        "`",
        "---",
        "...",
        "a",
        "key",
        "env",
        "egress",
        "routes",
        "host",
        "true",
        "yes",
        "1",
        "0x",
        "1e9",
        "~",
        "\u{feff}",
        "\u{85}",
        "\u{2028}",
        "é",
        "\0",
        "${",
        "}",
        "?x",
        "<<",
    ]);
    prop::collection::vec(atoms, 0..200).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        exercise(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn random_yamlish_text_never_panics(text in yamlish()) {
        exercise(&text);
    }

    #[test]
    fn random_manifest_shapes_never_panic(
        key in prop::sample::select(vec!["env", "egress", "git-gate", "agent_provider",
            "supervise", "extends", "bottle", "skills", "description", "role", "runtime"]),
        inner in yamlish(),
    ) {
        exercise(&format!("{key}:\n  {inner}"));
        exercise(&format!("{key}: {{{inner}}}"));
        exercise(&format!("egress:\n  routes:\n    - host: a\n      {key}: {inner}"));
    }

    #[test]
    fn writer_output_reads_back(v in json_value()) {
        let text = yaml::to_yaml_string(&v);
        prop_assert_eq!(yaml::parse_value(&text).unwrap(), v);
    }
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| Value::Number(n.into())),
        prop::collection::vec(any::<char>(), 0..12)
            .prop_map(|c| Value::String(c.into_iter().collect())),
        prop::sample::select(vec![
            "yes", "no", "8080:80", "", " x", "0755", "~", "null", "-", "a: b", "#c", "1.0"
        ])
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::collection::vec(any::<char>(), 0..8)
                    .prop_map(|c| c.into_iter().collect::<String>()),
                inner,
                0..6,
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

#[test]
fn deep_nesting_is_bounded() {
    for n in [65, 1_000, 100_000] {
        let flow_seq = "[".repeat(n);
        let flow_map = "{a: ".repeat(n);
        let mut block = String::new();
        for i in 0..n.min(5_000) {
            block.push_str(&" ".repeat(i));
            block.push_str("a:\n");
        }
        let mut block_seq = String::new();
        for i in 0..n.min(5_000) {
            block_seq.push_str(&" ".repeat(i * 2));
            block_seq.push_str("-\n");
        }
        for text in [flow_seq, flow_map, block, block_seq] {
            let text: String = text.chars().take(yaml::MAX_INPUT_BYTES).collect();
            let e = yaml::parse_value(&text).expect_err("must be refused");
            assert!(
                matches!(e.kind, YamlErrorKind::TooDeep | YamlErrorKind::TooLarge(_)),
                "{e}"
            );
            assert_one_line(&e.to_string());
            exercise(&text);
        }
    }
}

#[test]
fn huge_input_is_refused_cheaply() {
    let text = format!("a: \"{}\"\n", "x".repeat(yaml::MAX_INPUT_BYTES));
    let e = yaml::parse_value(&text).unwrap_err();
    assert!(matches!(e.kind, YamlErrorKind::TooLarge(_)));
    assert_one_line(&e.to_string());
    // Many small nodes under the byte limit hit the node limit instead.
    let many = "- 1\n".repeat(yaml::MAX_NODES + 10);
    let e = yaml::parse_value(&many).unwrap_err();
    assert_eq!(e.kind, YamlErrorKind::TooManyNodes);
}

#[test]
fn billion_laughs_is_refused_at_the_first_anchor() {
    let mut text = String::from(
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    for (prev, cur) in ["a", "b", "c", "d", "e", "f", "g", "h"]
        .iter()
        .zip(["b", "c", "d", "e", "f", "g", "h", "i"])
    {
        text.push_str(&format!(
            "{cur}: &{cur} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"
        ));
    }
    let e = yaml::parse_value(&text).unwrap_err();
    assert_eq!(e.kind, YamlErrorKind::Anchor);
    assert_eq!(e.line, 1);
    // Aliases alone (anchor defined nowhere) are refused too, never expanded.
    let e = yaml::parse_value("x: *a\n").unwrap_err();
    assert_one_line(&e.to_string());
    // Merge keys are plain strings to the core schema, not a merge.
    let v = yaml::parse_value("<<: x\n").unwrap();
    assert_eq!(v["<<"], "x");
}

#[test]
fn duplicate_keys_are_refused_at_every_depth() {
    for text in [
        "a: 1\na: 2\n",
        "e:\n  x: 1\n  x: 2\n",
        "l:\n  - {k: 1, k: 2}\n",
        "\"a\": 1\n'a': 2\n",
    ] {
        let e = yaml::parse_value(text).unwrap_err();
        assert!(
            matches!(e.kind, YamlErrorKind::DuplicateKey(_)),
            "{text:?}: {e}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Whole trees of random files: `load` returns a manifest or a one-line error.
    #[test]
    fn load_never_panics(files in prop::collection::vec(
        (prop::sample::select(vec!["bottles/a.md", "bottles/b.md", "agents/x.md", "agents/Bad.md",
            "cwd/.bot-bottle/agents/x.md", "cwd/.bot-bottle/bottles/a.md", "cwd/bot-bottle.json"]),
         prop_oneof![yamlish(), yamlish().prop_map(|y| format!("---\n{y}\n---\n")),
             Just("---\nextends: b\n---\n".to_owned()), Just("---\nextends: a\n---\n".to_owned()),
             Just("---\nbottle: a\n---\nhi\n".to_owned())]),
        0..6)) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let cwd = tmp.path().join("cwd");
        fs::create_dir_all(&root).unwrap();
        fs::create_dir_all(&cwd).unwrap();
        for (rel, text) in &files {
            let p = match rel.strip_prefix("cwd/") {
                Some(r) => cwd.join(r),
                None => root.join(rel),
            };
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, text).unwrap();
        }
        match manifest::load(&LoadOptions { root, cwd }) {
            Ok(m) => {
                for a in m.agents.values() {
                    prop_assert!(m.bottles.contains_key(&a.bottle));
                }
                for b in m.bottles.keys() {
                    // Bottles only ever come from the home root.
                    let want = format!("bottles/{b}.md");
                    prop_assert!(files.iter().any(|(rel, _)| *rel == want));
                }
            }
            Err(e) => {
                assert_one_line(&e.to_string());
                let _: &ManifestError = &e;
            }
        }
    }
}
