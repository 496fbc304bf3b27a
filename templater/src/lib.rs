//! templater: confd-style configuration rendering from Muster's (or Consul's) KV and service
//! health.
//!
//! Layout: [`cli`] (confd's flags) and [`config`] (flags + config file + environment) →
//! [`resource`] (`conf.d/*.toml`) and [`render`] (Handlebars with the [`helpers`]) →
//! [`backend`] (consul, file, env: one fetch or blocking query per distinct dependency) →
//! [`watcher`] (the engine and the onetime/interval/watch modes) → [`pipeline`] (stage, check,
//! rename, fsync) and [`exec`] (check and reload commands in their own process group).

pub mod backend;
pub mod cli;
pub mod config;
pub mod exec;
pub mod helpers;
pub mod pipeline;
pub mod render;
pub mod resource;
pub mod watcher;

use std::sync::Arc;

use backend::Backend;
use config::{BackendKind, Settings};

/// Builds the backend the settings name (starting the file watcher for `file`).
pub fn make_backend(settings: &Settings) -> Result<Arc<Backend>, String> {
    match settings.backend {
        BackendKind::Consul => {
            let opts = backend::consul::ConsulOptions {
                nodes: settings.nodes.clone(),
                token: settings.auth_token.clone(),
                https: settings.https,
                tls: settings.tls.clone(),
                force_proto: None,
            };
            Ok(Arc::new(Backend::Consul(
                backend::consul::ConsulBackend::new(opts)?,
            )))
        }
        BackendKind::Env => Ok(Arc::new(Backend::Env(backend::env::EnvBackend::from_env()))),
        BackendKind::File => {
            let file = Arc::new(backend::file::FileBackend::new(settings.files.clone())?);
            if settings.mode != config::Mode::Onetime {
                file.watch()?;
            }
            Ok(Arc::new(Backend::File(file)))
        }
    }
}
