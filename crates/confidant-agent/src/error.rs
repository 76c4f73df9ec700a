//! The agent's errors.

/// A result of the agent.
pub type Result<T, E = AgentError> = std::result::Result<T, E>;

/// What went wrong, saying what was expected and what was found.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A cryptographic operation failed.
    #[error("crypto: {0}")]
    Crypto(String),
    /// A file system or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The image's configuration or the workload's parameters cannot run as asked.
    #[error("{0}")]
    Config(String),
    /// A mount or unmount failed.
    #[error("{0}")]
    Mount(String),
    /// An image operation failed.
    #[error(transparent)]
    Image(#[from] confidant_image::Error),
}

impl AgentError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> AgentError {
        AgentError::Io {
            what: what.into(),
            source,
        }
    }
}
