//! What every listener of every binary shares, so no connection lives forever and no listener can starve
//! another: a budget of open connections per listener ([`gate`]: past it a new connection gets `503` and is
//! closed),
//! time limits on the connection itself ([`conn`]: the first byte and the request head, idle keep-alive, an
//! HTTP/2 connection with no open stream), the protocol read from the first bytes within the head timeout
//! (an HTTP/2 client that never finishes its preface is closed), counts of every limit hit with a
//! rate-limited log line ([`stats`], [`collector`]), the settings ([`settings`]), the open-file limit raised to the hard limit at start (as Go does),
//! a listener that stops accepting without resetting the connections the kernel already queued, and the TLS
//! handshake of a TLS listener bounded like the head it precedes ([`tls`]).

pub mod collector;
pub mod conn;
pub mod gate;
pub mod settings;
pub mod stats;
pub mod tls;

pub use collector::LimitsCollector;
pub use conn::{ConnState, Guarded, GuardedBody, RequestGuard};
pub use gate::{
    FILE_RESERVE, Gatekeeper, HELD_RESERVE, MAX_CONNECTIONS, ParkedConn, Permit, Protocol, default_max_connections,
    detect, open_file_limit, raise_open_file_limit,
};
pub use settings::{Limits, ListenerArgs};
pub use stats::{Limit, Stats};

#[cfg(test)]
mod tests;
