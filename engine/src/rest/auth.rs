//! Authentication of REST calls: a bearer token for every mutating call (any method but GET
//! and HEAD) when the server has one, and for every call when it binds outside loopback.
//!
//! The token is compared in constant time; a refused call gets 401 with a JSON `errors` list
//! and a `WWW-Authenticate: Bearer` header, and reaches no handler.

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

/// The middleware.
pub(crate) async fn authenticate(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
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
}
