//! The session runtime's errors: one enum for the crate, with what the HA services report kept
//! as a source ([`SessionError::Ha`]) apart from what the session itself refuses.

use weir_ha::HaError;

/// An error of the session runtime or of its client.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The HA services failed: a store unreachable or failing, a write refused because this
    /// runtime was deposed (a stale fencing token), a corrupt record, a bad
    /// `high-availability.*` option.
    #[error(transparent)]
    Ha(#[from] HaError),
    /// The REST server could not start (address in use, a bad `rest.*` option).
    #[error(transparent)]
    Rest(#[from] weir_engine::error::RestError),
    /// A session option has a value that cannot be used.
    #[error("invalid value '{value}' for option '{key}': expected {expected}")]
    InvalidOption {
        /// The option.
        key: String,
        /// The value given.
        value: String,
        /// What the option accepts.
        expected: String,
    },
    /// This process cannot run a part of the runtime (a thread could not be started).
    #[error("cannot start the {what}")]
    Start {
        /// The part.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// This runtime does not lead its cluster.
    #[error("this runtime is not the leader{}", match .leader { Some(l) => format!("; the leader is at {l}"), None => "; no leader is known".to_string() })]
    NotLeader {
        /// The leader's address, if one is known.
        leader: Option<String>,
    },
    /// A job name that no registry entry has.
    #[error("unknown job name '{name}' (registered: {})", if .known.is_empty() { "none".to_string() } else { .known.join(", ") })]
    UnknownJob {
        /// The name asked for.
        name: String,
        /// The names registered.
        known: Vec<String>,
    },
    /// A job id the runtime does not know.
    #[error("no job with id '{0}'")]
    NoSuchJob(String),
    /// Building or starting a job failed.
    #[error("job '{job}' could not start: {message}")]
    JobStart {
        /// The job (name or id).
        job: String,
        /// Why.
        message: String,
    },
    /// A session runtime cannot be reached.
    #[error("the session runtime at {address} is unreachable: {reason}")]
    Unreachable {
        /// Its address.
        address: String,
        /// Why.
        reason: String,
    },
    /// A session runtime answered something that is not an answer of the protocol.
    #[error("the session runtime at {address} answered badly: {reason}")]
    BadResponse {
        /// Its address.
        address: String,
        /// What was wrong.
        reason: String,
    },
    /// A session runtime answered a request with an error.
    #[error("the session runtime at {address}: {message}")]
    Remote {
        /// The runtime's address.
        address: String,
        /// Its error.
        message: String,
    },
}

/// Result of the session runtime.
pub type Result<T, E = SessionError> = std::result::Result<T, E>;

pub(crate) use weir_engine::error::report;

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_report_shows_the_causes_of_an_ha_error() {
        let io = std::io::Error::other("connection refused");
        let e = SessionError::Ha(HaError::Unreachable {
            store: "postgres://h/db".into(),
            reason: "cannot connect".into(),
            source: Some(Arc::new(io)),
        });
        assert_eq!(
            e.to_string(),
            "the HA store postgres://h/db is unreachable: cannot connect"
        );
        assert_eq!(
            report(&e),
            "the HA store postgres://h/db is unreachable: cannot connect: connection refused"
        );
        let plain = SessionError::NoSuchJob("j".into());
        assert_eq!(report(&plain), "no job with id 'j'");
    }
}
