//! State errors to gRPC status codes: one code per failure class, never a
//! catch-all (Katran's CANCELLED-for-everything is what we avoid).

use tonic::{Code, Status};

use crate::state::StateError;

/// The precise status for a state error.
pub fn to_status(e: StateError) -> Status {
    let code = match &e {
        StateError::InvalidArgument(_) => Code::InvalidArgument,
        StateError::NotFound(_) => Code::NotFound,
        StateError::AlreadyExists(_) => Code::AlreadyExists,
        StateError::ResourceExhausted(_) => Code::ResourceExhausted,
        StateError::FailedPrecondition(_) => Code::FailedPrecondition,
        StateError::Internal(_) => Code::Internal,
    };
    Status::new(code, e.message().to_string())
}

/// An INVALID_ARGUMENT status.
pub fn invalid(msg: impl Into<String>) -> Status {
    Status::invalid_argument(msg)
}
