//! The gRPC edge: how the daemon's errors become statuses (the one place
//! a kind of failure becomes a code), and the answers every CRI service
//! shares.

use tonic::{Code, Status};

use crate::container::spec::SpecError;
use crate::container::ContainerError;
use crate::error_kind::{ErrorKind, Kinded};
use crate::image::ImageError;
use crate::pod::PodError;
use crate::sandbox::SandboxError;
use crate::stats::StatsError;

/// The gRPC code of a kind of failure.
pub fn code(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::InvalidArgument => Code::InvalidArgument,
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::AlreadyExists => Code::AlreadyExists,
        ErrorKind::FailedPrecondition => Code::FailedPrecondition,
        ErrorKind::Unauthenticated => Code::Unauthenticated,
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::DeadlineExceeded => Code::DeadlineExceeded,
        ErrorKind::ResourceExhausted => Code::ResourceExhausted,
        ErrorKind::Internal => Code::Internal,
    }
}

/// The status a client sees for `e`: its kind's code and its message.
pub fn status(e: &impl Kinded) -> Status {
    Status::new(code(e.kind()), e.to_string())
}

/// `?` on a domain error in a handler answers with [`status`].
macro_rules! into_status {
    ($($t:ty),*) => {$(
        impl From<$t> for Status {
            fn from(e: $t) -> Self {
                status(&e)
            }
        }
    )*};
}
into_status!(
    SandboxError,
    ContainerError,
    ImageError,
    SpecError,
    StatsError,
    PodError
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shim_client::ShimError;

    /// The code follows the kind through every wrapping, and a shim that
    /// did not answer in time is DeadlineExceeded, not Internal.
    #[test]
    fn statuses_take_their_code_from_the_kind_of_the_innermost_failure() {
        let table: Vec<(Status, Code)> = vec![
            (
                PodError::Container(ContainerError::NotFound("c".into())).into(),
                Code::NotFound,
            ),
            (
                PodError::Sandbox(SandboxError::InvalidArgument("x".into())).into(),
                Code::InvalidArgument,
            ),
            (
                ContainerError::Spec(SpecError::NoCommand).into(),
                Code::InvalidArgument,
            ),
            (
                ContainerError::Shim(ShimError::Timeout { method: "Start" }).into(),
                Code::DeadlineExceeded,
            ),
            (
                SandboxError::Shim(ShimError::Timeout { method: "Create" }).into(),
                Code::DeadlineExceeded,
            ),
            (StatsError::NotReady("p".into()).into(), Code::Unavailable),
        ];
        for (status, want) in table {
            assert_eq!(status.code(), want, "{}", status.message());
        }
    }
}
