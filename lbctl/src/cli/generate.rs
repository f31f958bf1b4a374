//! `lbctl completions SHELL` and `lbctl man DIR`: shell completion scripts
//! and man pages generated from the clap definitions in [`super::args`], so
//! they list exactly the commands and options this binary parses.

use std::{
    io::{self, Write},
    path::{Path, PathBuf},
};

use clap::CommandFactory as _;
use clap_complete::Shell;

use super::{Args, CliError};

/// The program name completions are registered for.
const BIN: &str = "lbctl";

/// The command tree with every subcommand's full name filled in
/// (`lbctl vip add`), as the generators expect.
fn command() -> clap::Command {
    let mut cmd = Args::command();
    cmd.build();
    cmd
}

/// Writes the completion script for `shell` to `out`.
pub(super) fn completions(shell: Shell, out: &mut (dyn Write + Send)) -> Result<(), CliError> {
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut command(), BIN, &mut buf);
    out.write_all(&buf)
        .and_then(|()| out.flush())
        .map_err(CliError::Output)
}

/// Writes `lbctl.1` and one page per subcommand (`lbctl-vip.1`,
/// `lbctl-vip-add.1`, ...) into `dir`, creating it, and prints each path
/// written.
pub(super) fn man_pages(dir: &Path, out: &mut (dyn Write + Send)) -> Result<(), CliError> {
    let in_dir = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", dir.display()));
    std::fs::create_dir_all(dir)
        .and_then(|()| write_pages(&command(), dir))
        .map_err(in_dir)
        .and_then(|written| {
            for p in written {
                writeln!(out, "{}", p.display())?;
            }
            out.flush()
        })
        .map_err(CliError::Output)
}

/// One page for `cmd`, then its subcommands' pages, depth first; returns the
/// files written. The page of `lbctl vip add` is `lbctl-vip-add.1`, titled
/// `LBCTL-VIP-ADD`, as `man lbctl-vip-add` finds it.
fn write_pages(cmd: &clap::Command, dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let mut stack = vec![cmd.clone()];
    while let Some(cmd) = stack.pop() {
        if cmd.is_hide_set() {
            continue;
        }
        // `build()` named each subcommand for its full command line
        // (`lbctl-vip-add`), which is the page's name.
        let name = cmd
            .get_display_name()
            .unwrap_or_else(|| cmd.get_name())
            .to_string();
        let path = dir.join(format!("{name}.1"));
        let mut page = Vec::new();
        clap_mangen::Man::new(cmd.clone())
            .title(name.to_uppercase())
            .section("1")
            .manual("lb manual")
            .source(format!("lb {}", env!("CARGO_PKG_VERSION")))
            .render(&mut page)?;
        std::fs::write(&path, page)?;
        written.push(path);
        // Pushed in reverse so pages come out in definition order.
        let mut subs: Vec<clap::Command> = cmd
            .get_subcommands()
            .filter(|s| s.get_name() != "help")
            .cloned()
            .collect();
        subs.reverse();
        stack.extend(subs);
    }
    Ok(written)
}
