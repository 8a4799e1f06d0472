//! gRPC server reflection (`grpc.reflection.v1` and `v1alpha`), as upstream's scaler registers it: clients such
//! as `grpcurl list` / `describe` discover `externalscaler.ExternalScaler` and `grpc.health.v1.Health` without
//! the proto file. The descriptors are the committed, test-checked [`proto::FILE_DESCRIPTOR_SET`] and
//! tonic-health's own; both reflection versions serve the same sets (grpcurl and older grpc clients ask v1alpha).

use tonic_reflection::server::{Builder, v1, v1alpha};

use crate::proto;

/// The two reflection services, or `None` (logged) if the built-in descriptor sets do not decode, which the
/// scaler's tests rule out; the scaler then serves without reflection rather than not at all.
pub fn services() -> Option<(
    v1::ServerReflectionServer<impl v1::ServerReflection>,
    v1alpha::ServerReflectionServer<impl v1alpha::ServerReflection>,
)> {
    let builder = || {
        Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    match (builder().build_v1(), builder().build_v1alpha()) {
        (Ok(v1), Ok(v1alpha)) => Some((v1, v1alpha)),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(cause = %e, "gRPC server reflection disabled: a built-in descriptor set does not decode");
            None
        }
    }
}
