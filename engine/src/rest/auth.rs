//! Authentication of REST calls: a bearer token for every mutating call (any method but GET
//! and HEAD) when the server has one, and for every call when it binds outside loopback.
//!
//! The token is compared in constant time; a refused call gets 401 with a JSON `errors` list
//! and a `WWW-Authenticate: Bearer` header, and reaches no handler.
//!
//! Browsers are kept from acting for a page of another site: a mutating call that carries an
//! `Origin` other than the server's own is refused (403), and a server bound to loopback
//! answers only requests whose `Host` is a loopback name (403 otherwise), so that a page
//! reached through DNS rebinding cannot read or control the jobs.

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::server::AppState;
use super::ApiError;

/// Whether two byte strings are equal, in time that depends only on their lengths.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether `request` needs the token on this server.
fn needs_token(state: &AppState, request: &Request) -> bool {
    let reading = matches!(*request.method(), Method::GET | Method::HEAD);
    state.options.token.is_some() && (!reading || state.options.all_calls_authenticated())
}

/// The host part of a `host[:port]` authority.
fn host_of(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("");
    }
    authority.split(':').next().unwrap_or("")
}

/// Why a request is refused before authentication, if it is: a foreign `Host` on a loopback
/// server, or a mutating call from a page of another origin.
fn foreign(state: &AppState, request: &Request) -> Option<String> {
    let header = |name| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let host = header(header::HOST).unwrap_or_default();
    if state.options.address.ip().is_loopback() {
        let h = host_of(&host);
        let bound = state.options.address.ip().to_string();
        if !(h == "localhost" || h == "127.0.0.1" || h == "::1" || h == bound) {
            return Some(format!(
                "this server answers only requests for a loopback host, not '{host}'"
            ));
        }
    }
    let reading = matches!(*request.method(), Method::GET | Method::HEAD);
    if let (false, Some(origin)) = (reading, header(header::ORIGIN)) {
        let origin_authority = origin.split("://").nth(1).unwrap_or("");
        if origin_authority != host {
            return Some(format!(
                "a page of {origin} may not change anything here (cross-origin request)"
            ));
        }
    }
    None
}

/// The middleware.
pub(crate) async fn authenticate(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(why) = foreign(&state, &request) {
        return ApiError::new(StatusCode::FORBIDDEN, why).into_response();
    }
    if !needs_token(&state, &request) {
        return next.run(request).await;
    }
    let expected = state.options.token.as_deref().unwrap_or_default();
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let problem = match given {
        Some(t) if same(t.trim().as_bytes(), expected.as_bytes()) => {
            return next.run(request).await
        }
        Some(_) => "the bearer token is wrong",
        None => "this call needs a bearer token: send 'Authorization: Bearer <token>' (rest.authentication.token)",
    };
    let mut response = ApiError::new(StatusCode::UNAUTHORIZED, problem).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer realm=\"weir\""),
    );
    response
}

#[cfg(test)]
mod tests {
    #[test]
    fn constant_time_equality() {
        assert!(super::same(b"abc", b"abc"));
        assert!(!super::same(b"abc", b"abd"));
        assert!(!super::same(b"abc", b"abcd"));
    }

    #[test]
    fn hosts() {
        assert_eq!(super::host_of("127.0.0.1:8081"), "127.0.0.1");
        assert_eq!(super::host_of("[::1]:8081"), "::1");
        assert_eq!(super::host_of("localhost"), "localhost");
    }
}
