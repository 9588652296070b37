//! TLS settings as the Collector's `configtls` has them, turned into rustls configurations:
//! [`ServerTlsSettings`] for the OTLP receivers, [`ClientTlsSettings`] for the exporters.
//!
//! Only the `ring` provider is compiled in, and TLS 1.2 is the oldest version spoken: a
//! `min_version` of `1.0` or `1.1` therefore behaves as `1.2`. Every error names the setting
//! and the file it came from (`cert_file: /etc/runbom/server.pem: no certificate found`).

use std::{
    fmt,
    path::{Path, PathBuf},
    str::FromStr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use rustls::{
    ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme,
    SupportedProtocolVersion,
    client::{
        ResolvesClientCert,
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    },
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime, pem::PemObject},
    server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier},
    sign::CertifiedKey,
};

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key file is missing, unreadable or holds nothing usable.
    #[error("{setting}: {}: {reason}", path.display())]
    File {
        setting: &'static str,
        path: PathBuf,
        reason: String,
    },
    /// The key does not belong to the certificate, or rustls refused the pair.
    #[error("cert_file {} and key_file {}: {reason}", cert.display(), key.display())]
    KeyPair {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    /// Settings that do not fit together (versions, a certificate without its key).
    #[error("{0}")]
    Settings(String),
    #[error("server_name_override: {0:?} is not a valid DNS name or IP address")]
    ServerName(String),
    #[error("the system has no CA certificates ({0}); set ca_file")]
    NoSystemRoots(String),
    /// Anything else rustls refused while building the configuration.
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
}

impl TlsError {
    /// The error under the configuration section that holds the settings:
    /// `receivers.otlp.protocols.grpc.tls.cert_file: /x.pem: no certificate found`.
    #[must_use]
    pub fn under(&self, section: &str) -> String {
        match self {
            Self::File { .. } => format!("{section}.{self}"),
            _ => format!("{section}: {self}"),
        }
    }
}

/// A TLS protocol version as `min_version` / `max_version` write it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    V1_0,
    V1_1,
    V1_2,
    V1_3,
}

impl FromStr for TlsVersion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "1.0" => Ok(Self::V1_0),
            "1.1" => Ok(Self::V1_1),
            "1.2" => Ok(Self::V1_2),
            "1.3" => Ok(Self::V1_3),
            other => Err(format!(
                "{other:?} is not a TLS version (use \"1.0\", \"1.1\", \"1.2\" or \"1.3\")"
            )),
        }
    }
}

impl fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::V1_0 => "1.0",
            Self::V1_1 => "1.1",
            Self::V1_2 => "1.2",
            Self::V1_3 => "1.3",
        })
    }
}

/// The protocol versions between `min` (default 1.2, as in the Collector) and `max` (default:
/// the newest) that rustls speaks.
pub fn protocol_versions(
    min: Option<TlsVersion>,
    max: Option<TlsVersion>,
) -> Result<Vec<&'static SupportedProtocolVersion>, TlsError> {
    let min = min.unwrap_or(TlsVersion::V1_2);
    let max = max.unwrap_or(TlsVersion::V1_3);
    if min > max {
        return Err(TlsError::Settings(format!(
            "min_version {min} is greater than max_version {max}"
        )));
    }
    let versions: Vec<_> = [
        (TlsVersion::V1_2, &rustls::version::TLS12),
        (TlsVersion::V1_3, &rustls::version::TLS13),
    ]
    .into_iter()
    .filter(|(v, _)| (min..=max).contains(v))
    .map(|(_, version)| version)
    .collect();
    if versions.is_empty() {
        return Err(TlsError::Settings(format!(
            "max_version {max} is older than TLS 1.2, the oldest version runbom speaks"
        )));
    }
    Ok(versions)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A receiver's TLS settings (the Collector's `configtls.ServerConfig`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerTlsSettings {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// When set, clients must present a certificate signed by one of these CAs.
    pub client_ca_file: Option<PathBuf>,
    pub min_version: Option<TlsVersion>,
    pub max_version: Option<TlsVersion>,
    /// Re-read `cert_file` and `key_file` on a handshake once this long has passed.
    pub reload_interval: Option<Duration>,
}

impl ServerTlsSettings {
    /// Reads the files and builds the server configuration (no ALPN protocols set).
    pub fn load(&self) -> Result<ServerConfig, TlsError> {
        let provider = provider();
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&protocol_versions(self.min_version, self.max_version)?)?;
        let builder = match &self.client_ca_file {
            None => builder.with_no_client_auth(),
            Some(path) => {
                let roots = root_store("client_ca_file", path)?;
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                        .build()
                        .map_err(|e| file_error("client_ca_file", path, e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let key = ReloadingKey::load(
            self.cert_file.clone(),
            self.key_file.clone(),
            self.reload_interval,
            provider,
        )?;
        Ok(builder.with_cert_resolver(Arc::new(key)))
    }
}

/// An exporter's TLS settings (the Collector's `configtls.ClientConfig`). Whether TLS is used
/// at all depends on the exporter and its endpoint; see `GrpcExporter` and `HttpExporter`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientTlsSettings {
    /// `true`: plain text (gRPC exporters only, and only without `ca_file`).
    pub insecure: bool,
    /// Encrypt, but accept any server certificate.
    pub insecure_skip_verify: bool,
    /// CAs that sign the server's certificate; without it, the system's CAs.
    pub ca_file: Option<PathBuf>,
    /// Trust the system's CAs as well as `ca_file`.
    pub include_system_ca_certs_pool: bool,
    /// Client certificate and key, for servers that require one (mTLS).
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// The name the server's certificate is checked against (and sent as SNI) instead of the
    /// endpoint's host.
    pub server_name_override: Option<String>,
    pub min_version: Option<TlsVersion>,
    pub max_version: Option<TlsVersion>,
    /// Re-read `cert_file` and `key_file` on a handshake once this long has passed.
    pub reload_interval: Option<Duration>,
}

impl ClientTlsSettings {
    /// Whether a gRPC exporter uses TLS to `endpoint` (the Collector's `configgrpc` rule, except
    /// that an `http://` endpoint means plain text, as the OTLP exporter specification says):
    /// `https://` always does; otherwise `ca_file` means TLS, and else `insecure: true` or an
    /// `http://` endpoint means plain text. A plain `host:port` uses TLS.
    #[must_use]
    pub fn grpc_uses_tls(&self, endpoint: &str) -> bool {
        if endpoint.starts_with("https://") || self.ca_file.is_some() {
            return true;
        }
        !(self.insecure || endpoint.starts_with("http://"))
    }

    /// The server name to check the certificate against, if overridden.
    pub fn server_name(&self) -> Result<Option<ServerName<'static>>, TlsError> {
        self.server_name_override
            .as_ref()
            .map(|name| {
                let bare = name
                    .strip_prefix('[')
                    .and_then(|n| n.strip_suffix(']'))
                    .unwrap_or(name);
                ServerName::try_from(bare.to_owned())
                    .map_err(|_| TlsError::ServerName(name.clone()))
            })
            .transpose()
    }

    /// Reads the files and builds the client configuration (no ALPN protocols set).
    pub fn load(&self) -> Result<ClientConfig, TlsError> {
        let provider = provider();
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&protocol_versions(self.min_version, self.max_version)?)?;
        let builder = if self.insecure_skip_verify {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyServerCert(provider.clone())))
        } else {
            let mut roots = match &self.ca_file {
                Some(path) => root_store("ca_file", path)?,
                None => RootCertStore::empty(),
            };
            if self.ca_file.is_none() || self.include_system_ca_certs_pool {
                add_system_roots(&mut roots)?;
            }
            builder.with_root_certificates(roots)
        };
        match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => {
                let key =
                    ReloadingKey::load(cert.clone(), key.clone(), self.reload_interval, provider)?;
                Ok(builder.with_client_cert_resolver(Arc::new(key)))
            }
            (None, None) => Ok(builder.with_no_client_auth()),
            _ => Err(TlsError::Settings(
                "set both cert_file and key_file, or neither".into(),
            )),
        }
    }
}

fn file_error(setting: &'static str, path: &Path, reason: impl Into<String>) -> TlsError {
    TlsError::File {
        setting,
        path: path.to_owned(),
        reason: reason.into(),
    }
}

fn read(setting: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| file_error(setting, path, format!("cannot read: {e}")))
}

/// Every PEM certificate in `path`; at least one.
pub fn load_certificates(
    setting: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(setting, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(setting, path, format!("malformed PEM: {e}")))?;
    if certs.is_empty() {
        return Err(file_error(setting, path, "no certificate found"));
    }
    Ok(certs)
}

/// The first PEM private key (PKCS#8, PKCS#1 or SEC1) in `path`.
pub fn load_private_key(
    setting: &'static str,
    path: &Path,
) -> Result<PrivateKeyDer<'static>, TlsError> {
    use rustls::pki_types::pem::Error;
    let pem = read(setting, path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        let reason = match e {
            Error::NoItemsFound => {
                "no private key found (expected a PEM PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)"
                    .to_owned()
            }
            other => format!("malformed PEM: {other}"),
        };
        file_error(setting, path, reason)
    })
}

fn root_store(setting: &'static str, path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certificates(setting, path)? {
        roots
            .add(cert)
            .map_err(|e| file_error(setting, path, format!("unusable CA certificate: {e}")))?;
    }
    Ok(roots)
}

/// Adds the operating system's CA certificates (`SSL_CERT_FILE` / `SSL_CERT_DIR` when set).
fn add_system_roots(roots: &mut RootCertStore) -> Result<(), TlsError> {
    let found = rustls_native_certs::load_native_certs();
    let (added, _unusable) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found
            .errors
            .first()
            .map_or_else(|| "none found".to_owned(), ToString::to_string);
        return Err(TlsError::NoSystemRoots(why));
    }
    if let Some(error) = found.errors.first() {
        tracing::debug!(%error, "some system CA certificates could not be read");
    }
    Ok(())
}

/// A certificate and key read from files, read again on use once `interval` has passed (the
/// Collector's `reload_interval`). A failed reload keeps the previous pair and logs why.
#[derive(Debug)]
struct ReloadingKey {
    cert_file: PathBuf,
    key_file: PathBuf,
    interval: Option<Duration>,
    provider: Arc<CryptoProvider>,
    current: Mutex<(Instant, Arc<CertifiedKey>)>,
}

impl ReloadingKey {
    fn load(
        cert_file: PathBuf,
        key_file: PathBuf,
        interval: Option<Duration>,
        provider: Arc<CryptoProvider>,
    ) -> Result<Self, TlsError> {
        let key = certified_key(&cert_file, &key_file, &provider)?;
        Ok(Self {
            cert_file,
            key_file,
            interval,
            provider,
            current: Mutex::new((Instant::now(), Arc::new(key))),
        })
    }

    fn get(&self) -> Arc<CertifiedKey> {
        // A poisoned lock only means another handshake panicked; the pair is still valid.
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(interval) = self.interval
            && current.0.elapsed() >= interval
        {
            current.0 = Instant::now();
            match certified_key(&self.cert_file, &self.key_file, &self.provider) {
                Ok(key) => current.1 = Arc::new(key),
                Err(error) => {
                    tracing::warn!(%error, "TLS certificate reload failed; keeping the previous one");
                }
            }
        }
        current.1.clone()
    }
}

fn certified_key(
    cert_file: &Path,
    key_file: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let certs = load_certificates("cert_file", cert_file)?;
    let key = load_private_key("key_file", key_file)?;
    CertifiedKey::from_der(certs, key, provider).map_err(|e| TlsError::KeyPair {
        cert: cert_file.to_owned(),
        key: key_file.to_owned(),
        reason: match e {
            rustls::Error::InconsistentKeys(_) => {
                "the private key does not belong to the certificate".into()
            }
            other => other.to_string(),
        },
    })
}

impl ResolvesServerCert for ReloadingKey {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

impl ResolvesClientCert for ReloadingKey {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// `insecure_skip_verify: true`: any server certificate is accepted, but the handshake's
/// signatures are still checked (the connection is encrypted, not authenticated).
#[derive(Debug)]
struct AnyServerCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory of PEM files, removed on drop.
    struct Files(PathBuf);

    impl Files {
        fn new(name: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("runbom-tls-{name}-{}", std::process::id()));
            std::fs::create_dir_all(&dir)
                .unwrap_or_else(|e| panic!("creating {} failed: {e}", dir.display()));
            Self(dir)
        }

        fn write(&self, file: &str, contents: &str) -> PathBuf {
            let path = self.0.join(file);
            std::fs::write(&path, contents)
                .unwrap_or_else(|e| panic!("writing {} failed: {e}", path.display()));
            path
        }

        /// A self-signed certificate for `localhost` and its key, as `<name>.pem` and
        /// `<name>-key.pem`.
        fn self_signed(&self, name: &str) -> (PathBuf, PathBuf) {
            let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
                .expect("generating a self-signed certificate works");
            (
                self.write(&format!("{name}.pem"), &made.cert.pem()),
                self.write(
                    &format!("{name}-key.pem"),
                    &made.signing_key.serialize_pem(),
                ),
            )
        }
    }

    impl Drop for Files {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn server(cert_file: PathBuf, key_file: PathBuf) -> ServerTlsSettings {
        ServerTlsSettings {
            cert_file,
            key_file,
            client_ca_file: None,
            min_version: None,
            max_version: None,
            reload_interval: None,
        }
    }

    fn error_text(result: Result<ServerConfig, TlsError>) -> String {
        match result {
            Ok(_) => panic!("loading should have failed"),
            Err(e) => e.under("receivers.otlp.protocols.grpc.tls"),
        }
    }

    #[test]
    fn certificate_errors_name_the_setting_and_the_file() {
        let files = Files::new("errors");
        let (cert, key) = files.self_signed("server");
        server(cert.clone(), key.clone())
            .load()
            .unwrap_or_else(|e| panic!("a matching pair should load: {e}"));

        let empty = files.write("empty.pem", "not PEM at all\n");
        assert_eq!(
            error_text(server(empty.clone(), key.clone()).load()),
            format!(
                "receivers.otlp.protocols.grpc.tls.cert_file: {}: no certificate found",
                empty.display()
            )
        );
        let text = error_text(server(cert.clone(), cert.clone()).load());
        assert!(
            text.starts_with(&format!(
                "receivers.otlp.protocols.grpc.tls.key_file: {}: no private key found",
                cert.display()
            )),
            "{text}"
        );
        let missing = files.0.join("missing.pem");
        let text = error_text(server(missing.clone(), key.clone()).load());
        assert!(
            text.starts_with(&format!(
                "receivers.otlp.protocols.grpc.tls.cert_file: {}: cannot read:",
                missing.display()
            )),
            "{text}"
        );
        let (_, other_key) = files.self_signed("other");
        let text = error_text(server(cert.clone(), other_key).load());
        assert!(
            text.ends_with("the private key does not belong to the certificate"),
            "{text}"
        );
        let mut mtls = server(cert, key);
        mtls.client_ca_file = Some(empty.clone());
        assert_eq!(
            error_text(mtls.load()),
            format!(
                "receivers.otlp.protocols.grpc.tls.client_ca_file: {}: no certificate found",
                empty.display()
            )
        );
    }

    #[test]
    fn client_settings_check_their_files() {
        let files = Files::new("client");
        let (cert, key) = files.self_signed("client");
        let ok = ClientTlsSettings {
            ca_file: Some(cert.clone()),
            cert_file: Some(cert.clone()),
            key_file: Some(key),
            ..ClientTlsSettings::default()
        };
        ok.load()
            .unwrap_or_else(|e| panic!("a CA and a client pair should load: {e}"));
        let half = ClientTlsSettings {
            key_file: None,
            ..ok.clone()
        };
        assert!(matches!(half.load(), Err(TlsError::Settings(_))));
        let bad_ca = ClientTlsSettings {
            ca_file: Some(files.write("junk.pem", "junk")),
            ..ok
        };
        let text = bad_ca.load().map(drop).map_err(|e| e.to_string());
        assert!(
            matches!(&text, Err(t) if t.starts_with("ca_file: ") && t.ends_with("no certificate found")),
            "{text:?}"
        );
        let named = ClientTlsSettings {
            server_name_override: Some("not a name!".into()),
            ..ClientTlsSettings::default()
        };
        assert!(matches!(named.server_name(), Err(TlsError::ServerName(_))));
        let v6 = ClientTlsSettings {
            server_name_override: Some("[::1]".into()),
            ..ClientTlsSettings::default()
        };
        assert!(matches!(
            v6.server_name(),
            Ok(Some(ServerName::IpAddress(_)))
        ));
    }

    #[test]
    fn versions_follow_the_collector() {
        let v = |text: &str| {
            text.parse::<TlsVersion>()
                .unwrap_or_else(|e| panic!("{text}: {e}"))
        };
        let names = |min, max| {
            protocol_versions(min, max).map(|versions| {
                versions
                    .iter()
                    .map(|p| format!("{:?}", p.version))
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(
            names(None, None).ok(),
            Some(vec!["TLSv1_2".to_owned(), "TLSv1_3".to_owned()])
        );
        assert_eq!(
            names(Some(v("1.0")), None).ok(),
            Some(vec!["TLSv1_2".to_owned(), "TLSv1_3".to_owned()]),
            "1.0 and 1.1 are never offered, so a minimum of 1.0 means 1.2"
        );
        assert_eq!(
            names(Some(v("1.3")), None).ok(),
            Some(vec!["TLSv1_3".to_owned()])
        );
        assert_eq!(
            names(None, Some(v("1.2"))).ok(),
            Some(vec!["TLSv1_2".to_owned()])
        );
        assert!(names(Some(v("1.3")), Some(v("1.2"))).is_err());
        assert!(names(None, Some(v("1.1"))).is_err());
        assert!("1.4".parse::<TlsVersion>().is_err());
        assert!("TLS1.2".parse::<TlsVersion>().is_err());
    }

    #[test]
    fn grpc_tls_follows_the_endpoint_and_insecure() {
        let default = ClientTlsSettings::default();
        let insecure = ClientTlsSettings {
            insecure: true,
            ..ClientTlsSettings::default()
        };
        let with_ca = ClientTlsSettings {
            insecure: true,
            ca_file: Some("/ca.pem".into()),
            ..ClientTlsSettings::default()
        };
        for (settings, endpoint, tls) in [
            (&default, "collector:4317", true),
            (&default, "https://collector:4317", true),
            (&default, "http://collector:4317", false),
            (&insecure, "collector:4317", false),
            (&insecure, "https://collector:4317", true),
            (&with_ca, "collector:4317", true),
        ] {
            assert_eq!(
                settings.grpc_uses_tls(endpoint),
                tls,
                "{endpoint} with {settings:?}"
            );
        }
    }
}
