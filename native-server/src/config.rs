//! Settings of `pier serve`, `pier gc` and `pier check-storage`: command-line
//! flags, `PIER_*` environment variables and an optional TOML file, in that
//! order of precedence. The file gathers the parts (the storage settings of
//! `store::settings`, the deployment's `pier_core::deployment::Settings`);
//! only the commands read it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Args;
use pier_core::archive::{ArchiveConfig, ArchiveRule};
use pier_core::auth::AuthConfig;
use pier_core::deployment::Settings;
use pier_core::events::{ReplicateConfig, WebhookConfig};
use pier_core::gc::GcConfig;
use pier_core::mirror::MirrorConfig;
use pier_core::namespace_policy::{self, PolicyConfig};
use pier_core::quota::QuotaConfig;
use pier_core::sync::SyncConfig;
use serde::Deserialize;

use crate::store::settings::{S3File, StorageArgs, StorageConfig, StorageFile, StorageLocation};
use crate::tls::{ClientAuth, TlsArgs, TlsFile, TlsSettings};

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
    /// Record a manifest's last pull at most once per this many seconds per instance; 0 records none [default: 3600].
    #[arg(long, env = "PIER_LAST_PULL_PERIOD_SECS")]
    pub last_pull_period_secs: Option<u64>,
    /// Log format: `text` or `json` [default: text].
    #[arg(long, env = "PIER_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Seconds in-flight requests get to finish after a shutdown signal [default: 30].
    #[arg(long, env = "PIER_SHUTDOWN_GRACE_SECS")]
    pub shutdown_grace_secs: Option<u64>,
    /// JWK Set whose first key signs auth tokens (`pier auth new-signing-key`); needed with `[auth]`.
    #[arg(long, env = "PIER_AUTH_SIGNING_KEYS_FILE")]
    pub auth_signing_keys_file: Option<PathBuf>,
    #[command(flatten)]
    pub tls: TlsArgs,
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
    fsync: Option<bool>,
    max_body_bytes: Option<u64>,
    redirect_blobs: Option<bool>,
    last_pull_period_secs: Option<u64>,
    log_format: Option<LogFormat>,
    shutdown_grace_secs: Option<u64>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_dir: Option<PathBuf>,
    tls_client_ca: Option<PathBuf>,
    tls_client_auth: Option<ClientAuth>,
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
    /// Images pulled from upstream registries on a schedule: `[[sync]]` tables.
    #[serde(default)]
    sync: Vec<SyncConfig>,
    /// Storage quotas per namespace: `[[quota]]` tables.
    #[serde(default)]
    quota: Vec<QuotaConfig>,
    /// The archive tier: its store, schedule and rules.
    archive: Option<ArchiveSection>,
    /// Rules per namespace (signatures required): `[[policy]]` tables.
    #[serde(default)]
    policy: Vec<PolicyConfig>,
}

/// The `[archive]` table (see docs/lifecycle.md): the archive's store and
/// schedule, then the rules core reads (`ArchiveConfig`), listed here rather
/// than flattened so that a misspelt key is refused.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveSection {
    /// Where archived blobs' bytes go: a bucket URL (`s3://cold/pier`,
    /// with the `[s3]` settings of the main store) or `file:///path`.
    pub storage_url: String,
    /// Seconds between passes in `pier serve`; 0 (the default) runs them
    /// only by `pier archive run --apply`.
    #[serde(default)]
    pub interval_secs: u64,
    #[serde(default)]
    pub rules: Vec<ArchiveRule>,
    pub promote_on_pull: Option<bool>,
}

impl ArchiveSection {
    fn config(&self) -> ArchiveConfig {
        let defaults = ArchiveConfig::default();
        ArchiveConfig {
            rules: self.rules.clone(),
            promote_on_pull: self.promote_on_pull.unwrap_or(defaults.promote_on_pull),
        }
    }
}

/// The archive's store and schedule, resolved.
#[derive(Debug, Clone)]
pub struct ArchiveSettings {
    pub store: StorageConfig,
    pub interval_secs: u64,
}

/// The `[gc]` table: when the server collects, and how (see docs/gc.md).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct GcSection {
    /// Seconds between collections in `pier serve`; 0 (the default) runs none.
    #[serde(default)]
    pub interval_secs: u64,
    #[serde(flatten)]
    pub collection: GcConfig,
}

/// Resolved settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub tls: TlsSettings,
    pub storage: StorageConfig,
    pub log_format: LogFormat,
    pub shutdown_grace_secs: u64,
    /// Seconds between collections; 0: the server only expires idle uploads.
    pub gc_interval_secs: u64,
    /// What the registry is (its auth is in `auth`: the keys are read when
    /// the server starts).
    pub deployment: Settings,
    pub auth: Option<AuthSettings>,
    /// The archive tier's store and schedule (its rules are in `deployment`).
    pub archive: Option<ArchiveSettings>,
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

    fn resolve(args: ServeArgs, mut file: FileConfig) -> Result<Config, String> {
        let tls = TlsSettings::resolve(args.tls, file.tls())?;
        let storage = StorageConfig::resolve(args.storage, &file.storage())?;
        let archive = file
            .archive
            .as_ref()
            .map(|section| archive_settings(section, &storage))
            .transpose()?;
        Ok(Config {
            listen: args
                .listen
                .or(file.listen)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 5000))),
            tls,
            storage,
            log_format: args.log_format.or(file.log_format).unwrap_or_default(),
            shutdown_grace_secs: args.shutdown_grace_secs.or(file.shutdown_grace_secs).unwrap_or(30),
            gc_interval_secs: file.gc.interval_secs,
            deployment: Settings {
                allow_sparse_manifests: args
                    .allow_sparse_manifests
                    .or(file.allow_sparse_manifests)
                    .unwrap_or(false),
                max_body_bytes: args.max_body_bytes.or(file.max_body_bytes),
                redirect_blobs: args.redirect_blobs.or(file.redirect_blobs).unwrap_or(false),
                collect: file.gc.interval_secs > 0,
                gc: file.gc.collection,
                auth: None,
                mirrors: file.mirror,
                webhooks: file.webhook,
                replicate: file.replicate,
                sync: file.sync,
                quotas: file.quota,
                archive: file.archive.as_ref().map(ArchiveSection::config),
                last_pull_period_secs: args.last_pull_period_secs.or(file.last_pull_period_secs),
                policies: with_key_files_read(file.policy)?,
            },
            archive,
            auth: AuthSettings::resolve(
                file.auth,
                args.auth_signing_keys_file.or(file.auth_signing_keys_file.take()),
            )?,
        })
    }

    /// The deployment's settings with its auth, whose signing keys are read
    /// from their file now.
    pub fn deployment_settings(&self) -> Result<Settings, String> {
        let mut settings = self.deployment.clone();
        if let Some(auth) = &self.auth {
            let keys = std::fs::read_to_string(&auth.signing_keys_file)
                .map_err(|e| format!("auth signing keys {}: {e}", auth.signing_keys_file.display()))?;
            settings.auth = Some((auth.config.clone(), keys));
        }
        Ok(settings)
    }
}

/// The `[[policy]]` tables with each `require_signature` entry that is not
/// PEM text read as the path of a PEM file (`cosign.pub`), now, at start.
fn with_key_files_read(mut policies: Vec<PolicyConfig>) -> Result<Vec<PolicyConfig>, String> {
    for policy in &mut policies {
        let mut keys = std::mem::take(&mut policy.require_signature);
        for key in &mut keys {
            if key.trim_start().starts_with("-----BEGIN") {
                continue;
            }
            *key = std::fs::read_to_string(&*key).map_err(|e| {
                namespace_policy::describe(
                    policy,
                    &format!("require_signature: cannot read the key file {key}: {e}"),
                )
            })?;
        }
        policy.require_signature = keys;
    }
    Ok(policies)
}

/// The storage settings of the file at `args.config` under the flags in `args`.
pub fn storage(args: CheckStorageArgs) -> Result<StorageConfig, String> {
    let mut file = read_optional_file(args.config.as_deref())?;
    StorageConfig::resolve(args.storage, &file.storage())
}

impl FileConfig {
    fn tls(&mut self) -> TlsFile {
        TlsFile {
            tls_cert: self.tls_cert.take(),
            tls_key: self.tls_key.take(),
            tls_dir: self.tls_dir.take(),
            tls_client_ca: self.tls_client_ca.take(),
            tls_client_auth: self.tls_client_auth,
        }
    }

    fn storage(&mut self) -> StorageFile {
        StorageFile {
            storage_url: self.storage_url.take(),
            data_dir: self.data_dir.take(),
            part_size: self.part_size,
            fsync: self.fsync,
            s3: std::mem::take(&mut self.s3),
        }
    }
}

/// The `[gc]` table of the file at `path` (defaults without one).
/// The archive's store: where `storage_url` says, with the main store's
/// `[s3]` settings, part size and flushing.
fn archive_settings(section: &ArchiveSection, main: &StorageConfig) -> Result<ArchiveSettings, String> {
    let args = StorageArgs {
        storage_url: Some(section.storage_url.clone()),
        ..StorageArgs::default()
    };
    let mut store = StorageConfig::resolve(args, &StorageFile::default()).map_err(|e| format!("[archive] {e}"))?;
    store.s3 = main.s3.clone();
    let same = match (&store.location, &main.location) {
        (StorageLocation::Disk(a), StorageLocation::Disk(b)) => {
            std::path::absolute(a).ok() == std::path::absolute(b).ok()
        }
        (a, b) => a == b,
    };
    if same {
        return Err(format!(
            "[archive] storage_url names the main store ({}): the archive is a store of its own",
            main.location
        ));
    }
    Ok(ArchiveSettings {
        store,
        interval_secs: section.interval_secs,
    })
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
    use crate::store::object::S3Options;
    use crate::store::settings::StorageLocation;
    use crate::tls::TlsSource;

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
        assert!(config.deployment.allow_sparse_manifests);
        assert!(!config.deployment.redirect_blobs);
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
        assert!(config.deployment.redirect_blobs);
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
        assert_eq!(config.deployment.mirrors.len(), 2);
        assert_eq!(
            config.deployment.mirrors[0].tag_ttl_secs,
            pier_core::mirror::DEFAULT_TAG_TTL_SECS
        );
        assert_eq!(config.deployment.mirrors[1].tag_ttl_secs, 0);
        assert_eq!(config.deployment.mirrors[1].username.as_deref(), Some("u"));
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
        assert_eq!(config.deployment.webhooks.len(), 1);
        assert_eq!(config.deployment.webhooks[0].events.len(), 2);
        assert_eq!(config.deployment.webhooks[0].headers["Authorization"], "Bearer s3cret");
        assert_eq!(config.deployment.replicate[0].to_namespace.as_deref(), Some("prod/**"));
        std::fs::write(&path, "[[webhook]]\nurl = \"https://h/\"\nevents = [\"poke\"]\n").unwrap();
        assert!(load_file(&path).is_err());
    }

    #[test]
    fn sync_tables() {
        let config = Config::from_toml(
            "[[sync]]\nname = \"factory\"\nupstream = \"https://ci.example\"\nrepositories = [\"team/*\"]\n\
             tags = \"v*\"\nto_namespace = \"site/**\"\ninterval_secs = 300\ndelete = true\n",
        )
        .unwrap();
        let rule = &config.deployment.sync[0];
        assert_eq!(
            (rule.name.as_str(), rule.interval_secs, rule.delete),
            ("factory", 300, true)
        );
        let err = Config::from_toml(
            "[[sync]]\nname = \"x\"\nupstream = \"https://u\"\nrepositories = [\"a\"]\nintervl = 1\n",
        )
        .unwrap_err();
        assert!(err.contains("unknown field"), "{err}");
    }

    #[test]
    fn tls_settings_layer_like_the_others_and_go_together() {
        let (_dir, path) = write_config(
            "tls_cert = \"/file/tls.crt\"\ntls_key = \"/file/tls.key\"\ntls_client_ca = \"/file/ca.crt\"\n",
        );
        let config = Config::load(ServeArgs {
            config: Some(path.clone()),
            tls: TlsArgs {
                tls_cert: Some("/flag/tls.crt".into()),
                tls_client_auth: Some(ClientAuth::Required),
                ..Default::default()
            },
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            config.tls.source,
            TlsSource::Files {
                cert: "/flag/tls.crt".into(),
                key: "/file/tls.key".into()
            }
        );
        assert_eq!(config.tls.client_ca, Some("/file/ca.crt".into()));
        assert_eq!(config.tls.client_auth, ClientAuth::Required);

        let config = Config::from_toml("tls_dir = \"/etc/pier/tls\"\n").unwrap();
        assert_eq!(config.tls.source, TlsSource::Directory("/etc/pier/tls".into()));
        assert_eq!(config.tls.client_auth, ClientAuth::Optional);
        assert_eq!(Config::from_toml("").unwrap().tls.source, TlsSource::None);

        for (bad, error) in [
            ("tls_cert = \"/c\"\n", "tls_key is not"),
            ("tls_key = \"/k\"\n", "tls_cert is not"),
            ("tls_client_ca = \"/ca\"\n", "needs TLS"),
            (
                "tls_dir = \"/d\"\ntls_client_auth = \"required\"\n",
                "needs tls_client_ca",
            ),
            ("tls_client_auth = \"sometimes\"\n", "unknown variant"),
        ] {
            let err = Config::from_toml(bad).unwrap_err();
            assert!(err.contains(error), "{bad}: {err}");
        }
    }

    #[test]
    fn policy_keys_are_read_from_their_files() {
        let (dir, path) = write_config("");
        let key = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA0tK/1fFscjwo/kv97mtEww82GmhAzxibJ11/MvMLMRE=\n-----END PUBLIC KEY-----\n";
        let key_file = dir.path().join("cosign.pub");
        std::fs::write(&key_file, key).unwrap();
        let text = format!(
            "[[policy]]\nnamespace = \"prod/**\"\nrequire_signature = [{:?}, {key:?}]\n",
            key_file.display().to_string()
        );
        std::fs::write(&path, &text).unwrap();
        let policies = load_file(&path).unwrap().deployment.policies;
        assert_eq!(
            policies[0].require_signature,
            [key, key],
            "the file's text, and the text as given"
        );
        std::fs::remove_file(&key_file).unwrap();
        let err = load_file(&path).unwrap_err();
        assert!(
            err.contains("namespace policy \"prod/**\"") && err.contains("cannot read the key file"),
            "{err}"
        );
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
        assert_eq!(Config::from_toml(ok).unwrap().deployment.gc.rules.len(), 1);
    }
}
