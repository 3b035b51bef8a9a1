//! Test support for interop runs: a Steward CoAP endpoint serving a few fixed resources on
//! loopback, and a runner for external client processes with a time limit.

use std::net::SocketAddr;
use std::process::Output;
use std::time::Duration;

use steward_coap::endpoint::{Config, Endpoint, Event};
use steward_coap::message::{Code, Method, Request, Response};
use steward_transport::udp::{self, Handle, UdpConfig};

/// What the test server answers: `/hello` → text, `/echo` (POST/PUT) → the body back,
/// anything else → 4.04.
pub fn answer(request: &Request) -> Response {
    match (request.method, request.path_string().as_str()) {
        (Method::Get, "/") => Response::new(Code::CONTENT).with_payload(0, b"Steward".to_vec()),
        (Method::Get, "/hello") => {
            Response::new(Code::CONTENT).with_payload(0, b"Hello from Steward".to_vec())
        }
        (Method::Post | Method::Put, "/echo") => {
            Response::new(Code::CHANGED).with_payload(0, request.payload.clone())
        }
        (_, "/hello" | "/echo") => Response::new(Code::METHOD_NOT_ALLOWED),
        _ => Response::new(Code::NOT_FOUND),
    }
}

/// Starts a plain-UDP Steward endpoint on 127.0.0.1 with a free port. Dropping the handle
/// stops it.
pub async fn start_plain_server() -> std::io::Result<Handle<Endpoint<SocketAddr>>> {
    let config = UdpConfig {
        bind: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..UdpConfig::default()
    };
    let (socket, _granted) = udp::bind(&config)?;
    let endpoint = Endpoint::new(Config::default());
    let (handle, _task) = udp::spawn(
        socket,
        endpoint,
        |ep: &mut Endpoint<SocketAddr>, now, event| {
            if let Event::Request { id, request } = event {
                let _ = ep.respond(now, id, answer(&request));
            }
        },
    )?;
    Ok(handle)
}

/// Runs an external program with a time limit; it is killed if it overruns.
pub async fn run(program: &str, args: &[&str], limit: Duration) -> std::io::Result<Output> {
    let child = tokio::process::Command::new(program)
        .args(args)
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(limit, child).await {
        Ok(out) => out,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("{program} did not finish within {limit:?}"),
        )),
    }
}
