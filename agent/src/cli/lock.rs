//! `muster lock [-n N] [-timeout D] [-child-exit-code] [-shell] PREFIX COMMAND...`: runs a
//! command while holding a lock (or one of N semaphore slots) in the KV store, following the
//! algorithms of Consul's `api/lock.go` and `api/semaphore.go` so the two can share a prefix:
//!
//! * lock (N = 1): the key `<prefix>/.lock`, acquired with `?acquire=<session>` and flags
//!   `0x2ddccbc058a50c18`; a contender waits on the key with a blocking query.
//! * semaphore (N > 1): each contender holds its own key `<prefix>/<session>` (flags
//!   `0xe0f69a2baa414de0`), and `<prefix>/.lock` holds `{"Limit":N,"Holders":{"<session>":true}}`,
//!   updated with check-and-set; holders whose contender key lost its session are pruned.
//!
//! The session has a 15s TTL and is renewed every half TTL. If the lock is lost (the session
//! invalidated, the key taken away) the child gets SIGTERM, then SIGKILL after a grace period.
//! SIGINT/SIGTERM received by `muster lock` are forwarded to the child; when the child exits the
//! lock is released and the session destroyed.

use std::collections::BTreeMap;
use std::time::Duration;

use muster_api::client::KvWriteOptions;
use muster_api::{Client, KvPair, QueryOptions, SessionRequest};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::http_flags;
use super::{Flag, Spec, Ui};

pub const SYNOPSIS: &str = "Execute a command holding a lock";

/// Consul's `LockFlagValue`: marks a key as a lock.
pub const LOCK_FLAG: u64 = 0x2ddc_cbc0_58a5_0c18;
/// Consul's `SemaphoreFlagValue`: marks a key as part of a semaphore.
pub const SEMAPHORE_FLAG: u64 = 0xe0f6_9a2b_aa41_4de0;
/// The lock key under the prefix (both layouts).
pub const LOCK_KEY: &str = ".lock";
const SESSION_TTL: &str = "15s";
const RENEW_EVERY: Duration = Duration::from_millis(7500);
/// Wait between acquire attempts refused while the key is free (its lock-delay).
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// How long a blocking query on the lock is held.
const WAIT: Duration = Duration::from_secs(15);
/// Time between SIGTERM and SIGKILL for a child whose lock was lost.
const KILL_GRACE: Duration = Duration::from_secs(5);
/// Failed monitor queries tolerated in a row (Consul's `-monitor-retry` default).
const MONITOR_RETRIES: u64 = 3;

pub fn spec() -> Spec {
    let mut flags = vec![
        Flag::uint(
            "n",
            "Optional limit on the number of concurrent lock holders. The underlying \
             implementation switches from a lock to a semaphore when increased past one. \
             The default value is 1.",
        ),
        Flag::string(
            "name",
            "name",
            "Optional name to associate with the underlying session. If not provided, one \
             is generated based on the child command.",
        ),
        Flag::string(
            "timeout",
            "duration",
            "Maximum amount of time to wait to acquire the lock, specified as a duration \
             like \"1s\" or \"3h\". The default value is 0 (wait forever).",
        ),
        Flag::string(
            "try",
            "duration",
            "Make a single attempt to acquire the lock, waiting up to the given duration \
             (same as -timeout).",
        ),
        Flag::bool(
            "child-exit-code",
            "Exit 2 if the child process exited with an error if this is true, otherwise \
             this doesn't propagate an error from the child. The default value is false.",
        ),
        Flag::bool(
            "shell",
            "Use a shell to run the command (can set a custom shell via the SHELL \
             environment variable). The default value is true.",
        ),
        Flag::bool("verbose", "Enable verbose (debugging) output."),
        Flag::bool(
            "pass-stdin",
            "Pass stdin to child process. The default value is false.",
        ),
        Flag::uint(
            "monitor-retry",
            "Number of times to retry if Consul returns a 500 error while monitoring the \
             lock. This allows riding out brief periods of unavailability without causing \
             leader elections, but increases the amount of time required to detect a lost \
             lock in some cases. The default value is 3.",
        ),
    ];
    flags.extend(http_flags::all());
    Spec {
        name: "lock",
        help: HELP,
        flags,
    }
}

const HELP: &str = "
Usage: muster lock [options] prefix child...

  Acquires a lock or semaphore at a given path, and invokes a child process
  when successful. The child process can assume the lock is held while it
  executes. If the lock is lost or communication is disrupted the child
  process will be sent a SIGTERM signal and given time to gracefully exit.
  After the grace period expires the process will be hard terminated.

  When -n=1, only a single lock holder or leader exists providing mutual
  exclusion. Setting a higher value switches to a semaphore allowing multiple
  holders to coordinate.

  The prefix provided must have write privileges.
";

/// `-shell` defaults to true; the shared flag parser drops `-shell=false`, so it is read here
/// (Go flags end at the first positional argument).
fn shell_flag(args: &[String]) -> Result<bool, String> {
    let mut shell = true;
    for arg in args {
        if arg == "--" || !arg.starts_with('-') {
            break;
        }
        let body = arg.trim_start_matches('-');
        if body == "shell" {
            shell = true;
        } else if let Some(v) = body.strip_prefix("shell=") {
            shell = match v {
                "1" | "t" | "T" | "TRUE" | "true" | "True" => true,
                "0" | "f" | "F" | "FALSE" | "false" | "False" => false,
                _ => {
                    return Err(format!(
                        "invalid boolean value {v:?} for -shell: parse error"
                    ))
                }
            };
        }
    }
    Ok(shell)
}

/// The lock's key for `prefix` (Consul: `path.Join(prefix, ".lock")`).
pub fn lock_key(prefix: &str) -> String {
    let p = prefix.trim_matches('/');
    if p.is_empty() {
        LOCK_KEY.to_string()
    } else {
        format!("{p}/{LOCK_KEY}")
    }
}

/// A semaphore's shared state, stored in `<prefix>/.lock`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct SemaphoreState {
    pub limit: u64,
    #[serde(default)]
    pub holders: BTreeMap<String, bool>,
}

/// Why the lock could not be held.
#[derive(Debug)]
enum LockError {
    Api(muster_api::Error),
    Conflict(String),
}

impl std::fmt::Display for LockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::Api(e) => write!(f, "{e}"),
            LockError::Conflict(m) => f.write_str(m),
        }
    }
}

impl From<muster_api::Error> for LockError {
    fn from(e: muster_api::Error) -> Self {
        LockError::Api(e)
    }
}

/// Which layout is in use.
#[derive(Debug, Clone)]
enum Kind {
    Lock { key: String },
    Semaphore { prefix: String, limit: u64 },
}

fn blocking(index: u64) -> QueryOptions {
    QueryOptions {
        index: (index > 0).then_some(index),
        wait: Some(WAIT),
        ..Default::default()
    }
}

/// Waits until the lock (or a slot) is held by `session`.
async fn acquire(client: &Client, kind: &Kind, session: &str) -> Result<(), LockError> {
    match kind {
        Kind::Lock { key } => {
            let mut index = 0;
            loop {
                let (pair, meta) = client.kv_get(key, &blocking(index)).await?;
                if let Some(p) = &pair {
                    if p.flags != LOCK_FLAG {
                        return Err(LockError::Conflict(
                            "Existing key does not match lock use".into(),
                        ));
                    }
                    match p.session.as_deref() {
                        Some(s) if s == session => return Ok(()),
                        Some(_) => {
                            index = meta.last_index;
                            continue;
                        }
                        None => {}
                    }
                }
                let opts = KvWriteOptions {
                    flags: Some(LOCK_FLAG),
                    acquire: Some(session.to_string()),
                    ..Default::default()
                };
                if client.kv_put_with(key, b"", &opts).await? {
                    return Ok(());
                }
                // Free but refused: its lock-delay. Try again shortly.
                tokio::time::sleep(RETRY_AFTER).await;
                index = 0;
            }
        }
        Kind::Semaphore { prefix, limit } => {
            let contender = format!("{}/{session}", prefix.trim_matches('/'));
            let opts = KvWriteOptions {
                flags: Some(SEMAPHORE_FLAG),
                acquire: Some(session.to_string()),
                ..Default::default()
            };
            if !client.kv_put_with(&contender, b"", &opts).await? {
                return Err(LockError::Conflict("failed to make contender entry".into()));
            }
            let lock = lock_key(prefix);
            let mut index = 0;
            loop {
                let (pairs, meta) = client
                    .kv_list(&format!("{}/", prefix.trim_matches('/')), &blocking(index))
                    .await?;
                let (lock_pair, mut state) = semaphore_state(&pairs, &lock, *limit)?;
                if state.holders.contains_key(session) {
                    return Ok(());
                }
                if state.holders.len() as u64 >= *limit {
                    index = meta.last_index;
                    continue;
                }
                state.holders.insert(session.to_string(), true);
                let value = serde_json::to_vec(&state)
                    .map_err(|e| LockError::Conflict(format!("encoding lock: {e}")))?;
                let opts = KvWriteOptions {
                    flags: Some(SEMAPHORE_FLAG),
                    cas: Some(lock_pair.map(|p| p.modify_index).unwrap_or(0)),
                    ..Default::default()
                };
                if client.kv_put_with(&lock, &value, &opts).await? {
                    return Ok(());
                }
                index = 0;
            }
        }
    }
}

/// The semaphore's lock entry and state, with dead holders (whose contender key is gone or
/// no longer held by them) pruned.
fn semaphore_state<'a>(
    pairs: &'a [KvPair],
    lock: &str,
    limit: u64,
) -> Result<(Option<&'a KvPair>, SemaphoreState), LockError> {
    let lock_pair = pairs.iter().find(|p| p.key == lock);
    let mut state = match lock_pair {
        None => SemaphoreState {
            limit,
            holders: BTreeMap::new(),
        },
        Some(p) => {
            if p.flags != SEMAPHORE_FLAG {
                return Err(LockError::Conflict(
                    "Existing key does not match semaphore use".into(),
                ));
            }
            let raw = p.value.as_deref().unwrap_or(b"{}");
            serde_json::from_slice(raw)
                .map_err(|e| LockError::Conflict(format!("Failed to decode semaphore lock: {e}")))?
        }
    };
    if state.limit == 0 {
        state.limit = limit;
    }
    if state.limit != limit {
        return Err(LockError::Conflict(format!(
            "Semaphore limit conflict (lock: {}, local: {limit})",
            state.limit
        )));
    }
    let alive: Vec<&str> = pairs
        .iter()
        .filter(|p| p.key != lock)
        .filter_map(|p| {
            let holder = p.key.rsplit('/').next()?;
            (p.session.as_deref() == Some(holder)).then_some(holder)
        })
        .collect();
    state.holders.retain(|h, _| alive.contains(&h.as_str()));
    Ok((lock_pair, state))
}

/// Whether `session` still holds the lock (or its slot).
async fn holds(
    client: &Client,
    kind: &Kind,
    session: &str,
    index: u64,
) -> Result<(bool, u64), LockError> {
    match kind {
        Kind::Lock { key } => {
            let (pair, meta) = client.kv_get(key, &blocking(index)).await?;
            let held = pair.is_some_and(|p| p.session.as_deref() == Some(session));
            Ok((held, meta.last_index))
        }
        Kind::Semaphore { prefix, limit } => {
            let (pairs, meta) = client
                .kv_list(&format!("{}/", prefix.trim_matches('/')), &blocking(index))
                .await?;
            let (_, state) = semaphore_state(&pairs, &lock_key(prefix), *limit)?;
            Ok((state.holders.contains_key(session), meta.last_index))
        }
    }
}

/// Resolves when the lock is lost (or cannot be confirmed after a few retries).
async fn monitor(client: Client, kind: Kind, session: String, retries: u64) {
    let mut index = 0;
    let mut failures = 0;
    loop {
        match holds(&client, &kind, &session, index).await {
            Ok((true, i)) => {
                index = i;
                failures = 0;
            }
            Ok((false, _)) => return,
            Err(_) if failures < retries => {
                failures += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(_) => return,
        }
    }
}

/// Renews the session every half TTL; sends `true` on `lost` when the session is gone.
async fn renew(client: Client, session: String, lost: watch::Sender<bool>) {
    loop {
        tokio::time::sleep(RENEW_EVERY).await;
        match client.session_renew(&session).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                let _ = lost.send(true);
                return;
            }
            // Transient: the next attempt may work (the TTL is twice the renewal period).
            Err(_) => {}
        }
    }
}

/// Gives the lock (or slot) back and cleans up as Consul's `Unlock` + `Destroy` do.
async fn release(client: &Client, kind: &Kind, session: &str) {
    match kind {
        Kind::Lock { key } => {
            let opts = KvWriteOptions {
                flags: Some(LOCK_FLAG),
                release: Some(session.to_string()),
                ..Default::default()
            };
            let _ = client.kv_put_with(key, b"", &opts).await;
            if let Ok((Some(p), _)) = client.kv_get(key, &QueryOptions::default()).await {
                if p.session.is_none() {
                    let _ = client.kv_delete(key, false, Some(p.modify_index)).await;
                }
            }
        }
        Kind::Semaphore { prefix, limit } => {
            let lock = lock_key(prefix);
            for _ in 0..10 {
                let Ok((pairs, _)) = client
                    .kv_list(
                        &format!("{}/", prefix.trim_matches('/')),
                        &QueryOptions::default(),
                    )
                    .await
                else {
                    break;
                };
                let Ok((Some(lock_pair), mut state)) = semaphore_state(&pairs, &lock, *limit)
                else {
                    break;
                };
                state.holders.remove(session);
                let done = if state.holders.is_empty() {
                    client
                        .kv_delete(&lock, false, Some(lock_pair.modify_index))
                        .await
                } else {
                    let value = serde_json::to_vec(&state).unwrap_or_default();
                    let opts = KvWriteOptions {
                        flags: Some(SEMAPHORE_FLAG),
                        cas: Some(lock_pair.modify_index),
                        ..Default::default()
                    };
                    client.kv_put_with(&lock, &value, &opts).await
                };
                if matches!(done, Ok(true) | Err(_)) {
                    break;
                }
            }
            let contender = format!("{}/{session}", prefix.trim_matches('/'));
            let _ = client.kv_delete(&contender, false, None).await;
        }
    }
    let _ = client.session_destroy(session).await;
}

fn signal_child(pid: Option<u32>, sig: Signal) {
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        // The child leads its own process group: the whole pipeline of a shell gets it.
        let _ = killpg(Pid::from_raw(pid), sig);
    }
}

fn usage_error(ui: &mut Ui<'_>, spec: &Spec, message: &str) -> u8 {
    ui.error(message);
    ui.error(&spec.help_text());
    1
}

pub async fn run(args: Vec<String>, ui: &mut Ui<'_>) -> u8 {
    let spec = spec();
    let shell = match shell_flag(&args) {
        Ok(s) => s,
        Err(e) => return usage_error(ui, &spec, &e),
    };
    let parsed = match spec.parse(args, ui) {
        Ok(p) => p,
        Err(code) => return code,
    };
    if parsed.args.len() < 2 {
        return usage_error(ui, &spec, "Key prefix and child command must be specified");
    }
    let prefix = parsed.args[0].clone();
    let command = parsed.args[1..].to_vec();
    let limit = parsed.uint("n").unwrap_or(1);
    if limit == 0 {
        return usage_error(
            ui,
            &spec,
            "Number of lock holders must be greater than zero",
        );
    }
    let timeout = match parsed.string("timeout").or_else(|| parsed.string("try")) {
        None => None,
        Some(t) => match muster_api::duration::parse(&t) {
            Ok(d) if d.is_zero() => None,
            Ok(d) => Some(d),
            Err(e) => return usage_error(ui, &spec, &format!("Invalid timeout {t:?}: {e}")),
        },
    };
    let child_exit_code = parsed.flag("child-exit-code");
    let verbose = parsed.flag("verbose");
    let Some((client, _)) = super::http_flags::connect(&parsed, ui) else {
        return 1;
    };
    let kind = if limit > 1 {
        Kind::Semaphore {
            prefix: prefix.clone(),
            limit,
        }
    } else {
        Kind::Lock {
            key: lock_key(&prefix),
        }
    };
    let name = parsed
        .string("name")
        .unwrap_or_else(|| format!("Consul lock for '{}' at '{prefix}'", command.join(" ")));
    let session = match client
        .session_create(&SessionRequest {
            name: Some(name),
            ttl: Some(SESSION_TTL.to_string()),
            ..Default::default()
        })
        .await
    {
        Ok(id) => id,
        Err(e) => {
            ui.error(&format!(
                "Lock acquisition failed: failed to create session: {e}"
            ));
            return 1;
        }
    };
    let (lost_tx, mut lost_rx) = watch::channel(false);
    let renewer = tokio::spawn(renew(client.clone(), session.clone(), lost_tx));

    let (mut term, mut int) = match (
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()),
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        _ => {
            ui.error("Error: cannot install signal handlers");
            renewer.abort();
            let _ = client.session_destroy(&session).await;
            return 1;
        }
    };

    // Acquire, unless the timeout passes or we are told to stop first.
    let acquired = tokio::select! {
        r = async {
            match timeout {
                Some(t) => tokio::time::timeout(t, acquire(&client, &kind, &session)).await.ok(),
                None => Some(acquire(&client, &kind, &session).await),
            }
        } => r,
        _ = term.recv() => None,
        _ = int.recv() => None,
    };
    match acquired {
        Some(Ok(())) => {
            if verbose {
                ui.output("Lock acquisition succeeded");
            }
        }
        Some(Err(e)) => {
            ui.error(&format!("Lock acquisition failed: {e}"));
            renewer.abort();
            release(&client, &kind, &session).await;
            return 1;
        }
        None => {
            ui.error("Shutdown triggered or timeout during lock acquisition");
            renewer.abort();
            release(&client, &kind, &session).await;
            return 1;
        }
    }

    let mut cmd = if shell {
        let sh = std::env::var("SHELL").unwrap_or_else(|_| "/bin/sh".to_string());
        let mut c = tokio::process::Command::new(sh);
        c.arg("-c").arg(command.join(" "));
        c
    } else {
        let mut c = tokio::process::Command::new(&command[0]);
        c.args(&command[1..]);
        c
    };
    if !parsed.flag("pass-stdin") {
        cmd.stdin(std::process::Stdio::null());
    }
    cmd.process_group(0).kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            ui.error(&format!("Error executing handler: {e}"));
            renewer.abort();
            release(&client, &kind, &session).await;
            return 1;
        }
    };
    let pid = child.id();
    let retries = parsed.uint("monitor-retry").unwrap_or(MONITOR_RETRIES);
    let monitor = monitor(client.clone(), kind.clone(), session.clone(), retries);
    tokio::pin!(monitor);
    let mut lost = false;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            _ = &mut monitor, if !lost => { lost = true; }
            changed = lost_rx.changed(), if !lost => {
                if changed.is_ok() && *lost_rx.borrow() { lost = true; }
            }
            _ = term.recv() => signal_child(pid, Signal::SIGTERM),
            _ = int.recv() => signal_child(pid, Signal::SIGINT),
        }
        if lost {
            ui.error("Lock lost, killing child");
            signal_child(pid, Signal::SIGTERM);
            match tokio::time::timeout(KILL_GRACE, child.wait()).await {
                Ok(status) => break status,
                Err(_) => {
                    signal_child(pid, Signal::SIGKILL);
                    break child.wait().await;
                }
            }
        }
    };
    renewer.abort();
    release(&client, &kind, &session).await;
    if verbose {
        ui.output("Cleanup succeeded");
    }
    let failed = !matches!(&status, Ok(s) if s.success());
    if let Err(e) = &status {
        ui.error(&format!("Error waiting for the child: {e}"));
    }
    if lost {
        return 1;
    }
    if failed && child_exit_code {
        return 2;
    }
    0
}

#[cfg(test)]
mod tests {
    use super::super::testing::{args, Captured};
    use super::*;

    #[test]
    fn keys_and_flags() {
        assert_eq!(lock_key("svc/leader"), "svc/leader/.lock");
        assert_eq!(lock_key("/svc/"), "svc/.lock");
        assert_eq!(shell_flag(&args(&["-shell=false", "p", "c"])), Ok(false));
        assert_eq!(shell_flag(&args(&["p", "-shell=false"])), Ok(true));
        assert_eq!(shell_flag(&args(&["-n", "2", "p"])), Ok(true));
        assert!(shell_flag(&args(&["-shell=maybe"])).is_err());
    }

    #[test]
    fn semaphore_prunes_dead_holders_and_checks_the_limit() {
        let state = SemaphoreState {
            limit: 2,
            holders: BTreeMap::from([("a".to_string(), true), ("dead".to_string(), true)]),
        };
        let pairs = vec![
            KvPair {
                key: "p/.lock".into(),
                flags: SEMAPHORE_FLAG,
                value: Some(serde_json::to_vec(&state).expect("json")),
                ..Default::default()
            },
            KvPair {
                key: "p/a".into(),
                flags: SEMAPHORE_FLAG,
                session: Some("a".into()),
                ..Default::default()
            },
            KvPair {
                key: "p/dead".into(),
                flags: SEMAPHORE_FLAG,
                session: None,
                ..Default::default()
            },
        ];
        let (lock, s) = semaphore_state(&pairs, "p/.lock", 2).expect("valid");
        assert!(lock.is_some());
        assert_eq!(s.holders.keys().collect::<Vec<_>>(), vec!["a"]);
        assert!(semaphore_state(&pairs, "p/.lock", 3).is_err());
    }

    #[tokio::test]
    async fn usage_errors() {
        let mut c = Captured::default();
        assert_eq!(run(args(&["only-prefix"]), &mut c.ui()).await, 1);
        assert!(c
            .err()
            .starts_with("Key prefix and child command must be specified"));
        let mut c = Captured::default();
        assert_eq!(run(args(&["-n=0", "p", "true"]), &mut c.ui()).await, 1);
        assert!(c.err().contains("greater than zero"), "{}", c.err());
    }
}
