//! What a query name asks for, as Consul's DNS interface reads names: pure parsing, no tables.
//!
//! Under the domain (or `alt_domain`), labels are scanned from the right for the first kind
//! label (`service`, `node`, `addr`, `query`, `connect`, `ingress`, `virtual`); what is left of
//! it names the thing, what is right of it the locality (`[<dc>]`, `[<dc>.dc]`). For SRV
//! queries a label starting with `_` stands in for `service` (`_web._tcp.consul`). Names under
//! `in-addr.arpa` and `ip6.arpa` are reverse lookups; everything else is outside the domain.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::rr::RecordType;

use super::settings::Settings;

/// What a name inside the domain asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The domain itself (`consul.`).
    Apex,
    /// `[tag.]<service>.service`, `_<service>._<tag|tcp>.service`; `tag` is lower case.
    Service { name: String, tag: Option<String> },
    /// `<node>.node` (dots in the node name allowed).
    Node { name: String },
    /// `<hex ip>.addr` (8 or 32 hex digits) or `<dotted ipv4>.addr`.
    Addr(IpAddr),
    /// Forms Muster does not serve (prepared queries, connect, ingress, virtual IPs, peers):
    /// answered as names that do not exist, as Consul does when nothing matches.
    Unsupported,
    /// A name in the domain that cannot be parsed, or another datacenter: NXDOMAIN.
    NotFound,
}

/// Where a query name falls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Zone {
    /// Inside the domain; `domain` is the one the question used (primary or alt), for the
    /// names in the answer (SRV targets, SOA, NS).
    Domain { lookup: Lookup, domain: String },
    /// Under `in-addr.arpa.` or `ip6.arpa.`; the address when the name spells a whole one.
    Reverse(Option<IpAddr>),
    /// Anywhere else: the recursors' business.
    Outside,
}

/// Classifies a query name given as lower-case labels (root label excluded).
pub fn classify(labels: &[String], qtype: RecordType, settings: &Settings) -> Zone {
    let n = labels.len();
    if n >= 2 && labels[n - 1] == "arpa" && (labels[n - 2] == "in-addr" || labels[n - 2] == "ip6") {
        return Zone::Reverse(ip_from_arpa(labels));
    }
    let mut best: Option<(usize, &str)> = None;
    for domain in std::iter::once(settings.domain.as_str()).chain(settings.alt_domain.as_deref()) {
        let dl: Vec<&str> = domain.split('.').filter(|l| !l.is_empty()).collect();
        if dl.len() <= n
            && labels[n - dl.len()..].iter().zip(&dl).all(|(a, b)| a == b)
            && best.is_none_or(|(len, _)| dl.len() > len)
        {
            best = Some((dl.len(), domain));
        }
    }
    let Some((dlen, domain)) = best else {
        return Zone::Outside;
    };
    let lookup = dispatch(&labels[..n - dlen], qtype, settings);
    Zone::Domain {
        lookup,
        domain: domain.to_string(),
    }
}

/// Consul's `dispatch`: the labels before the domain.
fn dispatch(labels: &[String], qtype: RecordType, settings: &Settings) -> Lookup {
    if labels.is_empty() {
        return Lookup::Apex;
    }
    let mut found = None;
    for i in (0..labels.len()).rev() {
        match labels[i].as_str() {
            "service" | "connect" | "virtual" | "ingress" | "node" | "query" | "addr" => {
                found = Some((labels[i].as_str(), &labels[..i], &labels[i + 1..]));
                break;
            }
            l if qtype == RecordType::SRV && l.starts_with('_') => {
                found = Some(("service", &labels[..=i], &labels[i + 1..]));
                break;
            }
            _ => {}
        }
    }
    let Some((kind, parts, suffixes)) = found else {
        return Lookup::NotFound;
    };
    if parts.is_empty() {
        return Lookup::NotFound;
    }
    if kind == "addr" {
        // The datacenter of an .addr name is ignored, as in Consul.
        return addr(parts).map_or(Lookup::NotFound, Lookup::Addr);
    }
    match locality(suffixes) {
        Locality::Here(dc) if dc.is_none_or(|dc| dc == settings.datacenter) => {}
        Locality::Here(_) | Locality::Invalid => return Lookup::NotFound,
        Locality::Peer => return Lookup::Unsupported,
    }
    match kind {
        "service" => {
            let n = parts.len();
            if n == 2 && parts[0].starts_with('_') && parts[1].starts_with('_') {
                // RFC 2782: _<service>._<tag or tcp>
                let tag = &parts[1][1..];
                Lookup::Service {
                    name: parts[0][1..].to_string(),
                    tag: (tag != "tcp").then(|| tag.to_string()),
                }
            } else {
                Lookup::Service {
                    name: parts[n - 1].clone(),
                    tag: (n >= 2).then(|| parts[..n - 1].join(".")),
                }
            }
        }
        "node" => Lookup::Node {
            name: parts.join("."),
        },
        _ => Lookup::Unsupported,
    }
}

enum Locality<'a> {
    /// This datacenter, or the one named.
    Here(Option<&'a str>),
    /// A cluster peer (not supported).
    Peer,
    Invalid,
}

/// `[]`, `[<dc>]`, `[<dc>, "dc"]`, `[<peer>, "peer"]`.
fn locality(suffixes: &[String]) -> Locality<'_> {
    match suffixes {
        [] => Locality::Here(None),
        [dc] => Locality::Here(Some(dc.as_str())),
        [dc, kind] if kind == "dc" => Locality::Here(Some(dc.as_str())),
        [_, kind] if kind == "peer" => Locality::Peer,
        _ => Locality::Invalid,
    }
}

/// The address of an `.addr` name: one label of 8 or 32 hex digits, or a dotted IPv4 address.
fn addr(parts: &[String]) -> Option<IpAddr> {
    if let [one] = parts {
        let bytes = decode_hex(one)?;
        return match bytes.len() {
            4 => Some(IpAddr::V4(Ipv4Addr::new(
                bytes[0], bytes[1], bytes[2], bytes[3],
            ))),
            16 => {
                let mut a = [0u8; 16];
                a.copy_from_slice(&bytes);
                Some(IpAddr::V6(Ipv6Addr::from(a)))
            }
            _ => None,
        };
    }
    if parts.len() == 4 {
        return parts.join(".").parse::<Ipv4Addr>().ok().map(IpAddr::V4);
    }
    None
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The hex label of an address as `.addr` names spell it (Consul's `encodeIPAsFqdn`).
pub fn hex_ip(ip: IpAddr) -> String {
    let bytes: Vec<u8> = match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.octets().to_vec(),
            None => v6.octets().to_vec(),
        },
    };
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The address a full reverse name spells (`4.3.2.1.in-addr.arpa`, 32 nibbles `.ip6.arpa`).
fn ip_from_arpa(labels: &[String]) -> Option<IpAddr> {
    let n = labels.len();
    let body = &labels[..n - 2];
    if labels[n - 2] == "in-addr" {
        if body.len() != 4 {
            return None;
        }
        let mut octets = [0u8; 4];
        for (i, l) in body.iter().rev().enumerate() {
            octets[i] = l.parse().ok()?;
        }
        return Some(IpAddr::V4(Ipv4Addr::from(octets)));
    }
    if body.len() != 32 {
        return None;
    }
    let mut bytes = [0u8; 16];
    for (i, l) in body.iter().rev().enumerate() {
        if l.len() != 1 {
            return None;
        }
        let nibble = u8::from_str_radix(l, 16).ok()?;
        bytes[i / 2] |= if i % 2 == 0 { nibble << 4 } else { nibble };
    }
    Some(IpAddr::V6(Ipv6Addr::from(bytes)))
}

/// The reverse name of an address (`1.0.0.127.in-addr.arpa.`).
#[cfg(test)]
fn arpa_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa.", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut s = String::with_capacity(72);
            for b in v6.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", b & 0xf, b >> 4));
            }
            s.push_str("ip6.arpa.");
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(name: &str) -> Vec<String> {
        name.trim_end_matches('.')
            .split('.')
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    }

    fn lookup(name: &str, qtype: RecordType) -> Lookup {
        let s = Settings {
            alt_domain: Some("example.org".into()),
            ..Settings::default()
        };
        match classify(&labels(name), qtype, &s) {
            Zone::Domain { lookup, .. } => lookup,
            other => panic!("{name}: {other:?}"),
        }
    }

    fn service(name: &str, tag: Option<&str>) -> Lookup {
        Lookup::Service {
            name: name.into(),
            tag: tag.map(Into::into),
        }
    }

    #[test]
    fn service_forms() {
        let a = RecordType::A;
        assert_eq!(lookup("web.service.consul", a), service("web", None));
        assert_eq!(lookup("web.service.dc1.consul", a), service("web", None));
        assert_eq!(lookup("web.service.dc1.dc.consul", a), service("web", None));
        assert_eq!(lookup("web.service.dc2.consul", a), Lookup::NotFound);
        assert_eq!(
            lookup("v1.web.service.consul", a),
            service("web", Some("v1"))
        );
        assert_eq!(
            lookup("a.b.web.service.consul", a),
            service("web", Some("a.b"))
        );
        assert_eq!(
            lookup("_web._tcp.service.consul", RecordType::SRV),
            service("web", None)
        );
        assert_eq!(
            lookup("_web._v1.service.dc1.consul", RecordType::SRV),
            service("web", Some("v1"))
        );
        // The `service` label is optional for RFC 2782 SRV queries.
        assert_eq!(
            lookup("_web._tcp.consul", RecordType::SRV),
            service("web", None)
        );
        assert_eq!(
            lookup("_web._tcp.dc1.consul", RecordType::SRV),
            service("web", None)
        );
        assert_eq!(lookup("_web._tcp.consul", a), Lookup::NotFound);
        assert_eq!(lookup("web.service.example.org", a), service("web", None));
        assert_eq!(lookup("service.consul", a), Lookup::NotFound);
        assert_eq!(lookup("consul", a), Lookup::Apex);
        assert_eq!(lookup("web.service.x.peer.consul", a), Lookup::Unsupported);
        assert_eq!(lookup("web.query.consul", a), Lookup::Unsupported);
        assert_eq!(lookup("web.connect.consul", a), Lookup::Unsupported);
        assert_eq!(lookup("nothing.consul", a), Lookup::NotFound);
    }

    #[test]
    fn node_and_addr_forms() {
        let a = RecordType::A;
        assert_eq!(
            lookup("foo.node.consul", a),
            Lookup::Node { name: "foo".into() }
        );
        assert_eq!(
            lookup("foo.bar.node.dc1.consul", a),
            Lookup::Node {
                name: "foo.bar".into()
            }
        );
        assert_eq!(lookup("foo.node.dc9.consul", a), Lookup::NotFound);
        assert_eq!(
            lookup("7f000001.addr.dc1.consul", a),
            Lookup::Addr("127.0.0.1".parse().unwrap())
        );
        assert_eq!(
            lookup("127.0.0.1.addr.consul", a),
            Lookup::Addr("127.0.0.1".parse().unwrap())
        );
        assert_eq!(
            lookup("20010db8000000000000000000000001.addr.consul", a),
            Lookup::Addr("2001:db8::1".parse().unwrap())
        );
        assert_eq!(lookup("7f0000.addr.consul", a), Lookup::NotFound);
        assert_eq!(lookup("zz000001.addr.consul", a), Lookup::NotFound);
        assert_eq!(hex_ip("127.0.0.1".parse().unwrap()), "7f000001");
        assert_eq!(
            hex_ip("2001:db8::1".parse().unwrap()),
            "20010db8000000000000000000000001"
        );
    }

    #[test]
    fn reverse_and_outside() {
        let s = Settings::default();
        let ptr = RecordType::PTR;
        assert_eq!(
            classify(&labels("1.0.0.127.in-addr.arpa"), ptr, &s),
            Zone::Reverse(Some("127.0.0.1".parse().unwrap()))
        );
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(
            classify(&labels(&arpa_name(v6)), ptr, &s),
            Zone::Reverse(Some(v6))
        );
        assert_eq!(
            arpa_name("127.0.0.1".parse().unwrap()),
            "1.0.0.127.in-addr.arpa."
        );
        assert_eq!(
            classify(&labels("0.127.in-addr.arpa"), ptr, &s),
            Zone::Reverse(None)
        );
        assert_eq!(
            classify(&labels("example.com"), RecordType::A, &s),
            Zone::Outside
        );
        assert_eq!(classify(&[], RecordType::A, &s), Zone::Outside);
        // A longer domain wins over a shorter one it ends with.
        let nested = Settings {
            alt_domain: Some("alt.consul".into()),
            ..Settings::default()
        };
        assert_eq!(
            classify(&labels("web.service.alt.consul"), RecordType::A, &nested),
            Zone::Domain {
                lookup: service("web", None),
                domain: "alt.consul".into()
            }
        );
    }
}
