//! The vendor service's HTTP listener, for `steward vendor serve`, tests and the demo.

use std::net::SocketAddr;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{VendorError, VendorService, api};

/// A running vendor service; stop it with [`RunningVendor::shutdown`].
#[derive(Debug)]
pub struct RunningVendor {
    local: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

/// Listens on `addr` (port 0 for any free one) and serves the API until shut down.
pub async fn serve(service: VendorService, addr: SocketAddr) -> Result<RunningVendor, VendorError> {
    let bind = |source| VendorError::Bind { addr, source };
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(bind)?;
    let local = listener.local_addr().map_err(bind)?;
    let app = api::router(service).into_make_service_with_connect_info::<SocketAddr>();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "vendor HTTP listener failed");
        }
    });
    tracing::info!(%local, "vendor service listening");
    Ok(RunningVendor { local, stop, task })
}

impl RunningVendor {
    /// Where it listens (the actual port when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Stops accepting, lets the requests in flight finish (a signing in progress completes
    /// with its audit record), and returns once the listener is closed.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}
