//! `carapace`: the CRI daemon. Not built yet (issue: CRI daemon and pod
//! sandboxes); until then it refuses to run rather than pretending to serve.

fn main() {
    if std::env::args().any(|a| a == "--version" || a == "-v") {
        println!("carapace {}", env!("CARGO_PKG_VERSION"));
        return;
    }
    eprintln!("carapace: the CRI daemon is not implemented yet");
    std::process::exit(1);
}
