//! `pier copy SRC DST`: copies an image, or an index with every platform,
//! between two registries, or between a registry and an OCI image layout
//! directory (an air-gapped site's disk). The copy itself is core's
//! (`pier_core::remote::copy`); this parses the command line, opens the two
//! places and shows progress.

mod layout;
mod progress;

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use pier_core::names::Tag;
use pier_core::records::Reference;
use pier_core::remote::client::DEFAULT_CHUNK_SIZE;
use pier_core::remote::copy::{copy_image, CopyObserver, ImageStore, Quiet, Referrers, RemoteRepo};
use pier_core::remote::reference::ImageRef;
use pier_core::remote::{Credentials, RegistryClient};

pub use layout::OciLayout;

use crate::env::SystemEnv;
use crate::remote::ReqwestClient;

#[derive(Args, Debug)]
pub struct CopyArgs {
    /// What to copy: `[docker://]host[:port]/repo[:tag|@digest]`, or `oci:DIR[:tag]`
    /// for an OCI image layout directory.
    pub source: String,
    /// Where to copy it, in the same forms. A registry destination without a
    /// tag gets `latest`; a layout destination without one gets the source's tag.
    pub destination: String,
    /// Reach registries over plain HTTP (local and test registries).
    #[arg(long, visible_alias = "plain-http")]
    pub insecure: bool,
    /// Credentials for the source registry.
    #[arg(
        long,
        env = "PIER_COPY_SRC_CREDS",
        value_name = "USER:PASSWORD",
        hide_env_values = true
    )]
    pub src_creds: Option<String>,
    /// Credentials for the destination registry.
    #[arg(
        long,
        env = "PIER_COPY_DEST_CREDS",
        value_name = "USER:PASSWORD",
        hide_env_values = true
    )]
    pub dest_creds: Option<String>,
    /// An origin (`https://host[:port]`) besides each registry's own where its
    /// token endpoint may be; repeatable. Docker Hub's is known already.
    #[arg(long = "token-realm", value_name = "ORIGIN")]
    pub token_realms: Vec<String>,
    /// Blobs copied at once.
    #[arg(long, default_value_t = 4)]
    pub parallel: usize,
    /// Blobs larger than this many bytes are pushed in chunks of this size.
    #[arg(long, default_value_t = DEFAULT_CHUNK_SIZE)]
    pub chunk_size: u64,
    /// Print only the summary line.
    #[arg(long, short)]
    pub quiet: bool,
}

/// One side of a copy.
enum Place {
    Registry(ImageRef),
    Layout { dir: PathBuf, tag: Option<Tag> },
}

impl Place {
    fn parse(text: &str) -> Result<Place, String> {
        let Some(rest) = text.strip_prefix("oci:") else {
            return ImageRef::parse(text).map(Place::Registry);
        };
        let (dir, tag) = match rest.rsplit_once(':') {
            Some((dir, tag)) if !tag.contains('/') && !dir.is_empty() => {
                let tag = Tag::parse(tag).ok_or_else(|| format!("{text:?}: invalid tag {tag:?}"))?;
                (dir, Some(tag))
            }
            _ => (rest, None),
        };
        if dir.is_empty() {
            return Err(format!("{text:?}: oci: needs a directory"));
        }
        Ok(Place::Layout {
            dir: PathBuf::from(dir),
            tag,
        })
    }
}

/// Opens a place: the store to read or write and the reference it names.
fn open(
    place: &Place,
    credentials: Option<&str>,
    args: &CopyArgs,
    http: &Arc<ReqwestClient>,
) -> Result<(Box<dyn ImageStore>, Option<Reference>), String> {
    match place {
        Place::Registry(image) => {
            let credentials = credentials
                .map(|text| Credentials::parse(text).ok_or_else(|| "credentials must be USER:PASSWORD".to_string()))
                .transpose()?;
            let client = RegistryClient::new(
                http.clone(),
                Arc::new(SystemEnv),
                &image.base_url(args.insecure),
                credentials,
                &args.token_realms,
            )?
            .with_chunk_size(args.chunk_size);
            let repo = RemoteRepo {
                client: Arc::new(client),
                repo: image.repo.clone(),
            };
            Ok((Box::new(repo), Some(image.reference.clone())))
        }
        Place::Layout { dir, tag } => Ok((
            Box::new(OciLayout::new(dir)),
            tag.as_ref().map(|t| Reference::Tag(t.clone())),
        )),
    }
}

pub fn run(args: CopyArgs) -> Result<(), String> {
    let source = Place::parse(&args.source)?;
    let destination = Place::parse(&args.destination)?;
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let http = Arc::new(ReqwestClient::open());
        let (src, src_ref) = open(&source, args.src_creds.as_deref(), &args, &http)?;
        let (dst, dst_ref) = open(&destination, args.dest_creds.as_deref(), &args, &http)?;
        let src_ref = match (&source, src_ref) {
            (Place::Layout { dir, tag }, _) => OciLayout::new(dir)
                .source_reference(tag.as_ref())
                .await
                .map_err(|e| e.to_string())?,
            (_, reference) => reference.expect("registries always name a manifest"),
        };
        let tag = match (&destination, dst_ref, &src_ref) {
            (_, Some(Reference::Tag(tag)), _) => Some(tag),
            (Place::Layout { .. }, None, Reference::Tag(tag)) => Some(tag.clone()),
            _ => None,
        };
        let observer: Arc<dyn CopyObserver> = if args.quiet {
            Arc::new(Quiet)
        } else {
            Arc::new(progress::Progress::new())
        };
        let report = copy_image(
            src.as_ref(),
            &src_ref,
            dst.as_ref(),
            tag.as_ref(),
            &Referrers::All,
            observer,
            args.parallel,
        )
        .await
        .map_err(|e| e.to_string())?;
        println!(
            "copied {} -> {}: {} ({} manifests; blobs: {} copied ({} bytes), {} mounted, {} already there)",
            args.source,
            args.destination,
            report.digest.as_ref().map_or("", |d| d.as_str()),
            report.manifests,
            report.blobs_streamed,
            report.bytes_streamed,
            report.blobs_mounted,
            report.blobs_present,
        );
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places() {
        let Place::Layout { dir, tag } = Place::parse("oci:/tmp/a:b/layout:v1").unwrap() else {
            panic!("a layout")
        };
        assert_eq!(dir, PathBuf::from("/tmp/a:b/layout"));
        assert_eq!(tag.unwrap().as_str(), "v1");
        let Place::Layout { dir, tag } = Place::parse("oci:./layout").unwrap() else {
            panic!("a layout")
        };
        assert_eq!((dir, tag), (PathBuf::from("./layout"), None));
        assert!(matches!(
            Place::parse("127.0.0.1:5000/a:v1").unwrap(),
            Place::Registry(_)
        ));
        assert!(Place::parse("oci:").is_err());
        assert!(Place::parse("oci:dir:bad tag").is_err());
    }
}
