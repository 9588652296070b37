//! Declared endpoints (`services[].endpoints`, `data[].contents.url`) and the observed
//! destinations they are matched against: by URL prefix, `host:port`, IP, CIDR and DNS name.

use std::net::IpAddr;

use crate::glob::Glob;

/// Where a declared endpoint points.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Host {
    /// A DNS name (globs allowed: `*.openai.com`), compared without regard to case.
    Name(Glob),
    Ip(IpAddr),
    Cidr(IpAddr, u8),
    /// `0.0.0.0` / `::` (a listener's wildcard address): any host.
    Any,
}

/// One declared endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// As written in the BOM.
    pub raw: String,
    pub scheme: Option<String>,
    pub host: Host,
    /// `None`: any port (no port written and no scheme that implies one).
    pub port: Option<u16>,
    /// Path prefix without its trailing `/` (empty: any path).
    pub path: String,
}

impl Endpoint {
    /// Parses `scheme://host[:port][/path]`, `host[:port]`, `[v6]:port`, an IP or a CIDR.
    /// The error is the reason, worded for the BOM's author.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let bad = |why: &str| Err(format!("not a URL, host:port, IP or CIDR: {raw:?} ({why})"));
        let text = raw.trim();
        if text.is_empty() {
            return bad("empty");
        }
        let (scheme, rest) = match text.split_once("://") {
            Some((s, r)) => {
                if s.is_empty()
                    || !s
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
                {
                    return bad("invalid scheme");
                }
                (Some(s.to_ascii_lowercase()), r)
            }
            None => (None, text),
        };
        if scheme.is_none()
            && let Some((addr, len)) = rest.split_once('/')
            && let Ok(ip) = addr.trim_matches(['[', ']']).parse::<IpAddr>()
        {
            let max = if ip.is_ipv4() { 32 } else { 128 };
            return match len.parse::<u8>() {
                Ok(n) if n <= max => Ok(Self {
                    raw: raw.to_owned(),
                    scheme: None,
                    host: Host::Cidr(ip, n),
                    port: None,
                    path: String::new(),
                }),
                _ => bad("invalid CIDR prefix length"),
            };
        }
        let (authority, path) = match rest.find(['/', '?', '#']) {
            Some(i) => (&rest[..i], rest[i..].split(['?', '#']).next().unwrap_or("")),
            None => (rest, ""),
        };
        let authority = authority.rsplit('@').next().unwrap_or(authority);
        let (host, port) = match split_host_port(authority) {
            Ok(hp) => hp,
            Err(why) => return bad(why),
        };
        if host.is_empty() {
            return bad("no host");
        }
        let host = match host.parse::<IpAddr>() {
            Ok(ip) if ip.is_unspecified() => Host::Any,
            Ok(ip) => Host::Ip(ip),
            Err(_) => {
                if !host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'*'))
                {
                    return bad("invalid host name");
                }
                Host::Name(Glob::name(host))
            }
        };
        let port = port.or_else(|| scheme.as_deref().and_then(default_port));
        Ok(Self {
            raw: raw.to_owned(),
            scheme,
            host,
            port,
            path: path.trim_end_matches('/').to_owned(),
        })
    }

    /// Whether `dest` is this endpoint (same host or a name it was resolved from, same port,
    /// and a path under this endpoint's path when both are known).
    #[must_use]
    pub fn matches(&self, dest: &Dest) -> bool {
        if let (Some(want), Some(got)) = (self.port, dest.port)
            && want != got
        {
            return false;
        }
        if self.port.is_some() && dest.port.is_none() {
            return false;
        }
        let host_ok = match &self.host {
            Host::Any => true,
            Host::Ip(ip) => dest.ip == Some(*ip),
            Host::Cidr(net, len) => dest.ip.is_some_and(|ip| in_cidr(ip, *net, *len)),
            Host::Name(glob) => {
                dest.name.as_deref().is_some_and(|n| glob.matches(n))
                    || dest.resolved.iter().any(|n| glob.matches(n))
            }
        };
        if !host_ok {
            return false;
        }
        match &dest.path {
            Some(p) if !self.path.is_empty() => {
                p == &self.path
                    || (p.starts_with(&self.path)
                        && p.as_bytes().get(self.path.len()) == Some(&b'/'))
            }
            _ => true,
        }
    }
}

/// An observed destination: from `url.full`, `server.address`/`server.port`,
/// `network.peer.address`, and the names the process resolved.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dest {
    pub scheme: Option<String>,
    /// The DNS name when known.
    pub name: Option<String>,
    pub ip: Option<IpAddr>,
    pub port: Option<u16>,
    /// Path without query (HTTP only).
    pub path: Option<String>,
    /// DNS names the process asked for (`dns.query`): candidates for an IP-only destination.
    pub resolved: Vec<String>,
}

impl Dest {
    /// From a URL (`url.full`); the query string is dropped.
    #[must_use]
    pub fn from_url(url: &str) -> Option<Self> {
        let (scheme, rest) = url.split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = rest[..end].rsplit('@').next().unwrap_or("");
        let (host, port) = split_host_port(authority).ok()?;
        let path = rest[end..].split(['?', '#']).next().unwrap_or("");
        let mut d = Self::from_host(host, port.or_else(|| default_port(&scheme)));
        d.scheme = Some(scheme);
        d.path = Some(if path.is_empty() {
            "/".into()
        } else {
            path.into()
        });
        Some(d)
    }

    /// From an address (name or IP) and port.
    #[must_use]
    pub fn from_host(host: &str, port: Option<u16>) -> Self {
        let host = host.trim_matches(['[', ']']);
        match host.parse::<IpAddr>() {
            Ok(ip) => Self {
                ip: Some(ip),
                port,
                ..Self::default()
            },
            Err(_) => Self {
                name: (!host.is_empty()).then(|| host.to_ascii_lowercase()),
                port,
                ..Self::default()
            },
        }
    }

    /// `host:port` (or the URL without query when known): how findings and inventories name it.
    #[must_use]
    pub fn display(&self) -> String {
        let host = self
            .name
            .clone()
            .or_else(|| {
                self.ip.map(|ip| match ip {
                    IpAddr::V4(v4) => v4.to_string(),
                    IpAddr::V6(v6) => format!("[{v6}]"),
                })
            })
            .unwrap_or_else(|| "unknown".into());
        let port = self.port.map(|p| format!(":{p}")).unwrap_or_default();
        match (&self.scheme, &self.path) {
            (Some(s), Some(p)) => format!("{s}://{host}{port}{p}"),
            _ => format!("{host}{port}"),
        }
    }

    /// `host:port` only: what identifies one destination for deduplication.
    #[must_use]
    pub fn host_port(&self) -> String {
        Self {
            scheme: None,
            path: None,
            resolved: Vec::new(),
            ..self.clone()
        }
        .display()
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" | "grpcs" => Some(443),
        _ => None,
    }
}

/// `host:port`, `[v6]:port`, `host`, `v6`.
fn split_host_port(authority: &str) -> Result<(&str, Option<u16>), &'static str> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (ip, tail) = rest.split_once(']').ok_or("unclosed [")?;
        return match tail.strip_prefix(':') {
            Some(p) => Ok((ip, Some(p.parse().map_err(|_| "invalid port")?))),
            None if tail.is_empty() => Ok((ip, None)),
            None => Err("junk after ]"),
        };
    }
    match authority.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => Ok((h, Some(p.parse().map_err(|_| "invalid port")?))),
        _ => Ok((authority, None)),
    }
}

fn in_cidr(ip: IpAddr, net: IpAddr, len: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            u128::from(a) & mask == u128::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V4(_)) => a
            .to_ipv4_mapped()
            .is_some_and(|v4| in_cidr(IpAddr::V4(v4), net, len)),
        (IpAddr::V4(_), IpAddr::V6(_)) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(s: &str) -> Endpoint {
        Endpoint::parse(s).unwrap()
    }

    #[test]
    fn url_prefix() {
        let e = ep("http://127.0.0.1:18080/api/");
        assert!(e.matches(&Dest::from_url("http://127.0.0.1:18080/api/tickets?x=1").unwrap()));
        assert!(e.matches(&Dest::from_url("http://127.0.0.1:18080/api").unwrap()));
        assert!(!e.matches(&Dest::from_url("http://127.0.0.1:18080/apix").unwrap()));
        assert!(!e.matches(&Dest::from_url("http://127.0.0.1:18099/upload").unwrap()));
        assert!(!e.matches(&Dest::from_url("http://127.0.0.1:18080/other").unwrap()));
    }

    #[test]
    fn host_port_of_a_connection_ignores_the_path() {
        let e = ep("http://127.0.0.1:18080/api/");
        assert!(e.matches(&Dest::from_host("127.0.0.1", Some(18080))));
        assert!(!e.matches(&Dest::from_host("127.0.0.1", Some(18099))));
        let e = ep("127.0.0.1:18081");
        assert!(e.matches(&Dest::from_host("127.0.0.1", Some(18081))));
        assert!(!e.matches(&Dest::from_host("127.0.0.2", Some(18081))));
    }

    #[test]
    fn default_ports_follow_the_scheme() {
        let e = ep("https://api.openai.com/v1");
        assert_eq!(e.port, Some(443));
        assert!(e.matches(&Dest::from_url("https://api.openai.com/v1/chat/completions").unwrap()));
        assert!(!e.matches(&Dest::from_url("http://api.openai.com/v1/chat").unwrap()));
    }

    #[test]
    fn ip_and_cidr() {
        let e = ep("10.0.0.0/8");
        assert!(e.matches(&Dest::from_host("10.1.2.3", Some(443))));
        assert!(!e.matches(&Dest::from_host("11.1.2.3", Some(443))));
        assert!(ep("fd00::/8").matches(&Dest::from_host("fd12::1", Some(1))));
        assert!(ep("10.1.2.3").matches(&Dest::from_host("10.1.2.3", Some(9))));
        assert!(ep("[::1]:8080").matches(&Dest::from_host("::1", Some(8080))));
        assert!(ep("0.0.0.0:4318").matches(&Dest::from_host("127.0.0.1", Some(4318))));
        assert!(Endpoint::parse("10.0.0.0/40").is_err());
    }

    #[test]
    fn dns_names_direct_and_resolved() {
        let e = ep("https://*.openai.com");
        assert!(e.matches(&Dest::from_url("https://API.openai.com/v1").unwrap()));
        let mut d = Dest::from_host("104.18.1.1", Some(443));
        assert!(!e.matches(&d));
        d.resolved.push("api.openai.com".into());
        assert!(
            e.matches(&d),
            "the name the process resolved before connecting"
        );
    }

    #[test]
    fn malformed_endpoints_say_why() {
        for bad in ["", "ht tp://x", "http://", "http://h:port", "a b", "[::1"] {
            let e = Endpoint::parse(bad).unwrap_err();
            assert!(e.starts_with("not a URL"), "{bad:?}: {e}");
        }
    }
}
