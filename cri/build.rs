//! Compiles the daemon's admin ttrpc service
//! (proto/carapace/images/v1/images.proto, used by `carapace image`) with
//! the ttrpc code generator; the generated code is built, never committed.

include!("../proto/ttrpc_codegen.rs");

fn main() {
    println!("cargo:rerun-if-changed=../proto/ttrpc_codegen.rs");
    ttrpc_codegen("carapace/images/v1/images.proto", "images");
}
