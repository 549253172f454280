//! Compiles the protobuf definitions with a vendored `protoc`, so no system protoc is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; nothing else reads the environment concurrently.
    unsafe { std::env::set_var("PROTOC", protoc) };

    let protos = [
        "proto/coffer/v1/records.proto",
        "proto/coffer/v1/peer.proto",
        "proto/coffer/v1/api.proto",
    ];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    tonic_prost_build::configure()
        // BTreeMap keeps encodings (and so snapshots and trace hashes) deterministic.
        .btree_map(".")
        // Messages that carry plaintext values or key material get hand-written, redacting
        // Debug impls in lib.rs instead of derived ones.
        .skip_debug([
            ".coffer.v1.PutSecretValueRequest",
            ".coffer.v1.GetSecretValueResponse",
            ".coffer.v1.LocalKeyVersion",
            ".coffer.v1.CreateTokenResponse",
        ])
        .compile_protos(&protos, &["proto"])?;
    Ok(())
}
