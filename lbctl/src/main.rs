//! `lbctl`: the operator CLI of the lb load balancer. Everything lives in
//! [`lbctl::cli`], so tests can run it without spawning a process.

use std::process::ExitCode;

fn main() -> ExitCode {
    lbctl::run(std::env::args_os())
}
