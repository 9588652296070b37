use super::*;

#[test]
fn flags_and_variables() {
    let argv = [
        "curl",
        "--api-key",
        "abc123",
        "--token=xyz",
        "DB_PASSWORD=hunter2",
        "--verbose",
        "https://example.com",
    ];
    assert_eq!(
        command_line(&argv),
        "curl --api-key [REDACTED] --token=[REDACTED] DB_PASSWORD=[REDACTED] --verbose https://example.com"
    );
}

#[test]
fn key_shaped_strings_anywhere() {
    let key = format!("sk-{}", "a".repeat(32));
    assert_eq!(command_line(&["agent", &key]), "agent [REDACTED]");
    let aws = format!("AKIA{}", "ABCDEFGHIJKLMNOP");
    assert_eq!(text(&format!("id={aws} ok")), "id=[REDACTED] ok");
    assert_eq!(text("short sk-abc stays"), "short sk-abc stays");
    // Followed or surrounded by punctuation.
    assert_eq!(text(&format!("key {key}.")), "key [REDACTED].");
    assert_eq!(
        text(&format!("({key}), x:{key}!")),
        "([REDACTED]), x:[REDACTED]!"
    );
    // A key prefix inside a word is not a key.
    let word = concat!("ta", "sk", "-1234567890abcdefghij stays");
    assert_eq!(text(word), word);
}

#[test]
fn bearer_and_url_passwords() {
    assert_eq!(
        text("Authorization: Bearer abc.def.ghi"),
        "Authorization: Bearer [REDACTED]"
    );
    assert_eq!(
        text("postgres://app:s3cret@db:5432/x"),
        "postgres://app:[REDACTED]@db:5432/x"
    );
    assert_eq!(text("http://host/path@x"), "http://host/path@x");
}

/// One row per pattern of contract §5 (argv in, command line out), then rows that must
/// stay as they are.
#[test]
#[allow(clippy::too_many_lines, reason = "a table: one row per pattern")]
fn command_line_table() {
    let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl";
    let jwt_arg = format!("token {jwt}");
    let jwt_header = format!("Authorization: Bearer {jwt}");
    let rows: &[(&[&str], &str)] = &[
        // mysql/mariadb short and long password options
        (
            &["mysql", "-uroot", "-phunter2", "shop"],
            "mysql -uroot -p[REDACTED] shop",
        ),
        (
            &["/usr/bin/mariadb", "-p", "-h", "db"],
            "/usr/bin/mariadb -p -h db",
        ),
        (
            &["mysqldump", "--password=hunter2", "shop"],
            "mysqldump --password=[REDACTED] shop",
        ),
        (
            &["mysql", "--password", "hunter2"],
            "mysql --password [REDACTED]",
        ),
        // psql: PGPASSWORD in argv (env, sudo) and conninfo
        (
            &["env", "PGPASSWORD=hunter2", "psql", "-h", "db"],
            "env PGPASSWORD=[REDACTED] psql -h db",
        ),
        (
            &["psql", "postgresql://app:hunter2@db/shop"],
            "psql postgresql://app:[REDACTED]@db/shop",
        ),
        // sshpass, redis-cli
        (
            &["sshpass", "-p", "hunter2", "ssh", "host"],
            "sshpass -p [REDACTED] ssh host",
        ),
        (
            &["sshpass", "-phunter2", "ssh", "host"],
            "sshpass -p[REDACTED] ssh host",
        ),
        (
            &["redis-cli", "-h", "cache", "-a", "hunter2", "ping"],
            "redis-cli -h cache -a [REDACTED] ping",
        ),
        (
            &["redis-cli", "--pass", "hunter2"],
            "redis-cli --pass [REDACTED]",
        ),
        // curl credentials and headers
        (
            &["curl", "-u", "admin:hunter2", "https://x"],
            "curl -u admin:[REDACTED] https://x",
        ),
        (
            &["curl", "--user", "admin:hunter2", "https://x"],
            "curl --user admin:[REDACTED] https://x",
        ),
        (
            &["curl", "-uadmin:hunter2", "https://x"],
            "curl -uadmin:[REDACTED] https://x",
        ),
        (
            &["curl", "--user=admin:hunter2"],
            "curl --user=admin:[REDACTED]",
        ),
        (
            &["curl", "-U", "proxy:hunter2", "https://x"],
            "curl -U proxy:[REDACTED] https://x",
        ),
        (
            &["curl", "-H", "X-Api-Key: 0123abcd", "https://x"],
            "curl -H X-Api-Key: [REDACTED] https://x",
        ),
        (
            &["curl", "-H", "Cookie: sid=abc; theme=dark", "https://x"],
            "curl -H Cookie: [REDACTED] https://x",
        ),
        (
            &["curl", "-H", "Set-Cookie: sid=abc", "https://x"],
            "curl -H Set-Cookie: [REDACTED] https://x",
        ),
        (
            &[
                "curl",
                "-H",
                "Proxy-Authorization: Basic YWRtaW46aHVudGVyMg==",
                "https://x",
            ],
            "curl -H Proxy-Authorization: Basic [REDACTED] https://x",
        ),
        (
            &["curl", "-H", "Cookie:sid=abc", "https://x"],
            "curl -H Cookie:[REDACTED] https://x",
        ),
        // JWTs, alone, as an argument's value and after a scheme
        (&["agent", jwt], "agent [REDACTED]"),
        (&["agent", &jwt_arg], "agent token [REDACTED]"),
        (
            &["curl", "-H", &jwt_header],
            "curl -H Authorization: Bearer [REDACTED]",
        ),
        // the same inside a shell script
        (
            &["sh", "-c", "mysql -uroot -phunter2 shop | gzip"],
            "sh -c mysql -uroot -p[REDACTED] shop | gzip",
        ),
        (
            &[
                "sh",
                "-c",
                "curl -u admin:hunter2 -H 'Cookie: a=1; b=2' https://x",
            ],
            "sh -c curl -u admin:[REDACTED] -H 'Cookie: [REDACTED]' https://x",
        ),
        // query values, fragment parameters and userinfo passwords of URLs
        (
            &["curl", "https://api.x.com/v1?api_key=abc123"],
            "curl https://api.x.com/v1?api_key=[REDACTED]",
        ),
        (
            &["npx", "mcp-remote", "https://mcp.example.com/sse?token=abc"],
            "npx mcp-remote https://mcp.example.com/sse?token=[REDACTED]",
        ),
        (
            &[
                "azcopy",
                "copy",
                "https://a.blob.core.windows.net/c/b?sv=2022&sig=XYZ",
                ".",
            ],
            "azcopy copy https://a.blob.core.windows.net/c/b?sv=[REDACTED]&sig=[REDACTED] .",
        ),
        (
            &["curl", "--url=https://x.com/a?token=abc"],
            "curl --url=https://x.com/a?token=[REDACTED]",
        ),
        (
            &["git", "clone", "https://u:pw@git.x.com/r.git?ref=main"],
            "git clone https://u:[REDACTED]@git.x.com/r.git?ref=[REDACTED]",
        ),
        (
            &["xdg-open", "https://app.x.com/cb#access_token=abc&state=1"],
            "xdg-open https://app.x.com/cb#access_token=[REDACTED]&state=[REDACTED]",
        ),
        (
            &["curl", "api.x.com/x?token=abc"],
            "curl api.x.com/x?token=[REDACTED]",
        ),
        (
            &[
                "sh",
                "-c",
                "curl 'https://api.x.com/v1?api_key=abc123' -o out",
            ],
            "sh -c curl 'https://api.x.com/v1?api_key=[REDACTED]' -o out",
        ),
        // a secret option's value with spaces in it, in argv and in a script
        (
            &["mysql", "--password", "correct horse battery"],
            "mysql --password [REDACTED]",
        ),
        (
            &["sshpass", "-p", "a b", "ssh", "h"],
            "sshpass -p [REDACTED] ssh h",
        ),
        (
            &["curl", "-u", "admin:p w", "https://x"],
            "curl -u admin:[REDACTED] https://x",
        ),
        (
            &["docker", "run", "-e", "DB_PASSWORD=correct horse", "app"],
            "docker run -e DB_PASSWORD=[REDACTED] app",
        ),
        (
            &["mysql", "--password=a b", "shop"],
            "mysql --password=[REDACTED] shop",
        ),
        (
            &[
                "kubectl",
                "create",
                "secret",
                "generic",
                "--from-literal=password=a b",
            ],
            "kubectl create secret generic --from-literal=password=[REDACTED]",
        ),
        (
            &["ssh", "host", "mysql -phunter2 shop"],
            "ssh host mysql -p[REDACTED] shop",
        ),
        (
            &["sh", "-c", "PGPASSWORD=x psql -h db"],
            "sh -c PGPASSWORD=[REDACTED] psql -h db",
        ),
        (
            &["sh", "-c", "PGPASSWORD='my pass' psql -h db"],
            "sh -c PGPASSWORD=[REDACTED] psql -h db",
        ),
        (
            &["sh", "-c", "mysql --password \"a b\" shop"],
            "sh -c mysql --password \"[REDACTED]\" shop",
        ),
        (
            &["sh", "-c", "curl -u 'admin:p w' https://x"],
            "sh -c curl -u 'admin:[REDACTED]' https://x",
        ),
        (
            &["sh", "-c", "bash -c 'mysql -phunter2 shop'"],
            "sh -c bash -c 'mysql -p[REDACTED] shop'",
        ),
        (
            &["sh", "-c", "echo it's --password x"],
            "sh -c echo it's --password [REDACTED]",
        ),
        // `--flag=NAME=value`: the value's own name decides
        (
            &["docker", "run", "--env=DB_PASSWORD=hunter2", "app:latest"],
            "docker run --env=DB_PASSWORD=[REDACTED] app:latest",
        ),
        (
            &["docker", "build", "--build-arg=GH_TOKEN=x", "."],
            "docker build --build-arg=GH_TOKEN=[REDACTED] .",
        ),
        (
            &["helm", "install", "--set=auth.password=x", "db", "chart"],
            "helm install --set=auth.password=[REDACTED] db chart",
        ),
        // more secret names and options
        (
            &["gpg", "--batch", "--passphrase", "x", "-c", "f"],
            "gpg --batch --passphrase [REDACTED] -c f",
        ),
        (
            &[
                "openssl", "pkcs12", "-in", "a.p12", "-passin", "pass:x", "-passout", "pass:y",
            ],
            "openssl pkcs12 -in a.p12 -passin pass:[REDACTED] -passout pass:[REDACTED]",
        ),
        (
            &["/usr/bin/openssl", "enc", "-pass", "pass:x"],
            "/usr/bin/openssl enc -pass pass:[REDACTED]",
        ),
        (
            &["env", "AZURE_OPENAI_KEY=x", "app"],
            "env AZURE_OPENAI_KEY=[REDACTED] app",
        ),
        (
            &["curl", "-H", "Ocp-Apim-Subscription-Key: x", "https://x"],
            "curl -H Ocp-Apim-Subscription-Key: [REDACTED] https://x",
        ),
        (
            &["curl", "-H", "X-Functions-Key: x", "https://x"],
            "curl -H X-Functions-Key: [REDACTED] https://x",
        ),
        (
            &["az", "storage", "blob", "list", "--account-key", "x"],
            "az storage blob list --account-key [REDACTED]",
        ),
        // must stay as they are
        (&["ls", "-la", "/tmp"], "ls -la /tmp"),
        (&["ssh", "-p", "2222", "host"], "ssh -p 2222 host"),
        (&["ssh", "-p2222", "host"], "ssh -p2222 host"),
        (
            &["docker", "run", "-p8080:80", "-u", "1000:1000", "mysql"],
            "docker run -p8080:80 -u 1000:1000 mysql",
        ),
        (
            &["mysql", "-h", "db", "-P", "3306", "-u", "root", "-p"],
            "mysql -h db -P 3306 -u root -p",
        ),
        (
            &["curl", "-u", "admin", "https://x"],
            "curl -u admin https://x",
        ),
        (
            &["curl", "-H", "Accept: application/json", "https://x"],
            "curl -H Accept: application/json https://x",
        ),
        (
            &["redis-cli", "-h", "cache", "ping"],
            "redis-cli -h cache ping",
        ),
        (&["tar", "-xpf", "eyJ.tar"], "tar -xpf eyJ.tar"),
        (
            &["python3", "agent.py", "--port", "8080"],
            "python3 agent.py --port 8080",
        ),
        (
            &["sh", "-c", "cd /srv  &&  make"],
            "sh -c cd /srv  &&  make",
        ),
        (
            &["git", "clone", "https://github.com/o/r.git"],
            "git clone https://github.com/o/r.git",
        ),
        (
            &["curl", "https://example.com/a:b", "-o", "x"],
            "curl https://example.com/a:b -o x",
        ),
        (
            &["docker", "run", "--env=MODE=prod", "app:latest"],
            "docker run --env=MODE=prod app:latest",
        ),
        (
            &[
                "openssl",
                "rsa",
                "-passin",
                "env:KEYPASS",
                "-passout",
                "file:/run/pw",
            ],
            "openssl rsa -passin env:KEYPASS -passout file:/run/pw",
        ),
        (
            &["sort", "--key=2", "-t", ",", "monkey.csv"],
            "sort --key=2 -t , monkey.csv",
        ),
        (
            &["ssh-keygen", "-t", "ed25519", "--passing"],
            "ssh-keygen -t ed25519 --passing",
        ),
        (
            &["sh", "-c", "echo 'a  b' \"c\"  | tr a b"],
            "sh -c echo 'a  b' \"c\"  | tr a b",
        ),
    ];
    for (argv, want) in rows {
        assert_eq!(command_line(argv), *want, "argv {argv:?}");
    }
}

/// Free text (log bodies, captured heads, alert text): one row per pattern, then rows that
/// must stay as they are.
#[test]
fn text_table() {
    let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl";
    let unsigned = "eyJhbGciOiJub25lIn0.eyJzdWIiOiIxMjM0In0.";
    let rows: Vec<(String, String)> = vec![
        (
            format!("id_token={jwt}&x=1"),
            "id_token=[REDACTED]&x=1".into(),
        ),
        (format!("({jwt})."), "([REDACTED]).".into()),
        (format!("t {unsigned} end"), "t [REDACTED] end".into()),
        (
            "GET / HTTP/1.1\r\nCookie: a=1; b=2\r\nHost: x\r\n".into(),
            "GET / HTTP/1.1\r\nCookie: [REDACTED]\r\nHost: x\r\n".into(),
        ),
        (
            "HTTP/1.1 200 OK\r\nSet-Cookie: sid=abc; HttpOnly\r\n".into(),
            "HTTP/1.1 200 OK\r\nSet-Cookie: [REDACTED]\r\n".into(),
        ),
        (
            "Proxy-Authorization: Basic YWRtaW46aHVudGVyMg==\n".into(),
            "Proxy-Authorization: Basic [REDACTED]\n".into(),
        ),
        ("x-api-key: abc\n".into(), "x-api-key: [REDACTED]\n".into()),
        // an escaped newline (JSON, a quoted string) ends the value too
        (
            r"Cookie: a=1\nthen exfiltrate".into(),
            r"Cookie: [REDACTED]\nthen exfiltrate".into(),
        ),
        (
            "curl -H \"X-Api-Key: abc def\" https://x".into(),
            "curl -H \"X-Api-Key: [REDACTED]\" https://x".into(),
        ),
        // URLs: query values, fragment parameters, userinfo passwords, up to a space or quote
        (
            r#"{"uri":"https://mcp.example.com/r?token=abc"}"#.into(),
            r#"{"uri":"https://mcp.example.com/r?token=[REDACTED]"}"#.into(),
        ),
        (
            "see (https://a.blob.core.windows.net/c/b?sv=2022&sig=XYZ).".into(),
            "see (https://a.blob.core.windows.net/c/b?sv=[REDACTED]&sig=[REDACTED]).".into(),
        ),
        (
            "GET https://u:pw@h.com/a?x=1 now".into(),
            "GET https://u:[REDACTED]@h.com/a?x=[REDACTED] now".into(),
        ),
        (
            "url=https://app.x.com/cb#access_token=abc".into(),
            "url=https://app.x.com/cb#access_token=[REDACTED]".into(),
        ),
        (
            "[docs](https://x.com/a?token=abc)".into(),
            "[docs](https://x.com/a?token=[REDACTED])".into(),
        ),
        // header names ending in `-Key`
        (
            "Ocp-Apim-Subscription-Key: x\n".into(),
            "Ocp-Apim-Subscription-Key: [REDACTED]\n".into(),
        ),
        (
            "X-Functions-Key: x".into(),
            "X-Functions-Key: [REDACTED]".into(),
        ),
        // must stay as they are
        (
            "file:///home/u/notes.md and https://example.com/docs.".into(),
            "file:///home/u/notes.md and https://example.com/docs.".into(),
        ),
        ("monkey: 1, key: 2".into(), "monkey: 1, key: 2".into()),
        // redacted once, the same again (the AI-BOM processor redacts what the agent did)
        (
            "https://x.com/a?token=[REDACTED]&b=[REDACTED]".into(),
            "https://x.com/a?token=[REDACTED]&b=[REDACTED]".into(),
        ),
        (
            "Accept: application/json".into(),
            "Accept: application/json".into(),
        ),
        (
            "version 1.2.3 eyJ short.x.y".into(),
            "version 1.2.3 eyJ short.x.y".into(),
        ),
        (
            "https://example.com/a:b".into(),
            "https://example.com/a:b".into(),
        ),
        ("session:1:2".into(), "session:1:2".into()),
        ("Authorization:".into(), "Authorization:".into()),
    ];
    for (input, want) in &rows {
        assert_eq!(text(input), *want, "input {input:?}");
    }
}

/// Every prefix of [`KEY_PREFIXES`] with a key's length after it is a key, one character
/// shorter is not; Google's keys are `AIza` and exactly 35 more.
#[test]
fn key_prefixes_and_their_lengths() {
    for (prefix, min) in KEY_PREFIXES {
        let key = format!("{prefix}{}", "Ab1_".repeat(min).get(..min).unwrap());
        assert_eq!(text(&format!("k {key} x")), "k [REDACTED] x", "{key}");
        let short = &key[..key.len() - 1];
        assert_eq!(text(&format!("k {short} x")), format!("k {short} x"));
    }
    let google = "AIzaSyA1234567890abcdefghijklmnopqrstuv";
    assert_eq!(google.len(), 39);
    assert_eq!(text(&format!("key {google}")), "key [REDACTED]");
    assert_eq!(text("AIzaSyA1234 stays"), "AIzaSyA1234 stays");
    // Ordinary words with a key's prefix stay.
    for word in ["npm_config_cache_folder", "pypi-simple-index-mirror-server"] {
        assert_eq!(text(word), word);
    }
}

/// Tokens that services take in a URL's path, in a captured request's target and in a URL of
/// a command line; the same shapes elsewhere in a path stay.
#[test]
fn tokens_in_url_paths() {
    let telegram = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw";
    let slack = "services/T0A1B2C3D/B0E4F5G6H/abcdefghijklmnopqrstuvwx";
    let discord_token = "Xy".repeat(34);
    let rows: Vec<(String, String)> = vec![
        (
            format!("/bot{telegram}/sendMessage"),
            "/bot123456789:[REDACTED]/sendMessage".into(),
        ),
        (
            format!("/file/bot{telegram}/photos/a.jpg"),
            "/file/bot123456789:[REDACTED]/photos/a.jpg".into(),
        ),
        (
            format!("/{slack}"),
            "/services/T0A1B2C3D/B0E4F5G6H/[REDACTED]".into(),
        ),
        (
            format!("/api/webhooks/112233445566778899/{discord_token}?wait=true"),
            "/api/webhooks/112233445566778899/[REDACTED]?wait=[REDACTED]".into(),
        ),
        // must stay as they are
        (
            "/services/billing/v1/customers".into(),
            "/services/billing/v1/customers".into(),
        ),
        (
            "/api/webhooks/12/list".into(),
            "/api/webhooks/12/list".into(),
        ),
        ("/bot/status:ok".into(), "/bot/status:ok".into()),
    ];
    for (target, want) in &rows {
        assert_eq!(url(target), *want, "{target:?}");
    }
    assert_eq!(
        command_line(&[
            "curl",
            "-d",
            "text=hi",
            &format!("https://hooks.slack.com/{slack}")
        ]),
        "curl -d text=hi https://hooks.slack.com/services/T0A1B2C3D/B0E4F5G6H/[REDACTED]"
    );
    assert_eq!(
        text(&format!(
            "POST https://api.telegram.org/bot{telegram}/sendMessage now"
        )),
        "POST https://api.telegram.org/bot123456789:[REDACTED]/sendMessage now"
    );
}

#[test]
fn plain_text_is_borrowed() {
    assert!(matches!(text("python3 agent.py"), Cow::Borrowed(_)));
}

/// The quick check before the token scan never skips a text the scan would change: texts made
/// of every trigger's fragments, whole and cut short, between separators.
#[test]
fn the_quick_check_skips_only_texts_without_secrets() {
    assert!(
        KEY_PREFIXES
            .iter()
            .all(|(p, _)| b"srgxhnp".contains(&p.as_bytes()[0])),
        "may_hold_secret looks for the key prefixes by these first bytes"
    );
    let key = "a".repeat(60);
    let fragments: Vec<String> = KEY_PREFIXES
        .iter()
        .map(|(p, _)| format!("{p}{key}"))
        .chain(
            [
                "AKIAABCDEFGHIJKLMNOP",
                "ASIAABCDEFGHIJKLMNOP",
                "AIzaSyA1234567890abcdefghijklmnopqrstuv",
            ]
            .map(String::from),
        )
        .chain(
            [
                "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlXzEyMw",
                "Bearer",
                "bearer",
                "BASIC",
                "Basic",
                "x://u:p@h/",
                "Cookie:",
                "token=",
                "/usr/lib/x86_64-linux-gnu/libssl.so.3",
                "sk_",
                "gh",
                "é",
            ]
            .map(String::from),
        )
        .collect();
    let separators = [
        "", " ", "\t", "\"", "'", ",", ";", "&", "=", "/", "-", "_", "(",
    ];
    let mut checked = 0;
    for a in &fragments {
        for b in &fragments {
            for sep in separators {
                for cut in [0, 1, 3] {
                    let Some(a) = a.get(..a.len().saturating_sub(cut)) else {
                        continue;
                    };
                    let s = format!("{a}{sep}{b}");
                    if !may_hold_secret(&s) {
                        assert_eq!(scan(&s), s.as_str(), "{s:?}");
                        checked += 1;
                    }
                }
            }
        }
    }
    assert!(checked > 100, "{checked}");
    assert!(!may_hold_secret("/home/agent/project/src/main.py"));
    assert!(may_hold_secret("Authorization: Bearer abc"));
}
