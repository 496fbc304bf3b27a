//! The engine and its three modes.
//!
//! The [`Engine`] holds the resources, the templates and the latest value of every dependency
//! (one entry per distinct [`Dep`], shared by every resource that reads it). A *pass* renders a
//! set of resources, writes each through [`crate::pipeline`], then runs each distinct
//! `reload_cmd` of the files that changed once.
//!
//! * `-onetime`: fetch every dependency once, one pass over everything, exit status.
//! * `-interval`: the same in a loop; only resources whose dependencies changed (or that failed)
//!   are rendered again.
//! * `-watch`: one task per distinct dependency holds a blocking query and reports changes; a
//!   change marks the resources that read it, which are rendered as soon as their `wait`
//!   quiescence allows (the first render is never delayed).
//!
//! In the daemon modes an unreachable backend leaves every file as it is; each dependency
//! retries with capped exponential backoff and the state change is logged once. SIGHUP, or a
//! change under `conf.d/` or `templates/`, re-reads both; SIGTERM and SIGINT stop.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::backend::{Backend, Dep, DepData, FetchError, KvMap};
use crate::config::{Mode, Settings, Wait};
use crate::helpers::RenderData;
use crate::pipeline::{self, Options, Target, Written};
use crate::render::{Rendered, Templates};
use crate::resource::{self, Resource};

/// First retry delay after a failed fetch; doubles up to [`BACKOFF_MAX`].
pub const BACKOFF_MIN: Duration = Duration::from_millis(200);
/// The longest delay between two attempts while the backend is unreachable.
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How long changes under conf.d/ or templates/ must settle before they are re-read.
const CONFIG_SETTLE: Duration = Duration::from_millis(100);

#[derive(Debug, Default, Clone)]
struct ResState {
    /// Dependencies found at render time (services the resource did not declare).
    extra: Vec<Dep>,
    /// Whether a render was attempted since the resource was loaded.
    attempted: bool,
    /// Whether the last attempt failed.
    failed: bool,
    /// Changes waiting for a render: (first, last).
    pending: Option<(Instant, Instant)>,
}

/// A reload command to run at the end of a pass, and the resources whose files it reloads.
struct Reload {
    cmd: String,
    owners: Vec<usize>,
    timeout: Duration,
}

/// What one pass did.
#[derive(Debug, Default)]
pub struct PassReport {
    /// Resources rendered and written (or unchanged) with their reload run.
    pub ok: Vec<usize>,
    pub failed: Vec<usize>,
    /// Resources that need dependencies fetched first.
    pub waiting: Vec<usize>,
    /// Dependencies to fetch for them.
    pub need: Vec<Dep>,
}

pub struct Engine {
    pub settings: Settings,
    backend: Arc<Backend>,
    resources: Vec<Resource>,
    state: Vec<ResState>,
    templates: Templates,
    /// Problems with the configuration itself (bad resource files), reported at load.
    config_errors: Vec<String>,
    store: HashMap<Dep, DepData>,
}

impl Engine {
    /// Loads conf.d/ and templates/ (reporting what is wrong with them).
    pub fn new(settings: Settings, backend: Arc<Backend>) -> Engine {
        let mut e = Engine {
            settings,
            backend,
            resources: Vec::new(),
            state: Vec::new(),
            templates: Templates::empty(),
            config_errors: Vec::new(),
            store: HashMap::new(),
        };
        e.load_config();
        e
    }

    /// (Re-)reads conf.d/ and templates/; every resource is rendered again at the next pass.
    pub fn load_config(&mut self) {
        let (resources, errors) =
            resource::load_dir(&self.settings.conf_d(), &self.settings.prefix);
        for e in &errors {
            tracing::error!("{e}");
        }
        let templates = Templates::load(&self.settings.templates_dir());
        for (name, e) in templates.broken() {
            tracing::error!("templates/{name}: {e}");
        }
        if resources.is_empty() && errors.is_empty() {
            tracing::warn!(
                "no template resources in {} (expected *.toml files)",
                self.settings.conf_d().display()
            );
        }
        tracing::info!(
            resources = resources.len(),
            "loaded {} ({} resource{}, {} bad)",
            self.settings.confdir.display(),
            resources.len(),
            if resources.len() == 1 { "" } else { "s" },
            errors.len()
        );
        self.state = vec![ResState::default(); resources.len()];
        self.resources = resources;
        self.templates = templates;
        self.config_errors = errors;
    }

    pub fn resources(&self) -> &[Resource] {
        &self.resources
    }

    /// Every distinct dependency of every resource.
    pub fn all_deps(&self) -> BTreeSet<Dep> {
        let mut deps = BTreeSet::new();
        for (r, s) in self.resources.iter().zip(&self.state) {
            deps.extend(r.deps());
            deps.extend(s.extra.iter().cloned());
        }
        deps
    }

    fn deps_of(&self, i: usize) -> Vec<Dep> {
        let mut deps = self.resources[i].deps();
        deps.extend(self.state[i].extra.iter().cloned());
        deps
    }

    /// Stores a dependency's value; returns whether it changed.
    pub fn update(&mut self, dep: Dep, data: DepData) -> bool {
        if self.store.get(&dep) == Some(&data) {
            return false;
        }
        self.store.insert(dep, data);
        true
    }

    /// The resources that read `dep`.
    fn readers(&self, dep: &Dep) -> Vec<usize> {
        (0..self.resources.len())
            .filter(|&i| self.deps_of(i).contains(dep))
            .collect()
    }

    /// Marks the resources that read `dep` as changed at `now`.
    fn mark_readers(&mut self, dep: &Dep, now: Instant) {
        for i in self.readers(dep) {
            let p = &mut self.state[i].pending;
            *p = Some((p.map_or(now, |(first, _)| first), now));
        }
    }

    fn mark_all(&mut self, now: Instant) {
        for s in &mut self.state {
            s.pending = Some((now, now));
        }
    }

    fn wait_of(&self, i: usize) -> Option<Wait> {
        self.resources[i].wait.or(self.settings.wait)
    }

    /// When resource `i` should be rendered, if it has changes waiting.
    fn due_at(&self, i: usize) -> Option<Instant> {
        let (first, last) = self.state[i].pending?;
        if !self.state[i].attempted {
            return Some(first);
        }
        match self.wait_of(i) {
            None => Some(last),
            Some(w) => Some((last + w.min).min(first + w.max)),
        }
    }

    /// Whether every dependency of resource `i` has a value.
    fn ready(&self, i: usize) -> bool {
        self.deps_of(i).iter().all(|d| self.store.contains_key(d))
    }

    /// What resource `i`'s template may read, or `None` while a dependency has no value yet.
    pub fn render_data(&self, i: usize) -> Option<Arc<RenderData>> {
        let r = &self.resources[i];
        let mut data = RenderData::default();
        let deps = self.deps_of(i);
        let maps: Vec<&Arc<KvMap>> = deps
            .iter()
            .filter(|d| matches!(d, Dep::Kv(_)))
            .map(|d| match self.store.get(d) {
                Some(DepData::Kv(m)) => Some(m),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()?;
        data.kv = if maps.len() == 1 && r.prefix == "/" {
            maps[0].clone()
        } else {
            let mut merged = KvMap::new();
            for m in maps {
                for (k, v) in m.iter() {
                    merged.insert(r.relative_key(k).to_string(), v.clone());
                }
            }
            Arc::new(merged)
        };
        for dep in deps {
            match (&dep, self.store.get(&dep)) {
                (Dep::Kv(_), _) => {}
                (Dep::Service(name), Some(DepData::Service(list))) => {
                    data.services.insert(name.clone(), list.clone());
                }
                (Dep::Services, Some(DepData::Services(s))) => {
                    data.catalog_services = Some(s.clone())
                }
                (Dep::Nodes, Some(DepData::Nodes(n))) => data.nodes = Some(n.clone()),
                _ => return None,
            }
        }
        Some(Arc::new(data))
    }

    /// Renders and writes the given resources, then runs each distinct reload command of the
    /// files that changed once.
    pub async fn pass(&mut self, which: &[usize]) -> PassReport {
        let mut report = PassReport::default();
        // Each distinct reload command, in the order its first file was written.
        let mut reloads: Vec<Reload> = Vec::new();
        let opts = Options {
            noop: self.settings.noop,
            sync_only: self.settings.sync_only,
            keep_stage_file: self.settings.keep_stage_file,
        };
        for &i in which {
            let Some(data) = self.render_data(i) else {
                report.waiting.push(i);
                continue;
            };
            let r = self.resources[i].clone();
            self.state[i].pending = None;
            self.state[i].attempted = true;
            let started = std::time::Instant::now();
            let rendered = self.templates.render(&r.src, data);
            let bytes = match rendered {
                Ok(Rendered::Done(bytes)) => bytes,
                Ok(Rendered::NeedDeps(deps)) => {
                    tracing::debug!(resource = %r.name, "needs {deps:?}");
                    for d in deps {
                        if !self.state[i].extra.contains(&d) {
                            self.state[i].extra.push(d.clone());
                        }
                        if !report.need.contains(&d) {
                            report.need.push(d);
                        }
                    }
                    self.state[i].attempted = false;
                    report.waiting.push(i);
                    continue;
                }
                Err(e) => {
                    tracing::error!(resource = %r.name, "{}: {e}; {} is unchanged", r.name, r.dest.display());
                    self.state[i].failed = true;
                    report.failed.push(i);
                    continue;
                }
            };
            let render_time = started.elapsed();
            match pipeline::write(&Target::from_resource(&r), &bytes, opts).await {
                Ok(Written::Unchanged) => {
                    tracing::debug!(resource = %r.name, ?render_time, "{} is up to date", r.dest.display());
                    self.state[i].failed = false;
                    report.ok.push(i);
                }
                Ok(Written::WouldChange(diff)) => {
                    tracing::info!(resource = %r.name, "-noop: {} would change", r.dest.display());
                    print!("{diff}");
                    self.state[i].failed = false;
                    report.ok.push(i);
                }
                Ok(Written::Replaced) => {
                    tracing::info!(
                        resource = %r.name,
                        ?render_time,
                        "wrote {} ({} bytes)",
                        r.dest.display(),
                        bytes.len()
                    );
                    self.state[i].failed = false;
                    match r.reload_cmd.as_ref().filter(|_| !self.settings.sync_only) {
                        Some(cmd) => match reloads.iter_mut().find(|x| &x.cmd == cmd) {
                            Some(x) => {
                                x.owners.push(i);
                                x.timeout = x.timeout.max(r.reload_timeout);
                            }
                            None => reloads.push(Reload {
                                cmd: cmd.clone(),
                                owners: vec![i],
                                timeout: r.reload_timeout,
                            }),
                        },
                        None => report.ok.push(i),
                    }
                }
                Err(e) => {
                    tracing::error!(resource = %r.name, "{}: {e}", r.name);
                    self.state[i].failed = true;
                    report.failed.push(i);
                }
            }
        }
        for Reload {
            cmd,
            owners,
            timeout,
        } in reloads
        {
            match crate::exec::run(&cmd, timeout).await {
                Ok(res) if res.success() => {
                    tracing::info!(elapsed = ?res.elapsed, "reload_cmd `{cmd}` ok");
                    if !res.output.is_empty() {
                        tracing::debug!("reload_cmd output:\n{}", res.output);
                    }
                    report.ok.extend(owners);
                }
                Ok(res) => {
                    tracing::error!(
                        "reload_cmd `{cmd}` failed ({}){}",
                        res.describe(),
                        if res.output.is_empty() {
                            String::new()
                        } else {
                            format!("; its output:\n{}", res.output)
                        }
                    );
                    for i in owners {
                        self.state[i].failed = true;
                        report.failed.push(i);
                    }
                }
                Err(e) => {
                    tracing::error!("reload_cmd `{cmd}`: {e}");
                    for i in owners {
                        self.state[i].failed = true;
                        report.failed.push(i);
                    }
                }
            }
        }
        report
    }

    /// Fetches `deps` once (concurrently, not blocking) into the store. Returns the changed
    /// ones and the errors.
    async fn fetch_all(&mut self, deps: &[Dep]) -> (Vec<Dep>, Vec<(Dep, FetchError)>) {
        let backend = self.backend.clone();
        let results = futures::future::join_all(deps.iter().map(|d| {
            let backend = backend.clone();
            async move { (d.clone(), backend.fetch(d, 0, false).await) }
        }))
        .await;
        let mut changed = Vec::new();
        let mut errors = Vec::new();
        for (dep, result) in results {
            match result {
                Ok((data, _)) => {
                    if self.update(dep.clone(), data) {
                        changed.push(dep);
                    }
                }
                Err(e) => errors.push((dep, e)),
            }
        }
        (changed, errors)
    }

    /// A pass over `which`, fetching the dependencies templates discover as they render (a few
    /// rounds at most).
    async fn pass_fetching(&mut self, which: Vec<usize>, log: &ConnLog) -> PassReport {
        let mut total = PassReport::default();
        let mut todo = which;
        for _ in 0..5 {
            let report = self.pass(&todo).await;
            total.ok.extend(report.ok);
            total.failed.extend(report.failed);
            if report.need.is_empty() {
                total.waiting.extend(report.waiting);
                return total;
            }
            let (_, errors) = self.fetch_all(&report.need).await;
            for (dep, e) in &errors {
                log.failed(dep, e);
            }
            if errors.is_empty() {
                log.ok();
            }
            todo = report.waiting;
        }
        total.waiting.extend(todo);
        total
    }

    /// `-onetime`: true when every resource succeeded (and every resource file loaded).
    pub async fn run_once(&mut self) -> bool {
        let log = ConnLog::new(self.backend.describe());
        let deps: Vec<Dep> = self.all_deps().into_iter().collect();
        let (_, errors) = self.fetch_all(&deps).await;
        let mut ok = self.config_errors.is_empty();
        for (dep, e) in &errors {
            tracing::error!("{dep}: {e}");
            ok = false;
        }
        let all: Vec<usize> = (0..self.resources.len()).collect();
        let report = self.pass_fetching(all, &log).await;
        for &i in &report.waiting {
            tracing::error!(
                "{}: not rendered: a dependency could not be fetched",
                self.resources[i].name
            );
        }
        ok && report.failed.is_empty() && report.waiting.is_empty()
    }

    /// `-interval`: poll every dependency, render what changed (and what failed), sleep.
    pub async fn run_interval(&mut self, mut events: Events) {
        let log = ConnLog::new(self.backend.describe());
        let mut backoff = BACKOFF_MIN;
        self.mark_all(Instant::now());
        loop {
            let deps: Vec<Dep> = self.all_deps().into_iter().collect();
            let (changed, errors) = self.fetch_all(&deps).await;
            let now = Instant::now();
            for dep in &changed {
                self.mark_readers(dep, now);
            }
            for (dep, e) in &errors {
                log.failed(dep, e);
            }
            if errors.is_empty() {
                log.ok();
                backoff = BACKOFF_MIN;
            }
            for i in 0..self.resources.len() {
                if self.state[i].failed {
                    self.state[i].pending.get_or_insert((now, now));
                }
            }
            let due: Vec<usize> = (0..self.resources.len())
                .filter(|&i| self.state[i].pending.is_some() && self.ready(i))
                .collect();
            if !due.is_empty() {
                self.pass_fetching(due, &log).await;
            }
            let sleep = if errors.is_empty() {
                self.settings.interval
            } else {
                let b = backoff.min(self.settings.interval);
                backoff = (backoff * 2).min(BACKOFF_MAX);
                b
            };
            match events.next(Some(Instant::now() + sleep)).await {
                Event::Stop => return,
                Event::Reload => {
                    self.load_config();
                    self.mark_all(Instant::now());
                }
                Event::Timer | Event::Update(..) => {}
            }
        }
    }

    /// `-watch`: one blocking query per distinct dependency; render on change.
    pub async fn run_watch(&mut self, mut events: Events) {
        let log = Arc::new(ConnLog::new(self.backend.describe()));
        let mut tasks: HashMap<Dep, JoinHandle<()>> = HashMap::new();
        self.mark_all(Instant::now());
        loop {
            self.sync_tasks(&mut tasks, &events.updates_tx, &log);
            let now = Instant::now();
            let due: Vec<usize> = (0..self.resources.len())
                .filter(|&i| self.ready(i) && self.due_at(i).is_some_and(|t| t <= now))
                .collect();
            if !due.is_empty() {
                let report = self.pass(&due).await;
                if !report.need.is_empty() {
                    // Newly found dependencies: their tasks start at the top of the loop and
                    // the resources render once the first answers arrive.
                    for i in report.waiting {
                        self.state[i].pending.get_or_insert((now, now));
                    }
                }
                continue; // updates may have arrived during the pass
            }
            let next = (0..self.resources.len())
                .filter(|&i| self.ready(i))
                .filter_map(|i| self.due_at(i))
                .min();
            match events.next(next).await {
                Event::Stop => break,
                Event::Reload => {
                    self.load_config();
                    self.mark_all(Instant::now());
                }
                Event::Update(dep, data) => {
                    let now = Instant::now();
                    let mut batch = vec![(dep, data)];
                    batch.extend(events.drain_updates());
                    for (dep, data) in batch {
                        if self.update(dep.clone(), data) {
                            self.mark_readers(&dep, now);
                        }
                    }
                }
                Event::Timer => {}
            }
        }
        for (_, t) in tasks {
            t.abort();
        }
    }

    /// Starts a task for every dependency without one and stops the tasks (and forgets the
    /// values) of dependencies no resource reads any more.
    fn sync_tasks(
        &mut self,
        tasks: &mut HashMap<Dep, JoinHandle<()>>,
        tx: &mpsc::UnboundedSender<(Dep, DepData)>,
        log: &Arc<ConnLog>,
    ) {
        let wanted = self.all_deps();
        tasks.retain(|dep, task| {
            let keep = wanted.contains(dep);
            if !keep {
                task.abort();
            }
            keep
        });
        self.store.retain(|dep, _| wanted.contains(dep));
        for dep in wanted {
            if let std::collections::hash_map::Entry::Vacant(slot) = tasks.entry(dep) {
                let dep = slot.key().clone();
                slot.insert(tokio::spawn(watch_dep(
                    dep,
                    self.backend.clone(),
                    tx.clone(),
                    log.clone(),
                )));
            }
        }
    }
}

/// One dependency's blocking-query loop: report every change, retry failures with backoff.
async fn watch_dep(
    dep: Dep,
    backend: Arc<Backend>,
    tx: mpsc::UnboundedSender<(Dep, DepData)>,
    log: Arc<ConnLog>,
) {
    let mut index = 0u64;
    let mut last: Option<DepData> = None;
    let mut backoff = BACKOFF_MIN;
    loop {
        let blocking = index > 0;
        match backend.fetch(&dep, index, blocking).await {
            Ok((data, new_index)) => {
                log.ok();
                log.dep_ok(&dep);
                backoff = BACKOFF_MIN;
                // An index that went backwards (a restarted agent, a restored snapshot) starts
                // over; 0 is never used to block.
                index = if new_index < index {
                    0
                } else {
                    new_index.max(1)
                };
                if last.as_ref() != Some(&data) {
                    last = Some(data.clone());
                    if tx.send((dep.clone(), data)).is_err() {
                        return;
                    }
                }
                if !backend.can_block() {
                    return; // the env backend never changes
                }
            }
            Err(e) => {
                log.failed(&dep, &e);
                index = 0; // a restarted agent's index may be lower: never block on the old one
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// Logs the backend's reachability once per change of state, and each dependency's own error
/// once per change of error.
pub struct ConnLog {
    backend: String,
    down: Mutex<Option<String>>,
    dep_errors: Mutex<HashMap<Dep, String>>,
}

impl ConnLog {
    pub fn new(backend: String) -> ConnLog {
        ConnLog {
            backend,
            down: Mutex::new(None),
            dep_errors: Mutex::new(HashMap::new()),
        }
    }

    pub fn ok(&self) {
        let mut down = self.down.lock().unwrap_or_else(|e| e.into_inner());
        if down.take().is_some() {
            tracing::info!("{} is reachable again", self.backend);
        }
    }

    fn dep_ok(&self, dep: &Dep) {
        let mut errors = self.dep_errors.lock().unwrap_or_else(|e| e.into_inner());
        if errors.remove(dep).is_some() {
            tracing::info!("{dep}: fetched again");
        }
    }

    pub fn failed(&self, dep: &Dep, e: &FetchError) {
        match e {
            FetchError::Unavailable(msg) => {
                let mut down = self.down.lock().unwrap_or_else(|e| e.into_inner());
                if down.is_none() {
                    tracing::warn!(
                        "{} is unreachable ({msg}); keeping every file as it is and retrying (backoff up to {BACKOFF_MAX:?})",
                        self.backend
                    );
                    *down = Some(msg.clone());
                }
            }
            other => {
                let msg = other.to_string();
                let mut errors = self.dep_errors.lock().unwrap_or_else(|e| e.into_inner());
                if errors.get(dep) != Some(&msg) {
                    tracing::error!("{dep}: {msg}; retrying");
                    errors.insert(dep.clone(), msg);
                }
            }
        }
    }
}

/// What wakes a daemon loop.
pub enum Event {
    Update(Dep, DepData),
    Reload,
    Stop,
    Timer,
}

/// Signals, configuration changes and dependency updates, as one stream of [`Event`]s.
pub struct Events {
    updates_rx: mpsc::UnboundedReceiver<(Dep, DepData)>,
    updates_tx: mpsc::UnboundedSender<(Dep, DepData)>,
    config_rx: mpsc::UnboundedReceiver<()>,
    hup: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    _watcher: Option<notify::RecommendedWatcher>,
}

impl Events {
    /// Installs the signal handlers and watches `dirs` (those that exist) for changes.
    pub fn new(dirs: &[PathBuf]) -> std::io::Result<Events> {
        let (updates_tx, updates_rx) = mpsc::unbounded_channel();
        let (config_tx, config_rx) = mpsc::unbounded_channel();
        let watcher = watch_dirs(dirs, config_tx);
        Ok(Events {
            updates_rx,
            updates_tx,
            config_rx,
            hup: signal(SignalKind::hangup())?,
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            _watcher: watcher,
        })
    }

    /// The next event, or [`Event::Timer`] at `deadline`.
    pub async fn next(&mut self, deadline: Option<Instant>) -> Event {
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            _ = self.term.recv() => { tracing::info!("SIGTERM: stopping"); Event::Stop }
            _ = self.int.recv() => { tracing::info!("SIGINT: stopping"); Event::Stop }
            _ = self.hup.recv() => {
                tracing::info!("SIGHUP: re-reading conf.d and templates");
                Event::Reload
            }
            Some(()) = self.config_rx.recv() => {
                // Let an editor's burst of writes settle, then re-read once.
                tokio::time::sleep(CONFIG_SETTLE).await;
                while self.config_rx.try_recv().is_ok() {}
                tracing::info!("conf.d or templates changed: re-reading them");
                Event::Reload
            }
            Some((dep, data)) = self.updates_rx.recv() => Event::Update(dep, data),
            _ = sleep => Event::Timer,
        }
    }

    fn drain_updates(&mut self) -> Vec<(Dep, DepData)> {
        let mut out = Vec::new();
        while let Ok(u) = self.updates_rx.try_recv() {
            out.push(u);
        }
        out
    }
}

fn watch_dirs(
    dirs: &[PathBuf],
    tx: mpsc::UnboundedSender<()>,
) -> Option<notify::RecommendedWatcher> {
    use notify::{EventKind, RecursiveMode, Watcher as _};
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if matches!(event.kind, EventKind::Access(_)) {
            return;
        }
        let relevant = event.paths.iter().any(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            !(name.starts_with('.') || name.ends_with('~') || name.ends_with(".swp"))
        });
        if relevant {
            let _ = tx.send(());
        }
    })
    .map_err(|e| tracing::warn!("not watching conf.d/templates for changes: {e}"))
    .ok()?;
    for dir in dirs {
        if dir.is_dir() {
            if let Err(e) = watcher.watch(dir, RecursiveMode::Recursive) {
                tracing::warn!("not watching {} for changes: {e}", dir.display());
            }
        }
    }
    Some(watcher)
}

/// Runs the mode the settings name; the process's exit code.
pub async fn run(settings: Settings, backend: Arc<Backend>) -> i32 {
    let mode = settings.mode;
    let dirs = vec![settings.conf_d(), settings.templates_dir()];
    let mut engine = Engine::new(settings, backend);
    if mode == Mode::Onetime {
        return if engine.run_once().await { 0 } else { 1 };
    }
    let events = match Events::new(&dirs) {
        Ok(e) => e,
        Err(e) => {
            tracing::error!("installing signal handlers: {e}");
            return 1;
        }
    };
    match mode {
        Mode::Watch => engine.run_watch(events).await,
        _ => engine.run_interval(events).await,
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::env::EnvBackend;
    use crate::config::BackendKind;

    fn settings(confdir: &std::path::Path) -> Settings {
        Settings {
            backend: BackendKind::Env,
            nodes: vec![],
            confdir: confdir.to_path_buf(),
            interval: Duration::from_secs(1),
            mode: Mode::Onetime,
            noop: false,
            sync_only: false,
            keep_stage_file: false,
            prefix: String::new(),
            log_level: "info".into(),
            auth_token: None,
            https: false,
            tls: Default::default(),
            files: vec![],
            wait: None,
        }
    }

    fn confdir(resources: &[(&str, &str)], templates: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("conf.d")).unwrap();
        std::fs::create_dir_all(dir.path().join("templates")).unwrap();
        for (name, text) in resources {
            std::fs::write(dir.path().join("conf.d").join(name), text).unwrap();
        }
        for (name, text) in templates {
            std::fs::write(dir.path().join("templates").join(name), text).unwrap();
        }
        dir
    }

    #[tokio::test]
    async fn a_shared_reload_runs_once_per_pass_and_unchanged_files_do_not_reload() {
        let dir = confdir(&[], &[("t", "port {{getv \"/app/port\"}}\n")]);
        let out = dir.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        let log = dir.path().join("reloads");
        for n in ["a", "b"] {
            std::fs::write(
                dir.path().join("conf.d").join(format!("{n}.toml")),
                format!(
                    "[template]\nsrc = \"t\"\ndest = \"{}/{n}.conf\"\nkeys = [\"/app\"]\nreload_cmd = \"echo x >> {}\"\n",
                    out.display(),
                    log.display()
                ),
            )
            .unwrap();
        }
        let backend = Arc::new(Backend::Env(EnvBackend::from_vars(vec![(
            "APP_PORT".into(),
            "80".into(),
        )])));
        let mut e = Engine::new(settings(dir.path()), backend.clone());
        assert!(e.run_once().await);
        assert_eq!(
            std::fs::read_to_string(out.join("a.conf")).unwrap(),
            "port 80\n"
        );
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "x\n",
            "one reload for two files"
        );
        let mut e = Engine::new(settings(dir.path()), backend);
        assert!(e.run_once().await);
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "x\n",
            "no change, no reload"
        );
    }

    #[tokio::test]
    async fn one_bad_resource_fails_onetime_but_the_others_are_written() {
        let dir = confdir(
            &[
                ("bad.toml", "[template]\nsrc = \"t\"\n"),
                (
                    "missing.toml",
                    "[template]\nsrc = \"t2\"\ndest = \"/nonexistent-dir-x/y\"\n",
                ),
            ],
            &[("t", "static\n"), ("t2", "{{getv \"/nope\"}}")],
        );
        let good = dir.path().join("good.conf");
        std::fs::write(
            dir.path().join("conf.d/good.toml"),
            format!("[template]\nsrc = \"t\"\ndest = \"{}\"\n", good.display()),
        )
        .unwrap();
        let backend = Arc::new(Backend::Env(EnvBackend::from_vars(vec![])));
        let mut e = Engine::new(settings(dir.path()), backend);
        assert_eq!(e.resources().len(), 2);
        assert!(!e.run_once().await);
        assert_eq!(std::fs::read_to_string(&good).unwrap(), "static\n");
    }

    #[tokio::test]
    async fn the_prefix_is_stripped_and_dependencies_are_shared() {
        let dir = confdir(
            &[],
            &[(
                "t",
                "{{getv \"/k\"}} {{#each (ls \"/\")}}{{this}},{{/each}}",
            )],
        );
        for n in 0..3 {
            std::fs::write(
                dir.path().join("conf.d").join(format!("r{n}.toml")),
                format!(
                    "[template]\nsrc = \"t\"\ndest = \"{}/r{n}\"\nkeys = [\"/k\"]\nprefix = \"/app\"\n",
                    dir.path().display()
                ),
            )
            .unwrap();
        }
        let backend = Arc::new(Backend::Env(EnvBackend::from_vars(vec![(
            "APP_K".into(),
            "v".into(),
        )])));
        let mut e = Engine::new(settings(dir.path()), backend);
        assert_eq!(e.all_deps().len(), 1, "three resources, one dependency");
        assert!(e.run_once().await);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("r2")).unwrap(),
            "v k,"
        );
    }

    #[test]
    fn wait_delays_later_renders_but_not_the_first() {
        let dir = confdir(
            &[(
                "a.toml",
                "[template]\nsrc = \"t\"\ndest = \"/tmp/x\"\nwait = \"1s:3s\"\n",
            )],
            &[("t", "x")],
        );
        let backend = Arc::new(Backend::Env(EnvBackend::from_vars(vec![])));
        let mut e = Engine::new(settings(dir.path()), backend);
        let t0 = Instant::now();
        e.mark_all(t0);
        assert_eq!(e.due_at(0), Some(t0), "the first render is not delayed");
        e.state[0].attempted = true;
        e.state[0].pending = Some((t0, t0));
        assert_eq!(e.due_at(0), Some(t0 + Duration::from_secs(1)));
        // Changes keep coming: the max caps the delay.
        e.state[0].pending = Some((t0, t0 + Duration::from_millis(2900)));
        assert_eq!(e.due_at(0), Some(t0 + Duration::from_secs(3)));
    }
}
