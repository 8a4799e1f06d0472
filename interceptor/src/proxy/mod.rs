//! The proxy as a pipeline of named `tower` layers, outermost first ([`stack`] assembles them):
//!
//! 1. [`metrics`]: records `interceptor_request_count_total` and `_duration_seconds` when the response
//!    ends (or 499 if the client leaves first), and logs the request when asked to.
//! 2. [`rescue`]: the one place where a failure ([`error`]) becomes an HTTP answer; adds `Connection: close`
//!    while draining.
//! 3. [`route`]: finds the route (404 if none, never forwarded), by the model the body names where a rule
//!    asks for it, and applies the request deadline.
//! 4. [`statics`]: answers requests that match a route's `staticRoutes` (always, or while the backend is not
//!    ready; a ready backend gets them forwarded without counting, as upstream).
//! 5. [`count`]: counts the request for the scaler before anything waits, and keeps it counted until the
//!    response body ends.
//! 6. [`keepalive`]: for a held request that asks for an SSE stream on a route that opts in, sends the head
//!    and SSE comments while the backend loads, then splices its stream in.
//! 7. [`cold_start`]: passes requests for a ready backend straight on; otherwise serves the placeholder,
//!    refuses over the hold cap, or holds the request unsent until the backend is ready (or the fallback).
//! 8. [`forward`]: sends the request upstream over a pooled connection and streams the answer back.
//!
//! Shared by the layers: [`types`] (request extensions), [`body`] (the response body that carries counts
//! and records to its end), [`fixed`] (placeholder and static answers), [`headers`] (proxy header rules),
//! [`forwarded`] (what the backend is told about the client, and whom to believe), [`peek`] (the request
//! body, readable ahead of forwarding), [`pace`] (how long a client may take over its body), [`model`] (what
//! inference requests name) and [`catalog`] (the model lists the route layer answers).
//! Every layer is generic over the request body and tested alone on a paused clock.

pub mod body;
pub mod catalog;
pub mod cold_start;
pub mod count;
pub mod error;
pub mod fixed;
pub mod forward;
pub mod forwarded;
pub mod headers;
pub mod keepalive;
pub mod metrics;
pub mod model;
pub mod pace;
pub mod peek;
pub mod rescue;
pub mod route;
pub mod stack;
pub mod statics;
pub mod types;

#[cfg(test)]
pub mod testing;
