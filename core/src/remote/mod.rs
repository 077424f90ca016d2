//! Talking to other registries: the HTTP client port each platform implements
//! (`http`), a registry client over it that speaks the distribution API and
//! the Docker token flow (`client`, `token`, `challenge`), image references
//! (`reference`), digest checks on streams (`verify`) and copying images
//! between any two places that hold them (`copy`). `pier copy` and the
//! pull-through cache (`crate::mirror`) are built on these.

pub mod challenge;
pub mod client;
pub mod copy;
pub mod http;
pub mod local;
pub mod reference;
pub mod token;
pub mod verify;

pub use client::RegistryClient;

/// Why talking to another registry (or reading an image) failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RemoteError {
    /// No answer, or an answer that broke off.
    Transport(String),
    /// The registry answered with an error status.
    Status {
        status: u16,
        /// The distribution-spec error code, when the body had one.
        code: Option<String>,
        message: String,
    },
    /// The answer made no sense: a wrong digest, unreadable JSON, a missing header.
    Invalid(String),
}

impl RemoteError {
    pub fn status(&self) -> Option<u16> {
        match self {
            RemoteError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether the other side could not serve us now (down, overloaded,
    /// refusing our credentials) rather than saying the content is not there.
    pub fn is_unavailable(&self) -> bool {
        match self {
            RemoteError::Transport(_) => true,
            RemoteError::Status { status, .. } => *status >= 500 || matches!(*status, 401 | 403 | 408 | 429),
            RemoteError::Invalid(_) => false,
        }
    }
}

impl std::fmt::Display for RemoteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RemoteError::Transport(msg) | RemoteError::Invalid(msg) => f.write_str(msg),
            RemoteError::Status { message, .. } => f.write_str(message),
        }
    }
}

impl std::error::Error for RemoteError {}

impl From<http::HttpError> for RemoteError {
    fn from(error: http::HttpError) -> RemoteError {
        RemoteError::Transport(error.0)
    }
}

/// Credentials for another registry (or its token endpoint).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <secret>)", self.username)
    }
}

impl Credentials {
    /// `user:password`, as on command lines and in environment variables.
    pub fn parse(text: &str) -> Option<Credentials> {
        let (username, password) = text.split_once(':')?;
        (!username.is_empty()).then(|| Credentials {
            username: username.to_string(),
            password: password.to_string(),
        })
    }

    /// Credentials from a configuration's optional `username` and
    /// `password`, which go together.
    pub fn from_config(username: &Option<String>, password: &Option<String>) -> Result<Option<Credentials>, String> {
        match (username, password) {
            (None, None) => Ok(None),
            (Some(username), Some(password)) => Ok(Some(Credentials {
                username: username.clone(),
                password: password.clone(),
            })),
            _ => Err("username and password go together".into()),
        }
    }

    /// The `Authorization` header value for Basic auth.
    pub fn basic_header(&self) -> String {
        use ct_codecs::{Base64, Encoder};
        let raw = format!("{}:{}", self.username, self.password);
        format!("Basic {}", Base64::encode_to_string(raw.as_bytes()).unwrap_or_default())
    }
}
