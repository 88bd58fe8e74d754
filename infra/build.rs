//! The infra process runs in an empty root, so it must need nothing from
//! it: no dynamic loader, no libc. Link it as a static, freestanding
//! executable with our own `_start`.

fn main() {
    for arg in ["-nostartfiles", "-nostdlib", "-static", "-no-pie"] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
}
