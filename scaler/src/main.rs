//! `scaler`: parses the configuration, sets up logging and serves KEDA until SIGTERM/SIGINT.
//! Exit codes: 0 after a clean shutdown, 64 for configuration errors, 1 for anything else.

use std::process::ExitCode;

use clap::Parser;
use httpscale_core::Shutdown;
use httpscale_core::telemetry::init_logging;
use httpscale_scaler::{Config, start};

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
    let config = match config.validate() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("scaler: invalid configuration: {e}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    init_logging(config.log_format, &config.log_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("scaler: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let shutdown = Shutdown::new();
        tokio::spawn(shutdown.clone().trigger_on_signals());
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
            Err(e) => {
                tracing::error!("{e}");
                eprintln!("scaler: {e}");
                ExitCode::from(if e.is_config() { EX_CONFIG } else { 1 })
            }
        }
    })
}
