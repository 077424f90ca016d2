//! Settings of `pier serve`: command-line flags, `PIER_*` environment
//! variables and an optional TOML file, in that order of precedence.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Args;
use serde::Deserialize;

/// Flags and environment variables; every one may also be set in the file.
#[derive(Args, Debug, Default)]
pub struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, short = 'c', env = "PIER_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:5000].
    #[arg(long, env = "PIER_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Directory for all registry data [default: ./pier-data].
    #[arg(long, env = "PIER_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Accept manifests whose blobs or child manifests are absent (sparse).
    #[arg(long, env = "PIER_ALLOW_SPARSE_MANIFESTS")]
    pub allow_sparse_manifests: Option<bool>,
    /// Largest request body in bytes; larger blobs must be pushed in chunks [default: no limit].
    #[arg(long, env = "PIER_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<u64>,
    /// Bytes per multipart part: the memory bound of one upload [default: 1 MiB on disk].
    #[arg(long, env = "PIER_PART_SIZE")]
    pub part_size: Option<usize>,
    /// Log format: `text` or `json` [default: text].
    #[arg(long, env = "PIER_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Seconds in-flight requests get to finish after a shutdown signal [default: 30].
    #[arg(long, env = "PIER_SHUTDOWN_GRACE_SECS")]
    pub shutdown_grace_secs: Option<u64>,
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
    data_dir: Option<PathBuf>,
    allow_sparse_manifests: Option<bool>,
    part_size: Option<usize>,
    max_body_bytes: Option<u64>,
    log_format: Option<LogFormat>,
    shutdown_grace_secs: Option<u64>,
}

/// Resolved settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub allow_sparse_manifests: bool,
    pub part_size: usize,
    pub max_body_bytes: Option<u64>,
    pub log_format: LogFormat,
    pub shutdown_grace_secs: u64,
}

impl Config {
    pub fn load(args: ServeArgs) -> Result<Config, String> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let part_size = args.part_size.or(file.part_size).unwrap_or(1 << 20);
        if !(4096..=(5 << 30)).contains(&part_size) {
            return Err(format!("part_size {part_size} must be between 4 KiB and 5 GiB"));
        }
        Ok(Config {
            listen: args
                .listen
                .or(file.listen)
                .unwrap_or_else(|| "127.0.0.1:5000".parse().expect("literal")),
            data_dir: args
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("pier-data")),
            allow_sparse_manifests: args
                .allow_sparse_manifests
                .or(file.allow_sparse_manifests)
                .unwrap_or(false),
            part_size,
            max_body_bytes: args.max_body_bytes.or(file.max_body_bytes),
            log_format: args.log_format.or(file.log_format).unwrap_or_default(),
            shutdown_grace_secs: args.shutdown_grace_secs.or(file.shutdown_grace_secs).unwrap_or(30),
        })
    }
}

fn read_file(path: &Path) -> Result<FileConfig, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file_and_defaults_fill_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pier.toml");
        std::fs::write(
            &path,
            "listen = \"0.0.0.0:6000\"\ndata_dir = \"/srv/pier\"\nallow_sparse_manifests = true\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(path.clone()),
            data_dir: Some("/flag".into()),
            ..Default::default()
        };
        let config = Config::load(args).unwrap();
        assert_eq!(config.listen.to_string(), "0.0.0.0:6000");
        assert_eq!(config.data_dir, PathBuf::from("/flag"));
        assert!(config.allow_sparse_manifests);
        assert_eq!(config.part_size, 1 << 20);
        std::fs::write(&path, "listn = \"x\"\n").unwrap();
        let err = Config::load(ServeArgs {
            config: Some(path),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.contains("unknown field"), "{err}");
    }
}
