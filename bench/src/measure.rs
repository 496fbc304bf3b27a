//! The CPU and memory side of a measured window: the server's (when its pid is known), this
//! process's, and everything else's on the machine (which says whether a run was disturbed).

use anyhow::Result;

use crate::procfs::{self, Sampler, Usage};

pub struct Measurement {
    server: Option<Sampler>,
    self_cpu: f64,
    machine_busy: f64,
}

pub struct Measured {
    pub server: Option<Usage>,
    pub client_cpu_s: f64,
    pub others_cpu_s: f64,
}

impl Measurement {
    pub fn start(pid: Option<u32>) -> Result<Measurement> {
        Ok(Measurement {
            server: pid.map(Sampler::start).transpose()?,
            self_cpu: procfs::self_cpu_s(),
            machine_busy: procfs::machine_busy_s(),
        })
    }

    pub fn finish(self) -> Result<Measured> {
        let server = self.server.map(Sampler::finish).transpose()?;
        let client_cpu_s = procfs::self_cpu_s() - self.self_cpu;
        let busy = procfs::machine_busy_s() - self.machine_busy;
        let server_cpu = server.map(|u| u.cpu_s).unwrap_or(0.0);
        Ok(Measured {
            server,
            client_cpu_s,
            others_cpu_s: (busy - client_cpu_s - server_cpu).max(0.0),
        })
    }
}
