//! TLS for `pier serve`: the server certificate and key read from PEM
//! files and read again when they change (cert-manager, ACME clients and
//! Kubernetes secret mounts rotate them in place), and mutual TLS against
//! an operator's client CA, whose verified certificates name their holder
//! to core (`pier_core::auth::ClientCertificate`). Its settings are here
//! (flags in [`TlsArgs`], the file's keys in [`TlsFile`], gathered by
//! `config`); the accept loop is in `listen`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use clap::Args;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use serde::Deserialize;
use tokio_rustls::TlsAcceptor;
use x509_cert::der::Decode;

/// The TLS flags of `pier serve` (and their environment variables).
#[derive(Args, Debug, Default)]
pub struct TlsArgs {
    /// PEM certificate chain to serve HTTPS with (with --tls-key); read again when it changes.
    #[arg(long, env = "PIER_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "PIER_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// A mounted Kubernetes TLS secret: HTTPS with DIR/tls.crt and DIR/tls.key when both exist,
    /// else plain HTTP (--tls-cert/--tls-key win over it).
    #[arg(long, env = "PIER_TLS_DIR")]
    pub tls_dir: Option<PathBuf>,
    /// PEM CA certificates that sign client certificates (mutual TLS): a verified client's
    /// subject can be an identity in `[[auth.certificates]]`.
    #[arg(long, env = "PIER_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
    /// With --tls-client-ca: `optional` (clients without a certificate are served too) or
    /// `required` (refused at the handshake) [default: optional].
    #[arg(long, env = "PIER_TLS_CLIENT_AUTH")]
    pub tls_client_auth: Option<ClientAuth>,
}

/// The same settings as the configuration file's top-level keys.
#[derive(Debug, Default)]
pub struct TlsFile {
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_dir: Option<PathBuf>,
    pub tls_client_ca: Option<PathBuf>,
    pub tls_client_auth: Option<ClientAuth>,
}

/// Whether clients must present a certificate signed by the client CA.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// Verified when presented; clients without one are served as before
    /// (anonymous pulls, password logins).
    #[default]
    Optional,
    /// Refused at the handshake without a verified certificate.
    Required,
}

/// Where the server's certificate comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsSource {
    /// Plain HTTP.
    None,
    /// These PEM files.
    Files { cert: PathBuf, key: PathBuf },
    /// `tls.crt` and `tls.key` in this directory, if both are there when
    /// the server starts (a Kubernetes TLS secret); else plain HTTP.
    Directory(PathBuf),
}

/// The TLS settings of `pier serve` ([`acceptor`] reads the files).
#[derive(Clone, Debug)]
pub struct TlsSettings {
    pub source: TlsSource,
    pub client_ca: Option<PathBuf>,
    pub client_auth: ClientAuth,
}

impl TlsSettings {
    /// The flags over the file; `Err` for settings that do not go together.
    pub fn resolve(args: TlsArgs, file: TlsFile) -> Result<TlsSettings, String> {
        let cert = args.tls_cert.or(file.tls_cert);
        let key = args.tls_key.or(file.tls_key);
        let source = match (cert, key) {
            (Some(cert), Some(key)) => TlsSource::Files { cert, key },
            (None, None) => args
                .tls_dir
                .or(file.tls_dir)
                .map_or(TlsSource::None, TlsSource::Directory),
            (Some(_), None) => return Err("tls_cert is set but tls_key is not".into()),
            (None, Some(_)) => return Err("tls_key is set but tls_cert is not".into()),
        };
        let client_ca = args.tls_client_ca.or(file.tls_client_ca);
        let client_auth = args.tls_client_auth.or(file.tls_client_auth).unwrap_or_default();
        if client_auth == ClientAuth::Required && client_ca.is_none() {
            return Err("tls_client_auth = required needs tls_client_ca".into());
        }
        if client_ca.is_some() && source == TlsSource::None {
            return Err("tls_client_ca needs TLS: give tls_cert and tls_key (or tls_dir)".into());
        }
        Ok(TlsSettings {
            source,
            client_ca,
            client_auth,
        })
    }
}

/// How often the certificate and key files are read to see whether they changed.
const RELOAD_EVERY: Duration = Duration::from_secs(2);

/// The certificate and key files `pier serve` serves, if any: the named
/// files, or those of a Kubernetes TLS secret mounted as a directory
/// (`tls.crt`, `tls.key`) when both are there. Says in the log which.
pub fn certificate_files(settings: &TlsSettings) -> Result<Option<(PathBuf, PathBuf)>, String> {
    let files = match &settings.source {
        TlsSource::Files { cert, key } => Some((cert.clone(), key.clone())),
        TlsSource::Directory(dir) => {
            let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
            match (cert.exists(), key.exists()) {
                (true, true) => Some((cert, key)),
                (false, false) => {
                    tracing::info!(tls_dir = %dir.display(), "no tls.crt and tls.key in the TLS directory: serving plain HTTP");
                    None
                }
                (true, false) => return Err(format!("{} is there but {} is not", cert.display(), key.display())),
                (false, true) => return Err(format!("{} is there but {} is not", key.display(), cert.display())),
            }
        }
        TlsSource::None => None,
    };
    match (&files, &settings.client_ca) {
        (Some((cert, key)), _) => {
            tracing::info!(cert = %cert.display(), key = %key.display(), "serving HTTPS (HTTP/1.1 and HTTP/2)")
        }
        (None, Some(_)) => return Err("tls_client_ca needs TLS: give tls_cert and tls_key (or tls_dir)".into()),
        (None, None) => {}
    }
    Ok(files)
}

/// The acceptor of TLS connections with the certificate in `cert` and
/// `key`, which a task started here reads again every few seconds; with
/// `settings.client_ca`, client certificates are verified against it.
pub fn acceptor(settings: &TlsSettings, cert: PathBuf, key: PathBuf) -> Result<TlsAcceptor, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let pair = PemPair::read(&cert, &key)?;
    let current = Arc::new(ReloadingCertificate {
        key: RwLock::new(pair.certified(&provider)?),
    });
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let builder = match &settings.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let roots = client_roots(ca)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let verifier = match settings.client_auth {
                ClientAuth::Optional => verifier.allow_unauthenticated(),
                ClientAuth::Required => verifier,
            };
            let verifier = verifier
                .build()
                .map_err(|e| format!("client CA {}: {e}", ca.display()))?;
            tracing::info!(client_ca = %ca.display(), client_auth = ?settings.client_auth, "verifying client certificates");
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(current.clone());
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    tokio::spawn(reload_on_change(current, provider, cert, key, pair));
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The subject of a verified client certificate, RFC 4514
/// (`CN=ci-runner,O=acme`), as `[[auth.certificates]]` names it.
pub fn subject_of(certificate: &CertificateDer<'_>) -> Result<String, String> {
    let parsed = x509_cert::Certificate::from_der(certificate.as_ref()).map_err(|e| e.to_string())?;
    Ok(parsed.tbs_certificate.subject.to_string())
}

/// The certificate served: the last pair read that was valid.
#[derive(Debug)]
struct ReloadingCertificate {
    key: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for ReloadingCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.key.read().unwrap_or_else(PoisonError::into_inner).clone())
    }
}

/// The bytes of a certificate file and its key file.
#[derive(PartialEq, Eq)]
struct PemPair {
    cert: Vec<u8>,
    key: Vec<u8>,
}

impl PemPair {
    fn read(cert: &Path, key: &Path) -> Result<PemPair, String> {
        let read = |path: &Path| std::fs::read(path).map_err(|e| format!("TLS: cannot read {}: {e}", path.display()));
        Ok(PemPair {
            cert: read(cert)?,
            key: read(key)?,
        })
    }

    /// The certificate chain and key, checked to belong together.
    fn certified(&self, provider: &CryptoProvider) -> Result<Arc<CertifiedKey>, String> {
        let chain = CertificateDer::pem_slice_iter(&self.cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("TLS certificate: not PEM certificates: {e}"))?;
        if chain.is_empty() {
            return Err("TLS certificate: the file holds no PEM certificate".into());
        }
        let key = PrivateKeyDer::from_pem_slice(&self.key).map_err(|e| format!("TLS key: no PEM private key: {e}"))?;
        CertifiedKey::from_der(chain, key, provider)
            .map(Arc::new)
            .map_err(|e| format!("TLS certificate and key: {e}"))
    }
}

/// Reads the pair every few seconds and, when the bytes changed and make a
/// valid pair, serves it to the next handshakes; connections already open
/// keep theirs. A bad pair or an unreadable file is logged once and the
/// previous pair kept (a rotation that writes one file, then the other,
/// may log once in between).
async fn reload_on_change(
    current: Arc<ReloadingCertificate>,
    provider: Arc<CryptoProvider>,
    cert: PathBuf,
    key: PathBuf,
    mut served: PemPair,
) {
    let mut ticks = tokio::time::interval(RELOAD_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_error = None;
    loop {
        ticks.tick().await;
        let (cert, key) = (cert.clone(), key.clone());
        let read = tokio::task::spawn_blocking(move || PemPair::read(&cert, &key))
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
        let reloaded = match read {
            Ok(pair) if pair == served => continue,
            Ok(pair) => pair.certified(&provider).map(|key| (pair, key)),
            Err(e) => Err(e),
        };
        match reloaded {
            Ok((pair, key)) => {
                *current.key.write().unwrap_or_else(PoisonError::into_inner) = key;
                served = pair;
                last_error = None;
                tracing::info!("TLS certificate reloaded");
            }
            Err(e) if last_error.as_ref() == Some(&e) => {}
            Err(e) => {
                tracing::error!(error = %e, "new TLS certificate not loaded; serving the previous one");
                last_error = Some(e);
            }
        }
    }
}

/// The CA certificates client certificates must be signed by.
fn client_roots(ca: &Path) -> Result<RootCertStore, String> {
    let bytes = std::fs::read(ca).map_err(|e| format!("client CA: cannot read {}: {e}", ca.display()))?;
    let mut roots = RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(&bytes) {
        let certificate = certificate.map_err(|e| format!("client CA {}: not PEM certificates: {e}", ca.display()))?;
        roots
            .add(certificate)
            .map_err(|e| format!("client CA {}: {e}", ca.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("client CA {}: the file holds no PEM certificate", ca.display()));
    }
    Ok(roots)
}
