//! The token endpoint (`/token`) of the Docker token protocol.
//!
//! - `GET /token?service=..&scope=..&scope=..` with Basic credentials (a
//!   user's password, a robot's token, or an OIDC ID token) or none
//!   (anonymous): what crane, oras, skopeo, podman and containerd use.
//! - `POST /token` with an OAuth2 form, `grant_type=password` (with
//!   `access_type=offline` for a refresh token) or `grant_type=refresh_token`:
//!   what `docker login` uses, keeping the refresh token instead of the
//!   password.
//!
//! The token grants, of the requested scopes, only what the policy allows;
//! asking for more is not an error (the registry refuses later).

use bytes::Bytes;
use http::header::{CACHE_CONTROL, WWW_AUTHENTICATE};
use http::{Method, StatusCode};
use serde_json::json;

use super::guard::{client_of, too_many_failures};
use super::{json_response, read_body, BodySlot, HttpResponse, Query, Refusal};
use crate::auth::scope::Scope;
use crate::auth::{challenge, Auth, Caller, Identity, LoginError};
use crate::error::{ErrorCode, RegistryError};
use crate::time::rfc3339;

/// Largest OAuth2 form accepted.
const FORM_LIMIT: usize = 64 << 10;

pub(super) async fn serve(
    auth: &Auth,
    parts: &http::request::Parts,
    body: &mut BodySlot,
) -> Result<HttpResponse, Refusal> {
    match parts.method {
        Method::GET => {
            let query = Query::parse(parts.uri.query());
            check_service(auth, &query)?;
            let identity = match auth.caller(parts).await {
                Ok(Caller::Anonymous) => None,
                Ok(Caller::Identified(identity)) => Some(identity),
                Ok(Caller::Token(_)) => {
                    return Err(bad_credentials(
                        auth,
                        "the token endpoint takes Basic credentials, not a token",
                    ))
                }
                Err(e) => return Err(login_failed(auth, e)),
            };
            issue(auth, identity.as_ref(), &Scope::parse_all(query.all("scope")), None)
        }
        Method::POST => {
            let form = read_body(body.take(), FORM_LIMIT).await?.ok_or_else(|| {
                RegistryError::new(ErrorCode::SizeInvalid, "token request form too large")
                    .with_status(StatusCode::PAYLOAD_TOO_LARGE)
            })?;
            let form = Query::parse(Some(&String::from_utf8_lossy(&form)));
            check_service(auth, &form)?;
            let scopes = Scope::parse_all(form.all("scope"));
            match form.get("grant_type") {
                Some("password") => {
                    let (name, password) = (form.get("username").unwrap_or(""), form.get("password").unwrap_or(""));
                    let identity = auth
                        .login(client_of(parts), name, password)
                        .await
                        .map_err(|e| login_failed(auth, e))?;
                    // OIDC identities get no refresh token (see `Auth::issue_refresh`):
                    // the answer leaves it out, and docker keeps the ID token instead.
                    let refresh = match form.get("access_type") {
                        Some("offline") => auth.issue_refresh(&identity).map_err(internal)?,
                        _ => None,
                    };
                    issue(auth, Some(&identity), &scopes, refresh)
                }
                Some("refresh_token") => {
                    let refresh = form.get("refresh_token").unwrap_or("");
                    let identity = auth
                        .refresh(refresh)
                        .ok_or_else(|| bad_credentials(auth, "invalid or expired refresh token"))?;
                    issue(auth, Some(&identity), &scopes, Some(refresh.to_string()))
                }
                other => Err(RegistryError::new(
                    ErrorCode::Unsupported,
                    format!("grant_type {other:?} is not supported: use password or refresh_token"),
                )
                .with_status(StatusCode::BAD_REQUEST)
                .into()),
            }
        }
        ref method => Err(RegistryError::new(
            ErrorCode::Unsupported,
            format!("{method} is not supported on the token endpoint"),
        )
        .into()),
    }
}

/// Tokens are only for this registry's service.
fn check_service(auth: &Auth, params: &Query) -> Result<(), Refusal> {
    match params.get("service") {
        Some(service) if service != auth.service() => Err(RegistryError::new(
            ErrorCode::Unsupported,
            format!(
                "this registry issues tokens for service {:?}, not {service:?}",
                auth.service()
            ),
        )
        .with_status(StatusCode::BAD_REQUEST)
        .into()),
        _ => Ok(()),
    }
}

fn bad_credentials(auth: &Auth, message: &str) -> Refusal {
    Refusal::from(RegistryError::new(ErrorCode::Unauthorized, message))
        .with_header(WWW_AUTHENTICATE, &challenge::basic(auth.service()))
}

fn login_failed(auth: &Auth, error: LoginError) -> Refusal {
    match error {
        LoginError::Blocked(retry_after) => too_many_failures(retry_after),
        LoginError::Invalid => bad_credentials(auth, "invalid credentials"),
        LoginError::Malformed | LoginError::InvalidToken(_) => bad_credentials(auth, "unreadable credentials"),
    }
}

fn internal(message: String) -> Refusal {
    RegistryError::new(ErrorCode::Internal, message).into()
}

fn issue(
    auth: &Auth,
    identity: Option<&Identity>,
    scopes: &[Scope],
    refresh_token: Option<String>,
) -> Result<HttpResponse, Refusal> {
    let granted = auth.grant(identity, scopes);
    let token = auth
        .tokens()
        .issue_access(identity, granted, auth.env())
        .map_err(internal)?;
    let mut body = json!({
        "token": token,
        "access_token": token,
        "expires_in": auth.tokens().access_lifetime_secs,
        "issued_at": rfc3339(auth.env().now_millis() / 1000),
    });
    if let (Some(refresh_token), Some(fields)) = (refresh_token, body.as_object_mut()) {
        fields.insert("refresh_token".into(), json!(refresh_token));
    }
    let mut response = json_response(StatusCode::OK, Bytes::from(body.to_string()));
    response
        .headers_mut()
        .insert(CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    Ok(response)
}
