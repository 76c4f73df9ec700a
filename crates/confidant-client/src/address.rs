//! A coordinator's address, as given on the command line and as TLS names it.

use rustls::pki_types::ServerName;

use crate::error::{ClientError, Result};

/// A coordinator address: `host:port`, as given and as TLS names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// `host:port` (IPv6 hosts in brackets): the URL's authority.
    pub authority: String,
    /// The host alone (no brackets): the TLS server name.
    pub host: String,
}

fn bad(text: &str, what: &str) -> ClientError {
    ClientError::Config(format!("coordinator address {text:?}: {what}"))
}

impl Address {
    /// Parses `HOST[:PORT]`, `[V6][:PORT]` or the same after `https://` (port default 4433).
    pub fn parse(text: &str) -> Result<Address> {
        let t = text.trim();
        if t.starts_with("http://") {
            return Err(bad(text, "the coordinator speaks HTTPS only"));
        }
        let t = t.strip_prefix("https://").unwrap_or(t);
        let t = t.strip_suffix('/').unwrap_or(t);
        if t.is_empty() || t.contains(['/', '?', '#', '@']) || t.contains(char::is_whitespace) {
            return Err(bad(text, "expected HOST:PORT"));
        }
        let (host, port) = if let Some(rest) = t.strip_prefix('[') {
            let (h, after) = rest
                .split_once(']')
                .ok_or_else(|| bad(text, "no closing `]`"))?;
            let port = match after {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| bad(text, "expected `:PORT` after `]`"))?,
                ),
            };
            (h, port)
        } else if t.matches(':').count() > 1 {
            return Err(bad(text, "write IPv6 addresses as [ADDR]:PORT"));
        } else {
            match t.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (t, None),
            }
        };
        if host.is_empty() {
            return Err(bad(text, "no host"));
        }
        let port = match port {
            None => confidant_api::DEFAULT_PORT,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad(text, &format!("port must be 1 to 65535, got {p:?}")))?,
        };
        let authority = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        Ok(Address {
            authority,
            host: host.to_string(),
        })
    }

    /// The address as a directory name: anything but `[A-Za-z0-9.-]` becomes `_`.
    pub fn dir_name(&self) -> String {
        self.authority
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    }

    /// The HTTPS URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.authority)
    }

    /// The TLS server name (a DNS name or an IP address).
    pub fn server_name(&self) -> Result<ServerName<'static>> {
        ServerName::try_from(self.host.clone()).map_err(|e| {
            ClientError::Config(format!(
                "{} is not a DNS name or IP address: {e}",
                self.host
            ))
        })
    }

    /// Whether the host is a loopback address (no proxy is used for it).
    pub fn is_loopback(&self) -> bool {
        self.host == "localhost"
            || self
                .host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse() {
        let a = Address::parse("127.0.0.1:4433").unwrap();
        assert_eq!(a.authority, "127.0.0.1:4433");
        assert_eq!(a.host, "127.0.0.1");
        assert_eq!(a.dir_name(), "127.0.0.1_4433");
        let a = Address::parse("https://coord.example/").unwrap();
        assert_eq!(a.authority, "coord.example:4433");
        let a = Address::parse("[::1]:99").unwrap();
        assert_eq!(a.authority, "[::1]:99");
        assert_eq!(a.host, "::1");
        assert_eq!(a.dir_name(), "___1__99");
        for bad in ["", "http://x:1", "x:0", "x:y", "::1", "a/b:1", "[::1"] {
            assert!(Address::parse(bad).is_err(), "{bad}");
        }
    }
}
