//! The operator's egress policy for instances: which addresses a tenant's config may make
//! outbound connections to. Checked on the literal URLs of a config when it is accepted
//! ([`crate::drasi::DrasiConfig::outbound_urls`]) and enforced on every resolved address at
//! connect time by draas-runtime's egress proxy.
//!
//! `allow`: anything. `deny-local` (the default): not loopback, link-local (which holds the
//! cloud metadata address 169.254.169.254), unspecified, multicast or broadcast.
//! `deny-private`: also the private ranges (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7).
//! A comma-separated CIDR list: only those networks.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

/// Where instances may connect to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum EgressPolicy {
    Allow,
    #[default]
    DenyLocal,
    DenyPrivate,
    Only(Vec<IpNet>),
}

/// A policy text that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid egress policy `{0}`: use allow, deny-local, deny-private or a comma-separated CIDR list"
)]
pub struct EgressParseError(String);

impl FromStr for EgressPolicy {
    type Err = EgressParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim() {
            "allow" => Ok(EgressPolicy::Allow),
            "deny-local" => Ok(EgressPolicy::DenyLocal),
            "deny-private" => Ok(EgressPolicy::DenyPrivate),
            list => {
                let nets = list
                    .split(',')
                    .map(|n| parse_net(n.trim()))
                    .collect::<Option<Vec<_>>>()
                    .filter(|n| !n.is_empty())
                    .ok_or_else(|| EgressParseError(text.to_owned()))?;
                Ok(EgressPolicy::Only(nets))
            }
        }
    }
}

fn parse_net(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

impl fmt::Display for EgressPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EgressPolicy::Allow => f.write_str("allow"),
            EgressPolicy::DenyLocal => f.write_str("deny-local"),
            EgressPolicy::DenyPrivate => f.write_str("deny-private"),
            EgressPolicy::Only(nets) => {
                let list: Vec<String> = nets.iter().map(IpNet::to_string).collect();
                f.write_str(&list.join(","))
            }
        }
    }
}

impl EgressPolicy {
    /// `Ok` when `ip` may be connected to, else why not.
    pub fn check(&self, ip: IpAddr) -> Result<(), String> {
        let ip = canonical(ip);
        let refuse = |what: &str| Err(format!("{ip} is {what}, which the egress policy denies"));
        match self {
            EgressPolicy::Allow => Ok(()),
            EgressPolicy::Only(nets) if nets.iter().any(|n| n.contains(&ip)) => Ok(()),
            EgressPolicy::Only(_) => Err(format!(
                "{ip} is outside the networks the egress policy allows ({self})"
            )),
            EgressPolicy::DenyLocal | EgressPolicy::DenyPrivate => {
                if let Some(what) = local_kind(ip) {
                    return refuse(what);
                }
                if *self == EgressPolicy::DenyPrivate
                    && let Some(what) = private_kind(ip)
                {
                    return refuse(what);
                }
                Ok(())
            }
        }
    }

    /// Whether a host name (not an address) can be judged without resolving it: `localhost`
    /// and its subdomains are loopback by definition (RFC 6761).
    pub fn check_host(&self, host: &str) -> Result<(), String> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = host.parse::<IpAddr>() {
            return self.check(ip);
        }
        let lower = host.trim_end_matches('.').to_ascii_lowercase();
        if lower == "localhost" || lower.ends_with(".localhost") {
            return self.check(IpAddr::from([127, 0, 0, 1]));
        }
        Ok(())
    }
}

/// An IPv4-mapped IPv6 address is judged as the IPv4 address it carries.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

fn local_kind(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => {
            if v4.is_loopback() {
                Some("loopback")
            } else if v4.is_link_local() {
                Some("link-local (cloud metadata lives here)")
            } else if v4.is_unspecified() || v4.octets()[0] == 0 {
                Some("unspecified")
            } else if v4.is_multicast() || v4.is_broadcast() {
                Some("multicast or broadcast")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if first & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if v6.is_multicast() {
                Some("multicast")
            } else if v6 == std::net::Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
                Some("a cloud metadata address")
            } else {
                None
            }
        }
    }
}

fn private_kind(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            if v4.is_private() {
                Some("in a private range")
            } else if a == 100 && (64..128).contains(&b) {
                Some("in the shared address space (100.64/10)")
            } else {
                None
            }
        }
        IpAddr::V6(v6) if v6.segments()[0] & 0xfe00 == 0xfc00 => Some("a unique local address"),
        IpAddr::V6(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn default_denies_loopback_link_local_and_metadata() {
        let p = EgressPolicy::default();
        for denied in [
            "127.0.0.1",
            "127.8.9.1",
            "169.254.169.254",
            "0.0.0.0",
            "::1",
            "::ffff:127.0.0.1",
            "fe80::1",
            "fd00:ec2::254",
        ] {
            assert!(p.check(ip(denied)).is_err(), "{denied} allowed");
        }
        for allowed in ["10.1.2.3", "192.168.1.1", "93.184.216.34", "2606:4700::1"] {
            assert!(p.check(ip(allowed)).is_ok(), "{allowed} denied");
        }
        assert!(p.check_host("LOCALHOST").is_err());
        assert!(p.check_host("api.localhost.").is_err());
        assert!(p.check_host("[::1]").is_err());
        assert!(p.check_host("example.com").is_ok());
    }

    #[test]
    fn deny_private_and_cidr_lists() {
        let p: EgressPolicy = "deny-private".parse().unwrap();
        for denied in [
            "10.0.0.1",
            "172.16.5.5",
            "192.168.0.1",
            "100.64.0.1",
            "fd12::1",
            "127.0.0.1",
        ] {
            assert!(p.check(ip(denied)).is_err(), "{denied} allowed");
        }
        assert!(p.check(ip("8.8.8.8")).is_ok());
        let only: EgressPolicy = "127.0.0.2/32, 2001:db8::/32".parse().unwrap();
        assert!(only.check(ip("127.0.0.2")).is_ok());
        assert!(only.check(ip("127.0.0.1")).is_err());
        assert!(only.check(ip("2001:db8::5")).is_ok());
        assert_eq!(only.to_string(), "127.0.0.2/32,2001:db8::/32");
        assert_eq!(
            "allow".parse::<EgressPolicy>().unwrap(),
            EgressPolicy::Allow
        );
        assert!("nonsense".parse::<EgressPolicy>().is_err());
        assert!("".parse::<EgressPolicy>().is_err());
    }
}
