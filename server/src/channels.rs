//! Small helpers for the broadcast channels that fan events out inside the server.

use tokio::sync::{broadcast, watch};

/// The next item of `rx`, or `None` once `stop` fires or the sender is gone. A receiver that
/// fell behind skips what it missed, with a warning naming `what`.
pub(crate) async fn next_or_stop<T: Clone>(
    rx: &mut broadcast::Receiver<T>,
    stop: &mut watch::Receiver<bool>,
    what: &str,
) -> Option<T> {
    loop {
        let received = tokio::select! {
            received = rx.recv() => received,
            _ = stop.wait_for(|stopped| *stopped) => return None,
        };
        match received {
            Ok(item) => return Some(item),
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(dropped = n, "{what} dropped by a slow consumer");
            }
            Err(broadcast::error::RecvError::Closed) => return None,
        }
    }
}
