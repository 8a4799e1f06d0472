//! The committed gRPC bindings and descriptor set match `proto/externalscaler.proto`. They are generated in pure
//! Rust (protox + tonic-prost-build), so neither building nor this check needs `protoc`.
//! Regenerate with: `HTTPSCALE_UPDATE_GENERATED=1 cargo test -p httpscale-scaler --test generated`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use prost::Message;

const REGENERATE: &str = "run HTTPSCALE_UPDATE_GENERATED=1 cargo test -p httpscale-scaler --test generated";

/// Writes `generated` to `committed` when regenerating, otherwise asserts the committed file holds it.
fn check(committed: &Path, generated: &[u8]) {
    if std::env::var_os("HTTPSCALE_UPDATE_GENERATED").is_some() {
        std::fs::write(committed, generated).unwrap();
        return;
    }
    let current = std::fs::read(committed).unwrap_or_default();
    assert!(current == generated, "{} is out of date; {REGENERATE}", committed.display());
}

#[test]
fn proto_bindings_and_descriptor_set_match_the_proto() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let fds = protox::compile([root.join("proto/externalscaler.proto")], [root.join("proto")]).unwrap();
    // The encoded descriptor set the scaler's reflection service serves (comments included, for `grpcurl describe`).
    check(&root.join("src/proto/externalscaler.bin"), &fds.encode_to_vec());
    let out = tempfile::tempdir().unwrap();
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .emit_rerun_if_changed(false)
        .out_dir(out.path())
        .compile_fds(fds)
        .unwrap();
    let generated = std::fs::read(out.path().join("externalscaler.rs")).unwrap();
    check(&root.join("src/proto/externalscaler.rs"), &generated);
}
