//! The REST server of a process that runs jobs: Flink's REST API (v1 paths and field names),
//! Prometheus metrics at `/metrics`, and a web dashboard at `/` with live updates by
//! server-sent events.
//!
//! One server serves a [`JobDirectory`]: an embedded job (`rest.port` set on its
//! [`StreamEnv`](crate::StreamEnv)) registers itself; a session runtime registers every job it
//! runs and adds its own routes (`POST /jobs`) through [`RestServerBuilder::routes`]; other
//! owners add dashboard sections and metric collectors ([`RestServerBuilder::section`],
//! [`RestServerBuilder::collector`]).
//!
//! Invariants:
//! - Reading is free for the jobs: nothing is sampled in the background; every figure is read
//!   from the tasks' counters when a request (or a dashboard update) asks for it, and
//!   per-second rates are differences between two such reads ([`rates`]).
//! - The server bounds what a client can take: connections at once
//!   (`rest.server.max-connections`, further ones wait in the listen backlog), request body
//!   size (`rest.server.max-content-length`), and the wait for headers and bodies
//!   (`rest.server.read-timeout`); connections are tasks on a small runtime, never threads.
//! - Every mutating call needs the bearer token when one is set, and every call does when the
//!   server binds outside loopback; binding outside loopback without a token is refused at
//!   start ([`RestError::UnauthenticatedBind`](crate::error::RestError)).
//! - A bad request gets a 4xx answer with a JSON `errors` list naming what was wrong.

mod auth;
mod checkpoints;
mod dashboard;
mod directory;
mod jobs;
mod metrics;
mod problem;
pub mod rates;
mod server;
mod tls;
mod views;

pub use directory::JobDirectory;
pub use metrics::{encode_gauges, MetricsCollector};
pub use problem::ApiError;
/// The Prometheus client the server encodes `/metrics` with: owners write their
/// [`MetricsCollector`]s with it.
pub use prometheus_client;
pub use server::{RestServer, RestServerBuilder, Section};

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::config::Config;
use crate::error::RestError;

/// The REST server's settings, resolved from a job's [`Config`].
#[derive(Debug, Clone)]
pub struct RestOptions {
    /// Where to listen.
    pub address: SocketAddr,
    /// The bearer token, if any (from `rest.authentication.token` or its file).
    pub token: Option<String>,
    /// Largest request body, bytes.
    pub max_content_length: usize,
    /// Most connections served at once.
    pub max_connections: usize,
    /// Longest wait for headers or a body, and longest idle time between requests.
    pub read_timeout: Duration,
    /// TLS certificate chain and key files (PEM), if TLS is on.
    pub tls: Option<(String, String)>,
    /// How often the dashboard's live stream sends an update.
    pub refresh_interval: Duration,
}

impl RestOptions {
    /// The settings of `config`, with `rest.port` = `port` when `config` leaves it unset.
    ///
    /// # Errors
    ///
    /// [`RestError::BadAddress`] when the bind address does not parse,
    /// [`RestError::File`] when the token file cannot be read or is empty or TLS is on
    /// without both files, and [`RestError::UnauthenticatedBind`] when the address is outside
    /// loopback and there is no token.
    pub fn from_config(config: &Config, port: u16) -> Result<RestOptions, RestError> {
        let port = config.rest_port.unwrap_or(port);
        let host = config.rest_bind_address.trim();
        let ip: IpAddr = match host {
            "localhost" => IpAddr::from([127, 0, 0, 1]),
            h => h.parse().map_err(|_| RestError::BadAddress {
                address: format!("{h}:{port}"),
            })?,
        };
        let address = SocketAddr::new(ip, port);
        let mut token =
            (!config.rest_token.trim().is_empty()).then(|| config.rest_token.trim().to_string());
        if token.is_none() && !config.rest_token_file.is_empty() {
            let path = &config.rest_token_file;
            let text = std::fs::read_to_string(path).map_err(|e| RestError::File {
                option: "rest.authentication.token-file",
                path: path.clone(),
                reason: e.to_string(),
            })?;
            let first = text.lines().next().unwrap_or("").trim().to_string();
            if first.is_empty() {
                return Err(RestError::File {
                    option: "rest.authentication.token-file",
                    path: path.clone(),
                    reason: "the file is empty (the token is its first line)".into(),
                });
            }
            token = Some(first);
        }
        if !ip.is_loopback() && token.is_none() {
            return Err(RestError::UnauthenticatedBind {
                address: address.to_string(),
            });
        }
        let tls = if config.rest_ssl_enabled {
            let need = |option: &'static str, v: &String| {
                if v.is_empty() {
                    Err(RestError::File {
                        option,
                        path: String::new(),
                        reason: "rest.ssl.enabled is true but no file is set".into(),
                    })
                } else {
                    Ok(v.clone())
                }
            };
            Some((
                need("rest.ssl.certificate", &config.rest_ssl_certificate)?,
                need("rest.ssl.key", &config.rest_ssl_key)?,
            ))
        } else {
            None
        };
        Ok(RestOptions {
            address,
            token,
            max_content_length: config.rest_max_content_length.bytes() as usize,
            max_connections: config.rest_max_connections,
            read_timeout: config.rest_read_timeout,
            tls,
            refresh_interval: config.web_refresh_interval,
        })
    }

    /// Whether every call (not only mutating ones) needs the token.
    pub fn all_calls_authenticated(&self) -> bool {
        !self.address.ip().is_loopback()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_loopback_needs_a_token() {
        let mut c = Config {
            rest_bind_address: "0.0.0.0".into(),
            ..Config::default()
        };
        let e = RestOptions::from_config(&c, 0).unwrap_err();
        assert!(e.to_string().contains("rest.authentication.token"), "{e}");
        c.rest_token = "s3cret".into();
        let o = RestOptions::from_config(&c, 0).unwrap();
        assert!(o.all_calls_authenticated());
        assert_eq!(o.token.as_deref(), Some("s3cret"));
    }

    #[test]
    fn token_file_and_bad_address() {
        let mut c = Config {
            rest_token_file: "/nonexistent/weir-token".into(),
            ..Config::default()
        };
        let e = RestOptions::from_config(&c, 0).unwrap_err();
        assert!(
            e.to_string().contains("rest.authentication.token-file"),
            "{e}"
        );
        c.rest_token_file.clear();
        c.rest_bind_address = "not an address".into();
        let e = RestOptions::from_config(&c, 8081).unwrap_err();
        assert!(e.to_string().contains("rest.bind-address"), "{e}");
    }
}
