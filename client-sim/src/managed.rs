//! One device with a bootstrap server (`--bootstrap URI`) and/or persisted state
//! (`--state-dir DIR`): the transport follows the device.
//!
//! A device talks to its bootstrap server and then to the LwM2M server the bootstrap
//! configured, each with its own security (NoSec → CoAP over UDP; PSK or X.509 from `/0` →
//! DTLS). A DTLS session is bound to one server, so whenever the server the device wants
//! (bootstrap server while bootstrapping, else its account) needs another transport than the
//! one running, the driver is stopped, the device taken back and a new driver started. Plain
//! UDP reaches any address, so NoSec → NoSec needs no switch.
//!
//! Which server and credentials the device wants is [`steward_client::transport::wanted`]:
//! factory credentials (`--psk-identity/--psk-key` or `--cert/--key/--ca`) for the bootstrap
//! server, those the bootstrap server wrote in /0 for the LwM2M server. Security Mode 4
//! (EST) enrols over the bootstrap server's session before the switch, and the OCSP check
//! of the server certificate runs there too (`steward_client::est`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use steward_client::bootstrap::ServerUri;
use steward_client::dtls::DtlsEvent;
use steward_client::est::{EstConfig, OcspCheck};
use steward_client::state::{CredentialPaths, StateStore};
use steward_client::transport::{self, Target};
use steward_client::{Client, DeviceConfig, DeviceEvent, Security};
use steward_coap::endpoint::Config;
use steward_coap::stack::StackConfig;
use steward_dtls::{ClientConfig, ClientCredentials};
use steward_transport::dtls_client::Backoff;
use steward_transport::udp::{self, UdpConfig};
use tokio::sync::mpsc;

use crate::{Args, Progress, RunError, describe_link, report, seed_of};

fn target(
    client: &Client<SocketAddr>,
    flags: &Option<ClientCredentials>,
) -> Result<Target, RunError> {
    Ok(transport::wanted(&client.device, flags.as_ref())?)
}

pub(crate) async fn run(
    args: Args,
    flags: Option<ClientCredentials>,
    clock: i64,
) -> Result<(), RunError> {
    if args.count != 1 {
        return Err(RunError::ManagedCount);
    }
    let endpoint = args.endpoint.clone();
    let mut config = DeviceConfig::new(endpoint.clone(), args.lwm2m);
    config.lifetime = args.lifetime;
    config.queue_mode = args.queue;
    config.clock = clock;
    let scheme = if flags.is_some() { "coaps" } else { "coap" };
    config.server_uri = format!("{scheme}://{}", args.server);
    if let Some(uri) = &args.bootstrap {
        ServerUri::parse(uri).map_err(|e| RunError::Uri(e.to_string()))?;
        config.bootstrap = Some(steward_client::BootstrapServer {
            uri: uri.clone(),
            security: factory_security(&flags)?,
        });
    }
    let stack = StackConfig {
        endpoint: Config {
            seed: seed_of(&endpoint),
            ..Config::default()
        },
        ..StackConfig::default()
    };
    let mut client = Client::new(config, stack, args.server);
    client
        .device
        .set_peer_resolver(steward_client::firmware::ip_resolver);
    if args.bootstrap.is_some() {
        // The EST server and the OCSP responder are the bootstrap server's (RFC 9148 default
        // root; /ocsp unless --ocsp-path says otherwise).
        let mut est = EstConfig::new(endpoint.clone());
        est.est_root = args.est_root.clone();
        est.ocsp = if args.no_ocsp_check {
            OcspCheck::Off
        } else {
            OcspCheck::On {
                path: args.ocsp_path.clone(),
            }
        };
        client.device.set_est(Some(est));
    }
    if let Some(dir) = &args.state_dir {
        let paths = CredentialPaths {
            certificate: args.cert.clone(),
            key: args.key.clone(),
            ca: args.ca.clone(),
        };
        let loaded = client
            .device
            .attach_state(StateStore::new(dir.clone()), paths)?;
        if loaded {
            println!("{endpoint}: state loaded from {}", dir.display());
        }
    }
    if args.reenroll {
        client
            .device
            .reenrol()
            .map_err(|e| RunError::Uri(format!("--reenroll: {e}")))?;
        println!("{endpoint}: re-enrolling (EST /sren)");
    }
    println!(
        "steward-client: 1 device, LwM2M {}, {}",
        args.lwm2m,
        match &args.bootstrap {
            Some(uri) => format!("bootstrapping with {uri} if needed"),
            None => format!("registering with {}", args.server),
        }
    );
    let progress = Arc::new(Progress::default());
    let mut first = true;
    loop {
        let wanted = target(&client, &flags)?;
        let (switch_tx, mut switch_rx) = mpsc::unbounded_channel::<()>();
        let flags_for_events = flags.clone();
        let watch = {
            let endpoint = endpoint.clone();
            let progress = Arc::clone(&progress);
            move |client: &mut Client<SocketAddr>, event: &DeviceEvent, current: &Target| {
                report(&endpoint, event, &progress, true);
                let wanted = match target(client, &flags_for_events) {
                    Ok(t) => t,
                    Err(e) => {
                        println!("{endpoint}: {e}");
                        return;
                    }
                };
                if !wanted.same_driver(current) {
                    let _ = switch_tx.send(());
                }
            }
        };
        let bootstrapping = client.device.is_bootstrapping();
        let (handle, task) = match &wanted.credentials {
            Some(credentials) => {
                let current = Target {
                    addr: wanted.addr,
                    credentials: Some(credentials.clone()),
                };
                let endpoint = endpoint.clone();
                steward_client::dtls::spawn(
                    ClientConfig::new(wanted.addr, credentials.clone()),
                    Backoff::default(),
                    client,
                    move |client, _, event| match event {
                        DtlsEvent::Device(event) => watch(client, &event, &current),
                        DtlsEvent::Link(event) => {
                            println!("{endpoint}: {}", describe_link(&event));
                        }
                    },
                )
            }
            None => {
                let bind = match wanted.addr {
                    SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
                    SocketAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
                };
                let (socket, _) = udp::bind(&UdpConfig {
                    bind,
                    recv_buffer: 64 << 10,
                    send_buffer: 64 << 10,
                })?;
                let current = Target {
                    addr: wanted.addr,
                    credentials: None,
                };
                let (handle, task) = udp::spawn(socket, client, move |client, _, event| {
                    watch(client, &event, &current);
                })?;
                // The first driver starts the device; a later one starts it again unless a
                // bootstrap is under way (its request is retransmitted on the new socket).
                if first || !bootstrapping {
                    handle.command(|client, now| client.start(now));
                }
                (handle, task)
            }
        };
        first = false;
        tokio::select! {
            _ = switch_rx.recv() => {
                handle.shutdown();
                client = task.await.map_err(|e| RunError::Task(e.to_string()))?;
            }
            _ = tokio::signal::ctrl_c() => {
                println!("steward-client: deregistering");
                handle.command(|client, now| client.deregister(now));
                tokio::time::sleep(Duration::from_secs(2)).await;
                handle.shutdown();
                return Ok(());
            }
        }
    }
}

/// The /0 content of the factory bootstrap account for the credentials of the flags.
fn factory_security(flags: &Option<ClientCredentials>) -> Result<Security, RunError> {
    Ok(match flags {
        None => Security::NoSec,
        Some(ClientCredentials::Psk { identity, key }) => Security::Psk {
            identity: identity.clone(),
            key: key.clone(),
        },
        // The key stays in its file: /0/x/5 of the bootstrap account is never read back.
        Some(ClientCredentials::Certificate { .. }) => Security::Certificate {
            certificate: Vec::new(),
            server_certificate: Vec::new(),
            private_key: Vec::new(),
        },
    })
}
