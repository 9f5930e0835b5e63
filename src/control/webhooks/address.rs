//! Which addresses webhooks may reach. An endpoint URL is a request the
//! server makes on a customer's behalf, so without this anyone with an app
//! token could make us call our own admin port, the cloud metadata service
//! or the operator's private network (SSRF).
//!
//! The check runs where the address is used: our resolver for reqwest
//! resolves each name once, refuses the whole answer if any address in it is
//! forbidden (a name with one public and one private record is a known
//! trick), and hands reqwest exactly the addresses it checked, so a DNS
//! change between the check and the connection cannot slip through.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("{host} resolves to {ip}, a {kind} address, which webhooks may not reach (see webhooks.allow_networks)")]
    Forbidden {
        host: String,
        ip: IpAddr,
        kind: &'static str,
    },
    #[error("{host} does not resolve: {reason}")]
    Unresolvable { host: String, reason: String },
}

/// Forbidden ranges, with the exception list from `webhooks.allow_networks`.
#[derive(Debug, Clone, Default)]
pub struct AddressPolicy {
    allowed: Vec<IpNet>,
}

impl AddressPolicy {
    pub fn new(allowed: Vec<IpNet>) -> Self {
        Self { allowed }
    }

    pub fn check(&self, host: &str, ip: IpAddr) -> Result<(), AddressError> {
        let ip = canonical(ip);
        match forbidden_kind(ip) {
            Some(kind) if !self.allowed.iter().any(|net| net.contains(&ip)) => Err(AddressError::Forbidden {
                host: host.to_owned(),
                ip,
                kind,
            }),
            _ => Ok(()),
        }
    }

    /// Resolves `host` once and checks every address.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, AddressError> {
        let unresolvable = |reason: String| AddressError::Unresolvable {
            host: host.to_owned(),
            reason,
        };
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| unresolvable(e.to_string()))?
            .collect();
        if addrs.is_empty() {
            return Err(unresolvable("no addresses".into()));
        }
        for addr in &addrs {
            self.check(host, addr.ip())?;
        }
        Ok(addrs)
    }

    /// Checks a URL's host: an IP literal directly, a name by resolving it.
    pub async fn check_url(&self, url: &reqwest::Url) -> Result<(), AddressError> {
        let port = url.port_or_known_default().unwrap_or(443);
        match url.host() {
            Some(url::Host::Ipv4(ip)) => self.check(&ip.to_string(), IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => self.check(&ip.to_string(), IpAddr::V6(ip)),
            Some(url::Host::Domain(name)) => self.resolve(name, port).await.map(drop),
            None => Err(AddressError::Unresolvable {
                host: String::new(),
                reason: "the URL has no host".into(),
            }),
        }
    }
}

/// The resolver reqwest uses for webhook deliveries.
#[derive(Debug, Clone)]
pub struct CheckingResolver {
    policy: Arc<AddressPolicy>,
}

impl CheckingResolver {
    pub fn new(policy: Arc<AddressPolicy>) -> Self {
        Self { policy }
    }
}

impl Resolve for CheckingResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            // reqwest fills in the port from the URL; 0 here is a placeholder.
            let addrs = policy.resolve(name.as_str(), 0).await?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// An IPv4 address written as IPv6 is judged as IPv4: mapped
/// (`::ffff:10.0.0.1`) and SIIT-translated (`::ffff:0:10.0.0.1`) forms
/// both reach the IPv4 host, and the allow list is written in IPv4 terms.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .or_else(|| translated_v4(v6))
            .map(IpAddr::V4)
            .unwrap_or(ip),
        v4 => v4,
    }
}

/// `::ffff:0:a.b.c.d` (RFC 2765's IPv4-translated form).
fn translated_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    match ip.segments() {
        [0, 0, 0, 0, 0xffff, 0, hi, lo] => Some(v4_from(hi, lo)),
        _ => None,
    }
}

fn v4_from(hi: u16, lo: u16) -> Ipv4Addr {
    Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo))
}

fn forbidden_kind(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_private() {
        Some("private")
    } else if ip.is_link_local() {
        // 169.254.169.254 is the cloud metadata service.
        Some("link-local or metadata")
    } else if ip.is_unspecified() || a == 0 {
        Some("unspecified")
    } else if a == 100 && (64..128).contains(&b) {
        Some("carrier-grade NAT (shared)")
    } else if ip.is_broadcast() || ip.is_multicast() || a >= 240 {
        Some("broadcast, multicast or reserved")
    } else if a == 192 && b == 0 && ip.octets()[2] == 0 {
        Some("IETF protocol assignment")
    } else if a == 198 && (b == 18 || b == 19) {
        Some("benchmarking")
    } else {
        None
    }
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let segments = ip.segments();
    let first = segments[0];
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() {
        Some("unspecified")
    } else if first & 0xfe00 == 0xfc00 {
        // Unique local, which includes AWS's fd00:ec2::254 metadata address.
        Some("private (unique local)")
    } else if first & 0xffc0 == 0xfe80 {
        Some("link-local")
    } else if first & 0xffc0 == 0xfec0 {
        // Deprecated, but hosts may still route it inside a site.
        Some("site-local")
    } else if ip.is_multicast() {
        Some("multicast")
    } else {
        forbidden_v6_embedding(segments)
    }
}

/// Ranges that carry an IPv4 address inside, or that tunnel to one, so the
/// request may land on a private IPv4 host whatever the IPv6 prefix says.
fn forbidden_v6_embedding(segments: [u16; 8]) -> Option<&'static str> {
    match segments {
        // NAT64 (well-known and local-use) can reach any IPv4 address,
        // private ones included.
        [0x64, 0xff9b, ..] => Some("NAT64"),
        [0x2002, hi, lo, ..] => forbidden_v4(v4_from(hi, lo)).map(|_| "6to4 embedding a non-public IPv4 address"),
        // Teredo's client address is obfuscated and its relay is arbitrary:
        // no way to tell where a packet ends up.
        [0x2001, 0, ..] => Some("Teredo"),
        [0x2001, 0x0db8, ..] => Some("documentation"),
        [0x100, 0, 0, 0, ..] => Some("discard-only"),
        // ::/8 is reserved; it holds the deprecated IPv4-compatible form
        // `::a.b.c.d` (mapped and translated forms are judged as IPv4).
        [first, ..] if first & 0xff00 == 0 => Some("reserved or IPv4-compatible"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(policy: &AddressPolicy, ip: &str) -> bool {
        let ip: IpAddr = ip.parse().expect("ip");
        policy.check("h", ip).is_err()
    }

    #[test]
    fn private_loopback_link_local_and_metadata_addresses_are_refused() {
        let policy = AddressPolicy::default();
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:10.0.0.1",
            "::ffff:127.0.0.1",
            "64:ff9b::a00:1",
            "ff02::1",
            "::7f00:1",
            "::10.0.0.1",
        ] {
            assert!(refused(&policy, ip), "{ip} should be refused");
        }
        for ip in ["93.184.215.14", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8"] {
            assert!(!refused(&policy, ip), "{ip} should be allowed");
        }
    }

    #[test]
    fn private_ipv4_embedded_in_ipv6_is_refused() {
        let policy = AddressPolicy::default();
        for ip in [
            // 6to4 for 127.0.0.1, 10.0.0.1, 192.168.1.1, 169.254.169.254.
            "2002:7f00:1::",
            "2002:a00:1::1",
            "2002:c0a8:101::",
            "2002:a9fe:a9fe::1",
            // IPv4-translated (SIIT) loopback and private.
            "::ffff:0:7f00:1",
            "::ffff:0:a00:1",
            // NAT64, well-known and local-use prefixes.
            "64:ff9b::7f00:1",
            "64:ff9b::c0a8:101",
            "64:ff9b:1::a00:1",
            // IPv4-compatible.
            "::127.0.0.1",
            "::192.168.0.1",
            // Teredo, whatever it embeds.
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "2001::1",
        ] {
            assert!(refused(&policy, ip), "{ip} should be refused");
        }
        // 6to4 and translated forms of a public address stay reachable.
        for ip in ["2002:808:808::1", "::ffff:0:808:808"] {
            assert!(!refused(&policy, ip), "{ip} should be allowed");
        }
    }

    #[test]
    fn site_local_and_reserved_ipv6_ranges_are_refused() {
        let policy = AddressPolicy::default();
        for ip in ["fec0::1", "feff::1", "2001:db8::1", "100::1"] {
            assert!(refused(&policy, ip), "{ip} should be refused");
        }
        assert!(!refused(&policy, "2001:4860:4860::8888"));
    }

    #[test]
    fn the_operator_allows_exact_networks_only() {
        let policy = AddressPolicy::new(vec!["127.0.0.0/8".parse().expect("net")]);
        assert!(!refused(&policy, "127.0.0.1"));
        assert!(!refused(&policy, "::ffff:127.0.0.2"));
        assert!(refused(&policy, "::1"));
        assert!(refused(&policy, "10.0.0.1"));
        let err = policy
            .check("hooks.example", "10.0.0.1".parse().expect("ip"))
            .expect_err("private");
        assert!(
            err.to_string()
                .contains("hooks.example resolves to 10.0.0.1, a private address"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn urls_are_checked_by_literal_or_by_every_resolved_address() {
        let policy = AddressPolicy::default();
        let url = |u: &str| reqwest::Url::parse(u).expect("url");
        assert!(policy.check_url(&url("http://10.0.0.1:8080/h")).await.is_err());
        assert!(policy.check_url(&url("http://[::1]/h")).await.is_err());
        // `localhost` resolves from /etc/hosts, offline.
        let err = policy
            .check_url(&url("http://localhost:9/h"))
            .await
            .expect_err("loopback");
        assert!(matches!(err, AddressError::Forbidden { kind: "loopback", .. }), "{err}");
        let err = policy
            .check_url(&url("http://no-such-host.invalid/h"))
            .await
            .expect_err("nxdomain");
        assert!(matches!(err, AddressError::Unresolvable { .. }), "{err}");
    }
}
