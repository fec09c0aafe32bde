//! The one error type of the crate.

use std::path::PathBuf;

/// Everything that can go wrong while reading or writing a tensor file.
///
/// Messages name the file and, where one tensor is at fault, the tensor, so
/// that a user looking at a log line knows where to look.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The operating system refused an operation on `path`.
    #[error("{path}: {source}")]
    Io {
        /// File the operation was about.
        path: PathBuf,
        /// The underlying error (its kind tells "not found", "permission denied", ...).
        #[source]
        source: std::io::Error,
    },
    /// The file's content is not a valid tensor file (or one tensor of it is broken).
    #[error("{path}: {}{message}", tensor.as_ref().map(|t| format!("tensor '{t}': ")).unwrap_or_default())]
    Format {
        /// File the problem was found in.
        path: PathBuf,
        /// The tensor at fault, when the problem is local to one tensor.
        tensor: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// No tensor of that name exists in the file.
    #[error("{path}: no tensor named '{name}'")]
    NotFound {
        /// File that was searched.
        path: PathBuf,
        /// The missing name.
        name: String,
    },
    /// The caller passed something that cannot be written or read this way.
    #[error("{0}")]
    InvalidArgument(String),
}

/// Shorthand for `Result<T, ztensor::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn format(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Format {
            path: path.into(),
            tensor: None,
            message: message.into(),
        }
    }

    pub(crate) fn tensor(
        path: impl Into<PathBuf>,
        tensor: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Error::Format {
            path: path.into(),
            tensor: Some(tensor.into()),
            message: message.into(),
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Error::InvalidArgument(message.into())
    }
}
