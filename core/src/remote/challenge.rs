//! Reading the `WWW-Authenticate` challenge of another registry's 401: which
//! scheme it wants (Basic, or Bearer with a token endpoint), and for Bearer
//! the `realm`, `service` and `scope` to ask the token endpoint for. The
//! other half of `auth::challenge`, which writes pier's own.

/// What a registry asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        /// Space-separated scopes, as the registry wrote them.
        scope: Option<String>,
    },
}

/// Parses one challenge header; `None` for schemes we cannot answer.
pub fn parse(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(char::is_whitespace).unwrap_or((header, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let params = parameters(rest);
    let get = |key: &str| {
        params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.clone())
    };
    Some(Challenge::Bearer {
        realm: get("realm")?,
        service: get("service"),
        scope: get("scope"),
    })
}

/// `key=value` pairs separated by commas; values are tokens or quoted
/// strings (which may hold commas, as scopes do: `pull,push`).
fn parameters(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ',' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if key.is_empty() {
            return out;
        }
        if chars.next() != Some('=') {
            continue;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '"' => break,
                    '\\' => value.extend(chars.next()),
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        out.push((key.trim().to_string(), value.trim().to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_with_quoted_scopes_holding_commas() {
        let header = r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push repository:c:pull""#;
        assert_eq!(
            parse(header),
            Some(Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
                scope: Some("repository:a/b:pull,push repository:c:pull".into()),
            })
        );
    }

    #[test]
    fn tokens_escapes_spacing_and_case() {
        assert_eq!(
            parse(r#"bearer  realm=/token , service="a\"b",error=insufficient_scope"#),
            Some(Challenge::Bearer {
                realm: "/token".into(),
                service: Some("a\"b".into()),
                scope: None,
            })
        );
        assert_eq!(parse(r#"Basic realm="pier",charset="UTF-8""#), Some(Challenge::Basic));
        assert_eq!(parse("Negotiate abc"), None);
        assert_eq!(parse("Bearer service=x"), None, "no realm: nowhere to get a token");
        assert_eq!(parse(""), None);
        assert_eq!(parse("Bearer realm"), None);
    }
}
