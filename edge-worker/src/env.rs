//! The host services core asks of the Workers runtime: the clock (`Date.now`)
//! and entropy (`crypto.getRandomValues`). wasm32 has neither on its own.

use pier_core::platform::Env;
use worker::js_sys;
use worker::wasm_bindgen::JsCast;
use worker::web_sys::WorkerGlobalScope;

/// `crypto.getRandomValues` fills at most this many bytes per call.
const MAX_RANDOM_BYTES_PER_CALL: usize = 65536;

pub struct WorkerEnv;

impl Env for WorkerEnv {
    fn now_millis(&self) -> u64 {
        js_sys::Date::now() as u64
    }

    fn fill_random(&self, buf: &mut [u8]) {
        let crypto = js_sys::global()
            .unchecked_into::<WorkerGlobalScope>()
            .crypto()
            .expect("the Workers runtime provides crypto");
        for chunk in buf.chunks_mut(MAX_RANDOM_BYTES_PER_CALL) {
            crypto
                .get_random_values_with_u8_array(chunk)
                .expect("getRandomValues accepts up to 64 KiB");
        }
    }
}
