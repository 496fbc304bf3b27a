//! The `file` backend: YAML or JSON files (or directories of `*.yaml`, `*.yml`, `*.json`)
//! flattened to keys as confd does — nested maps join with `/`, list items are numbered from 0,
//! scalars become strings — merged in the order given (a later file wins). The files are
//! watched with notify: a change re-reads them all, and a blocking fetch returns once the keys
//! it covers may have changed. A file that fails to parse is reported and the last good keys
//! are kept.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use serde_norway::Value;
use tokio::sync::watch;

use super::{kv_subset, Dep, DepData, FetchError, KvMap};

/// How long a blocking fetch waits for a change before answering with the same keys.
const BLOCKING_WAIT: Duration = Duration::from_secs(60);

pub struct FileBackend {
    paths: Vec<PathBuf>,
    /// (generation, keys): the generation grows with every change of the keys.
    state: watch::Sender<(u64, Arc<KvMap>)>,
    _watcher: Mutex<Option<notify::RecommendedWatcher>>,
}

impl FileBackend {
    /// Reads the files once; fails when one cannot be read or parsed (at start, a typo should
    /// not render an empty configuration).
    pub fn new(paths: Vec<PathBuf>) -> Result<FileBackend, String> {
        if paths.is_empty() {
            return Err("-backend file needs at least one -file PATH".to_string());
        }
        let map = load(&paths)?;
        let (state, _) = watch::channel((1, Arc::new(map)));
        Ok(FileBackend {
            paths,
            state,
            _watcher: Mutex::new(None),
        })
    }

    pub fn describe(&self) -> String {
        self.paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Starts watching the files (their directories, so that an editor's replace-by-rename is
    /// seen too). Needs a Tokio runtime.
    pub fn watch(self: &Arc<Self>) -> Result<(), String> {
        let me = Arc::downgrade(self);
        let handle = tokio::runtime::Handle::current();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if event.is_ok() {
                    let _ = tx.send(());
                }
            })
            .map_err(|e| format!("watching files: {e}"))?;
        let mut dirs: Vec<PathBuf> = Vec::new();
        for path in &self.paths {
            let dir = if path.is_dir() {
                path.clone()
            } else {
                path.parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| PathBuf::from("."))
            };
            if !dirs.contains(&dir) {
                watcher
                    .watch(&dir, RecursiveMode::NonRecursive)
                    .map_err(|e| format!("watching {}: {e}", dir.display()))?;
                dirs.push(dir);
            }
        }
        *self._watcher.lock().unwrap_or_else(|e| e.into_inner()) = Some(watcher);
        handle.spawn(async move {
            while rx.recv().await.is_some() {
                // Let a burst of events (write, then close, then rename) settle.
                tokio::time::sleep(Duration::from_millis(20)).await;
                while rx.try_recv().is_ok() {}
                let Some(me) = me.upgrade() else { return };
                me.reload();
            }
        });
        Ok(())
    }

    /// Re-reads the files; bumps the generation when the keys changed.
    pub fn reload(&self) {
        match load(&self.paths) {
            Ok(map) => {
                self.state.send_if_modified(|(generation, current)| {
                    if **current == map {
                        return false;
                    }
                    *generation += 1;
                    *current = Arc::new(map);
                    true
                });
            }
            Err(e) => tracing::error!("file backend: {e}; keeping the last good keys"),
        }
    }

    pub async fn fetch(
        &self,
        dep: &Dep,
        index: u64,
        blocking: bool,
    ) -> Result<(DepData, u64), FetchError> {
        let Dep::Kv(prefix) = dep else {
            return Err(FetchError::Unsupported(format!(
                "the file backend has no {dep} (service health needs -backend consul)"
            )));
        };
        let mut rx = self.state.subscribe();
        if blocking {
            let wait = rx.wait_for(|(generation, _)| *generation > index);
            let _ = tokio::time::timeout(BLOCKING_WAIT, wait).await;
        }
        let (generation, map) = rx.borrow().clone();
        Ok((DepData::Kv(Arc::new(kv_subset(&map, prefix))), generation))
    }
}

/// Reads and merges every file.
pub fn load(paths: &[PathBuf]) -> Result<KvMap, String> {
    let mut map = KvMap::new();
    for path in paths {
        let files = if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| format!("{}: {e}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    matches!(
                        p.extension().and_then(|e| e.to_str()),
                        Some("yaml" | "yml" | "json")
                    )
                })
                .collect();
            files.sort();
            files
        } else {
            vec![path.clone()]
        };
        for file in files {
            let text =
                std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let value: Value = serde_norway::from_str(&text)
                .map_err(|e| format!("{}: not YAML or JSON: {e}", file.display()))?;
            flatten("", &value, &mut map);
        }
    }
    Ok(map)
}

/// Adds `value` under `path` to `out`, confd's way.
pub fn flatten(path: &str, value: &Value, out: &mut KvMap) {
    match value {
        Value::Mapping(m) => {
            for (k, v) in m {
                let key = match k {
                    Value::String(s) => s.clone(),
                    other => scalar(other),
                };
                flatten(&format!("{path}/{key}"), v, out);
            }
        }
        Value::Sequence(items) => {
            for (i, v) in items.iter().enumerate() {
                flatten(&format!("{path}/{i}"), v, out);
            }
        }
        Value::Tagged(t) => flatten(path, &t.value, out),
        other => {
            let key = if path.is_empty() { "/" } else { path };
            out.insert(key.to_string(), scalar(other));
        }
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        other => serde_norway::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_and_json_flatten_like_confd() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.yaml");
        std::fs::write(
            &a,
            "nginx:\n  port: 80\n  hosts: [a, b]\n  tls: true\n  empty: ~\ndb:\n  user: x\n",
        )
        .unwrap();
        let b = dir.path().join("b.json");
        std::fs::write(&b, r#"{"db": {"user": "y", "pass": "s"}}"#).unwrap();
        let map = load(&[a, b]).unwrap();
        assert_eq!(map["/nginx/port"], "80");
        assert_eq!(map["/nginx/hosts/0"], "a");
        assert_eq!(map["/nginx/hosts/1"], "b");
        assert_eq!(map["/nginx/tls"], "true");
        assert_eq!(map["/nginx/empty"], "");
        assert_eq!(map["/db/user"], "y", "the later file wins");
        assert_eq!(map["/db/pass"], "s");
        let dir_map = load(&[dir.path().to_path_buf()]).unwrap();
        assert_eq!(dir_map, map);
    }

    #[test]
    fn a_bad_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("bad.yaml");
        std::fs::write(&a, "a: [unclosed").unwrap();
        let err = load(&[a]).unwrap_err();
        assert!(err.contains("bad.yaml"), "{err}");
    }

    #[tokio::test]
    async fn a_blocking_fetch_returns_when_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.yaml");
        std::fs::write(&a, "app:\n  v: 1\n").unwrap();
        let backend = Arc::new(FileBackend::new(vec![a.clone()]).unwrap());
        backend.watch().unwrap();
        let dep = Dep::Kv("/app".into());
        let (first, index) = backend.fetch(&dep, 0, false).await.unwrap();
        let b = backend.clone();
        let d = dep.clone();
        let waiter = tokio::spawn(async move { b.fetch(&d, index, true).await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        std::fs::write(&a, "app:\n  v: 2\n").unwrap();
        let (second, index2) = tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("the blocking fetch returned")
            .unwrap()
            .unwrap();
        assert!(index2 > index);
        assert_ne!(first, second);
        let DepData::Kv(map) = second else { panic!() };
        assert_eq!(map["/app/v"], "2");
    }
}
