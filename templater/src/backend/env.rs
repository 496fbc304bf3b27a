//! The `env` backend: confd's mapping of a key to an environment variable, `/a/b-c` → `A_B_C`
//! (upper case, `/` and `-` become `_`, the leading `/` dropped). A prefix holds every variable
//! whose name starts with the prefix's name; such a variable `A_B_C` reads back as `/a/b/c`.
//! The environment does not change under a running process, so nothing here blocks.

use std::sync::Arc;

use super::{Dep, DepData, FetchError, KvMap};

/// Reads a snapshot of the environment (or a given one, for tests).
pub struct EnvBackend {
    vars: Vec<(String, String)>,
}

impl EnvBackend {
    pub fn from_env() -> EnvBackend {
        EnvBackend {
            vars: std::env::vars().collect(),
        }
    }

    pub fn from_vars(vars: Vec<(String, String)>) -> EnvBackend {
        EnvBackend { vars }
    }

    pub fn fetch(&self, dep: &Dep) -> Result<(DepData, u64), FetchError> {
        let Dep::Kv(prefix) = dep else {
            return Err(FetchError::Unsupported(format!(
                "the env backend has no {dep} (service health needs -backend consul)"
            )));
        };
        let name = env_name(prefix);
        let mut map = KvMap::new();
        for (var, value) in &self.vars {
            let matches = name.is_empty()
                || var == &name
                || (var.starts_with(&name) && var[name.len()..].starts_with('_'));
            if matches {
                map.insert(key_name(var), value.clone());
            }
        }
        Ok((DepData::Kv(Arc::new(map)), 1))
    }
}

/// `/a/b-c` → `A_B_C`.
pub fn env_name(key: &str) -> String {
    key.trim_start_matches('/')
        .replace(['/', '-'], "_")
        .to_uppercase()
}

/// `A_B_C` → `/a/b/c`.
pub fn key_name(var: &str) -> String {
    format!("/{}", var.to_lowercase().replace('_', "/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_variables_like_confd() {
        assert_eq!(
            env_name("/nginx/http/server-name"),
            "NGINX_HTTP_SERVER_NAME"
        );
        assert_eq!(key_name("NGINX_HTTP_PORT"), "/nginx/http/port");
        let b = EnvBackend::from_vars(vec![
            ("NGINX_PORT".into(), "80".into()),
            ("NGINX_HOST".into(), "a".into()),
            ("NGINXX".into(), "no".into()),
            ("HOME".into(), "/root".into()),
        ]);
        let (DepData::Kv(map), _) = b.fetch(&Dep::Kv("/nginx".into())).unwrap() else {
            panic!("kv")
        };
        assert_eq!(map.len(), 2);
        assert_eq!(map["/nginx/port"], "80");
        assert!(b.fetch(&Dep::Service("web".into())).is_err());
    }
}
