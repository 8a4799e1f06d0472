//! Everything httpscale's tests share, in one place (dev-only, never published):
//!
//! - [`wait`]: [`eventually`] and [`eventually_some`], bounded polling instead of sleeps;
//! - [`net`]: [`Reserved`] ports, bound but not listening, for backends and programs that start later, so no
//!   other test can take the port in between (no bind-then-drop race);
//! - [`backend`]: real HTTP backends on loopback that record what they receive;
//! - [`client`]: small HTTP client helpers and the interceptor's `/queue`;
//! - [`interceptor`] and [`scaler`]: the interceptor and scaler started in-process on ports the OS picks;
//! - [`process`]: child processes stopped when dropped, and the real binaries, whose bound ports are read
//!   from their JSON start-up log line;
//! - [`kmock`]: the in-memory Kubernetes API server (`tests/peers/kmock_apiserver.py`);
//! - [`otelcol`]: the OpenTelemetry Collector, receiving what the binaries export over OTLP;
//! - [`structure`]: the workspace's structure checks (no import cycles, no long functions);
//! - [`tls`]: a CA made in the test, certificates it signs, rustls clients and an https backend.
//!
//! Helpers fail the calling test by panicking, as test code does.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod backend;
pub mod client;
pub mod interceptor;
pub mod kmock;
pub mod net;
pub mod otelcol;
pub mod process;
pub mod scaler;
pub mod structure;
pub mod tls;
pub mod wait;

pub use backend::{
    Backend, Body, Seen, backend, backend_on, channel_body, delayed, full, named_backend, streaming_body,
};
pub use client::{client, concurrency, get, h2_client, queue, raw, raw_until_closed, request, send};
pub use interceptor::{Harness, interceptor, interceptor_with};
pub use kmock::Kmock;
pub use net::Reserved;
pub use process::{Killed, Spawned, repo};
pub use wait::{eventually, eventually_some};
