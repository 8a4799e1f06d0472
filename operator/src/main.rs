//! `operator`: reconciles HTTPScaledObjects into KEDA ScaledObjects until SIGTERM/SIGINT.
//! `operator crds` prints the CustomResourceDefinitions. Exit codes: 0 after a clean shutdown, 64 for
//! configuration errors, 1 for anything else (including a lost leader election, as controller-runtime does).

use std::process::ExitCode;

use httpscale_core::startup;
use httpscale_operator::config::Command;
use httpscale_operator::{Config, run};

fn main() -> ExitCode {
    let config = match startup::parse("operator", std::env::args_os(), Ok::<Config, std::convert::Infallible>) {
        Ok(c) => c,
        Err(code) => return code,
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
    config.log.init();
    let resolved = match config.resolve() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("operator: invalid configuration: {e}");
            return ExitCode::from(startup::EX_CONFIG);
        }
    };
    startup::run("operator", Some(2), |shutdown| async move {
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
