//! SSRF guard: which destination addresses the proxy may connect to.
//!
//! Egress resolves names itself (pinned by `--resolve`) and refuses loopback, private,
//! link-local, CGNAT, multicast, reserved and cloud-metadata addresses, in IPv4 and IPv6
//! (including mapped, compatible, NAT64 and 6to4 forms), unless a CIDR allows them. Host
//! literals in the legacy forms (`2852039166`, `0xa9fea9fe`, `0251.0376.0251.0376`, `127.1`)
//! are read as the address a C library would connect to.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::IpNet;

use super::config::ResolvePin;

/// Why an address is not a public destination.
pub(crate) fn classify(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    // Cloud metadata and platform endpoints, named first so the audit says so.
    const METADATA: [[u8; 4]; 4] = [
        [169, 254, 169, 254],
        [169, 254, 170, 2],
        [100, 100, 100, 200],
        [168, 63, 129, 16],
    ];
    if METADATA.contains(&o) || (o[0] == 192 && o[1] == 0 && o[2] == 0 && o[3] == 192) {
        return Some("metadata");
    }
    Some(match o {
        [0, ..] => "unspecified",
        [127, ..] => "loopback",
        [10, ..] => "private",
        [172, b, ..] if (16..=31).contains(&b) => "private",
        [192, 168, ..] => "private",
        [169, 254, ..] => "link-local",
        [100, b, ..] if (64..=127).contains(&b) => "cgnat",
        [192, 0, 0, _] => "reserved",
        [192, 0, 2, _] | [198, 51, 100, _] | [203, 0, 113, _] => "documentation",
        [198, 18..=19, ..] => "benchmarking",
        [a, ..] if (224..=239).contains(&a) => "multicast",
        [a, ..] if a >= 240 => "reserved",
        _ => return None,
    })
}

fn classify_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = embedded_v4(ip) {
        return Some(classify_v4(v4).unwrap_or("ipv4-translated"));
    }
    let s = ip.segments();
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    if ip.is_loopback() {
        return Some("loopback");
    }
    if s[0] == 0xfd00 && s[1] == 0x0ec2 {
        return Some("metadata");
    }
    Some(match s[0] {
        x if x & 0xfe00 == 0xfc00 => "private",
        x if x & 0xffc0 == 0xfe80 => "link-local",
        x if x & 0xffc0 == 0xfec0 => "site-local",
        x if x & 0xff00 == 0xff00 => "multicast",
        0x2001 if s[1] == 0x0db8 => "documentation",
        0x2001 if s[1] == 0 => "teredo",
        0x2001 if s[1] < 0x0200 => "reserved",
        0x0100 if s[1..4] == [0, 0, 0] => "discard",
        x if x & 0xe000 != 0x2000 => "reserved",
        _ => return None,
    })
}

/// The IPv4 address carried inside an IPv6 one (mapped, compatible, NAT64, 6to4).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if s[..5] == [0; 5]
        && (s[5] == 0xffff || (s[5] == 0 && !ip.is_loopback() && !ip.is_unspecified()))
    {
        return Some(tail);
    }
    if s[0] == 0x0064 && s[1] == 0xff9b {
        return Some(tail);
    }
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ));
    }
    None
}

/// The address form used for CIDR checks: IPv4-mapped IPv6 becomes IPv4.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// A refused destination.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("destination {addr} is {class}")]
pub(crate) struct SsrfRefusal {
    pub addr: IpAddr,
    pub(crate) class: &'static str,
}

/// Check one destination address against the classes and the allowed CIDRs.
pub(crate) fn check(ip: IpAddr, allow: &[IpNet], route_allow: &[IpNet]) -> Result<(), SsrfRefusal> {
    let Some(class) = classify(ip) else {
        return Ok(());
    };
    let canon = canonical(ip);
    let allowed = allow
        .iter()
        .chain(route_allow)
        .any(|n| n.contains(&canon) || n.contains(&ip));
    if allowed {
        Ok(())
    } else {
        Err(SsrfRefusal { addr: ip, class })
    }
}

/// Read a host literal the way `inet_aton` would: dotted parts in decimal, octal (`0…`) or
/// hex (`0x…`), with 1 to 4 parts; also plain IPv6. `None` for names.
pub(crate) fn parse_ip_literal(host: &str) -> Option<IpAddr> {
    let h = host
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = h.parse::<IpAddr>() {
        return Some(ip);
    }
    let h = h.strip_suffix('.').unwrap_or(h);
    let parts: Vec<&str> = h.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let nums: Vec<u64> = parts
        .iter()
        .map(|p| parse_c_number(p))
        .collect::<Option<_>>()?;
    let (last, init) = nums.split_last()?;
    if init.iter().any(|&n| n > 255) {
        return None;
    }
    let last_bits = 8 * (4 - init.len() as u32);
    if last_bits < 64 && *last >= (1u64 << last_bits) {
        return None;
    }
    let mut v: u64 = 0;
    for (i, n) in init.iter().enumerate() {
        v |= n << (24 - 8 * i as u32);
    }
    v |= last;
    u32::try_from(v).ok().map(|v| IpAddr::V4(Ipv4Addr::from(v)))
}

fn parse_c_number(p: &str) -> Option<u64> {
    if p.is_empty() {
        return None;
    }
    let (digits, radix) = if let Some(x) = p.strip_prefix("0x").or_else(|| p.strip_prefix("0X")) {
        (x, 16)
    } else if p.len() > 1 && p.starts_with('0') {
        (&p[1..], 8)
    } else {
        (p, 10)
    };
    if digits.is_empty() {
        return if radix == 16 { Some(0) } else { None };
    }
    u64::from_str_radix(digits, radix)
        .ok()
        .filter(|n| *n <= u64::from(u32::MAX))
}

/// Name resolution with `--resolve` pins.
#[derive(Debug, Default)]
pub(crate) struct Resolver {
    pins: HashMap<String, (IpAddr, Option<u16>)>,
}

/// Resolution failed: the name has no address.
#[derive(Debug, thiserror::Error)]
#[error("cannot resolve `{host}`: {reason}")]
pub(crate) struct ResolveError {
    pub host: String,
    pub reason: String,
}

impl Resolver {
    pub(crate) fn new(pins: &[ResolvePin]) -> Self {
        Resolver {
            pins: pins
                .iter()
                .map(|p| (p.host.clone(), (p.ip, p.port)))
                .collect(),
        }
    }

    /// Addresses for `host:port`; a pin replaces the address and, when it names one, the port.
    pub(crate) async fn resolve(
        &self,
        host: &str,
        port: u16,
    ) -> Result<Vec<SocketAddr>, ResolveError> {
        if let Some((ip, pin_port)) = self.pins.get(host) {
            return Ok(vec![SocketAddr::new(*ip, pin_port.unwrap_or(port))]);
        }
        if let Some(ip) = parse_ip_literal(host) {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| ResolveError {
                host: host.to_string(),
                reason: e.to_string(),
            })?
            .collect();
        if addrs.is_empty() {
            return Err(ResolveError {
                host: host.to_string(),
                reason: "no address".into(),
            });
        }
        Ok(addrs)
    }
}

/// Cloud metadata service names, refused by name (they resolve to link-local addresses only
/// inside a cloud, and may not resolve at all elsewhere).
const METADATA_NAMES: [&str; 6] = [
    "metadata.google.internal",
    "metadata.goog",
    "metadata",
    "instance-data",
    "instance-data.ec2.internal",
    "metadata.azure.internal",
];

/// Resolve and check every address: a name with any refused address is refused, so a
/// resolver answer mixing public and internal addresses cannot be used to reach inside.
pub(crate) async fn resolve_checked(
    resolver: &Resolver,
    host: &str,
    port: u16,
    allow: &[IpNet],
    route_allow: &[IpNet],
) -> Result<Vec<SocketAddr>, DestinationError> {
    if !resolver.pins.contains_key(host) && METADATA_NAMES.contains(&host) {
        let addr = IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254));
        return Err(DestinationError::Ssrf(SsrfRefusal {
            addr,
            class: "metadata",
        }));
    }
    let addrs = resolver
        .resolve(host, port)
        .await
        .map_err(DestinationError::Resolve)?;
    for a in &addrs {
        check(a.ip(), allow, route_allow).map_err(DestinationError::Ssrf)?;
    }
    Ok(addrs)
}

/// Resolving or checking a destination failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DestinationError {
    #[error(transparent)]
    Resolve(ResolveError),
    #[error(transparent)]
    Ssrf(SsrfRefusal),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v4_classes() {
        for (a, c) in [
            ("127.0.0.1", "loopback"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.0.1", "private"),
            ("169.254.169.254", "metadata"),
            ("169.254.1.1", "link-local"),
            ("100.64.0.1", "cgnat"),
            ("100.100.100.200", "metadata"),
            ("224.0.0.1", "multicast"),
            ("255.255.255.255", "reserved"),
            ("0.0.0.0", "unspecified"),
            ("168.63.129.16", "metadata"),
        ] {
            assert_eq!(classify(ip(a)), Some(c), "{a}");
        }
        for a in ["1.1.1.1", "172.32.0.1", "100.128.0.1", "8.8.8.8"] {
            assert_eq!(classify(ip(a)), None, "{a}");
        }
    }

    #[test]
    fn v6_classes_including_embedded_v4() {
        for (a, c) in [
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("fe80::1", "link-local"),
            ("fc00::1", "private"),
            ("fd00:ec2::254", "metadata"),
            ("ff02::1", "multicast"),
            ("::ffff:169.254.169.254", "metadata"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:a9fe:a9fe", "metadata"),
            ("::10.0.0.1", "private"),
            ("64:ff9b::a9fe:a9fe", "metadata"),
            ("2002:7f00:1::", "loopback"),
        ] {
            assert_eq!(classify(ip(a)), Some(c), "{a}");
        }
        assert_eq!(classify(ip("2606:4700::1111")), None);
        assert_eq!(classify(ip("::ffff:8.8.8.8")), Some("ipv4-translated"));
    }

    #[test]
    fn legacy_ip_literals() {
        for form in [
            "2852039166",
            "0xa9fea9fe",
            "0xA9FEA9FE",
            "0251.0376.0251.0376",
            "169.254.43518",
            "0xa9.0xfe.0xa9.0xfe",
            "[::ffff:169.254.169.254]",
        ] {
            assert_eq!(
                parse_ip_literal(form).map(canonical),
                Some(ip("169.254.169.254")),
                "{form}"
            );
        }
        assert_eq!(parse_ip_literal("127.1"), Some(ip("127.0.0.1")));
        assert_eq!(parse_ip_literal("0"), Some(ip("0.0.0.0")));
        assert_eq!(parse_ip_literal("017700000001"), Some(ip("127.0.0.1")));
        for name in [
            "example.com",
            "1.2.3.4.5",
            "256.1.1.1",
            "1.2.3.0x100",
            "08.1.1.1",
            "4294967296",
            "a.b",
        ] {
            assert_eq!(parse_ip_literal(name), None, "{name}");
        }
    }

    #[test]
    fn cidr_allows_only_its_range() {
        let allow: Vec<IpNet> = vec!["10.0.0.0/24".parse().unwrap()];
        assert!(check(ip("10.0.0.7"), &allow, &[]).is_ok());
        assert!(check(ip("::ffff:10.0.0.7"), &allow, &[]).is_ok());
        assert_eq!(
            check(ip("10.0.1.7"), &allow, &[]).unwrap_err().class,
            "private"
        );
        assert!(
            check(
                ip("169.254.169.254"),
                &[],
                &["169.254.169.254/32".parse().unwrap()]
            )
            .is_ok()
        );
        assert!(check(ip("8.8.8.8"), &[], &[]).is_ok());
    }

    #[tokio::test]
    async fn pins_replace_address_and_port() {
        let r = Resolver::new(&[
            "api.test=127.0.0.1:9443".parse().unwrap(),
            "b.test=10.0.0.1".parse().unwrap(),
        ]);
        assert_eq!(
            r.resolve("api.test", 443).await.unwrap(),
            vec!["127.0.0.1:9443".parse().unwrap()]
        );
        assert_eq!(
            r.resolve("b.test", 443).await.unwrap(),
            vec!["10.0.0.1:443".parse().unwrap()]
        );
        let err = resolve_checked(&r, "b.test", 443, &[], &[])
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            DestinationError::Ssrf(SsrfRefusal {
                class: "private",
                ..
            })
        ));
        let err = resolve_checked(&r, "0xa9fea9fe", 80, &[], &[])
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            DestinationError::Ssrf(SsrfRefusal {
                class: "metadata",
                ..
            })
        ));
    }

    proptest::proptest! {
        #[test]
        fn host_parsers_never_panic(s in "\\PC{0,40}") {
            let _ = parse_ip_literal(&s);
            let _ = crate::sidecar::egress::routes::normalize_request_host(&s);
            let _ = crate::sidecar::egress::routes::normalize_route_host(&s);
            let _ = crate::sidecar::egress::config::parse_routes(&s);
        }

        #[test]
        fn dotted_decimal_round_trips(a: u8, b: u8, c: u8, d: u8) {
            let text = format!("{a}.{b}.{c}.{d}");
            proptest::prop_assert_eq!(parse_ip_literal(&text), Some(IpAddr::V4(Ipv4Addr::new(a, b, c, d))));
            let as_int = u32::from(Ipv4Addr::new(a, b, c, d)).to_string();
            proptest::prop_assert_eq!(parse_ip_literal(&as_int), Some(IpAddr::V4(Ipv4Addr::new(a, b, c, d))));
        }
    }
}
