//! Property tests (proptest) of the configuration parser and the daemon's
//! checks (`daemon::settings::parse`): the checked-in configurations
//! (config/*.toml and tests/corpus/) mutated line by line (lines dropped,
//! doubled, swapped, values replaced by hostile tokens) and byte by byte,
//! and arbitrary text. Properties: nothing panics; a rejected file's error
//! names the file, and the line it names (every error that can name one
//! does) exists; an accepted file parses the same way twice.
//! `PROPTEST_CASES` scales a run.

use lb_daemon::{config::ConfigError, daemon::settings};
use proptest::prelude::*;

const CORPUS: [&str; 3] = [
    include_str!("../../config/demo.toml"),
    include_str!("../../config/production.toml"),
    include_str!("corpus/small.toml"),
];

/// Values an operator (or an attacker) might put where a value goes.
const TOKENS: [&str; 16] = [
    "\"\"",
    "0",
    "-1",
    "4294967296",
    "18446744073709551616",
    "1e400",
    "true",
    "[",
    "{",
    "[[vip]]",
    "\"198.18.0.1:80/tcp\"",
    "\"fd00::1\"",
    "\"02:00:00:00:00:00\"",
    "\"\\u0000\"",
    "'''",
    "nan",
];

#[derive(Clone, Debug)]
enum Edit {
    DropLine(usize),
    DupLine(usize),
    SwapLines(usize, usize),
    /// Replace what follows the `=` of a line.
    Value(usize, usize),
    Byte(usize, u8),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        any::<usize>().prop_map(Edit::DropLine),
        any::<usize>().prop_map(Edit::DupLine),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::SwapLines(a, b)),
        (any::<usize>(), 0..TOKENS.len()).prop_map(|(l, t)| Edit::Value(l, t)),
        (any::<usize>(), any::<u8>()).prop_map(|(at, v)| Edit::Byte(at, v)),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    for e in edits {
        if lines.is_empty() {
            break;
        }
        let n = lines.len();
        match *e {
            Edit::DropLine(l) => {
                lines.remove(l % n);
            }
            Edit::DupLine(l) => {
                let line = lines[l % n].clone();
                lines.insert(l % n, line);
            }
            Edit::SwapLines(a, b) => lines.swap(a % n, b % n),
            Edit::Value(l, t) => {
                let line = &mut lines[l % n];
                if let Some(eq) = line.find('=') {
                    line.truncate(eq + 1);
                    line.push(' ');
                    line.push_str(TOKENS[t]);
                }
            }
            Edit::Byte(at, v) => {
                let line = &mut lines[at % n];
                let mut b = std::mem::take(line).into_bytes();
                if !b.is_empty() {
                    let i = (at / n) % b.len();
                    b[i] = v;
                }
                *line = String::from_utf8_lossy(&b).into_owned();
            }
        }
    }
    lines.join("\n")
}

fn check(text: &str) {
    match settings::parse(text, "fuzz.toml") {
        Ok(cfg) => {
            let again = settings::parse(text, "fuzz.toml").expect("parsed once, must parse twice");
            assert_eq!(format!("{cfg:?}"), format!("{again:?}"));
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.starts_with("fuzz.toml"),
                "error does not name the file: {msg}"
            );
            // Only an error about the document as a whole (a missing
            // top-level table) has no line to name.
            if let ConfigError::Invalid {
                line: None,
                message,
                ..
            } = &e
            {
                assert!(
                    message.starts_with("missing field"),
                    "error names no line: {msg}\nin {text:?}"
                );
            }
            if let ConfigError::Invalid { line: Some(l), .. } = e {
                let lines = text.lines().count().max(1);
                assert!(
                    (1..=lines + 1).contains(&l),
                    "error names line {l} of a {lines}-line file: {msg}"
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]

    #[test]
    fn mutated_configurations_never_panic_and_name_real_lines(
        i in 0..CORPUS.len(),
        edits in prop::collection::vec(edit(), 0..5),
    ) {
        check(&apply(CORPUS[i], &edits));
    }

    #[test]
    fn arbitrary_text_never_panics(text in "(\\[\\[vip\\]\\]\n|\\[dataplane\\]\n|[a-z_]{1,12} = .{0,20}\n|.{0,30}\n){0,8}") {
        check(&text);
    }
}

/// The corpus itself is valid: the mutations start from files the daemon
/// accepts (otherwise the run would only test the first error).
#[test]
fn corpus_files_are_accepted() {
    for (i, text) in CORPUS.iter().enumerate() {
        settings::parse(text, "corpus.toml").unwrap_or_else(|e| panic!("corpus {i}: {e}"));
    }
}
