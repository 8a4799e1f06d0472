//! Shared httpscale building blocks, split along the data flow: the upstream CRD spec types ([`spec`]), the
//! normalised route ([`route`]) and the routing table over it ([`table`]), the standalone routes file
//! ([`standalone`]), readiness gates that hold requests ([`gate`]), per-route counts and the `/queue` wire
//! type ([`queue`]), Go-style durations ([`duration`]), the process shutdown signal ([`shutdown`]) and log
//! set-up ([`telemetry`]), and the small admin/metrics listener every binary serves ([`admin`]). Everything
//! here except `admin`, `shutdown` and `telemetry` is pure.

pub mod admin;
pub mod cli;
pub mod cluster;
pub mod duration;
pub mod gate;
pub mod queue;
pub mod route;
pub mod settings;
pub mod shutdown;
pub mod spec;
pub mod standalone;
pub mod table;
pub mod telemetry;

pub use duration::{GoDuration, parse_go_duration};
pub use route::{Route, RouteKey, Target};
pub use shutdown::Shutdown;
pub use table::RoutingTable;
