//! `NO_PROXY` for the API server connection.
//!
//! kube (5.0) takes `HTTPS_PROXY` from the environment but matches `NO_PROXY` against the proxy's
//! own address instead of the cluster's, so a cluster that `NO_PROXY` covers was still dialled
//! through the proxy (and unreachable behind a corporate one). We apply `NO_PROXY` to the
//! cluster URL ourselves, with the usual curl rules: `*`; host names and domain suffixes
//! (`example.com` and `.example.com` both cover `api.example.com`); IP addresses; CIDR blocks
//! (`10.0.0.0/8`, `fd00::/8`); an optional `:port` on any entry.

use std::net::IpAddr;

/// Whether the `no_proxy` list (comma- or space-separated) covers `url`'s host (and port).
pub fn bypasses(no_proxy: &str, url: &http::Uri) -> bool {
    let Some(host) = url.host() else {
        return false;
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let port = url.port_u16().or(match url.scheme_str() {
        Some("http") => Some(80),
        Some("https") => Some(443),
        _ => None,
    });
    no_proxy
        .split([',', ' '])
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .any(|entry| entry_covers(&entry.to_ascii_lowercase(), &host, port))
}

fn entry_covers(entry: &str, host: &str, port: Option<u16>) -> bool {
    if entry == "*" {
        return true;
    }
    let (name, entry_port) = split_port(entry);
    if entry_port.is_some() && entry_port != port {
        return false;
    }
    let name = name.trim_start_matches('[').trim_end_matches(']');
    if let Some((net, bits)) = name.split_once('/') {
        return match (
            net.parse::<IpAddr>(),
            bits.parse::<u8>(),
            host.parse::<IpAddr>(),
        ) {
            (Ok(net), Ok(bits), Ok(ip)) => in_cidr(ip, net, bits),
            _ => false,
        };
    }
    if let (Ok(a), Ok(b)) = (name.parse::<IpAddr>(), host.parse::<IpAddr>()) {
        return a == b;
    }
    let domain = name.trim_start_matches("*.").trim_start_matches('.');
    host == domain || host.ends_with(&format!(".{domain}"))
}

/// `host:port` → (host, port); IPv6 addresses without brackets have no port.
fn split_port(entry: &str) -> (&str, Option<u16>) {
    if let Some(rest) = entry.strip_prefix('[') {
        if let Some((h, p)) = rest.split_once("]:") {
            return (h, p.parse().ok());
        }
        return (entry, None);
    }
    match entry.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => match p.parse() {
            Ok(p) => (h, Some(p)),
            Err(_) => (entry, None),
        },
        _ => (entry, None),
    }
}

fn in_cidr(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(i), IpAddr::V4(n)) if bits <= 32 => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(i) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(i), IpAddr::V6(n)) if bits <= 128 => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(i) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// The `NO_PROXY` (or `no_proxy`) environment value, if set.
pub fn no_proxy_env() -> Option<String> {
    ["NO_PROXY", "no_proxy"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(list: &str, url: &str) -> bool {
        bypasses(list, &url.parse().unwrap())
    }

    #[test]
    fn curl_rules() {
        assert!(b("*", "https://10.0.0.1:6443"));
        assert!(b("localhost, 10.0.0.0/8", "https://10.1.2.3:6443"));
        assert!(!b("10.0.0.0/16", "https://10.1.2.3:6443"));
        assert!(b("example.com", "https://api.example.com"));
        assert!(b(".example.com", "https://api.example.com:6443"));
        assert!(b("api.example.com", "https://api.example.com"));
        assert!(!b("example.com", "https://notexample.com"));
        assert!(b("127.0.0.1", "http://127.0.0.1:40000"));
        assert!(b("127.0.0.1:40000", "http://127.0.0.1:40000"));
        assert!(!b("127.0.0.1:40001", "http://127.0.0.1:40000"));
        assert!(b("fd00::/8", "https://[fd12::1]:6443"));
        assert!(b("[::1]:6443", "https://[::1]:6443"));
        assert!(!b("", "https://10.0.0.1"));
    }
}
