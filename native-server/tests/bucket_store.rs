//! The object-store backend against the storage-port suite and the registry
//! core: always over `object_store`'s in-memory store, and over a real
//! S3-compatible server when `PIER_TEST_S3_ENDPOINT` names one
//! (`tests/scaleout/run.sh` starts one and sets it, with `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY` and `PIER_TEST_S3_BUCKET`).

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use object_store::memory::InMemory;
use pier_core::api::{self, Body};
use pier_core::digest::{Algorithm, Digest};
use pier_core::platform::{empty_body, full_body, Env};
use pier_core::registry::RegistryOptions;
use pier_core::store::{suite, Store};
use pier_core::Registry;
use pier_server::env::SystemEnv;
use pier_server::store::object::{BucketStore, S3Options};

/// The smallest part size S3 accepts.
const S3_PART_SIZE: usize = 5 << 20;

fn unique(name: &str) -> String {
    format!("{name}-{}/", SystemEnv.random_id())
}

/// A store over the test bucket under `prefix`, or `None` (with a note) when
/// no S3-compatible server was given.
fn s3_store(prefix: &str) -> Option<BucketStore> {
    let Ok(endpoint) = std::env::var("PIER_TEST_S3_ENDPOINT") else {
        eprintln!("skipped: PIER_TEST_S3_ENDPOINT is not set (tests/scaleout/run.sh starts a server and sets it)");
        return None;
    };
    let bucket = std::env::var("PIER_TEST_S3_BUCKET").unwrap_or_else(|_| "pier-test".into());
    let url = url::Url::parse(&format!("s3://{bucket}/{prefix}")).unwrap();
    let options = S3Options {
        endpoint: Some(endpoint),
        region: Some("us-east-1".into()),
        allow_http: Some(true),
        virtual_hosted_style: Some(false),
    };
    Some(BucketStore::open(&url, &options, S3_PART_SIZE).expect("open the test bucket"))
}

#[tokio::test]
async fn in_memory_passes_the_storage_suite() {
    let store = BucketStore::new(Arc::new(InMemory::new()), "", 4096).unwrap();
    suite::run_all(&store, "suite/").await;
}

#[tokio::test]
async fn s3_passes_the_storage_suite() {
    let Some(store) = s3_store(&unique("suite")) else {
        return;
    };
    suite::run_all(&store, "").await;
}

/// Two instances over one bucket: a multipart write started by one gets parts
/// from the other and is completed by the first.
#[tokio::test]
async fn s3_multipart_writes_continue_on_another_instance() {
    let prefix = unique("two-instances");
    let (Some(first), Some(second)) = (s3_store(&prefix), s3_store(&prefix)) else {
        return;
    };
    let part: Bytes = (0..S3_PART_SIZE).map(|i| (i % 241) as u8).collect::<Vec<_>>().into();
    let id = first.create_multipart("data/shared").await.unwrap();
    let one = second.put_part("data/shared", &id, 1, part.clone()).await.unwrap();
    let two = first
        .put_part("data/shared", &id, 2, Bytes::from_static(b"tail"))
        .await
        .unwrap();
    let meta = second
        .complete_multipart("data/shared", &id, vec![one, two])
        .await
        .unwrap();
    assert_eq!(meta.size, S3_PART_SIZE as u64 + 4);
    let read = first
        .get("data/shared", None)
        .await
        .unwrap()
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(read[..S3_PART_SIZE] == part[..] && &read[S3_PART_SIZE..] == b"tail");
}

async fn send(
    registry: &Registry,
    method: Method,
    uri: &str,
    range: Option<&str>,
    body: Bytes,
) -> http::Response<Body> {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(range) = range {
        request = request.header(http::header::RANGE, range);
    }
    let body = if body.is_empty() { empty_body() } else { full_body(body) };
    api::handle(registry, request.body(body).unwrap()).await
}

async fn body_bytes(response: http::Response<Body>) -> Vec<u8> {
    use futures::StreamExt;
    match response.into_body() {
        Body::Empty => Vec::new(),
        Body::Full(bytes) => bytes.to_vec(),
        Body::Stream { mut stream, .. } => {
            let mut out = Vec::new();
            while let Some(chunk) = stream.next().await {
                out.extend_from_slice(&chunk.unwrap());
            }
            out
        }
    }
}

/// With `redirect_blobs`, a blob GET is a 307 to a signed URL of the bytes in
/// the bucket, which serves the client's Range itself; HEAD stays local.
#[tokio::test]
async fn s3_blob_gets_redirect_to_signed_urls_that_honour_range() {
    let Some(store) = s3_store(&unique("redirect")) else {
        return;
    };
    let options = RegistryOptions {
        redirect_blobs: true,
        ..RegistryOptions::default()
    };
    let registry = Registry::new(Arc::new(store), Arc::new(SystemEnv), options);
    let content: Bytes = (0..100_000u32).map(|i| (i % 253) as u8).collect::<Vec<_>>().into();
    let digest = Digest::of(Algorithm::Sha256, &content);
    let pushed = send(
        &registry,
        Method::POST,
        &format!("/v2/redirect/app/blobs/uploads/?digest={digest}"),
        None,
        content.clone(),
    )
    .await;
    assert_eq!(pushed.status(), StatusCode::CREATED);
    let blob = format!("/v2/redirect/app/blobs/{digest}");

    let head = send(&registry, Method::HEAD, &blob, None, Bytes::new()).await;
    assert_eq!(head.status(), StatusCode::OK, "HEAD is answered by the registry");

    let redirect = send(&registry, Method::GET, &blob, Some("bytes=1000-1999"), Bytes::new()).await;
    assert_eq!(redirect.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(redirect.headers()["docker-content-digest"], digest.as_str());
    let location = redirect.headers()[http::header::LOCATION].to_str().unwrap().to_string();
    assert!(location.contains("X-Amz-Signature="), "a signed URL: {location}");

    let client = reqwest::Client::new();
    let ranged = client
        .get(&location)
        .header("range", "bytes=1000-1999")
        .send()
        .await
        .unwrap();
    assert_eq!(ranged.status().as_u16(), 206, "the bucket serves the range");
    assert_eq!(&ranged.bytes().await.unwrap()[..], &content[1000..2000]);
    let whole = client.get(&location).send().await.unwrap();
    assert_eq!(whole.status().as_u16(), 200);
    assert_eq!(whole.bytes().await.unwrap(), content);

    let invalid = send(&registry, Method::GET, &blob, Some("bytes=200000-"), Bytes::new()).await;
    assert_eq!(
        invalid.status(),
        StatusCode::RANGE_NOT_SATISFIABLE,
        "bad ranges are refused before any redirect"
    );
}

/// Without a signer (the default, and the in-memory store) blobs are served
/// by the registry even with the option on.
#[tokio::test]
async fn stores_that_cannot_sign_serve_blobs_directly() {
    let store = BucketStore::new(Arc::new(InMemory::new()), "", 4096).unwrap();
    let options = RegistryOptions {
        redirect_blobs: true,
        ..RegistryOptions::default()
    };
    let registry = Registry::new(Arc::new(store), Arc::new(SystemEnv), options);
    let content = Bytes::from_static(b"served by the registry");
    let digest = Digest::of(Algorithm::Sha256, &content);
    let uri = format!("/v2/plain/blobs/uploads/?digest={digest}");
    assert_eq!(
        send(&registry, Method::POST, &uri, None, content.clone())
            .await
            .status(),
        StatusCode::CREATED
    );
    let got = send(
        &registry,
        Method::GET,
        &format!("/v2/plain/blobs/{digest}"),
        Some("bytes=7-8"),
        Bytes::new(),
    )
    .await;
    assert_eq!(got.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(body_bytes(got).await, b"by");
}
