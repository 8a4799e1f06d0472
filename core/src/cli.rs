//! The start-up every binary shares: parse and validate the configuration before anything runs (help and
//! version exit 0; a bad setting prints one line naming it and exits 64), then run on a Tokio runtime with the
//! process's one shutdown signal triggered by SIGTERM or SIGINT.

use std::ffi::OsString;
use std::fmt::Display;
use std::future::Future;
use std::process::ExitCode;

use crate::Shutdown;

/// Exit code for configuration errors (BSD `EX_CONFIG`).
pub const EX_CONFIG: u8 = 64;

/// Parses `args` (the first is the program name) and validates the result.
pub fn parse<C: clap::Parser, E: Display>(
    program: &str,
    args: impl IntoIterator<Item = OsString>,
    validate: impl FnOnce(C) -> Result<C, E>,
) -> Result<C, ExitCode> {
    let config = match C::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return Err(if e.use_stderr() { ExitCode::from(EX_CONFIG) } else { ExitCode::SUCCESS });
        }
    };
    validate(config).map_err(|e| {
        eprintln!("{program}: invalid configuration: {e}");
        ExitCode::from(EX_CONFIG)
    })
}

/// Runs `body` on a runtime (`worker_threads: None` = one current thread) with the shutdown signal wired.
pub fn run<F, Fut>(program: &str, worker_threads: Option<usize>, body: F) -> ExitCode
where
    F: FnOnce(Shutdown) -> Fut,
    Fut: Future<Output = ExitCode>,
{
    let runtime = match worker_threads {
        None => tokio::runtime::Builder::new_current_thread().enable_all().build(),
        Some(n) => tokio::runtime::Builder::new_multi_thread().worker_threads(n).enable_all().build(),
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{program}: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let shutdown = Shutdown::new();
        tokio::spawn(shutdown.clone().trigger_on_signals());
        body(shutdown).await
    })
}
