//! The HTTP listener: the revocation service for whoever cannot speak CoAP (RFC 6960 App. A
//! OCSP over HTTP, the CRL, the root certificate) and the management API ([`crate::api`]).

use std::net::SocketAddr;
use std::time::SystemTime;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::api::ApiState;
use crate::pki::PkiService;

/// OCSP requests are small (one CertID and a nonce); anything much larger is not one.
const MAX_OCSP_REQUEST: usize = 16 * 1024;

pub(super) struct HttpServer {
    pub local: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl HttpServer {
    pub(super) async fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

pub(super) async fn start(addr: SocketAddr, api: ApiState) -> std::io::Result<HttpServer> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    // Open event streams never end by themselves; graceful shutdown would wait for them.
    let api_shutdown = api.shutdown.clone();
    let app = Router::new()
        .route("/ocsp", post(ocsp_post))
        // A wildcard: base64 may contain `/`, which clients should percent-encode but some
        // do not (RFC 6960 App. A.1).
        .route("/ocsp/{*request}", get(ocsp_get))
        .route("/crl", get(crl))
        .route("/ca", get(ca))
        .with_state(api.pki.clone())
        .merge(crate::api::router(api));
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
                api_shutdown.trigger();
            })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "HTTP listener failed");
        }
    });
    tracing::info!(%local, "HTTP listening (OCSP, CRL)");
    Ok(HttpServer { local, stop, task })
}

type Pki = State<Option<PkiService>>;

async fn ocsp_post(State(pki): Pki, body: Bytes) -> Response {
    ocsp(pki, &body)
}

/// `GET /ocsp/{base64 of the DER request}` (RFC 6960 App. A.1: URL-encoded base64).
async fn ocsp_get(State(pki): Pki, Path(request): Path<String>) -> Response {
    let engine = base64::engine::general_purpose::STANDARD;
    // The path is percent-decoded already; a trailing `/` is base64, not a separator.
    match engine.decode(&request) {
        Ok(der) => ocsp(pki, &der),
        Err(_) => (StatusCode::BAD_REQUEST, "the path is not base64").into_response(),
    }
}

fn ocsp(pki: Option<PkiService>, der: &[u8]) -> Response {
    let Some(pki) = pki else {
        return no_ca();
    };
    if der.len() > MAX_OCSP_REQUEST {
        return (StatusCode::PAYLOAD_TOO_LARGE, "OCSP request too large").into_response();
    }
    // Malformed requests get a signed-less malformedRequest OCSP response, still 200 (§2.3).
    let answer = pki.ocsp_response(der, SystemTime::now());
    (
        [(header::CONTENT_TYPE, "application/ocsp-response")],
        answer,
    )
        .into_response()
}

async fn crl(State(pki): Pki) -> Response {
    let Some(pki) = pki else {
        return no_ca();
    };
    match pki.crl_der(SystemTime::now()) {
        Ok(der) => ([(header::CONTENT_TYPE, "application/pkix-crl")], der).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot build the CRL");
            (StatusCode::INTERNAL_SERVER_ERROR, "cannot build the CRL").into_response()
        }
    }
}

async fn ca(State(pki): Pki) -> Response {
    let Some(pki) = pki else {
        return no_ca();
    };
    (
        [(header::CONTENT_TYPE, "application/pkix-cert")],
        pki.root_der(),
    )
        .into_response()
}

fn no_ca() -> Response {
    (StatusCode::NOT_FOUND, "no CA: run `steward ca init`").into_response()
}
