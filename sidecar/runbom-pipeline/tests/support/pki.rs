//! Throwaway certificates for the TLS tests, made with rcgen and written as PEM files into a
//! directory removed on drop: a CA, a server certificate for `localhost` and `127.0.0.1`, a
//! client certificate, and a second CA with a server certificate of its own.

use std::path::PathBuf;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

pub struct Pki {
    dir: PathBuf,
}

impl Pki {
    /// Makes every certificate and writes `ca.pem`, `server.pem`, `server-key.pem`,
    /// `named-server.pem` and `named-server-key.pem` (for `otlp.runbom.test` only),
    /// `client.pem`, `client-key.pem`, and `other-ca.pem` with the server certificate it
    /// signed, `other-server.pem` and `other-server-key.pem`.
    pub fn new() -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "runbom-pki-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("creating {} failed: {e}", dir.display()));
        let pki = Self { dir };

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

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// Writes `contents` to `file` in the directory and returns its path.
    pub fn write(&self, file: &str, contents: &str) -> PathBuf {
        let path = self.path(file);
        std::fs::write(&path, contents)
            .unwrap_or_else(|e| panic!("writing {} failed: {e}", path.display()));
        path
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
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
