//! A TCP proxy in front of the shared broker that a test can take down and bring back: a
//! broker outage seen only by the test's own connections, so other tests sharing the broker
//! are not disturbed.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// A proxy to `127.0.0.1:5672` on a free local port.
pub(crate) struct Proxy {
    addr: SocketAddr,
    up: watch::Sender<bool>,
    links: Arc<Mutex<JoinSet<()>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub(crate) async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (up, up_rx) = watch::channel(true);
        let links = Arc::new(Mutex::new(JoinSet::new()));
        let accept = tokio::spawn({
            let links = links.clone();
            async move {
                loop {
                    let Ok((mut client, _)) = listener.accept().await else {
                        return;
                    };
                    if !*up_rx.borrow() {
                        // Down: the connection is refused (closed at once).
                        drop(client);
                        continue;
                    }
                    links.lock().unwrap().spawn(async move {
                        if let Ok(mut upstream) = TcpStream::connect("127.0.0.1:5672").await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                        }
                    });
                }
            }
        });
        Self {
            addr,
            up,
            links,
            accept,
        }
    }

    /// The AMQP URI through the proxy.
    pub(crate) fn uri(&self) -> String {
        format!("amqp://guest:guest@{}/%2f", self.addr)
    }

    /// Cuts every proxied connection and refuses new ones.
    pub(crate) fn down(&self) {
        self.up.send_replace(false);
        self.links.lock().unwrap().abort_all();
    }

    /// Accepts connections again.
    pub(crate) fn up(&self) {
        self.up.send_replace(true);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.links.lock().unwrap().abort_all();
    }
}
