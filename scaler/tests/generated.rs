//! The committed gRPC bindings match `proto/externalscaler.proto`. They are generated in pure Rust (protox +
//! tonic-prost-build), so neither building nor this check needs `protoc`.
//! Regenerate with: `HTTPSCALE_UPDATE_GENERATED=1 cargo test -p httpscale-scaler --test generated`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

#[test]
fn proto_bindings_match_the_proto() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let fds = protox::compile([root.join("proto/externalscaler.proto")], [root.join("proto")]).unwrap();
    let out = tempfile::tempdir().unwrap();
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .emit_rerun_if_changed(false)
        .out_dir(out.path())
        .compile_fds(fds)
        .unwrap();
    let generated = std::fs::read_to_string(out.path().join("externalscaler.rs")).unwrap();
    let committed_path = root.join("src/proto/externalscaler.rs");
    if std::env::var_os("HTTPSCALE_UPDATE_GENERATED").is_some() {
        std::fs::write(&committed_path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&committed_path).unwrap_or_default();
    assert!(
        committed == generated,
        "src/proto/externalscaler.rs is out of date; run HTTPSCALE_UPDATE_GENERATED=1 cargo test -p httpscale-scaler --test generated"
    );
}
