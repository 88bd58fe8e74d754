// Shared by the build scripts of the crates that serve or call our own
// ttrpc services (`include!`d from their build.rs): compiles one file under
// proto/ with the ttrpc code generator into OUT_DIR/<name>/. The generated
// code is built, never committed.

/// Generates `<OUT_DIR>/<name>/<name>.rs` and `<name>_ttrpc.rs` from
/// `proto/<file>` (async client and server).
fn ttrpc_codegen(file: &str, name: &str) {
    let proto_root = std::path::PathBuf::from("../proto");
    let input = proto_root.join(file);
    println!("cargo:rerun-if-changed={}", input.display());
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR is set by cargo"))
        .join(name);
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
        .unwrap_or_else(|e| panic!("generate the ttrpc code of {file}: {e}"));
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
