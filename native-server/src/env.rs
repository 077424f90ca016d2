//! The host services core asks of the native platform: clock and entropy.

use std::time::{SystemTime, UNIX_EPOCH};

use pier_core::platform::Env;

pub struct SystemEnv;

impl Env for SystemEnv {
    fn now_millis(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }

    fn fill_random(&self, buf: &mut [u8]) {
        getrandom::fill(buf).expect("the operating system's entropy source is available");
    }
}
