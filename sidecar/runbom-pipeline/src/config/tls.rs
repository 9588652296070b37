//! The Collector's `configtls` sections: a receiver's (server) and an exporter's (client).

use std::{path::PathBuf, time::Duration};

use crate::transport::tls::{ClientTlsSettings, TlsVersion};
use serde::Deserialize;

use super::{
    duration,
    section::{ConfigError, Section},
};

/// A receiver's `tls` section, as the Collector's `configtls.ServerConfig` has it: the
/// server's certificate and key (both required), and `client_ca_file` to require client
/// certificates signed by those CAs (mTLS).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTlsConfig {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub client_ca_file: Option<PathBuf>,
    /// Accepted as the Collector accepts it, and as there, it does not verify clients
    /// (`client_ca_file` does); runbom warns when it is set.
    pub ca_file: Option<PathBuf>,
    #[serde(default, deserialize_with = "tls_version")]
    pub min_version: Option<TlsVersion>,
    #[serde(default, deserialize_with = "tls_version")]
    pub max_version: Option<TlsVersion>,
    /// Re-read `cert_file` and `key_file` once this long has passed.
    #[serde(default, deserialize_with = "duration::optional")]
    pub reload_interval: Option<Duration>,
}

impl ServerTlsConfig {
    /// Both files set, and a TLS version runbom speaks between the bounds.
    pub fn check(&self, at: &Section) -> Result<(), ConfigError> {
        if self.cert_file.is_none() || self.key_file.is_none() {
            return Err(at.error("a receiver's TLS needs both `cert_file` and `key_file`"));
        }
        check_versions(self.min_version, self.max_version, at)
    }
}

/// An exporter's `tls` section, as the Collector's `configtls.ClientConfig` has it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientTlsConfig {
    /// `otlp` only: plain text (unless the endpoint is `https://` or `ca_file` is set).
    #[serde(default)]
    pub insecure: bool,
    #[serde(default)]
    pub insecure_skip_verify: bool,
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub include_system_ca_certs_pool: bool,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub server_name_override: Option<String>,
    #[serde(default, deserialize_with = "tls_version")]
    pub min_version: Option<TlsVersion>,
    #[serde(default, deserialize_with = "tls_version")]
    pub max_version: Option<TlsVersion>,
    /// Re-read `cert_file` and `key_file` once this long has passed.
    #[serde(default, deserialize_with = "duration::optional")]
    pub reload_interval: Option<Duration>,
}

impl ClientTlsConfig {
    /// The settings the exporters take.
    #[must_use]
    pub fn settings(&self) -> ClientTlsSettings {
        ClientTlsSettings {
            insecure: self.insecure,
            insecure_skip_verify: self.insecure_skip_verify,
            ca_file: self.ca_file.clone(),
            include_system_ca_certs_pool: self.include_system_ca_certs_pool,
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
            server_name_override: self.server_name_override.clone(),
            min_version: self.min_version,
            max_version: self.max_version,
            reload_interval: self.reload_interval,
        }
    }

    /// A client certificate is both files or neither, and the versions make sense.
    pub fn check(&self, at: &Section) -> Result<(), ConfigError> {
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err(
                at.error("set both `cert_file` and `key_file` (a client certificate), or neither")
            );
        }
        check_versions(self.min_version, self.max_version, at)
    }
}

/// `min_version` / `max_version`: `"1.0"` to `"1.3"`.
fn tls_version<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<TlsVersion>, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map(Some).map_err(serde::de::Error::custom)
}

/// `min_version` no greater than `max_version`, and a TLS version runbom speaks between them.
fn check_versions(
    min: Option<TlsVersion>,
    max: Option<TlsVersion>,
    at: &Section,
) -> Result<(), ConfigError> {
    crate::transport::tls::protocol_versions(min, max)
        .map(drop)
        .map_err(|e| at.error(e))
}
