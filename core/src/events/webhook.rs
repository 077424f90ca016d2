//! Webhooks: events POSTed as JSON to a receiver the operator configured,
//! filtered by action and repository, with configured headers (a shared
//! secret in `Authorization`) and a timeout per attempt. A receiver
//! answering anything but 2xx, or not answering in time, gets the same
//! event (same `id`) again later: the outbox (`outbox`) keeps it and
//! retries with backoff.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE, USER_AGENT};
use serde::Deserialize;

use super::retry::{self, within};
use super::{target_id, Action, Event};
use crate::glob::Glob;
use crate::platform::Background;
use crate::remote::http::{read_body, send, HttpClient, OutgoingBody, Redirects};

const DEFAULT_TIMEOUT_SECS: u64 = 10;
/// What is read of a receiver's answer (and ignored).
const ANSWER_LIMIT: usize = 64 << 10;

fn default_events() -> Vec<Action> {
    vec![Action::Push, Action::Delete]
}

fn every_repository() -> String {
    "**".into()
}

fn default_timeout_secs() -> u64 {
    DEFAULT_TIMEOUT_SECS
}

/// One receiver, as configured (`[[webhook]]` on native).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where events are POSTed (`http://` or `https://`).
    pub url: String,
    /// Which actions: `push`, `delete`, `pull`. Default: push and delete.
    #[serde(default = "default_events")]
    pub events: Vec<Action>,
    /// Only events on repositories matching this glob. Default: all.
    #[serde(default = "every_repository")]
    pub repository: String,
    /// Headers sent with every delivery, e.g. `Authorization`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Seconds one attempt may take.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// Attempts per event before giving up.
    #[serde(default = "retry::default_attempts")]
    pub attempts: u32,
}

pub struct Webhook {
    id: String,
    url: http::Uri,
    events: Vec<Action>,
    repository: Glob,
    headers: Vec<(HeaderName, HeaderValue)>,
    timeout: Duration,
    attempts: u32,
    http: Arc<dyn HttpClient>,
}

impl Webhook {
    pub fn new(config: &WebhookConfig, http: Arc<dyn HttpClient>) -> Result<Webhook, String> {
        let at = |why: String| format!("webhook {:?}: {why}", config.url);
        let url: http::Uri = config.url.parse().map_err(|e| at(format!("not a URL: {e}")))?;
        if !matches!(url.scheme_str(), Some("http" | "https")) || url.host().is_none() {
            return Err(at("the URL must be http:// or https:// with a host".into()));
        }
        let headers = config
            .headers
            .iter()
            .map(|(name, value)| {
                let name =
                    HeaderName::from_bytes(name.as_bytes()).map_err(|_| at(format!("bad header name {name:?}")))?;
                let value = HeaderValue::from_str(value).map_err(|_| at(format!("bad value of header {name}")))?;
                Ok((name, value))
            })
            .collect::<Result<_, String>>()?;
        if config.events.is_empty() {
            return Err(at("events is empty: it would never be called".into()));
        }
        if config.timeout_secs == 0 {
            return Err(at("timeout_secs must be at least 1".into()));
        }
        let events: Vec<&str> = config.events.iter().map(|a| a.as_str()).collect();
        Ok(Webhook {
            id: target_id('w', &[&config.url, &config.repository, &events.join(",")]),
            url,
            events: config.events.clone(),
            repository: Glob::new(&config.repository).map_err(at)?,
            headers,
            timeout: Duration::from_secs(config.timeout_secs),
            attempts: retry::check_attempts(config.attempts).map_err(at)?,
            http,
        })
    }

    pub fn wants(&self, action: Action, repo: &str) -> bool {
        self.events.contains(&action) && self.repository.matches(repo)
    }

    /// Where its deliveries wait in the outbox: the same id for the same
    /// receiver and filter across restarts and instances.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// One attempt at delivering `event`, within the timeout.
    pub async fn attempt(&self, event: &Event, background: &dyn Background) -> Result<(), String> {
        // An event is a struct of strings and numbers: its JSON cannot fail.
        let body = Bytes::from(serde_json::to_vec(event).unwrap_or_default());
        within(background, self.timeout, self.post(body)).await
    }

    async fn post(&self, body: Bytes) -> Result<(), String> {
        let mut request = http::Request::post(self.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(USER_AGENT, concat!("pier/", env!("CARGO_PKG_VERSION")))
            .body(OutgoingBody::Full(body))
            .map_err(|e| e.to_string())?;
        for (name, value) in &self.headers {
            request.headers_mut().insert(name.clone(), value.clone());
        }
        // A redirect is not followed: the configured headers (a shared
        // secret) are for the configured receiver alone.
        let response = send(self.http.as_ref(), request, Redirects::Never)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        // Read the answer so the connection can be reused; its content does not matter.
        let _ = read_body(response.into_body(), ANSWER_LIMIT).await;
        if status.is_success() {
            Ok(())
        } else if status.is_redirection() {
            Err(format!(
                "the receiver answered {status}: webhooks follow no redirect, configure the final URL"
            ))
        } else {
            Err(format!("the receiver answered {status}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> WebhookConfig {
        serde_json::from_str(text).unwrap()
    }

    use crate::testing::NoNetwork;

    fn hook(text: &str) -> Result<Webhook, String> {
        Webhook::new(&config(text), Arc::new(NoNetwork))
    }

    #[test]
    fn filters_by_action_and_repository() {
        let all = hook(r#"{"url": "http://127.0.0.1:9/hook"}"#).unwrap();
        assert!(all.wants(Action::Push, "a/b") && all.wants(Action::Delete, "a"));
        assert!(!all.wants(Action::Pull, "a"), "pulls only when asked for");
        let some = hook(r#"{"url": "https://h/x", "events": ["pull"], "repository": "team/**"}"#).unwrap();
        assert!(some.wants(Action::Pull, "team/app"));
        assert!(!some.wants(Action::Pull, "other/app") && !some.wants(Action::Push, "team/app"));
    }

    #[test]
    fn bad_configurations_are_refused() {
        for bad in [
            r#"{"url": "ftp://h/x"}"#,
            r#"{"url": "/relative"}"#,
            r#"{"url": "http://h/", "events": []}"#,
            r#"{"url": "http://h/", "headers": {"bad name": "x"}}"#,
            r#"{"url": "http://h/", "attempts": 0}"#,
            r#"{"url": "http://h/", "timeout_secs": 0}"#,
            r#"{"url": "http://h/", "repository": ""}"#,
        ] {
            assert!(hook(bad).is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<WebhookConfig>(r#"{"url": "http://h/", "events": ["poke"]}"#).is_err());
    }
}
