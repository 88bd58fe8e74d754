//! gRPC answers shared by every CRI service.

use tonic::{Response, Status};

/// The honest answer of a call Carapace does not implement yet: never a
/// fake success.
pub fn unimplemented<T>(call: &str) -> Result<Response<T>, Status> {
    Err(Status::unimplemented(format!(
        "carapace does not implement {call} yet"
    )))
}
