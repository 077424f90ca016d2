//! Identities proven by a TLS client certificate (mutual TLS): machines that
//! cannot hold a password or robot token, but do hold a certificate from
//! the operator's CA. The shell verifies the certificate during the TLS
//! handshake and hands core its subject ([`super::ClientCertificate`]); the
//! `[[auth.certificates]]` tables say which subjects are which identities.
//!
//! Subjects are distinguished names written as RFC 4514 strings, the way
//! `openssl x509 -noout -subject -nameopt RFC2253` prints them
//! (`CN=ci-runner,O=acme`). They are compared attribute by attribute, in
//! order, with attribute types case-insensitive and spaces around the
//! separators ignored, so `cn=ci-runner, O=acme` names the same subject.

use std::collections::HashMap;

use super::config::CertificateConfig;
use super::identity::{Identity, IdentityKind};

/// The configured certificate identities, by their subject's canonical form.
#[derive(Debug)]
pub struct Certificates {
    by_subject: HashMap<String, (String, Vec<String>)>,
}

impl Certificates {
    pub fn new(configured: &[CertificateConfig]) -> Result<Certificates, String> {
        let mut by_subject = HashMap::new();
        for certificate in configured {
            if certificate.name.is_empty() {
                return Err(format!("certificate {:?}: name must not be empty", certificate.subject));
            }
            let subject = canonical_subject(&certificate.subject).map_err(|e| {
                format!(
                    "certificate {}: subject {:?}: {e}",
                    certificate.name, certificate.subject
                )
            })?;
            let identity = (certificate.name.clone(), certificate.groups.clone());
            if by_subject.insert(subject, identity).is_some() {
                return Err(format!(
                    "certificate subject {:?} is configured twice",
                    certificate.subject
                ));
            }
        }
        Ok(Certificates { by_subject })
    }

    /// The identity of a verified certificate with this subject, if one is configured.
    pub fn identity(&self, subject: &str) -> Option<Identity> {
        let (name, groups) = self.by_subject.get(&canonical_subject(subject).ok()?)?;
        Some(Identity {
            name: name.clone(),
            groups: groups.clone(),
            kind: IdentityKind::Certificate,
        })
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_subject.values().map(|(name, _)| name.as_str())
    }
}

/// A subject as one comparable string: its attributes in order, each
/// `TYPE=value` with the type upper-cased and the spaces around separators
/// dropped. Escaped separators (`\,`, `\+`) stay part of their value.
fn canonical_subject(subject: &str) -> Result<String, String> {
    let mut attributes = Vec::new();
    for attribute in split_unescaped(subject, &[',', '+']) {
        let (kind, value) = attribute
            .split_once('=')
            .ok_or_else(|| format!("{:?} is not TYPE=value", attribute.trim()))?;
        let (kind, value) = (kind.trim(), value.trim());
        if kind.is_empty() || value.is_empty() {
            return Err(format!("{:?} is not TYPE=value", attribute.trim()));
        }
        attributes.push(format!("{}={value}", kind.to_ascii_uppercase()));
    }
    if attributes.is_empty() {
        return Err("an empty subject".into());
    }
    Ok(attributes.join(","))
}

/// `text` cut at each separator not escaped by a backslash.
fn split_unescaped<'a>(text: &'a str, separators: &[char]) -> Vec<&'a str> {
    let mut parts = Vec::new();
    let (mut start, mut escaped) = (0, false);
    for (at, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            c if separators.contains(&c) => {
                parts.extend(text.get(start..at));
                start = at + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.extend(text.get(start..));
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configured(subject: &str, name: &str) -> CertificateConfig {
        CertificateConfig {
            subject: subject.into(),
            name: name.into(),
            groups: vec!["ci".into()],
        }
    }

    #[test]
    fn subjects_match_whatever_the_spacing_and_type_case() {
        let certificates = Certificates::new(&[configured("CN=ci-runner,O=acme", "ci-runner")]).unwrap();
        for presented in ["CN=ci-runner,O=acme", "cn=ci-runner, o=acme", " CN = ci-runner ,O=acme"] {
            let identity = certificates.identity(presented).unwrap();
            assert_eq!(identity.name, "ci-runner", "{presented}");
            assert_eq!(identity.kind, IdentityKind::Certificate);
        }
        for other in [
            "CN=ci-runner",
            "O=acme,CN=ci-runner",
            "CN=ci-runner,O=Acme",
            "CN=ci-runner\\,O=acme",
            "",
        ] {
            assert!(certificates.identity(other).is_none(), "{other}");
        }
    }

    #[test]
    fn escaped_separators_stay_in_their_value() {
        assert_eq!(
            canonical_subject("cn=Smith\\, John,o=acme").unwrap(),
            "CN=Smith\\, John,O=acme"
        );
        assert_eq!(canonical_subject("CN=a+uid=b").unwrap(), "CN=a,UID=b");
    }

    #[test]
    fn bad_subjects_and_duplicates_are_refused() {
        for bad in ["", "ci-runner", "CN=", "=x", "CN=a,,O=b"] {
            assert!(Certificates::new(&[configured(bad, "x")]).is_err(), "{bad:?}");
        }
        let twice = [configured("CN=a,O=b", "x"), configured("cn=a, o=b", "y")];
        assert!(Certificates::new(&twice).unwrap_err().contains("twice"));
        assert!(Certificates::new(&[configured("CN=a", "")]).is_err());
    }
}
