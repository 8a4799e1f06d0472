//! `interceptor`: see [`httpscale_interceptor::main_with_args`].

use std::process::ExitCode;

fn main() -> ExitCode {
    httpscale_interceptor::main_with_args(std::env::args_os())
}
