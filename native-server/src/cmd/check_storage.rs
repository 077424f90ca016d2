//! `pier check-storage`: proves a storage configuration can do everything the
//! registry asks of it before any instance serves from it.
//!
//! A bucket that lists but refuses conditional writes, or an S3-compatible
//! server that ignores `If-None-Match` or lets two racing writes both win,
//! would corrupt tags and uploads silently under load; this finds out in
//! seconds. The checks are core's storage contract (the one every backend's
//! tests run), under a fresh prefix it removes afterwards; this prints their
//! results for an operator.

use std::io::{self, Write};

use pier_core::platform::Env;
use pier_core::store::contract::{self, CheckResult};

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
        let results = contract::run(store.as_ref(), &SystemEnv, &prefix).await;
        let failures = print(&results, &mut io::stdout().lock()).map_err(|e| format!("stdout: {e}"))?;
        match failures {
            0 => Ok(()),
            _ => Err(format!("{failures} storage check(s) failed")),
        }
    })
}

/// Writes `ok    name (N ms)` or `FAIL  name (N ms): why` per check, then
/// `check-storage: N passed, N failed`; returns the number failed.
pub fn print(results: &[CheckResult], out: &mut dyn Write) -> io::Result<usize> {
    for result in results {
        let (name, elapsed_ms) = (result.name, result.elapsed_ms);
        match &result.outcome {
            Ok(()) => writeln!(out, "ok    {name} ({elapsed_ms} ms)")?,
            Err(why) => writeln!(out, "FAIL  {name} ({elapsed_ms} ms): {why}")?,
        }
    }
    let failures = results.iter().filter(|result| result.outcome.is_err()).count();
    writeln!(
        out,
        "check-storage: {} passed, {failures} failed",
        results.len() - failures
    )?;
    Ok(failures)
}

#[cfg(test)]
mod tests {
    use pier_core::store::contract;
    use pier_core::store::memory::MemoryStore;

    use super::*;
    use crate::env::SystemEnv;

    #[tokio::test]
    async fn prints_a_line_per_check_and_a_summary() {
        let store = MemoryStore::new(4096);
        let results = contract::run(&store, &SystemEnv, "check/1/").await;
        let mut out = Vec::new();
        assert_eq!(print(&results, &mut out).unwrap(), 0);
        let out = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        let names: Vec<&str> = contract::check_names().collect();
        assert_eq!(lines.len(), names.len() + 1, "{out}");
        for (line, name) in lines.iter().zip(&names) {
            let rest = line
                .strip_prefix(&format!("ok    {name} ("))
                .unwrap_or_else(|| panic!("{line}"));
            assert!(rest.ends_with(" ms)"), "{line}");
        }
        assert_eq!(
            lines.last(),
            Some(&&*format!("check-storage: {} passed, 0 failed", names.len()))
        );
    }

    #[test]
    fn says_why_a_check_failed() {
        let results = [
            CheckResult {
                name: "list",
                outcome: Ok(()),
                elapsed_ms: 3,
            },
            CheckResult {
                name: "concurrent creates",
                outcome: Err("2 of 8 racing writes succeeded".into()),
                elapsed_ms: 41,
            },
        ];
        let mut out = Vec::new();
        assert_eq!(print(&results, &mut out).unwrap(), 1);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "ok    list (3 ms)\n\
             FAIL  concurrent creates (41 ms): 2 of 8 racing writes succeeded\n\
             check-storage: 1 passed, 1 failed\n"
        );
    }
}
