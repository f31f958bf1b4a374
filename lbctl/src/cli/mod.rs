//! `lbctl`, the operator CLI over the daemon's `lb.v1` gRPC API (the binary
//! is a thin `main` over [`run`]).
//!
//! ```text
//! lbctl [--api URI] [--ca F [--cert F --key F] [--tls-domain D]] <command>
//!   vip add ADDR:PORT/PROTO [--no-sport] [--no-conntrack]
//!   vip del ADDR:PORT/PROTO
//!   vip list [--json]
//!   backend add VIP ADDR [--weight N]      (default weight 100)
//!   backend del VIP ADDR
//!   backend weight VIP ADDR N              (0 drains)
//!   backend list VIP [--json]
//!   stats [VIP] [--json] [--watch SECS]
//!   status [--json]
//!   route VIP CLIENT_ADDR:PORT [--dport N] [--explain [--syn]] [--json]
//!   gateway get [--json] | gateway set MAC
//!   announce list [--json]                 (BGP: what this node announces, why)
//!   node drain | node undrain              (withdraw / announce again)
//!   export [--format toml|json]
//!   apply FILE [--dry-run] [--prune]
//!
//! `--api` may be repeated: every command but `stats --watch` then runs on
//! each node in turn and reports per node ([`nodes`]); `status` also says
//! whether the nodes' ring fingerprints agree.
//!   completions bash|zsh|fish|elvish|powershell   (no daemon needed)
//!   man DIR                                       (no daemon needed)
//! ```
//!
//! The API address defaults to `$LB_API`, else `unix:///run/lb/lb.sock`.
//! Output formats, including the stable `--json` shapes, are documented in
//! [`output`].
//!
//! # Errors and exit status
//!
//! A failure prints exactly one line on stderr, `lbctl: ` followed by the
//! gRPC status code name and the daemon's message (`lbctl: NOT_FOUND: vip
//! 198.18.0.10:80/tcp does not exist`) or by what went wrong reaching the
//! daemon. Usage errors print clap's message and usage. The exit status says
//! which kind of failure it was:
//!
//! | status | meaning |
//! |---|---|
//! | 0 | success (also `--help`, `--version`, a `--watch` ended by Ctrl-C, output cut short by a closed pipe) |
//! | 1 ([`EXIT_REJECTED`]) | the daemon refused or failed the call (any gRPC status but UNAVAILABLE), or answered something lbctl cannot use |
//! | 2 ([`EXIT_USAGE`]) | bad command line: unknown command or option, malformed VIP/address/port/weight/MAC, bad `--api`, TLS options that do not fit the API address |
//! | 3 ([`EXIT_CONNECT`]) | the daemon could not be reached (no socket, refused, permission, TLS handshake, timeout), the connection failed during the call (e.g. a mutual-TLS daemon closing it for want of a client certificate), or the daemon answered UNAVAILABLE (starting or stopping: retry) |
//!
//! With several `--api`, the status is that of the first node that failed,
//! 0 if none did, 1 if `status` finds that their rings differ.
//!
//! `lbctl apply` has its own statuses, for pipelines (see [`apply`]): 0 the
//! nodes match the file (already, or once applied), 2 (`--dry-run`) some
//! node differs from the file, 1 any error: a bad file (nothing applied), a
//! bad command line, a node unreachable or refusing a step.

pub mod announce;
mod apply;
pub mod args;
mod commands;
pub mod explain;
mod export;
mod generate;
mod health;
mod nodes;
pub mod output;

use std::{
    ffi::OsString,
    io::{self, Write},
    process::ExitCode,
};

use clap::{CommandFactory, Parser, error::ErrorKind};
use tonic::{Code, Status};

pub use args::Args;
use args::Command;

use crate::client::{ClientError, error_chain};

/// Exit status: the daemon refused or failed the call.
pub const EXIT_REJECTED: u8 = 1;
/// Exit status: bad command line (clap's own usage status).
pub const EXIT_USAGE: u8 = 2;
/// Exit status: the daemon could not be reached or is not serving.
pub const EXIT_CONNECT: u8 = 3;

/// Runs `lbctl` with these arguments (the first is the program name) on
/// the process's stdout and stderr, in a runtime of its own.
pub fn run<I, T>(argv: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let argv: Vec<T> = argv.into_iter().collect();
    let args = match parse_args(argv.clone()) {
        Ok(args) => args,
        Err(e) => {
            // clap's own printing: colours on a terminal, help to stdout.
            let _ = e.print();
            return ExitCode::from(usage_status_of(&e, argv));
        }
    };
    ExitCode::from(run_parsed(&args, &mut io::stdout(), &mut io::stderr()))
}

/// [`run`] with output captured: returns the exit status number. Must not
/// be called from within a Tokio runtime (it starts its own); use
/// [`run_async`] there.
pub fn run_with<I, T>(argv: I, out: &mut (dyn Write + Send), err: &mut (dyn Write + Send)) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let argv: Vec<T> = argv.into_iter().collect();
    match parse_args(argv.clone()) {
        Ok(args) => run_parsed(&args, out, err),
        Err(e) => report_usage(&e, out, err, usage_status_of(&e, argv)),
    }
}

/// [`run_with`] for callers already inside a Tokio runtime (tests).
pub async fn run_async<I, T>(
    argv: I,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let argv: Vec<T> = argv.into_iter().collect();
    match parse_args(argv.clone()) {
        Ok(args) => execute(&args, out, err).await,
        Err(e) => report_usage(&e, out, err, usage_status_of(&e, argv)),
    }
}

/// Parses and checks the command line.
fn parse_args<I, T>(argv: I) -> Result<Args, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let argv: Vec<OsString> = argv.into_iter().map(Into::into).collect();
    let mut args = Args::try_parse_from(&argv)?;
    // clap keeps the values of a global option from one level only: in
    // `lbctl --api A apply F --api B` it would drop A, and apply would skip
    // a node without a word. Every occurrence counts, wherever it is (clap
    // has checked each value already).
    let every = api_values(&argv);
    if every.len() > args.api.len() {
        args.api = every;
    }
    check(&args)?;
    Ok(args)
}

/// The values of every `--api V` and `--api=V` on the command line.
fn api_values(argv: &[OsString]) -> Vec<String> {
    let mut out = Vec::new();
    let mut it = argv.iter().skip(1).map(|a| a.to_string_lossy());
    while let Some(arg) = it.next() {
        if arg == "--api" {
            if let Some(v) = it.next() {
                out.push(v.into_owned());
            }
        } else if let Some(v) = arg.strip_prefix("--api=") {
            out.push(v.to_owned());
        }
    }
    out
}

/// clap's status for a parse "error": 0 for --help and --version, else 2.
fn usage_status(e: &clap::Error) -> u8 {
    u8::try_from(e.exit_code()).unwrap_or(EXIT_USAGE)
}

/// [`usage_status`], except for `lbctl apply`, where 2 means "differences
/// found": a malformed apply command line is an error like any other (1),
/// so a pipeline never takes a typo for drift.
fn usage_status_of<I, T>(e: &clap::Error, argv: I) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let status = usage_status(e);
    if status != EXIT_USAGE {
        return status;
    }
    // Parsing again while ignoring errors still finds the subcommand.
    let matches = Args::command()
        .ignore_errors(true)
        .try_get_matches_from(argv);
    match matches {
        Ok(m) if m.subcommand_name() == Some("apply") => apply::EXIT_ERROR,
        _ => status,
    }
}

/// Prints clap's message without styling (help and version to `out`,
/// errors to `err`) and returns `status`.
fn report_usage<'w>(
    e: &clap::Error,
    out: &'w mut dyn Write,
    err: &'w mut dyn Write,
    status: u8,
) -> u8 {
    let w = if e.use_stderr() { err } else { out };
    let _ = w.write_all(e.render().to_string().as_bytes());
    let _ = w.flush();
    status
}

/// Runs parsed arguments in a runtime of its own.
fn run_parsed(args: &Args, out: &mut (dyn Write + Send), err: &mut (dyn Write + Send)) -> u8 {
    // One thread is plenty for one client connection.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = writeln!(err, "lbctl: cannot start the async runtime: {e}");
            return EXIT_REJECTED;
        }
    };
    runtime.block_on(execute(args, out, err))
}

/// Rules across arguments that clap cannot express. Checked before
/// connecting because the daemon would refuse the call anyway, and a usage
/// error can say which option to fix.
fn check(args: &Args) -> Result<(), clap::Error> {
    if args.api.len() > 1 {
        let alone = match &args.command {
            Command::Stats(s) if s.watch.is_some() => Some("stats --watch"),
            Command::Completions { .. } => Some("completions"),
            Command::Man { .. } => Some("man"),
            _ => None,
        };
        if let Some(what) = alone {
            let mut cmd = Args::command();
            return Err(cmd.error(
                ErrorKind::ArgumentConflict,
                format!("--api is given more than once: `lbctl {what}` works on one node only"),
            ));
        }
    }
    if let Command::Health(args::HealthCommand::Set(h)) = &args.command
        && let Err(e) = health::request(h)
    {
        return Err(Args::command().error(ErrorKind::InvalidValue, e));
    }
    if let Command::Route(r) = &args.command {
        if r.vip.address.is_ipv4() != r.client.is_ipv4() {
            return Err(route_usage(
                ErrorKind::ArgumentConflict,
                format!(
                    "client {} and VIP {} are of different address families",
                    r.client, r.vip
                ),
            ));
        }
        match (r.vip.port, r.dport) {
            (0, None) => {
                return Err(route_usage(
                    ErrorKind::MissingRequiredArgument,
                    format!(
                        "{} serves all ports: give the flow's destination port with --dport N",
                        r.vip
                    ),
                ));
            }
            (p, Some(d)) if p != 0 && p != d => {
                return Err(route_usage(
                    ErrorKind::ArgumentConflict,
                    format!("--dport {d} contradicts the port of VIP {}", r.vip),
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// A usage error that shows `lbctl route`'s usage line, as clap's own
/// errors for that command do.
fn route_usage(kind: ErrorKind, msg: String) -> clap::Error {
    let mut cmd = Args::command();
    // Building fills in the subcommands' full names ("lbctl route").
    cmd.build();
    match cmd.find_subcommand_mut("route") {
        Some(route) => route.error(kind, msg),
        None => cmd.error(kind, msg),
    }
}

/// Runs parsed arguments and reports a failure as one line on `err`.
async fn execute(args: &Args, out: &mut (dyn Write + Send), err: &mut (dyn Write + Send)) -> u8 {
    if let Command::Apply(a) = &args.command {
        return apply::run(args, a, out, err).await;
    }
    if args.api.len() > 1 {
        return nodes::run(args, out, err).await;
    }
    match commands::run(args, out).await {
        Ok(()) => 0,
        // The reader went away (`lbctl stats --watch | head`): it has what
        // it wanted, which is not a failure.
        Err(CliError::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => 0,
        Err(e) => {
            let mut line = e.line();
            // Under TLS 1.3 a daemon that requires client certificates
            // refuses one without only after the handshake, by closing the
            // connection under the first call: say what is likely missing.
            if e.is_transport() && args.ca.is_some() && args.cert.is_none() {
                line.push_str(
                    " (does the daemon require a client certificate? give --cert and --key)",
                );
            }
            let _ = writeln!(err, "lbctl: {line}");
            let _ = err.flush();
            e.exit_code()
        }
    }
}

/// Why a command failed after its arguments parsed.
#[derive(Debug)]
enum CliError {
    /// Reaching the daemon failed.
    Connect(ClientError),
    /// The daemon answered with an error status.
    Status(Status),
    /// The daemon answered something the API says it never sends.
    BadResponse(String),
    /// Writing the output failed.
    Output(io::Error),
}

impl From<Status> for CliError {
    fn from(s: Status) -> Self {
        CliError::Status(s)
    }
}

impl CliError {
    /// The text after `lbctl: `.
    fn line(&self) -> String {
        match self {
            CliError::Connect(e) => one_line(&e.to_string()),
            CliError::Status(s) => status_line(s),
            CliError::BadResponse(m) => format!("unexpected answer from lb-daemon: {m}"),
            CliError::Output(e) => format!("cannot write output: {e}"),
        }
    }

    /// A status the client made from a transport failure during a call
    /// (the daemon's own statuses never carry a source error).
    fn is_transport(&self) -> bool {
        matches!(self, CliError::Status(s) if std::error::Error::source(s).is_some())
    }

    fn exit_code(&self) -> u8 {
        match self {
            CliError::Connect(e) if e.is_usage() => EXIT_USAGE,
            CliError::Connect(_) => EXIT_CONNECT,
            // UNAVAILABLE is the daemon starting or stopping: as good as
            // unreachable, and retrying is the answer to both.
            CliError::Status(s) if s.code() == Code::Unavailable => EXIT_CONNECT,
            e if e.is_transport() => EXIT_CONNECT,
            CliError::Status(_) | CliError::BadResponse(_) | CliError::Output(_) => EXIT_REJECTED,
        }
    }
}

/// The canonical gRPC name of a status code (`NOT_FOUND`), as grpcurl and
/// the gRPC documentation spell it.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// `CODE_NAME: message` for a status, on one line. A status made on the
/// client side from a transport failure carries its cause as a source,
/// which is appended since its message alone is often just "transport
/// error".
pub fn status_line(status: &Status) -> String {
    let mut msg = one_line(status.message());
    if let Some(source) = std::error::Error::source(status) {
        let cause = one_line(&error_chain(source));
        if cause.starts_with(&msg) {
            // The cause chain already begins with the message.
            msg = cause;
        } else if !cause.is_empty() && !msg.contains(&cause) {
            msg = if msg.is_empty() {
                cause
            } else {
                format!("{msg}: {cause}")
            };
        }
    }
    let name = code_name(status.code());
    if msg.is_empty() {
        name.to_owned()
    } else {
        format!("{name}: {msg}")
    }
}

/// The promise is one line per error, whatever the daemon put in its
/// message.
fn one_line(s: &str) -> String {
    s.split(['\n', '\r'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests;
