//! Generated gRPC bindings for KEDA's external scaler protocol (`proto/externalscaler.proto`).
//! Do not edit `externalscaler.rs` or `externalscaler.bin`: regenerate them (see `tests/generated.rs`), which
//! checks they are current.

#[allow(clippy::all, clippy::pedantic, deprecated, unreachable_pub, missing_docs)]
pub mod externalscaler {
    include!("externalscaler.rs");
}

/// The proto's encoded `FileDescriptorSet` (with its comments), which the scaler's reflection service serves.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!("externalscaler.bin");
