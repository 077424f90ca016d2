//! A host for auth unit tests: a clock the test moves, and entropy that
//! differs on every call (SHA-256 of a counter: distinct salts and keys).

use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest as _, Sha256};

use crate::platform::Env;

pub struct FixedEnv {
    millis: AtomicU64,
    draws: AtomicU64,
}

impl FixedEnv {
    pub fn at(millis: u64) -> FixedEnv {
        FixedEnv {
            millis: AtomicU64::new(millis),
            draws: AtomicU64::new(0),
        }
    }

    pub fn advance_secs(&self, secs: u64) {
        self.millis.fetch_add(secs * 1000, Ordering::Relaxed);
    }
}

impl Env for FixedEnv {
    fn now_millis(&self) -> u64 {
        self.millis.load(Ordering::Relaxed)
    }

    fn fill_random(&self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(32) {
            let draw = self.draws.fetch_add(1, Ordering::Relaxed);
            let block = Sha256::digest(draw.to_be_bytes());
            chunk.copy_from_slice(&block[..chunk.len()]);
        }
    }
}
