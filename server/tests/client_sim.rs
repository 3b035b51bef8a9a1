//! The simulated client (steward-client) against the server's Registration interface, in
//! simulated time over a lossy link: it registers, the server reads its Device object in the
//! format `choose_format` picks for it, and it deregisters. Both sides are the real code.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use steward::lwm2m::server::{DomainEvent, Handled, Lwm2mServer, Peer, ServerConfig};
use steward::registry::PeerIdentity;
use steward_client::SimDevice;
use steward_client::device::DeviceConfig;
use steward_coap::endpoint::Event;
use steward_coap::message::{Method, Request, option};
use steward_coap::sim::{Link, Pair, Side};
use steward_objects::format::Payload;
use steward_objects::{ContentFormat, ModelRegistry, Node, Path, Resource, Value, Version, codec};

struct World {
    pair: Pair,
    device: SimDevice<Side>,
    server: Lwm2mServer,
    events: Vec<DomainEvent>,
    epoch_ms: u64,
    start: Instant,
}

impl World {
    fn new(lwm2m: Version, seed: u64) -> World {
        let link = Link {
            loss: 0.1,
            duplicate: 0.1,
            jitter: Duration::from_millis(200),
            ..Link::perfect()
        };
        let pair = Pair::new(link, seed);
        let start = pair.now;
        let mut device = SimDevice::new(DeviceConfig::new("sim-device-1", lwm2m), Side::Server);
        device.start();
        let server = Lwm2mServer::new(ServerConfig {
            allow_unsecured: true,
            ..ServerConfig::default()
        });
        let epoch_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        World {
            pair,
            device,
            server,
            events: Vec::new(),
            epoch_ms,
            start,
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch_ms + (self.pair.now - self.start).as_millis() as u64
    }

    /// Runs both sides for `duration` of simulated time. Server-side requests that are not for
    /// the Registration interface (responses to our own requests) stay in `pair.server_events`.
    fn run(&mut self, duration: Duration) {
        let end = self.pair.now + duration;
        let peer = Peer {
            address: "sim-device-1".into(),
            identity: PeerIdentity::Unsecured,
        };
        loop {
            let now = self.pair.now;
            for event in std::mem::take(&mut self.pair.client_events) {
                self.device.on_event(now, &mut self.pair.client, event);
            }
            self.device.poll(now, &mut self.pair.client);
            let now_ms = self.now_ms();
            let mut keep = Vec::new();
            for event in std::mem::take(&mut self.pair.server_events) {
                match self.server.handle(now_ms, event, &peer) {
                    Handled::Reply(reply) => {
                        self.pair
                            .server
                            .respond(now, reply.to, reply.response)
                            .expect("request pending");
                        self.events.extend(reply.events);
                    }
                    Handled::NotMine(other) => keep.push(other),
                }
            }
            self.pair.server_events = keep;
            if now >= end {
                return;
            }
            let limit = self
                .device
                .poll_timeout()
                .map_or(end, |t| t.clamp(now, end));
            if !self.pair.step_until(Some(limit)) {
                self.pair.now = if limit > now { limit } else { end };
            }
        }
    }
}

fn registered_endpoints(events: &[DomainEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            DomainEvent::Registered { registration, .. } => Some(registration.endpoint.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn simulated_clients_register_are_read_and_deregister() {
    for (lwm2m, seed) in [(Version::V1_0, 1), (Version::V1_1, 2), (Version::V1_2, 3)] {
        let mut world = World::new(lwm2m, seed);
        world.run(Duration::from_secs(60));
        assert_eq!(
            registered_endpoints(&world.events),
            ["sim-device-1"],
            "{lwm2m}"
        );
        let client = world
            .server
            .registrations()
            .by_endpoint("sim-device-1")
            .expect("registered");
        let formats = client.formats.clone();

        // Read /3/0 in the format the server would choose for this client.
        let format = steward_objects::choose_format(&formats, Payload::Tree).expect("a format");
        let read = Request::new(Method::Get).with_path("/3/0").with_option(
            option::ACCEPT,
            steward_coap::message::encode_uint(u32::from(format.code())),
        );
        let id = world.pair.server_request(read, true);
        world.run(Duration::from_secs(30));
        let response = world
            .pair
            .server_events
            .iter()
            .find_map(|e| match e {
                Event::Response {
                    id: r, response, ..
                } if *r == id => Some(response.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{lwm2m}: no response to the read"));
        assert!(response.code.is_success(), "{lwm2m}: {}", response.code);
        let models = ModelRegistry::core();
        let node = codec::decode(format, &Path::Instance(3, 0), &response.payload, &models)
            .unwrap_or_else(|e| panic!("{lwm2m}: {format}: {e}"));
        let Node::Instance(instance) = node else {
            panic!("{lwm2m}: an instance");
        };
        assert_eq!(
            instance.resources.get(&2),
            Some(&Resource::Single(Value::String("SIM-sim-device-1".into()))),
            "{lwm2m}: serial number read in {format}"
        );
        if lwm2m == Version::V1_0 {
            assert_eq!(format, ContentFormat::Tlv);
        }

        world.device.deregister();
        world.run(Duration::from_secs(30));
        assert!(
            world
                .events
                .iter()
                .any(|e| matches!(e, DomainEvent::Deregistered { .. })),
            "{lwm2m}: deregistered"
        );
        assert!(
            world
                .server
                .registrations()
                .by_endpoint("sim-device-1")
                .is_none()
        );
    }
}
