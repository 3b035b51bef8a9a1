//! A tiny in-test LwM2M server for the information-reporting tests: it registers the device,
//! sends requests through `pair.server_request` and reads what comes back.

#![allow(dead_code)]

use std::time::Duration;

use steward_client::{DeviceConfig, DeviceEvent, SimDevice, harness};
use steward_coap::endpoint::{Event, RequestId};
use steward_coap::message::{Code, Method, Request, Response, encode_uint, option};
use steward_coap::sim::{Link, Pair, Side};

/// The server side: registration answers, Sends kept.
#[derive(Default)]
pub struct Server {
    pub updates: usize,
    pub sends: Vec<Request>,
    /// Served to GET by path (firmware packages for pull); the stack slices them Block2.
    pub files: std::collections::BTreeMap<String, Vec<u8>>,
}

impl Server {
    pub fn answer(&mut self, request: &Request) -> Response {
        match (request.method, request.path_string().as_str()) {
            (Method::Post, "/rd") => Response::new(Code::CREATED)
                .with_option(option::LOCATION_PATH, b"rd".to_vec())
                .with_option(option::LOCATION_PATH, b"1".to_vec()),
            (Method::Post, "/rd/1") => {
                self.updates += 1;
                Response::new(Code::CHANGED)
            }
            (Method::Post, "/dp") => {
                self.sends.push(request.clone());
                Response::new(Code::CHANGED)
            }
            (Method::Delete, "/rd/1") => Response::new(Code::DELETED),
            (Method::Get, path) if self.files.contains_key(path) => {
                let body = self.files.get(path).cloned().unwrap_or_default();
                // 42: application/octet-stream.
                Response::new(Code::CONTENT).with_payload(42, body)
            }
            _ => Response::new(Code::NOT_FOUND),
        }
    }
}

pub struct Setup {
    pub pair: Pair,
    pub device: SimDevice<Side>,
    pub server: Server,
}

impl Setup {
    /// A device with `config`, registered.
    pub fn registered(config: DeviceConfig) -> Setup {
        let mut s = Setup {
            pair: Pair::new(Link::perfect(), 7),
            device: SimDevice::new(config, Side::Server),
            server: Server::default(),
        };
        s.device.start();
        s.run(Duration::from_secs(1));
        assert!(s.device.registration().is_registered());
        s
    }

    pub fn run(&mut self, duration: Duration) {
        let server = &mut self.server;
        harness::run(&mut self.pair, &mut self.device, duration, |r| {
            server.answer(r)
        });
    }

    pub fn request(&mut self, request: Request) -> RequestId {
        self.pair.server_request(request, true)
    }

    /// Sends `request` and runs until its (first) answer; `None` when none came in `limit`.
    pub fn call(&mut self, request: Request, limit: Duration) -> Option<Response> {
        let id = self.request(request);
        let step = Duration::from_millis(100);
        let mut waited = Duration::ZERO;
        while waited < limit {
            self.run(step);
            waited += step;
            if let Some(r) = self.take_responses(id).into_iter().next() {
                return Some(r);
            }
            if self.failed(id) {
                return None;
            }
        }
        None
    }

    /// Responses (notifications included) to `id` received so far, oldest first.
    pub fn take_responses(&mut self, id: RequestId) -> Vec<Response> {
        let mut out = Vec::new();
        self.pair.server_events.retain(|e| match e {
            Event::Response {
                id: i, response, ..
            } if *i == id => {
                out.push(response.clone());
                false
            }
            _ => true,
        });
        out
    }

    pub fn failed(&self, id: RequestId) -> bool {
        self.pair
            .server_events
            .iter()
            .any(|e| matches!(e, Event::Failed { id: i, .. } if *i == id))
    }

    pub fn events(&mut self) -> Vec<DeviceEvent> {
        std::iter::from_fn(|| self.device.poll_event()).collect()
    }

    /// Runs `seconds` one second at a time and returns the simulated second (from now) at
    /// which each notification for `id` arrived.
    pub fn notification_times(&mut self, id: RequestId, seconds: u64) -> Vec<u64> {
        let mut times = Vec::new();
        for s in 1..=seconds {
            self.run(Duration::from_secs(1));
            for _ in self.take_responses(id) {
                times.push(s);
            }
        }
        times
    }
}

pub fn observe(path: &str) -> Request {
    Request::new(Method::Get)
        .with_path(path)
        .with_option(option::OBSERVE, encode_uint(0))
}

pub fn write_attributes(path: &str, query: &str) -> Request {
    query
        .split('&')
        .fold(Request::new(Method::Put).with_path(path), |r, q| {
            r.with_query(q)
        })
}
