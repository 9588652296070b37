//! Recorded exchanges of each provider (tests/fixtures/README.md names their sources), framed as
//! the capture sees them, read into `gen_ai.*` attributes.

use std::{io::Write, path::Path};

use runbom_event::GenAi;
use runbom_genai::{Exchange, Options, parse};
use serde_json::Value;

struct Fixture {
    host: String,
    target: String,
    content_type: String,
    request: Vec<u8>,
    response: Vec<u8>,
}

fn fixture(name: &str) -> Fixture {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let read = |f: &str| std::fs::read(dir.join(f));
    let meta: Value = serde_json::from_slice(&read("exchange.json").expect("exchange.json"))
        .expect("exchange.json is JSON");
    let s = |k: &str| meta[k].as_str().expect(k).to_owned();
    Fixture {
        host: s("host"),
        target: s("target"),
        content_type: s("content_type"),
        request: read("request.json").expect("request.json"),
        response: read("response.json")
            .or_else(|_| read("response.txt"))
            .or_else(|_| read("response.bin"))
            .expect("a response body"),
    }
}

#[derive(Clone, Copy)]
enum Framing {
    Length,
    Chunked,
    GzipChunked,
}

fn framed(f: &Fixture, framing: Framing) -> Vec<u8> {
    let mut head = format!(
        "HTTP/1.1 200 OK\r\nDate: Sat, 05 Dec 2026 20:00:00 GMT\r\nContent-Type: {}\r\n",
        f.content_type
    );
    let body = match framing {
        Framing::Length | Framing::Chunked => f.response.clone(),
        Framing::GzipChunked => {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(&f.response).expect("gzip");
            head.push_str("Content-Encoding: gzip\r\n");
            gz.finish().expect("gzip")
        }
    };
    let mut out;
    if matches!(framing, Framing::Length) {
        out = format!("{head}Content-Length: {}\r\n\r\n", body.len()).into_bytes();
        out.extend(body);
    } else {
        head.push_str("Transfer-Encoding: chunked\r\n\r\n");
        out = head.into_bytes();
        // Odd chunk sizes: events and JSON split across chunks.
        for c in body.chunks(97) {
            out.extend(format!("{:x}\r\n", c.len()).into_bytes());
            out.extend(c);
            out.extend(b"\r\n");
        }
        out.extend(b"0\r\n\r\n");
    }
    out
}

/// The fixture read under every framing, which must agree.
fn read(name: &str, options: Options) -> GenAi {
    let f = fixture(name);
    let mut results = [Framing::Length, Framing::Chunked, Framing::GzipChunked].map(|framing| {
        let response = framed(&f, framing);
        let mut done = runbom_genai::Completion::default();
        assert!(
            done.check(&response),
            "{name}: the whole response is complete"
        );
        parse(
            &Exchange {
                host: Some(&f.host),
                target: &f.target,
                request_body: &f.request,
                response: &response,
                response_cut: false,
            },
            options,
        )
        .unwrap_or_else(|| panic!("{name}: an LLM exchange"))
    });
    assert_eq!(results[0], results[1], "{name}: chunked reads the same");
    assert_eq!(results[0], results[2], "{name}: gzip reads the same");
    let out = std::mem::take(&mut results[0]);
    assert!(!out.partial, "{name}: read whole");
    out
}

fn names(g: &GenAi) -> Vec<&str> {
    g.tool_calls.iter().map(|c| c.name.as_str()).collect()
}

#[test]
fn openai_chat_completion_with_a_tool_call() {
    let g = read("openai-chat-tool-calls", Options::default());
    assert_eq!(
        (g.operation, g.provider, g.api),
        ("chat", "openai", "openai.chat_completions")
    );
    assert_eq!(g.request_model.as_deref(), Some("gpt-4.1-mini"));
    assert_eq!(g.response_model.as_deref(), Some("gpt-4.1-mini-2025-04-14"));
    assert!(
        g.response_id
            .as_deref()
            .is_some_and(|id| id.starts_with("chatcmpl-"))
    );
    assert_eq!((g.input_tokens, g.output_tokens), (Some(50), Some(15)));
    assert_eq!(g.finish_reasons, ["tool_calls"]);
    assert_eq!(names(&g), ["get_temperature"]);
    assert_eq!(g.declared_tools, ["get_temperature"]);
    assert_eq!(
        g.tool_calls[0].arguments, None,
        "no content without capture_content"
    );
    assert!(!g.streamed);
}

#[test]
fn openai_chat_stream_puts_tool_call_arguments_together() {
    let g = read(
        "openai-chat-stream-tool-calls",
        Options {
            capture_content: true,
        },
    );
    assert!(g.streamed);
    assert_eq!(g.request_model.as_deref(), Some("gpt-4o-mini"));
    assert_eq!(g.response_model.as_deref(), Some("gpt-4o-mini-2024-07-18"));
    assert_eq!(
        g.response_id.as_deref(),
        Some("chatcmpl-Dx0XpqH8w09uBXwq1zFGYdETjtnEl")
    );
    assert!(
        g.input_tokens.is_some() && g.output_tokens.is_some(),
        "include_usage: {g:?}"
    );
    assert_eq!(g.finish_reasons, ["tool_calls"]);
    assert_eq!(names(&g), ["get_capital"]);
    assert_eq!(
        g.tool_calls[0].id.as_deref(),
        Some("call_ZR5UUuTt3pf61kjwAJIYdVMj")
    );
    assert_eq!(
        g.tool_calls[0].arguments.as_deref(),
        Some(r#"{"country":"UK"}"#)
    );
}

#[test]
fn openai_responses_function_call() {
    let g = read("openai-responses-tool-call", Options::default());
    assert_eq!(
        (g.operation, g.provider, g.api),
        ("chat", "openai", "openai.responses")
    );
    assert_eq!(g.request_model.as_deref(), Some("gpt-4o"));
    assert_eq!(g.response_model.as_deref(), Some("gpt-4o-2024-08-06"));
    assert_eq!((g.input_tokens, g.output_tokens), (Some(40), Some(18)));
    assert_eq!(g.finish_reasons, ["completed"]);
    assert_eq!(names(&g), ["get_capital"]);
    assert_eq!(g.declared_tools, ["get_capital"]);
}

#[test]
fn anthropic_message_with_tool_use() {
    let g = read(
        "anthropic-messages-tool-use",
        Options {
            capture_content: true,
        },
    );
    assert_eq!(
        (g.operation, g.provider, g.api),
        ("chat", "anthropic", "anthropic.messages")
    );
    assert_eq!(
        g.request_model.as_deref(),
        Some("claude-haiku-4-5-20251001")
    );
    assert_eq!(
        g.response_model.as_deref(),
        Some("claude-haiku-4-5-20251001")
    );
    assert_eq!(
        g.response_id.as_deref(),
        Some("msg_0191iYfpERYfS27xLsdW2nbb")
    );
    assert_eq!((g.input_tokens, g.output_tokens), (Some(1151), Some(87)));
    assert_eq!(g.finish_reasons, ["tool_use"]);
    assert_eq!((g.max_tokens, g.temperature), (Some(4096), Some(0.0)));
    assert_eq!(names(&g), ["json"]);
    let args = g.tool_calls[0]
        .arguments
        .as_deref()
        .expect("arguments kept");
    assert!(args.contains("San Francisco"), "{args}");
}

#[test]
fn anthropic_stream_with_tool_use() {
    let g = read(
        "anthropic-messages-stream-tool-use",
        Options {
            capture_content: true,
        },
    );
    assert!(g.streamed);
    assert_eq!(
        g.response_id.as_deref(),
        Some("msg_01K2JbSUMYhez5RHoK9ZCj9U")
    );
    // message_start says 849 in; message_delta's usage is the final output count.
    assert_eq!((g.input_tokens, g.output_tokens), (Some(849), Some(47)));
    assert_eq!(g.finish_reasons, ["tool_use"]);
    assert_eq!(names(&g), ["json"]);
    assert_eq!(
        g.tool_calls[0].id.as_deref(),
        Some("toolu_01KFbKqPYSuAKujiL6mTfzYA")
    );
    let args: Value = serde_json::from_str(g.tool_calls[0].arguments.as_deref().unwrap())
        .expect("the pieces make JSON");
    assert_eq!(args["elements"][0]["location"], "San Francisco");
}

#[test]
fn gemini_stream_with_a_function_call() {
    let g = read("gemini-stream-tool-call", Options::default());
    assert_eq!(
        (g.operation, g.provider),
        ("generate_content", "gcp.gemini")
    );
    assert_eq!(g.request_model.as_deref(), Some("gemini-3-pro-preview"));
    assert_eq!(g.response_model.as_deref(), Some("gemini-3-pro-preview"));
    assert_eq!(g.response_id.as_deref(), Some("QUVVadTSNJ6_qtsPvN7J8Q0"));
    assert_eq!((g.input_tokens, g.output_tokens), (Some(29), Some(10)));
    assert_eq!(g.finish_reasons, ["STOP"]);
    assert_eq!(names(&g), ["get_country"]);
    assert_eq!(g.declared_tools, ["get_country"]);
}

#[test]
fn bedrock_converse() {
    let g = read("bedrock-converse", Options::default());
    assert_eq!((g.operation, g.provider), ("chat", "aws.bedrock"));
    assert_eq!(
        g.request_model.as_deref(),
        Some("us.amazon.nova-micro-v1:0")
    );
    assert_eq!((g.input_tokens, g.output_tokens), (Some(7), Some(30)));
    assert_eq!(g.finish_reasons, ["end_turn"]);
    assert!(g.tool_calls.is_empty());
}

#[test]
fn cut_responses_keep_what_was_seen_and_say_so() {
    let f = fixture("anthropic-messages-stream-tool-use");
    let response = framed(&f, Framing::Chunked);
    let cut = &response[..response.len() / 2];
    let g = parse(
        &Exchange {
            host: Some(&f.host),
            target: &f.target,
            request_body: &f.request,
            response: cut,
            response_cut: true,
        },
        Options::default(),
    )
    .unwrap();
    assert!(g.partial);
    assert_eq!(g.input_tokens, Some(849));
    assert_eq!(names(&g), ["json"]);
    // No response at all: the request's part.
    let g = parse(
        &Exchange {
            host: Some(&f.host),
            target: &f.target,
            request_body: &f.request[..20],
            response: b"",
            response_cut: true,
        },
        Options::default(),
    )
    .unwrap();
    assert!(g.partial);
    assert_eq!(
        g.request_model.as_deref(),
        None,
        "a cut body without its model"
    );
}

#[test]
fn errors_and_secrets() {
    let body = br#"{"error":{"message":"Incorrect API key provided: sk-proj-abcdefghijklmnopqrstuvwxyz0123456789.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#;
    let mut response = format!(
        "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(body);
    let g = parse(
        &Exchange {
            host: Some("api.openai.com"),
            target: "/v1/chat/completions",
            request_body: br#"{"model":"gpt-4o","messages":[]}"#,
            response: &response,
            response_cut: false,
        },
        Options {
            capture_content: true,
        },
    )
    .unwrap();
    assert_eq!(g.error_type.as_deref(), Some("invalid_request_error"));
    assert!(!format!("{g:?}").contains("sk-proj"));
    // Arguments are redacted when kept.
    let key = format!("sk-{}", "a".repeat(40));
    let body = format!(
        r#"{{"id":"c","model":"m","choices":[{{"finish_reason":"tool_calls","message":{{"tool_calls":[{{"id":"t","function":{{"name":"http_post","arguments":"{{\"auth\":\"{key}\"}}"}}}}]}}}}]}}"#
    );
    let mut response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(body.as_bytes());
    let g = parse(
        &Exchange {
            host: Some("127.0.0.1:8000"),
            target: "/v1/chat/completions",
            request_body: b"{}",
            response: &response,
            response_cut: false,
        },
        Options {
            capture_content: true,
        },
    )
    .unwrap();
    assert_eq!(g.provider, "_OTHER");
    assert_eq!(names(&g), ["http_post"]);
    let args = g.tool_calls[0].arguments.as_deref().unwrap();
    assert!(
        !args.contains(&key) && args.contains("[REDACTED]"),
        "{args}"
    );
}

#[test]
fn ollama_chat_with_a_tool_call() {
    let g = read(
        "ollama-chat-tool-calls",
        Options {
            capture_content: true,
        },
    );
    assert_eq!(
        (g.operation, g.provider, g.api),
        ("chat", "_OTHER", "ollama.chat")
    );
    assert_eq!(g.request_model.as_deref(), Some("llama3.2"));
    assert_eq!(g.response_model.as_deref(), Some("llama3.2"));
    assert_eq!((g.input_tokens, g.output_tokens), (Some(122), Some(33)));
    assert_eq!(g.finish_reasons, ["stop"]);
    assert_eq!(names(&g), ["get_current_weather"]);
    assert_eq!(g.declared_tools, ["get_current_weather"]);
    assert_eq!(
        g.tool_calls[0].arguments.as_deref(),
        Some(r#"{"format":"celsius","location":"Paris, FR"}"#)
    );
    assert!(!g.streamed);
}

#[test]
fn ollama_chat_stream_of_json_lines() {
    let g = read("ollama-chat-stream", Options::default());
    assert!(g.streamed);
    assert_eq!(g.api, "ollama.chat");
    assert_eq!(g.response_model.as_deref(), Some("llama3.2"));
    assert_eq!((g.input_tokens, g.output_tokens), (Some(61), Some(468)));
    assert_eq!((g.max_tokens, g.temperature), (Some(512), Some(0.2)));
    assert!(g.finish_reasons.is_empty(), "the final line names none");
    assert!(g.tool_calls.is_empty());
}

#[test]
fn bedrock_converse_stream_of_binary_event_messages() {
    let g = read(
        "bedrock-converse-stream-tool-use",
        Options {
            capture_content: true,
        },
    );
    assert!(g.streamed);
    assert_eq!(
        (g.operation, g.provider, g.api),
        ("chat", "aws.bedrock", "bedrock.converse")
    );
    assert_eq!(
        g.request_model.as_deref(),
        Some("us.amazon.nova-micro-v1:0")
    );
    assert_eq!((g.input_tokens, g.output_tokens), (Some(471), Some(91)));
    assert_eq!(g.finish_reasons, ["tool_use"]);
    assert_eq!(names(&g), ["get_temperature"]);
    assert_eq!(
        g.tool_calls[0].id.as_deref(),
        Some("tooluse_lAG_zP8QRHmSYOwZzzaCqA")
    );
    assert_eq!(
        g.tool_calls[0].arguments.as_deref(),
        Some(r#"{"city":"Paris"}"#)
    );
    assert_eq!(g.declared_tools, ["get_capital", "get_temperature"]);
}

#[test]
fn messages_are_read_only_under_capture_content() {
    for name in [
        "openai-chat-tool-calls",
        "openai-chat-stream-tool-calls",
        "anthropic-messages-stream-tool-use",
        "ollama-chat-tool-calls",
        "bedrock-converse-stream-tool-use",
    ] {
        let off = read(name, Options::default());
        assert_eq!(
            (off.input_messages, off.output_messages),
            (None, None),
            "{name}"
        );
        let on = read(
            name,
            Options {
                capture_content: true,
            },
        );
        let output: Value = serde_json::from_str(on.output_messages.as_deref().unwrap_or("null"))
            .unwrap_or_else(|e| panic!("{name}: output messages are JSON: {e}"));
        let parts = output[0]["parts"].as_array().cloned().unwrap_or_default();
        assert_eq!(output[0]["role"], "assistant", "{name}: {output}");
        assert!(
            parts
                .iter()
                .any(|p| p["type"] == "tool_call" && p["name"] == on.tool_calls[0].name.as_str()),
            "{name}: the tool call among the output's parts: {output}"
        );
        if name.starts_with("openai-chat")
            || name.starts_with("ollama")
            || name.starts_with("anthropic")
        {
            let input: Value = serde_json::from_str(on.input_messages.as_deref().unwrap_or("null"))
                .unwrap_or_else(|e| panic!("{name}: input messages are JSON: {e}"));
            assert!(
                input
                    .as_array()
                    .is_some_and(|m| m.iter().any(|m| m["role"] == "user")),
                "{name}: {input}"
            );
        }
    }
}
