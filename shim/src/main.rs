//! `carapace-shim`: the per-container shim. Not built yet (issue: per-container
//! shim); until then it refuses to run rather than pretending to work.

fn main() {
    if std::env::args().any(|a| a == "--version" || a == "-v") {
        println!("carapace-shim {}", env!("CARGO_PKG_VERSION"));
        return;
    }
    eprintln!("carapace-shim: not implemented yet");
    std::process::exit(1);
}
