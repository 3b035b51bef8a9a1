//! Test helpers shared by `tests/serve.rs` and `tests/serve_crash.rs`: a fleet of simulated
//! clients (`steward_client::Client`, one UDP socket each) and temporary directories.

#![allow(dead_code)] // each test binary uses its own part of this module

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use steward_client::registration::RegistrationEvent;
use steward_client::{Client, DeviceConfig, DeviceEvent};
use steward_coap::endpoint::Config;
use steward_coap::stack::StackConfig;
use steward_objects::Version;
use steward_transport::Handle;
use steward_transport::udp::{self, UdpConfig};
use tokio::sync::mpsc;

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir =
            std::env::temp_dir().join(format!("steward-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What a device reported, with the instant the test saw it.
#[derive(Debug, Clone)]
pub struct Report {
    pub device: usize,
    pub event: DeviceEvent,
    pub at: Instant,
}

/// Simulated devices `PREFIX-0 .. PREFIX-{n-1}` registering with one server over UDP.
pub struct Fleet {
    pub endpoints: Vec<String>,
    handles: Vec<Handle<Client<SocketAddr>>>,
    pub reports: mpsc::UnboundedReceiver<Report>,
}

impl Fleet {
    /// Starts `count` devices (LwM2M 1.1, lifetime `lifetime` s); each registers at once.
    pub fn start(server: SocketAddr, prefix: &str, count: usize, lifetime: u32) -> Fleet {
        let (tx, reports) = mpsc::unbounded_channel();
        let mut endpoints = Vec::with_capacity(count);
        let mut handles = Vec::with_capacity(count);
        for device in 0..count {
            let endpoint = format!("{prefix}-{device}");
            let mut config = DeviceConfig::new(endpoint.clone(), Version::V1_1);
            config.lifetime = lifetime;
            config.server_uri = format!("coap://{server}");
            let mut h = DefaultHasher::new();
            endpoint.hash(&mut h);
            let stack = StackConfig {
                endpoint: Config {
                    seed: h.finish(),
                    ..Config::default()
                },
                ..StackConfig::default()
            };
            let client = Client::new(config, stack, server);
            let (socket, _) = udp::bind(&UdpConfig {
                bind: SocketAddr::from(([127, 0, 0, 1], 0)),
                recv_buffer: 64 << 10,
                send_buffer: 64 << 10,
            })
            .expect("bind a client socket");
            let tx = tx.clone();
            let (handle, _task) = udp::spawn(socket, client, move |_, _, event| {
                let _ = tx.send(Report {
                    device,
                    event,
                    at: Instant::now(),
                });
            })
            .expect("spawn a client");
            handle.command(|client, now| client.start(now));
            endpoints.push(endpoint);
            handles.push(handle);
        }
        Fleet {
            endpoints,
            handles,
            reports,
        }
    }

    /// Waits until every device in `devices` reported `want` (at least once), or `timeout`.
    /// Returns the reports seen meanwhile.
    pub async fn wait_for(
        &mut self,
        devices: &[usize],
        timeout: Duration,
        want: impl Fn(&DeviceEvent) -> bool,
    ) -> Result<Vec<Report>, (Vec<usize>, Vec<Report>)> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut missing: std::collections::BTreeSet<usize> = devices.iter().copied().collect();
        let mut seen = Vec::new();
        while !missing.is_empty() {
            match tokio::time::timeout_at(deadline, self.reports.recv()).await {
                Ok(Some(r)) => {
                    if want(&r.event) {
                        missing.remove(&r.device);
                    }
                    seen.push(r);
                }
                Ok(None) | Err(_) => return Err((missing.into_iter().collect(), seen)),
            }
        }
        Ok(seen)
    }

    /// Runs `f` on one device's client, in its driver task.
    pub fn command(
        &self,
        device: usize,
        f: impl FnOnce(&mut Client<SocketAddr>, Instant) + Send + 'static,
    ) {
        if let Some(h) = self.handles.get(device) {
            h.command(f);
        }
    }

    /// Sends a registration Update from every device now.
    pub fn update_all(&self) {
        for h in &self.handles {
            h.command(|client, now| {
                client.device.registration_mut().trigger_update();
                client.handle_timeout(now);
            });
        }
    }

    /// Stops every device at once (no De-register): the sockets close.
    pub fn stop(&mut self) {
        for h in self.handles.drain(..) {
            h.shutdown();
        }
    }

    /// Every report already queued.
    pub fn drain(&mut self) -> Vec<Report> {
        let mut out = Vec::new();
        while let Ok(r) = self.reports.try_recv() {
            out.push(r);
        }
        out
    }
}

/// The registration location a report announces, if it is a 2.01.
pub fn registered(event: &DeviceEvent) -> Option<&str> {
    match event {
        DeviceEvent::Registration(RegistrationEvent::Registered { location }) => Some(location),
        _ => None,
    }
}

/// The registration ID at the end of a location (`/rd/ID`).
pub fn id_of(location: &str) -> &str {
    location.rsplit('/').next().unwrap_or(location)
}
