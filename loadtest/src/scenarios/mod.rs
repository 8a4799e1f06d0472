//! The benchmark scenarios; each is one `loadtest` subcommand.

pub mod ceiling;
pub mod cold_burst;
pub mod instructions;
pub mod many_routes;
pub mod overhead;
pub mod sigterm;
pub mod streaming;
