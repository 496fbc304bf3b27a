//! The advertise address when none is given and the agent binds to "any" (`0.0.0.0`, `::`):
//! as Consul, the one private IPv4 address of this host's interfaces that are up (loopback
//! excluded), or the one public IPv6 address for `::`. None, or more than one, is an error that
//! asks for `-bind` or `-advertise`: advertising loopback would make a server or client
//! unreachable from every other host without a word.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{Config, ConfigError};

/// One address of one interface, as `getifaddrs` lists it.
#[derive(Debug, Clone)]
pub(crate) struct IfAddr {
    pub up: bool,
    pub loopback: bool,
    pub ip: IpAddr,
}

/// Sets `advertise_addr` from the interfaces when it is unset and `bind_addr` is "any".
pub fn resolve(config: &mut Config) -> Result<(), ConfigError> {
    if config.advertise_addr.is_some() || !config.bind_addr.is_unspecified() {
        return Ok(());
    }
    let addrs = interfaces()?;
    config.advertise_addr = Some(pick(config.bind_addr, &addrs)?);
    Ok(())
}

fn interfaces() -> Result<Vec<IfAddr>, ConfigError> {
    use nix::net::if_::InterfaceFlags;
    let list = nix::ifaddrs::getifaddrs()
        .map_err(|e| ConfigError::Invalid(format!("Error detecting the advertise address: {e}")))?;
    Ok(list
        .filter_map(|a| {
            let addr = a.address?;
            let ip = if let Some(v4) = addr.as_sockaddr_in() {
                IpAddr::V4(v4.ip())
            } else {
                IpAddr::V6(addr.as_sockaddr_in6()?.ip())
            };
            Some(IfAddr {
                up: a.flags.contains(InterfaceFlags::IFF_UP),
                loopback: a.flags.contains(InterfaceFlags::IFF_LOOPBACK),
                ip,
            })
        })
        .collect())
}

/// The one candidate among `addrs` for a `bind` of "any", with Consul's messages.
pub(crate) fn pick(bind: IpAddr, addrs: &[IfAddr]) -> Result<IpAddr, ConfigError> {
    let (kind, wanted): (&str, fn(&IpAddr) -> bool) = match bind {
        IpAddr::V4(_) => ("private IPv4", |ip| match ip {
            IpAddr::V4(v4) => is_private_v4(*v4),
            IpAddr::V6(_) => false,
        }),
        IpAddr::V6(_) => ("public IPv6", |ip| match ip {
            IpAddr::V6(v6) => is_public_v6(*v6),
            IpAddr::V4(_) => false,
        }),
    };
    let mut found: Vec<IpAddr> = addrs
        .iter()
        .filter(|a| a.up && !a.loopback && wanted(&a.ip))
        .map(|a| a.ip)
        .collect();
    found.sort();
    found.dedup();
    match found.as_slice() {
        [one] => Ok(*one),
        [] => Err(ConfigError::Invalid(format!(
            "No {kind} address found. Please configure one with 'bind' and/or 'advertise'."
        ))),
        many => Err(ConfigError::Invalid(format!(
            "Multiple {kind} addresses found ({}). Please configure one with 'bind' and/or \
             'advertise'.",
            many.iter()
                .map(|ip| ip.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// RFC 6890's special-purpose IPv4 blocks, as go-sockaddr lists them for Consul's
/// `GetPrivateIPv4` (RFC 1918, shared address space, link-local, the documentation nets...).
fn is_private_v4(ip: Ipv4Addr) -> bool {
    const BLOCKS: &[(Ipv4Addr, u8)] = &[
        (Ipv4Addr::new(0, 0, 0, 0), 8),
        (Ipv4Addr::new(10, 0, 0, 0), 8),
        (Ipv4Addr::new(100, 64, 0, 0), 10),
        (Ipv4Addr::new(127, 0, 0, 0), 8),
        (Ipv4Addr::new(169, 254, 0, 0), 16),
        (Ipv4Addr::new(172, 16, 0, 0), 12),
        (Ipv4Addr::new(192, 0, 0, 0), 24),
        (Ipv4Addr::new(192, 0, 2, 0), 24),
        (Ipv4Addr::new(192, 88, 99, 0), 24),
        (Ipv4Addr::new(192, 168, 0, 0), 16),
        (Ipv4Addr::new(198, 18, 0, 0), 15),
        (Ipv4Addr::new(198, 51, 100, 0), 24),
        (Ipv4Addr::new(203, 0, 113, 0), 24),
        (Ipv4Addr::new(240, 0, 0, 0), 4),
    ];
    let bits = u32::from(ip);
    BLOCKS.iter().any(|(net, len)| {
        let mask = u32::MAX << (32 - u32::from(*len));
        bits & mask == u32::from(*net)
    })
}

/// A global unicast IPv6 address: not loopback, unspecified, link-local, unique-local,
/// multicast or documentation.
fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || first & 0xffc0 == 0xfe80
        || first & 0xfe00 == 0xfc00
        || (first == 0x2001 && ip.segments()[1] == 0x0db8))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(ip: &str) -> IfAddr {
        IfAddr {
            up: true,
            loopback: false,
            ip: ip.parse().expect("an IP address"),
        }
    }

    const ANY4: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    const ANY6: IpAddr = IpAddr::V6(Ipv6Addr::UNSPECIFIED);

    #[test]
    fn the_one_private_ipv4_address_is_picked() {
        let lo = IfAddr {
            loopback: true,
            ..up("127.0.0.1")
        };
        let down = IfAddr {
            up: false,
            ..up("10.9.9.9")
        };
        let addrs = [lo, down, up("8.8.8.8"), up("10.1.2.3"), up("fe80::1")];
        assert_eq!(
            pick(ANY4, &addrs).map_err(|e| e.to_string()),
            Ok("10.1.2.3".parse().expect("ip"))
        );
        // The same address on two interfaces (or listed twice) is still one.
        assert!(pick(ANY4, &[up("192.168.1.5"), up("192.168.1.5")]).is_ok());
    }

    #[test]
    fn none_or_several_is_an_error_naming_the_way_out() {
        let none = pick(ANY4, &[up("8.8.8.8")]).map_err(|e| e.to_string());
        assert_eq!(
            none,
            Err(
                "No private IPv4 address found. Please configure one with 'bind' and/or \
                 'advertise'."
                    .to_string()
            )
        );
        let many = pick(ANY4, &[up("10.0.0.1"), up("172.16.0.1")])
            .map_err(|e| e.to_string())
            .expect_err("two");
        assert!(
            many.starts_with("Multiple private IPv4 addresses found (10.0.0.1, 172.16.0.1)"),
            "{many}"
        );
    }

    #[test]
    fn any_ipv6_picks_the_public_ipv6_address() {
        let addrs = [
            up("fe80::1"),
            up("fd00::1"),
            up("10.0.0.1"),
            up("2a01:4f8::1"),
        ];
        assert_eq!(
            pick(ANY6, &addrs).map_err(|e| e.to_string()),
            Ok("2a01:4f8::1".parse().expect("ip"))
        );
        assert!(pick(ANY6, &[up("fe80::1")]).is_err());
    }

    #[test]
    fn blocks() {
        for private in [
            "10.0.0.1",
            "100.64.1.1",
            "172.31.255.255",
            "192.168.0.1",
            "192.0.2.2",
        ] {
            assert!(is_private_v4(private.parse().expect("ip")), "{private}");
        }
        for public in ["8.8.8.8", "172.32.0.1", "100.128.0.1", "11.0.0.1"] {
            assert!(!is_private_v4(public.parse().expect("ip")), "{public}");
        }
    }
}
