//! `pier check-storage`: runs the storage contract against the configured
//! storage, under a fresh prefix, and prints each check's outcome.

use pier_core::platform::Env;

use crate::check;
use crate::config::{CheckStorageArgs, LogFormat};
use crate::env::SystemEnv;

pub fn run(args: CheckStorageArgs) -> Result<(), String> {
    let config = crate::config::storage(args)?;
    // Storage failures are reported briefly per check and logged in full.
    super::init_logging(LogFormat::Text);
    super::runtime()?.block_on(async move {
        let store = crate::store::open(&config)?;
        let prefix = format!("pier-check-storage/{}/", SystemEnv.random_id());
        println!(
            "checking {} (part size {} bytes) under {prefix}",
            config.location, config.part_size
        );
        let results = check::run(store.as_ref(), &prefix).await;
        let failures = results.iter().filter(|r| r.outcome.is_err()).count();
        for result in &results {
            let elapsed_ms = result.elapsed.as_millis();
            match &result.outcome {
                Ok(()) => println!("ok    {} ({elapsed_ms} ms)", result.name),
                Err(why) => println!("FAIL  {} ({elapsed_ms} ms): {why}", result.name),
            }
        }
        println!("check-storage: {} passed, {failures} failed", results.len() - failures);
        if failures == 0 {
            Ok(())
        } else {
            Err(format!("{failures} storage check(s) failed"))
        }
    })
}
