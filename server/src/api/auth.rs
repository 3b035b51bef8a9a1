//! Bearer-token access to the HTTP API (issue: "bound to loopback by default; when bound to
//! any other address it requires a bearer token"). `config` refuses a non-loopback `bind`
//! without a token; here, when a token is configured, every request must carry
//! `Authorization: Bearer <token>` or gets 401 with `WWW-Authenticate: Bearer` (RFC 6750
//! §3). Without a token (loopback) everything passes.
//!
//! The comparison does not stop at the first differing byte, and compares SHA-256 digests so
//! that the token's length does not show in the timing either.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::config::HttpToken;

/// The middleware (`axum::middleware::from_fn_with_state(token, require_bearer)`).
pub async fn require_bearer(
    State(token): State<Option<HttpToken>>,
    request: Request,
    next: Next,
) -> Response {
    match &token {
        Some(token) if !authorized(request.headers(), token) => unauthorized(),
        _ => next.run(request).await,
    }
}

/// True when the request's `Authorization` header is `Bearer <token>` (scheme
/// case-insensitive, RFC 7235 §2.1).
pub fn authorized(headers: &HeaderMap, token: &HttpToken) -> bool {
    // A header that is not visible ASCII cannot hold our (visible ASCII) token.
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some((scheme, presented)) = value.trim().split_once(' ') else {
        return false;
    };
    scheme.eq_ignore_ascii_case("bearer") && same_secret(presented.trim(), token.expose())
}

fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        "a bearer token is required",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(header::AUTHORIZATION, v);
        }
        h
    }

    #[test]
    fn only_the_right_bearer_token_passes() {
        let token = HttpToken::new("s3cret");
        assert!(authorized(&with("Bearer s3cret"), &token));
        assert!(authorized(&with("bearer s3cret"), &token));
        assert!(!authorized(&with("Bearer s3cre"), &token));
        assert!(!authorized(&with("Bearer s3cret2"), &token));
        assert!(!authorized(&with("Basic s3cret"), &token));
        assert!(!authorized(&with("s3cret"), &token));
        assert!(!authorized(&with("Bearer "), &token));
        assert!(!authorized(&HeaderMap::new(), &token));
    }
}
