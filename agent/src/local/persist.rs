//! Persistence of registrations made through the API, so they survive a restart: one file per
//! service under `<data-dir>/services/` and per standalone check under `<data-dir>/checks/`
//! (Consul's layout), each written atomically (staged, fsynced, renamed). Config-file
//! definitions are not persisted: they come back with the config.

use std::path::{Path, PathBuf};

use muster_api::{CheckRegistration, HealthStatus, ServiceRegistration};
use serde::{Deserialize, Serialize};

use super::definition::{
    validate_check, validate_service, CheckDef, Runner, ScriptPolicy, ServiceDef, Source,
};
use super::{LocalError, LocalState, NODE_MAINT, SERVICE_MAINT_PREFIX};
use crate::server::write_atomically;

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PersistedService {
    service: ServiceRegistration,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PersistedCheck {
    check: CheckRegistration,
    #[serde(default)]
    maintenance: bool,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TtlState {
    #[serde(rename = "CheckID")]
    check_id: String,
    status: HealthStatus,
    output: String,
    /// Unix milliseconds after which the state no longer holds.
    expires_ms: u64,
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A stable file name for an ID of any length or alphabet: FNV-1a 64 in hex (the file holds
/// the ID itself, so a collision is detectable).
fn file_name(id: &str) -> String {
    format!("{:016x}.json", super::fnv1a64(id.as_bytes()))
}

impl LocalState {
    fn persist_path(&self, kind: &str, id: &str) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join(kind).join(file_name(id)))
    }

    fn write(&self, path: &Path, bytes: &[u8]) -> Result<(), LocalError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| LocalError::Persist(format!("{}: {e}", dir.display())))?;
        }
        write_atomically(path, bytes).map_err(|e| LocalError::Persist(e.to_string()))
    }

    /// Persists a service with every check registered as part of it (`checks`: those of this
    /// registration and those kept from earlier ones).
    pub(super) fn persist_service(
        &self,
        def: &ServiceDef,
        checks: Vec<CheckRegistration>,
    ) -> Result<(), LocalError> {
        let Some(path) = self.persist_path("services", &def.service.id) else {
            return Ok(());
        };
        let mut service = def.registration.clone();
        // The file must bring back the same ID even if the registration left it implicit.
        service.id = def.service.id.clone();
        service.check = None;
        service.checks = checks;
        let bytes = serde_json::to_vec_pretty(&PersistedService { service })
            .map_err(|e| LocalError::Persist(e.to_string()))?;
        self.write(&path, &bytes)
    }

    pub(super) fn unpersist_service(&self, id: &str) {
        if let Some(path) = self.persist_path("services", id) {
            remove(&path);
        }
    }

    pub(super) fn persist_check(
        &self,
        def: &CheckDef,
        maintenance: bool,
    ) -> Result<(), LocalError> {
        let Some(path) = self.persist_path("checks", &def.id) else {
            return Ok(());
        };
        let mut check = def.registration.clone();
        check.check_id = def.id.clone();
        let bytes = serde_json::to_vec_pretty(&PersistedCheck { check, maintenance })
            .map_err(|e| LocalError::Persist(e.to_string()))?;
        self.write(&path, &bytes)
    }

    pub(super) fn unpersist_check(&self, id: &str) {
        if let Some(path) = self.persist_path("checks", id) {
            remove(&path);
        }
        if let Some(path) = self.persist_path("checks/state", id) {
            remove(&path);
        }
    }

    /// Records a TTL check's status, valid until its TTL from now runs out, so a restart does
    /// not turn a passing service critical (Consul persists TTL state the same way). Best
    /// effort: a failure is logged, the update itself stands.
    pub(super) fn persist_ttl_state(&self, id: &str, status: HealthStatus, output: &str) {
        let ttl = match self.lock().checks.get(id).map(|c| c.def.runner.clone()) {
            Some(Runner::Ttl(ttl)) => ttl,
            _ => return,
        };
        let Some(path) = self.persist_path("checks/state", id) else {
            return;
        };
        let state = TtlState {
            check_id: id.to_string(),
            status,
            output: output.to_string(),
            expires_ms: unix_ms().saturating_add(ttl.as_millis() as u64),
        };
        let written = serde_json::to_vec(&state)
            .map_err(|e| LocalError::Persist(e.to_string()))
            .and_then(|bytes| self.write(&path, &bytes));
        if let Err(e) = written {
            tracing::warn!(check = id, error = %e, "cannot persist TTL check state");
        }
    }

    /// A TTL check's persisted status and output, if still within its TTL.
    pub(super) fn restore_ttl_state(&self, id: &str) -> Option<(HealthStatus, String)> {
        let path = self.persist_path("checks/state", id)?;
        let bytes = std::fs::read(&path).ok()?;
        let state: TtlState = serde_json::from_slice(&bytes).ok()?;
        (state.check_id == id && state.expires_ms > unix_ms())
            .then_some((state.status, state.output))
    }

    /// Re-registers what was registered through the API before a restart. Definitions whose
    /// ID a config file now defines are skipped (the config wins); a file that cannot be read
    /// or no longer validates is logged and left in place.
    pub fn load_persisted(&self, datacenter: &str, scripts: ScriptPolicy) -> usize {
        let Some(dir) = self.dir.clone() else {
            return 0;
        };
        let mut loaded = 0;
        for (path, bytes) in read_dir(&dir.join("services")) {
            let parsed = serde_json::from_slice::<PersistedService>(&bytes)
                .map_err(|e| e.to_string())
                .and_then(|p| {
                    validate_service(&p.service, datacenter, Source::Remote, scripts)
                        .map_err(|e| e.0)
                });
            match parsed {
                Ok(def) if self.lock().services.contains_key(&def.service.id) => {}
                Ok(def) => match self.add_service(def, Source::Remote, false) {
                    Ok(()) => loaded += 1,
                    Err(e) => {
                        tracing::warn!(file = %path.display(), error = %e, "cannot restore service")
                    }
                },
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "cannot restore service")
                }
            }
        }
        for (path, bytes) in read_dir(&dir.join("checks")) {
            let parsed: Result<PersistedCheck, _> = serde_json::from_slice(&bytes);
            let restored = match parsed {
                Ok(p) if p.maintenance && p.check.check_id == NODE_MAINT => {
                    self.node_maintenance(true, &p.check.notes)
                }
                Ok(p) if p.maintenance => {
                    let service = p
                        .check
                        .check_id
                        .strip_prefix(SERVICE_MAINT_PREFIX)
                        .unwrap_or_default()
                        .to_string();
                    self.service_maintenance(&service, true, &p.check.notes)
                }
                Ok(p) => match validate_check(&p.check, Source::Remote, scripts) {
                    Ok(def) if self.lock().checks.contains_key(&def.id) => Ok(()),
                    Ok(def) => self.add_check(def, Source::Remote),
                    Err(e) => Err(LocalError::Invalid(e.0)),
                },
                Err(e) => Err(LocalError::Invalid(e.to_string())),
            };
            match restored {
                Ok(()) => loaded += 1,
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "cannot restore check")
                }
            }
        }
        loaded
    }
}

fn remove(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(file = %path.display(), error = %e, "cannot remove persisted registration");
        }
    }
}

/// The `*.json` files of `dir` with their contents, sorted by name; a missing dir is empty.
fn read_dir(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .filter_map(|p| match std::fs::read(&p) {
            Ok(bytes) => Some((p, bytes)),
            Err(e) => {
                tracing::warn!(file = %p.display(), error = %e, "cannot read persisted registration");
                None
            }
        })
        .collect()
}
