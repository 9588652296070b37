//! Throwaway certificates for the TLS tests, made with rcgen and written as PEM files into a
//! scratch directory ([`TempDir`]): a CA, a server certificate for `localhost` and `127.0.0.1`, a
//! client certificate, and a second CA with a server certificate of its own.

use std::path::PathBuf;

use runbom_pipeline::transport::tls::ServerTlsSettings;

use crate::TempDir;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

pub struct Pki {
    dir: TempDir,
}

impl Pki {
    /// Makes every certificate and writes `ca.pem`, `server.pem`, `server-key.pem`,
    /// `named-server.pem` and `named-server-key.pem` (for `otlp.runbom.test` only),
    /// `client.pem`, `client-key.pem`, and `other-ca.pem` with the server certificate it
    /// signed, `other-server.pem` and `other-server-key.pem`.
    #[must_use]
    pub fn new() -> Self {
        let pki = Self {
            dir: TempDir::new("pki"),
        };

        let ca = new_ca("runbom test CA");
        pki.write("ca.pem", &ca.pem());
        let other = new_ca("some other CA");
        pki.write("other-ca.pem", &other.pem());

        let server = || vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        for (name, issuer, usage, sans) in [
            ("server", &ca, ExtendedKeyUsagePurpose::ServerAuth, server()),
            (
                "other-server",
                &other,
                ExtendedKeyUsagePurpose::ServerAuth,
                server(),
            ),
            (
                "named-server",
                &ca,
                ExtendedKeyUsagePurpose::ServerAuth,
                vec!["otlp.runbom.test".to_owned()],
            ),
            (
                "client",
                &ca,
                ExtendedKeyUsagePurpose::ClientAuth,
                vec!["runbom-test-client".to_owned()],
            ),
        ] {
            let mut params =
                CertificateParams::new(sans).expect("the test names are valid SAN entries");
            params
                .distinguished_name
                .push(DnType::CommonName, format!("runbom test {name}"));
            params.extended_key_usages = vec![usage];
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            let leaf_key = key();
            let cert = params
                .signed_by(&leaf_key, issuer)
                .expect("signing a leaf certificate works");
            pki.write(&format!("{name}.pem"), &cert.pem());
            pki.write(&format!("{name}-key.pem"), &leaf_key.serialize_pem());
        }
        pki
    }

    #[must_use]
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// TLS settings of a server presenting `<name>.pem`, requiring a client certificate
    /// signed by `ca.pem` when `client_ca` is set.
    #[must_use]
    pub fn server_settings(&self, name: &str, client_ca: bool) -> ServerTlsSettings {
        ServerTlsSettings {
            cert_file: self.path(&format!("{name}.pem")),
            key_file: self.path(&format!("{name}-key.pem")),
            client_ca_file: client_ca.then(|| self.path("ca.pem")),
            min_version: None,
            max_version: None,
            reload_interval: None,
        }
    }

    /// The server side of TLS with `server.pem` (see [`Pki::server_settings`]), loaded.
    #[must_use]
    pub fn server_tls(&self, client_ca: bool) -> rustls::ServerConfig {
        load(&self.server_settings("server", client_ca))
    }

    /// Writes `contents` to `file` in the directory.
    pub fn write(&self, file: &str, contents: &str) {
        let path = self.path(file);
        std::fs::write(&path, contents)
            .unwrap_or_else(|e| panic!("writing {} failed: {e}", path.display()));
    }
}

impl Default for Pki {
    fn default() -> Self {
        Self::new()
    }
}

/// Loads server TLS settings the test made.
#[must_use]
pub fn load(settings: &ServerTlsSettings) -> rustls::ServerConfig {
    settings
        .load()
        .unwrap_or_else(|e| panic!("the test server's TLS settings should load: {e}"))
}

fn key() -> KeyPair {
    KeyPair::generate().expect("generating an ECDSA key works")
}

fn new_ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("no SANs is valid");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(params, key()).expect("self-signing a CA works")
}
