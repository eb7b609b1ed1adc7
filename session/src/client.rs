//! A client of session runtimes over their REST API: finds the leader (leader retrieval, or a
//! fixed address), submits jobs, reads their status, cancels them, with the bearer token when
//! the runtime needs one, over HTTP or HTTPS (rustls; a private CA with [`SessionClient::ca_file`]).

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use weir_ha::LeaderRetrieval;

use super::{JobSubmission, SessionJobStatus};
use crate::error::{Result, SessionError};

/// A client of session runtimes: finds the leader and sends it requests.
pub struct SessionClient {
    retrieval: Option<Arc<dyn LeaderRetrieval>>,
    address: Option<String>,
    token: Option<String>,
    agent: ureq::Agent,
}

/// The base URL of an address published by a runtime (`host:port` or a URL).
fn base_url(address: &str) -> String {
    if address.starts_with("http://") || address.starts_with("https://") {
        address.trim_end_matches('/').to_string()
    } else {
        format!("http://{address}")
    }
}

impl SessionClient {
    fn with(retrieval: Option<Arc<dyn LeaderRetrieval>>, address: Option<String>) -> Self {
        SessionClient {
            retrieval,
            address,
            token: None,
            agent: Self::agent(None),
        }
    }

    fn agent(tls: Option<ureq::tls::TlsConfig>) -> ureq::Agent {
        let mut config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(5)))
            .timeout_global(Some(Duration::from_secs(120)));
        if let Some(tls) = tls {
            config = config.tls_config(tls);
        }
        config.build().into()
    }

    /// A client that asks leader retrieval for the leader's address before each request.
    pub fn new(retrieval: Arc<dyn LeaderRetrieval>) -> Self {
        Self::with(Some(retrieval), None)
    }

    /// A client of the runtime at `address` (`host:port` or a URL).
    pub fn at(address: &str) -> Self {
        Self::with(None, Some(address.to_string()))
    }

    /// Trusts the CA certificates (PEM) in `path` for `https://` runtimes (`rest.ssl.*`),
    /// instead of the public web roots.
    ///
    /// # Errors
    ///
    /// [`SessionError::InvalidOption`] naming the file when it cannot be read or holds no
    /// certificate.
    pub fn ca_file(mut self, path: &std::path::Path) -> Result<Self> {
        let bad = |reason: String| SessionError::InvalidOption {
            key: "ca-file".into(),
            value: path.display().to_string(),
            expected: format!("a PEM file of CA certificates ({reason})"),
        };
        let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        let certs: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(&pem)
            .filter_map(|item| match item {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect();
        if certs.is_empty() {
            return Err(bad("no certificate in it".into()));
        }
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::Specific(Arc::new(certs)))
            .build();
        self.agent = Self::agent(Some(tls));
        Ok(self)
    }

    /// Sends `token` as the bearer token with every request.
    pub fn token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    fn leader_url(&self) -> Result<String> {
        if let Some(a) = &self.address {
            return Ok(base_url(a));
        }
        let Some(r) = &self.retrieval else {
            return Err(SessionError::NotLeader { leader: None });
        };
        match r.leader()? {
            Some(l) if !l.address.is_empty() => Ok(base_url(&l.address)),
            _ => Err(SessionError::NotLeader { leader: None }),
        }
    }

    /// Sends one request to the leader and returns its JSON answer.
    ///
    /// # Errors
    ///
    /// Returns [`SessionError::NotLeader`] when no leader is known, [`SessionError::Ha`] when
    /// leader retrieval fails, [`SessionError::Unreachable`] when the leader cannot be reached,
    /// [`SessionError::BadResponse`] when the answer is not JSON, and [`SessionError::Remote`]
    /// with the runtime's `errors` when it answers with an error status.
    pub fn request(&self, method: &str, path: &str, body: Option<Vec<u8>>) -> Result<Value> {
        let base = self.leader_url()?;
        let url = format!("{base}{path}");
        let mut req = ureq::http::Request::builder().method(method).uri(&url);
        if let Some(t) = &self.token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        if body.is_some() {
            req = req.header("Content-Type", "application/json");
        }
        let req = req
            .body(body.unwrap_or_default())
            .map_err(|e| SessionError::Unreachable {
                address: base.clone(),
                reason: e.to_string(),
            })?;
        let mut resp = self.agent.run(req).map_err(|e| SessionError::Unreachable {
            address: base.clone(),
            reason: e.to_string(),
        })?;
        let status = resp.status();
        let text = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| SessionError::Unreachable {
                address: base.clone(),
                reason: e.to_string(),
            })?;
        let value: Value = serde_json::from_str(&text).map_err(|e| SessionError::BadResponse {
            address: base.clone(),
            reason: format!("{e} (status {status})"),
        })?;
        if !status.is_success() {
            let errors: Vec<String> = value["errors"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|e| e.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            return Err(SessionError::Remote {
                address: base,
                message: format!("{status}: {}", errors.join("; ")),
            });
        }
        Ok(value)
    }

    /// Submits a job (`POST /jobs`); its id.
    ///
    /// # Errors
    ///
    /// Returns the errors of [`request`](Self::request) (a refused job is a
    /// [`SessionError::Remote`]), and [`SessionError::BadResponse`] when the answer holds no job
    /// id.
    pub fn submit(&self, submission: &JobSubmission) -> Result<String> {
        let body = serde_json::to_vec(submission).map_err(|e| SessionError::BadResponse {
            address: String::new(),
            reason: format!("the submission cannot be encoded: {e}"),
        })?;
        let v = self.request("POST", "/jobs", Some(body))?;
        v["jobid"]
            .as_str()
            .map(String::from)
            .ok_or_else(|| SessionError::BadResponse {
                address: self.address.clone().unwrap_or_default(),
                reason: "no jobid in the answer".into(),
            })
    }

    /// The status of a job (`GET /jobs/{jid}/status`).
    ///
    /// # Errors
    ///
    /// Returns the errors of [`request`](Self::request) (a job the runtime does not know is a
    /// [`SessionError::Remote`]), and [`SessionError::BadResponse`] when the answer holds no
    /// status.
    pub fn status(&self, job_id: &str) -> Result<SessionJobStatus> {
        let v = self.request("GET", &format!("/jobs/{job_id}/status"), None)?;
        serde_json::from_value(v["session"].clone()).map_err(|e| SessionError::BadResponse {
            address: self.address.clone().unwrap_or_default(),
            reason: format!("no session status in the answer: {e}"),
        })
    }

    /// Cancels a job (`PATCH /jobs/{jid}?mode=cancel`).
    ///
    /// # Errors
    ///
    /// Returns the errors of [`request`](Self::request); a job not running on the leader is a
    /// [`SessionError::Remote`].
    pub fn cancel(&self, job_id: &str) -> Result<()> {
        self.request("PATCH", &format!("/jobs/{job_id}?mode=cancel"), None)
            .map(|_| ())
    }
}
