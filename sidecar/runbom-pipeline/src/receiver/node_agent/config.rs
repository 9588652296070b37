//! The `node_agent` receiver's section: where the node agent's socket is, and what this
//! sidecar claims to be.

use std::{path::PathBuf, time::Duration};

use serde::Deserialize;

use crate::{
    SignalKind,
    component::{ReceiverConfig, ReceiverContext, StartFuture},
    config::section::{ConfigError, Section},
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeAgentConfig {
    /// The node agent's Unix socket (`receivers.ebpf.sidecars.socket` there).
    pub socket: PathBuf,
    /// The pod cgroup this sidecar expects to be served (optional: the node agent decides by
    /// the caller's cgroup; a claim that is not the caller's pod is refused).
    pub pod_cgroup: String,
    /// Export events that no application trace claimed as spans too (they are always logs).
    pub uncorrelated_spans: bool,
    /// How long to wait between attempts to reach the node agent again.
    #[serde(with = "crate::config::duration")]
    pub reconnect_interval: Duration,
}

impl Default for NodeAgentConfig {
    fn default() -> Self {
        Self {
            socket: PathBuf::from("/run/runbom/node-agent.sock"),
            pod_cgroup: String::new(),
            uncorrelated_spans: true,
            reconnect_interval: Duration::from_secs(1),
        }
    }
}

impl ReceiverConfig for NodeAgentConfig {
    fn check(&self, at: &Section) -> Result<(), ConfigError> {
        if !self.socket.is_absolute() {
            return Err(at.at("socket").error(format!(
                "{} must be an absolute path",
                self.socket.display()
            )));
        }
        if !self.pod_cgroup.is_empty() && !self.pod_cgroup.starts_with('/') {
            return Err(at.at("pod_cgroup").error(format!(
                "{:?} must be a cgroup v2 path (starting with /)",
                self.pod_cgroup
            )));
        }
        if self.reconnect_interval.is_zero() {
            return Err(at.at("reconnect_interval").error("must be more than 0"));
        }
        Ok(())
    }

    fn refuses(&self, signal: SignalKind) -> Option<String> {
        (signal == SignalKind::Metrics)
            .then(|| "the node_agent receiver produces traces and logs, not metrics".into())
    }

    fn kernel_events(&self) -> bool {
        true
    }

    fn start<'a>(&'a self, _name: &'a str, ctx: ReceiverContext<'a>) -> StartFuture<'a> {
        Box::pin(super::start(self, ctx))
    }
}

#[cfg(test)]
mod tests {
    use super::NodeAgentConfig;
    use crate::config::{assert_refused, model::Config};

    const SIDECAR: &str = "receivers:
  node_agent: {}
  otlp: { protocols: { grpc: {} } }
processors:
  correlate: {}
exporters:
  file: { path: ./out }
service:
  pipelines:
    traces: { receivers: [otlp, node_agent], processors: [correlate], exporters: [file] }
    logs: { receivers: [otlp, node_agent], exporters: [file] }
";

    #[test]
    fn a_sidecar_configuration_reads_and_its_mistakes_are_named() {
        let c = Config::parse(SIDECAR, "c.yaml").unwrap();
        let r = c.receiver::<NodeAgentConfig>("node_agent").unwrap();
        assert_eq!(r.socket.to_str(), Some("/run/runbom/node-agent.sock"));
        let bad = SIDECAR.replace("node_agent: {}", "node_agent: { socket: run/x.sock }");
        assert_refused(&bad, "`receivers.node_agent.socket`");
        let bad = SIDECAR.replace("node_agent: {}", "node_agent: { pod_cgroup: kubepods }");
        assert_refused(&bad, "`receivers.node_agent.pod_cgroup`");
        let bad = SIDECAR.replace("node_agent: {}", "node_agent: { endpoint: x }");
        assert_refused(&bad, "`receivers.node_agent.endpoint`: unknown field");
    }
}
