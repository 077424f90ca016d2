//! Settings of `pier serve` and `pier check-storage`: command-line flags,
//! `PIER_*` environment variables and an optional TOML file, in that order of
//! precedence.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Args;
use pier_core::auth::AuthConfig;
use pier_core::events::{ReplicateConfig, WebhookConfig};
use pier_core::mirror::MirrorConfig;
use serde::Deserialize;
use url::Url;

use crate::gc::GcSection;
use crate::store::object::S3Options;

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

/// Flags and environment variables; every one may also be set in the file.
#[derive(Args, Debug, Default)]
pub struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, short = 'c', env = "PIER_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:5000].
    #[arg(long, env = "PIER_LISTEN")]
    pub listen: Option<SocketAddr>,
    #[command(flatten)]
    pub storage: StorageArgs,
    /// Accept manifests whose blobs or child manifests are absent (sparse).
    #[arg(long, env = "PIER_ALLOW_SPARSE_MANIFESTS")]
    pub allow_sparse_manifests: Option<bool>,
    /// Largest request body in bytes; larger blobs must be pushed in chunks [default: no limit].
    #[arg(long, env = "PIER_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<u64>,
    /// Redirect blob GETs to signed URLs of the store, where it can sign them [default: false].
    #[arg(long, env = "PIER_REDIRECT_BLOBS")]
    pub redirect_blobs: Option<bool>,
    /// Log format: `text` or `json` [default: text].
    #[arg(long, env = "PIER_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Seconds in-flight requests get to finish after a shutdown signal [default: 30].
    #[arg(long, env = "PIER_SHUTDOWN_GRACE_SECS")]
    pub shutdown_grace_secs: Option<u64>,
    /// JWK Set whose first key signs auth tokens (`pier auth new-signing-key`); needed with `[auth]`.
    #[arg(long, env = "PIER_AUTH_SIGNING_KEYS_FILE")]
    pub auth_signing_keys_file: Option<PathBuf>,
}

/// `pier check-storage`: the storage settings only.
#[derive(Args, Debug, Default)]
pub struct CheckStorageArgs {
    /// TOML configuration file (the one `pier serve` uses).
    #[arg(long, short = 'c', env = "PIER_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub storage: StorageArgs,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The file's shape: the same settings as the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    storage_url: Option<String>,
    data_dir: Option<PathBuf>,
    allow_sparse_manifests: Option<bool>,
    part_size: Option<usize>,
    max_body_bytes: Option<u64>,
    redirect_blobs: Option<bool>,
    log_format: Option<LogFormat>,
    shutdown_grace_secs: Option<u64>,
    #[serde(default)]
    s3: S3File,
    /// Authentication and namespace policies; without it the registry is open.
    auth: Option<AuthConfig>,
    auth_signing_keys_file: Option<PathBuf>,
    /// Garbage collection and retention rules.
    #[serde(default)]
    gc: GcSection,
    /// Pull-through caches: `[[mirror]]` tables.
    #[serde(default)]
    mirror: Vec<MirrorConfig>,
    /// Receivers of push, delete and pull events: `[[webhook]]` tables.
    #[serde(default)]
    webhook: Vec<WebhookConfig>,
    /// Promotion and replication on push: `[[replicate]]` tables.
    #[serde(default)]
    replicate: Vec<ReplicateConfig>,
}

/// The file's `[s3]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct S3File {
    endpoint: Option<String>,
    region: Option<String>,
    allow_http: Option<bool>,
    virtual_hosted_style: Option<bool>,
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
    pub s3: S3Options,
}

/// Resolved settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub storage: StorageConfig,
    pub allow_sparse_manifests: bool,
    pub max_body_bytes: Option<u64>,
    pub redirect_blobs: bool,
    pub log_format: LogFormat,
    pub shutdown_grace_secs: u64,
    pub auth: Option<AuthSettings>,
    pub gc: GcSection,
    pub mirrors: Vec<MirrorConfig>,
    pub webhooks: Vec<WebhookConfig>,
    pub replicate: Vec<ReplicateConfig>,
}

/// The `[auth]` table and the file of the keys that sign tokens.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub config: AuthConfig,
    pub signing_keys_file: PathBuf,
}

impl AuthSettings {
    fn resolve(config: Option<AuthConfig>, keys_file: Option<PathBuf>) -> Result<Option<AuthSettings>, String> {
        match (config, keys_file) {
            (None, None) => Ok(None),
            (None, Some(_)) => Err("auth_signing_keys_file is set but there is no [auth] table".into()),
            (Some(_), None) => {
                Err("[auth] needs auth_signing_keys_file (make one with `pier auth new-signing-key`)".into())
            }
            (Some(config), Some(signing_keys_file)) => Ok(Some(AuthSettings {
                config,
                signing_keys_file,
            })),
        }
    }
}

impl Config {
    pub fn load(args: ServeArgs) -> Result<Config, String> {
        let file = read_optional_file(args.config.as_deref())?;
        Config::resolve(args, file)
    }

    /// The settings a configuration file's text gives alone, as
    /// `pier serve -c FILE` reads it without flags or environment (for the
    /// fuzz target of the file's parsing).
    pub fn from_toml(text: &str) -> Result<Config, String> {
        let file = toml::from_str(text).map_err(|e| e.to_string())?;
        Config::resolve(ServeArgs::default(), file)
    }

    fn resolve(args: ServeArgs, file: FileConfig) -> Result<Config, String> {
        Ok(Config {
            listen: args
                .listen
                .or(file.listen)
                .unwrap_or_else(|| "127.0.0.1:5000".parse().expect("literal")),
            storage: StorageConfig::resolve(args.storage, &file)?,
            allow_sparse_manifests: args
                .allow_sparse_manifests
                .or(file.allow_sparse_manifests)
                .unwrap_or(false),
            max_body_bytes: args.max_body_bytes.or(file.max_body_bytes),
            redirect_blobs: args.redirect_blobs.or(file.redirect_blobs).unwrap_or(false),
            log_format: args.log_format.or(file.log_format).unwrap_or_default(),
            shutdown_grace_secs: args.shutdown_grace_secs.or(file.shutdown_grace_secs).unwrap_or(30),
            auth: AuthSettings::resolve(file.auth, args.auth_signing_keys_file.or(file.auth_signing_keys_file))?,
            gc: file.gc,
            mirrors: file.mirror,
            webhooks: file.webhook,
            replicate: file.replicate,
        })
    }
}

/// Parts below this size are refused by S3 and GCS (all but the last part).
const MIN_BUCKET_PART_SIZE: usize = 5 << 20;

impl StorageConfig {
    pub fn load(args: CheckStorageArgs) -> Result<StorageConfig, String> {
        let file = read_optional_file(args.config.as_deref())?;
        StorageConfig::resolve(args.storage, &file)
    }

    fn resolve(args: StorageArgs, file: &FileConfig) -> Result<StorageConfig, String> {
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
        Ok(StorageConfig {
            location,
            part_size,
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

/// The `[gc]` table of the file at `path` (defaults without one).
pub fn gc_section(path: Option<&Path>) -> Result<GcSection, String> {
    Ok(read_optional_file(path)?.gc)
}

fn read_optional_file(path: Option<&Path>) -> Result<FileConfig, String> {
    match path {
        Some(path) => read_file(path),
        None => Ok(FileConfig::default()),
    }
}

fn read_file(path: &Path) -> Result<FileConfig, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The configuration from the file at `path` alone.
    fn load_file(path: &Path) -> Result<Config, String> {
        Config::load(ServeArgs {
            config: Some(path.to_path_buf()),
            ..Default::default()
        })
    }

    fn write_config(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pier.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn flags_override_the_file_and_defaults_fill_the_rest() {
        let (_dir, path) =
            write_config("listen = \"0.0.0.0:6000\"\ndata_dir = \"/srv/pier\"\nallow_sparse_manifests = true\n");
        let args = ServeArgs {
            config: Some(path.clone()),
            storage: StorageArgs {
                data_dir: Some("/flag".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let config = Config::load(args).unwrap();
        assert_eq!(config.listen.to_string(), "0.0.0.0:6000");
        assert_eq!(config.storage.location, StorageLocation::Disk("/flag".into()));
        assert!(config.allow_sparse_manifests);
        assert!(!config.redirect_blobs);
        assert_eq!(config.storage.part_size, 1 << 20);
        std::fs::write(&path, "listn = \"x\"\n").unwrap();
        let err = load_file(&path).unwrap_err();
        assert!(err.contains("unknown field"), "{err}");
    }

    #[test]
    fn a_bucket_with_s3_options_from_file_and_flags() {
        let (_dir, path) = write_config(
            "storage_url = \"s3://images/team/registry\"\nredirect_blobs = true\n\
             [s3]\nendpoint = \"http://127.0.0.1:9000\"\nregion = \"eu-west-1\"\nallow_http = true\n",
        );
        let config = Config::load(ServeArgs {
            config: Some(path.clone()),
            storage: StorageArgs {
                s3_region: Some("auto".into()),
                ..Default::default()
            },
            ..Default::default()
        })
        .unwrap();
        let StorageLocation::Bucket(url) = &config.storage.location else {
            panic!("a bucket: {:?}", config.storage.location)
        };
        assert_eq!(url.host_str(), Some("images"));
        assert_eq!(url.path(), "/team/registry");
        assert_eq!(config.storage.part_size, 8 << 20, "buckets default to 8 MiB parts");
        assert!(config.redirect_blobs);
        assert_eq!(
            config.storage.s3,
            S3Options {
                endpoint: Some("http://127.0.0.1:9000".into()),
                region: Some("auto".into()),
                allow_http: Some(true),
                virtual_hosted_style: None,
            }
        );
        std::fs::write(&path, "[s3]\nendpont = \"x\"\n").unwrap();
        let err = load_file(&path).unwrap_err();
        assert!(err.contains("unknown field"), "{err}");
    }

    #[test]
    fn mirror_tables() {
        let (_dir, path) = write_config(
            "[[mirror]]\nnamespace = \"hub/**\"\nupstream = \"https://registry-1.docker.io\"\n\
             [[mirror]]\nnamespace = \"ghcr/**\"\nupstream = \"https://ghcr.io\"\ntag_ttl_secs = 0\n\
             username = \"u\"\npassword = \"p\"\n",
        );
        let config = load_file(&path).unwrap();
        assert_eq!(config.mirrors.len(), 2);
        assert_eq!(config.mirrors[0].tag_ttl_secs, pier_core::mirror::DEFAULT_TAG_TTL_SECS);
        assert_eq!(config.mirrors[1].tag_ttl_secs, 0);
        assert_eq!(config.mirrors[1].username.as_deref(), Some("u"));
        std::fs::write(&path, "[[mirror]]\nnamespace = \"hub/**\"\nupstrem = \"x\"\n").unwrap();
        let err = load_file(&path).unwrap_err();
        assert!(err.contains("unknown field"), "{err}");
    }

    #[test]
    fn webhook_and_replicate_tables() {
        let (_dir, path) = write_config(
            "[[webhook]]\nurl = \"https://hooks.example/pier\"\nevents = [\"push\", \"pull\"]\n\
             repository = \"team/**\"\nheaders = { Authorization = \"Bearer s3cret\" }\n\
             [[replicate]]\nrepository = \"ci/**\"\ntags = \"v*\"\nto_namespace = \"prod/**\"\n",
        );
        let config = load_file(&path).unwrap();
        assert_eq!(config.webhooks.len(), 1);
        assert_eq!(config.webhooks[0].events.len(), 2);
        assert_eq!(config.webhooks[0].headers["Authorization"], "Bearer s3cret");
        assert_eq!(config.replicate[0].to_namespace.as_deref(), Some("prod/**"));
        std::fs::write(&path, "[[webhook]]\nurl = \"https://h/\"\nevents = [\"poke\"]\n").unwrap();
        assert!(load_file(&path).is_err());
    }

    /// TOML writes NaN and infinities, which the retention rules refuse
    /// like negative day counts (an age of 0 ms would delete everything).
    #[test]
    fn retention_day_counts_are_checked() {
        for bad in ["nan", "-inf", "-1"] {
            let text = format!("[gc]\n[[gc.rules]]\nnamespace = \"**\"\nexpire_after_days = {bad}\n");
            let err = Config::from_toml(&text).unwrap_err();
            assert!(err.contains("not a number of days"), "{bad}: {err}");
        }
        let ok = "[gc]\n[[gc.rules]]\nnamespace = \"**\"\nuntagged_expire_after_days = 1.5\n";
        assert_eq!(Config::from_toml(ok).unwrap().gc.collection.rules.len(), 1);
    }

    #[test]
    fn storage_urls_are_checked() {
        let load = |url: &str, part_size: Option<usize>| {
            StorageConfig::load(CheckStorageArgs {
                config: None,
                storage: StorageArgs {
                    storage_url: Some(url.into()),
                    part_size,
                    ..Default::default()
                },
            })
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
}
