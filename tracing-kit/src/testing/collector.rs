//! [`FakeCollector`]: an in-process OTLP trace receiver on 127.0.0.1, over gRPC or HTTP.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tokio::sync::{oneshot, watch};
use tonic_prost::prost::Message as _;

use super::span::{RecordedSpan, from_proto, proto_attributes};

/// An OTLP trace receiver on `127.0.0.1` and a free port, running on its own thread (so it
/// keeps answering while the test's runtime is blocked, in `Guard::shutdown` say). Stops
/// when dropped.
///
/// ```no_run
/// use std::time::Duration;
/// use sinew_tracing_kit::init::{self, Config, Protocol};
/// use sinew_tracing_kit::testing::FakeCollector;
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let collector = FakeCollector::start()?;
/// let guard = init::init_scoped(
///     Config::builder()
///         .service_name("orders")
///         .endpoint(collector.endpoint())
///         .protocol(Protocol::Grpc)
///         .build()?,
/// )?;
/// tracing::info_span!("work").in_scope(|| {});
/// assert!(guard.shutdown().is_flushed());
/// let spans = collector.spans(1, Duration::from_secs(5)).await;
/// assert_eq!(spans[0].name, "work");
/// assert_eq!(
///     collector.resource_attributes().unwrap()["service.name"],
///     "orders"
/// );
/// # Ok(())
/// # }
/// ```
pub struct FakeCollector {
    addr: SocketAddr,
    state: Arc<State>,
    count: watch::Receiver<usize>,
    stop: Option<oneshot::Sender<()>>,
    protocol: &'static str,
}

impl fmt::Debug for FakeCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeCollector")
            .field("addr", &self.addr)
            .field("protocol", &self.protocol)
            .field("received", &*self.count.borrow())
            .finish()
    }
}

struct State {
    spans: Mutex<Vec<RecordedSpan>>,
    resources: Mutex<Vec<BTreeMap<String, String>>>,
    count: watch::Sender<usize>,
}

impl State {
    fn new() -> (Arc<Self>, watch::Receiver<usize>) {
        let (count, rx) = watch::channel(0);
        (
            Arc::new(Self {
                spans: Mutex::new(Vec::new()),
                resources: Mutex::new(Vec::new()),
                count,
            }),
            rx,
        )
    }

    fn record(&self, request: &ExportTraceServiceRequest) {
        let mut spans = self.spans.lock().unwrap_or_else(PoisonError::into_inner);
        let mut resources = self
            .resources
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for rs in &request.resource_spans {
            let attrs = rs
                .resource
                .as_ref()
                .map(|r| proto_attributes(&r.attributes))
                .unwrap_or_default();
            if !resources.contains(&attrs) {
                resources.push(attrs);
            }
            for ss in &rs.scope_spans {
                spans.extend(ss.spans.iter().map(from_proto));
            }
        }
        let n = spans.len();
        drop(spans);
        self.count.send_replace(n);
    }
}

struct Receiver(Arc<State>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.record(request.get_ref());
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

impl FakeCollector {
    /// Starts an OTLP/gRPC receiver (`TraceService/Export`).
    ///
    /// # Errors
    ///
    /// When no port can be bound or the thread cannot start.
    pub fn start() -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (state, count) = State::new();
        let (stop, stopped) = oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let service = TraceServiceServer::new(Receiver(Arc::clone(&state)));
        std::thread::Builder::new()
            .name("fake-otlp-grpc".to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(error) => {
                            tracing::error!(%error, "fake collector cannot listen");
                            return;
                        }
                    };
                    let incoming = tonic::transport::server::TcpIncoming::from(listener);
                    let served = tonic::transport::Server::builder()
                        .add_service(service)
                        .serve_with_incoming_shutdown(incoming, async {
                            let _ = stopped.await;
                        })
                        .await;
                    if let Err(error) = served {
                        tracing::error!(%error, "fake collector failed");
                    }
                });
            })?;
        Ok(Self {
            addr,
            state,
            count,
            stop: Some(stop),
            protocol: "grpc",
        })
    }

    /// Starts an OTLP/HTTP receiver (`POST /v1/traces`, protobuf bodies, HTTP/1.1), on plain
    /// threads. Use it with [`Protocol::HttpProtobuf`](crate::init::Protocol::HttpProtobuf).
    ///
    /// # Errors
    ///
    /// When no port can be bound or the thread cannot start.
    pub fn start_http() -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let (state, count) = State::new();
        let (stop, _) = oneshot::channel::<()>();
        let accept_state = Arc::clone(&state);
        std::thread::Builder::new()
            .name("fake-otlp-http".to_owned())
            .spawn(move || {
                for stream in listener.incoming() {
                    let Ok(stream) = stream else { continue };
                    let state = Arc::clone(&accept_state);
                    let _ = std::thread::Builder::new()
                        .name("fake-otlp-http-conn".to_owned())
                        .spawn(move || {
                            if let Err(error) = serve_http(stream, &state) {
                                tracing::debug!(%error, "fake collector connection ended");
                            }
                        });
                }
            })?;
        Ok(Self {
            addr,
            state,
            count,
            stop: Some(stop),
            protocol: "http/protobuf",
        })
    }

    /// The base URL to export to (`http://127.0.0.1:<port>`), for
    /// [`ConfigBuilder::endpoint`](crate::init::ConfigBuilder::endpoint).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits until at least `n` spans have arrived or `timeout` passes, and returns every span
    /// received so far (fewer than `n` on timeout). Needs a tokio runtime with time enabled.
    pub async fn spans(&self, n: usize, timeout: Duration) -> Vec<RecordedSpan> {
        let mut count = self.count.clone();
        let _ = tokio::time::timeout(timeout, count.wait_for(|c| *c >= n)).await;
        self.received()
    }

    /// Every span received so far, without waiting.
    pub fn received(&self) -> Vec<RecordedSpan> {
        self.state
            .spans
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The attributes of the first resource seen (`service.name`, `service.version`, ...).
    pub fn resource_attributes(&self) -> Option<BTreeMap<String, String>> {
        self.resources().into_iter().next()
    }

    /// The attributes of every distinct resource seen.
    pub fn resources(&self) -> Vec<BTreeMap<String, String>> {
        self.state
            .resources
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for FakeCollector {
    fn drop(&mut self) {
        // The gRPC server stops; the HTTP accept thread lingers until the process ends.
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Serves one keep-alive HTTP/1.1 connection: `POST /v1/traces` with a protobuf body.
fn serve_http(stream: TcpStream, state: &State) -> io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line)? == 0 {
            return Ok(());
        }
        let mut content_length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                content_length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; content_length];
        reader.read_exact(&mut body)?;
        let ok = request_line.starts_with("POST /v1/traces ");
        let status = match ExportTraceServiceRequest::decode(body.as_slice()) {
            Ok(request) if ok => {
                state.record(&request);
                "200 OK"
            }
            Ok(_) => "404 Not Found",
            Err(_) => "400 Bad Request",
        };
        let response = ExportTraceServiceResponse {
            partial_success: None,
        }
        .encode_to_vec();
        write!(
            writer,
            "HTTP/1.1 {status}\r\ncontent-type: application/x-protobuf\r\ncontent-length: {}\r\n\r\n",
            response.len()
        )?;
        writer.write_all(&response)?;
        writer.flush()?;
    }
}
