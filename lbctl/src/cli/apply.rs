//! `lbctl apply FILE [--dry-run] [--prune]` on one node or several (`--api`
//! repeated): what it prints and the exit status (see [`crate::apply`] for
//! what it does to a node).
//!
//! For each node, in the order given: the plan (one line per VIP step,
//! indented lines for flags and backends, VIPs left alone, a summary), then
//! `applied: ...` or `dry run: nothing changed`. With several nodes each
//! block starts with `node URI:` and a last line counts the nodes. A node
//! that fails is reported on stderr (`lbctl: URI: ...`) and the others are
//! still done.
//!
//! | status | meaning |
//! |---|---|
//! | 0 | every node matches the file: it already did, or the plan was applied (and read back to check) |
//! | 1 ([`EXIT_ERROR`]) | the file has an error (nothing applied anywhere), the command line is wrong, or some node failed: unreachable, refused a step, or did not match the file after applying |
//! | 2 ([`EXIT_DIFFERENCES`]) | `--dry-run` only: some node differs from the file (and none failed) |

use std::{
    io::{Read, Write},
    path::Path,
};

use lb_api::vipfile::{FileError, VipConfig, VipFile};

use super::{
    CliError,
    args::{ApplyArgs, Args},
    status_line,
};
use crate::{
    apply::{
        StepFailed, live_vips,
        plan::{Plan, Step},
        run_plan,
    },
    client::{self, ClientTls},
};

/// Exit status: an error (bad file, command line, or a node failed).
pub const EXIT_ERROR: u8 = 1;
/// Exit status of `--dry-run`: some node differs from the file.
pub const EXIT_DIFFERENCES: u8 = 2;

/// How one node ended.
enum Outcome {
    /// It matched the file already.
    InSync,
    /// It differs and `--dry-run` left it so.
    Differs,
    /// The plan was applied and the node now matches.
    Applied,
}

/// Why one node failed.
enum NodeError {
    /// Connecting or reading its VIPs.
    Cli(CliError),
    /// A step was refused.
    Step(Box<StepFailed>, usize),
    /// After applying, the node still differs from the file: someone else
    /// changed it meanwhile, or the daemon ignored part of a request (one
    /// older than `ReplaceBackends` with flags).
    NotConverged(String),
}

impl From<CliError> for NodeError {
    fn from(e: CliError) -> Self {
        NodeError::Cli(e)
    }
}

impl From<tonic::Status> for NodeError {
    fn from(s: tonic::Status) -> Self {
        NodeError::Cli(CliError::Status(s))
    }
}

impl NodeError {
    fn line(&self) -> String {
        match self {
            NodeError::Cli(e) => e.line(),
            NodeError::Step(f, total) => {
                let what = match &f.step {
                    Step::Delete(v) => format!("deleting VIP {}", v.address),
                    Step::Change(c) => format!("changing VIP {}", c.vip),
                    Step::Create(v) => format!("creating VIP {}", v.address),
                };
                format!(
                    "{what}: {}; {} of {total} steps were applied before it, the rest not attempted",
                    status_line(&f.status),
                    f.applied
                )
            }
            NodeError::NotConverged(rest) => format!(
                "the node does not match the file after applying (changed meanwhile?); still to do: {rest}"
            ),
        }
    }
}

/// Writes a line; a reader that went away does not stop the nodes.
fn say(w: &mut (dyn Write + Send), text: &str) {
    let _ = w.write_all(text.as_bytes());
    if !text.ends_with('\n') {
        let _ = w.write_all(b"\n");
    }
    let _ = w.flush();
}

/// Reads and checks the file; `-` is standard input (`lbctl export |
/// lbctl apply -` copies one node's VIPs to others).
fn read_file(path: &Path) -> Result<VipFile, FileError> {
    if path != Path::new("-") {
        return VipFile::read(path);
    }
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(|source| FileError::Read {
            path: path.to_owned(),
            source,
        })?;
    VipFile::parse(&text, "<stdin>")
}

/// Runs `lbctl apply` and returns its exit status.
pub(super) async fn run(
    args: &Args,
    a: &ApplyArgs,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
) -> u8 {
    let file = match read_file(&a.file) {
        Ok(f) => f,
        Err(e) => {
            say(err, &format!("lbctl: {e}; nothing applied"));
            return EXIT_ERROR;
        }
    };
    if !file.skipped.is_empty() {
        let tables: Vec<String> = file.skipped.iter().map(|t| format!("[{t}]")).collect();
        say(
            err,
            &format!(
                "lbctl: note: skipping {} of {}: node settings, which apply does not change",
                tables.join(", "),
                a.file.display()
            ),
        );
    }
    let tls = args.client_tls();
    let multi = args.api.len() > 1;
    let (mut in_sync, mut differ, mut applied, mut failed) = (0, 0, 0, 0);
    for api in &args.api {
        if multi {
            say(out, &format!("node {api}:"));
        }
        match node(api, tls.as_ref(), &file.vips, a, out).await {
            Ok(Outcome::InSync) => in_sync += 1,
            Ok(Outcome::Differs) => differ += 1,
            Ok(Outcome::Applied) => applied += 1,
            Err(e) => {
                failed += 1;
                let mut line = e.line();
                if let NodeError::Cli(c) = &e
                    && c.is_transport()
                    && args.ca.is_some()
                    && args.cert.is_none()
                {
                    line.push_str(
                        " (does the daemon require a client certificate? give --cert and --key)",
                    );
                }
                let node = if multi {
                    format!("{api}: ")
                } else {
                    String::new()
                };
                say(err, &format!("lbctl: {node}{line}"));
            }
        }
    }
    if multi {
        let changed = if a.dry_run {
            format!("{differ} differ")
        } else {
            format!("{applied} changed")
        };
        say(
            out,
            &format!(
                "nodes: {}: {in_sync} in sync, {changed}, {failed} failed",
                args.api.len()
            ),
        );
    }
    if failed > 0 {
        EXIT_ERROR
    } else if differ > 0 {
        EXIT_DIFFERENCES
    } else {
        0
    }
}

/// Plans, prints and (unless `--dry-run`) applies the file on one node.
async fn node(
    api: &str,
    tls: Option<&ClientTls>,
    file: &[VipConfig],
    a: &ApplyArgs,
    out: &mut (dyn Write + Send),
) -> Result<Outcome, NodeError> {
    let mut lb = client::connect(api, tls).await.map_err(CliError::Connect)?;
    let live = live_vips(&mut lb).await?;
    let plan = Plan::new(file, &live, a.prune);
    say(out, &plan.render());
    if plan.is_empty() {
        return Ok(Outcome::InSync);
    }
    if a.dry_run {
        say(out, "dry run: nothing changed");
        return Ok(Outcome::Differs);
    }
    run_plan(&mut lb, &plan)
        .await
        .map_err(|f| NodeError::Step(Box::new(f), plan.steps.len()))?;
    // Read back: each call was atomic, but another client may have changed
    // the node between the plan and now.
    let after = Plan::new(file, &live_vips(&mut lb).await?, a.prune);
    if !after.is_empty() {
        return Err(NodeError::NotConverged(after.render().replace('\n', "; ")));
    }
    let (d, c, n) = plan.counts();
    say(
        out,
        &format!("applied: {n} created, {c} changed, {d} deleted"),
    );
    Ok(Outcome::Applied)
}
