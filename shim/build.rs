//! Compiles the shim's own ttrpc service (proto/carapace/shim/v1/io.proto)
//! with the ttrpc code generator; the generated code is built, never
//! committed.

include!("../proto/ttrpc_codegen.rs");

fn main() {
    println!("cargo:rerun-if-changed=../proto/ttrpc_codegen.rs");
    ttrpc_codegen("carapace/shim/v1/io.proto", "io");
}
