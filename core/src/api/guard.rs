//! The auth hook of the API: what a request needs (pull, push or delete on
//! a repository, the catalog, or only valid credentials), checked before any
//! handler runs, and what handlers may still ask (which repositories the
//! catalog lists, whether a blob may be mounted from a source).
//!
//! Refusals follow the token protocol, so clients know what to do next:
//! - no credentials, or a token lacking a scope the caller could get:
//!   401 UNAUTHORIZED with a Bearer challenge naming every scope needed;
//! - bad credentials or a forged, expired or foreign token: 401 as well;
//! - valid credentials the policy does not allow: 403 DENIED;
//! - too many failed logins: 429 TOOMANYREQUESTS with `Retry-After`.

use http::header::{RETRY_AFTER, WWW_AUTHENTICATE};
use http::Method;

use super::{Query, Refusal, Route};
use crate::auth::challenge::{self, BearerError};
use crate::auth::policy::Action;
use crate::auth::scope::{access_permits, access_permits_catalog, Scope};
use crate::auth::{Auth, Caller, ClientAddress, LoginError};
use crate::error::{ErrorCode, RegistryError};
use crate::names::RepoName;

/// What a request may do.
pub(super) enum Access<'a> {
    /// Auth is off.
    Open,
    Checked {
        auth: &'a Auth,
        caller: Caller,
    },
}

impl Access<'_> {
    /// Whether the credentials presented cover `action` on `repo`: a token
    /// by its scopes, anything else by the policy.
    pub(super) fn allows(&self, repo: &RepoName, action: Action) -> bool {
        match self {
            Access::Open => true,
            Access::Checked { auth, caller } => allows(auth, caller, repo, action),
        }
    }

    /// Whether the caller's identity may push to `repo`, whatever its
    /// token's scopes: a client that pushed with one token and pulls with
    /// another is still the pusher (`crate::tag_cache`).
    pub(super) fn identity_may_push(&self, repo: &RepoName) -> bool {
        match self {
            Access::Open => true,
            Access::Checked { auth, caller } => auth.policy().allows(caller.identity(), repo.as_str(), Action::Push),
        }
    }

    /// Whether the catalog shows `repo` to this caller: if it may pull it.
    pub(super) fn lists(&self, repo: &str) -> bool {
        match self {
            Access::Open => true,
            Access::Checked { auth, caller } => auth.policy().allows(caller.identity(), repo, Action::Pull),
        }
    }

    /// Whether `repo` is pullable without credentials, so that shared caches
    /// may keep what it serves.
    pub(super) fn anyone_may_pull(&self, repo: &RepoName) -> bool {
        match self {
            Access::Open => true,
            Access::Checked { auth, .. } => auth.policy().allows(None, repo.as_str(), Action::Pull),
        }
    }

    /// Who is asking, as events name them: the identity's name, else `anonymous`.
    pub(super) fn actor(&self) -> &str {
        match self {
            Access::Checked { caller, .. } => caller.identity().map_or("anonymous", |i| i.name.as_str()),
            Access::Open => "anonymous",
        }
    }

    /// Whether a mount without `from` may take a blob from any repository,
    /// which only a caller who may pull everywhere (an admin) may do.
    pub(super) fn pulls_everywhere(&self) -> bool {
        match self {
            Access::Open => true,
            Access::Checked { auth, caller } => auth.policy().is_admin(caller.identity()),
        }
    }
}

fn allows(auth: &Auth, caller: &Caller, repo: &RepoName, action: Action) -> bool {
    match caller {
        Caller::Token(token) => access_permits(&token.access, repo.as_str(), action),
        other => auth.policy().allows(other.identity(), repo.as_str(), action),
    }
}

/// What a request needs.
enum Need {
    /// Valid credentials of any kind (the `/v2/` check clients log in with).
    Login,
    Catalog,
    Repository {
        repo: RepoName,
        action: Action,
        /// The source of a cross-repository mount: pulled from if allowed,
        /// else the request falls back to an ordinary upload.
        mount_from: Option<RepoName>,
    },
}

fn need(route: &Route, method: &Method, query: &Query) -> Need {
    let by_method = match *method {
        Method::GET | Method::HEAD => Action::Pull,
        Method::DELETE => Action::Delete,
        _ => Action::Push,
    };
    let on = |repo: &RepoName, action| Need::Repository {
        repo: repo.clone(),
        action,
        mount_from: None,
    };
    match route {
        Route::Ping => Need::Login,
        Route::Catalog => Need::Catalog,
        // Every step of an upload, its status and cancelling it included, is part of a push.
        Route::Upload(repo, _) => on(repo, Action::Push),
        Route::Uploads(repo) => Need::Repository {
            repo: repo.clone(),
            action: Action::Push,
            mount_from: query.get("mount").and(query.get("from")).and_then(RepoName::parse),
        },
        Route::Tags(repo) | Route::Manifest(repo, _) | Route::Blob(repo, _) | Route::Referrers(repo, _) => {
            on(repo, by_method)
        }
    }
}

impl Need {
    /// The scopes a token for this request should carry. A push asks for
    /// pull too, as clients do: pushing starts with checking what exists.
    fn scopes(&self) -> Vec<Scope> {
        match self {
            Need::Login => Vec::new(),
            Need::Catalog => vec![Scope::Catalog],
            Need::Repository {
                repo,
                action,
                mount_from,
            } => {
                let actions: &[Action] = match action {
                    Action::Push => &[Action::Pull, Action::Push],
                    other => std::slice::from_ref(other),
                };
                let mut scopes = vec![Scope::repository(repo, actions)];
                scopes.extend(mount_from.iter().map(|from| Scope::repository(from, &[Action::Pull])));
                scopes
            }
        }
    }
}

/// Builds the refusals of one request.
struct Refusals<'a> {
    auth: &'a Auth,
    realm: String,
    scopes: Vec<Scope>,
}

impl Refusals<'_> {
    fn unauthorized(&self, message: &str, error: Option<BearerError>) -> Refusal {
        let challenge = challenge::bearer(&self.realm, self.auth.service(), &self.scopes, error);
        Refusal::from(RegistryError::new(ErrorCode::Unauthorized, message)).with_header(WWW_AUTHENTICATE, &challenge)
    }

    fn login_failed(&self, error: LoginError) -> Refusal {
        match error {
            LoginError::Blocked(retry_after) => too_many_failures(retry_after),
            LoginError::Invalid => self.unauthorized("invalid credentials", None),
            LoginError::Malformed => self.unauthorized("unreadable Authorization header", None),
            LoginError::InvalidToken(why) => {
                self.unauthorized(&format!("invalid token: {why}"), Some(BearerError::InvalidToken))
            }
        }
    }

    /// A caller without `action` on `repo`: 401 when other credentials or
    /// a new token could help, 403 when the policy says no to who it is.
    fn not_allowed(&self, caller: &Caller, repo: &RepoName, action: Action) -> Refusal {
        let policy = self.auth.policy();
        match caller {
            Caller::Anonymous => self.unauthorized("authentication required", None),
            Caller::Token(token) if token.identity.is_none() => self.unauthorized("authentication required", None),
            Caller::Token(token) if policy.allows(token.identity.as_ref(), repo.as_str(), action) => self.unauthorized(
                &format!("the token does not grant {} on {repo}", action.as_str()),
                Some(BearerError::InsufficientScope),
            ),
            caller => {
                let name = caller.identity().map_or("", |i| i.name.as_str());
                Refusal::from(
                    RegistryError::new(ErrorCode::Denied, format!("{name} may not {} {repo}", action.as_str()))
                        .with_detail(serde_json::json!({ "repository": repo.as_str(), "action": action.as_str() })),
                )
            }
        }
    }
}

pub(super) fn too_many_failures(retry_after: u64) -> Refusal {
    Refusal::from(RegistryError::new(
        ErrorCode::TooManyRequests,
        format!("too many failed logins from this client; try again in {retry_after} s"),
    ))
    .with_header(RETRY_AFTER, &retry_after.to_string())
}

/// The client address the shell attached to the request, or `""`.
pub(super) fn client_of(parts: &http::request::Parts) -> &str {
    parts.extensions.get::<ClientAddress>().map_or("", |c| c.0.as_str())
}

/// Who may use an operator endpoint (one without a repository scope).
pub(super) enum Operator {
    /// Admins only (`admins`).
    Admin,
    /// Admins and `metrics_readers`.
    MetricsReader,
}

/// Authenticates the caller of an operator endpoint and checks that it may
/// use it. Such endpoints have no repository scope: any pier token of an
/// allowed identity will do, so a client gets one from the token endpoint
/// without asking for scopes.
pub(super) async fn check_operator(auth: &Auth, parts: &http::request::Parts, role: Operator) -> Result<(), Refusal> {
    let refusals = Refusals {
        auth,
        realm: auth.realm(parts),
        scopes: Vec::new(),
    };
    let caller = auth.caller(parts).await.map_err(|e| refusals.login_failed(e))?;
    let identity = caller.identity();
    let (allowed, role_name) = match role {
        Operator::Admin => (auth.policy().is_admin(identity), "an admin"),
        Operator::MetricsReader => (auth.policy().may_read_metrics(identity), "a metrics reader"),
    };
    match identity {
        _ if allowed => Ok(()),
        None => Err(refusals.unauthorized("authentication required", None)),
        Some(identity) => Err(Refusal::from(RegistryError::new(
            ErrorCode::Denied,
            format!("{} is not {role_name}", identity.name),
        ))),
    }
}

/// Authenticates the caller of a listing that shows each caller what it may
/// pull (`/_pier/repositories`): anyone may ask, anonymous callers included,
/// and each sees only what [`Access::lists`] lets through. Credentials that
/// are presented must be valid.
pub(super) async fn check_listing<'a>(auth: &'a Auth, parts: &http::request::Parts) -> Result<Access<'a>, Refusal> {
    let refusals = Refusals {
        auth,
        realm: auth.realm(parts),
        scopes: Vec::new(),
    };
    let caller = auth.caller(parts).await.map_err(|e| refusals.login_failed(e))?;
    Ok(Access::Checked { auth, caller })
}

/// Authenticates the caller and checks that it may do what the request needs.
pub(super) async fn check<'a>(
    auth: &'a Auth,
    parts: &http::request::Parts,
    route: &Route,
    query: &Query,
) -> Result<Access<'a>, Refusal> {
    let need = need(route, &parts.method, query);
    let refusals = Refusals {
        auth,
        realm: auth.realm(parts),
        scopes: need.scopes(),
    };
    let caller = auth.caller(parts).await.map_err(|e| refusals.login_failed(e))?;
    match need {
        Need::Login if matches!(caller, Caller::Anonymous) => {
            return Err(refusals.unauthorized("authentication required", None));
        }
        Need::Login => {}
        // The catalog is for identities: it lists what they may pull.
        Need::Catalog => match &caller {
            Caller::Anonymous => return Err(refusals.unauthorized("authentication required", None)),
            Caller::Token(token) if token.identity.is_none() => {
                return Err(refusals.unauthorized("authentication required", None))
            }
            Caller::Token(token) if !access_permits_catalog(&token.access) => {
                return Err(refusals.unauthorized(
                    "the token does not grant the catalog",
                    Some(BearerError::InsufficientScope),
                ));
            }
            _ => {}
        },
        Need::Repository {
            repo,
            action,
            mount_from,
        } => {
            if !allows(auth, &caller, &repo, action) {
                return Err(refusals.not_allowed(&caller, &repo, action));
            }
            if let Some(from) = &mount_from {
                // A token that could also carry the source's pull: ask for it
                // rather than quietly uploading what could be mounted.
                let token_could_get = matches!(&caller, Caller::Token(token)
                    if auth.policy().allows(token.identity.as_ref(), from.as_str(), Action::Pull));
                if token_could_get && !allows(auth, &caller, from, Action::Pull) {
                    return Err(refusals.unauthorized(
                        &format!("the token does not grant pull on the mount source {from}"),
                        Some(BearerError::InsufficientScope),
                    ));
                }
            }
        }
    }
    Ok(Access::Checked { auth, caller })
}
