//! The host services core asks of the Workers runtime: the clock (`Date.now`),
//! entropy (`crypto.getRandomValues`), which wasm32 has neither of on its own,
//! and native hashing (`crypto.subtle.digest`), much faster than SHA-256
//! compiled to wasm.

use bytes::Bytes;
use pier_core::digest::{Algorithm, Digest};
use pier_core::platform::{BoxFuture, Env};
use worker::js_sys::{self, Uint8Array};
use worker::wasm_bindgen::JsCast;
use worker::wasm_bindgen_futures::JsFuture;
use worker::web_sys::{Crypto, WorkerGlobalScope};

/// `crypto.getRandomValues` fills at most this many bytes per call.
const MAX_RANDOM_BYTES_PER_CALL: usize = 65536;

pub struct WorkerEnv;

impl Env for WorkerEnv {
    fn now_millis(&self) -> u64 {
        js_sys::Date::now() as u64
    }

    fn fill_random(&self, buf: &mut [u8]) {
        let crypto = crypto().expect("the Workers runtime provides crypto");
        for chunk in buf.chunks_mut(MAX_RANDOM_BYTES_PER_CALL) {
            crypto
                .get_random_values_with_u8_array(chunk)
                .expect("getRandomValues accepts up to 64 KiB");
        }
    }

    fn digest_of(&self, algorithm: Algorithm, bytes: Bytes) -> Option<BoxFuture<'static, Option<Digest>>> {
        let name = match algorithm {
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha512 => "SHA-512",
        };
        let data = Uint8Array::from(&bytes[..]);
        let hashing = crypto()
            .ok()?
            .subtle()
            .digest_with_str_and_buffer_source(name, &data)
            .ok()?;
        Some(Box::pin(async move {
            let out = Uint8Array::new(&JsFuture::from(hashing).await.ok()?).to_vec();
            let expected = match algorithm {
                Algorithm::Sha256 => 32,
                Algorithm::Sha512 => 64,
            };
            (out.len() == expected).then(|| Digest::of_output(algorithm, &out))
        }))
    }
}

fn crypto() -> Result<Crypto, worker::wasm_bindgen::JsValue> {
    js_sys::global().unchecked_into::<WorkerGlobalScope>().crypto()
}
