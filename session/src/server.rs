//! The request server of a session runtime and its client.
//!
//! Protocol: one JSON object per line over TCP, one response line per request.
//! Requests are tagged by `op`: `submit` (a [`JobSubmission`]), `status`, `wait` (blocks up to
//! `timeout_ms`), `cancel`, `jobs`. A response has `ok`, and `error` when not ok. Only the
//! leader accepts submissions; a standby answers with the leader's address, and
//! [`SessionClient`] finds the leader through leader retrieval before every request.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Inner, JobSubmission, SessionJobStatus};
use weir_ha::LeaderRetrieval;

use crate::error::{report, Result, SessionError};

/// A request to a session runtime.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    /// Submit a job.
    Submit {
        /// The job.
        submission: JobSubmission,
    },
    /// The status of a job.
    Status {
        /// The job.
        job_id: String,
    },
    /// Wait until a job stopped here, at most `timeout_ms`.
    Wait {
        /// The job.
        job_id: String,
        /// Longest wait.
        timeout_ms: u64,
    },
    /// Cancel a job.
    Cancel {
        /// The job.
        job_id: String,
    },
    /// The jobs running on the runtime.
    Jobs,
}

/// A response of a session runtime.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Response {
    /// Whether the request succeeded.
    pub ok: bool,
    /// Why it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The job submitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// A job's status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<SessionJobStatus>,
    /// Running jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jobs: Option<Vec<String>>,
}

pub(crate) struct Server {
    stop: Arc<AtomicBool>,
    address: std::net::SocketAddr,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    pub(crate) fn start(listener: TcpListener, inner: Weak<Inner>) -> Server {
        let stop = Arc::new(AtomicBool::new(false));
        let address = listener
            .local_addr()
            .unwrap_or_else(|_| std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
        let s2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("weir-session-server".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if s2.load(Ordering::Acquire) {
                        return;
                    }
                    let Ok(conn) = conn else {
                        // Out of descriptors, say: do not spin.
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    };
                    let inner = inner.clone();
                    let _ = weir_engine::pool::TaskPool::shared().spawn(move || serve(conn, inner));
                }
            })
            .ok();
        Server {
            stop,
            address,
            thread,
        }
    }

    pub(crate) fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        // Unblock `accept`.
        let _ = TcpStream::connect_timeout(&self.address, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(conn: TcpStream, inner: Weak<Inner>) {
    let _ = conn.set_nodelay(true);
    let Ok(mut out) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(conn);
    loop {
        // One request per line, at most 64 MiB (a submission carries its artifacts).
        let mut line = String::new();
        match std::io::Read::take(&mut reader, 64 << 20).read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) if !line.ends_with('\n') && line.len() >= 64 << 20 => {
                let _ = out.write_all(b"{\"ok\":false,\"error\":\"request longer than 64 MiB\"}\n");
                return;
            }
            Ok(_) => {}
        }
        if line.trim().is_empty() {
            continue;
        }
        let response = match (serde_json::from_str::<Request>(&line), inner.upgrade()) {
            (_, None) => failure("the runtime is shutting down".into()),
            (Err(e), _) => failure(format!("bad request: {e}")),
            (Ok(r), Some(inner)) => handle(&inner, r).unwrap_or_else(|e| failure(report(&e))),
        };
        let mut text = serde_json::to_string(&response).unwrap_or_else(|_| "{}".into());
        text.push('\n');
        if out.write_all(text.as_bytes()).is_err() {
            return;
        }
    }
}

fn failure(error: String) -> Response {
    Response {
        ok: false,
        error: Some(error),
        ..Default::default()
    }
}

fn handle(inner: &Arc<Inner>, r: Request) -> Result<Response> {
    let ok = Response {
        ok: true,
        ..Default::default()
    };
    Ok(match r {
        Request::Submit { submission } => {
            let job = inner.submit_remote(submission)?;
            Response {
                job_id: Some(job.id().to_string()),
                ..ok
            }
        }
        Request::Status { job_id } => Response {
            status: Some(inner.status(&job_id)?),
            ..ok
        },
        Request::Wait { job_id, timeout_ms } => {
            let status = match inner.job_entry(&job_id) {
                Some(e) => super::SessionJob { entry: e }
                    .wait_timeout(Duration::from_millis(timeout_ms.min(600_000))),
                None => inner.status(&job_id)?,
            };
            Response {
                status: Some(status),
                ..ok
            }
        }
        Request::Cancel { job_id } => match inner.job_entry(&job_id) {
            Some(e) => {
                super::SessionJob { entry: e }.cancel();
                ok
            }
            None => return Err(SessionError::NoSuchJob(job_id)),
        },
        Request::Jobs => {
            let mut jobs: Vec<String> = inner.jobs.lock().keys().cloned().collect();
            jobs.sort();
            Response {
                jobs: Some(jobs),
                ..ok
            }
        }
    })
}

/// A client of session runtimes: finds the leader and sends it requests.
pub struct SessionClient {
    retrieval: Option<Arc<dyn LeaderRetrieval>>,
    address: Option<String>,
}

impl SessionClient {
    /// A client that asks leader retrieval for the leader's address before each request.
    pub fn new(retrieval: Arc<dyn LeaderRetrieval>) -> Self {
        SessionClient {
            retrieval: Some(retrieval),
            address: None,
        }
    }

    /// A client of the runtime at `address`.
    pub fn at(address: &str) -> Self {
        SessionClient {
            retrieval: None,
            address: Some(address.to_string()),
        }
    }

    fn leader_address(&self) -> Result<String> {
        if let Some(a) = &self.address {
            return Ok(a.clone());
        }
        let Some(r) = &self.retrieval else {
            return Err(SessionError::NotLeader { leader: None });
        };
        match r.leader()? {
            Some(l) if !l.address.is_empty() => Ok(l.address),
            _ => Err(SessionError::NotLeader { leader: None }),
        }
    }

    /// Sends one request to the leader.
    ///
    /// # Errors
    ///
    /// Returns [`SessionError::NotLeader`] when no leader is known, [`SessionError::Ha`] when
    /// leader retrieval fails, [`SessionError::Unreachable`] when the leader's address cannot be
    /// connected to or the connection fails, [`SessionError::BadResponse`] when the answer is not
    /// one of the protocol, and [`SessionError::Remote`] when the runtime answers with an error.
    pub fn request(&self, request: &Request) -> Result<Response> {
        let address = self.leader_address()?;
        let unreachable = |e: std::io::Error| SessionError::Unreachable {
            address: address.clone(),
            reason: e.to_string(),
        };
        let addr: std::net::SocketAddr =
            address.parse().map_err(|_| SessionError::Unreachable {
                address: address.clone(),
                reason: "not a socket address".into(),
            })?;
        let mut conn =
            TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(unreachable)?;
        let wait = match request {
            Request::Wait { timeout_ms, .. } => Duration::from_millis((*timeout_ms).min(600_000)),
            _ => Duration::ZERO,
        };
        conn.set_read_timeout(Some(wait + Duration::from_secs(30)))
            .map_err(unreachable)?;
        let mut line = serde_json::to_string(request).map_err(|e| SessionError::BadResponse {
            address: address.clone(),
            reason: format!("the request cannot be encoded: {e}"),
        })?;
        line.push('\n');
        conn.write_all(line.as_bytes()).map_err(unreachable)?;
        let mut reader = BufReader::new(conn);
        let mut answer = String::new();
        reader.read_line(&mut answer).map_err(unreachable)?;
        let response: Response =
            serde_json::from_str(&answer).map_err(|e| SessionError::BadResponse {
                address: address.clone(),
                reason: e.to_string(),
            })?;
        if !response.ok {
            return Err(SessionError::Remote {
                address,
                message: response.error.unwrap_or_default(),
            });
        }
        Ok(response)
    }

    /// Submits a job; its id.
    ///
    /// # Errors
    ///
    /// Returns the errors of [`request`](Self::request) (a refused job is a
    /// [`SessionError::Remote`]), and [`SessionError::BadResponse`] when the answer holds no job
    /// id.
    pub fn submit(&self, submission: &JobSubmission) -> Result<String> {
        let r = self.request(&Request::Submit {
            submission: submission.clone(),
        })?;
        r.job_id.ok_or_else(|| SessionError::BadResponse {
            address: self.address.clone().unwrap_or_default(),
            reason: "no job id in the response".into(),
        })
    }

    /// The status of a job.
    ///
    /// # Errors
    ///
    /// Returns the errors of [`request`](Self::request) (a job the runtime does not know is a
    /// [`SessionError::Remote`]), and [`SessionError::NoSuchJob`] when the answer holds no status.
    pub fn status(&self, job_id: &str) -> Result<SessionJobStatus> {
        let r = self.request(&Request::Status {
            job_id: job_id.to_string(),
        })?;
        r.status
            .ok_or_else(|| SessionError::NoSuchJob(job_id.to_string()))
    }

    /// Cancels a job.
    ///
    /// # Errors
    ///
    /// Returns the errors of [`request`](Self::request); a job not running on the leader is a
    /// [`SessionError::Remote`].
    pub fn cancel(&self, job_id: &str) -> Result<()> {
        self.request(&Request::Cancel {
            job_id: job_id.to_string(),
        })
        .map(|_| ())
    }
}
