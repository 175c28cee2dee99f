//! The errors of the Connect runtime, each mapped to the HTTP status Kafka's REST API gives it.

use runnel_client::kafka::KafkaError;
use runnel_storage::disk::DiskError;

/// Why a Connect operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// No such connector, task or plugin (HTTP 404).
    #[error("{0}")]
    NotFound(String),
    /// A connector of that name exists already (HTTP 409).
    #[error("{0}")]
    AlreadyExists(String),
    /// The request or a configuration is wrong (HTTP 400).
    #[error("{0}")]
    BadRequest(String),
    /// A configuration value is missing or invalid.
    #[error("{0}")]
    Config(String),
    /// No plugin matches a class name (HTTP 400, as Kafka 4.1 answers).
    #[error("{0}")]
    Plugin(String),
    /// A record could not be converted or transformed.
    #[error("{0}")]
    Data(String),
    /// A connector or task failed in its own code (an error it returned, or a panic).
    #[error("{0}")]
    Task(String),
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    #[error(transparent)]
    Disk(#[from] DiskError),
    /// A rebalance is under way, or a write reached a worker that does not lead the
    /// group (HTTP 409, Kafka's answer while rebalancing).
    #[error("{0}")]
    Conflict(String),
    /// Another worker must answer: the REST layer forwards the request to `url` (Kafka's
    /// `RequestTargetException`); 409 if it cannot.
    #[error("{message}")]
    RequestTarget { url: String, message: String },
    /// The worker is gone (shut down) or did not answer in time.
    #[error("the Connect worker is not answering: {0}")]
    Worker(String),
}

impl ConnectError {
    /// The HTTP status Kafka's REST API answers this error with.
    pub fn http_status(&self) -> u16 {
        match self {
            ConnectError::NotFound(_) => 404,
            ConnectError::AlreadyExists(_)
            | ConnectError::Conflict(_)
            | ConnectError::RequestTarget { .. } => 409,
            ConnectError::BadRequest(_) | ConnectError::Config(_) | ConnectError::Plugin(_) => 400,
            _ => 500,
        }
    }

    /// The error and its causes, one per line: what Connect shows as a task's `trace`.
    pub fn trace(&self) -> String {
        let mut out = format!("runnel_connect::ConnectError: {self}");
        let mut source = std::error::Error::source(self);
        let mut last = self.to_string();
        while let Some(cause) = source {
            let text = cause.to_string();
            // Wrapping errors often repeat their cause's words; say them once.
            if !last.contains(&text) {
                out.push_str(&format!("\nCaused by: {text}"));
            }
            last = text;
            source = cause.source();
        }
        out
    }
}
