//! `WWW-Authenticate` both ways. Reading: the challenge of another
//! registry's 401 (a mirror's upstream, the destination of `pier copy` or of
//! replication), then its token endpoint's answer and the answers after it,
//! all from a peer that may be hostile: nothing it sends may panic pier.
//! Writing: pier's own challenges must read back as they were meant, and
//! must be valid header values whenever their parts are.
#![no_main]

use std::sync::Arc;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use pier_core::auth::challenge::{basic, bearer, BearerError};
use pier_core::auth::scope::Scope;
use pier_core::digest::{Algorithm, Digest};
use pier_core::names::Tag;
use pier_core::records::Reference;
use pier_core::remote::challenge::{parse, Challenge};
use pier_core::remote::{Credentials, RegistryClient};
use pier_core::testing::TestEnv;
use pier_fuzz::{run, ScriptedAnswer, ScriptedPeer};

#[derive(Arbitrary, Debug)]
struct Input {
    /// The upstream's challenge.
    challenge: ChallengeGen,
    /// pier logs in to the upstream (else it asks anonymously).
    with_credentials: bool,
    token_status: Status,
    token_body: TokenBody,
    /// What the upstream answers next, in order.
    answers: Vec<Answer>,
    operation: Operation,
    /// pier's own challenge.
    realm: String,
    service: String,
    scopes: Vec<String>,
    insufficient_scope: bool,
}

#[derive(Arbitrary, Debug)]
enum ChallengeGen {
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
    Basic,
    Raw(String),
}

impl ChallengeGen {
    fn text(&self) -> String {
        match self {
            ChallengeGen::Bearer { realm, service, scope } => {
                let mut text = format!("Bearer realm=\"{realm}\"");
                if let Some(service) = service {
                    text.push_str(&format!(",service=\"{service}\""));
                }
                if let Some(scope) = scope {
                    text.push_str(&format!(",scope=\"{scope}\""));
                }
                text
            }
            ChallengeGen::Basic => "Basic realm=\"upstream\"".into(),
            ChallengeGen::Raw(text) => text.clone(),
        }
    }
}

/// Statuses that matter, and any other.
#[derive(Arbitrary, Debug)]
enum Status {
    Ok,
    Created,
    Accepted,
    NotFound,
    Unauthorized,
    Other(u16),
}

impl Status {
    fn code(&self) -> u16 {
        match self {
            Status::Ok => 200,
            Status::Created => 201,
            Status::Accepted => 202,
            Status::NotFound => 404,
            Status::Unauthorized => 401,
            Status::Other(code) => *code,
        }
    }
}

/// A token endpoint's answer: the fields pier reads, or any text.
#[derive(Arbitrary, Debug)]
enum TokenBody {
    Fields {
        token: Option<String>,
        access_token: Option<String>,
        expires_in: Option<u64>,
    },
    Raw(String),
}

impl TokenBody {
    fn bytes(&self) -> Vec<u8> {
        match self {
            TokenBody::Fields {
                token,
                access_token,
                expires_in,
            } => serde_json::to_vec(&serde_json::json!({
                "token": token,
                "access_token": access_token,
                "expires_in": expires_in,
            }))
            .expect("json"),
            TokenBody::Raw(text) => text.clone().into_bytes(),
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Answer {
    status: Status,
    headers: Vec<(HeaderChoice, String)>,
    body: Vec<u8>,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum HeaderChoice {
    WwwAuthenticate,
    ContentLength,
    ContentType,
    DockerContentDigest,
    Link,
    Location,
    ChunkMinLength,
}

impl HeaderChoice {
    fn name(self) -> &'static str {
        match self {
            HeaderChoice::WwwAuthenticate => "www-authenticate",
            HeaderChoice::ContentLength => "content-length",
            HeaderChoice::ContentType => "content-type",
            HeaderChoice::DockerContentDigest => "docker-content-digest",
            HeaderChoice::Link => "link",
            HeaderChoice::Location => "location",
            HeaderChoice::ChunkMinLength => "oci-chunk-min-length",
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Operation {
    ManifestByTag,
    ManifestByDigest,
    ManifestInfo,
    BlobSize,
    Referrers,
    Tags,
    Mount,
    Push(Vec<u8>),
}

fuzz_target!(|input: Input| {
    // pier's own challenges read back as written.
    let scopes: Vec<Scope> = input.scopes.iter().filter_map(|s| Scope::parse(s)).collect();
    for scope in &scopes {
        assert_eq!(Scope::parse(&scope.to_string()).as_ref(), Some(scope));
    }
    let error = input.insufficient_scope.then_some(BearerError::InsufficientScope);
    let written = bearer(&input.realm, &input.service, &scopes, error);
    let header_safe = |s: &str| s.bytes().all(|b| (0x20..0x7f).contains(&b));
    if header_safe(&input.realm) && header_safe(&input.service) {
        assert!(http::HeaderValue::from_str(&written).is_ok(), "{written:?}");
        assert!(http::HeaderValue::from_str(&basic(&input.service)).is_ok());
    }
    let unquoted = |s: &str| s.replace(['"', '\\'], "").trim().to_string();
    match parse(&written) {
        Some(Challenge::Bearer { realm, service, scope }) => {
            assert_eq!(realm, unquoted(&input.realm));
            assert_eq!(service, Some(unquoted(&input.service)));
            let expected: Vec<String> = scopes.iter().map(Scope::to_string).collect();
            assert_eq!(scope.unwrap_or_default(), expected.join(" "));
        }
        other => panic!("{written:?} reads back as {other:?}"),
    }

    // Another registry's challenge, token endpoint and answers.
    let challenge = input.challenge.text();
    let _ = parse(&challenge);
    let mut script = vec![
        ScriptedAnswer {
            status: 401,
            headers: vec![("www-authenticate".into(), challenge)],
            body: Vec::new(),
        },
        ScriptedAnswer {
            status: input.token_status.code(),
            headers: Vec::new(),
            body: input.token_body.bytes(),
        },
    ];
    script.extend(input.answers.into_iter().take(6).map(|a| ScriptedAnswer {
        status: a.status.code(),
        headers: a.headers.into_iter().map(|(h, v)| (h.name().to_string(), v)).collect(),
        body: a.body,
    }));
    let credentials = input.with_credentials.then(|| Credentials {
        username: "pier".into(),
        password: "secret".into(),
    });
    let env = Arc::new(TestEnv::default());
    let client = RegistryClient::new(
        Arc::new(ScriptedPeer::new(script)),
        env,
        "https://upstream.example",
        credentials,
        &[],
    )
    .expect("a valid base URL");
    let repo = "library/alpine";
    let digest = Digest::of(Algorithm::Sha256, b"fuzz");
    run(async {
        match input.operation {
            Operation::ManifestByTag => {
                let _ = client
                    .manifest(repo, &Reference::Tag(Tag::parse("latest").expect("valid")))
                    .await;
            }
            Operation::ManifestByDigest => {
                if let Ok(Some(found)) = client.manifest(repo, &Reference::Digest(digest.clone())).await {
                    assert_eq!(found.digest, digest, "a manifest by digest that is not that digest");
                }
            }
            Operation::ManifestInfo => {
                let _ = client.manifest_info(repo, &Reference::Digest(digest.clone())).await;
            }
            Operation::BlobSize => {
                let _ = client.blob_size(repo, &digest).await;
            }
            Operation::Referrers => {
                let _ = client.referrers(repo, &digest).await;
            }
            Operation::Tags => {
                let _ = client.tags(repo).await;
            }
            Operation::Mount => {
                let _ = client.mount_blob(repo, &digest, "library/other").await;
            }
            Operation::Push(blob) => {
                let blob = bytes::Bytes::from(blob);
                let digest = Digest::of(Algorithm::Sha256, &blob);
                let size = blob.len() as u64;
                let body = pier_core::platform::box_stream(futures::stream::once(async move { Ok(blob) }));
                let client = client.with_chunk_size(7);
                let _ = client.push_blob(repo, &digest, size, body).await;
            }
        }
    });
});
