//! LAN gossip membership: foca's SWIM over UDP on `-bind`:`-serf-lan-port`, producing the
//! [`MembershipView`](crate::membership::MembershipView) every other part of the agent reads.
//!
//! One task (the runner) owns the foca instance, the socket and the timers; everything else
//! talks to it through a [`Gossip`] handle (join, leave, force-leave, user payloads) and reads
//! the published member set. foca says who is up and who is down; this module adds what SWIM
//! alone does not know: `left` versus `failed` (a leaving member broadcasts its intent first),
//! force-leave, and reaping (failed members after `reconnect_timeout`, left ones after
//! [`LEFT_TIMEOUT`]). Tags travel inside the member identity. With `-encrypt` every packet is
//! sealed with AES-GCM ([`crypto`]); packets that do not open are dropped and counted.
//!
//! Hook for user events: [`Gossip::broadcast_user`] disseminates an opaque payload to every
//! member once (a custom foca broadcast); [`Gossip::subscribe_user`] receives them, our own
//! included.

pub mod crypto;
pub mod join;
pub mod wire;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroU8, NonZeroUsize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use foca::{AccumulatingRuntime, Foca, OwnedNotification, PostcardCodec, Timer};
use rand_foca::SeedableRng;
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::GossipLan;
use crate::error::Error;
use crate::membership::{MemberInfo, MemberSet, MemberStatus, MembershipView};
use wire::{Broadcast, Handler, NodeIdentity};

/// How long a `left` member stays listed (serf's tombstone timeout).
pub const LEFT_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// How long a join waits for the other side's answer.
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a leaving agent keeps gossiping its intent before it goes.
const LEAVE_PROPAGATE: Duration = Duration::from_millis(800);
/// How often a join announces again to targets that have not answered.
const REANNOUNCE: Duration = Duration::from_millis(500);
/// Leave intents remembered for members not (yet) known, at most.
const MAX_LEAVE_INTENTS: usize = 4096;
/// The default gossip port when a join address has none.
pub const DEFAULT_PORT: u16 = 8301;

/// What the runner needs to start.
#[derive(Debug)]
pub struct Settings {
    pub name: String,
    /// Where other members reach this one (advertise address, gossip port).
    pub advertise: SocketAddr,
    pub tags: BTreeMap<String, String>,
    pub key: Option<crypto::Keyring>,
    /// Failed members are forgotten after this long (`reconnect_timeout`).
    pub reconnect_timeout: Duration,
    /// Probe, suspicion and dissemination timings (`gossip_lan`).
    pub timings: GossipLan,
}

/// Suspicion and retransmissions for a pool of `members` (this agent included), as memberlist
/// scales them: suspicion lasts `suspicion_mult` × max(1, log10(n)) probe intervals, and each
/// update is sent `retransmit_mult` × ceil(log10(n + 1)) times.
fn scaled(t: &GossipLan, members: usize) -> (Duration, NonZeroU8) {
    let n = members.max(1) as f64;
    // `try_from`: an absurd configured interval saturates instead of panicking.
    let suspicion = Duration::try_from_secs_f64(
        t.probe_interval.as_secs_f64() * f64::from(t.suspicion_mult) * n.log10().max(1.0),
    )
    .unwrap_or(Duration::MAX);
    let tx = f64::from(t.retransmit_mult) * (n + 1.0).log10().ceil();
    let tx = NonZeroU8::new(tx.clamp(1.0, 255.0) as u8).unwrap_or(NonZeroU8::MIN);
    (suspicion, tx)
}

/// foca's configuration for `t` and a pool of `members`.
fn foca_config(t: &GossipLan, members: usize, max_packet: usize) -> foca::Config {
    let mut config = foca::Config::new_lan(NonZeroU32::MIN);
    config.max_packet_size = NonZeroUsize::new(max_packet).unwrap_or(NonZeroUsize::MIN);
    config.probe_period = t.probe_interval;
    config.probe_rtt = t.probe_timeout;
    config.periodic_gossip = NonZeroUsize::new(t.gossip_nodes as usize)
        .filter(|_| !t.gossip_interval.is_zero())
        .map(|num_members| foca::PeriodicParams {
            frequency: t.gossip_interval,
            num_members,
        });
    let (suspicion, tx) = scaled(t, members);
    config.suspect_to_down_after = suspicion;
    config.max_transmissions = tx;
    config
}

type FocaT = Foca<NodeIdentity, PostcardCodec, rand_foca::rngs::StdRng, Handler>;

enum Cmd {
    Join {
        targets: Vec<SocketAddr>,
        reply: oneshot::Sender<Vec<SocketAddr>>,
    },
    Leave(oneshot::Sender<()>),
    ForceLeave {
        node: String,
        prune: bool,
        reply: oneshot::Sender<Result<(), Error>>,
    },
    User(Vec<u8>, oneshot::Sender<Result<(), Error>>),
}

/// The handle the agent keeps: cheap to clone.
#[derive(Clone)]
pub struct Gossip {
    cmds: mpsc::Sender<Cmd>,
    view: MembershipView,
    user: broadcast::Sender<Bytes>,
    local_addr: SocketAddr,
    name: String,
    encrypted: bool,
    /// Packets dropped because they did not decrypt or decode.
    dropped: Arc<AtomicU64>,
}

impl Gossip {
    /// Starts the runner on an already-bound UDP socket; it stops with `shutdown`.
    pub fn start(
        settings: Settings,
        socket: UdpSocket,
        shutdown: CancellationToken,
    ) -> Result<(Gossip, tokio::task::JoinHandle<()>), Error> {
        let local_addr = socket.local_addr()?;
        let bump = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(1);
        let identity = NodeIdentity {
            name: settings.name.clone(),
            addr: settings.advertise,
            bump,
            tags: settings.tags.clone(),
        };
        let overhead = if settings.key.is_some() {
            crypto::OVERHEAD
        } else {
            0
        };
        let mut config = foca_config(&settings.timings, 1, 1400 - overhead);
        config.remove_down_after = Some(settings.reconnect_timeout);
        let (btx, brx) = std::sync::mpsc::channel();
        let rng = rand_foca::rngs::StdRng::seed_from_u64(rand::random());
        let foca = Foca::with_custom_broadcast(
            identity,
            config.clone(),
            rng,
            PostcardCodec,
            Handler::new(btx),
        );
        let (cmds, cmd_rx) = mpsc::channel(64);
        let (user, _) = broadcast::channel(256);
        let me = MemberInfo {
            name: settings.name.clone(),
            addr: settings.advertise.ip(),
            port: settings.advertise.port(),
            tags: settings.tags.clone(),
            status: MemberStatus::Alive,
        };
        let (view_tx, view) = watch::channel(Arc::new(vec![me]));
        let name = settings.name.clone();
        let encrypted = settings.key.is_some();
        let dropped = Arc::new(AtomicU64::new(0));
        let runner = Runner {
            foca,
            rt: AccumulatingRuntime::new(),
            socket,
            key: settings.key,
            timers: BinaryHeap::new(),
            timer_events: HashMap::new(),
            timer_seq: 0,
            members: BTreeMap::new(),
            leave_intents: HashMap::new(),
            joins: Vec::new(),
            self_status: MemberStatus::Alive,
            name: settings.name,
            advertise: settings.advertise,
            tags: settings.tags,
            reconnect_timeout: settings.reconnect_timeout,
            timings: settings.timings,
            config,
            tuned_for: 1,
            view_tx,
            user: user.clone(),
            broadcasts: brx,
            dropped: dropped.clone(),
            last_drop_log: None,
        };
        let task = tokio::spawn(runner.run(cmd_rx, shutdown));
        Ok((
            Gossip {
                cmds,
                view,
                user,
                local_addr,
                name,
                encrypted,
                dropped,
            },
            task,
        ))
    }

    /// The live membership view (the seam other components read).
    pub fn view(&self) -> MembershipView {
        self.view.clone()
    }

    /// Every member known, this agent included, sorted by name.
    pub fn members(&self) -> MemberSet {
        self.view.borrow().clone()
    }

    /// The `serf_lan` section of `/v1/agent/self`'s `Stats`.
    pub fn stats(&self) -> BTreeMap<String, String> {
        let set = self.members();
        let count = |s: MemberStatus| set.iter().filter(|m| m.status == s).count().to_string();
        BTreeMap::from([
            ("members".to_string(), set.len().to_string()),
            ("failed".to_string(), count(MemberStatus::Failed)),
            ("left".to_string(), count(MemberStatus::Left)),
            ("encrypted".to_string(), self.encrypted.to_string()),
            (
                "dropped_packets".to_string(),
                self.dropped.load(Ordering::Relaxed).to_string(),
            ),
        ])
    }

    /// The address the gossip socket is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Joins the members at `addrs` (`ip`, `ip:port`, `host`, `host:port`; port 8301 when
    /// none). Answers how many answered; an error naming each address that did not.
    pub async fn join(&self, addrs: &[String]) -> Result<usize, Error> {
        let mut targets = Vec::new();
        let mut errors = Vec::new();
        for a in addrs {
            match resolve(a).await {
                Ok(found) => targets.extend(found),
                Err(e) => errors.push(format!("Failed to resolve {a}: {e}")),
            }
        }
        let mut joined = 0;
        if !targets.is_empty() {
            let (reply, rx) = oneshot::channel();
            self.cmds
                .send(Cmd::Join {
                    targets: targets.clone(),
                    reply,
                })
                .await
                .map_err(|_| stopped())?;
            let answered = rx.await.map_err(|_| stopped())?;
            joined = answered.len();
            for t in targets.iter().filter(|t| !answered.contains(t)) {
                errors.push(format!(
                    "Failed to join {t}: no answer within {}s (is an agent listening there, \
                     with the same gossip encryption key?)",
                    JOIN_TIMEOUT.as_secs()
                ));
            }
        }
        if joined == 0 {
            let list: Vec<String> = errors.iter().map(|e| format!("\t* {e}")).collect();
            return Err(Error::Gossip(format!(
                "{} error{} occurred:\n{}\n",
                errors.len(),
                if errors.len() == 1 { "" } else { "s" },
                list.join("\n")
            )));
        }
        Ok(joined)
    }

    /// Leaves gracefully: the others see this member as `left`. Returns once the intent has
    /// had time to spread.
    pub async fn leave(&self) -> Result<(), Error> {
        let (reply, rx) = oneshot::channel();
        self.cmds
            .send(Cmd::Leave(reply))
            .await
            .map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())
    }

    /// Whether this agent has left (or is leaving) the pool.
    pub fn has_left(&self) -> bool {
        self.view.borrow().iter().any(|m| {
            m.name == self.name && matches!(m.status, MemberStatus::Left | MemberStatus::Leaving)
        })
    }

    /// `force-leave`: a failed member becomes `left` everywhere (with `prune`, it is
    /// forgotten at once). An unknown node is an error.
    pub async fn force_leave(&self, node: &str, prune: bool) -> Result<(), Error> {
        let (reply, rx) = oneshot::channel();
        self.cmds
            .send(Cmd::ForceLeave {
                node: node.to_string(),
                prune,
                reply,
            })
            .await
            .map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }

    /// Disseminates an opaque payload to every member once (the user-event hook).
    pub async fn broadcast_user(&self, payload: Vec<u8>) -> Result<(), Error> {
        let (reply, rx) = oneshot::channel();
        self.cmds
            .send(Cmd::User(payload, reply))
            .await
            .map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }

    /// Receives every user payload that reaches this member (its own included).
    pub fn subscribe_user(&self) -> broadcast::Receiver<Bytes> {
        self.user.subscribe()
    }
}

fn stopped() -> Error {
    Error::Gossip("gossip is not running".into())
}

/// `ip`, `ip:port`, `[v6]:port`, `host`, `host:port` → socket addresses.
async fn resolve(addr: &str) -> Result<Vec<SocketAddr>, String> {
    if let Ok(sa) = addr.parse::<SocketAddr>() {
        return Ok(vec![sa]);
    }
    if let Ok(ip) = addr.trim_matches(['[', ']']).parse::<std::net::IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, DEFAULT_PORT)]);
    }
    let with_port = if addr
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        addr.to_string()
    } else {
        format!("{addr}:{DEFAULT_PORT}")
    };
    let found: Vec<SocketAddr> = tokio::net::lookup_host(with_port)
        .await
        .map_err(|e| e.to_string())?
        .collect();
    match found.first() {
        // One address per name, as memberlist does.
        Some(first) => Ok(vec![*first]),
        None => Err("no addresses".into()),
    }
}

struct Record {
    id: NodeIdentity,
    status: MemberStatus,
    since: Instant,
}

struct PendingJoin {
    targets: Vec<SocketAddr>,
    answered: Vec<SocketAddr>,
    deadline: Instant,
    /// When to announce again to the targets that have not answered (a lost datagram, or an
    /// agent still starting, must not cost a whole retry interval).
    reannounce: Instant,
    reply: oneshot::Sender<Vec<SocketAddr>>,
}

struct Runner {
    foca: FocaT,
    rt: AccumulatingRuntime<NodeIdentity>,
    socket: UdpSocket,
    key: Option<crypto::Keyring>,
    timers: BinaryHeap<Reverse<(Instant, u64)>>,
    timer_events: HashMap<u64, Timer<NodeIdentity>>,
    timer_seq: u64,
    /// Other members by name.
    members: BTreeMap<String, Record>,
    /// Leave intents heard: name → the identity `bump` that announced it.
    leave_intents: HashMap<String, u64>,
    joins: Vec<PendingJoin>,
    self_status: MemberStatus,
    name: String,
    advertise: SocketAddr,
    tags: BTreeMap<String, String>,
    reconnect_timeout: Duration,
    timings: GossipLan,
    /// The configuration foca runs with (foca has no getter), and the pool size it was
    /// scaled for.
    config: foca::Config,
    tuned_for: usize,
    view_tx: watch::Sender<MemberSet>,
    user: broadcast::Sender<Bytes>,
    broadcasts: std::sync::mpsc::Receiver<Broadcast>,
    dropped: Arc<AtomicU64>,
    last_drop_log: Option<Instant>,
}

impl Runner {
    async fn run(mut self, mut cmds: mpsc::Receiver<Cmd>, shutdown: CancellationToken) {
        let mut buf = vec![0u8; 65536];
        let mut reap = tokio::time::interval(Duration::from_secs(15));
        reap.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let far = Duration::from_secs(3600);
        loop {
            let next_timer = self
                .timers
                .peek()
                .map(|Reverse((at, _))| *at)
                .unwrap_or_else(|| Instant::now() + far);
            let next_join = self
                .joins
                .iter()
                .map(|j| j.deadline.min(j.reannounce))
                .min()
                .unwrap_or_else(|| Instant::now() + far);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                received = self.socket.recv_from(&mut buf) => match received {
                    Ok((n, from)) => self.on_packet(&buf[..n], from),
                    Err(e) => {
                        // Never spin on a socket that keeps failing.
                        tracing::debug!(error = %e, "gossip: receive failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                },
                cmd = cmds.recv() => match cmd {
                    Some(cmd) => self.on_cmd(cmd).await,
                    None => return,
                },
                _ = tokio::time::sleep_until(next_timer) => self.fire_timers(),
                _ = tokio::time::sleep_until(next_join) => self.expire_joins(),
                _ = reap.tick() => self.reap(),
            }
            self.drain().await;
        }
    }

    fn on_packet(&mut self, packet: &[u8], from: SocketAddr) {
        let opened;
        let data = match &self.key {
            Some(key) => match key.open(packet) {
                Some(plain) => {
                    opened = plain;
                    &opened[..]
                }
                None => {
                    let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                    let now = Instant::now();
                    if self
                        .last_drop_log
                        .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(10))
                    {
                        self.last_drop_log = Some(now);
                        tracing::warn!(
                            %from,
                            dropped_total = dropped,
                            "gossip: dropped a packet that does not decrypt with this agent's \
                             key (another -encrypt key, or none)"
                        );
                    }
                    return;
                }
            },
            None => packet,
        };
        if let Err(e) = self.foca.handle_data(data, &mut self.rt) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%from, error = %e, "gossip: ignored a packet");
        }
    }

    async fn on_cmd(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Join { targets, reply } => {
                let mut pending = PendingJoin {
                    targets: targets.clone(),
                    answered: Vec::new(),
                    deadline: Instant::now() + JOIN_TIMEOUT,
                    reannounce: Instant::now() + REANNOUNCE,
                    reply,
                };
                for t in &targets {
                    // Already a member (or ourselves): nothing to announce.
                    if self.alive_at(*t) || *t == self.advertise {
                        pending.answered.push(*t);
                    } else if let Err(e) = self.foca.announce(NodeIdentity::probe(*t), &mut self.rt)
                    {
                        tracing::warn!(target = %t, error = %e, "gossip: announce failed");
                    }
                }
                if pending.answered.len() == pending.targets.len() {
                    let _ = pending.reply.send(pending.answered);
                } else {
                    self.joins.push(pending);
                }
            }
            Cmd::Leave(reply) => {
                if self.self_status == MemberStatus::Alive {
                    self.self_status = MemberStatus::Leaving;
                    self.publish();
                    let bump = self.foca.identity().bump;
                    self.add_broadcast(&Broadcast::Leave {
                        name: self.name.clone(),
                        bump,
                    });
                    if let Err(e) = self.foca.gossip(&mut self.rt) {
                        tracing::debug!(error = %e, "gossip: leave gossip");
                    }
                    self.drain().await;
                    // Keep gossiping (the intent rides on every message) for a moment.
                    let until = Instant::now() + LEAVE_PROPAGATE;
                    while Instant::now() < until {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        if let Err(e) = self.foca.gossip(&mut self.rt) {
                            tracing::debug!(error = %e, "gossip: leave gossip");
                        }
                        self.drain().await;
                    }
                    if let Err(e) = self.foca.leave_cluster(&mut self.rt) {
                        tracing::warn!(error = %e, "gossip: leaving the cluster");
                    }
                    self.self_status = MemberStatus::Left;
                    tracing::info!("gossip: left the LAN pool");
                }
                self.drain().await;
                let _ = reply.send(());
            }
            Cmd::ForceLeave { node, prune, reply } => {
                let known = node == self.name || self.members.contains_key(&node);
                if !known {
                    let _ = reply.send(Err(Error::Gossip(format!(
                        "agent: No node found with name '{node}'"
                    ))));
                    return;
                }
                let msg = Broadcast::ForceLeave {
                    name: node,
                    prune,
                    id: rand::random(),
                };
                self.add_broadcast(&msg);
                if let Err(e) = self.foca.gossip(&mut self.rt) {
                    tracing::debug!(error = %e, "gossip: force-leave gossip");
                }
                let _ = reply.send(Ok(()));
            }
            Cmd::User(payload, reply) => {
                let msg = Broadcast::User {
                    id: rand::random(),
                    payload,
                };
                let result = match msg.encode() {
                    Ok(bytes) => self
                        .foca
                        .add_broadcast(&bytes)
                        .map(|_| ())
                        .map_err(|e| Error::Gossip(format!("user payload not sent: {e}"))),
                    Err(e) => Err(Error::Gossip(e.to_string())),
                };
                if result.is_ok() {
                    if let Err(e) = self.foca.broadcast(&mut self.rt) {
                        tracing::debug!(error = %e, "gossip: user broadcast");
                    }
                }
                let _ = reply.send(result);
            }
        }
    }

    fn add_broadcast(&mut self, msg: &Broadcast) {
        match msg.encode() {
            Ok(bytes) => {
                if let Err(e) = self.foca.add_broadcast(&bytes) {
                    tracing::warn!(error = %e, "gossip: broadcast not queued");
                }
            }
            Err(e) => tracing::warn!(error = %e, "gossip: broadcast not encoded"),
        }
    }

    fn alive_at(&self, addr: SocketAddr) -> bool {
        self.members
            .values()
            .any(|r| r.id.addr == addr && r.status == MemberStatus::Alive)
    }

    fn fire_timers(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((at, seq))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            if let Some(timer) = self.timer_events.remove(&seq) {
                if let Err(e) = self.foca.handle_timer(timer, &mut self.rt) {
                    tracing::debug!(error = %e, "gossip: timer");
                }
            }
        }
    }

    fn expire_joins(&mut self) {
        let now = Instant::now();
        let mut again = Vec::new();
        for j in &mut self.joins {
            if j.reannounce <= now && j.deadline > now {
                j.reannounce = now + REANNOUNCE;
                again.extend(
                    j.targets
                        .iter()
                        .filter(|t| !j.answered.contains(t))
                        .copied(),
                );
            }
        }
        for t in again {
            if let Err(e) = self.foca.announce(NodeIdentity::probe(t), &mut self.rt) {
                tracing::debug!(target = %t, error = %e, "gossip: announce failed");
            }
        }
        let (done, waiting): (Vec<_>, Vec<_>) =
            self.joins.drain(..).partition(|j| j.deadline <= now);
        self.joins = waiting;
        for j in done {
            let _ = j.reply.send(j.answered);
        }
    }

    /// Forgets failed members after `reconnect_timeout` and left ones after [`LEFT_TIMEOUT`].
    fn reap(&mut self) {
        let now = Instant::now();
        let reconnect = self.reconnect_timeout;
        let before = self.members.len();
        self.members.retain(|name, r| {
            let limit = match r.status {
                MemberStatus::Failed => reconnect,
                MemberStatus::Left => LEFT_TIMEOUT,
                _ => return true,
            };
            let keep = now.duration_since(r.since) < limit;
            if !keep {
                tracing::info!(member = %name, status = r.status.as_str(), "gossip: reaped member");
            }
            keep
        });
        if self.members.len() != before {
            self.publish();
        }
    }

    /// Sends what foca wants sent, schedules its timers, applies its notifications and the
    /// broadcasts it accepted, then publishes the member set if it changed.
    async fn drain(&mut self) {
        while let Some((to, data)) = self.rt.to_send() {
            let packet = match &self.key {
                Some(key) => match key.seal(&data) {
                    Some(p) => p,
                    None => continue,
                },
                None => data.to_vec(),
            };
            if let Err(e) = self.socket.send_to(&packet, to.addr).await {
                tracing::debug!(to = %to.addr, error = %e, "gossip: send failed");
            }
        }
        let now = Instant::now();
        while let Some((after, timer)) = self.rt.to_schedule() {
            self.timer_seq += 1;
            // A timer beyond a year (an absurd configured interval) waits a year.
            let at = now
                .checked_add(after.min(Duration::from_secs(365 * 24 * 3600)))
                .unwrap_or(now);
            self.timers.push(Reverse((at, self.timer_seq)));
            self.timer_events.insert(self.timer_seq, timer);
        }
        let mut changed = false;
        while let Some(n) = self.rt.to_notify() {
            changed |= self.on_notification(n);
        }
        while let Ok(msg) = self.broadcasts.try_recv() {
            changed |= self.on_broadcast(msg);
        }
        if changed {
            self.publish();
            self.settle_joins();
            self.retune();
        }
    }

    fn on_notification(&mut self, n: OwnedNotification<NodeIdentity>) -> bool {
        let now = Instant::now();
        match n {
            OwnedNotification::MemberUp(id) => {
                if id.name.is_empty() {
                    return false;
                }
                if let Some(r) = self.members.get(&id.name) {
                    if r.id.bump > id.bump && r.status == MemberStatus::Alive {
                        return false;
                    }
                }
                tracing::info!(member = %id.name, addr = %id.addr, "gossip: member joined");
                self.members.insert(
                    id.name.clone(),
                    Record {
                        id,
                        status: MemberStatus::Alive,
                        since: now,
                    },
                );
                true
            }
            OwnedNotification::MemberDown(id) => {
                let left = self.leave_intents.get(&id.name) == Some(&id.bump);
                let Some(r) = self.members.get_mut(&id.name) else {
                    return false;
                };
                if r.id.bump != id.bump {
                    return false;
                }
                r.status = if left {
                    MemberStatus::Left
                } else {
                    MemberStatus::Failed
                };
                r.since = now;
                if left {
                    tracing::info!(member = %id.name, "gossip: member left");
                } else {
                    tracing::warn!(member = %id.name, addr = %id.addr, "gossip: member failed");
                }
                true
            }
            OwnedNotification::Rename(old, new) => {
                // The same address now belongs to a newer identity (a restart, a renewal, or
                // another node name): the old record gives way; MemberUp/MemberDown follow
                // when the active state changed too.
                let status = match self.members.get(&old.name) {
                    Some(r) if r.id == old => {
                        let status = r.status;
                        self.members.remove(&old.name);
                        status
                    }
                    _ => MemberStatus::Alive,
                };
                if new.name.is_empty() || new.name == self.name {
                    return true;
                }
                self.members.insert(
                    new.name.clone(),
                    Record {
                        id: new,
                        status,
                        since: now,
                    },
                );
                true
            }
            OwnedNotification::Rejoin(id) => {
                tracing::info!(
                    bump = id.bump,
                    "gossip: declared down by the others; rejoined"
                );
                false
            }
            OwnedNotification::Idle => {
                tracing::debug!("gossip: no other members");
                false
            }
            OwnedNotification::Defunct => {
                if self.self_status == MemberStatus::Alive {
                    tracing::warn!("gossip: this agent was declared down by the cluster");
                }
                false
            }
            _ => false,
        }
    }

    fn on_broadcast(&mut self, msg: Broadcast) -> bool {
        match msg {
            Broadcast::Leave { name, bump } => {
                if name == self.name {
                    return false;
                }
                if self.leave_intents.len() >= MAX_LEAVE_INTENTS {
                    // Only intents about known members matter; a flood of others is dropped.
                    let members = &self.members;
                    self.leave_intents.retain(|n, _| members.contains_key(n));
                }
                if self.leave_intents.len() < MAX_LEAVE_INTENTS || self.members.contains_key(&name)
                {
                    self.leave_intents.insert(name.clone(), bump);
                }
                match self.members.get_mut(&name) {
                    // The leaver's own incarnation, or a newer one than we have heard of yet
                    // (it renewed its identity, and the renewal has not reached us): either
                    // way that member is leaving. An older incarnation's leave is stale.
                    Some(r) if r.id.bump <= bump => {
                        r.status = match r.status {
                            MemberStatus::Alive | MemberStatus::Leaving => MemberStatus::Leaving,
                            _ => MemberStatus::Left,
                        };
                        true
                    }
                    _ => false,
                }
            }
            Broadcast::ForceLeave { name, prune, .. } => {
                let Some(r) = self.members.get_mut(&name) else {
                    return false;
                };
                match r.status {
                    MemberStatus::Failed | MemberStatus::Left | MemberStatus::Leaving => {
                        tracing::info!(member = %name, prune, "gossip: force-leave");
                        if prune {
                            self.members.remove(&name);
                        } else if r.status != MemberStatus::Left {
                            r.status = MemberStatus::Left;
                            r.since = Instant::now();
                        }
                        true
                    }
                    MemberStatus::Alive => false,
                }
            }
            Broadcast::User { payload, .. } => {
                let _ = self.user.send(Bytes::from(payload));
                false
            }
        }
    }

    fn settle_joins(&mut self) {
        let mut i = 0;
        while i < self.joins.len() {
            let targets = self.joins[i].targets.clone();
            for t in targets {
                if !self.joins[i].answered.contains(&t) && self.alive_at(t) {
                    self.joins[i].answered.push(t);
                }
            }
            if self.joins[i].answered.len() == self.joins[i].targets.len() {
                let j = self.joins.swap_remove(i);
                let _ = j.reply.send(j.answered);
            } else {
                i += 1;
            }
        }
    }

    /// Rescales suspicion and retransmissions when the number of live members changed.
    fn retune(&mut self) {
        let members = self.foca.iter_members().count() + 1;
        if members == self.tuned_for {
            return;
        }
        let (suspicion, tx) = scaled(&self.timings, members);
        let mut config = self.config.clone();
        config.suspect_to_down_after = suspicion;
        config.max_transmissions = tx;
        match self.foca.set_config(config.clone()) {
            Ok(()) => {
                self.config = config;
                self.tuned_for = members;
                tracing::debug!(
                    members,
                    ?suspicion,
                    retransmit = tx.get(),
                    "gossip: retuned"
                );
            }
            Err(e) => tracing::warn!(error = %e, "gossip: could not retune"),
        }
    }

    fn publish(&self) {
        let mut set: Vec<MemberInfo> = self
            .members
            .iter()
            .filter(|(name, _)| **name != self.name)
            .map(|(name, r)| MemberInfo {
                name: name.clone(),
                addr: r.id.addr.ip(),
                port: r.id.addr.port(),
                tags: r.id.tags.clone(),
                status: r.status,
            })
            .collect();
        set.push(MemberInfo {
            name: self.name.clone(),
            addr: self.advertise.ip(),
            port: self.advertise.port(),
            tags: self.tags.clone(),
            status: self.self_status,
        });
        set.sort_by(|a, b| a.name.cmp(&b.name));
        self.view_tx.send_if_modified(|current| {
            if **current == set {
                false
            } else {
                *current = Arc::new(set);
                true
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn node(name: &str, role: &str) -> (Gossip, CancellationToken) {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let addr = socket.local_addr().expect("addr");
        let stop = CancellationToken::new();
        let settings = Settings {
            name: name.to_string(),
            advertise: addr,
            tags: BTreeMap::from([("role".to_string(), role.to_string())]),
            key: None,
            reconnect_timeout: Duration::from_secs(3600),
            timings: GossipLan::default(),
        };
        let (g, _task) = Gossip::start(settings, socket, stop.clone()).expect("start");
        (g, stop)
    }

    /// Waits (bounded) until `g`'s view satisfies `f`.
    async fn until(g: &Gossip, what: &str, f: impl Fn(&[MemberInfo]) -> bool) {
        let mut view = g.view();
        let waited = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                if f(&view.borrow_and_update()) {
                    return;
                }
                if view.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
        assert!(waited.is_ok(), "{what}: {:?}", g.members());
    }

    fn status(set: &[MemberInfo], name: &str) -> Option<MemberStatus> {
        set.iter().find(|m| m.name == name).map(|m| m.status)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn join_tags_user_payloads_leave_and_force_leave() {
        let (a, stop_a) = node("a", "consul").await;
        let (b, stop_b) = node("b", "node").await;
        let (c, stop_c) = node("c", "node").await;
        assert_eq!(
            b.join(&[a.local_addr().to_string()]).await.expect("join"),
            1
        );
        assert_eq!(
            c.join(&[b.local_addr().to_string()]).await.expect("join"),
            1
        );
        for g in [&a, &b, &c] {
            until(g, "all alive", |set| {
                set.len() == 3 && set.iter().all(|m| m.status == MemberStatus::Alive)
            })
            .await;
        }
        // Tags travel with the member.
        let on_c = c.members();
        let a_on_c = on_c.iter().find(|m| m.name == "a").expect("a");
        assert!(a_on_c.is_server());
        assert_eq!(a_on_c.port, a.local_addr().port());
        // Joining a member already known answers at once.
        assert_eq!(
            c.join(&[a.local_addr().to_string()]).await.expect("join"),
            1
        );

        // User payloads reach everybody once.
        let mut on_c = c.subscribe_user();
        a.broadcast_user(b"deploy".to_vec()).await.expect("user");
        let got = tokio::time::timeout(Duration::from_secs(30), on_c.recv())
            .await
            .expect("in time")
            .expect("payload");
        assert_eq!(&got[..], b"deploy");

        // Unknown node: an error; nothing to do for an alive one.
        assert!(a.force_leave("nobody", false).await.is_err());
        a.force_leave("c", false).await.expect("force-leave alive");

        // Leave: left on the others.
        b.leave().await.expect("leave");
        assert!(b.has_left());
        stop_b.cancel();
        for g in [&a, &c] {
            until(g, "b left", |set| {
                status(set, "b") == Some(MemberStatus::Left)
            })
            .await;
        }
        assert_eq!(status(&c.members(), "c"), Some(MemberStatus::Alive));

        // Stopped without leaving: failed; force-leave makes it left, prune forgets it.
        stop_c.cancel();
        until(&a, "c failed", |set| {
            status(set, "c") == Some(MemberStatus::Failed)
        })
        .await;
        a.force_leave("c", false).await.expect("force-leave");
        until(&a, "c left", |set| {
            status(set, "c") == Some(MemberStatus::Left)
        })
        .await;
        a.force_leave("c", true).await.expect("prune");
        until(&a, "c pruned", |set| status(set, "c").is_none()).await;
        stop_a.cancel();
    }

    #[tokio::test]
    async fn join_reports_silence_as_an_error() {
        let (a, stop) = node("lonely", "node").await;
        // A bound socket that never answers.
        let mute = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let target = mute.local_addr().expect("addr").to_string();
        let e = a
            .join(std::slice::from_ref(&target))
            .await
            .expect_err("no answer");
        let text = e.to_string();
        assert!(text.starts_with("1 error occurred:"), "{text}");
        assert!(text.contains(&format!("Failed to join {target}")), "{text}");
        assert_eq!(a.members().len(), 1);
        stop.cancel();
    }

    #[test]
    fn suspicion_and_retransmits_scale_with_the_pool() {
        let t = GossipLan::default();
        // Up to ten members: suspicion_mult probe intervals (4 × 500 ms).
        for n in [1, 2, 8, 10] {
            assert_eq!(scaled(&t, n).0, Duration::from_secs(2), "{n} members");
        }
        // Then log10(n) of them: 100 members → 4 s, 1000 → 6 s.
        assert_eq!(scaled(&t, 100).0, Duration::from_secs(4));
        assert_eq!(scaled(&t, 1000).0, Duration::from_secs(6));
        // Retransmissions: 4 × ceil(log10(n + 1)).
        assert_eq!(scaled(&t, 1).1.get(), 4);
        assert_eq!(scaled(&t, 8).1.get(), 4);
        assert_eq!(scaled(&t, 10).1.get(), 8);
        assert_eq!(scaled(&t, 1000).1.get(), 16);
        let c = foca_config(&t, 8, 1400);
        assert_eq!(c.probe_period, Duration::from_millis(500));
        assert_eq!(c.probe_rtt, Duration::from_millis(250));
        let off = GossipLan {
            gossip_interval: Duration::ZERO,
            ..GossipLan::default()
        };
        assert!(foca_config(&off, 8, 1400).periodic_gossip.is_none());
        // An absurd interval saturates rather than panics.
        let huge = GossipLan {
            probe_interval: Duration::MAX,
            suspicion_mult: u32::MAX,
            ..GossipLan::default()
        };
        assert_eq!(scaled(&huge, 1000).0, Duration::MAX);
    }

    /// A runner driven by hand: notifications and broadcasts fed directly.
    async fn runner(reconnect_timeout: Duration) -> Runner {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let advertise = socket.local_addr().expect("addr");
        let me = NodeIdentity {
            name: "me".into(),
            addr: advertise,
            bump: 1,
            tags: BTreeMap::new(),
        };
        let (btx, brx) = std::sync::mpsc::channel();
        let config = foca_config(&GossipLan::default(), 1, 1400);
        let foca = Foca::with_custom_broadcast(
            me,
            config.clone(),
            rand_foca::rngs::StdRng::seed_from_u64(7),
            PostcardCodec,
            Handler::new(btx),
        );
        let (view_tx, _view) = watch::channel(Arc::new(Vec::new()));
        Runner {
            foca,
            rt: AccumulatingRuntime::new(),
            socket,
            key: None,
            timers: BinaryHeap::new(),
            timer_events: HashMap::new(),
            timer_seq: 0,
            members: BTreeMap::new(),
            leave_intents: HashMap::new(),
            joins: Vec::new(),
            self_status: MemberStatus::Alive,
            name: "me".into(),
            advertise,
            tags: BTreeMap::new(),
            reconnect_timeout,
            timings: GossipLan::default(),
            config,
            tuned_for: 1,
            view_tx,
            user: broadcast::channel(4).0,
            broadcasts: brx,
            dropped: Arc::new(AtomicU64::new(0)),
            last_drop_log: None,
        }
    }

    fn ident(name: &str, port: u16, bump: u64) -> NodeIdentity {
        NodeIdentity {
            name: name.into(),
            addr: SocketAddr::from(([127, 0, 0, 9], port)),
            bump,
            tags: BTreeMap::new(),
        }
    }

    fn state(r: &Runner, name: &str) -> Option<MemberStatus> {
        r.members.get(name).map(|m| m.status)
    }

    #[tokio::test]
    async fn a_leave_from_a_newer_incarnation_counts_and_an_older_one_does_not() {
        let mut r = runner(Duration::from_millis(1)).await;
        r.on_notification(OwnedNotification::MemberUp(ident("x", 1, 10)));
        r.on_notification(OwnedNotification::MemberUp(ident("z", 3, 10)));
        // x renewed its identity (bump 11) and left before the renewal reached us.
        r.on_broadcast(Broadcast::Leave {
            name: "x".into(),
            bump: 11,
        });
        assert_eq!(state(&r, "x"), Some(MemberStatus::Leaving));
        // A leave of z's earlier incarnation (it has rejoined since) changes nothing.
        r.on_broadcast(Broadcast::Leave {
            name: "z".into(),
            bump: 9,
        });
        assert_eq!(state(&r, "z"), Some(MemberStatus::Alive));
    }

    #[tokio::test]
    async fn left_versus_failed_renames_and_reaping() {
        let mut r = runner(Duration::from_millis(1)).await;
        let x = ident("x", 1, 10);
        let y = ident("y", 2, 10);
        r.on_notification(OwnedNotification::MemberUp(x.clone()));
        r.on_notification(OwnedNotification::MemberUp(y.clone()));
        assert_eq!(state(&r, "x"), Some(MemberStatus::Alive));

        // Intent first, then down: leaving, then left.
        r.on_broadcast(Broadcast::Leave {
            name: "x".into(),
            bump: 10,
        });
        assert_eq!(state(&r, "x"), Some(MemberStatus::Leaving));
        r.on_notification(OwnedNotification::MemberDown(x.clone()));
        assert_eq!(state(&r, "x"), Some(MemberStatus::Left));

        // Down first (failed), then the intent: left.
        r.on_notification(OwnedNotification::MemberDown(y.clone()));
        assert_eq!(state(&r, "y"), Some(MemberStatus::Failed));
        r.on_broadcast(Broadcast::Leave {
            name: "y".into(),
            bump: 10,
        });
        assert_eq!(state(&r, "y"), Some(MemberStatus::Left));

        // A restart (newer identity at the same address) is alive again; a late down of the
        // old identity changes nothing; an intent of the old identity neither.
        let y2 = ident("y", 2, 11);
        r.on_notification(OwnedNotification::Rename(y.clone(), y2.clone()));
        r.on_notification(OwnedNotification::MemberUp(y2.clone()));
        assert_eq!(state(&r, "y"), Some(MemberStatus::Alive));
        r.on_notification(OwnedNotification::MemberDown(y.clone()));
        assert_eq!(state(&r, "y"), Some(MemberStatus::Alive));
        r.on_broadcast(Broadcast::Leave {
            name: "y".into(),
            bump: 10,
        });
        assert_eq!(state(&r, "y"), Some(MemberStatus::Alive));

        // Another name taking over an address replaces the old member.
        let z = ident("z", 2, 12);
        r.on_notification(OwnedNotification::Rename(y2, z));
        assert_eq!(state(&r, "y"), None);
        assert_eq!(state(&r, "z"), Some(MemberStatus::Alive));

        // Force-leave ignores the alive, and our own name.
        r.on_broadcast(Broadcast::ForceLeave {
            name: "z".into(),
            prune: true,
            id: 1,
        });
        assert_eq!(state(&r, "z"), Some(MemberStatus::Alive));

        // Reaping: failed after reconnect_timeout (1 ms here), left after 24 h.
        let w = ident("w", 3, 1);
        r.on_notification(OwnedNotification::MemberUp(w.clone()));
        r.on_notification(OwnedNotification::MemberDown(w));
        tokio::time::sleep(Duration::from_millis(5)).await;
        r.reap();
        assert_eq!(state(&r, "w"), None);
        assert_eq!(state(&r, "x"), Some(MemberStatus::Left));
        assert_eq!(state(&r, "z"), Some(MemberStatus::Alive));

        // The published view: sorted, ourselves included.
        r.publish();
        let names: Vec<String> = r.view_tx.borrow().iter().map(|m| m.name.clone()).collect();
        assert_eq!(names, ["me", "x", "z"]);
    }

    #[tokio::test]
    async fn a_flood_of_leave_intents_stays_bounded() {
        let mut r = runner(Duration::from_secs(60)).await;
        r.on_notification(OwnedNotification::MemberUp(ident("known", 1, 1)));
        for i in 0..(MAX_LEAVE_INTENTS as u64 * 3) {
            r.on_broadcast(Broadcast::Leave {
                name: format!("ghost-{i}"),
                bump: i,
            });
        }
        assert!(r.leave_intents.len() <= MAX_LEAVE_INTENTS);
        r.on_broadcast(Broadcast::Leave {
            name: "known".into(),
            bump: 1,
        });
        assert_eq!(state(&r, "known"), Some(MemberStatus::Leaving));
    }

    #[tokio::test]
    async fn garbage_is_dropped() {
        let (a, stop) = node("sturdy", "node").await;
        let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        for junk in [&b"\x00"[..], &[0xff; 1500][..], &[1, 2, 3][..]] {
            sock.send_to(junk, a.local_addr()).await.expect("send");
        }
        // Still answering commands.
        assert!(a.force_leave("nobody", false).await.is_err());
        stop.cancel();
    }
}
