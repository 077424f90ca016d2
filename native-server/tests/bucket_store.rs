//! The object-store backend against the storage contract and the registry
//! core: always over `object_store`'s in-memory store, and over real servers
//! when the environment names them (`tests/scaleout/run.sh` starts emulators
//! and sets these):
//!
//! - S3: `PIER_TEST_S3_ENDPOINT` (an S3-compatible server), with
//!   `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `PIER_TEST_S3_BUCKET`.
//! - Azure Blob: `PIER_TEST_AZURE_CONTAINER`, an existing container; the
//!   account, credentials and endpoint come from `object_store`'s `AZURE_*`
//!   variables as in `pier serve` (for Azurite: `AZURE_STORAGE_USE_EMULATOR=true`
//!   and `AZURITE_BLOB_STORAGE_URL`).
//! - GCS: `PIER_TEST_GCS_BUCKET`, an existing bucket; credentials and endpoint
//!   from the `GOOGLE_*` variables (for an emulator, `GOOGLE_SERVICE_ACCOUNT_KEY`
//!   holding a key with `"disable_oauth": true` and `"gcs_base_url"`). No
//!   emulator here takes GCS's XML API writes, so no runner sets it yet (see
//!   docs/scale-out.md); what fake-gcs-server can show (the contract's
//!   checks that write nothing, and reads of objects written through its
//!   JSON API) is tested when `PIER_TEST_GCS_EMULATOR` names its base URL
//!   (bucket `PIER_TEST_GCS_EMULATOR_BUCKET`, key as above).
//!
//! Each backend's tests are named after it (`s3_`, `azure_`, `gcs_`), so a
//! runner can select one with a test-name filter.

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use object_store::memory::InMemory;
use pier_core::api::{self, Body};
use pier_core::body::{empty_body, full_body};
use pier_core::digest::{Algorithm, Digest};
use pier_core::platform::Env;
use pier_core::registry::RegistryOptions;
use pier_core::store::{contract, Store};
use pier_core::Registry;
use pier_server::env::SystemEnv;
use pier_server::store::object::{BucketStore, S3Options};

/// The smallest part size S3 and GCS accept (Azure takes any).
const PART_SIZE: usize = 5 << 20;

fn unique(name: &str) -> String {
    format!("{name}-{}/", SystemEnv.random_id())
}

/// A real object store the tests may be pointed at.
#[derive(Clone, Copy)]
enum Backend {
    S3,
    Azure,
    Gcs,
}

impl Backend {
    /// The variable that enables this backend's tests.
    fn variable(self) -> &'static str {
        match self {
            Backend::S3 => "PIER_TEST_S3_ENDPOINT",
            Backend::Azure => "PIER_TEST_AZURE_CONTAINER",
            Backend::Gcs => "PIER_TEST_GCS_BUCKET",
        }
    }

    /// The query parameter that carries the signature of a signed URL.
    fn signature_parameter(self) -> &'static str {
        match self {
            Backend::S3 => "X-Amz-Signature",
            Backend::Azure => "sig",
            Backend::Gcs => "X-Goog-Signature",
        }
    }

    /// A store over the test bucket under `prefix`, or `None` (with a note)
    /// when the environment names no server for this backend.
    fn store(self, prefix: &str) -> Option<BucketStore> {
        let Ok(value) = std::env::var(self.variable()) else {
            eprintln!(
                "skipped: {} is not set (the top of tests/bucket_store.rs says what runs these)",
                self.variable()
            );
            return None;
        };
        let (url, options) = match self {
            Backend::S3 => {
                let bucket = std::env::var("PIER_TEST_S3_BUCKET").unwrap_or_else(|_| "pier-test".into());
                let options = S3Options {
                    endpoint: Some(value),
                    region: Some("us-east-1".into()),
                    allow_http: Some(true),
                    virtual_hosted_style: Some(false),
                };
                (format!("s3://{bucket}/{prefix}"), options)
            }
            Backend::Azure => (format!("az://{value}/{prefix}"), S3Options::default()),
            Backend::Gcs => (format!("gs://{value}/{prefix}"), S3Options::default()),
        };
        let url = url::Url::parse(&url).unwrap();
        Some(BucketStore::open(&url, &options, PART_SIZE).expect("open the test bucket"))
    }
}

#[tokio::test]
async fn in_memory_keeps_the_storage_contract() {
    let store = BucketStore::new(Arc::new(InMemory::new()), "", 4096).unwrap();
    let results = contract::run(&store, &SystemEnv, "contract/").await;
    assert_eq!(contract::all_passed(&results), Ok(contract::check_names().count()));
}

/// One test per backend of a check taking a [`Backend`], named after both
/// (`s3_<check>`, ...), so a runner selects a backend by name.
macro_rules! per_backend {
    ($check:ident: $($test:ident => $backend:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $test() {
                $check(Backend::$backend).await;
            }
        )+
    };
}

/// Every check of the contract, each with its time (a slow backend shows).
async fn keeps_the_storage_contract(backend: Backend) {
    let Some(store) = backend.store(&unique("contract")) else {
        return;
    };
    let results = contract::run(&store, &SystemEnv, "contract/").await;
    for result in &results {
        eprintln!("{:<32} {:>6} ms  {:?}", result.name, result.elapsed_ms, result.outcome);
    }
    assert_eq!(contract::all_passed(&results), Ok(contract::check_names().count()));
    assert!(
        store.list("", None, 1).await.unwrap().keys.is_empty(),
        "the contract leaves nothing behind"
    );
}

per_backend!(keeps_the_storage_contract:
    s3_keeps_the_storage_contract => S3,
    azure_keeps_the_storage_contract => Azure,
    gcs_keeps_the_storage_contract => Gcs,
);

/// Two instances over one bucket: a multipart write started by one gets parts
/// from the other and is completed by the first.
async fn multipart_writes_continue_on_another_instance(backend: Backend) {
    let prefix = unique("two-instances");
    let (Some(first), Some(second)) = (backend.store(&prefix), backend.store(&prefix)) else {
        return;
    };
    let part: Bytes = (0..PART_SIZE).map(|i| (i % 241) as u8).collect::<Vec<_>>().into();
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
    assert_eq!(meta.size, PART_SIZE as u64 + 4);
    let read = first
        .get("data/shared", None)
        .await
        .unwrap()
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(read[..PART_SIZE] == part[..] && &read[PART_SIZE..] == b"tail");
}

per_backend!(multipart_writes_continue_on_another_instance:
    s3_multipart_writes_continue_on_another_instance => S3,
    azure_multipart_writes_continue_on_another_instance => Azure,
    gcs_multipart_writes_continue_on_another_instance => Gcs,
);

/// The contract's checks that fake-gcs-server can answer: those that write
/// nothing. Every other check begins with a write through the XML API (a
/// `put`, or `create_multipart`), which the emulator refuses with `400
/// invalid uploadType` (docs/scale-out.md), so they are skipped here, not
/// failed: the gap is the emulator's, and `tests/scaleout/run.sh` checks
/// that it is still there.
#[tokio::test]
async fn gcs_emulator_keeps_the_contract_where_nothing_is_written() {
    const WRITE_FREE: [&str; 2] = ["list", "missing keys"];
    let Some(GcsEmulator { store, .. }) = gcs_emulator("contract") else {
        return;
    };
    let results = contract::run_selected(&store, &SystemEnv, "contract/", |name| WRITE_FREE.contains(&name)).await;
    let skipped: Vec<&str> = contract::check_names()
        .filter(|name| results.iter().all(|result| result.name != *name))
        .collect();
    eprintln!("skipped (each writes first, which the emulator refuses): {skipped:?}");
    assert_eq!(
        contract::all_passed(&results),
        Ok(WRITE_FREE.len() + 1),
        "the write-free checks and the cleanup"
    );
}

/// fake-gcs-server, when the environment names one.
struct GcsEmulator {
    /// Its base URL, for its JSON API.
    base: String,
    bucket: String,
    /// A fresh prefix in the bucket, and a store keeping its keys under it.
    prefix: String,
    store: BucketStore,
}

/// The emulator with a store under a fresh prefix starting with `name`, or
/// `None` (with a note) when no emulator is named.
fn gcs_emulator(name: &str) -> Option<GcsEmulator> {
    let Ok(base) = std::env::var("PIER_TEST_GCS_EMULATOR") else {
        eprintln!(
            "skipped: PIER_TEST_GCS_EMULATOR is not set (tests/scaleout/run.sh starts fake-gcs-server and sets it)"
        );
        return None;
    };
    let bucket = std::env::var("PIER_TEST_GCS_EMULATOR_BUCKET").unwrap_or_else(|_| "pier-test".into());
    let prefix = unique(name);
    let url = url::Url::parse(&format!("gs://{bucket}/{prefix}")).unwrap();
    let store = BucketStore::open(&url, &S3Options::default(), PART_SIZE).expect("open the emulator's bucket");
    Some(GcsEmulator {
        base,
        bucket,
        prefix,
        store,
    })
}

/// Writes an object through fake-gcs-server's JSON API, returning its generation.
async fn gcs_emulator_upload(base: &str, bucket: &str, name: &str, body: &'static [u8]) -> String {
    let mut url = url::Url::parse(&format!("{base}/upload/storage/v1/b/{bucket}/o")).unwrap();
    url.query_pairs_mut()
        .append_pair("uploadType", "media")
        .append_pair("name", name);
    let response = reqwest::Client::new().post(url).body(body).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200, "JSON API upload of {name}");
    let object: serde_json::Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    object["generation"].as_str().expect("a generation").to_string()
}

/// What fake-gcs-server can show of the GCS backend. It takes none of the
/// XML API writes `object_store` sends (docs/scale-out.md), so objects are
/// written through its JSON API here, and pier's reads of them are checked:
/// the generation as the version (what conditional updates match on GCS),
/// ranged reads, listing after a cursor, deletes.
#[tokio::test]
async fn gcs_emulator_reads_objects_written_through_its_json_api() {
    let Some(GcsEmulator {
        base,
        bucket,
        prefix,
        store,
    }) = gcs_emulator("emulator")
    else {
        return;
    };
    let object = |key: &str| format!("{prefix}{key}");

    const DATA: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let first = gcs_emulator_upload(&base, &bucket, &object("data"), DATA).await;
    let head = store.head("data").await.unwrap().expect("pier sees the object");
    assert_eq!(
        (head.size, head.etag.as_str()),
        (DATA.len() as u64, first.as_str()),
        "the version is the generation"
    );
    let part = store.get("data", Some(10..20)).await.unwrap().expect("ranged get");
    assert_eq!(part.meta.etag, first, "a read reports the generation too");
    assert_eq!(&part.bytes().await.unwrap()[..], &DATA[10..20]);
    let second = gcs_emulator_upload(&base, &bucket, &object("data"), b"rewritten").await;
    assert_ne!(second, first);
    assert_eq!(
        store.head("data").await.unwrap().unwrap().etag,
        second,
        "a rewrite is a new version"
    );

    for key in ["k/00", "k/01", "k/02", "k/03"] {
        gcs_emulator_upload(&base, &bucket, &object(key), b"x").await;
    }
    let page = store.list("k/", None, 2).await.unwrap();
    assert_eq!((page.keys, page.more), (vec!["k/00".to_string(), "k/01".into()], true));
    let page = store.list("k/", Some("k/01"), 10).await.unwrap();
    assert_eq!(
        (page.keys, page.more),
        (vec!["k/02".to_string(), "k/03".into()], false),
        "after the cursor"
    );

    store.delete("k/00").await.unwrap();
    assert_eq!(store.head("k/00").await.unwrap(), None, "deleted");
    store.delete("k/00").await.expect("deleting a missing key succeeds");
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
    api::handle(api::Service::open(registry), request.body(body).unwrap()).await
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
async fn blob_gets_redirect_to_signed_urls_that_honour_range(backend: Backend) {
    let Some(store) = backend.store(&unique("redirect")) else {
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
    let signature = format!("{}=", backend.signature_parameter());
    assert!(location.contains(&signature), "a signed URL: {location}");

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

// Not GCS: signing there needs a service-account key or the IAM signBlob
// API, which no emulator offers.
per_backend!(blob_gets_redirect_to_signed_urls_that_honour_range:
    s3_blob_gets_redirect_to_signed_urls_that_honour_range => S3,
    azure_blob_gets_redirect_to_signed_urls_that_honour_range => Azure,
);

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
