//! Values built from the deployment's configuration text once per isolate.
//!
//! A Worker has no start-up hook and reads its vars on every request. What is
//! costly to build from them (the auth settings: the JWK Set, password-hash
//! parameters, compiled rules) is kept here for the life of the isolate,
//! keyed by the whole text it was built from, so a changed var or secret
//! takes effect at the next request that sees it.

use std::cell::RefCell;

pub struct PerIsolate<T> {
    built: RefCell<Option<(String, T)>>,
}

impl<T: Clone> PerIsolate<T> {
    pub const fn new() -> PerIsolate<T> {
        PerIsolate {
            built: RefCell::new(None),
        }
    }

    /// The value built from `text`: kept from an earlier call with the same
    /// text, or made now by `build`.
    pub fn get(&self, text: String, build: impl FnOnce(&str) -> T) -> T {
        if let Some((built_from, value)) = self.built.borrow().as_ref() {
            if *built_from == text {
                return value.clone();
            }
        }
        let value = build(&text);
        *self.built.borrow_mut() = Some((text, value.clone()));
        value
    }
}
