//! The `k8sattributes` processor's section, in the Collector's k8sattributes processor's
//! terms: `auth_type`, `filter.node` / `filter.node_from_env_var`, `wait_for_metadata`.

use std::{path::PathBuf, time::Duration};

use runbom_k8s::Auth;
use serde::{Deserialize, de::IgnoredAny};

use super::K8sSpec;
use crate::component::{ProcessorConfig, SpecContext};
use crate::config::{ConfigError, Section, duration};
use crate::{ProcessorSpec, SignalKind, processor::ProcessorError};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct K8sAttributesConfig {
    /// `serviceAccount` (in a pod) or `kubeConfig`.
    #[serde(default)]
    pub auth_type: AuthType,
    /// With `kubeConfig`: the file (default `$KUBECONFIG`, then `~/.kube/config`).
    pub kubeconfig: Option<PathBuf>,
    /// The pods watched: this node's.
    #[serde(default)]
    pub filter: Filter,
    /// Hold data until the first list of pods has arrived, at most `wait_for_metadata_timeout`.
    #[serde(default)]
    pub wait_for_metadata: bool,
    #[serde(default = "default_wait", with = "duration")]
    pub wait_for_metadata_timeout: Duration,
    /// Accepted for compatibility, and ignored: runbom extracts every attribute it knows
    /// (docs/telemetry-contract.md) and associates by the sending process.
    #[serde(default, rename = "extract")]
    _extract: IgnoredAny,
    #[serde(default, rename = "pod_association")]
    _pod_association: IgnoredAny,
    #[serde(default, rename = "passthrough")]
    _passthrough: IgnoredAny,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
pub enum AuthType {
    #[default]
    #[serde(rename = "serviceAccount")]
    ServiceAccount,
    #[serde(rename = "kubeConfig")]
    KubeConfig,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// This node's name.
    pub node: Option<String>,
    /// The variable that holds this node's name (the Downward API's `spec.nodeName`).
    pub node_from_env_var: Option<String>,
    #[serde(default, rename = "namespace")]
    _namespace: IgnoredAny,
    #[serde(default, rename = "labels")]
    _labels: IgnoredAny,
    #[serde(default, rename = "fields")]
    _fields: IgnoredAny,
}

fn default_wait() -> Duration {
    Duration::from_secs(10)
}

impl ProcessorConfig for K8sAttributesConfig {
    fn check(&self, at: &Section) -> Result<(), ConfigError> {
        let f = &self.filter;
        if f.node.is_some() == f.node_from_env_var.is_some() {
            return Err(at.at("filter").error(
                "set one of `node` and `node_from_env_var`: runbom watches the pods of its own node",
            ));
        }
        if self.kubeconfig.is_some() && self.auth_type != AuthType::KubeConfig {
            return Err(at
                .at("kubeconfig")
                .error("only with `auth_type: kubeConfig`"));
        }
        Ok(())
    }

    fn refuses(&self, name: &str, signal: SignalKind) -> Option<String> {
        (signal == SignalKind::Metrics).then(|| {
            format!("{name} names the processes of traces and logs: it belongs in a traces or logs pipeline")
        })
    }

    fn spec(&self, ctx: &SpecContext) -> Result<ProcessorSpec, ProcessorError> {
        let err = |reason: String| ProcessorError::K8s {
            name: ctx.name.to_owned(),
            reason,
        };
        let node = match (&self.filter.node, &self.filter.node_from_env_var) {
            (Some(node), _) => node.clone(),
            (None, Some(var)) => std::env::var(var)
                .ok()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| err(format!("filter.node_from_env_var: `{var}` is not set")))?,
            (None, None) => return Err(err("filter: no node".into())),
        };
        let auth = match self.auth_type {
            AuthType::ServiceAccount => Auth::ServiceAccount,
            AuthType::KubeConfig => Auth::KubeConfig(self.kubeconfig.clone()),
        };
        runbom_k8s::check(&auth).map_err(|e| err(e.to_string()))?;
        Ok(ProcessorSpec::K8sAttributes(K8sSpec {
            name: ctx.name.to_owned(),
            auth,
            node,
            wait: self
                .wait_for_metadata
                .then_some(self.wait_for_metadata_timeout),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<K8sAttributesConfig, ConfigError> {
        let at = Section::new("runbom.yaml", "processors.k8sattributes");
        let c: K8sAttributesConfig = at.parse(&serde_yaml::from_str(yaml).unwrap())?;
        c.check(&at)?;
        Ok(c)
    }

    #[test]
    fn reads_the_collectors_keys() {
        let c = parse(
            "auth_type: kubeConfig\nkubeconfig: /k\nfilter: {node_from_env_var: NODE_NAME}\n\
             wait_for_metadata: true\nextract: {metadata: [k8s.pod.name]}\npod_association: []\n",
        )
        .unwrap();
        assert_eq!(c.auth_type, AuthType::KubeConfig);
        assert_eq!(c.filter.node_from_env_var.as_deref(), Some("NODE_NAME"));
        assert_eq!(c.wait_for_metadata_timeout, Duration::from_secs(10));
    }

    #[test]
    fn a_kubeconfig_that_does_not_load_is_named() {
        let c = parse(
            "auth_type: kubeConfig\nkubeconfig: /nonexistent/kubeconfig\nfilter: {node: a}\n",
        )
        .unwrap();
        let ctx = SpecContext {
            name: "k8sattributes",
            kernel_source: None,
            own_endpoints: &[],
            host_name: "h",
        };
        let e = c.spec(&ctx).unwrap_err().to_string();
        assert!(
            e.starts_with("processors.k8sattributes: kubeconfig /nonexistent/kubeconfig:"),
            "{e}"
        );
    }

    #[test]
    fn refuses_what_it_cannot_do() {
        let e = parse("{}").unwrap_err().to_string();
        assert!(
            e.contains("processors.k8sattributes.filter") && e.contains("node"),
            "{e}"
        );
        let e = parse("filter: {node: a}\nkubeconfig: /k\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("processors.k8sattributes.kubeconfig"), "{e}");
        let e = parse("auth_type: token\nfilter: {node: a}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("auth_type"), "{e}");
    }
}
