//! What every HTTP service shares: JSON errors, the tracing layer, and a server handle that
//! can be stopped (the demo stops a user-service replica this way).

use std::net::SocketAddr;

use axum::Json;
use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use sinew_tracing_kit::http::HttpServerLayer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// `{"error": message}` with `status`.
pub fn error_json(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

/// A running HTTP server.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Server {
    /// Serves `router` (traced with `sinew-tracing-kit`) on `addr`; port 0 picks a free one.
    ///
    /// # Errors
    ///
    /// The I/O error when the address cannot be bound.
    pub async fn start(addr: SocketAddr, router: Router) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        Self::from_listener(listener, router.layer(HttpServerLayer::new()))
    }

    /// Serves `router` as is (no extra layer) on a bound listener, with the peer address
    /// available as `ConnectInfo<SocketAddr>`.
    ///
    /// # Errors
    ///
    /// The I/O error when the listener has no local address.
    pub fn from_listener(listener: TcpListener, router: Router) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            if let Err(error) = axum::serve(
                listener,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(shutdown)
            .await
            {
                tracing::error!(%error, "server failed");
            }
        });
        Ok(Self { addr, stop, task })
    }

    /// The bound address.
    pub const fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://{addr}`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, closes idle connections, and waits for the rest (at most 5 s).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let mut task = self.task;
        if tokio::time::timeout(std::time::Duration::from_secs(5), &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }
}
