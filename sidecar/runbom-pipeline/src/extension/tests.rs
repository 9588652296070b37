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

/// An `otlp` exporter whose `sending_queue` is `queue`, `extensions` holding `extensions`,
/// and `service.extensions` = `enabled`.
fn storage_config(queue: &str, extensions: &str, enabled: &str) -> String {
    format!(
        "extensions:
{extensions}
receivers:
  otlp:
    protocols:
      grpc: {{}}
exporters:
  otlp:
    endpoint: 127.0.0.1:4317
    sending_queue: {queue}
service:
  extensions: [{enabled}]
  pipelines:
    traces: {{ receivers: [otlp], exporters: [otlp] }}
"
    )
}

#[test]
fn sending_queues_name_an_enabled_file_storage() {
    let dir = runbom_testkit::TempDir::new("file-storage-config");
    let queue_dir = dir.join("made/by/runbom");
    let text = storage_config(
        "{ storage: file_storage/disk }",
        &format!(
            "  file_storage/disk: {{ directory: {}, create_directory: true, fsync: true, max_size_mib: 8 }}",
            queue_dir.display()
        ),
        "file_storage/disk",
    );
    let c = Config::parse(&text, "c.yaml").expect("a valid configuration");
    c.check_persistent_queues().expect("may be created");
    assert!(
        !queue_dir.exists(),
        "checking (runbom validate) creates nothing"
    );
    let queues = c.persistent_queues().expect("the directory is created");
    let q = &queues["otlp"];
    assert!(
        q.fsync && q.max_bytes == 8 << 20 && queue_dir.is_dir(),
        "{q:?}"
    );
    let missing = storage_config(
        "{ storage: file_storage }",
        "  file_storage: { directory: /nonexistent/queue }",
        "file_storage",
    );
    let e = Config::parse(&missing, "c.yaml")
        .expect("read")
        .persistent_queues()
        .expect_err("refused")
        .to_string();
    assert!(
        e.contains("/nonexistent/queue does not exist (set create_directory: true"),
        "{e}"
    );
}

#[test]
fn storage_mistakes_name_their_place() {
    let storage = "  file_storage: { directory: /tmp }";
    for (text, want) in [
        (
            storage_config("{ storage: nope }", storage, "file_storage"),
            "`exporters.otlp.sending_queue.storage`: no extension `nope` is configured",
        ),
        (
            storage_config("{ storage: file_storage }", storage, ""),
            "extension `file_storage` is not enabled",
        ),
        (
            storage_config(
                "{ storage: bearertokenauth }",
                "  bearertokenauth: { token: a }",
                "bearertokenauth",
            ),
            "`bearertokenauth` is not a file_storage extension",
        ),
        (
            storage_config(
                "{ storage: file_storage, enabled: false }",
                storage,
                "file_storage",
            ),
            "the sending queue is disabled",
        ),
        (
            storage_config(
                "{}",
                "  file_storage: { directory: /tmp, compaction: { on_start: true } }",
                "file_storage",
            ),
            "`extensions.file_storage.compaction`: unknown field",
        ),
        (
            storage_config(
                "{}",
                "  file_storage: { directory: /tmp, directory_permissions: rwx }",
                "file_storage",
            ),
            "`rwx` is not an octal mode",
        ),
    ] {
        assert_refused(&text, want);
    }
}
