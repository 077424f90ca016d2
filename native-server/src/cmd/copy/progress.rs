//! What `pier copy` shows while it works: on a terminal, a bar per blob in
//! flight (indicatif) and a line per blob done; otherwise the lines only, so
//! logs of CI jobs stay readable.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressStyle};
use pier_core::digest::Digest;
use pier_core::records::StoredManifest;
use pier_core::remote::copy::{BlobOutcome, CopyObserver};

pub struct Progress {
    bars: Option<(MultiProgress, Mutex<HashMap<Digest, ProgressBar>>)>,
}

impl Progress {
    pub fn new() -> Progress {
        Progress {
            bars: std::io::stderr()
                .is_terminal()
                .then(|| (MultiProgress::new(), Mutex::new(HashMap::new()))),
        }
    }

    fn line(&self, text: String) {
        match &self.bars {
            Some((multi, _)) => {
                let _ = multi.println(text);
            }
            None => eprintln!("{text}"),
        }
    }
}

fn short(digest: &Digest) -> String {
    format!("{}:{}", digest.algorithm().name(), &digest.hex()[..12])
}

impl CopyObserver for Progress {
    fn blob_started(&self, digest: &Digest, size: u64) {
        if let Some((multi, bars)) = &self.bars {
            let bar = multi.add(ProgressBar::new(size));
            bar.set_style(
                ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}")
                    .expect("literal template")
                    .progress_chars("=> "),
            );
            bar.set_message(short(digest));
            bars.lock().expect("bars").insert(digest.clone(), bar);
        }
    }

    fn blob_progress(&self, digest: &Digest, bytes: u64) {
        if let Some((_, bars)) = &self.bars {
            if let Some(bar) = bars.lock().expect("bars").get(digest) {
                bar.inc(bytes);
            }
        }
    }

    fn blob_done(&self, digest: &Digest, size: u64, outcome: BlobOutcome) {
        if let Some((_, bars)) = &self.bars {
            if let Some(bar) = bars.lock().expect("bars").remove(digest) {
                bar.finish_and_clear();
            }
        }
        let what = match outcome {
            BlobOutcome::Present => "already there",
            BlobOutcome::Mounted => "mounted",
            BlobOutcome::Streamed => "copied",
        };
        self.line(format!("blob {} {what} ({})", short(digest), HumanBytes(size)));
    }

    fn manifest_done(&self, manifest: &StoredManifest) {
        self.line(format!("manifest {} {}", short(&manifest.digest), manifest.media_type));
    }
}
