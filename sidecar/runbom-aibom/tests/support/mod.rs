//! What the tests of kernel log records no trace claimed share: the processor's settings they
//! judge with.

use std::time::Duration;

use runbom_aibom::{
    Settings,
    shadow::{Severity, ShadowSettings},
    unclaimed::UnclaimedSettings,
};

/// A short correlation wait (1 s), shadow AI alerted at `Warn` once per ten-minute window, and
/// declared agents' unclaimed drift once per agent, kinds and subject per ten-minute window.
pub fn settings() -> Settings {
    Settings {
        wait: Duration::from_secs(1),
        shadow: ShadowSettings {
            severity: Severity::Warn,
            window: Duration::from_mins(10),
            ..ShadowSettings::default()
        },
        unclaimed: UnclaimedSettings {
            window: Duration::from_mins(10),
            ..UnclaimedSettings::default()
        },
        ..Settings::default()
    }
}
