//! The operator's configuration, in every form a deployment reads it: the
//! native server's TOML file, and the JSON the Worker reads from `PIER_AUTH`,
//! `PIER_GC`, `PIER_MIRRORS`, `PIER_WEBHOOKS`, `PIER_REPLICATE` and
//! `PIER_POLICY`. Parsing and then building what the server builds at start
//! (auth, mirrors, hooks, namespace policies with their keys, a garbage
//! collection with the retention rules) must refuse a bad file
//! with a message, never panic; retention day counts it accepts are ages
//! (finite, not negative).
//!
//! Input: one byte choosing the form, then its text. Built with
//! `--features native` (the TOML file is the native server's).
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use pier_core::auth::token::{new_signing_key, KeyAlgorithm};
use pier_core::auth::{Auth, AuthConfig};
use pier_core::events::{Hooks, ReplicateConfig, WebhookConfig};
use pier_core::gc::{Gc, GcConfig};
use pier_core::mirror::{Mirror, MirrorConfig};
use pier_core::names::RepoName;
use pier_core::namespace_policy::{NamespacePolicies, PolicyConfig};
use pier_core::signing::SignatureGate;
use pier_core::registry::RegistryOptions;
use pier_core::store::memory::MemoryStore;
use pier_core::testing::TestEnv;
use pier_core::Registry;
use pier_fuzz::{run, ScriptedPeer};
use pier_server::config::Config;

fn signing_keys() -> &'static str {
    static KEYS: OnceLock<String> = OnceLock::new();
    KEYS.get_or_init(|| {
        format!(
            "{{\"keys\":[{}]}}",
            new_signing_key(KeyAlgorithm::EdDsa, &TestEnv::default())
        )
    })
}

fn build_auth(config: AuthConfig) {
    let Ok(auth) = Auth::new(config, signing_keys(), Arc::new(TestEnv::default())) else {
        return;
    };
    // The policy the configuration describes answers for any name.
    for repo in ["a", "ci/app", "prod/critical/app"] {
        for action in pier_core::auth::policy::Action::ALL {
            let _ = auth.policy().allows(None, repo, action);
        }
    }
}

fn build_mirrors(configs: &[MirrorConfig]) {
    let peer = Arc::new(ScriptedPeer::new(Vec::new()));
    if let Ok(mirror) = Mirror::new(configs, peer, Arc::new(TestEnv::default())) {
        for repo in ["hub/library/alpine", "a", "ci/app"] {
            let _ = mirror.upstream_for(&RepoName::parse(repo).expect("valid"));
        }
    }
}

fn build_hooks(webhooks: &[WebhookConfig], rules: &[ReplicateConfig]) {
    let peer = Arc::new(ScriptedPeer::new(Vec::new()));
    let _ = Hooks::new(webhooks, rules, None, peer, Arc::new(TestEnv::default()));
}

fn build_policies(configs: &[PolicyConfig]) {
    let Ok(policies) = NamespacePolicies::new(configs) else {
        return;
    };
    let Ok(gate) = SignatureGate::new(&policies) else {
        return;
    };
    // Whichever policy holds for a name, its keys were read.
    for repo in ["prod/app", "prod/legacy/app", "a"] {
        let repo = RepoName::parse(repo).expect("valid");
        let _ = gate.as_ref().and_then(|gate| gate.requirement(&repo));
    }
}

/// A collection with these rules over a registry holding a few tagged and
/// untagged manifests, run to its end.
fn collect(config: GcConfig) {
    // A day count the rules accepted is an age, never a way to say "now".
    for rule in &config.rules {
        for days in [rule.expire_after_days, rule.untagged_expire_after_days]
            .into_iter()
            .flatten()
        {
            assert!(days.is_finite() && days >= 0.0, "accepted {days} days");
        }
    }
    let env = Arc::new(TestEnv::default());
    let store = Arc::new(MemoryStore::new(64));
    let registry = Registry::new(
        store.clone(),
        env.clone(),
        RegistryOptions {
            retention: config.rules.clone(),
            ..RegistryOptions::default()
        },
    );
    let config_blob = b"{}";
    let digest = pier_core::digest::Digest::of(pier_core::digest::Algorithm::Sha256, config_blob);
    for (i, repo) in ["ci/app", "prod/app", "a"].into_iter().enumerate() {
        let repo = RepoName::parse(repo).expect("valid");
        run(registry.upload_whole(&repo, &digest, pier_core::body::full_body(&config_blob[..]))).expect("blob");
        for (j, tag) in ["v1", "latest", "untagged"].into_iter().enumerate() {
            let manifest = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest.as_str(), "size": 2},
                "layers": [],
                "annotations": {"n": format!("{i}-{j}")},
            });
            let bytes = serde_json::to_vec(&manifest).expect("json");
            let reference = match tag {
                "untagged" => pier_core::records::Reference::Digest(pier_core::digest::Digest::of(
                    pier_core::digest::Algorithm::Sha256,
                    &bytes,
                )),
                tag => pier_core::records::Reference::Tag(pier_core::names::Tag::parse(tag).expect("valid")),
            };
            // Immutable tags may refuse a push; that is theirs to decide.
            let _ = run(registry.put_manifest(&repo, &reference, None, bytes.into(), &[]));
            env.advance_millis(3_600_000);
        }
    }
    env.advance_millis(400 * 86_400_000);
    let mut gc = Gc::new(store, env, config, false);
    let _ = run(gc.run_to_end());
}

fuzz_target!(|input: &[u8]| {
    let Some((&form, text)) = input.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    match form % 6 {
        0 => {
            let Ok(config) = Config::from_toml(text) else {
                return;
            };
            build_mirrors(&config.deployment.mirrors);
            build_hooks(&config.deployment.webhooks, &config.deployment.replicate);
            build_policies(&config.deployment.policies);
            if let Some(auth) = config.auth {
                build_auth(auth.config);
            }
            collect(config.deployment.gc);
        }
        1 => {
            if let Ok(config) = AuthConfig::from_json(text) {
                build_auth(config);
            }
        }
        2 => {
            if let Ok(config) = GcConfig::from_json(text) {
                collect(config);
            }
        }
        3 => {
            if let Ok(configs) = serde_json::from_str::<Vec<MirrorConfig>>(text) {
                build_mirrors(&configs);
            }
        }
        4 => {
            if let Ok(webhooks) = serde_json::from_str::<Vec<WebhookConfig>>(text) {
                build_hooks(&webhooks, &[]);
            }
        }
        _ => {
            if let Ok(rules) = serde_json::from_str::<Vec<ReplicateConfig>>(text) {
                build_hooks(&[], &rules);
            }
            // (a policy table and a rule have different required keys)
            if let Ok(policies) = serde_json::from_str::<Vec<PolicyConfig>>(text) {
                build_policies(&policies);
            }
        }
    }
});
