//! What the fuzz targets share (besides core's deterministic test host,
//! `pier_core::testing::TestEnv`): an HTTP client port that answers from the fuzzer's bytes, a way to run the
//! core's futures, and requests and responses as the shells hand them over.
//!
//! Everything here is deterministic, so a crash found once reproduces from
//! its input file alone.

use std::collections::VecDeque;
use std::sync::Mutex;

use bytes::Bytes;
use futures::StreamExt;
use pier_core::api::{Body, HttpResponse};
use pier_core::body::{BodyError, RequestBody};
use pier_core::platform::box_stream;
use pier_core::remote::http::{HttpClient, HttpError, IncomingResponse, OutgoingRequest};

/// Runs one of the core's futures to its end. The in-memory store and the
/// scripted peer never wait on anything outside, so this never blocks.
pub fn run<F: std::future::Future>(future: F) -> F::Output {
    futures::executor::block_on(future)
}

/// A request body delivered in the pieces given, optionally breaking off
/// (a client that disconnects) after them.
pub fn body_in_pieces(pieces: Vec<Bytes>, breaks_off: bool) -> RequestBody {
    let mut items: Vec<Result<Bytes, BodyError>> = pieces.into_iter().map(Ok).collect();
    if breaks_off {
        items.push(Err(BodyError::Read("connection reset by the fuzzer".into())));
    }
    box_stream(futures::stream::iter(items))
}

/// Cuts `data` at the given offsets (taken modulo its length).
pub fn split_at(data: &[u8], cuts: &[u16]) -> Vec<Bytes> {
    if data.is_empty() {
        return Vec::new();
    }
    let mut offsets: Vec<usize> = cuts.iter().map(|&c| c as usize % data.len()).collect();
    offsets.push(0);
    offsets.push(data.len());
    offsets.sort_unstable();
    offsets.dedup();
    offsets
        .windows(2)
        .map(|w| Bytes::copy_from_slice(&data[w[0]..w[1]]))
        .collect()
}

/// A response's body, read whole, checked against its `Content-Length`.
/// Panics (a finding) when the two disagree or a stream fails: a shell
/// would send a truncated or overlong answer.
pub fn read_response(response: HttpResponse) -> (http::response::Parts, Bytes) {
    let (parts, body) = response.into_parts();
    let declared = parts.headers.get(http::header::CONTENT_LENGTH).map(|v| {
        v.to_str()
            .expect("Content-Length is text")
            .parse::<u64>()
            .expect("Content-Length is a number")
    });
    let bytes = match body {
        Body::Empty => Bytes::new(),
        Body::Full(bytes) => bytes,
        Body::Stream { stream, length } => {
            let chunks: Vec<Bytes> = run(stream
                .map(|c| c.expect("a response stream of the memory store fails"))
                .collect());
            let bytes: Bytes = chunks.concat().into();
            assert_eq!(
                bytes.len() as u64,
                length,
                "a streamed body is not the length announced"
            );
            bytes
        }
    };
    if let Some(declared) = declared {
        // A HEAD announces the length of what a GET would send.
        if !bytes.is_empty() {
            assert_eq!(declared, bytes.len() as u64, "Content-Length disagrees with the body");
        }
    }
    (parts, bytes)
}

/// One scripted answer of a peer.
pub struct ScriptedAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// An HTTP client port whose peer answers with the fuzzer's script, in
/// order, then fails every request: a hostile or broken upstream, token
/// endpoint or webhook receiver.
pub struct ScriptedPeer {
    answers: Mutex<VecDeque<ScriptedAnswer>>,
}

impl ScriptedPeer {
    pub fn new(answers: Vec<ScriptedAnswer>) -> ScriptedPeer {
        ScriptedPeer {
            answers: Mutex::new(answers.into()),
        }
    }
}

#[async_trait::async_trait]
impl HttpClient for ScriptedPeer {
    async fn send(&self, _request: OutgoingRequest) -> Result<IncomingResponse, HttpError> {
        let Some(answer) = self.answers.lock().expect("script lock").pop_front() else {
            return Err(HttpError("the scripted peer has hung up".into()));
        };
        let mut response = http::Response::builder()
            .status(http::StatusCode::from_u16(answer.status).map_err(|_| HttpError("no valid status".into()))?);
        for (name, value) in &answer.headers {
            // What a real HTTP stack could not carry is not sent.
            if let (Ok(name), Ok(value)) = (
                http::HeaderName::from_bytes(name.as_bytes()),
                http::HeaderValue::from_str(value),
            ) {
                response = response.header(name, value);
            }
        }
        let body = Bytes::from(answer.body);
        response
            .body(box_stream(futures::stream::once(async move { Ok(body) })))
            .map_err(|e| HttpError(e.to_string()))
    }
}
