//! Shared httpscale building blocks, split along the data flow:
//!
//! - pure: the upstream CRD spec types ([`spec`]), host and path matching ([`host`]), model patterns
//!   ([`model`]), the normalised route ([`route`]) and the routing table over it ([`table`]), the standalone
//!   routes file ([`standalone`]), the indexes derived from watched objects ([`index`]), per-route counts and
//!   the `/queue` wire type ([`queue`]), Go-style durations ([`duration`]) and setting parsers ([`settings`]);
//! - with a clock or I/O: readiness gates that hold requests ([`gate`], async), watch events turned into steps
//!   ([`watch`]), the process shutdown signal ([`shutdown`]), what the binaries do to start ([`startup`]:
//!   configuration, routes file, listeners, exit codes), log set-up ([`telemetry`]), the small
//!   admin/metrics listener every binary serves ([`admin`]) and its exposition formats ([`exposition`]),
//!   OpenTelemetry traces and OTLP metrics ([`otel`]), and TLS: policy, certificates by SNI with reload,
//!   trust toward backends ([`tls`]).

pub mod admin;
pub mod duration;
pub mod exposition;
pub mod gate;
pub mod host;
pub mod index;
pub mod listener;
pub mod model;
pub mod otel;
pub mod queue;
pub mod route;
pub mod settings;
pub mod shutdown;
pub mod spec;
pub mod standalone;
pub mod startup;
pub mod table;
pub mod target;
pub mod telemetry;
pub mod tls;
pub mod watch;

pub use duration::{GoDuration, parse_go_duration};
pub use route::{Route, RouteKey, Target};
pub use shutdown::Shutdown;
pub use table::RoutingTable;
