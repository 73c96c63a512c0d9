//! Bearer JWT authentication (HS256 only: `alg: none` and every other algorithm are refused,
//! expiry is checked) and the demo token endpoint.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::http::error_json;

/// The claims of our tokens.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The user ID, forwarded as `X-User-ID`.
    pub sub: String,
    /// The role, forwarded as `X-User-Role`.
    pub role: String,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Issued at, seconds since the epoch.
    pub iat: u64,
}

/// Signs and verifies tokens.
#[derive(Clone)]
pub struct Jwt {
    encoding: Arc<EncodingKey>,
    decoding: Arc<DecodingKey>,
    ttl: Duration,
}

impl std::fmt::Debug for Jwt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwt")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Jwt {
    /// HS256 with `secret`; tokens live `ttl`.
    pub fn new(secret: &[u8], ttl: Duration) -> Self {
        Self {
            encoding: Arc::new(EncodingKey::from_secret(secret)),
            decoding: Arc::new(DecodingKey::from_secret(secret)),
            ttl,
        }
    }

    /// A token for `sub` with `role`.
    ///
    /// # Errors
    ///
    /// When signing fails.
    pub fn issue(&self, sub: &str, role: &str) -> Result<String, jsonwebtoken::errors::Error> {
        let iat = now();
        let claims = Claims {
            sub: sub.to_owned(),
            role: role.to_owned(),
            iat,
            exp: iat + self.ttl.as_secs(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
    }

    /// The claims of a valid token: HS256, signature, `exp` (no leeway) and `sub` checked.
    ///
    /// # Errors
    ///
    /// Whatever is wrong with the token.
    pub fn verify(&self, token: &str) -> Result<Claims, jsonwebtoken::errors::Error> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).map(|t| t.claims)
    }
}

/// Middleware: 401 `No token provided` without a bearer token, 401 `Invalid token` for a bad
/// one; otherwise `X-User-ID` and `X-User-Role` are set from the token (replacing any the
/// client sent).
pub async fn require(State(jwt): State<Jwt>, mut request: Request, next: Next) -> Response {
    let headers = request.headers_mut();
    // Never trust identity headers from the outside.
    headers.remove("x-user-id");
    headers.remove("x-user-role");
    let token = headers
        .get(http::header::AUTHORIZATION)
        .map(|v| bearer(v.to_str().unwrap_or("\u{0}invalid")).to_owned())
        .unwrap_or_default();
    if token.is_empty() {
        return error_json(StatusCode::UNAUTHORIZED, "No token provided");
    }
    let claims = match jwt.verify(&token) {
        Ok(claims) => claims,
        Err(error) => {
            tracing::debug!(%error, "token refused");
            return error_json(StatusCode::UNAUTHORIZED, "Invalid token");
        }
    };
    let (Ok(id), Ok(role)) = (
        HeaderValue::from_str(&claims.sub),
        HeaderValue::from_str(&claims.role),
    ) else {
        return error_json(StatusCode::UNAUTHORIZED, "Invalid token");
    };
    headers.insert("x-user-id", id);
    headers.insert("x-user-role", role);
    request.extensions_mut().insert(claims);
    next.run(request).await
}

/// The token of an `Authorization` value: what follows the `Bearer` scheme (any case), empty
/// for a bare `Bearer`, the whole value for any other scheme (which then fails to verify).
fn bearer(value: &str) -> &str {
    let value = value.trim();
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
        None if value.eq_ignore_ascii_case("bearer") => "",
        _ => value,
    }
}

/// The demo's credentials.
pub const DEMO_USERS: [(&str, &str, &str); 2] = [
    ("demo", "sinew-demo", "user"),
    ("admin", "sinew-admin", "admin"),
];

#[derive(Debug, Deserialize)]
pub(crate) struct Login {
    username: String,
    password: String,
}

/// `POST /auth/token` with `{"username": "demo", "password": "sinew-demo"}`.
pub(crate) async fn token(State(jwt): State<Jwt>, Json(login): Json<Login>) -> Response {
    let Some((user, _, role)) = DEMO_USERS
        .iter()
        .find(|(u, p, _)| *u == login.username && *p == login.password)
    else {
        return error_json(StatusCode::UNAUTHORIZED, "Invalid credentials");
    };
    match jwt.issue(user, role) {
        Ok(token) => Json(serde_json::json!({
            "token": token,
            "tokenType": "Bearer",
            "expiresIn": jwt.ttl.as_secs(),
        }))
        .into_response(),
        Err(error) => {
            tracing::error!(%error, "cannot sign a token");
            error_json(StatusCode::INTERNAL_SERVER_ERROR, "cannot issue a token")
        }
    }
}
