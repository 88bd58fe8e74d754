//! Generates the CRI v1 types and services from proto/runtime/v1/api.proto
//! (kubernetes/cri-api, see proto/README.md) with tonic's prost generator;
//! the generated code is built, never committed.
//!
//! Every type derives serde (the daemon's store keeps CRI configs in its
//! records), and every message takes `#[serde(default)]`: a record written
//! before a field existed still reads, with the field at its zero value,
//! as protobuf itself would read it.
//!
//! Debian's protoc (3.21) predates the `debug_redact` field option the
//! file puts on AuthConfig's secrets; it only changes how Go prints them,
//! so the copy compiled here is the file without it. AuthConfig's Debug
//! is left out instead (below): a secret never reaches a log through it.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let src = "proto/runtime/v1/api.proto";
    println!("cargo:rerun-if-changed={src}");
    let text = std::fs::read_to_string(src)?.replace(" [debug_redact = true]", "");
    let out = PathBuf::from(std::env::var("OUT_DIR")?).join("proto");
    std::fs::create_dir_all(out.join("runtime/v1"))?;
    std::fs::write(out.join("runtime/v1/api.proto"), text)?;
    tonic_prost_build::configure()
        .type_attribute(".", "#[derive(serde::Serialize, serde::Deserialize)]")
        .message_attribute(".", "#[serde(default)]")
        .skip_debug(["runtime.v1.AuthConfig"])
        // Environment values are bytes since 1.34.9; records written when
        // they were strings keep reading (see `env_value`).
        .field_attribute(
            "runtime.v1.KeyValue.value",
            "#[serde(with = \"crate::env_value\")]",
        )
        .compile_protos(&[out.join("runtime/v1/api.proto")], &[out])?;
    Ok(())
}
