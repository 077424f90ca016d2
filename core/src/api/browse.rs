//! The JSON API of the web UI, for what the distribution API does not say in
//! one answer (docs/ui.md). Anything the UI shows, a script can read here too:
//!
//! - `GET /_pier/repositories?q=&n=&last=`: the repositories the caller may
//!   pull, in pages (`Link` to the next, as the catalog), optionally only
//!   those whose name contains `q`. Anonymous callers see what anonymous
//!   callers may pull.
//! - `GET /_pier/repositories/<name>/tags?n=&last=`: per tag its digest,
//!   media type, size, platforms, push time, last pull and whether it is
//!   signed, and what the caller may do on the repository (`actions`).
//!
//! Access goes through the distribution API's guard: the tags of a
//! repository are read under the same check as `/v2/<name>/tags/list`, so a
//! caller refused there is refused here with the same answer.

use http::header::CACHE_CONTROL;
use http::{HeaderValue, Method, StatusCode};
use serde_json::{json, Value};

use super::discovery::{last_param, page_size, paged};
use super::guard::{self, Access};
use super::{Body, HttpResponse, Query, Refusal, Req, Route, Service};
use crate::auth::policy::Action;
use crate::error::{ErrorCode, RegistryError, Result};
use crate::names::RepoName;
use crate::registry::TagSummary;
use crate::signing::Verdict;
use crate::time::rfc3339;

pub(super) const REPOSITORIES_PATH: &str = "/_pier/repositories";

/// Most tags summarised in one page: each costs a few store reads (its
/// record, manifest, config or child manifests, signatures).
const MAX_TAGS_PAGE: usize = 50;

/// Whether `path` is one of this API's endpoints (or under them).
pub(super) fn is_browse_path(path: &str) -> bool {
    path == REPOSITORIES_PATH || path.starts_with("/_pier/repositories/")
}

enum Endpoint {
    Repositories,
    Tags(RepoName),
}

fn endpoint(path: &str) -> Result<Endpoint> {
    let rest = path.strip_prefix(REPOSITORIES_PATH).unwrap_or(path);
    if rest.is_empty() || rest == "/" {
        return Ok(Endpoint::Repositories);
    }
    let name = rest
        .strip_prefix('/')
        .and_then(|r| r.strip_suffix("/tags"))
        .ok_or_else(|| {
            RegistryError::new(ErrorCode::Unsupported, format!("no such endpoint: {path}"))
                .with_status(StatusCode::NOT_FOUND)
        })?;
    RepoName::parse(name).map(Endpoint::Tags).ok_or_else(|| {
        RegistryError::new(ErrorCode::NameInvalid, format!("invalid repository name {name:?}"))
            .with_detail(json!({ "name": name }))
    })
}

pub(super) async fn serve(service: &Service<'_>, parts: &http::request::Parts) -> Result<HttpResponse, Refusal> {
    let endpoint = endpoint(parts.uri.path())?;
    if !matches!(parts.method, Method::GET | Method::HEAD) {
        return Err(RegistryError::new(
            ErrorCode::Unsupported,
            format!("{} is not supported on {}; GET it", parts.method, parts.uri.path()),
        )
        .with_status(StatusCode::METHOD_NOT_ALLOWED)
        .into());
    }
    let query = Query::parse(parts.uri.query());
    let access = match (service.auth, &endpoint) {
        (None, _) => Access::Open,
        (Some(auth), Endpoint::Repositories) => guard::check_listing(auth, parts).await?,
        (Some(auth), Endpoint::Tags(repo)) => guard::check(auth, parts, &Route::Tags(repo.clone()), &query).await?,
    };
    let req = Req {
        method: &parts.method,
        headers: &parts.headers,
        query: &query,
        access: &access,
    };
    let mut response = match endpoint {
        Endpoint::Repositories => repositories(service, &req).await?,
        Endpoint::Tags(repo) => tags(service, &req, &repo).await?,
    };
    // What a caller sees depends on who it is: no cache may keep it.
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if req.is_head() {
        *response.body_mut() = Body::Empty;
    }
    Ok(response)
}

async fn repositories(service: &Service<'_>, req: &Req<'_>) -> Result<HttpResponse> {
    let n = page_size(req)?;
    let contains = req.query.get("q").unwrap_or("");
    let page = service
        .registry
        .catalog(n, last_param(req), |name| {
            name.contains(contains) && req.access.lists(name)
        })
        .await?;
    let body = json!({ "repositories": page.names });
    let filter: Vec<(&str, &str)> = Some(("q", contains))
        .filter(|_| !contains.is_empty())
        .into_iter()
        .collect();
    paged(&body, page.next.as_deref(), n, REPOSITORIES_PATH, &filter)
}

async fn tags(service: &Service<'_>, req: &Req<'_>, repo: &RepoName) -> Result<HttpResponse> {
    let n = match req.query.get("n") {
        None | Some("") => MAX_TAGS_PAGE,
        Some(_) => page_size(req)?.min(MAX_TAGS_PAGE),
    };
    let registry = service.registry;
    let page = registry.tags(repo, n, last_param(req)).await?;
    let summaries = registry.tag_summaries(repo, &page.names).await?;
    let actions: Vec<&str> = Action::ALL
        .into_iter()
        .filter(|action| req.access.allows(repo, *action))
        .map(Action::as_str)
        .collect();
    let mut tags: Vec<Value> = summaries.iter().map(tag_json).collect();
    // Where a namespace policy requires signatures, which of its keys signed
    // each tag's manifest (`null`: none did): the check pulls make.
    if let Some(requirement) = service
        .signatures
        .and_then(|gate| gate.requirement(repo).map(|r| (gate, r)))
    {
        let (gate, requirement) = requirement;
        for (json, summary) in tags.iter_mut().zip(&summaries) {
            // Only what has a signature stored is checked: a page of
            // unsigned tags costs no verification reads.
            let verdict = match summary.signed {
                true => gate.verify(registry, repo, &summary.digest, &requirement).await?,
                false => Verdict::Unsigned(String::new()),
            };
            let signed_by = match verdict {
                Verdict::Signed(key) => Value::String(key),
                Verdict::Unsigned(_) => Value::Null,
            };
            if let Value::Object(fields) = json {
                fields.insert("signed_by".into(), signed_by);
            }
        }
    }
    let body = json!({
        "name": repo.as_str(),
        "actions": actions,
        "tags": tags,
    });
    paged(
        &body,
        page.next.as_deref(),
        n,
        &format!("{REPOSITORIES_PATH}/{repo}/tags"),
        &[],
    )
}

fn tag_json(summary: &TagSummary) -> Value {
    let pushed = Some(summary.pushed_ms).filter(|ms| *ms > 0);
    json!({
        "tag": summary.tag,
        "digest": summary.digest.as_str(),
        "media_type": summary.media_type,
        "size": summary.size,
        "platforms": summary.platforms.iter().map(|p| json!({
            "platform": p.platform,
            "digest": p.digest.as_str(),
            "size": p.size,
        })).collect::<Vec<Value>>(),
        "pushed": pushed.map(|ms| rfc3339(ms / 1000)),
        "pushed_ms": pushed,
        // Its manifest's last recorded pull (at most a period old: crate::pulls).
        "last_pull": summary.pulled_ms.map(|ms| rfc3339(ms / 1000)),
        "last_pull_ms": summary.pulled_ms,
        "signed": summary.signed,
    })
}
