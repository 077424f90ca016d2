//! `Range` on blob reads and `Content-Range` / `Content-Length` on chunked
//! uploads, through the API as a client sends them. Reads must answer
//! exactly the bytes their `Content-Range` names; a chunk the registry
//! refuses must leave the upload where it was; the blob finished at the end
//! must be exactly the chunks it accepted.
#![no_main]

use std::sync::Arc;

use arbitrary::Arbitrary;
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_RANGE, LOCATION, RANGE};
use http::{Method, StatusCode};
use libfuzzer_sys::fuzz_target;
use pier_core::body::{empty_body, full_body, RequestBody};
use pier_core::digest::{Algorithm, Digest};
use pier_core::registry::RegistryOptions;
use pier_core::store::memory::MemoryStore;
use pier_core::testing::TestEnv;
use pier_core::Registry;
use pier_fuzz::{body_in_pieces, read_response, run, split_at};

#[derive(Arbitrary, Debug)]
struct Input {
    /// Bytes per multipart part of the store: small, so chunks span parts.
    part_size: u8,
    blob: Vec<u8>,
    /// `Range` headers of reads of `blob`.
    reads: Vec<String>,
    chunks: Vec<Chunk>,
}

#[derive(Arbitrary, Debug)]
struct Chunk {
    data: Vec<u8>,
    range: RangeHeader,
    length: LengthHeader,
    /// Where the body is cut into the pieces it arrives in.
    cuts: Vec<u16>,
    /// The client disconnects after sending the pieces.
    breaks_off: bool,
}

#[derive(Arbitrary, Debug)]
enum RangeHeader {
    Absent,
    /// `start-end` of the bytes sent, from where the upload stands.
    Exact,
    /// The exact range moved by these amounts (a confused or lying client).
    Shifted(i64, i64),
    Numbers(u64, u64),
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum LengthHeader {
    Absent,
    Exact,
    Number(u64),
    Raw(String),
}

const REPO: &str = "fuzz/ranges";

fn send(
    registry: &Registry,
    method: Method,
    uri: &str,
    headers: &[(http::HeaderName, String)],
    body: RequestBody,
) -> (http::response::Parts, Bytes) {
    let mut request = http::Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let request = request.body(body).expect("a request the fuzzer built");
    let response = run(pier_core::api::handle(pier_core::api::Service::open(registry), request));
    assert!(!response.status().is_server_error(), "{uri}: {}", response.status());
    read_response(response)
}

fn header<'a>(parts: &'a http::response::Parts, name: impl http::header::AsHeaderName) -> Option<&'a str> {
    parts
        .headers
        .get(name)
        .map(|v| v.to_str().expect("a header the registry wrote is text"))
}

/// `bytes <first>-<last>/<size>`.
fn content_range(text: &str) -> (u64, u64, u64) {
    let rest = text.strip_prefix("bytes ").expect("Content-Range says bytes");
    let (range, size) = rest.split_once('/').expect("Content-Range has a size");
    let (first, last) = range.split_once('-').expect("Content-Range has first-last");
    (first.parse().unwrap(), last.parse().unwrap(), size.parse().unwrap())
}

fn valid_header_value(text: &str) -> bool {
    http::HeaderValue::from_str(text).is_ok()
}

fuzz_target!(|input: Input| {
    let mut blob = input.blob;
    blob.truncate(4096);
    let store = Arc::new(MemoryStore::new(1 + input.part_size as usize % 64));
    let registry = Registry::new(store, Arc::new(TestEnv::default()), RegistryOptions::default());

    // Reads of a stored blob with whatever Range a client sends.
    let digest = Digest::of(Algorithm::Sha256, &blob);
    let (parts, _) = send(
        &registry,
        Method::POST,
        &format!("/v2/{REPO}/blobs/uploads/?digest={digest}"),
        &[],
        full_body(blob.clone()),
    );
    assert_eq!(parts.status, StatusCode::CREATED);
    for range in input.reads.iter().take(8).filter(|r| valid_header_value(r)) {
        for method in [Method::GET, Method::HEAD] {
            let (parts, body) = send(
                &registry,
                method.clone(),
                &format!("/v2/{REPO}/blobs/{digest}"),
                &[(RANGE, range.clone())],
                empty_body(),
            );
            match parts.status {
                StatusCode::OK => {
                    if method == Method::GET {
                        assert_eq!(body, blob, "a 200 is the whole blob");
                    }
                    assert_eq!(header(&parts, CONTENT_LENGTH), Some(blob.len().to_string().as_str()));
                }
                StatusCode::PARTIAL_CONTENT => {
                    let (first, last, size) =
                        content_range(header(&parts, CONTENT_RANGE).expect("a 206 has a Content-Range"));
                    assert_eq!(size, blob.len() as u64);
                    assert!(first <= last && last < size, "range {first}-{last} of {size} bytes");
                    assert_eq!(
                        header(&parts, CONTENT_LENGTH),
                        Some((last - first + 1).to_string().as_str())
                    );
                    if method == Method::GET {
                        assert_eq!(&body[..], &blob[first as usize..=last as usize]);
                    }
                }
                StatusCode::RANGE_NOT_SATISFIABLE => {}
                other => panic!("Range {range:?}: {other}"),
            }
        }
    }

    // A chunked upload whose chunks say what they cover, truthfully or not.
    let (parts, _) = send(
        &registry,
        Method::POST,
        &format!("/v2/{REPO}/blobs/uploads/"),
        &[],
        empty_body(),
    );
    assert_eq!(parts.status, StatusCode::ACCEPTED);
    let location = header(&parts, LOCATION).expect("an upload has a location").to_string();
    let mut accepted: Vec<u8> = Vec::new();
    let stands = |accepted: &Vec<u8>| format!("0-{}", accepted.len().saturating_sub(1));
    for chunk in input.chunks.iter().take(6) {
        let data = &chunk.data[..chunk.data.len().min(512)];
        let (start, end) = (accepted.len() as i128, accepted.len() as i128 + data.len() as i128 - 1);
        let range = match &chunk.range {
            RangeHeader::Absent => None,
            RangeHeader::Exact => Some(format!("{start}-{end}")),
            RangeHeader::Shifted(a, b) => Some(format!("{}-{}", start + *a as i128, end + *b as i128)),
            RangeHeader::Numbers(a, b) => Some(format!("{a}-{b}")),
            RangeHeader::Raw(text) => Some(text.clone()),
        };
        let length = match &chunk.length {
            LengthHeader::Absent => None,
            LengthHeader::Exact => Some(data.len().to_string()),
            LengthHeader::Number(n) => Some(n.to_string()),
            LengthHeader::Raw(text) => Some(text.clone()),
        };
        let mut headers = Vec::new();
        headers.extend(range.filter(|r| valid_header_value(r)).map(|r| (CONTENT_RANGE, r)));
        headers.extend(length.filter(|l| valid_header_value(l)).map(|l| (CONTENT_LENGTH, l)));
        let body = body_in_pieces(split_at(data, &chunk.cuts), chunk.breaks_off);
        let (parts, _) = send(&registry, Method::PATCH, &location, &headers, body);
        if parts.status == StatusCode::ACCEPTED {
            assert!(!chunk.breaks_off, "a chunk that broke off was accepted");
            accepted.extend_from_slice(data);
            assert_eq!(header(&parts, RANGE), Some(stands(&accepted).as_str()));
        } else {
            assert!(parts.status.is_client_error(), "{headers:?}: {}", parts.status);
        }
        // Refused or not, the upload stands where its accepted chunks left it.
        let (parts, _) = send(&registry, Method::GET, &location, &[], empty_body());
        assert_eq!(parts.status, StatusCode::NO_CONTENT);
        assert_eq!(
            header(&parts, RANGE),
            Some(stands(&accepted).as_str()),
            "after {headers:?}"
        );
    }
    let finished = Digest::of(Algorithm::Sha256, &accepted);
    let (parts, _) = send(
        &registry,
        Method::PUT,
        &format!("{location}{}digest={finished}", if location.contains('?') { '&' } else { '?' }),
        &[],
        empty_body(),
    );
    assert_eq!(
        parts.status,
        StatusCode::CREATED,
        "the accepted chunks do not make the blob"
    );
    let (parts, body) = send(
        &registry,
        Method::GET,
        &format!("/v2/{REPO}/blobs/{finished}"),
        &[],
        empty_body(),
    );
    assert_eq!(parts.status, StatusCode::OK);
    assert_eq!(body, accepted);
});
