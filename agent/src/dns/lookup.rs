//! Answers from the catalog: which records a name in the domain (or a reverse name) has,
//! following Consul's `agent/dns.go`. Pure: a snapshot of the tables, the settings and a random
//! source in, an [`Answer`] out; no I/O, so every rule is unit tested here.
//!
//! * Instances answered: those with no critical check (node checks included; maintenance is
//!   critical), and only passing ones under `only_passing`. A name with none left is NXDOMAIN.
//! * Order: shuffled per query, for load spreading.
//! * A/AAAA for a service: the service address when it is an IP of the asked family, else the
//!   node's (tagged `lan_ipv4`/`lan_ipv6` addresses chosen by family, as Consul's address
//!   translation); a host name becomes a CNAME. `a_record_limit` caps the answers.
//! * SRV: priority 1, weight from the instance's `Weights` (passing or warning), the service
//!   port; the target is `<node>.node.<dc>.<domain>` when the service uses the node's address,
//!   `<hex ip>.addr.<dc>.<domain>` when it has its own IP, and the host name otherwise; the
//!   target's A/AAAA (and the node's meta as TXT) go to the additional section.
//! * TTLs: `node_ttl` for nodes, `.addr` and NS records, `service_ttl` (exact name, then the
//!   longest `prefix*`) for services; 0 by default. The SOA's TTL is its `min_ttl`.

use std::net::IpAddr;
use std::ops::Range;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use muster_api::HealthStatus;
use rand::seq::SliceRandom;
use rand::Rng;

use super::names::{hex_ip, Lookup};
use super::settings::Settings;
use crate::leader::CONSUL_SERVICE;
use crate::state::{NodeRow, ServiceRow, Tables};

/// What to answer, before EDNS and size limits are applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub rcode: ResponseCode,
    pub answers: Vec<Record>,
    /// For each answer, the range of [`Answer::extra_records`] that goes with it (an SRV's
    /// target address): trimming an answer drops them too.
    pub extras: Vec<Range<usize>>,
    pub extra_records: Vec<Record>,
    pub authorities: Vec<Record>,
    /// Additional records not tied to one answer (NS glue, a node's TXT).
    pub additionals: Vec<Record>,
}

impl Answer {
    fn new(rcode: ResponseCode) -> Answer {
        Answer {
            rcode,
            answers: Vec::new(),
            extras: Vec::new(),
            extra_records: Vec::new(),
            authorities: Vec::new(),
            additionals: Vec::new(),
        }
    }

    fn push<'r>(&mut self, answer: Record, extras: impl IntoIterator<Item = &'r Record>) {
        let start = self.extra_records.len();
        self.extra_records.extend(extras.into_iter().cloned());
        self.answers.push(answer);
        self.extras.push(start..self.extra_records.len());
    }

    /// The extra records of the first `n` answers (a record shared by several answers once per
    /// answer).
    pub fn extras_of(&self, n: usize) -> impl Iterator<Item = &Record> {
        self.extras[..n.min(self.extras.len())]
            .iter()
            .flat_map(|r| &self.extra_records[r.clone()])
    }

    /// The additional section for the first `n` answers: their extras (each record once), then
    /// the untied ones.
    pub fn additional_section(&self, n: usize) -> Vec<Record> {
        let mut out: Vec<Record> = Vec::new();
        for r in self.extras_of(n) {
            // Data first: it differs between most records and is cheap to compare.
            if !out.iter().any(|o| o.data == r.data && o.name == r.name) {
                out.push(r.clone());
            }
        }
        out.extend(self.additionals.iter().cloned());
        out
    }
}

/// One query inside the domain.
pub struct Question<'a> {
    /// The name as asked (original case), owner of the answers.
    pub name: &'a Name,
    pub qtype: RecordType,
    /// The domain the question used (primary or alt), without a trailing dot.
    pub domain: &'a str,
}

/// Answers a question inside the domain.
pub fn answer(
    t: &Tables,
    s: &Settings,
    q: &Question<'_>,
    lookup: &Lookup,
    now_secs: u32,
    rng: &mut impl Rng,
) -> Answer {
    match q.qtype {
        RecordType::SOA => {
            let (ns, glue) = nameservers(t, s, q.domain, rng);
            let mut a = Answer::new(ResponseCode::NoError);
            a.push(soa(s, q.domain, now_secs), Vec::new());
            a.authorities = ns;
            a.additionals = glue;
            return a;
        }
        RecordType::NS => {
            let (ns, glue) = nameservers(t, s, q.domain, rng);
            let mut a = Answer::new(ResponseCode::NoError);
            for r in ns {
                a.push(r, Vec::new());
            }
            a.additionals = glue;
            return a;
        }
        RecordType::AXFR | RecordType::IXFR => return Answer::new(ResponseCode::NotImp),
        _ => {}
    }
    let mut a = match lookup {
        Lookup::Apex => Answer::new(ResponseCode::NoError),
        Lookup::Service { name, tag } => service(t, s, q, name, tag.as_deref(), rng),
        Lookup::Node { name } => node(t, s, q, name),
        Lookup::Addr(ip) => addr(s, q, *ip),
        Lookup::Unsupported | Lookup::NotFound => Answer::new(ResponseCode::NXDomain),
    };
    with_negative_soa(s, q, &mut a, now_secs);
    a
}

/// A service answer from groups computed earlier (see [`service_groups`]), shuffled.
pub fn service_answer(
    s: &Settings,
    q: &Question<'_>,
    groups: Option<&[Group]>,
    now_secs: u32,
    rng: &mut impl Rng,
) -> Answer {
    let mut a = assemble(s, groups, rng);
    with_negative_soa(s, q, &mut a, now_secs);
    a
}

/// NXDOMAIN and NODATA carry the SOA (RFC 2308), so resolvers can cache the negative answer.
fn with_negative_soa(s: &Settings, q: &Question<'_>, a: &mut Answer, now_secs: u32) {
    if a.rcode == ResponseCode::NXDomain
        || (a.rcode == ResponseCode::NoError && a.answers.is_empty())
    {
        a.authorities.push(soa(s, q.domain, now_secs));
    }
}

/// Answers a reverse (PTR) name: a node whose address it is, else a service instance whose
/// own address it is; `None` when nothing has that address.
pub fn reverse(t: &Tables, s: &Settings, q: &Question<'_>, ip: IpAddr) -> Option<Answer> {
    let same = |addr: &str| {
        addr.parse::<IpAddr>()
            .is_ok_and(|a| canonical(a) == canonical(ip))
    };
    let target = match t.catalog.nodes.values().find(|n| same(&n.address)) {
        Some(n) => format!("{}.node.{}.{}.", n.name, s.datacenter, s.domain),
        None => {
            let svc = t.catalog.services.values().find(|svc| same(&svc.address))?;
            format!("{}.service.{}.{}.", svc.name, s.datacenter, s.domain)
        }
    };
    let mut a = Answer::new(ResponseCode::NoError);
    if matches!(q.qtype, RecordType::PTR | RecordType::ANY) {
        let target = fqdn(&target)?;
        a.push(
            Record::from_rdata(q.name.clone(), 0, RData::PTR(PTR(target))),
            Vec::new(),
        );
    }
    Some(a)
}

/// The SOA of `domain` (Consul's `makeSOARecord`); the serial is the current Unix time.
pub fn soa(s: &Settings, domain: &str, now_secs: u32) -> Record {
    let zone = fqdn(&format!("{domain}.")).unwrap_or_else(Name::root);
    let mname = fqdn(&format!("ns.{domain}.")).unwrap_or_else(Name::root);
    let rname = fqdn(&format!("hostmaster.{domain}.")).unwrap_or_else(Name::root);
    let clamp = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
    Record::from_rdata(
        zone,
        s.soa.min_ttl,
        RData::SOA(SOA::new(
            mname,
            rname,
            now_secs,
            clamp(s.soa.refresh),
            clamp(s.soa.retry),
            clamp(s.soa.expire),
            s.soa.min_ttl,
        )),
    )
}

fn fqdn(s: &str) -> Option<Name> {
    let mut n = Name::from_ascii(s).ok()?;
    n.set_fqdn(true);
    Some(n)
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Which address families a query type takes (Consul's `TranslateAddressAccept`; host names are
/// always accepted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Accept {
    V4,
    V6,
    Any,
}

fn accept_for(qtype: RecordType) -> Accept {
    match qtype {
        RecordType::A => Accept::V4,
        RecordType::AAAA => Accept::V6,
        _ => Accept::Any,
    }
}

/// Consul's `translateAddressAccept`: the tagged address of the asked family, else the default
/// address when it suits the family (or is a host name); `None` for nothing usable.
fn translate<'a>(
    default: &'a str,
    v4: Option<&'a str>,
    v6: Option<&'a str>,
    accept: Accept,
) -> Option<&'a str> {
    let v4 = v4.filter(|a| !a.is_empty());
    let v6 = v6.filter(|a| !a.is_empty());
    match accept {
        Accept::V6 if v6.is_some() => return v6,
        Accept::V4 if v4.is_some() => return v4,
        Accept::Any if !default.is_empty() => return Some(default),
        _ => {}
    }
    if default.is_empty() {
        return None;
    }
    match default.parse::<IpAddr>().map(canonical) {
        Ok(IpAddr::V4(_)) if accept == Accept::V4 => Some(default),
        Ok(IpAddr::V6(_)) if accept == Accept::V6 => Some(default),
        Ok(_) => None,
        Err(_) => Some(default),
    }
}

fn node_address(n: &NodeRow, accept: Accept) -> Option<&str> {
    translate(
        &n.address,
        n.tagged_addresses.get("lan_ipv4").map(String::as_str),
        n.tagged_addresses.get("lan_ipv6").map(String::as_str),
        accept,
    )
}

fn service_address(svc: &ServiceRow, accept: Accept) -> Option<&str> {
    translate(
        &svc.address,
        svc.tagged_addresses
            .get("lan_ipv4")
            .map(|(a, _)| a.as_str()),
        svc.tagged_addresses
            .get("lan_ipv6")
            .map(|(a, _)| a.as_str()),
        accept,
    )
}

/// An A or AAAA record for `ip` when the query type takes its family (Consul's `makeARecord`).
fn ip_record(qtype: RecordType, ip: IpAddr, owner: Name, ttl: u32) -> Option<Record> {
    let family_ok = |want: RecordType| {
        qtype == want
            || matches!(
                qtype,
                RecordType::SRV | RecordType::ANY | RecordType::NS | RecordType::TXT
            )
    };
    match canonical(ip) {
        IpAddr::V4(v4) if family_ok(RecordType::A) => {
            Some(Record::from_rdata(owner, ttl, RData::A(A(v4))))
        }
        IpAddr::V6(v6) if family_ok(RecordType::AAAA) => {
            Some(Record::from_rdata(owner, ttl, RData::AAAA(AAAA(v6))))
        }
        _ => None,
    }
}

/// A node's address records under `owner` (Consul's `makeRecordFromNode`): A/AAAA for an IP,
/// a CNAME for a host name.
fn node_records(n: &NodeRow, qtype: RecordType, owner: &Name, ttl: u32) -> Vec<Record> {
    let Some(addr) = node_address(n, accept_for(qtype)) else {
        return Vec::new();
    };
    match addr.parse::<IpAddr>() {
        Ok(ip) => ip_record(qtype, ip, owner.clone(), ttl)
            .into_iter()
            .collect(),
        Err(_) => fqdn(&format!("{}.", addr.trim_end_matches('.')))
            .map(|target| Record::from_rdata(owner.clone(), ttl, RData::CNAME(CNAME(target))))
            .into_iter()
            .collect(),
    }
}

/// A node's meta as TXT records (RFC 1464 `key=value`; keys starting `rfc1035-` give the bare
/// value), strings split at 255 bytes.
fn meta_txt(n: &NodeRow, owner: &Name, ttl: u32) -> Vec<Record> {
    n.meta
        .iter()
        .map(|(k, v)| {
            let text = if k.to_ascii_lowercase().starts_with("rfc1035-") {
                v.clone()
            } else {
                rfc1464(k, v)
            };
            let chunks: Vec<&[u8]> = text.as_bytes().chunks(255).collect();
            Record::from_rdata(owner.clone(), ttl, RData::TXT(TXT::from_bytes(chunks)))
        })
        .collect()
}

/// RFC 1464 encoding of a key and value (Consul's `encodeKVasRFC1464`).
fn rfc1464(key: &str, value: &str) -> String {
    let key = key.replace('`', "``").replace('=', "`=");
    let lead = key.len() - key.trim_start_matches(' ').len();
    let trail = key.len() - key.trim_end_matches(' ').len();
    let key = if lead == key.len() {
        "` ".repeat(lead)
    } else {
        format!(
            "{}{}{}",
            "` ".repeat(lead),
            &key[lead..key.len() - trail],
            "` ".repeat(trail)
        )
    };
    format!("{key}={}", value.replace('`', "``"))
}

/// The canonical name of a node (`<node>.node.<dc>.<domain>.`).
fn node_fqdn(s: &Settings, node: &str, domain: &str) -> Option<Name> {
    fqdn(&format!("{node}.node.{}.{domain}.", s.datacenter))
}

/// The instances of a service (exact name first, else any case, as Consul's catalog
/// compares names case-insensitively).
fn instances<'t>(t: &'t Tables, name: &str) -> Vec<&'t ServiceRow> {
    let found = t.service_instances(name);
    if !found.is_empty() {
        return found;
    }
    match t
        .catalog
        .by_name
        .keys()
        .find(|k| k.eq_ignore_ascii_case(name))
    {
        Some(k) => t.service_instances(k),
        None => Vec::new(),
    }
}

fn find_node<'t>(t: &'t Tables, name: &str) -> Option<&'t NodeRow> {
    t.catalog.nodes.get(name).or_else(|| {
        t.catalog
            .nodes
            .values()
            .find(|n| n.name.eq_ignore_ascii_case(name))
    })
}

/// The instance's health when DNS may answer it: `None` when a check (its own or its node's)
/// is critical (or in maintenance), or not passing under `only_passing`.
fn answerable(t: &Tables, svc: &ServiceRow, only_passing: bool) -> Option<HealthStatus> {
    let mut status = HealthStatus::Passing;
    for c in t.instance_checks(&svc.node, &svc.id) {
        match c.status {
            HealthStatus::Critical | HealthStatus::Maintenance => return None,
            HealthStatus::Warning if only_passing => return None,
            s => status = status.worst(s),
        }
    }
    Some(status)
}

struct Instance<'t> {
    svc: &'t ServiceRow,
    node: &'t NodeRow,
    status: HealthStatus,
}

/// The answerable instances of `name` with `tag`, in catalog order.
fn answerable_instances<'t>(
    t: &'t Tables,
    s: &Settings,
    name: &str,
    tag: Option<&str>,
) -> Vec<Instance<'t>> {
    instances(t, name)
        .into_iter()
        .filter(|svc| tag.is_none_or(|tag| svc.tags.iter().any(|t| t.eq_ignore_ascii_case(tag))))
        .filter_map(|svc| {
            let status = answerable(t, svc, s.only_passing)?;
            let node = t.catalog.nodes.get(&svc.node)?;
            Some(Instance { svc, node, status })
        })
        .collect()
}

/// What one answerable instance contributes to a service answer: its answer records (A/AAAA,
/// a CNAME, or an SRV) and, for SRV, its target's additional records.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    answers: Vec<Record>,
    extras: Vec<Record>,
}

/// The groups of a service lookup in catalog order, duplicates removed (Consul's `handled`
/// sets); `None` when no instance may be answered (NXDOMAIN). Independent of the random order,
/// so a snapshot's groups can be reused by every query until the catalog changes.
pub fn service_groups(
    t: &Tables,
    s: &Settings,
    q: &Question<'_>,
    name: &str,
    tag: Option<&str>,
) -> Option<Vec<Group>> {
    let found = answerable_instances(t, s, name, tag);
    if found.is_empty() {
        return None;
    }
    let ttl = s.service_ttl(name);
    let mut groups: Vec<Group> = Vec::with_capacity(found.len());
    if q.qtype == RecordType::SRV {
        let mut seen = std::collections::HashSet::new();
        for inst in &found {
            let addr = service_address(inst.svc, Accept::Any).unwrap_or("");
            if !seen.insert((inst.node.name.as_str(), addr, inst.svc.port)) {
                continue;
            }
            let (answers, mut extras) = instance_records(s, q, inst, ttl);
            if s.node_meta_txt && !inst.node.meta.is_empty() {
                if let Some(owner) = node_fqdn(s, &inst.node.name, q.domain) {
                    extras.extend(meta_txt(inst.node, &owner, ttl));
                }
            }
            if !answers.is_empty() {
                groups.push(Group { answers, extras });
            }
        }
    } else {
        for inst in &found {
            let (answers, _) = instance_records(s, q, inst, ttl);
            let Some(first) = answers.first() else {
                continue;
            };
            if groups.iter().any(|g| g.answers.first() == Some(first)) {
                continue;
            }
            groups.push(Group {
                answers,
                extras: Vec::new(),
            });
        }
    }
    Some(groups)
}

/// A service answer from its groups in a random order (Consul's shuffle): every SRV group;
/// for A/AAAA the address groups up to `a_record_limit`, or the first CNAME when there is no
/// address. No groups left is NODATA.
pub fn assemble(s: &Settings, groups: Option<&[Group]>, rng: &mut impl Rng) -> Answer {
    let Some(groups) = groups else {
        return Answer::new(ResponseCode::NXDomain);
    };
    let mut order: Vec<usize> = (0..groups.len()).collect();
    order.shuffle(rng);
    let mut a = Answer::new(ResponseCode::NoError);
    let mut cname: Option<&Group> = None;
    let mut count = 0;
    for g in order.iter().map(|&i| &groups[i]) {
        let is_cname = g
            .answers
            .first()
            .is_some_and(|r| r.record_type() == RecordType::CNAME);
        if is_cname {
            cname = cname.or(Some(g));
            continue;
        }
        for r in &g.answers {
            a.push(r.clone(), &g.extras);
        }
        count += 1;
        if count == s.a_record_limit {
            break;
        }
    }
    if a.answers.is_empty() {
        if let Some(g) = cname {
            for r in &g.answers {
                a.push(r.clone(), Vec::new());
            }
        }
    }
    a
}

fn service(
    t: &Tables,
    s: &Settings,
    q: &Question<'_>,
    name: &str,
    tag: Option<&str>,
    rng: &mut impl Rng,
) -> Answer {
    assemble(s, service_groups(t, s, q, name, tag).as_deref(), rng)
}

/// The records of one instance (Consul's `makeNodeServiceRecords`): answers and, for SRV, the
/// additional records of the target.
fn instance_records(
    s: &Settings,
    q: &Question<'_>,
    inst: &Instance<'_>,
    ttl: u32,
) -> (Vec<Record>, Vec<Record>) {
    let accept = accept_for(q.qtype);
    let svc_addr = service_address(inst.svc, accept);
    let node_addr = node_address(inst.node, accept);
    let node_ip = node_addr.and_then(|a| a.parse::<IpAddr>().ok());
    match (svc_addr, node_addr) {
        (None, None) => (Vec::new(), Vec::new()),
        (None, Some(na)) => match node_ip {
            // A tagged address of the node: name it by address, not by node.
            Some(ip) if na != inst.node.address => from_ip(s, q, inst, ip, ttl),
            Some(ip) => from_node(s, q, inst, ip, ttl),
            None => from_host(q, inst, na, ttl),
        },
        (Some(sa), _) => match sa.parse::<IpAddr>() {
            Ok(ip) => from_ip(s, q, inst, ip, ttl),
            Err(_) => {
                let asked = q.name.to_ascii().trim_end_matches('.').to_ascii_lowercase();
                match node_ip {
                    Some(ip) if sa.trim_end_matches('.').eq_ignore_ascii_case(&asked) => {
                        from_node(s, q, inst, ip, ttl)
                    }
                    _ => from_host(q, inst, sa, ttl),
                }
            }
        },
    }
}

fn srv(q: &Question<'_>, inst: &Instance<'_>, target: Name, ttl: u32) -> Record {
    let weight = match inst.status {
        HealthStatus::Warning => inst.svc.weights_warning,
        _ => inst.svc.weights_passing,
    };
    let weight = u16::try_from(weight.max(0)).unwrap_or(u16::MAX);
    Record::from_rdata(
        q.name.clone(),
        ttl,
        RData::SRV(SRV::new(1, weight, inst.svc.port, target)),
    )
}

/// The service uses its node's address: SRV target is the node's name.
fn from_node(
    s: &Settings,
    q: &Question<'_>,
    inst: &Instance<'_>,
    ip: IpAddr,
    ttl: u32,
) -> (Vec<Record>, Vec<Record>) {
    let Some(ip_rec) = ip_record(q.qtype, ip, q.name.clone(), ttl) else {
        return (Vec::new(), Vec::new());
    };
    if q.qtype != RecordType::SRV {
        return (vec![ip_rec], Vec::new());
    }
    let Some(target) = node_fqdn(s, &inst.node.name, q.domain) else {
        return (Vec::new(), Vec::new());
    };
    let mut extra = ip_rec;
    extra.name = target.clone();
    (vec![srv(q, inst, target, ttl)], vec![extra])
}

/// The service has its own IP (or a tagged one was chosen): SRV target is its `.addr` name.
fn from_ip(
    s: &Settings,
    q: &Question<'_>,
    inst: &Instance<'_>,
    ip: IpAddr,
    ttl: u32,
) -> (Vec<Record>, Vec<Record>) {
    let Some(ip_rec) = ip_record(q.qtype, ip, q.name.clone(), ttl) else {
        return (Vec::new(), Vec::new());
    };
    if q.qtype != RecordType::SRV {
        return (vec![ip_rec], Vec::new());
    }
    let Some(target) = fqdn(&format!(
        "{}.addr.{}.{}.",
        hex_ip(ip),
        s.datacenter,
        q.domain
    )) else {
        return (Vec::new(), Vec::new());
    };
    let mut extra = ip_rec;
    extra.name = target.clone();
    (vec![srv(q, inst, target, ttl)], vec![extra])
}

/// The address is a host name: SRV target is the host; A/AAAA become a CNAME to it.
fn from_host(
    q: &Question<'_>,
    inst: &Instance<'_>,
    host: &str,
    ttl: u32,
) -> (Vec<Record>, Vec<Record>) {
    let Some(target) = fqdn(&format!("{}.", host.trim_end_matches('.'))) else {
        return (Vec::new(), Vec::new());
    };
    if q.qtype == RecordType::SRV {
        return (vec![srv(q, inst, target, ttl)], Vec::new());
    }
    (
        vec![Record::from_rdata(
            q.name.clone(),
            ttl,
            RData::CNAME(CNAME(target)),
        )],
        Vec::new(),
    )
}

fn node(t: &Tables, s: &Settings, q: &Question<'_>, name: &str) -> Answer {
    let Some(n) = find_node(t, name) else {
        return Answer::new(ResponseCode::NXDomain);
    };
    let mut a = Answer::new(ResponseCode::NoError);
    let qtype = q.qtype;
    if !matches!(
        qtype,
        RecordType::ANY | RecordType::A | RecordType::AAAA | RecordType::TXT
    ) {
        return a;
    }
    let ttl = s.node_ttl_secs();
    if qtype != RecordType::TXT {
        for r in node_records(n, qtype, q.name, ttl) {
            a.push(r, Vec::new());
        }
    }
    if matches!(qtype, RecordType::TXT | RecordType::ANY) {
        for r in meta_txt(n, q.name, ttl) {
            a.push(r, Vec::new());
        }
    } else if s.node_meta_txt {
        a.additionals = meta_txt(n, q.name, ttl);
    }
    a
}

fn addr(s: &Settings, q: &Question<'_>, ip: IpAddr) -> Answer {
    let mut a = Answer::new(ResponseCode::NoError);
    let ttl = s.node_ttl_secs();
    let want = match canonical(ip) {
        IpAddr::V4(_) => RecordType::A,
        IpAddr::V6(_) => RecordType::AAAA,
    };
    let Some(rec) = ip_record(want, ip, q.name.clone(), ttl) else {
        return a;
    };
    if q.qtype == want || q.qtype == RecordType::ANY {
        a.push(rec, Vec::new());
    } else {
        a.additionals.push(rec);
    }
    a
}

/// Up to three healthy servers (instances of `consul`) as NS records of `domain`, with their
/// addresses as glue (Consul's `getNameserversAndNodeRecord`).
fn nameservers(
    t: &Tables,
    s: &Settings,
    domain: &str,
    rng: &mut impl Rng,
) -> (Vec<Record>, Vec<Record>) {
    let (mut ns, mut glue) = (Vec::new(), Vec::new());
    let Some(zone) = fqdn(&format!("{domain}.")) else {
        return (ns, glue);
    };
    let ttl = s.node_ttl_secs();
    let mut servers = answerable_instances(t, s, CONSUL_SERVICE, None);
    servers.shuffle(rng);
    for inst in servers {
        let name = &inst.node.name;
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            continue;
        }
        let Some(target) = node_fqdn(s, &name.to_ascii_lowercase(), domain) else {
            continue;
        };
        if ns
            .iter()
            .any(|r: &Record| r.data == RData::NS(NS(target.clone())))
        {
            continue;
        }
        glue.extend(node_records(inst.node, RecordType::ANY, &target, ttl));
        ns.push(Record::from_rdata(zone.clone(), ttl, RData::NS(NS(target))));
        if ns.len() >= 3 {
            break;
        }
    }
    (ns, glue)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{CheckRow, Command, Registration, Request, Store};
    use std::collections::BTreeMap;

    fn store() -> Store {
        Store::default()
    }

    fn register(store: &Store, index: u64, reg: Registration) {
        store.apply(
            index,
            &Request {
                time_ms: 0,
                command: Command::CatalogRegister(Box::new(reg)),
            },
        );
    }

    fn node(name: &str, address: &str) -> NodeRow {
        NodeRow {
            name: name.into(),
            address: address.into(),
            ..Default::default()
        }
    }

    fn svc(id: &str, name: &str, address: &str, port: u16, tags: &[&str]) -> ServiceRow {
        ServiceRow {
            id: id.into(),
            name: name.into(),
            address: address.into(),
            port,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            weights_passing: 10,
            weights_warning: 1,
            ..Default::default()
        }
    }

    fn check(id: &str, service_id: &str, status: HealthStatus) -> CheckRow {
        CheckRow {
            id: id.into(),
            name: id.into(),
            service_id: service_id.into(),
            status,
            ..Default::default()
        }
    }

    fn add(store: &Store, index: u64, n: NodeRow, s: ServiceRow, status: HealthStatus) {
        let c = check(&format!("c-{}", s.id), &s.id, status);
        register(
            store,
            index,
            Registration {
                node: n,
                service: Some(s),
                checks: vec![c],
                ..Default::default()
            },
        );
    }

    fn ask(t: &Tables, s: &Settings, name: &str, qtype: RecordType) -> (Answer, Vec<Record>) {
        let labels: Vec<String> = name
            .trim_end_matches('.')
            .split('.')
            .map(|l| l.to_ascii_lowercase())
            .collect();
        let qname = Name::from_ascii(name).unwrap();
        let super::super::names::Zone::Domain { lookup, domain } =
            super::super::names::classify(&labels, qtype, s)
        else {
            panic!("{name} is not in the domain");
        };
        let q = Question {
            name: &qname,
            qtype,
            domain: &domain,
        };
        let a = answer(t, s, &q, &lookup, 42, &mut rand::thread_rng());
        let extra = a.additional_section(a.answers.len());
        (a, extra)
    }

    fn ips(records: &[Record]) -> Vec<String> {
        let mut v: Vec<String> = records
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(a.0.to_string()),
                RData::AAAA(a) => Some(a.0.to_string()),
                _ => None,
            })
            .collect();
        v.sort();
        v
    }

    fn sample() -> Store {
        let st = store();
        add(
            &st,
            5,
            node("n1", "10.0.0.1"),
            svc("web1", "web", "", 80, &["v1"]),
            HealthStatus::Passing,
        );
        add(
            &st,
            6,
            node("n2", "10.0.0.2"),
            svc("web2", "web", "10.9.9.2", 81, &["v2"]),
            HealthStatus::Warning,
        );
        add(
            &st,
            7,
            node("n3", "10.0.0.3"),
            svc("web3", "web", "", 82, &["v1"]),
            HealthStatus::Critical,
        );
        st
    }

    #[test]
    fn service_a_and_health_filter() {
        let st = sample();
        let t = st.read();
        let s = Settings::default();
        let (a, _) = ask(&t, &s, "web.service.consul.", RecordType::A);
        assert_eq!(a.rcode, ResponseCode::NoError);
        // The critical instance is left out; the service address wins over the node's.
        assert_eq!(ips(&a.answers), vec!["10.0.0.1", "10.9.9.2"]);
        assert!(a.answers.iter().all(|r| r.ttl == 0));
        let only = Settings {
            only_passing: true,
            ..Settings::default()
        };
        let (a, _) = ask(&t, &only, "web.service.consul.", RecordType::A);
        assert_eq!(ips(&a.answers), vec!["10.0.0.1"]);
        // Tag filter (case-insensitive) and the RFC 2782 form.
        let (a, _) = ask(&t, &s, "V2.web.service.consul.", RecordType::A);
        assert_eq!(ips(&a.answers), vec!["10.9.9.2"]);
        let (a, _) = ask(&t, &s, "_web._v1.service.consul.", RecordType::SRV);
        assert_eq!(a.answers.len(), 1);
        // AAAA of IPv4-only instances: NOERROR, no answers, the SOA.
        let (a, _) = ask(&t, &s, "web.service.consul.", RecordType::AAAA);
        assert_eq!(a.rcode, ResponseCode::NoError);
        assert!(a.answers.is_empty());
        assert_eq!(a.authorities[0].record_type(), RecordType::SOA);
        // Unknown service and unknown tag: NXDOMAIN with the SOA.
        for name in ["nope.service.consul.", "v9.web.service.consul."] {
            let (a, _) = ask(&t, &s, name, RecordType::A);
            assert_eq!(a.rcode, ResponseCode::NXDomain, "{name}");
            assert_eq!(a.authorities[0].record_type(), RecordType::SOA);
        }
    }

    #[test]
    fn all_critical_is_nxdomain_and_node_check_counts() {
        let st = sample();
        register(
            &st,
            8,
            Registration {
                node: node("n1", "10.0.0.1"),
                skip_node_update: true,
                checks: vec![check("serfHealth", "", HealthStatus::Critical)],
                ..Default::default()
            },
        );
        let t = st.read();
        let s = Settings::default();
        let (a, _) = ask(&t, &s, "v1.web.service.consul.", RecordType::A);
        assert_eq!(a.rcode, ResponseCode::NXDomain);
    }

    #[test]
    fn srv_targets_weights_and_additionals() {
        let st = sample();
        let t = st.read();
        let s = Settings {
            service_ttl_exact: BTreeMap::from([(
                "web".to_string(),
                std::time::Duration::from_secs(30),
            )]),
            ..Settings::default()
        };
        let (a, extra) = ask(&t, &s, "web.service.consul.", RecordType::SRV);
        let mut srvs: Vec<(String, u16, u16)> = a
            .answers
            .iter()
            .map(|r| match &r.data {
                RData::SRV(srv) => (srv.target.to_ascii(), srv.port, srv.weight),
                other => panic!("{other:?}"),
            })
            .collect();
        srvs.sort();
        assert_eq!(
            srvs,
            vec![
                ("0a090902.addr.dc1.consul.".to_string(), 81, 1),
                ("n1.node.dc1.consul.".to_string(), 80, 10),
            ]
        );
        assert!(a.answers.iter().all(|r| r.ttl == 30));
        assert_eq!(ips(&extra), vec!["10.0.0.1", "10.9.9.2"]);
        let names: Vec<String> = extra.iter().map(|r| r.name.to_ascii()).collect();
        assert!(names.contains(&"n1.node.dc1.consul.".to_string()));
        assert!(names.contains(&"0a090902.addr.dc1.consul.".to_string()));
    }

    #[test]
    fn nodes_txt_addr_and_reverse() {
        let st = store();
        let mut n = node("db-1", "10.1.2.3");
        n.meta = BTreeMap::from([
            ("rack".to_string(), "r1".to_string()),
            ("rfc1035-x".to_string(), "raw".to_string()),
        ]);
        add(
            &st,
            5,
            n,
            svc("db", "db", "", 5432, &[]),
            HealthStatus::Passing,
        );
        let t = st.read();
        let s = Settings {
            node_ttl: std::time::Duration::from_secs(12),
            ..Settings::default()
        };
        let (a, extra) = ask(&t, &s, "DB-1.node.dc1.consul.", RecordType::A);
        assert_eq!(ips(&a.answers), vec!["10.1.2.3"]);
        assert_eq!(a.answers[0].ttl, 12);
        assert_eq!(extra.len(), 2, "node meta as TXT in the additional section");
        let (a, _) = ask(&t, &s, "db-1.node.consul.", RecordType::TXT);
        let mut txt: Vec<String> = a
            .answers
            .iter()
            .map(|r| match &r.data {
                RData::TXT(t) => t.to_string(),
                other => panic!("{other:?}"),
            })
            .collect();
        txt.sort();
        assert_eq!(txt, vec!["rack=r1", "raw"]);
        let (a, _) = ask(&t, &s, "nope.node.consul.", RecordType::A);
        assert_eq!(a.rcode, ResponseCode::NXDomain);
        let (a, _) = ask(&t, &s, "db-1.node.consul.", RecordType::MX);
        assert_eq!(a.rcode, ResponseCode::NoError);
        assert!(a.answers.is_empty());
        assert_eq!(a.authorities.len(), 1);

        let (a, _) = ask(&t, &s, "0a010203.addr.consul.", RecordType::A);
        assert_eq!(ips(&a.answers), vec!["10.1.2.3"]);
        let (a, _) = ask(&t, &s, "0a010203.addr.consul.", RecordType::AAAA);
        assert!(a.answers.is_empty());

        let qname = Name::from_ascii("3.2.1.10.in-addr.arpa.").unwrap();
        let q = Question {
            name: &qname,
            qtype: RecordType::PTR,
            domain: "consul",
        };
        let a = reverse(&t, &s, &q, "10.1.2.3".parse().unwrap()).unwrap();
        match &a.answers[0].data {
            RData::PTR(p) => assert_eq!(p.0.to_ascii(), "db-1.node.dc1.consul."),
            other => panic!("{other:?}"),
        }
        assert!(reverse(&t, &s, &q, "10.9.9.9".parse().unwrap()).is_none());
    }

    #[test]
    fn soa_ns_and_a_record_limit() {
        let st = store();
        for i in 0..5u8 {
            add(
                &st,
                5 + u64::from(i),
                node(&format!("s{i}"), &format!("10.0.0.{}", i + 1)),
                svc("consul", "consul", "", 8300, &[]),
                HealthStatus::Passing,
            );
        }
        let t = st.read();
        let s = Settings::default();
        let (a, _) = ask(&t, &s, "consul.", RecordType::SOA);
        match &a.answers[0].data {
            RData::SOA(soa) => {
                assert_eq!(soa.mname.to_ascii(), "ns.consul.");
                assert_eq!(soa.rname.to_ascii(), "hostmaster.consul.");
                assert_eq!(
                    (soa.refresh, soa.retry, soa.expire, soa.minimum),
                    (3600, 600, 86400, 0)
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(a.authorities.len(), 3, "at most three NS");
        assert_eq!(a.additionals.len(), 3);
        let (a, _) = ask(&t, &s, "consul.service.consul.", RecordType::A);
        assert_eq!(a.answers.len(), 5);
        let limited = Settings {
            a_record_limit: 2,
            ..Settings::default()
        };
        let (a, _) = ask(&t, &limited, "consul.service.consul.", RecordType::A);
        assert_eq!(a.answers.len(), 2);
    }

    #[test]
    fn rfc1464_escapes() {
        assert_eq!(rfc1464("a=b", "c`d"), "a`=b=c``d");
        assert_eq!(rfc1464(" k ", "v"), "` k` =v");
    }
}
