//! The listener settings every binary reads (flattened into each one's configuration).

use std::time::Duration;

use crate::settings::duration;

/// The time limits of one listener; `None` disables one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// From accept to the end of the first request head (HTTP/1) or the preface (HTTP/2); from the first byte
    /// to the end of the head for the next requests on a kept-alive connection.
    pub header_timeout: Option<Duration>,
    /// A kept-alive HTTP/1 connection waiting for its next request, or an HTTP/2 connection with no open
    /// stream, is closed after this.
    pub idle_timeout: Option<Duration>,
    /// Open client connections; past it a new connection gets `503` and is closed.
    pub max_connections: usize,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ListenerArgs {
    /// A client must complete its request head (the HTTP/2 preface) within this time of connecting, and each
    /// later request head within this time of its first byte; otherwise the connection is closed. 0 = no limit.
    #[arg(long, env = "HTTPSCALE_HEADER_READ_TIMEOUT", value_name = "HTTPSCALE_HEADER_READ_TIMEOUT", default_value = "30s", value_parser = duration)]
    pub header_read_timeout: Duration,

    /// A kept-alive HTTP/1 connection waiting for its next request, or an HTTP/2 connection with no open
    /// stream, is closed after this. 0 = never.
    #[arg(long, env = "HTTPSCALE_IDLE_TIMEOUT", value_name = "HTTPSCALE_IDLE_TIMEOUT", default_value = "75s", value_parser = duration)]
    pub idle_timeout: Duration,

    /// Open connections on each admin, metrics or probe listener; past it a new one gets 503 and is closed.
    #[arg(
        long,
        env = "HTTPSCALE_ADMIN_MAX_CONNECTIONS",
        value_name = "HTTPSCALE_ADMIN_MAX_CONNECTIONS",
        default_value = "256"
    )]
    pub admin_max_connections: usize,
}

fn enabled(d: Duration) -> Option<Duration> {
    (!d.is_zero()).then_some(d)
}

impl ListenerArgs {
    /// The limits of a listener that admits `max_connections`.
    pub fn limits(&self, max_connections: usize) -> Limits {
        Limits {
            header_timeout: enabled(self.header_read_timeout),
            idle_timeout: enabled(self.idle_timeout),
            max_connections: max_connections.max(1),
        }
    }

    /// The limits of an admin, metrics or probe listener.
    pub fn admin(&self) -> Limits {
        self.limits(self.admin_max_connections)
    }
}
