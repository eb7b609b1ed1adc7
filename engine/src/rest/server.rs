//! The server: its own small runtime, an accept loop bounded by a connection limit, HTTP/1.1
//! connections with a header timeout (TLS optional), the routes, and graceful shutdown.
//!
//! Invariants: at most `max_connections` connections are served at once (the accept loop
//! waits for a permit before it accepts, so further clients wait in the kernel's backlog and
//! cost the process nothing); every connection is a task on the server's runtime (two worker
//! threads), never a thread of its own; a client that stops reading what it is sent (a full
//! socket for [`WRITE_TIMEOUT`], or `rest.server.read-timeout` if longer) loses its
//! connection; shutdown stops accepting, lets requests in progress finish for a moment, then
//! drops the runtime.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, patch, post};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use parking_lot::Mutex;
use prometheus_client::collector::Collector;
use prometheus_client::registry::Registry;
use tokio::sync::{watch, Semaphore};

use super::checkpoints::Triggers;
use super::{auth, checkpoints, dashboard, jobs, metrics, tls, JobDirectory, RestOptions};
use crate::error::RestError;

/// A named part of the dashboard's state that the server's owner provides (e.g. `weir
/// maintain`'s per-table view): served at `GET /{name}` and as the field `name` of every
/// dashboard update.
#[derive(Clone)]
pub struct Section {
    /// Its name: a path segment and a JSON field.
    pub name: String,
    /// Its current view.
    pub view: Arc<dyn Fn() -> serde_json::Value + Send + Sync>,
}

/// What `POST /jobs` does with a submission's body (a session runtime submits the job):
/// answers with the JSON to return (200) or an error.
pub type SubmitHandler =
    Arc<dyn Fn(&[u8]) -> Result<serde_json::Value, super::ApiError> + Send + Sync>;

/// State every handler shares.
pub(crate) struct ServerState {
    pub(crate) directory: JobDirectory,
    pub(crate) options: RestOptions,
    pub(crate) sections: Vec<Section>,
    pub(crate) registry: Registry,
    pub(crate) triggers: Mutex<Triggers>,
    pub(crate) submit: Option<SubmitHandler>,
    /// Submissions read at once (each may buffer `max_content_length`).
    pub(crate) submissions: Arc<Semaphore>,
}

/// The longest a write to a client may wait (the client does not read: its socket is full).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Submissions whose bodies are read at once.
const CONCURRENT_SUBMISSIONS: usize = 4;

pub(crate) type AppState = Arc<ServerState>;

/// Builds a [`RestServer`]: the directory it serves, and what its owner adds.
pub struct RestServerBuilder {
    options: RestOptions,
    directory: JobDirectory,
    routes: Router,
    sections: Vec<Section>,
    collectors: Vec<Box<dyn Collector>>,
    submit: Option<SubmitHandler>,
}

impl RestServerBuilder {
    /// Adds routes of the owner (they pass the same authentication and limits).
    pub fn routes(mut self, routes: Router) -> Self {
        self.routes = self.routes.merge(routes);
        self
    }

    /// Adds a dashboard section (see [`Section`]).
    pub fn section(
        mut self,
        name: &str,
        view: impl Fn() -> serde_json::Value + Send + Sync + 'static,
    ) -> Self {
        self.sections.push(Section {
            name: name.to_string(),
            view: Arc::new(view),
        });
        self
    }

    /// Adds metrics to `GET /metrics` (read on each scrape).
    pub fn collector(mut self, collector: Box<dyn Collector>) -> Self {
        self.collectors.push(collector);
        self
    }

    /// Accepts submissions at `POST /jobs` (a session runtime).
    pub fn submissions(mut self, handler: SubmitHandler) -> Self {
        self.submit = Some(handler);
        self
    }

    /// Binds and starts serving.
    ///
    /// # Errors
    ///
    /// [`RestError::Io`] when the runtime cannot start or the address cannot be bound, and
    /// [`RestError::File`] when TLS is on and its certificate or key cannot be used.
    pub fn start(self) -> Result<RestServer, RestError> {
        let address = self.options.address;
        let io = |source| RestError::Io {
            address: address.to_string(),
            source,
        };
        let tls = match &self.options.tls {
            Some((cert, key)) => Some(tls::acceptor(cert, key)?),
            None => None,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .max_blocking_threads(8)
            .thread_name("weir-rest")
            .enable_all()
            .build()
            .map_err(io)?;
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(address))
            .map_err(io)?;
        let bound = listener.local_addr().map_err(io)?;
        let mut registry = Registry::default();
        registry.register_collector(Box::new(metrics::JobsCollector {
            directory: self.directory.clone(),
        }));
        for c in self.collectors {
            registry.register_collector(c);
        }
        let state = Arc::new(ServerState {
            directory: self.directory,
            options: self.options,
            sections: self.sections,
            registry,
            triggers: Mutex::new(Triggers::default()),
            submit: self.submit,
            submissions: Arc::new(Semaphore::new(CONCURRENT_SUBMISSIONS)),
        });
        let app = router(state.clone()).merge(self.routes);
        let app = app
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                auth::authenticate,
            ))
            .layer(DefaultBodyLimit::max(state.options.max_content_length))
            .with_state(());
        let (stop_tx, stop_rx) = watch::channel(false);
        let limits = state.options.clone();
        runtime.spawn(accept_loop(listener, app, limits, tls, stop_rx));
        tracing::info!("REST API and dashboard on http://{bound}/");
        Ok(RestServer {
            address: bound,
            tls: state.options.tls.is_some(),
            stop: stop_tx,
            runtime: Some(runtime),
        })
    }
}

fn router(state: AppState) -> Router<()> {
    let mut r = Router::new()
        .route("/jobs", get(jobs::list).post(jobs::submit))
        .route("/jobs/overview", get(jobs::overview))
        .route("/jobs/{jid}", get(jobs::job).patch(jobs::patch))
        .route("/jobs/{jid}/vertices/{vid}", get(jobs::vertex))
        .route(
            "/jobs/{jid}/vertices/{vid}/backpressure",
            get(jobs::backpressure),
        )
        .route("/jobs/{jid}/exceptions", get(jobs::exceptions))
        .route(
            "/jobs/{jid}/checkpoints",
            get(checkpoints::overview).post(checkpoints::trigger_checkpoint),
        )
        .route("/jobs/{jid}/checkpoints/config", get(checkpoints::config))
        .route(
            "/jobs/{jid}/checkpoints/details/{cid}",
            get(checkpoints::details),
        )
        .route(
            "/jobs/{jid}/checkpoints/details/{cid}/subtasks/{vid}",
            get(checkpoints::subtasks),
        )
        .route(
            "/jobs/{jid}/checkpoints/{trigger}",
            get(checkpoints::trigger_status),
        )
        .route(
            "/jobs/{jid}/savepoints",
            post(checkpoints::trigger_savepoint),
        )
        .route(
            "/jobs/{jid}/savepoints/{trigger}",
            get(checkpoints::trigger_status),
        )
        .route(
            "/jobs/{jid}/stop",
            patch(jobs::not_stoppable).post(jobs::not_stoppable),
        )
        .route("/config", get(dashboard::config))
        .route("/metrics", get(metrics::scrape))
        .route("/", get(dashboard::index))
        .route("/ui/{file}", get(dashboard::file))
        .route("/dashboard/state", get(dashboard::state))
        .route("/dashboard/events", get(dashboard::events));
    for s in &state.sections {
        let view = s.view.clone();
        r = r.route(
            &format!("/{}", s.name),
            get(move || async move { axum::Json(view()) }),
        );
    }
    r.fallback(jobs::no_such_path)
        .method_not_allowed_fallback(jobs::method_not_allowed)
        .with_state(state)
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    app: Router,
    options: RestOptions,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut stop: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(options.max_connections));
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = stop.changed() => return,
        };
        let (stream, peer) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off rather than spin.
                    tracing::warn!("REST server: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let app = app.clone();
        let tls = tls.clone();
        let timeout = options.read_timeout;
        let mut stream = tokio_io_timeout::TimeoutStream::new(stream);
        stream.set_write_timeout(Some(WRITE_TIMEOUT.max(timeout)));
        let stream = Box::pin(stream);
        let stop = stop.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tls {
                Some(acceptor) => {
                    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => serve(TokioIo::new(s), app, timeout, stop, peer).await,
                        Ok(Err(e)) => tracing::debug!("REST server: TLS from {peer}: {e}"),
                        Err(_) => tracing::debug!("REST server: TLS handshake of {peer} timed out"),
                    }
                }
                None => serve(TokioIo::new(stream), app, timeout, stop, peer).await,
            }
        });
    }
}

async fn serve<I>(
    io: TokioIo<I>,
    app: Router,
    timeout: Duration,
    mut stop: watch::Receiver<bool>,
    peer: SocketAddr,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(app);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(timeout)
        .max_buf_size(64 * 1024);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!("REST server: connection of {peer}: {e}");
            }
        }
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(1), conn).await;
        }
    }
}

/// A running REST server; stops when dropped (or [`RestServer::shutdown`]).
pub struct RestServer {
    address: SocketAddr,
    tls: bool,
    stop: watch::Sender<bool>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl RestServer {
    /// A server with `options` serving `directory`, to which the owner adds routes,
    /// dashboard sections and metrics before [`RestServerBuilder::start`].
    pub fn builder(options: RestOptions, directory: JobDirectory) -> RestServerBuilder {
        RestServerBuilder {
            options,
            directory,
            routes: Router::new(),
            sections: Vec::new(),
            collectors: Vec::new(),
            submit: None,
        }
    }

    /// The address it listens on (with the actual port when `rest.port` was 0).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Its base URL, e.g. `http://127.0.0.1:8081`.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.address)
    }

    /// Stops accepting, lets requests in progress end (at most about a second), and stops.
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        let _ = self.stop.send(true);
        if let Some(rt) = self.runtime.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                // Dropped inside an async context, where blocking is not allowed.
                rt.shutdown_background();
            } else {
                // Connections got the stop signal: give responses in flight a moment.
                rt.block_on(async { tokio::time::sleep(Duration::from_millis(200)).await });
                rt.shutdown_timeout(Duration::from_millis(1500));
            }
        }
    }
}

impl Drop for RestServer {
    fn drop(&mut self) {
        self.stop_now();
    }
}
