//! etcd driven natively over gRPC with the `etcd-client` crate (tonic), the stricter peer for
//! the KV figures: no JSON gateway in the way, protobuf on one HTTP/2 connection.
//!
//! A real gRPC client (etcd's clientv3, etcd-client) multiplexes every caller on one channel,
//! that is one HTTP/2 connection per endpoint; `channels` (`--grpc-channels`, default 1)
//! connects that many independent `etcd_client::Client`s and hands worker `i` channel
//! `i % channels`. Put = `KV.Put`; get = `KV.Range` on one key, linearizable unless
//! `serializable` (`--consistency stale`).
//!
//! Built only with the `grpc` feature (etcd-client's build runs protoc); without it
//! [`Clients::connect`] says how to build it, and the types here cannot be constructed.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Result;

#[cfg(feature = "grpc")]
mod imp {
    use super::*;
    use anyhow::{anyhow, Context};
    use etcd_client::{Client, ConnectOptions, GetOptions, KvClient};

    /// `channels` connected clients to one etcd endpoint.
    pub struct Clients {
        clients: Vec<KvClient>,
    }

    impl Clients {
        pub async fn connect(addr: SocketAddr, channels: usize, timeout: Duration) -> Result<Self> {
            let url = format!("http://{addr}");
            let mut clients = Vec::new();
            for _ in 0..channels.max(1) {
                let opts = ConnectOptions::new().with_connect_timeout(timeout);
                let c = Client::connect([url.as_str()], Some(opts))
                    .await
                    .with_context(|| format!("connecting to etcd over gRPC at {addr}"))?;
                clients.push(c.kv_client());
            }
            Ok(Clients { clients })
        }

        pub fn channels(&self) -> usize {
            self.clients.len()
        }

        /// Worker `i`'s handle: a clone sharing channel `i % channels`.
        pub fn for_worker(&self, worker: usize) -> Kv {
            Kv(self.clients[worker % self.clients.len()].clone())
        }
    }

    /// One worker's handle on a shared channel.
    pub struct Kv(KvClient);

    impl Kv {
        pub async fn put(&mut self, key: &str, value: &[u8], timeout: Duration) -> Result<()> {
            match tokio::time::timeout(timeout, self.0.put(key, value, None)).await {
                Ok(r) => r.map(|_| ()).map_err(|e| anyhow!("etcd put: {e}")),
                Err(_) => Err(anyhow!("no answer within {timeout:?}")),
            }
        }

        /// Whether the key was found.
        pub async fn get(
            &mut self,
            key: &str,
            serializable: bool,
            timeout: Duration,
        ) -> Result<bool> {
            let opts = serializable.then(|| GetOptions::new().with_serializable());
            match tokio::time::timeout(timeout, self.0.get(key, opts)).await {
                Ok(r) => r
                    .map(|g| !g.kvs().is_empty())
                    .map_err(|e| anyhow!("etcd range: {e}")),
                Err(_) => Err(anyhow!("no answer within {timeout:?}")),
            }
        }
    }
}

#[cfg(not(feature = "grpc"))]
mod imp {
    use super::*;
    use anyhow::bail;
    use std::convert::Infallible;

    /// Never constructed in a build without the `grpc` feature.
    pub struct Clients(Infallible);

    impl Clients {
        pub async fn connect(
            addr: SocketAddr,
            _channels: usize,
            _timeout: Duration,
        ) -> Result<Self> {
            bail!(
                "etcd over gRPC ({addr}) needs a build with the `grpc` feature: \
                 cargo build --release -p muster-bench --features grpc \
                 (etcd-client's build runs protoc: apt-get install protobuf-compiler)"
            )
        }

        pub fn channels(&self) -> usize {
            match self.0 {}
        }

        pub fn for_worker(&self, _worker: usize) -> Kv {
            match self.0 {}
        }
    }

    pub struct Kv(Infallible);

    impl Kv {
        pub async fn put(&mut self, _key: &str, _value: &[u8], _timeout: Duration) -> Result<()> {
            match self.0 {}
        }

        pub async fn get(
            &mut self,
            _key: &str,
            _serializable: bool,
            _timeout: Duration,
        ) -> Result<bool> {
            match self.0 {}
        }
    }
}

pub use imp::{Clients, Kv};
