//! Generated gRPC bindings for KEDA's external scaler protocol (`proto/externalscaler.proto`).
//! Do not edit `externalscaler.rs`: regenerate it (see `tests/generated.rs`), which checks it is current.

#[allow(clippy::all, clippy::pedantic, deprecated, unreachable_pub, missing_docs)]
pub mod externalscaler {
    include!("externalscaler.rs");
}
