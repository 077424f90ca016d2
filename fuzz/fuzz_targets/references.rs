//! Names a client puts in a URL or a peer in a document: digests,
//! repository names, tags, image references (`pier copy`, mirrors), and the
//! API's routing of `/v2/<name>/<kind>/<reference>` paths. None may panic;
//! what they accept must be safe to use as storage keys and must read back
//! as it was written.
//!
//! Input: one byte choosing the method of the routed request, then text.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use pier_core::body::empty_body;
use pier_core::digest::Digest;
use pier_core::layout;
use pier_core::names::{RepoName, Tag, MAX_NAME_LEN};
use pier_core::registry::RegistryOptions;
use pier_core::remote::reference::ImageRef;
use pier_core::store::memory::MemoryStore;
use pier_core::testing::TestEnv;
use pier_core::Registry;
use pier_fuzz::{read_response, run};

const METHODS: [&str; 6] = ["GET", "HEAD", "PUT", "DELETE", "PATCH", "POST"];

fuzz_target!(|input: &[u8]| {
    let Some((&choice, text)) = input.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };

    if let Ok(digest) = Digest::parse(text) {
        assert_eq!(digest.as_str(), text);
        assert_eq!(format!("{}:{}", digest.algorithm().name(), digest.hex()), text);
        let key = layout::blob_record(&digest);
        assert_eq!(layout::digest_at_end(&key).as_ref(), Some(&digest));
    }

    if let Some(repo) = RepoName::parse(text) {
        assert!(text.len() <= MAX_NAME_LEN);
        for component in text.split('/') {
            // The layout keeps its own segments (`_tags`, `_manifests`) beside
            // names, and no key may climb out of its prefix.
            assert!(!component.is_empty() && component != "." && component != "..");
            assert!(
                !component.starts_with('_'),
                "{text:?} could collide with the layout's own keys"
            );
        }
        let entry = layout::catalog_entry(&repo);
        assert_eq!(layout::repo_of_catalog_entry(&entry), Some(text));
    }

    if let Some(tag) = Tag::parse(text) {
        assert!(!text.contains('/') && text != "." && text != "..");
        assert!(layout::tag(&RepoName::parse("a").expect("valid"), &tag).ends_with(&format!("/_tags/{text}")));
    }

    if let Ok(reference) = ImageRef::parse(text) {
        let written = reference.to_string();
        assert_eq!(
            ImageRef::parse(&written).as_ref(),
            Ok(&reference),
            "{text:?} prints as {written:?}"
        );
    }

    // The API's router: whatever the path, an answer and never a 5xx.
    let path = if text.starts_with('/') {
        text.to_string()
    } else {
        format!("/v2/{text}")
    };
    let Ok(request) = http::Request::builder()
        .method(METHODS[choice as usize % METHODS.len()])
        .uri(path.as_str())
        .body(empty_body())
    else {
        return;
    };
    let registry = Registry::new(
        Arc::new(MemoryStore::new(64)),
        Arc::new(TestEnv::default()),
        RegistryOptions::default(),
    );
    let response = run(pier_core::api::handle(
        pier_core::api::Service::open(&registry),
        request,
    ));
    assert!(!response.status().is_server_error(), "{path:?}: {}", response.status());
    read_response(response);
});
