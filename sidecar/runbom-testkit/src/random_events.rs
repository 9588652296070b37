//! Random kernel events from a seed, for checks that the log records written from the events
//! are those of the typed path for any batch: every kind of event with every optional part
//! drawn (set or unset), strings with quotes, backslashes, control characters, non-ASCII text
//! and lengths that cross a varint's size, processes interleaved. And the realistic mix the
//! benchmarks time: mostly file opens, some connects and execs.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
};

use rand::{Rng, SeedableRng, rngs::StdRng};
use runbom_event::{
    Capture, Detail, GenAi, GrpcCall, HttpRequest, HttpVersion, KernelEvent, McpCall, McpSide,
    McpTransport, ProcessInfo, Transport, genai::ToolCall,
};

/// Draws events; the same seed gives the same events.
pub struct RandomEvents {
    rng: StdRng,
    processes: Vec<Arc<ProcessInfo>>,
    at: u64,
}

impl RandomEvents {
    /// Events of `processes` processes (at least one), drawn from `seed`.
    #[must_use]
    pub fn new(seed: u64, processes: usize) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let processes = (0..processes.max(1))
            .map(|i| {
                let pid = 1000 + u32::try_from(i).unwrap_or(0);
                let exe = if rng.random_bool(0.1) {
                    String::new()
                } else {
                    format!("/usr/bin/{}", ["python3", "node", "sh", "curl"][i % 4])
                };
                Arc::new(ProcessInfo {
                    pid,
                    ppid: u32::from(!rng.random_bool(0.1)),
                    uid: rng.random_range(0..2000),
                    command_line: if exe.is_empty() {
                        String::new()
                    } else {
                        format!("{exe} agent.py --n {i}")
                    },
                    exe,
                    container_id: rng.random_bool(0.5).then(|| format!("{i:064x}")),
                    trace_id: [u8::try_from(i % 256).unwrap_or(0); 16],
                    ..ProcessInfo::default()
                })
            })
            .collect();
        Self {
            rng,
            processes,
            at: 1_795_737_600_000_000_000,
        }
    }

    /// `n` events of every kind, of processes drawn at random.
    pub fn batch(&mut self, n: usize) -> Vec<KernelEvent> {
        (0..n)
            .map(|_| {
                let detail = self.detail();
                self.event(detail)
            })
            .collect()
    }

    /// `n` events as a busy node sends them: about 80% file opens (one in ten failed), 10%
    /// connects, 5% execs, the rest exits and DNS queries; paths and addresses of plausible
    /// lengths.
    pub fn realistic(&mut self, n: usize) -> Vec<KernelEvent> {
        (0..n)
            .map(|_| {
                let r = self.rng.random_range(0..100);
                let detail = match r {
                    0..80 => Detail::FileOpen {
                        path: format!(
                            "/usr/lib/python3/dist-packages/{}/module_{}.py",
                            ["requests", "urllib3", "openai", "httpx"][r % 4],
                            self.rng.random_range(0..500)
                        ),
                        flags: [0, 0o2_000_000, 0o1101][r % 3],
                        error: (r % 10 == 0).then_some("ENOENT"),
                    },
                    80..90 => Detail::Connect {
                        remote: SocketAddr::new(
                            IpAddr::V4(Ipv4Addr::new(10, 0, self.rng.random(), self.rng.random())),
                            443,
                        ),
                        local: Some(SocketAddr::new(
                            IpAddr::V4(Ipv4Addr::new(10, 1, 0, 7)),
                            self.rng.random_range(32768..61000),
                        )),
                        transport: Some(Transport::Tcp),
                        error: None,
                        fd: None,
                    },
                    90..95 => Detail::Exec {
                        path: "/usr/bin/git".into(),
                        argv_truncated: false,
                    },
                    95..98 => Detail::Exit { code: Some(0) },
                    _ => Detail::DnsQuery {
                        name: "api.openai.com".into(),
                        qtype: "A",
                        server: "10.96.0.10:53".parse().expect("address"),
                    },
                };
                self.event(detail)
            })
            .collect()
    }

    fn event(&mut self, detail: Detail) -> KernelEvent {
        let process = self.processes[self.rng.random_range(0..self.processes.len())].clone();
        self.at += self.rng.random_range(0..5_000);
        let start_ns = if self.rng.random_bool(0.02) {
            0
        } else {
            self.at
        };
        KernelEvent {
            pid: process.pid,
            tid: process.pid + self.rng.random_range(0..3),
            cgroup_id: 1,
            start_ns,
            end_ns: start_ns + self.rng.random_range(0..100_000),
            process,
            detail,
        }
    }

    fn detail(&mut self) -> Detail {
        match self.rng.random_range(0..9) {
            0 => Detail::Exec {
                path: self.text(),
                argv_truncated: self.rng.random(),
            },
            1 => Detail::Exit {
                code: self.maybe(|r| r.rng.random_range(-1..256)),
            },
            2 => Detail::Connect {
                remote: self.address(),
                local: self.maybe(Self::address),
                transport: self.maybe(|r| {
                    if r.rng.random() {
                        Transport::Tcp
                    } else {
                        Transport::Udp
                    }
                }),
                error: self.maybe(|_| "ECONNREFUSED"),
                fd: None,
            },
            3 => Detail::Accept {
                peer: self.maybe(Self::address),
            },
            4 => Detail::FileOpen {
                path: self.text(),
                flags: self.rng.random(),
                error: self.maybe(|_| "EACCES"),
            },
            5 => Detail::DnsQuery {
                name: self.text(),
                qtype: "AAAA",
                server: self.address(),
            },
            6 | 7 => Detail::HttpRequest(Box::new(self.http())),
            _ => Detail::Mcp(Box::new(self.mcp())),
        }
    }

    fn http(&mut self) -> HttpRequest {
        HttpRequest {
            capture: [Capture::Socket, Capture::Openssl, Capture::GoTls]
                [self.rng.random_range(0..3)],
            method: self.text(),
            host: self.maybe(|r| {
                [
                    "api.openai.com".to_owned(),
                    "api.openai.com:443".to_owned(),
                    "[2001:db8::1]:8443".to_owned(),
                    r.text(),
                ][r.rng.random_range(0..4)]
                .clone()
            }),
            target: format!("/v1/{}?key=[REDACTED]", self.text()),
            peer: self.maybe(Self::address),
            traceparent: None,
            user_agent: self.maybe(Self::text),
            body_size: self.maybe(|r| r.rng.random()),
            model: self.maybe(Self::text),
            status: self.maybe(|r| r.rng.random_range(100..600)),
            version: if self.rng.random() {
                HttpVersion::Http1
            } else {
                HttpVersion::Http2
            },
            grpc: self.maybe(|r| GrpcCall {
                service: r.text(),
                method: r.text(),
                status: r.maybe(|r| r.rng.random_range(0..17)),
            }),
            genai: self.maybe(|r| Box::new(r.genai())),
            fd: None,
        }
    }

    fn genai(&mut self) -> GenAi {
        GenAi {
            operation: "chat",
            provider: "openai",
            api: "openai.chat_completions",
            request_model: self.maybe(Self::text),
            response_model: self.maybe(Self::text),
            response_id: self.maybe(Self::text),
            input_tokens: self.maybe(|r| r.rng.random()),
            output_tokens: self.maybe(|r| r.rng.random_range(0..10_000)),
            finish_reasons: self.some(Self::text),
            max_tokens: self.maybe(|r| r.rng.random_range(0..10_000)),
            temperature: self.maybe(|r| f64::from(r.rng.random_range(0..20u8)) / 10.0 + 1e-9),
            streamed: self.rng.random(),
            tool_calls: self.some(|r| ToolCall {
                name: r.text(),
                id: r.maybe(Self::text),
                arguments: r.maybe(Self::text),
            }),
            declared_tools: self.some(Self::text),
            error_type: self.maybe(Self::text),
            partial: self.rng.random(),
            input_messages: self.maybe(Self::text),
            output_messages: self.maybe(Self::text),
        }
    }

    fn mcp(&mut self) -> McpCall {
        McpCall {
            side: if self.rng.random() {
                McpSide::Client
            } else {
                McpSide::Server
            },
            span_id: self.rng.random(),
            method: ["tools/call", "prompts/get", "resources/read", "tools/list"]
                [self.rng.random_range(0..4)]
            .into(),
            target: self.maybe(Self::text),
            request_id: self.maybe(Self::text),
            resource_uri: self.maybe(Self::text),
            session_id: self.maybe(Self::text),
            protocol_version: self.maybe(Self::text),
            transport: [McpTransport::Pipe, McpTransport::Unix, McpTransport::Tcp]
                [self.rng.random_range(0..3)],
            traceparent: None,
            tool_error: self.rng.random(),
            rpc_error_code: self.maybe(|r| r.rng.random_range(-32800..0)),
            arguments: self.maybe(Self::text),
            peer_pid: self.maybe(|r| r.rng.random()),
            server_command_line: self.maybe(Self::text),
            server_name: self.maybe(Self::text),
            server_url: self.maybe(Self::text),
            tools: self.some(Self::text),
            answered: self.rng.random(),
        }
    }

    fn address(&mut self) -> SocketAddr {
        let ip = if self.rng.random() {
            IpAddr::V4(Ipv4Addr::from(self.rng.random::<u32>()))
        } else {
            IpAddr::V6(Ipv6Addr::from(
                self.rng.random::<u128>() >> self.rng.random_range(0..128),
            ))
        };
        SocketAddr::new(ip, self.rng.random())
    }

    fn maybe<T>(&mut self, f: impl FnOnce(&mut Self) -> T) -> Option<T> {
        self.rng.random_bool(0.5).then(|| f(self))
    }

    /// Up to three items.
    fn some<T>(&mut self, mut f: impl FnMut(&mut Self) -> T) -> Vec<T> {
        let n = self.rng.random_range(0..=3);
        (0..n).map(|_| f(self)).collect()
    }

    /// Text of every sort: empty, plain, needing JSON escapes, non-ASCII, a path of bytes
    /// that were not UTF-8 (as the kernel reader replaces them), 100 to 200 bytes (a varint
    /// of one or two bytes around it) and now and then 20 KiB (a log record past 16 KiB).
    fn text(&mut self) -> String {
        const PIECES: [&str; 10] = [
            "",
            "/etc/passwd",
            "api.example.com",
            "say \"hi\"",
            "C:\\temp\\x",
            "line\nbreak\ttab\u{1}\u{1f}",
            "é😀\u{2028}\u{7f}",
            "/tmp/\u{fffd}\u{fffd}bad",
            "gpt-4o-mini",
            "a b c",
        ];
        match self.rng.random_range(0..40) {
            0 => "x".repeat(self.rng.random_range(100..200)),
            1 if self.rng.random_bool(0.1) => "y".repeat(20 * 1024),
            _ => {
                let n = self.rng.random_range(1..4);
                (0..n)
                    .map(|_| PIECES[self.rng.random_range(0..PIECES.len())])
                    .collect()
            }
        }
    }
}
