//! `lbctl`: the operator CLI of the lb load balancer. Everything lives in
//! [`lb_daemon::cli`], so tests can run it without spawning a process.

use std::process::ExitCode;

fn main() -> ExitCode {
    lb_daemon::cli::run(std::env::args_os())
}
