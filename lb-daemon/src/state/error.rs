//! Why a state operation was refused or failed. One variant per gRPC status
//! code the API answers with, so the API layer maps errors without guessing
//! (Katran's habit of answering everything with CANCELLED is what we avoid).

use crate::{
    dataplane::DataplaneError,
    vip::{VipFlagError, VipSpecError},
};

/// A refused or failed state operation. Except for [`Self::Internal`], a
/// refused operation changed nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// The request is malformed or self-contradictory (bad address, weight out
    /// of range, unknown flag, a backend listed twice).
    #[error("{0}")]
    InvalidArgument(String),
    /// The VIP or backend does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The VIP or backend exists already.
    #[error("{0}")]
    AlreadyExists(String),
    /// No VIP index, backend slot or ring room is left.
    #[error("{0}")]
    ResourceExhausted(String),
    /// The request is well formed but conflicts with other state (e.g. a
    /// backend address that is another VIP's address), or the stored state
    /// does not fit the data plane.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The data plane or the state file failed; the operation was rolled back.
    #[error("{0}")]
    Internal(String),
}

impl StateError {
    /// The gRPC status code name this error maps to.
    pub const fn code_name(&self) -> &'static str {
        match self {
            StateError::InvalidArgument(_) => "INVALID_ARGUMENT",
            StateError::NotFound(_) => "NOT_FOUND",
            StateError::AlreadyExists(_) => "ALREADY_EXISTS",
            StateError::ResourceExhausted(_) => "RESOURCE_EXHAUSTED",
            StateError::FailedPrecondition(_) => "FAILED_PRECONDITION",
            StateError::Internal(_) => "INTERNAL",
        }
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        match self {
            StateError::InvalidArgument(m)
            | StateError::NotFound(m)
            | StateError::AlreadyExists(m)
            | StateError::ResourceExhausted(m)
            | StateError::FailedPrecondition(m)
            | StateError::Internal(m) => m,
        }
    }

    /// A data-plane failure, with what we were doing and the whole cause chain
    /// (the API carries a string, so the chain must be flattened here).
    pub(crate) fn dataplane(context: &str, e: &DataplaneError) -> Self {
        StateError::Internal(format!("{context}: {}", chain(e)))
    }
}

/// `e` and its sources, joined with ": ".
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let s_text = s.to_string();
        // thiserror's `{source}` in a message would repeat the cause.
        if !out.ends_with(&s_text) {
            out.push_str(": ");
            out.push_str(&s_text);
        }
        cur = s.source();
    }
    out
}

impl From<VipSpecError> for StateError {
    fn from(e: VipSpecError) -> Self {
        StateError::InvalidArgument(e.to_string())
    }
}

impl From<VipFlagError> for StateError {
    fn from(e: VipFlagError) -> Self {
        StateError::InvalidArgument(e.to_string())
    }
}
