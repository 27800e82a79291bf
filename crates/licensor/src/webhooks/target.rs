//! Where a webhook may be sent. Keygen accepts only https URLs with a public host name; so does
//! Licensor, unless the operator allows insecure targets (`--allow-insecure-webhooks`: plain
//! http, IP literals, loopback and private networks, for tests and intranet receivers).
//! Addresses are checked again after DNS resolution, at delivery time, so a name that resolves
//! into the server's own network is refused even when it looked public when it was saved.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use axum::http::Uri;

/// Why a URL cannot be an endpoint: Keygen's detail and code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub detail: &'static str,
    pub code: &'static str,
}

const MAX_URL_LEN: usize = 4096;

/// Checks a URL given for an endpoint.
pub fn check_url(url: &str, allow_insecure: bool) -> Result<Uri, Refusal> {
    let invalid = Refusal { detail: "must be a valid URL", code: "URL_INVALID" };
    if url.len() > MAX_URL_LEN || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid);
    }
    let uri: Uri = url.parse().map_err(|_| invalid.clone())?;
    let scheme = uri.scheme_str().ok_or_else(|| invalid.clone())?;
    let host = uri.host().filter(|h| !h.is_empty()).ok_or_else(|| invalid.clone())?;
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        // Credentials in the URL would be sent to whoever the host is, and logged.
        return Err(invalid);
    }
    match (scheme, allow_insecure) {
        ("https", _) | ("http", true) => {}
        _ => {
            return Err(Refusal {
                detail: if allow_insecure {
                    "must be a valid URL using one of the following protocols: https, http"
                } else {
                    "must be a valid URL using one of the following protocols: https"
                },
                code: "URL_PROTOCOL_INVALID",
            })
        }
    }
    if !allow_insecure && !is_public_name(host) {
        return Err(Refusal { detail: "must be a URL with a valid host", code: "URL_HOST_INVALID" });
    }
    Ok(uri)
}

/// A DNS name with a dot and an alphabetic top-level domain of two letters or more, not
/// `localhost`: what Keygen accepts as a host (IP literals are not).
fn is_public_name(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host == "localhost" || host.ends_with(".localhost") || host.parse::<IpAddr>().is_ok() || host.starts_with('[') {
        return false;
    }
    let Some((_, tld)) = host.rsplit_once('.') else { return false };
    tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic())
}

/// Whether a resolved address may be connected to without `--allow-insecure-webhooks`: not
/// loopback, private, link-local, shared (CGNAT), unspecified, multicast or documentation.
pub fn is_public_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (18..20).contains(&b))
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        || (first == 0x2001 && ip.segments()[1] == 0x0db8)
        || (first == 0x0064 && ip.segments()[1] == 0xff9b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_as_keygen_takes_them() {
        assert!(check_url("https://hooks.example.com/keygen?x=1", false).is_ok());
        assert_eq!(check_url("http://hooks.example.com/", false).unwrap_err().code, "URL_PROTOCOL_INVALID");
        assert_eq!(check_url("1230-12e9 c0ascka-ff.a!", false).unwrap_err().code, "URL_INVALID");
        assert_eq!(check_url("https://localhost/x", false).unwrap_err().code, "URL_HOST_INVALID");
        assert_eq!(check_url("https://invalid/x", false).unwrap_err().code, "URL_HOST_INVALID");
        assert_eq!(check_url("https://127.0.0.1/x", false).unwrap_err().code, "URL_HOST_INVALID");
        assert_eq!(check_url("https://[::1]/x", false).unwrap_err().code, "URL_HOST_INVALID");
        assert_eq!(check_url("https://user:pw@hooks.example.com/", false).unwrap_err().code, "URL_INVALID");
        assert_eq!(check_url("ftp://hooks.example.com/", true).unwrap_err().code, "URL_PROTOCOL_INVALID");
        assert!(check_url("http://127.0.0.1:8080/hook", true).is_ok());
    }

    #[test]
    fn private_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "224.0.0.1",
        ] {
            assert!(!is_public_address(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"] {
            assert!(is_public_address(ip.parse().unwrap()), "{ip}");
        }
    }
}
