//! The agent's logging: the console output `-log-level`/`-log-json` configure, and the tap
//! behind `GET /v1/agent/monitor` (`muster monitor`), which streams the agent's log lines at a
//! level of the caller's choosing, including levels more verbose than the console's.
//!
//! The tap is a second `tracing` layer whose level filter is reloaded whenever a monitor comes
//! or goes: `OFF` while nobody listens (so `debug!`/`trace!` call sites cost nothing more than
//! without it), else the most verbose level any monitor asked for. Each event is turned into one
//! [`Line`] and sent on a broadcast channel; every monitor keeps the lines at or above its own
//! level and formats them as text or JSON. A monitor that falls behind loses lines (it is told
//! how many), never slows the agent down.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::broadcast;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{reload, Layer};

/// Lines buffered for a monitor that is momentarily slower than the log.
const BUFFER: usize = 1024;

/// One log event, as a monitor receives it.
#[derive(Debug, Clone)]
pub struct Line {
    pub time: String,
    pub level: Level,
    pub target: String,
    pub message: String,
    /// The event's other fields, `key=value`.
    pub fields: Vec<(String, String)>,
}

impl Line {
    /// A line of the monitor's own (not from the log).
    pub fn notice(level: Level, target: &str, message: String) -> Line {
        Line {
            time: now(),
            level,
            target: target.to_string(),
            message,
            fields: Vec::new(),
        }
    }

    /// [`Line::json`] or [`Line::text`], newline-terminated.
    pub fn render(&self, json: bool) -> String {
        let mut out = if json { self.json() } else { self.text() };
        out.push('\n');
        out
    }

    /// `2026-11-23T20:15:01.123Z [INFO]  target: message key=value`, as Consul's text logs look.
    pub fn text(&self) -> String {
        let level = match self.level {
            Level::ERROR => "[ERROR]",
            Level::WARN => "[WARN] ",
            Level::INFO => "[INFO] ",
            Level::DEBUG => "[DEBUG]",
            Level::TRACE => "[TRACE]",
        };
        let mut out = format!("{} {level} {}: {}", self.time, self.target, self.message);
        for (k, v) in &self.fields {
            let _ = write!(out, " {k}={v}");
        }
        out
    }

    /// One JSON object with hclog's keys (`@level`, `@message`, `@module`, `@timestamp`) and
    /// the event's fields.
    pub fn json(&self) -> String {
        let mut map = serde_json::Map::new();
        map.insert("@level".into(), level_name(self.level).into());
        map.insert("@message".into(), self.message.clone().into());
        map.insert("@module".into(), self.target.clone().into());
        map.insert("@timestamp".into(), self.time.clone().into());
        for (k, v) in &self.fields {
            map.entry(k.clone()).or_insert_with(|| v.clone().into());
        }
        serde_json::Value::Object(map).to_string()
    }
}

fn now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::ERROR => "error",
        Level::WARN => "warn",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

/// Parses a monitor's `loglevel` as Consul does (any case; `err` for error).
pub fn parse_level(s: &str) -> Option<Level> {
    match s.trim().to_ascii_lowercase().as_str() {
        "trace" => Some(Level::TRACE),
        "debug" => Some(Level::DEBUG),
        "info" => Some(Level::INFO),
        "warn" | "warning" => Some(Level::WARN),
        "err" | "error" => Some(Level::ERROR),
        _ => None,
    }
}

type Reload = reload::Handle<LevelFilter, tracing_subscriber::Registry>;

/// The tap: the channel monitors subscribe to and the levels they asked for.
pub struct Tap {
    lines: broadcast::Sender<Line>,
    /// One entry per live monitor.
    levels: Mutex<Vec<(u64, Level)>>,
    next: AtomicU64,
    reload: Option<Reload>,
}

static TAP: OnceLock<Arc<Tap>> = OnceLock::new();

/// The process's tap (one per process, like the global subscriber it hangs off).
pub fn tap() -> Arc<Tap> {
    TAP.get_or_init(|| Arc::new(Tap::new(None))).clone()
}

impl Tap {
    fn new(reload: Option<Reload>) -> Tap {
        let (lines, _) = broadcast::channel(BUFFER);
        Tap {
            lines,
            levels: Mutex::new(Vec::new()),
            next: AtomicU64::new(0),
            reload,
        }
    }

    /// Starts a monitor at `level`; it ends when the returned [`Monitor`] is dropped.
    pub fn subscribe(self: &Arc<Self>, level: Level) -> Monitor {
        let rx = self.lines.subscribe();
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.levels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((id, level));
        self.retune();
        Monitor {
            tap: self.clone(),
            id,
            level,
            rx,
        }
    }

    /// Sets the layer's filter to the most verbose level a monitor wants (`OFF` for none).
    fn retune(&self) {
        let Some(reload) = &self.reload else {
            return;
        };
        let wanted = self
            .levels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(_, l)| LevelFilter::from_level(*l))
            .max()
            .unwrap_or(LevelFilter::OFF);
        if let Err(e) = reload.reload(wanted) {
            eprintln!("log monitor: could not change the level: {e}");
        }
    }
}

/// One subscriber of the tap.
pub struct Monitor {
    tap: Arc<Tap>,
    id: u64,
    level: Level,
    rx: broadcast::Receiver<Line>,
}

/// What [`Monitor::next`] hands out.
pub enum Next {
    Line(Line),
    /// This many lines went by while the monitor was behind.
    Dropped(u64),
    /// The tap is gone (the agent is stopping).
    Closed,
}

impl Monitor {
    /// The next line at or above this monitor's level.
    pub async fn next(&mut self) -> Next {
        loop {
            match self.rx.recv().await {
                // `Level` orders TRACE as the greatest: "at or above" is `<=`.
                Ok(line) if line.level <= self.level => return Next::Line(line),
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(n)) => return Next::Dropped(n),
                Err(broadcast::error::RecvError::Closed) => return Next::Closed,
            }
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.tap
            .levels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(id, _)| *id != self.id);
        self.tap.retune();
    }
}

/// The layer feeding the tap.
struct TapLayer {
    tap: Arc<Tap>,
}

impl<S: Subscriber> Layer<S> for TapLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if self.tap.lines.receiver_count() == 0 {
            return;
        }
        let mut visitor = Fields::default();
        event.record(&mut visitor);
        let meta = event.metadata();
        let line = Line {
            time: now(),
            level: *meta.level(),
            target: meta.target().to_string(),
            message: visitor.message,
            fields: visitor.fields,
        };
        let _ = self.tap.lines.send(line);
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    fields: Vec<(String, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.fields
                .push((field.name().to_string(), value.to_string()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.fields
                .push((field.name().to_string(), format!("{value:?}")));
        }
    }
}

/// Installs the process's logging: the console at `level` (text or JSON) and the monitor tap.
/// A second call (in-process tests start several agents) changes nothing.
pub fn init(level: &str, json: bool) {
    let level = match level {
        "err" => "error",
        l => l,
    };
    let quiet = if matches!(level, "trace" | "debug") {
        ""
    } else {
        ",openraft=warn,sled=warn,hickory_server=warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_new(format!("{level}{quiet}"))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let console = if json {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stdout)
            .with_filter(filter)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_ansi(ansi)
            .with_writer(std::io::stdout)
            .with_filter(filter)
            .boxed()
    };
    // The tap's per-layer filter: a level, reloaded as monitors come and go (OFF until then).
    let (gate, handle) = reload::Layer::new(LevelFilter::OFF);
    let tap = Arc::new(Tap::new(Some(handle)));
    let installed = tracing_subscriber::registry()
        .with(TapLayer { tap: tap.clone() }.with_filter(gate))
        .with(console)
        .try_init();
    if installed.is_ok() {
        let _ = TAP.set(tap);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line() -> Line {
        Line {
            time: "2026-11-23T20:15:01.123Z".into(),
            level: Level::WARN,
            target: "muster_agent::gossip".into(),
            message: "member failed".into(),
            fields: vec![("member".into(), "n2".into())],
        }
    }

    #[test]
    fn text_and_json_lines() {
        assert_eq!(
            line().text(),
            "2026-11-23T20:15:01.123Z [WARN]  muster_agent::gossip: member failed member=n2"
        );
        let v: serde_json::Value = serde_json::from_str(&line().json()).expect("json");
        assert_eq!(v["@level"], "warn");
        assert_eq!(v["@message"], "member failed");
        assert_eq!(v["@module"], "muster_agent::gossip");
        assert_eq!(v["@timestamp"], "2026-11-23T20:15:01.123Z");
        assert_eq!(v["member"], "n2");
        assert!(line().render(false).ends_with("member=n2\n"));
    }

    #[test]
    fn levels_as_consul_spells_them() {
        assert_eq!(parse_level("DEBUG"), Some(Level::DEBUG));
        assert_eq!(parse_level("err"), Some(Level::ERROR));
        assert_eq!(parse_level(" warn "), Some(Level::WARN));
        assert_eq!(parse_level("loud"), None);
    }

    #[tokio::test]
    async fn a_monitor_gets_its_level_and_above_and_hears_of_what_it_missed() {
        let tap = Arc::new(Tap::new(None));
        let mut m = tap.subscribe(Level::INFO);
        for (level, msg) in [(Level::DEBUG, "noise"), (Level::WARN, "kept")] {
            let _ = tap.lines.send(Line {
                level,
                message: msg.into(),
                ..line()
            });
        }
        match m.next().await {
            Next::Line(l) => assert_eq!(l.message, "kept"),
            _ => panic!("expected the warn line"),
        }
        for _ in 0..BUFFER + 5 {
            let _ = tap.lines.send(line());
        }
        assert!(matches!(m.next().await, Next::Dropped(n) if n >= 5));
        assert_eq!(tap.levels.lock().map(|l| l.len()).unwrap_or(0), 1);
        drop(m);
        assert_eq!(tap.levels.lock().map(|l| l.len()).unwrap_or(9), 0);
    }
}
