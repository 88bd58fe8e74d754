//! Generated code of the shim's own ttrpc service (proto/carapace/shim/v1).

#[allow(warnings, missing_docs, clippy::all)]
pub mod io {
    include!(concat!(env!("OUT_DIR"), "/io/io.rs"));
}

#[allow(warnings, missing_docs, clippy::all)]
pub mod io_ttrpc {
    include!(concat!(env!("OUT_DIR"), "/io/io_ttrpc.rs"));
}
