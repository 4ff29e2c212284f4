//! One module per job.

pub mod reencrypt;
pub mod refresh;
pub mod sweep;

/// Why a run failed. The text is for the log; it never carries a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct JobError(pub String);

impl JobError {
    pub fn new(message: impl std::fmt::Display) -> Self {
        Self(message.to_string())
    }
}
