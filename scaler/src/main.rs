//! `scaler`: parses the configuration, sets up logging and serves KEDA until SIGTERM/SIGINT.
//! Exit codes: 0 after a clean shutdown, 64 for configuration errors, 1 for anything else.

use std::process::ExitCode;

use httpscale_core::startup;
use httpscale_scaler::{Config, start};

fn main() -> ExitCode {
    let config = match startup::parse("scaler", std::env::args_os(), Config::validate) {
        Ok(c) => c,
        Err(code) => return code,
    };
    config.log.init();
    startup::run("scaler", Some(2), |shutdown| async move {
        match start(config, shutdown).await {
            Ok(running) => {
                tracing::info!(
                    grpc = %running.grpc_addr,
                    metrics = %running.metrics_addr.map(|a| a.to_string()).unwrap_or_else(|| "off".into()),
                    "scaler listening"
                );
                running.wait().await;
                ExitCode::SUCCESS
            }
            Err(e) => e.report(),
        }
    })
}
