use super::*;

fn kv(k: &str, v: &str) -> KeyValue {
    crate::otlp::kv_str(k, v)
}

#[test]
fn genai_model_call_with_legacy_system() {
    let a = [
        kv("gen_ai.operation.name", "chat"),
        kv("gen_ai.system", "az.ai.openai"),
        kv("gen_ai.request.model", "gpt-4o"),
    ];
    assert_eq!(
        classify(&a, "chat gpt-4o", false),
        Activity::Model {
            model: Some("gpt-4o".into()),
            provider: Some("azure.ai.openai".into()),
            operation: "chat".into()
        }
    );
    let a = [
        kv("gen_ai.operation.name", "chat"),
        kv("gen_ai.provider.name", "openai"),
        kv("gen_ai.request.model", "gpt-4o"),
        kv("gen_ai.response.model", "gpt-4o-2024-08-06"),
    ];
    let Activity::Model {
        model, provider, ..
    } = classify(&a, "chat", false)
    else {
        panic!("a model call")
    };
    assert_eq!(
        (model.as_deref(), provider.as_deref()),
        (Some("gpt-4o-2024-08-06"), Some("openai"))
    );
}

#[test]
fn genai_tools_and_agents() {
    let a = [
        kv("gen_ai.operation.name", "execute_tool"),
        kv("gen_ai.tool.name", "http_post"),
    ];
    assert_eq!(
        classify(&a, "execute_tool http_post", false),
        Activity::Tool {
            name: "http_post".into()
        }
    );
    let a = [
        kv("gen_ai.operation.name", "invoke_agent"),
        kv("gen_ai.agent.name", "support-agent"),
    ];
    assert_eq!(
        classify(&a, "x", false),
        Activity::Agent {
            name: Some("support-agent".into())
        }
    );
}

#[test]
fn langchain_is_a_framework_not_a_provider() {
    let a = [
        kv("gen_ai.system", "langchain"),
        kv("gen_ai.request.model", "gpt-4o"),
        kv("llm.request.type", "chat"),
    ];
    let Activity::Model { provider, .. } = classify(&a, "ChatOpenAI.chat", false) else {
        panic!("a model call")
    };
    assert_eq!(provider, None);
    let a = [
        kv("gen_ai.system", "LangChain"),
        kv("llm.provider", "anthropic"),
    ];
    assert_eq!(provider_of(&a).as_deref(), Some("anthropic"));
}

#[test]
fn an_unknown_provider_is_no_provider() {
    // What runbom's GenAI reading says of an OpenAI-compatible server it does not know.
    let a = [
        kv("gen_ai.provider.name", "_OTHER"),
        kv("gen_ai.request.model", "m"),
    ];
    assert_eq!(provider_of(&a), None);
    let a = [
        kv("gen_ai.provider.name", "_OTHER"),
        kv("llm.provider", "openai"),
    ];
    assert_eq!(provider_of(&a).as_deref(), Some("openai"));
}

#[test]
fn openinference_family() {
    let a = [
        kv("openinference.span.kind", "LLM"),
        kv("llm.model_name", "claude-3-5-sonnet"),
        kv("llm.provider", "anthropic"),
    ];
    assert_eq!(
        classify(&a, "llm", false),
        Activity::Model {
            model: Some("claude-3-5-sonnet".into()),
            provider: Some("anthropic".into()),
            operation: "chat".into()
        }
    );
    let a = [
        kv("openinference.span.kind", "TOOL"),
        kv("tool.name", "search"),
    ];
    assert_eq!(
        classify(&a, "search", false),
        Activity::Tool {
            name: "search".into()
        }
    );
    let a = [
        kv("openinference.span.kind", "AGENT"),
        kv("agent.name", "planner"),
    ];
    assert_eq!(
        classify(&a, "agent", false),
        Activity::Agent {
            name: Some("planner".into())
        }
    );
}

#[test]
fn openllmetry_family() {
    let a = [
        kv("traceloop.span.kind", "tool"),
        kv("traceloop.entity.name", "get_weather"),
    ];
    assert_eq!(
        classify(&a, "get_weather.tool", false),
        Activity::Tool {
            name: "get_weather".into()
        }
    );
    let a = [
        kv("traceloop.span.kind", "workflow"),
        kv("traceloop.entity.name", "support"),
    ];
    assert_eq!(
        classify(&a, "support.workflow", false),
        Activity::Agent {
            name: Some("support".into())
        }
    );
    let a = [
        kv("llm.request.type", "chat"),
        kv("gen_ai.system", "OpenAI"),
        kv("gen_ai.request.model", "gpt-4o-mini"),
    ];
    assert!(matches!(
        classify(&a, "openai.chat", false),
        Activity::Model { provider: Some(p), .. } if p == "openai"
    ));
}

#[test]
fn http_db_and_kernel_events() {
    let a = [
        kv("http.request.method", "POST"),
        kv("url.full", "http://127.0.0.1:18099/upload?k=1"),
    ];
    let Activity::Http { dest, .. } = classify(&a, "POST", false) else {
        panic!()
    };
    assert_eq!(dest.display(), "http://127.0.0.1:18099/upload");
    let a = [
        kv("db.system.name", "sqlite"),
        kv("db.namespace", "crm"),
        kv("server.address", "127.0.0.1"),
        crate::otlp::kv_int("server.port", 18081),
    ];
    assert!(matches!(
        classify(&a, "SELECT", false),
        Activity::Db { dest: Some(_), .. }
    ));
    let a = [
        kv("runbom.event", "net.connect"),
        kv("server.address", "127.0.0.1"),
        crate::otlp::kv_int("server.port", 18099),
    ];
    let Activity::Connect { dest } = classify(&a, "net.connect", true) else {
        panic!()
    };
    assert_eq!(dest.host_port(), "127.0.0.1:18099");
    let a = [kv("runbom.event", "file.open"), kv("file.path", "/d/x")];
    assert_eq!(
        classify(&a, "", true),
        Activity::File {
            path: "/d/x".into()
        }
    );
}

/// `is_library_path` as it was written first (substring searches): the one-pass reading must
/// agree with it on every path.
fn is_library_path_by_substrings(path: &str) -> bool {
    const PARTS: &[&str] = &[
        "/site-packages/",
        "/dist-packages/",
        "/__pycache__/",
        "/node_modules/",
        "/lib/python",
        "/.pyenv/versions/",
        "/lib-dynload/",
        ".dist-info/",
    ];
    let file = path.rsplit('/').next().unwrap_or(path);
    LIBRARY_PREFIXES.iter().any(|p| path.starts_with(p))
        || PARTS.iter().any(|p| path.contains(p))
        || path.ends_with('/')
        || std::path::Path::new(file).extension().is_some_and(|e| {
            e.eq_ignore_ascii_case("so")
                || e.eq_ignore_ascii_case("pyc")
                || e.eq_ignore_ascii_case("pth")
        })
        || file.contains(".so.")
        || file == "pyvenv.cfg"
}

#[test]
fn library_paths_read_in_one_pass_agree_with_substring_search() {
    let dirs = [
        "",
        "/",
        "//",
        "site-packages",
        "dist-packages",
        "__pycache__",
        "node_modules",
        "lib-dynload",
        "lib",
        "python3.12",
        "python",
        ".pyenv",
        "versions",
        "foo.dist-info",
        ".dist-info",
        "usr",
        "srv",
        "tmp",
        "data",
        "x",
    ];
    let files = [
        "",
        "a.txt",
        "libc.so",
        "libc.so.6",
        "m.PYC",
        "x.pth",
        ".so",
        "..so",
        "foo.",
        "..",
        ".",
        "pyvenv.cfg",
        "python3",
        "versions",
        "customers.csv",
        "so",
    ];
    let mut checked = 0;
    for lead in ["", "/"] {
        for a in dirs {
            for b in dirs {
                for c in dirs {
                    for f in files {
                        let path = format!("{lead}{a}/{b}/{c}/{f}");
                        let path = path.replace("///", "/");
                        assert_eq!(
                            is_library_path(&path),
                            is_library_path_by_substrings(&path),
                            "{path}"
                        );
                        let short = format!("{lead}{a}/{f}");
                        assert_eq!(
                            is_library_path(&short),
                            is_library_path_by_substrings(&short),
                            "{short}"
                        );
                        checked += 1;
                    }
                }
            }
        }
    }
    for p in [
        "/usr/lib/x",
        "/etc/ld.so.cache",
        "/etc/localtime",
        "/proc/self/maps",
        "/tmp/runbom-agent/data/customers.csv",
        "relative/lib/python3/x",
        "lib/python3",
        "/home/u/.pyenv/versions/3.12/bin/python",
        "/app/venv/lib/python3.12/site-packages/openai/__init__.py",
        "/x/lib/python",
        "/x/lib/pythonista/data.csv",
        "/x/.pyenv/versions",
    ] {
        assert_eq!(is_library_path(p), is_library_path_by_substrings(p), "{p}");
    }
    assert!(checked > 100_000);
}
