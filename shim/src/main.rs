//! `carapace-shim`: the per-container shim binary. Installed as
//! `containerd-shim-carapace-v2` it is also a containerd runtime
//! (`io.containerd.carapace.v2`).

use carapace_shim::serve;
use carapace_shim::service::Service;

/// The runtime ID containerd knows this shim by.
const RUNTIME_ID: &str = "io.containerd.carapace.v2";

fn main() {
    if std::env::args().any(|a| a == "--version" || a == "-version" || a == "-v") {
        println!("carapace-shim {}", env!("CARGO_PKG_VERSION"));
        return;
    }
    // One thread: a shim per container is paid hundreds of times per node.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("carapace-shim: start async runtime: {e}");
            std::process::exit(1);
        }
    };
    let args: Vec<_> = std::env::args_os().collect();
    let flags = match containerd_shim::parse(&args[1..]) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("carapace-shim: {e}");
            std::process::exit(1);
        }
    };
    if serve::is_server_mode(&flags) {
        let code = rt.block_on(serve::serve(RUNTIME_ID, flags));
        std::process::exit(code);
    }
    // start, delete and -info: containerd-shim's bootstrap.
    rt.block_on(containerd_shim::asynchronous::run::<Service>(
        RUNTIME_ID, None,
    ));
}
