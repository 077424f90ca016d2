//! Where the native server keeps its data, as the command line, the
//! environment and the configuration file say: a local directory (the
//! default) or a bucket, with the part size and S3 options. Resolved here,
//! beside the stores it opens, so the configuration file only gathers it.

use std::fmt;
use std::path::PathBuf;

use clap::Args;
use serde::Deserialize;
use url::Url;

use super::object::S3Options;

/// Where the registry keeps its data, as flags and environment variables.
#[derive(Args, Debug, Default)]
pub struct StorageArgs {
    /// Storage: s3://bucket/prefix, gs://bucket/prefix, az://container/prefix or
    /// file:///path [default: the data directory].
    #[arg(long, env = "PIER_STORAGE_URL")]
    pub storage_url: Option<String>,
    /// Directory for all registry data when no storage URL is set [default: ./pier-data].
    #[arg(long, env = "PIER_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Bytes per multipart part: the memory bound of one upload [default: 1 MiB on disk, 8 MiB in a bucket].
    #[arg(long, env = "PIER_PART_SIZE")]
    pub part_size: Option<usize>,
    /// Flush every write of the data directory to the disk before answering, so
    /// an acknowledged push survives a power cut [default: true]. Off only for
    /// registries whose disk may be lost anyway (CI caches, tmpfs).
    #[arg(long, env = "PIER_FSYNC")]
    pub fsync: Option<bool>,
    /// S3 endpoint of an S3-compatible server (MinIO, Ceph, R2...) [default: AWS_ENDPOINT, else AWS].
    #[arg(long, env = "PIER_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// S3 region [default: AWS_REGION / AWS_DEFAULT_REGION, else us-east-1].
    #[arg(long, env = "PIER_S3_REGION")]
    pub s3_region: Option<String>,
    /// Allow a plain-HTTP S3 endpoint [default: false].
    #[arg(long, env = "PIER_S3_ALLOW_HTTP")]
    pub s3_allow_http: Option<bool>,
    /// Address buckets as bucket.endpoint rather than endpoint/bucket [default: false].
    #[arg(long, env = "PIER_S3_VIRTUAL_HOSTED_STYLE")]
    pub s3_virtual_hosted_style: Option<bool>,
}

/// The storage settings of the configuration file (top-level keys and the
/// `[s3]` table).
#[derive(Debug, Default)]
pub struct StorageFile {
    pub storage_url: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub part_size: Option<usize>,
    pub fsync: Option<bool>,
    pub s3: S3File,
}

/// The file's `[s3]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3File {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub allow_http: Option<bool>,
    pub virtual_hosted_style: Option<bool>,
}

/// Where the data lives.
#[derive(Debug, Clone, PartialEq)]
pub enum StorageLocation {
    /// A local directory owned by this process.
    Disk(PathBuf),
    /// A bucket (and prefix) shared by any number of instances.
    Bucket(Url),
}

impl fmt::Display for StorageLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageLocation::Disk(path) => write!(f, "{}", path.display()),
            StorageLocation::Bucket(url) => write!(f, "{url}"),
        }
    }
}

/// Resolved storage settings.
#[derive(Debug, Clone)]
pub struct StorageConfig {
    pub location: StorageLocation,
    pub part_size: usize,
    /// Flush local writes to the disk (buckets are durable when they answer).
    pub fsync: bool,
    pub s3: S3Options,
}

/// Parts below this size are refused by S3 and GCS (all but the last part).
const MIN_BUCKET_PART_SIZE: usize = 5 << 20;

impl StorageConfig {
    pub fn resolve(args: StorageArgs, file: &StorageFile) -> Result<StorageConfig, String> {
        let location = match args.storage_url.or(file.storage_url.clone()) {
            Some(text) => parse_storage_url(&text)?,
            None => StorageLocation::Disk(
                args.data_dir
                    .or(file.data_dir.clone())
                    .unwrap_or_else(|| PathBuf::from("pier-data")),
            ),
        };
        let (default_part_size, min_part_size) = match &location {
            StorageLocation::Disk(_) => (1 << 20, 4096),
            StorageLocation::Bucket(url) if url.scheme().starts_with("az") => (8 << 20, 4096),
            StorageLocation::Bucket(_) => (8 << 20, MIN_BUCKET_PART_SIZE),
        };
        let part_size = args.part_size.or(file.part_size).unwrap_or(default_part_size);
        if !(min_part_size..=(5 << 30)).contains(&part_size) {
            return Err(format!(
                "part_size {part_size} must be between {min_part_size} bytes and 5 GiB for {location}"
            ));
        }
        let fsync = args.fsync.or(file.fsync);
        if fsync.is_some() && matches!(location, StorageLocation::Bucket(_)) {
            return Err(format!(
                "fsync applies to a local data directory; {location} is durable when it answers"
            ));
        }
        Ok(StorageConfig {
            location,
            part_size,
            fsync: fsync.unwrap_or(true),
            s3: S3Options {
                endpoint: args.s3_endpoint.or(file.s3.endpoint.clone()),
                region: args.s3_region.or(file.s3.region.clone()),
                allow_http: args.s3_allow_http.or(file.s3.allow_http),
                virtual_hosted_style: args.s3_virtual_hosted_style.or(file.s3.virtual_hosted_style),
            },
        })
    }
}

fn parse_storage_url(text: &str) -> Result<StorageLocation, String> {
    let url = Url::parse(text).map_err(|e| format!("storage_url {text:?}: {e}"))?;
    match url.scheme() {
        "file" => url
            .to_file_path()
            .map(StorageLocation::Disk)
            .map_err(|_| format!("storage_url {text:?} is not a local path")),
        "s3" | "s3a" | "gs" | "az" | "azure" => {
            if url.host_str().is_none_or(str::is_empty) {
                return Err(format!("storage_url {text:?} names no bucket"));
            }
            Ok(StorageLocation::Bucket(url))
        }
        other => Err(format!(
            "storage_url {text:?}: scheme {other:?} is not one of s3, gs, az, file"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_urls_are_checked() {
        let load = |url: &str, part_size: Option<usize>| {
            let args = StorageArgs {
                storage_url: Some(url.into()),
                part_size,
                ..Default::default()
            };
            StorageConfig::resolve(args, &StorageFile::default())
        };
        assert_eq!(
            load("file:///var/lib/pier", None).unwrap().location,
            StorageLocation::Disk("/var/lib/pier".into())
        );
        assert!(load("gs://bucket", None).is_ok());
        assert!(load("az://container/prefix", Some(1 << 20)).is_ok());
        let err = load("s3://bucket", Some(1 << 20)).unwrap_err();
        assert!(err.contains("part_size"), "S3 needs 5 MiB parts: {err}");
        assert!(load("ftp://host/x", None).unwrap_err().contains("scheme"));
        assert!(load("s3:///prefix", None).unwrap_err().contains("bucket"));
        assert!(load("not a url", None).is_err());
    }

    #[test]
    fn local_writes_are_flushed_unless_turned_off() {
        let load = |url: &str, fsync: Option<bool>| {
            let args = StorageArgs {
                storage_url: Some(url.into()),
                fsync,
                ..Default::default()
            };
            StorageConfig::resolve(args, &StorageFile::default())
        };
        assert!(load("file:///var/lib/pier", None).unwrap().fsync, "on by default");
        assert!(!load("file:///var/lib/pier", Some(false)).unwrap().fsync);
        let err = load("s3://bucket", Some(false)).unwrap_err();
        assert!(err.contains("fsync"), "a bucket has no fsync to turn off: {err}");
    }
}
