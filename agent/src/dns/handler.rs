//! The hickory-server request handler: reads the question, answers it from a snapshot of the
//! state store (or the recursors), then applies EDNS and the size limits and sends the answer.
//!
//! Size limits: a UDP answer fits the client's EDNS payload size (512 bytes without EDNS);
//! without EDNS it also carries at most `udp_answer_limit` answers. Trimming drops the
//! authority section first, then answers from the end (with the additional records that only
//! they needed), keeping at least one. A trimmed UDP answer has TC set (unless
//! `enable_truncate = false`) so the client asks again over TCP, where answers go up to 64 KiB.
//! A hickory encoder bounded by the same size backs this up.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{
    emit_message_parts, Edns, Header, HeaderCounts, Message, Metadata, OpCode, Query, ResponseCode,
};
use hickory_server::proto::rr::{RData, Record, RecordType};
use hickory_server::proto::serialize::binary::BinEncoder;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;

use super::cache;
use super::lookup::{self, Answer, Question};
use super::names::{classify, Lookup, Zone};
use super::recursor::Recursors;
use super::settings::Settings;
use crate::server::{Agent, Consistency};
use crate::state::Tables;

/// Largest UDP answer (Consul's `maxUDPDatagramSize`: 64 KiB less IP and UDP headers).
const MAX_UDP_SIZE: u16 = u16::MAX - 68;
/// Largest TCP answer (64 KiB less a little framing slack, as Consul's `trimTCPResponse`).
const MAX_TCP_SIZE: usize = 65523;
/// The smallest UDP size any client may be held to (RFC 1035, RFC 6891).
const MIN_UDP_SIZE: u16 = 512;

/// Answers DNS queries for one agent.
pub struct Handler {
    agent: Arc<Agent>,
    settings: Settings,
    recursors: Recursors,
}

impl Handler {
    pub fn new(agent: Arc<Agent>, settings: Settings) -> Handler {
        let recursors = Recursors::new(&settings);
        Handler {
            agent,
            settings,
            recursors,
        }
    }

    /// Whether the local state may answer: with `allow_stale` (the default) any server whose
    /// state is at most `max_stale` behind; otherwise, or when staler, only the leader (there
    /// is no forwarding to it yet).
    async fn may_answer(&self) -> bool {
        if self.settings.allow_stale {
            if let Ok(meta) = self.agent.read_gate(Consistency::Stale).await {
                if meta.last_contact <= self.settings.max_stale {
                    return true;
                }
            }
        }
        self.agent.read_gate(Consistency::Default).await.is_ok()
    }
}

/// The response being built: header fields and sections.
struct Reply {
    metadata: Metadata,
    answers: Vec<Record>,
    authorities: Vec<Record>,
    additionals: Vec<Record>,
}

impl Reply {
    fn new(request: &Request, rcode: ResponseCode) -> Reply {
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.response_code = rcode;
        Reply {
            metadata,
            answers: Vec::new(),
            authorities: Vec::new(),
            additionals: Vec::new(),
        }
    }
}

/// The handler shared between the UDP workers and hickory's TCP server.
pub struct Shared(pub Arc<Handler>);

#[async_trait::async_trait]
impl RequestHandler for Shared {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        self.0
            .handle_request::<R, T>(request, response_handle)
            .await
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let edns = response_edns(request);
        let reply = self.reply(request, edns.as_ref()).await;
        let builder = MessageResponseBuilder::new(&request.queries, edns.as_ref());
        let response = builder.build(
            reply.metadata,
            reply.answers.iter(),
            reply.authorities.iter(),
            std::iter::empty(),
            reply.additionals.iter(),
        );
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!(error = %e, src = %request.src(), "DNS: sending the answer failed");
                let mut metadata = reply.metadata;
                metadata.response_code = ResponseCode::ServFail;
                ResponseInfo::from(Header {
                    metadata,
                    counts: HeaderCounts::default(),
                })
            }
        }
    }
}

/// The OPT record of the answer: present when the query had one, echoing its payload size
/// (bounded), version 0.
fn response_edns(request: &Request) -> Option<Edns> {
    let asked = request.edns.as_ref()?;
    let mut edns = Edns::new();
    edns.set_max_payload(asked.max_payload().clamp(MIN_UDP_SIZE, MAX_UDP_SIZE));
    edns.set_version(0);
    Some(edns)
}

/// Types answered for the zone whatever the name (SOA, NS) or not at all (transfers).
fn is_zone_type(qtype: RecordType) -> bool {
    matches!(
        qtype,
        RecordType::SOA | RecordType::NS | RecordType::AXFR | RecordType::IXFR
    )
}

fn now_secs() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
        .unwrap_or(0)
}

/// The lower-case labels of a name, root excluded.
fn labels(name: &hickory_server::proto::rr::Name) -> Vec<String> {
    name.iter()
        .map(|l| String::from_utf8_lossy(l).to_ascii_lowercase())
        .collect()
}

impl Handler {
    /// A service lookup's answer, its groups taken from the per-snapshot cache.
    fn service(
        &self,
        request: &Request,
        tables: &Arc<Tables>,
        q: &Question<'_>,
        name: &str,
        tag: Option<&str>,
    ) -> lookup::Answer {
        let s = &self.settings;
        let groups = cache::groups(self, tables, request.queries.as_bytes(), || {
            lookup::service_groups(tables, s, q, name, tag)
        });
        let groups = groups.as_deref().map(Vec::as_slice);
        lookup::service_answer(s, q, groups, now_secs(), &mut rand::thread_rng())
    }

    /// The UDP fast path for service lookups: the encoded answer (with this query's ID) from
    /// the per-thread cache of recent shuffled encodings (see `cache`), encoded and cached
    /// when there is none to reuse. `None` for every other question, and when this agent may
    /// not answer (the handler then answers as usual).
    pub async fn udp_service_answer(&self, request: &Request) -> Option<Vec<u8>> {
        if !self.agent.config.server
            || request.metadata.op_code != OpCode::Query
            || request.edns.as_ref().is_some_and(|e| e.version() > 0)
        {
            return None;
        }
        let [query] = request.queries.queries() else {
            return None;
        };
        let query = query.original();
        let qtype = query.query_type();
        if is_zone_type(qtype) {
            return None;
        }
        let Zone::Domain {
            lookup: Lookup::Service { name, tag },
            domain,
        } = classify(&labels(query.name()), qtype, &self.settings)
        else {
            return None;
        };
        if !self.may_answer().await {
            return None;
        }
        let tables = self.agent.store.read();
        let edns = response_edns(request);
        let key = cache::WireKey {
            question: request.queries.as_bytes(),
            payload: edns.as_ref().map(Edns::max_payload),
            recursion_desired: request.metadata.recursion_desired,
            checking_disabled: request.metadata.checking_disabled,
        };
        let slot = match cache::pick_wire(self, &tables, &key) {
            cache::Pick::Hit(mut bytes) => {
                bytes[..2].copy_from_slice(&request.metadata.id.to_be_bytes());
                return Some(bytes);
            }
            cache::Pick::Build(slot) => slot,
        };
        let q = Question {
            name: query.name(),
            qtype,
            domain: &domain,
        };
        let answer = self.service(request, &tables, &q, &name, tag.as_deref());
        let reply = self.fit(request, query, edns.as_ref(), answer);
        let bytes = encode_udp(request, edns.as_ref(), &reply)?;
        cache::store_wire(self, &tables, &key, slot, bytes.clone());
        Some(bytes)
    }

    /// Whether a query is answered without asking the recursors (so without waiting on the
    /// network): everything in the domain, and everything when there are no recursors.
    pub fn answers_locally(&self, request: &Request) -> bool {
        if !self.agent.config.server {
            return false; // it asks a server (or its recursors)
        }
        if self.recursors.is_empty() {
            return true;
        }
        let [query] = request.queries.queries() else {
            return true;
        };
        let query = query.original();
        matches!(
            classify(&labels(query.name()), query.query_type(), &self.settings),
            Zone::Domain { .. }
        )
    }

    async fn reply(&self, request: &Request, edns: Option<&Edns>) -> Reply {
        if request.metadata.op_code != OpCode::Query {
            return Reply::new(request, ResponseCode::NotImp);
        }
        if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
            return Reply::new(request, ResponseCode::BADVERS);
        }
        let [query] = request.queries.queries() else {
            return Reply::new(request, ResponseCode::FormErr);
        };
        let query = query.original();
        let qtype = query.query_type();
        let s = &self.settings;
        match classify(&labels(query.name()), qtype, s) {
            Zone::Domain { lookup, domain } => {
                // A client agent has no catalog of its own: a server answers (Consul's client
                // agents ask a server by RPC too). Other zones go to this agent's recursors.
                if !self.agent.config.server {
                    return self.forwarded(request).await;
                }
                if !self.may_answer().await {
                    return Reply::new(request, ResponseCode::ServFail);
                }
                let tables = self.agent.store.read();
                let q = Question {
                    name: query.name(),
                    qtype,
                    domain: &domain,
                };
                let answer = match &lookup {
                    Lookup::Service { name, tag } if !is_zone_type(qtype) => {
                        self.service(request, &tables, &q, name, tag.as_deref())
                    }
                    _ => {
                        lookup::answer(&tables, s, &q, &lookup, now_secs(), &mut rand::thread_rng())
                    }
                };
                self.fit(request, query, edns, answer)
            }
            Zone::Reverse(ip) => {
                if !self.may_answer().await {
                    return Reply::new(request, ResponseCode::ServFail);
                }
                let found = ip.and_then(|ip| {
                    let tables: Arc<Tables> = self.agent.store.read();
                    let q = Question {
                        name: query.name(),
                        qtype,
                        domain: &s.domain,
                    };
                    lookup::reverse(&tables, s, &q, ip)
                });
                match found {
                    Some(mut answer) => {
                        if answer.answers.is_empty() {
                            answer
                                .authorities
                                .push(lookup::soa(s, &s.domain, now_secs()));
                        }
                        self.fit(request, query, edns, answer)
                    }
                    None if !self.recursors.is_empty() => self.recurse(request, query).await,
                    None => {
                        let mut reply = Reply::new(request, ResponseCode::NXDomain);
                        reply.metadata.authoritative = true;
                        reply
                            .authorities
                            .push(lookup::soa(s, &s.domain, now_secs()));
                        reply
                    }
                }
            }
            Zone::Outside if self.recursors.is_empty() => {
                Reply::new(request, ResponseCode::Refused)
            }
            Zone::Outside => self.recurse(request, query).await,
        }
    }

    /// Forwards the question to the recursors; SERVFAIL when none answers.
    async fn recurse(&self, request: &Request, query: &Query) -> Reply {
        match self
            .recursors
            .forward(query, request.metadata.checking_disabled)
            .await
        {
            Ok(upstream) => {
                let mut reply = Reply::new(request, upstream.metadata.response_code);
                reply.metadata.recursion_available = true;
                reply.answers = upstream.answers;
                reply.authorities = upstream.authorities;
                reply.additionals = upstream
                    .additionals
                    .into_iter()
                    .filter(|r| r.record_type() != RecordType::OPT)
                    .collect();
                reply
            }
            Err(e) => {
                tracing::debug!(name = %query.name(), error = %e, "DNS: recursion failed");
                let mut reply = Reply::new(request, ResponseCode::ServFail);
                reply.metadata.recursion_available = true;
                reply
            }
        }
    }

    /// Turns an answer into a reply that fits the transport (see the module docs).
    fn fit(&self, request: &Request, query: &Query, edns: Option<&Edns>, a: Answer) -> Reply {
        let mut reply = Reply::new(request, a.rcode);
        reply.metadata.authoritative = true;
        reply.metadata.recursion_available = !self.recursors.is_empty();
        let total = a.answers.len();
        let (limit, udp) = match request.protocol() {
            Protocol::Udp => (
                usize::from(edns.map_or(MIN_UDP_SIZE, Edns::max_payload)),
                true,
            ),
            _ => (MAX_TCP_SIZE, false),
        };
        let mut n = total;
        if udp && limit <= usize::from(MIN_UDP_SIZE) {
            n = n.min(self.settings.udp_answer_limit().max(1));
        }
        let mut authorities = a.authorities.clone();
        let size = |n: usize, auth: &[Record]| -> usize {
            // Extras shared by several answers are counted once each: still an upper bound.
            let extras = a.extras_of(n).chain(&a.additionals);
            let records = a.answers[..n].iter().chain(auth).chain(extras);
            if let Some(bound) = upper_bound(query, records, edns.is_some()) {
                if bound <= limit {
                    return bound;
                }
            }
            let additional = a.additional_section(n);
            encoded_len(
                &reply.metadata,
                query,
                &a.answers[..n],
                auth,
                &additional,
                edns,
            )
        };
        if size(n, &authorities) > limit {
            authorities.clear();
            if n > 1 && size(n, &authorities) > limit {
                // The largest count that fits, at least one.
                let (mut lo, mut hi) = (1, n);
                while lo < hi {
                    let mid = (lo + hi).div_ceil(2);
                    if size(mid, &authorities) <= limit {
                        lo = mid;
                    } else {
                        hi = mid - 1;
                    }
                }
                n = lo;
            }
        }
        if n < total {
            tracing::debug!(
                name = %query.name(),
                kept = n,
                of = total,
                udp,
                "DNS answer too large, trimmed"
            );
            if udp && self.settings.enable_truncate {
                reply.metadata.truncation = true;
            }
        }
        reply.additionals = a.additional_section(n);
        reply.answers = a.answers;
        reply.answers.truncate(n);
        reply.authorities = authorities;
        reply
    }
}

impl Handler {
    /// A client agent's answer for its domain: the query's own bytes answered by a server
    /// (over the server RPC), taken apart again so the answer goes out the way this agent's
    /// query came in. SERVFAIL when no server answers.
    async fn forwarded(&self, request: &Request) -> Reply {
        let tcp = request.protocol() == Protocol::Tcp;
        let bytes = match self
            .agent
            .forward_dns(request.as_slice().to_vec(), tcp)
            .await
        {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Reply::new(request, ResponseCode::ServFail),
            Err(e) => {
                tracing::debug!(error = %e, "DNS: no server answered a forwarded query");
                return Reply::new(request, ResponseCode::ServFail);
            }
        };
        match Message::from_vec(&bytes) {
            Ok(m) => {
                let mut metadata = m.metadata;
                metadata.id = request.metadata.id;
                Reply {
                    metadata,
                    answers: m.answers,
                    authorities: m.authorities,
                    additionals: m.additionals,
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "DNS: a server's answer did not decode");
                Reply::new(request, ResponseCode::ServFail)
            }
        }
    }

    /// A server's answer to a query a client agent forwarded (`bytes` as the client received
    /// them), encoded as it would have been sent over UDP (bounded by the query's size) or TCP.
    /// `None` when the bytes are not a query.
    pub async fn answer_bytes(&self, bytes: Vec<u8>, tcp: bool) -> Option<Vec<u8>> {
        let src = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        let protocol = if tcp { Protocol::Tcp } else { Protocol::Udp };
        let request = Request::from_bytes(bytes, src, protocol).ok()?;
        let edns = response_edns(&request);
        let reply = self.reply(&request, edns.as_ref()).await;
        if !tcp {
            return encode_udp(&request, edns.as_ref(), &reply);
        }
        let builder = MessageResponseBuilder::new(&request.queries, edns.as_ref());
        let response = builder.build(
            reply.metadata,
            reply.answers.iter(),
            reply.authorities.iter(),
            std::iter::empty(),
            reply.additionals.iter(),
        );
        let mut buf = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut buf);
        encoder.set_max_size(MAX_TCP_SIZE as u16);
        response.destructive_emit(&mut encoder).ok()?;
        Some(buf)
    }
}

/// The reply encoded for UDP (bounded by the client's size, as hickory's UDP path does).
fn encode_udp(request: &Request, edns: Option<&Edns>, reply: &Reply) -> Option<Vec<u8>> {
    let builder = MessageResponseBuilder::new(&request.queries, edns);
    let response = builder.build(
        reply.metadata,
        reply.answers.iter(),
        reply.authorities.iter(),
        std::iter::empty(),
        reply.additionals.iter(),
    );
    let max = edns.map_or(MIN_UDP_SIZE, |e| e.max_payload().max(MIN_UDP_SIZE));
    let mut buf = Vec::with_capacity(512);
    let mut encoder = BinEncoder::new(&mut buf);
    encoder.set_max_size(max);
    response.destructive_emit(&mut encoder).ok()?;
    Some(buf)
}

/// An upper bound of the encoded size (no name compression counted), or `None` when a record
/// type is not one this server produces.
fn upper_bound<'a>(
    query: &Query,
    records: impl Iterator<Item = &'a Record>,
    edns: bool,
) -> Option<usize> {
    let name = |n: &hickory_server::proto::rr::Name| n.len() + 1;
    let mut total = 12 + name(query.name()) + 4 + if edns { 11 } else { 0 };
    for r in records {
        let rdata = match &r.data {
            RData::A(_) => 4,
            RData::AAAA(_) => 16,
            RData::SRV(srv) => 6 + name(&srv.target),
            RData::CNAME(c) => name(&c.0),
            RData::PTR(p) => name(&p.0),
            RData::NS(ns) => name(&ns.0),
            RData::SOA(soa) => name(&soa.mname) + name(&soa.rname) + 20,
            RData::TXT(txt) => txt.txt_data.iter().map(|s| 1 + s.len()).sum(),
            _ => return None,
        };
        total += name(&r.name) + 10 + rdata;
    }
    Some(total)
}

/// The exact encoded size of a reply with these sections (`usize::MAX` if it cannot be encoded).
fn encoded_len(
    metadata: &Metadata,
    query: &Query,
    answers: &[Record],
    authorities: &[Record],
    additionals: &[Record],
    edns: Option<&Edns>,
) -> usize {
    let mut buf = Vec::with_capacity(1024);
    let mut encoder = BinEncoder::new(&mut buf);
    match emit_message_parts(
        metadata,
        &mut std::iter::once(query),
        &mut answers.iter(),
        &mut authorities.iter(),
        &mut additionals.iter(),
        edns,
        None,
        &mut encoder,
    ) {
        Ok(_) => encoder.len(),
        Err(_) => usize::MAX,
    }
}
