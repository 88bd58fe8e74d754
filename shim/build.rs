//! Compiles the shim's own ttrpc service (proto/carapace/shim/v1/io.proto)
//! with the ttrpc code generator; the generated code is built, never
//! committed.

include!("../proto/ttrpc_codegen.rs");

fn main() {
    println!("cargo:rerun-if-changed=../proto/ttrpc_codegen.rs");
    ttrpc_codegen("carapace/shim/v1/io.proto", "io");
    // A position-dependent executable: the dynamic loader has no pointers
    // to relocate in it, so its read-only-after-relocation data stays
    // shared page cache instead of becoming ~300 KiB of private memory in
    // every shim. The shim gives up ASLR of its own image (libraries,
    // heap and stack stay randomized), as Go's containerd shims do.
    println!("cargo:rustc-link-arg-bins=-no-pie");
}
