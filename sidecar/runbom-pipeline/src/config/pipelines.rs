//! `service.pipelines`: every pipeline names its signal and only components that exist and fit
//! it. Checks a component type needs across pipelines are its own (the table's
//! `check_pipelines`).

use super::{model::Config, section::ConfigError, service::pipeline_signal};
use crate::SignalKind;

impl Config {
    /// Every pipeline names its signal and only components that exist and fit it.
    pub(super) fn check_pipelines(&self) -> Result<(), ConfigError> {
        let err = |path: &str, msg: String| self.error(path, &msg);
        if self.service.pipelines.is_empty() {
            return Err(err(
                "service.pipelines",
                "no pipeline is defined; define `traces`, `logs` and/or `metrics`".into(),
            ));
        }
        for (name, p) in &self.service.pipelines {
            let base = format!("service.pipelines.{name}");
            let Some(signal) = pipeline_signal(name) else {
                return Err(err(
                    &base,
                    "a pipeline is named after its signal: `traces`, `logs` or `metrics`, \
                     optionally followed by `/name`"
                        .into(),
                ));
            };
            if p.receivers.is_empty() {
                return Err(err(
                    &format!("{base}.receivers"),
                    "a pipeline needs at least one receiver".into(),
                ));
            }
            for (i, r) in p.receivers.iter().enumerate() {
                let path = format!("{base}.receivers[{i}]");
                if self.processors.get(r).is_some_and(|p| p.gives_alerts())
                    && !self.receivers.contains_key(r)
                {
                    self.check_alert_route(r, signal, &path)?;
                    continue;
                }
                let Some(receiver) = self.receivers.get(r) else {
                    return Err(err(
                        &path,
                        format!("receiver `{r}` is not defined under `receivers`"),
                    ));
                };
                if let Some(why) = receiver.refuses(signal) {
                    return Err(err(&path, why));
                }
            }
            for (i, name) in p.processors.iter().enumerate() {
                let path = format!("{base}.processors[{i}]");
                let Some(processor) = self.processors.get(name) else {
                    return Err(err(
                        &path,
                        format!("processor `{name}` is not defined under `processors`"),
                    ));
                };
                if let Some(why) = processor.refuses(name, signal) {
                    return Err(err(&path, why));
                }
            }
            if p.exporters.is_empty() {
                return Err(err(
                    &format!("{base}.exporters"),
                    "a pipeline needs at least one exporter".into(),
                ));
            }
            for (i, name) in p.exporters.iter().enumerate() {
                if !self.exporters.contains_key(name) {
                    return Err(err(
                        &format!("{base}.exporters[{i}]"),
                        format!("exporter `{name}` is not defined under `exporters`"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// A processor that gives alerts, named as a receiver, gives them: only to logs pipelines,
    /// and only when it runs in a traces pipeline.
    fn check_alert_route(
        &self,
        name: &str,
        signal: SignalKind,
        path: &str,
    ) -> Result<(), ConfigError> {
        if signal != SignalKind::Logs {
            return Err(self.error(
                path,
                &format!(
                    "`{name}` is an aibom processor: as a receiver it gives drift alerts, which are \
                     logs; list it in a logs pipeline"
                ),
            ));
        }
        let in_traces = self
            .pipelines()
            .any(|(_, s, p)| s == SignalKind::Traces && p.processors.iter().any(|x| x == name));
        if !in_traces {
            return Err(self.error(
                path,
                &format!(
                    "processor `{name}` is in no traces pipeline, so it has no alerts to give"
                ),
            ));
        }
        Ok(())
    }
}
