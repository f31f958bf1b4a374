//! `lbctl completions` and `lbctl man`, checked with the real tools: bash
//! parses the completion script and, sourced, completes lbctl's commands;
//! zsh and fish scripts register for lbctl; every man page renders with
//! `man -l` (man-db + groff, installed by scripts/setup.sh) and documents its
//! command. No daemon is involved: these commands must work without one.

use std::{path::Path, process::Command};

/// The commands and their subcommands as the CLI defines them.
const TOP: [&str; 8] = [
    "vip",
    "backend",
    "stats",
    "status",
    "route",
    "gateway",
    "completions",
    "man",
];

/// Runs lbctl in-process with an API address that cannot be reached, so a
/// command that tried to contact the daemon would fail with status 3.
fn lbctl(args: &[&str]) -> (u8, String, String) {
    let mut argv = vec!["lbctl", "--api", "unix:///nonexistent/lb.sock"];
    argv.extend(args);
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = lbctl::run_with(argv, &mut out, &mut err);
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

fn completion(shell: &str) -> String {
    let (code, out, err) = lbctl(&["completions", shell]);
    assert_eq!(code, 0, "completions {shell}: {err}");
    assert!(err.is_empty(), "{err}");
    out
}

/// What bash's completion function offers for the words typed so far (the
/// last one being completed).
fn bash_complete(script: &Path, words: &[&str]) -> Vec<String> {
    let line = words.join(" ");
    let words_arr: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let cmd = format!(
        "set -e; source '{}'; COMP_WORDS=({}); COMP_CWORD={}; COMP_LINE='{line}'; \
         COMP_POINT={}; _lbctl lbctl '{}' '{}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display(),
        words_arr.join(" "),
        words.len() - 1,
        line.len(),
        words[words.len() - 1],
        words[words.len().saturating_sub(2)],
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &cmd])
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "bash completion of {words:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn bash_completion_parses_and_completes_the_commands() {
    let script = completion("bash");
    for c in TOP {
        assert!(script.contains(c), "bash completion lacks {c}");
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lbctl.bash");
    std::fs::write(&file, &script).unwrap();
    let syntax = Command::new("bash").arg("-n").arg(&file).output().unwrap();
    assert!(
        syntax.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&syntax.stderr)
    );
    // Sourced, it registers itself and completes what lbctl parses.
    let top = bash_complete(&file, &["lbctl", ""]);
    for c in TOP {
        assert!(
            top.iter().any(|w| w == c),
            "`lbctl <TAB>` lacks {c}: {top:?}"
        );
    }
    let vip = bash_complete(&file, &["lbctl", "vip", ""]);
    for c in ["add", "del", "list"] {
        assert!(
            vip.iter().any(|w| w == c),
            "`lbctl vip <TAB>` lacks {c}: {vip:?}"
        );
    }
    assert!(!vip.iter().any(|w| w == "weight"), "{vip:?}");
    let weight = bash_complete(&file, &["lbctl", "backend", "w"]);
    assert_eq!(weight, ["weight"]);
    let shells = bash_complete(&file, &["lbctl", "completions", ""]);
    for s in ["bash", "zsh", "fish"] {
        assert!(shells.iter().any(|w| w == s), "{shells:?}");
    }
    let opts = bash_complete(&file, &["lbctl", "vip", "add", "--no"]);
    assert_eq!(opts, ["--no-sport", "--no-conntrack"]);
}

#[test]
fn zsh_and_fish_completions_register_for_lbctl() {
    let zsh = completion("zsh");
    assert!(zsh.starts_with("#compdef lbctl"), "{}", &zsh[..80]);
    let fish = completion("fish");
    assert!(fish.contains("complete -c lbctl"), "fish script");
    for c in TOP {
        assert!(zsh.contains(&format!("'{c}:")), "zsh lacks {c}");
        assert!(fish.contains(&format!("-a \"{c}\"")), "fish lacks {c}");
    }
}

#[test]
fn unknown_shell_is_a_usage_error() {
    let (code, out, err) = lbctl(&["completions", "tcsh"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("tcsh"), "{err}");
}

/// Renders a page as `man -l` shows it, without a pager or terminal width
/// surprises; fails on any groff warning.
fn render(page: &Path) -> String {
    let out = Command::new("man")
        .args(["--warnings", "-l", "-P", "cat"])
        .arg(page)
        .env("MANWIDTH", "100")
        .env("LANG", "C.UTF-8")
        .output()
        .expect("man (man-db, installed by scripts/setup.sh)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "man -l {}: {stderr}",
        page.display()
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn man_pages_render_and_document_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let mandir = dir.path().join("man/man1");
    let (code, out, err) = lbctl(&["man", mandir.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let listed: Vec<&str> = out.lines().collect();
    let mut files: Vec<String> = std::fs::read_dir(&mandir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(listed.len(), files.len(), "{out}");
    for page in [
        "lbctl.1",
        "lbctl-vip-add.1",
        "lbctl-backend-weight.1",
        "lbctl-route.1",
        "lbctl-completions.1",
        "lbctl-man.1",
        "lbctl-export.1",
        "lbctl-apply.1",
    ] {
        assert!(files.iter().any(|f| f == page), "{page} missing: {files:?}");
    }
    // One page per command of the clap tree (help excluded), lbctl's own
    // included: counted from the definitions, so a new command needs its page.
    fn pages(c: &clap::Command) -> usize {
        1 + c
            .get_subcommands()
            .filter(|s| s.get_name() != "help")
            .map(pages)
            .sum::<usize>()
    }
    let want = pages(&<lbctl::cli::Args as clap::CommandFactory>::command());
    assert!(want >= 20, "{want} commands");
    assert_eq!(files.len(), want, "{files:?}");

    let main = render(&mandir.join("lbctl.1"));
    assert!(main.contains("LBCTL(1)"), "{main}");
    for section in ["NAME", "SYNOPSIS", "DESCRIPTION", "SUBCOMMANDS"] {
        assert!(main.contains(section), "lbctl.1 lacks {section}:\n{main}");
    }
    for c in TOP {
        assert!(
            main.contains(&format!("lbctl-{c}(1)")),
            "lbctl.1 does not list {c}:\n{main}"
        );
    }
    let add = render(&mandir.join("lbctl-vip-add.1"));
    assert!(add.contains("LBCTL-VIP-ADD(1)"), "{add}");
    assert!(add.contains("lbctl vip add"), "synopsis:\n{add}");
    assert!(add.contains("--no-sport") && add.contains("--api"), "{add}");
    // Every page renders without a groff warning.
    for f in &files {
        render(&mandir.join(f));
    }
    // `man` finds the pages by name through MANPATH, as after installing.
    let found = Command::new("man")
        .args(["-w", "lbctl-backend-weight"])
        .env("MANPATH", dir.path().join("man"))
        .output()
        .unwrap();
    assert!(
        found.status.success(),
        "man -w: {}",
        String::from_utf8_lossy(&found.stderr)
    );
}

#[test]
fn man_into_an_unwritable_place_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let (code, _out, err) = lbctl(&["man", file.join("man1").to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.starts_with("lbctl: ") && err.contains("not-a-dir"),
        "{err}"
    );
}
