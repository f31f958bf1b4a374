//! Property tests (proptest) of lbctl's argument parsing: the checked-in
//! command lines (`tests/corpus/argv.txt`, one valid command per line)
//! with words dropped, doubled, swapped, replaced by other words of the
//! vocabulary or by hostile strings, and edited byte by byte; and arbitrary
//! word lists. Property: the parser never panics, and whatever it refuses,
//! it refuses as a usage error (exit status 2) with a message.
//! `PROPTEST_CASES` scales a run.

use clap::{Parser as _, error::ErrorKind};
use lbctl::cli::Args;
use proptest::prelude::*;

fn corpus() -> Vec<Vec<String>> {
    include_str!("corpus/argv.txt")
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect()
}

/// Words that mean something to lbctl, and some that should not.
const WORDS: [&str; 24] = [
    "vip",
    "backend",
    "add",
    "del",
    "list",
    "weight",
    "stats",
    "status",
    "route",
    "gateway",
    "get",
    "set",
    "--json",
    "--no-sport",
    "--weight",
    "--api",
    "-",
    "--",
    "",
    "0",
    "-1",
    "4294967296",
    "[::1]:0/tcp",
    "\u{0}",
];

#[derive(Clone, Debug)]
enum Edit {
    Drop(usize),
    Dup(usize),
    Swap(usize, usize),
    Word(usize, usize),
    Byte(usize, usize, u8),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        any::<usize>().prop_map(Edit::Drop),
        any::<usize>().prop_map(Edit::Dup),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::Swap(a, b)),
        (any::<usize>(), 0..WORDS.len()).prop_map(|(a, w)| Edit::Word(a, w)),
        (any::<usize>(), any::<usize>(), any::<u8>()).prop_map(|(a, i, v)| Edit::Byte(a, i, v)),
    ]
}

fn apply(mut argv: Vec<String>, edits: &[Edit]) -> Vec<String> {
    for e in edits {
        if argv.is_empty() {
            argv.push(String::new());
        }
        let n = argv.len();
        match *e {
            Edit::Drop(a) => {
                argv.remove(a % n);
            }
            Edit::Dup(a) => {
                let w = argv[a % n].clone();
                argv.insert(a % n, w);
            }
            Edit::Swap(a, b) => argv.swap(a % n, b % n),
            Edit::Word(a, w) => argv[a % n] = WORDS[w].to_owned(),
            Edit::Byte(a, i, v) => {
                let mut b = std::mem::take(&mut argv[a % n]).into_bytes();
                if !b.is_empty() {
                    let i = i % b.len();
                    b[i] = v;
                }
                argv[a % n] = String::from_utf8_lossy(&b).into_owned();
            }
        }
    }
    argv
}

fn check(argv: &[String]) {
    let r = Args::try_parse_from(std::iter::once("lbctl".to_owned()).chain(argv.iter().cloned()));
    if let Err(e) = r {
        let text = e.to_string();
        assert!(!text.is_empty(), "{argv:?}: empty error");
        // Help and version requests are answers, not errors.
        if !matches!(
            e.kind(),
            ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
        ) {
            assert_eq!(e.exit_code(), 2, "{argv:?}: {text}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn mutated_command_lines_never_panic(
        i in 0..corpus().len(),
        edits in prop::collection::vec(edit(), 0..5),
    ) {
        check(&apply(corpus()[i].clone(), &edits));
    }

    #[test]
    fn arbitrary_words_never_panic(
        words in prop::collection::vec(prop_oneof![
            (0..WORDS.len()).prop_map(|w| WORDS[w].to_owned()),
            ".{0,24}",
        ], 0..8)
    ) {
        check(&words);
    }
}

/// The corpus is valid: mutations start from command lines lbctl accepts.
#[test]
fn corpus_command_lines_parse() {
    for argv in corpus() {
        Args::try_parse_from(std::iter::once("lbctl".to_owned()).chain(argv.iter().cloned()))
            .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    }
}
