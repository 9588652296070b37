//! What the shadow-AI tests share: the processor's settings they judge with.

use std::time::Duration;

use runbom_aibom::{
    Settings,
    shadow::{Severity, ShadowSettings},
};

/// A short correlation wait (1 s) and shadow AI alerted at `Warn`, once per ten-minute window.
pub fn settings() -> Settings {
    Settings {
        wait: Duration::from_secs(1),
        shadow: ShadowSettings {
            severity: Severity::Warn,
            window: Duration::from_mins(10),
            ..ShadowSettings::default()
        },
        ..Settings::default()
    }
}
