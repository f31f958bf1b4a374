//! `lb-daemon`: runs the balancer (`run`), removes it (`teardown`), and sets
//! up the backend side (`decap`). Thin: the work is in the library.

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let args = lb_daemon::daemon::Args::parse();
    lb_daemon::daemon::init_tracing(args.log_format);
    match lb_daemon::daemon::main(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(cause = %format!("{e:#}"), "lb-daemon failed");
            eprintln!("lb-daemon: {e:#}");
            ExitCode::FAILURE
        }
    }
}
