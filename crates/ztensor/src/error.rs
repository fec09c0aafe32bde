//! The one error type of the crate, and the kinds that classify it.
//!
//! Parsers, decoding steps and buffers report a [`FormatError`] (a kind and
//! a message, no path); the [`Reader`](crate::Reader) wraps it into an
//! [`Error`] that names the file and, where one tensor is at fault, the
//! tensor. Code that must react to a failure matches [`Error::kind`], never
//! the message text.

use std::fmt;
use std::path::PathBuf;

/// What went wrong, independent of the wording of the message.
///
/// New kinds may be added; match with a wildcard arm.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The operating system refused an operation ([`Error::Io`]).
    Io,
    /// No tensor (or file member) of the requested name exists.
    NotFound,
    /// The caller passed something that cannot be written or read this way.
    InvalidArgument,
    /// The file ends before a structure it declares (a header, a table, a
    /// tensor's bytes): typically a cut-off download or copy.
    Truncated,
    /// The bytes are there but do not form a valid structure of the format.
    Corrupt,
    /// A stored checksum does not match the bytes it covers.
    ChecksumMismatch,
    /// Valid for the format, but a dtype, encoding or feature this library
    /// does not read.
    Unsupported,
    /// A size, count or nesting depth beyond what the reader accepts (a
    /// hostile or absurd size field), refused before any allocation.
    LimitExceeded,
    /// Memory for a buffer could not be allocated or mapped.
    OutOfMemory,
    /// A `.zt` append did not finish; `zt repair` restores the file.
    TornAppend,
    /// A pickle asks to run code the loader refuses to run.
    UnsafePickle,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::Io => "I/O error",
            ErrorKind::NotFound => "not found",
            ErrorKind::InvalidArgument => "invalid argument",
            ErrorKind::Truncated => "truncated",
            ErrorKind::Corrupt => "corrupt",
            ErrorKind::ChecksumMismatch => "checksum mismatch",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::LimitExceeded => "limit exceeded",
            ErrorKind::OutOfMemory => "out of memory",
            ErrorKind::TornAppend => "torn append",
            ErrorKind::UnsafePickle => "unsafe pickle",
        })
    }
}

/// A problem found in a file's bytes, before the reader knows (or adds)
/// the file's path: what parsers, [`Transform::decode`](crate::Transform)
/// and buffer allocation return.
///
/// A bare `String` converts into one of kind [`ErrorKind::Corrupt`], so a
/// helper that only reports malformed structure can keep returning text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatError {
    kind: ErrorKind,
    message: String,
}

impl FormatError {
    /// A problem of `kind` described by `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        FormatError {
            kind,
            message: message.into(),
        }
    }

    /// A malformed structure ([`ErrorKind::Corrupt`]).
    pub fn corrupt(message: impl Into<String>) -> Self {
        FormatError::new(ErrorKind::Corrupt, message)
    }

    /// The file ends too early ([`ErrorKind::Truncated`]).
    pub fn truncated(message: impl Into<String>) -> Self {
        FormatError::new(ErrorKind::Truncated, message)
    }

    /// Something this library does not read ([`ErrorKind::Unsupported`]).
    pub fn unsupported(message: impl Into<String>) -> Self {
        FormatError::new(ErrorKind::Unsupported, message)
    }

    /// A size beyond what the reader accepts ([`ErrorKind::LimitExceeded`]).
    pub fn limit(message: impl Into<String>) -> Self {
        FormatError::new(ErrorKind::LimitExceeded, message)
    }

    /// The kind of problem.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message (without path or tensor name).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The same problem with `prefix` put before the message (e.g. the
    /// component or member it concerns).
    pub fn prefixed(mut self, prefix: impl fmt::Display) -> Self {
        self.message = format!("{prefix}{}", self.message);
        self
    }

    /// The same problem with its message rewritten by `f` (kind kept).
    pub fn map_message(mut self, f: impl FnOnce(String) -> String) -> Self {
        self.message = f(self.message);
        self
    }
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for FormatError {}

impl From<String> for FormatError {
    fn from(message: String) -> Self {
        FormatError::corrupt(message)
    }
}

impl From<&String> for FormatError {
    fn from(message: &String) -> Self {
        FormatError::corrupt(message.clone())
    }
}

impl From<&str> for FormatError {
    fn from(message: &str) -> Self {
        FormatError::corrupt(message)
    }
}

/// Everything that can go wrong while reading or writing a tensor file.
///
/// Messages name the file and, where one tensor is at fault, the tensor, so
/// that a user looking at a log line knows where to look. [`Error::kind`]
/// classifies the error for code.
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
        /// What kind of problem it is.
        kind: ErrorKind,
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
    /// What kind of error this is: [`ErrorKind::Io`], [`ErrorKind::NotFound`]
    /// and [`ErrorKind::InvalidArgument`] for those variants, the problem's
    /// kind for [`Error::Format`].
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Io { .. } => ErrorKind::Io,
            Error::Format { kind, .. } => *kind,
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::InvalidArgument(_) => ErrorKind::InvalidArgument,
        }
    }

    /// An I/O error; one that carries a [`FormatError`] (a [`crate::RangeSource`]
    /// that found the remote file changed or damaged) becomes that problem.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        if let Some(problem) = source
            .get_ref()
            .and_then(|e| e.downcast_ref::<FormatError>())
        {
            return Error::format(path, problem.clone());
        }
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// A problem with the file at `path` as a whole.
    pub fn format(path: impl Into<PathBuf>, problem: impl Into<FormatError>) -> Self {
        let FormatError { kind, message } = problem.into();
        Error::Format {
            path: path.into(),
            tensor: None,
            kind,
            message,
        }
    }

    /// A problem with one tensor of the file at `path`.
    pub fn tensor(
        path: impl Into<PathBuf>,
        tensor: impl Into<String>,
        problem: impl Into<FormatError>,
    ) -> Self {
        let FormatError { kind, message } = problem.into();
        Error::Format {
            path: path.into(),
            tensor: Some(tensor.into()),
            kind,
            message,
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Error::InvalidArgument(message.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_survive_wrapping_and_messages_are_unchanged() {
        let e = Error::tensor(
            "m.zt",
            "w",
            FormatError::truncated("short").prefixed("'data': "),
        );
        assert_eq!(e.kind(), ErrorKind::Truncated);
        assert_eq!(e.to_string(), "m.zt: tensor 'w': 'data': short");
        // Plain text is a malformed structure.
        let e = Error::format("m.zt", "bad magic");
        assert_eq!(e.kind(), ErrorKind::Corrupt);
        assert_eq!(e.to_string(), "m.zt: bad magic");
        let io = Error::io("m.zt", std::io::ErrorKind::NotFound.into());
        assert_eq!(io.kind(), ErrorKind::Io);
        assert_eq!(Error::invalid("x").kind(), ErrorKind::InvalidArgument);
        let missing = Error::NotFound {
            path: "m.zt".into(),
            name: "w".into(),
        };
        assert_eq!(missing.kind(), ErrorKind::NotFound);
    }
}
