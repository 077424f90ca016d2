//! The `WWW-Authenticate` challenges of 401 answers: Bearer with the token
//! endpoint (`realm`), the `service` and the scopes the request needs, so a
//! client knows where to get which token (RFC 6750 and the Docker token
//! protocol). A token endpoint refusing credentials challenges with Basic.

use super::scope::Scope;

/// Why a presented bearer token did not do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BearerError {
    /// Forged, expired, for another audience or otherwise unusable.
    InvalidToken,
    /// Valid, but without a scope this request needs (a new token may have it).
    InsufficientScope,
}

impl BearerError {
    fn as_str(self) -> &'static str {
        match self {
            BearerError::InvalidToken => "invalid_token",
            BearerError::InsufficientScope => "insufficient_scope",
        }
    }
}

fn quoted(text: &str) -> String {
    text.replace(['"', '\\'], "")
}

pub fn bearer(realm: &str, service: &str, scopes: &[Scope], error: Option<BearerError>) -> String {
    let mut value = format!("Bearer realm=\"{}\",service=\"{}\"", quoted(realm), quoted(service));
    if !scopes.is_empty() {
        let scopes: Vec<String> = scopes.iter().map(Scope::to_string).collect();
        value.push_str(&format!(",scope=\"{}\"", scopes.join(" ")));
    }
    if let Some(error) = error {
        value.push_str(&format!(",error=\"{}\"", error.as_str()));
    }
    value
}

pub fn basic(service: &str) -> String {
    format!("Basic realm=\"{}\",charset=\"UTF-8\"", quoted(service))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenges_name_realm_service_and_every_scope() {
        let scopes = [
            Scope::parse("repository:ci/app:pull,push").unwrap(),
            Scope::parse("repository:ci/base:pull").unwrap(),
        ];
        assert_eq!(
            bearer("https://r.example/token", "pier", &scopes, None),
            "Bearer realm=\"https://r.example/token\",service=\"pier\",\
             scope=\"repository:ci/app:pull,push repository:ci/base:pull\""
        );
        assert_eq!(
            bearer("/token", "pier", &[], Some(BearerError::InvalidToken)),
            "Bearer realm=\"/token\",service=\"pier\",error=\"invalid_token\""
        );
    }

    #[test]
    fn quotes_cannot_break_out_of_a_parameter() {
        assert_eq!(bearer("a\"b", "s\\", &[], None), "Bearer realm=\"ab\",service=\"s\"");
        assert_eq!(basic("pier"), "Basic realm=\"pier\",charset=\"UTF-8\"");
    }
}
