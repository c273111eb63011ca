//! The addresses a probe aims at, found at run time: the host's own interface addresses,
//! the gateways of the bottle's networks and of Docker's default bridge, the bundle's
//! addresses. Nothing is hard-coded, so a host with other bridge ranges is covered too.

use std::collections::BTreeSet;
use std::net::IpAddr;

use crate::backend::docker::docker;
use crate::runner::Runner;

/// One interface address of this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostAddr {
    pub interface: String,
    pub addr: IpAddr,
}

/// Every address on this host's interfaces (`getifaddrs`), loopback and IPv6 link-local left
/// out: a container's loopback is its own, and link-local needs an interface it lacks.
pub fn host_addresses() -> Vec<HostAddr> {
    let mut out = Vec::new();
    let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills a list we walk read-only and free once with freeifaddrs.
    unsafe {
        if libc::getifaddrs(&mut ifap) != 0 {
            return out;
        }
        let mut cur = ifap;
        while !cur.is_null() {
            let ifa = &*cur;
            cur = ifa.ifa_next;
            if ifa.ifa_addr.is_null() {
                continue;
            }
            let name = std::ffi::CStr::from_ptr(ifa.ifa_name)
                .to_string_lossy()
                .into_owned();
            let addr = match i32::from((*ifa.ifa_addr).sa_family) {
                libc::AF_INET => {
                    let sa = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                    IpAddr::from(u32::from_be(sa.sin_addr.s_addr).to_be_bytes())
                }
                libc::AF_INET6 => {
                    let sa = &*(ifa.ifa_addr as *const libc::sockaddr_in6);
                    IpAddr::from(sa.sin6_addr.s6_addr)
                }
                _ => continue,
            };
            let link_local_v6 =
                matches!(addr, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80);
            if addr.is_loopback() || link_local_v6 {
                continue;
            }
            out.push(HostAddr {
                interface: name,
                addr,
            });
        }
        libc::freeifaddrs(ifap);
    }
    out
}

/// Interfaces Docker makes for its bridges and veth pairs (other bottles' networks, other
/// containers): scanned on common ports only, to keep the scan short.
fn is_container_bridge(name: &str) -> bool {
    ["docker", "br-", "veth", "bbint"]
        .iter()
        .any(|p| name.starts_with(p))
}

/// Gateways of the named networks (`docker network inspect`).
pub fn gateways(runner: &dyn Runner, networks: &[&str]) -> Vec<IpAddr> {
    let mut args = vec![
        "network",
        "inspect",
        "--format",
        "{{range .IPAM.Config}}{{.Gateway}} {{end}}",
    ];
    args.extend_from_slice(networks);
    let Ok(out) = runner.run(&docker(args)) else {
        return Vec::new();
    };
    parse_ips(&out.stdout_str())
}

/// Addresses of a container on each of its networks (`docker inspect`).
pub fn container_addresses(runner: &dyn Runner, container: &str) -> Vec<IpAddr> {
    let Ok(out) = runner.run(&docker([
        "inspect",
        "--format",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{.Gateway}} {{end}}",
        container,
    ])) else {
        return Vec::new();
    };
    parse_ips(&out.stdout_str())
}

fn parse_ips(s: &str) -> Vec<IpAddr> {
    s.split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect()
}

/// `(every port, common ports)`: the default bridge's gateway, the bottle's gateways and
/// bundle addresses, and the host's own non-bridge addresses get every port; the other
/// bridges of this host (other bottles, other containers) the common ports.
pub fn split(
    host: &[HostAddr],
    bottle_side: &[IpAddr],
    default_bridge: &[IpAddr],
) -> (Vec<IpAddr>, Vec<IpAddr>) {
    let mut all: BTreeSet<IpAddr> = BTreeSet::new();
    all.extend(bottle_side.iter().copied());
    all.extend(default_bridge.iter().copied());
    all.extend(
        host.iter()
            .filter(|h| !is_container_bridge(&h.interface))
            .map(|h| h.addr),
    );
    let common: BTreeSet<IpAddr> = host
        .iter()
        .map(|h| h.addr)
        .filter(|a| !all.contains(a))
        .collect();
    (all.into_iter().collect(), common.into_iter().collect())
}

/// Both lists for a running bottle.
pub fn for_bottle(
    runner: &dyn Runner,
    sidecar_container: &str,
    networks: &[&str],
) -> (Vec<IpAddr>, Vec<IpAddr>) {
    let mut bottle_side = gateways(runner, networks);
    bottle_side.extend(container_addresses(runner, sidecar_container));
    let default_bridge = gateways(runner, &["bridge"]);
    split(&host_addresses(), &bottle_side, &default_bridge)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_hosts_addresses_are_found() {
        // Every machine that runs the tests has at least one non-loopback interface, or none
        // at all in a network-less sandbox: either way nothing loopback comes back.
        assert!(host_addresses().iter().all(|h| !h.addr.is_loopback()));
    }

    #[test]
    fn other_bridges_get_common_ports_and_the_bottle_side_every_port() {
        let h = |i: &str, a: &str| HostAddr {
            interface: i.into(),
            addr: a.parse().unwrap(),
        };
        let host = vec![
            h("eth0", "10.1.2.3"),
            h("docker0", "172.17.0.1"),
            h("br-abc", "172.24.5.1"),
            h("br-def", "172.24.6.1"),
        ];
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let (all, common) = split(
            &host,
            &[ip("172.24.5.1"), ip("172.24.5.2")],
            &[ip("172.17.0.1")],
        );
        assert_eq!(
            all,
            [
                ip("10.1.2.3"),
                ip("172.17.0.1"),
                ip("172.24.5.1"),
                ip("172.24.5.2")
            ]
        );
        assert_eq!(common, [ip("172.24.6.1")]);
    }
}
