//! The job registry: jobs by name, since Rust closures cannot be persisted.
//!
//! A session runtime builds every job from a registry entry: a name, a version and a builder
//! that adds the job's operators to a [`StreamEnv`] given the job's [`JobContext`] (its id,
//! parameters and artifacts). The job graph store keeps name, version, parameters and
//! configuration, which is all a new leader needs to build the same job again. A recovered job
//! whose name is not registered, or registered under another version, fails with an error
//! naming both instead of running something else.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{report, Result, SessionError};
use weir_engine::StreamEnv;
use weir_engine::UserError;

/// Builds a job: adds its operators to the environment.
pub type JobBuilder =
    dyn Fn(&JobContext<'_>, &StreamEnv) -> std::result::Result<(), UserError> + Send + Sync;

#[derive(Clone)]
pub(crate) struct Entry {
    pub(crate) version: u32,
    pub(crate) build: Arc<JobBuilder>,
}

/// Jobs a session runtime can run, by name.
#[derive(Clone, Default)]
pub struct JobRegistry {
    entries: BTreeMap<String, Entry>,
}

impl JobRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers job `name` at `version` (a new version replaces an older entry; recovered jobs
    /// of another version are refused).
    pub fn register(
        &mut self,
        name: &str,
        version: u32,
        build: impl Fn(&JobContext<'_>, &StreamEnv) -> std::result::Result<(), UserError>
            + Send
            + Sync
            + 'static,
    ) -> &mut Self {
        self.entries.insert(
            name.to_string(),
            Entry {
                version,
                build: Arc::new(build),
            },
        );
        self
    }

    /// The registered names.
    pub fn names(&self) -> Vec<String> {
        self.entries.keys().cloned().collect()
    }

    pub(crate) fn get(&self, name: &str) -> Result<&Entry> {
        self.entries
            .get(name)
            .ok_or_else(|| SessionError::UnknownJob {
                name: name.to_string(),
                known: self.names(),
            })
    }
}

/// What a client submits: a registered job name, its parameters, configuration options and
/// artifacts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSubmission {
    /// The registry name.
    pub name: String,
    /// Parameters the builder reads ([`JobContext::parameter`]).
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
    /// Configuration options of the job (keys of [`weir_engine::Config`]).
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Artifacts (for example the job's input), kept in the blob store.
    #[serde(default)]
    pub artifacts: BTreeMap<String, String>,
}

impl JobSubmission {
    /// A submission of job `name` without parameters.
    pub fn new(name: &str) -> Self {
        JobSubmission {
            name: name.to_string(),
            ..Default::default()
        }
    }
    /// Adds a parameter.
    pub fn parameter(mut self, key: &str, value: impl ToString) -> Self {
        self.parameters.insert(key.to_string(), value.to_string());
        self
    }
    /// Adds a configuration option.
    pub fn option(mut self, key: &str, value: impl ToString) -> Self {
        self.config.insert(key.to_string(), value.to_string());
        self
    }
    /// Adds an artifact.
    pub fn artifact(mut self, name: &str, content: impl Into<String>) -> Self {
        self.artifacts.insert(name.to_string(), content.into());
        self
    }
}

/// What a job builder sees of its job.
pub struct JobContext<'a> {
    pub(crate) job_id: &'a str,
    pub(crate) name: &'a str,
    pub(crate) parameters: &'a BTreeMap<String, String>,
    pub(crate) artifacts: &'a dyn Fn(&str) -> Result<Option<Vec<u8>>>,
    pub(crate) recovered: bool,
}

impl JobContext<'_> {
    /// The job's id: unique in the cluster and the same after recovery (use it as the
    /// transactional id of exactly-once sinks).
    pub fn job_id(&self) -> &str {
        self.job_id
    }
    /// The registry name.
    pub fn name(&self) -> &str {
        self.name
    }
    /// Whether the job is being recovered by a new leader (it then restores its latest
    /// completed checkpoint).
    pub fn recovered(&self) -> bool {
        self.recovered
    }
    /// A parameter's text.
    pub fn parameter(&self, key: &str) -> Option<&str> {
        self.parameters.get(key).map(String::as_str)
    }
    /// A parameter parsed as `T`, or `default` when absent; a value that does not parse is an
    /// error naming the parameter.
    ///
    /// # Errors
    ///
    /// Returns an error naming the parameter, the job and the type when the parameter is present
    /// but does not parse as a `T`.
    pub fn parameter_or<T: FromStr>(
        &self,
        key: &str,
        default: T,
    ) -> std::result::Result<T, UserError> {
        match self.parameters.get(key) {
            None => Ok(default),
            Some(v) => v.trim().parse().map_err(|_| {
                format!(
                    "parameter '{key}' of job '{}': cannot parse '{v}' as {}",
                    self.name,
                    std::any::type_name::<T>()
                )
                .into()
            }),
        }
    }
    /// An artifact of the job (from the blob store).
    ///
    /// # Errors
    ///
    /// Returns the blob store's error (a [`SessionError::Ha`]) when the artifact cannot be read.
    pub fn artifact(&self, name: &str) -> std::result::Result<Option<Vec<u8>>, UserError> {
        // The engine shows a user error by its `Display` alone: keep the causes in the text.
        (self.artifacts)(name).map_err(|e| report(&e).into())
    }
}
