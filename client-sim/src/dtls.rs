//! A simulated device over DTLS 1.2 (PSK or X.509): its [`Client`] on the
//! `steward_transport::dtls_client` driver.
//!
//! The device registers when the first session is up. When a registration request gets no
//! answer (the server restarted and lost the session, or the path broke), the driver drops the
//! session and shakes hands again; on every new session the device forgets the old session's
//! CoAP state and registers again, unless it was deregistered meanwhile.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use steward_dtls::ClientConfig;
use steward_transport::Handle;
use steward_transport::dtls_client::{self, Backoff, Directive, LinkEvent};

use crate::registration::{RegistrationEvent, State};
use crate::{Client, DeviceEvent};

/// What a DTLS device reports: its own events and its session's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DtlsEvent {
    Device(DeviceEvent),
    Link(LinkEvent),
}

/// Runs `client` over DTLS with the server of `config` (which must be the server address the
/// client was made with). `report` sees every event, in the driver task, with the client.
pub fn spawn<F>(
    config: ClientConfig,
    backoff: Backoff,
    client: Client<SocketAddr>,
    report: F,
) -> (
    Handle<Client<SocketAddr>>,
    tokio::task::JoinHandle<Client<SocketAddr>>,
)
where
    F: FnMut(&mut Client<SocketAddr>, Instant, DtlsEvent) + Send + 'static,
{
    let server = config.server;
    // Both callbacks run in the driver task, one at a time; the mutex only shares `report`.
    let report = Arc::new(Mutex::new(report));
    let on_link = {
        let report = Arc::clone(&report);
        move |client: &mut Client<SocketAddr>, now: Instant, event: LinkEvent| {
            if let LinkEvent::Connected { reconnect, .. } = &event {
                let deregistered = matches!(
                    client.device.registration().state(),
                    State::Idle | State::Deregistering
                );
                let bootstrapping = client.device.is_bootstrapping();
                if !*reconnect {
                    // Every DTLS session registers afresh (Transport §5.2.6), so a persisted
                    // registration is not resumed; a bootstrap under way keeps going (its
                    // request is retransmitted into the new session).
                    client.device.discard_resume();
                    if !bootstrapping {
                        client.start(now);
                    } else {
                        // An EST session started before this session (e.g. `--reenroll`)
                        // has its first request due: send it now.
                        client.handle_timeout(now);
                    }
                } else if bootstrapping {
                    // Keep the exchange: its retransmissions reach the new session, and the
                    // bootstrap's own timeout covers a server that lost it.
                } else if !deregistered {
                    // A new session: a new message-ID space, and the server may have lost
                    // the registration with the session.
                    steward_transport::Machine::forget_peer(client, server);
                    client.start(now);
                }
            }
            let mut report = report.lock().unwrap_or_else(PoisonError::into_inner);
            (*report)(client, now, DtlsEvent::Link(event));
        }
    };
    let on_event = move |client: &mut Client<SocketAddr>, now: Instant, event: DeviceEvent| {
        let directive = if no_answer(&event) {
            Directive::Reconnect
        } else {
            Directive::Continue
        };
        let mut report = report.lock().unwrap_or_else(PoisonError::into_inner);
        (*report)(client, now, DtlsEvent::Device(event));
        directive
    };
    dtls_client::spawn(config, backoff, client, on_event, on_link)
}

/// A registration request the server never answered: the session is presumed dead.
fn no_answer(event: &DeviceEvent) -> bool {
    matches!(
        event,
        DeviceEvent::Registration(
            RegistrationEvent::RegisterFailed { code: None, .. }
                | RegistrationEvent::UpdateFailed { code: None }
        )
    )
}
