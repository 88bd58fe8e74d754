//! Generated code of the admin ttrpc service (proto/carapace/images/v1).

#[allow(warnings, missing_docs, clippy::all)]
pub mod images {
    include!(concat!(env!("OUT_DIR"), "/images/images.rs"));
}

#[allow(warnings, missing_docs, clippy::all)]
pub mod images_ttrpc {
    include!(concat!(env!("OUT_DIR"), "/images/images_ttrpc.rs"));
}
