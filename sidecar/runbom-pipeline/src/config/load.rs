//! Reading a configuration: the text, `${env:...}`, the top-level sections, every component's
//! section through [`crate::components`], then the checks.

use std::{collections::BTreeMap, path::Path};

use serde::Deserialize;

use super::{
    env::substitute_env,
    model::Config,
    section::{ConfigError, Section},
    service::{Service, component_type},
};
use crate::{
    components::{self, EXPORTERS, Factory, PROCESSORS, RECEIVERS},
    extension::ExtensionConfig,
};

/// The configuration used when no file is given: OTLP in on loopback (4317 gRPC, 4318 HTTP)
/// plus everything the probes see; kernel events correlated into the applications' traces,
/// judged against the reference agent's declared AI-BOM (built in), drift alerts among the
/// logs; out to `./runbom-data/` as OTLP/JSON.
pub const EMBEDDED_DEFAULT: &str = include_str!("default.yaml");

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    receivers: BTreeMap<String, serde_yaml::Value>,
    #[serde(default)]
    processors: BTreeMap<String, serde_yaml::Value>,
    #[serde(default)]
    exporters: BTreeMap<String, serde_yaml::Value>,
    #[serde(default)]
    extensions: BTreeMap<String, serde_yaml::Value>,
    #[serde(default)]
    service: Service,
}

impl Config {
    /// Reads and checks a configuration file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("{}: cannot read: {e}", path.display())))?;
        Self::parse(&text, &path.display().to_string())
    }

    /// The embedded default configuration.
    pub fn embedded() -> Result<Self, ConfigError> {
        Self::parse(EMBEDDED_DEFAULT, "<embedded defaults>")
    }

    /// Parses and checks configuration text; `source` names it in errors.
    pub fn parse(text: &str, source: &str) -> Result<Self, ConfigError> {
        let err = |path: &str, msg: &dyn std::fmt::Display| {
            if path.is_empty() || path == "." {
                ConfigError(format!("{source}: {msg}"))
            } else {
                Section::new(source, path).error(msg)
            }
        };
        let text = substitute_env(text).map_err(|m| err("", &m))?;
        let raw: RawConfig = if text.trim().is_empty() {
            RawConfig::default()
        } else {
            let de = serde_yaml::Deserializer::from_str(&text);
            serde_path_to_error::deserialize(de).map_err(|e| {
                // serde_yaml names the path too when it is nested: once is enough.
                let path = e.path().to_string();
                let inner = e.inner().to_string();
                let msg = inner.strip_prefix(&format!("{path}: ")).unwrap_or(&inner);
                err(&path, &msg)
            })?
        };
        let config = Self {
            source: source.to_owned(),
            receivers: parse_section("receivers", &raw.receivers, source, RECEIVERS)?,
            processors: parse_section("processors", &raw.processors, source, PROCESSORS)?,
            exporters: parse_section("exporters", &raw.exporters, source, EXPORTERS)?,
            extensions: raw
                .extensions
                .iter()
                .map(|(name, value)| {
                    let at = Section::new(source, format!("extensions.{name}"));
                    Ok((name.clone(), ExtensionConfig::parse(&at, name, value)?))
                })
                .collect::<Result<_, ConfigError>>()?,
            service: raw.service,
        };
        config.check_pipelines()?;
        for check in PROCESSORS.iter().filter_map(|f| f.check_pipelines) {
            check(&config)?;
        }
        config.check_components()?;
        config.check_extensions()?;
        Ok(config)
    }

    /// Settings that are valid YAML but not valid values.
    fn check_components(&self) -> Result<(), ConfigError> {
        for (name, r) in &self.receivers {
            r.check(&self.section(&format!("receivers.{name}")))?;
        }
        for (name, p) in &self.processors {
            p.check(&self.section(&format!("processors.{name}")))?;
        }
        for (name, e) in &self.exporters {
            e.check(&self.section(&format!("exporters.{name}")))?;
        }
        Ok(())
    }
}

/// Parses every component of a section (`receivers`, ...) with the type its name starts with.
fn parse_section<C: ?Sized>(
    section: &str,
    raw: &BTreeMap<String, serde_yaml::Value>,
    source: &str,
    table: &[Factory<C>],
) -> Result<BTreeMap<String, Box<C>>, ConfigError> {
    let mut out = BTreeMap::new();
    for (name, value) in raw {
        let at = Section::new(source, format!("{section}.{name}"));
        let kind = component_type(name);
        let Some(factory) = table.iter().find(|f| f.name == kind) else {
            return Err(at.error(format!(
                "unknown {} type `{kind}` (this build has: {})",
                section.trim_end_matches('s'),
                components::names(table)
            )));
        };
        out.insert(name.clone(), (factory.parse)(&at, value)?);
    }
    Ok(out)
}
