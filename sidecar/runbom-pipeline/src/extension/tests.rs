//! The `extensions` section and the receivers' `auth`, as a whole configuration reads them.

use crate::config::{Config, assert_refused};

/// An OTLP receiver whose servers use `auth`, `extensions` holding `extensions`, and
/// `service.extensions` = `enabled`.
fn config(auth: &str, extensions: &str, enabled: &str) -> String {
    format!(
        "extensions:
{extensions}
receivers:
  otlp:
    protocols:
      grpc: {{ auth: {{ authenticator: {auth} }} }}
      http: {{ auth: {{ authenticator: {auth} }} }}
exporters:
  nop: {{}}
service:
  extensions: [{enabled}]
  pipelines:
    traces: {{ receivers: [otlp], exporters: [nop] }}
"
    )
}

#[test]
fn receivers_name_an_enabled_bearertokenauth() {
    let text = config(
        "bearertokenauth/agents",
        "  bearertokenauth/agents: { token: s3cret }",
        "bearertokenauth/agents",
    );
    let c = Config::parse(&text, "c.yaml").expect("a valid configuration");
    let auth = c.authenticators().expect("the authenticator builds");
    assert!(auth["bearertokenauth/agents"].accepts(Some(b"Bearer s3cret")));
    assert!(!format!("{c:?}").contains("s3cret"), "Debug shows no token");
}

#[test]
fn auth_and_extension_mistakes_name_their_place() {
    for (text, want) in [
        (
            config("nope", "  bearertokenauth: { token: a }", "bearertokenauth"),
            "`receivers.otlp.protocols.grpc.auth.authenticator`: no extension `nope` is configured",
        ),
        (
            config("bearertokenauth", "  bearertokenauth: { token: a }", ""),
            "extension `bearertokenauth` is not enabled: list it in `service.extensions`",
        ),
        (
            config(
                "bearertokenauth",
                "  bearertokenauth: { token: a }",
                "bearertokenauth, oauth2",
            ),
            "`service.extensions[1]`: `oauth2` is not configured under `extensions`",
        ),
        (
            config("x", "  oidc: {}", "oidc"),
            "`extensions.oidc`: unknown extension type `oidc` (this build has: bearertokenauth",
        ),
        (
            config(
                "b",
                "  bearertokenauth: { token: a, tokn: b }",
                "bearertokenauth",
            ),
            "`extensions.bearertokenauth.tokn`: unknown field",
        ),
        (
            config("b", "  bearertokenauth: {}", "bearertokenauth"),
            "`extensions.bearertokenauth`: set one of `token`, `tokens` or `filename`",
        ),
    ] {
        assert_refused(&text, want);
    }
}

#[test]
fn a_token_file_that_does_not_read_stops_runbom_at_start() {
    let text = config(
        "bearertokenauth",
        "  bearertokenauth: { filename: /nonexistent/token }",
        "bearertokenauth",
    );
    let c = Config::parse(&text, "c.yaml").expect("the file is read when runbom starts");
    let e = c.authenticators().expect_err("refused").to_string();
    assert!(
        e.starts_with("extensions.bearertokenauth: token file /nonexistent/token: "),
        "{e}"
    );
}
