//! Compiles the shim's own ttrpc service (proto/carapace/shim/v1/io.proto)
//! with the ttrpc code generator; the generated code is built, never
//! committed.

use std::path::PathBuf;

fn main() {
    let proto_root = PathBuf::from("../proto");
    let input = proto_root.join("carapace/shim/v1/io.proto");
    println!("cargo:rerun-if-changed={}", input.display());
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR is set by cargo")).join("io");
    std::fs::create_dir_all(&out).expect("create the generated code directory");
    ttrpc_codegen::Codegen::new()
        .input(&input)
        .include(&proto_root)
        .rust_protobuf()
        .rust_protobuf_customize(ttrpc_codegen::ProtobufCustomize::default().gen_mod_rs(false))
        .customize(ttrpc_codegen::Customize {
            async_all: true,
            ..Default::default()
        })
        .out_dir(&out)
        .run()
        .expect("generate the carapace.shim.v1 ttrpc code");
    // `include!` refuses inner attributes and inner doc comments: drop them
    // (the including module carries the allows instead).
    for entry in std::fs::read_dir(&out).expect("read the generated code directory") {
        let path = entry.expect("generated file").path();
        if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).expect("read generated code");
            let kept: Vec<&str> = text
                .lines()
                .filter(|l| !l.starts_with("#!") && !l.starts_with("//!"))
                .collect();
            std::fs::write(&path, kept.join("\n")).expect("write generated code");
        }
    }
}
