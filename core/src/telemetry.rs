//! Log set-up shared by every binary: `tracing` to stderr, plain or JSON, filtered by `RUST_LOG` or the
//! upstream `--zap-log-level` value.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (upstream's zap `console` encoder).
    #[default]
    Console,
    /// One JSON object per line (upstream's zap `json` encoder).
    Json,
}

/// Upstream's zap level names map onto tracing levels; a number n >= 1 (zap's -n levels) means debug.
fn level_directive(level: &str) -> &str {
    match level {
        "debug" | "1" | "2" | "3" | "4" | "5" => "debug",
        "warn" | "warning" => "warn",
        "error" | "dpanic" | "panic" | "fatal" => "error",
        "trace" => "trace",
        _ => "info",
    }
}

/// Installs the global subscriber. `RUST_LOG`, if set, wins over `level`.
pub fn init_logging(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level_directive(level)));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    // A second initialisation (tests) keeps the first subscriber.
    let _ = match format {
        LogFormat::Console => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Upstream's zap logging flags, shared by every binary's configuration (`#[command(flatten)]`).
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// Log level (upstream's zap flag): debug, info, warn, error. `RUST_LOG` wins when set.
    #[arg(long = "zap-log-level", env = "HTTPSCALE_LOG_LEVEL", value_name = "LEVEL", default_value = "info")]
    pub level: String,

    /// Log encoding (upstream's zap flag): console or json.
    #[arg(
        long = "zap-encoder",
        env = "HTTPSCALE_LOG_FORMAT",
        value_name = "ENCODER",
        value_enum,
        default_value = "console"
    )]
    pub format: LogFormat,

    /// Accepted for compatibility with upstream's zap flags; has no effect.
    #[arg(long = "zap-time-encoding", hide = true)]
    pub time_encoding: Option<String>,

    /// Accepted for compatibility with upstream's zap flags; has no effect.
    #[arg(long = "zap-stacktrace-level", hide = true)]
    pub stacktrace_level: Option<String>,
}

impl LogArgs {
    pub fn init(&self) {
        init_logging(self.format, &self.level);
    }
}
