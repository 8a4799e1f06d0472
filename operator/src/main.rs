//! `operator`: reconciles HTTPScaledObjects into KEDA ScaledObjects until SIGTERM/SIGINT.
//! `operator crds` prints the CustomResourceDefinitions. Exit codes: 0 after a clean shutdown, 64 for
//! configuration errors, 1 for anything else (including a lost leader election, as controller-runtime does).

use std::process::ExitCode;

use clap::Parser;
use httpscale_core::Shutdown;
use httpscale_core::telemetry::init_logging;
use httpscale_operator::config::Command;
use httpscale_operator::{Config, run};

const EX_CONFIG: u8 = 64;

fn main() -> ExitCode {
    let config = match Config::try_parse() {
        Ok(c) => c,
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(EX_CONFIG);
        }
    };
    if let Some(Command::Crds) = config.command {
        return match httpscale_core::spec::crds_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("operator: cannot render the CRDs: {e}");
                ExitCode::FAILURE
            }
        };
    }
    init_logging(config.log_format, &config.log_level);
    let resolved = match config.resolve() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("operator: invalid configuration: {e}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("operator: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let shutdown = Shutdown::new();
        tokio::spawn(shutdown.clone().trigger_on_signals());
        let client = match kube::Client::try_default().await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(cause = %e, "cannot configure the Kubernetes client");
                return ExitCode::FAILURE;
            }
        };
        match run(config, resolved, client, shutdown).await {
            Ok(()) => {
                tracing::info!("operator stopped");
                ExitCode::SUCCESS
            }
            Err(e) => {
                tracing::error!("{e}");
                ExitCode::FAILURE
            }
        }
    })
}
