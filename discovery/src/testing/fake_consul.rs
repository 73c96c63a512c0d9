use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::filter;
use crate::consul::{ConsulClient, ServiceRegistration, parse_duration};

const DATACENTER: &str = "dc1";
const NODE: &str = "fake-node";
const DEFAULT_WAIT: Duration = Duration::from_secs(300);
const MAX_WAIT: Duration = Duration::from_secs(600);

/// One request the fake received.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecordedRequest {
    /// The HTTP method.
    pub method: String,
    /// The path, e.g. `/v1/health/service/orders`.
    pub path: String,
    /// Decoded query parameters, in order.
    pub query: Vec<(String, String)>,
    /// The `X-Consul-Token` header, if any.
    pub token: Option<String>,
    /// The body, as text.
    pub body: String,
}

impl RecordedRequest {
    /// The first value of query parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone)]
struct FakeService {
    id: String,
    name: String,
    tags: Vec<String>,
    address: String,
    port: u64,
    meta: Value,
    weights: Value,
    tagged: Value,
    body: Value,
}

#[derive(Debug, Clone)]
struct FakeCheck {
    id: String,
    name: String,
    service_id: String,
    status: String,
    output: String,
    ttl: Option<Duration>,
    expires: Option<Instant>,
}

#[derive(Debug, Default)]
struct Faults {
    fail_next: u32,
    failing: bool,
    delay: Duration,
    index_zero: bool,
    acl_revoked: bool,
}

#[derive(Debug)]
struct FakeState {
    services: BTreeMap<String, FakeService>,
    checks: BTreeMap<String, FakeCheck>,
    maintenance: BTreeMap<String, String>,
    index: u64,
    service_index: HashMap<String, u64>,
    faults: Faults,
    requests: Vec<RecordedRequest>,
    token: Option<String>,
}

struct Shared {
    /// Set when the fake is dropped: connections the client still holds get no answer.
    stopped: std::sync::atomic::AtomicBool,
    state: Mutex<FakeState>,
    changed: watch::Sender<u64>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Bumps the raft index and the index of `service`, and wakes blocking queries.
    fn bump(&self, state: &mut FakeState, service: &str) {
        state.index += 1;
        let index = state.index;
        state.service_index.insert(service.to_owned(), index);
        self.changed.send_replace(index);
    }

    /// Turns expired TTL checks critical. Returns the next expiry, if any.
    fn sweep(&self, state: &mut FakeState) -> Option<Instant> {
        let now = Instant::now();
        let mut expired = Vec::new();
        let mut next: Option<Instant> = None;
        for check in state.checks.values_mut() {
            if let Some(at) = check.expires {
                if at <= now {
                    check.expires = None;
                    if check.status != "critical" {
                        check.status = "critical".to_owned();
                        check.output = "TTL expired".to_owned();
                        expired.push(check.service_id.clone());
                    }
                } else {
                    next = Some(next.map_or(at, |n| n.min(at)));
                }
            }
        }
        for service_id in expired {
            if let Some(name) = state.services.get(&service_id).map(|s| s.name.clone()) {
                self.bump(state, &name);
            }
        }
        next
    }
}

/// An in-process Consul agent for tests: see the [module docs](super).
///
/// Dropping it stops the server.
pub struct FakeConsul {
    shared: Arc<Shared>,
    addr: SocketAddr,
    server: JoinHandle<()>,
}

impl Drop for FakeConsul {
    fn drop(&mut self) {
        // Kept-alive connections outlive the accept loop: they go silent, like a dead agent.
        self.shared
            .stopped
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.shared.changed.send_modify(|_| {});
        self.server.abort();
    }
}

impl fmt::Debug for FakeConsul {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeConsul")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl FakeConsul {
    /// Starts the fake on an ephemeral port of 127.0.0.1.
    ///
    /// # Errors
    ///
    /// The port could not be bound.
    pub async fn start() -> io::Result<Self> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts the fake on `addr`: with the address of a dropped fake, this simulates an agent
    /// coming back after being unreachable (with no registrations).
    ///
    /// # Errors
    ///
    /// The address could not be bound.
    pub async fn start_on(addr: SocketAddr) -> io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (changed, _) = watch::channel(1);
        let shared = Arc::new(Shared {
            stopped: std::sync::atomic::AtomicBool::new(false),
            state: Mutex::new(FakeState {
                services: BTreeMap::new(),
                checks: BTreeMap::new(),
                maintenance: BTreeMap::new(),
                index: 1,
                service_index: HashMap::new(),
                faults: Faults::default(),
                requests: Vec::new(),
                token: None,
            }),
            changed,
        });
        let router = Router::new().fallback(handle).with_state(shared.clone());
        let server = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, router).await {
                tracing::warn!(%error, "fake consul stopped");
            }
        });
        Ok(Self {
            shared,
            addr,
            server,
        })
    }

    /// The socket address it listens on.
    pub fn socket_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`.
    pub fn address(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A client for this fake (no token).
    ///
    /// # Panics
    ///
    /// Never: the address is always a valid URL.
    #[allow(clippy::expect_used, reason = "the fake's own address is always valid")]
    pub fn client(&self) -> ConsulClient {
        ConsulClient::builder()
            .address(self.address())
            .build()
            .expect("the fake's address is a valid URL")
    }

    /// Registers a service directly (as if through the agent API).
    pub fn register(&self, registration: &ServiceRegistration) {
        let body = serde_json::to_value(registration.to_wire()).unwrap_or(Value::Null);
        let mut state = self.shared.lock();
        let _ = register_body(&self.shared, &mut state, body);
    }

    /// Removes a service directly.
    pub fn deregister(&self, service_id: &str) {
        let mut state = self.shared.lock();
        deregister(&self.shared, &mut state, service_id);
    }

    /// Sets a check's status directly (`passing`, `warning` or `critical`).
    pub fn set_check_status(&self, check_id: &str, status: &str) {
        let mut state = self.shared.lock();
        let Some(check) = state.checks.get_mut(check_id) else {
            return;
        };
        check.status = status.to_owned();
        let service_id = check.service_id.clone();
        if let Some(name) = state.services.get(&service_id).map(|s| s.name.clone()) {
            self.shared.bump(&mut state, &name);
        }
    }

    /// The IDs of the registered services.
    pub fn service_ids(&self) -> Vec<String> {
        self.shared.lock().services.keys().cloned().collect()
    }

    /// The JSON body a service was last registered with.
    pub fn registration_body(&self, service_id: &str) -> Option<Value> {
        self.shared
            .lock()
            .services
            .get(service_id)
            .map(|s| s.body.clone())
    }

    /// A check's current status (after TTL expiry).
    pub fn check_status(&self, check_id: &str) -> Option<String> {
        let mut state = self.shared.lock();
        self.shared.sweep(&mut state);
        state.checks.get(check_id).map(|c| c.status.clone())
    }

    /// Whether a service is in maintenance.
    pub fn in_maintenance(&self, service_id: &str) -> bool {
        self.shared.lock().maintenance.contains_key(service_id)
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.clone()
    }

    /// The requests whose path starts with `prefix`.
    pub fn requests_to(&self, prefix: &str) -> Vec<RecordedRequest> {
        self.shared
            .lock()
            .requests
            .iter()
            .filter(|r| r.path.starts_with(prefix))
            .cloned()
            .collect()
    }

    /// The current raft index.
    pub fn index(&self) -> u64 {
        self.shared.lock().index
    }

    /// Requires this ACL token in `X-Consul-Token` on every request (403 otherwise).
    pub fn require_token(&self, token: impl Into<String>) {
        self.shared.lock().token = Some(token.into());
    }

    /// Fault: the next `n` requests answer 500 "No cluster leader".
    pub fn fail_next(&self, n: u32) {
        self.shared.lock().faults.fail_next = n;
    }

    /// Fault: every request answers 500 until turned off (an outage).
    pub fn set_failing(&self, failing: bool) {
        self.shared.lock().faults.failing = failing;
    }

    /// Fault: every request is delayed by `delay` before it is handled.
    pub fn set_delay(&self, delay: Duration) {
        self.shared.lock().faults.delay = delay;
    }

    /// Fault: health queries answer at once with `X-Consul-Index: 0` (a Consul bug that turns
    /// naive clients into busy loops).
    pub fn set_index_zero(&self, on: bool) {
        self.shared.lock().faults.index_zero = on;
    }

    /// Fault: the token is revoked mid-flight: health queries answer `200 []` with
    /// `X-Consul-Results-Filtered-By-ACLs: true` (hashicorp/consul#20790).
    pub fn revoke_token(&self, revoked: bool) {
        self.shared.lock().faults.acl_revoked = revoked;
        self.shared.changed.send_modify(|_| {});
    }

    /// Fault: a snapshot restore moves every index back to at most `index`. Clients holding
    /// a higher index block until their wait ends, and must then reset.
    pub fn restore_snapshot(&self, index: u64) {
        let mut state = self.shared.lock();
        let index = index.max(1);
        state.index = index;
        for i in state.service_index.values_mut() {
            *i = (*i).min(index);
        }
    }

    /// Fault: the agent restarts without its state and forgets every service and check.
    pub fn restart_agent(&self) {
        let mut state = self.shared.lock();
        let names: Vec<String> = state.services.values().map(|s| s.name.clone()).collect();
        state.services.clear();
        state.checks.clear();
        for name in names {
            self.shared.bump(&mut state, &name);
        }
    }
}

fn parse_query(uri: &Uri) -> Vec<(String, String)> {
    uri.query()
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() && s.is_char_boundary(i + 3) => {
                match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (status, body.into()).into_response()
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if shared.stopped.load(std::sync::atomic::Ordering::SeqCst) {
        return std::future::pending().await;
    }
    let query = parse_query(&uri);
    let path = uri.path().to_owned();
    let token = headers
        .get("X-Consul-Token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let delay = {
        let mut state = shared.lock();
        state.requests.push(RecordedRequest {
            method: method.to_string(),
            path: path.clone(),
            query: query.clone(),
            token: token.clone(),
            body: String::from_utf8_lossy(&body).into_owned(),
        });
        state.faults.delay
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    {
        let mut state = shared.lock();
        if state.faults.failing || state.faults.fail_next > 0 {
            state.faults.fail_next = state.faults.fail_next.saturating_sub(1);
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "rpc error making call: No cluster leader",
            );
        }
        if let Some(required) = &state.token
            && token.as_deref() != Some(required.as_str())
        {
            return text(StatusCode::FORBIDDEN, "ACL not found");
        }
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    match (method.as_str(), segments.as_slice()) {
        ("PUT", ["v1", "agent", "service", "register"]) => {
            let Ok(body) = serde_json::from_slice::<Value>(&body) else {
                return text(StatusCode::BAD_REQUEST, "Request decode failed");
            };
            let mut state = shared.lock();
            match register_body(&shared, &mut state, body) {
                Ok(()) => text(StatusCode::OK, ""),
                Err(message) => text(StatusCode::BAD_REQUEST, message),
            }
        }
        ("PUT", ["v1", "agent", "service", "deregister", id]) => {
            let mut state = shared.lock();
            deregister(&shared, &mut state, id);
            text(StatusCode::OK, "")
        }
        ("PUT", ["v1", "agent", "service", "maintenance", id]) => {
            let mut state = shared.lock();
            let Some(name) = state.services.get(*id).map(|s| s.name.clone()) else {
                return text(StatusCode::NOT_FOUND, format!("Unknown service ID {id:?}"));
            };
            match param("enable").as_deref() {
                Some("true") => {
                    let reason = param("reason").unwrap_or_default();
                    state.maintenance.insert((*id).to_owned(), reason);
                }
                Some("false") => {
                    state.maintenance.remove(*id);
                }
                _ => return text(StatusCode::BAD_REQUEST, "Missing value for enable"),
            }
            shared.bump(&mut state, &name);
            text(StatusCode::OK, "")
        }
        ("GET", ["v1", "agent", "service", id]) => {
            let state = shared.lock();
            match state.services.get(*id) {
                Some(s) => axum::Json(service_json(s)).into_response(),
                None => text(StatusCode::NOT_FOUND, format!("unknown service ID: {id}")),
            }
        }
        (
            "PUT",
            [
                "v1",
                "agent",
                "check",
                action @ ("pass" | "warn" | "fail" | "update"),
                id,
            ],
        ) => {
            let (status, output) = match *action {
                "pass" => ("passing".to_owned(), param("note").unwrap_or_default()),
                "warn" => ("warning".to_owned(), param("note").unwrap_or_default()),
                "fail" => ("critical".to_owned(), param("note").unwrap_or_default()),
                _ => {
                    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let status = body
                        .get("Status")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    if !matches!(status, "passing" | "warning" | "critical") {
                        return text(StatusCode::BAD_REQUEST, "Invalid check status");
                    }
                    let output = body
                        .get("Output")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    (status.to_owned(), output.to_owned())
                }
            };
            let mut state = shared.lock();
            shared.sweep(&mut state);
            let Some(check) = state.checks.get_mut(*id) else {
                return text(StatusCode::NOT_FOUND, format!("Unknown check ID {id:?}"));
            };
            let Some(ttl) = check.ttl else {
                return text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("CheckID {id:?} does not have associated TTL"),
                );
            };
            let changed = check.status != status;
            check.status = status;
            check.output = output;
            check.expires = Some(Instant::now() + ttl);
            let service_id = check.service_id.clone();
            if changed && let Some(name) = state.services.get(&service_id).map(|s| s.name.clone()) {
                shared.bump(&mut state, &name);
            }
            text(StatusCode::OK, "")
        }
        ("GET", ["v1", "health", "service", name]) => health(&shared, name, &query).await,
        _ => text(
            StatusCode::NOT_FOUND,
            format!("no fake for {method} {path}"),
        ),
    }
}

fn register_body(shared: &Shared, state: &mut FakeState, body: Value) -> Result<(), String> {
    let name = body
        .get("Name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or("Missing service name")?
        .to_owned();
    let id = body
        .get("ID")
        .and_then(Value::as_str)
        .filter(|i| !i.is_empty())
        .unwrap_or(&name)
        .to_owned();
    let mut checks = Vec::new();
    let mut list: Vec<&Value> = body
        .get("Checks")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    if let Some(check) = body.get("Check").filter(|c| c.is_object()) {
        list.push(check);
    }
    for (n, check) in list.into_iter().enumerate() {
        let check_id = check
            .get("CheckID")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| format!("service:{id}:{}", n + 1));
        let kinds = ["HTTP", "TCP", "GRPC", "TTL"]
            .iter()
            .filter(|k| {
                check
                    .get(**k)
                    .and_then(Value::as_str)
                    .is_some_and(|v| !v.is_empty())
            })
            .count();
        if kinds != 1 {
            return Err(format!(
                "Invalid check {check_id:?}: exactly one of HTTP, TCP, GRPC, TTL is required"
            ));
        }
        let ttl = match check.get("TTL").and_then(Value::as_str) {
            Some(t) => Some(parse_duration(t).ok_or_else(|| format!("invalid TTL {t:?}"))?),
            None => {
                if check.get("Interval").and_then(Value::as_str).is_none() {
                    return Err(format!("Invalid check {check_id:?}: Interval is required"));
                }
                None
            }
        };
        if let Some(d) = check
            .get("DeregisterCriticalServiceAfter")
            .and_then(Value::as_str)
        {
            parse_duration(d)
                .ok_or_else(|| format!("invalid DeregisterCriticalServiceAfter {d:?}"))?;
        }
        let default_status = if ttl.is_some() { "critical" } else { "passing" };
        let status = check
            .get("Status")
            .and_then(Value::as_str)
            .unwrap_or(default_status)
            .to_owned();
        checks.push(FakeCheck {
            id: check_id,
            name: check
                .get("Name")
                .and_then(Value::as_str)
                .unwrap_or("check")
                .to_owned(),
            service_id: id.clone(),
            status,
            output: String::new(),
            expires: ttl.map(|t| Instant::now() + t),
            ttl,
        });
    }
    let service = FakeService {
        id: id.clone(),
        name: name.clone(),
        tags: body
            .get("Tags")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
        address: body
            .get("Address")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        port: body.get("Port").and_then(Value::as_u64).unwrap_or(0),
        meta: body.get("Meta").cloned().unwrap_or_else(|| json!({})),
        weights: body
            .get("Weights")
            .cloned()
            .unwrap_or_else(|| json!({"Passing": 1, "Warning": 1})),
        tagged: body
            .get("TaggedAddresses")
            .cloned()
            .unwrap_or_else(|| json!({})),
        body,
    };
    // replace-existing-checks: the new list replaces the old one.
    state.checks.retain(|_, c| c.service_id != id);
    for check in checks {
        state.checks.insert(check.id.clone(), check);
    }
    state.services.insert(id, service);
    shared.bump(state, &name);
    Ok(())
}

fn deregister(shared: &Shared, state: &mut FakeState, id: &str) {
    if let Some(service) = state.services.remove(id) {
        state.checks.retain(|_, c| c.service_id != id);
        state.maintenance.remove(id);
        shared.bump(state, &service.name);
    }
}

fn service_json(s: &FakeService) -> Value {
    json!({
        "ID": s.id,
        "Service": s.name,
        "Tags": s.tags,
        "Address": s.address,
        "TaggedAddresses": s.tagged,
        "Meta": s.meta,
        "Port": s.port,
        "Weights": s.weights,
        "EnableTagOverride": false,
        "Datacenter": DATACENTER,
    })
}

fn entries(state: &FakeState, name: &str) -> Vec<Value> {
    state
        .services
        .values()
        .filter(|s| s.name == name)
        .map(|s| {
            let mut checks = vec![json!({
                "Node": NODE, "CheckID": "serfHealth", "Name": "Serf Health Status",
                "Status": "passing", "Notes": "", "Output": "Agent alive and reachable",
                "ServiceID": "", "ServiceName": "", "ServiceTags": [],
            })];
            if let Some(reason) = state.maintenance.get(&s.id) {
                checks.push(json!({
                    "Node": NODE, "CheckID": format!("_service_maintenance:{}", s.id),
                    "Name": "Service Maintenance Mode", "Status": "critical", "Notes": reason,
                    "Output": "", "ServiceID": s.id, "ServiceName": s.name, "ServiceTags": s.tags,
                }));
            }
            for c in state.checks.values().filter(|c| c.service_id == s.id) {
                checks.push(json!({
                    "Node": NODE, "CheckID": c.id, "Name": c.name, "Status": c.status,
                    "Notes": "", "Output": c.output, "ServiceID": s.id, "ServiceName": s.name,
                    "ServiceTags": s.tags,
                }));
            }
            json!({
                "Node": {
                    "ID": "0b9e3c2a-0000-4000-8000-000000000001", "Node": NODE,
                    "Address": "127.0.0.1", "Datacenter": DATACENTER,
                    "TaggedAddresses": {"lan": "127.0.0.1", "wan": "127.0.0.1"}, "Meta": {},
                },
                "Service": service_json(s),
                "Checks": checks,
            })
        })
        .collect()
}

async fn health(shared: &Arc<Shared>, name: &str, query: &[(String, String)]) -> Response {
    let param = |n: &str| query.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    if let Some(dc) = param("dc")
        && dc != DATACENTER
    {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("No path to datacenter {dc:?}"),
        );
    }
    let passing = query.iter().any(|(k, v)| k == "passing" && v != "false");
    let tags: Vec<&str> = query
        .iter()
        .filter(|(k, _)| k == "tag")
        .map(|(_, v)| v.as_str())
        .collect();
    let filter_expr = param("filter").map(str::to_owned);
    let min_index: u64 = param("index").and_then(|i| i.parse().ok()).unwrap_or(0);
    let wait = param("wait")
        .and_then(parse_duration)
        .unwrap_or(DEFAULT_WAIT)
        .min(MAX_WAIT);
    let deadline = Instant::now() + wait;
    let mut changed = shared.changed.subscribe();
    loop {
        let (index, next_expiry, early) = {
            let mut state = shared.lock();
            let next_expiry = shared.sweep(&mut state);
            let index = state
                .service_index
                .get(name)
                .copied()
                .unwrap_or(state.index)
                .max(1);
            let early = state.faults.index_zero || state.faults.acl_revoked;
            (index, next_expiry, early)
        };
        if shared.stopped.load(std::sync::atomic::Ordering::SeqCst) {
            return std::future::pending().await;
        }
        if early || min_index == 0 || index > min_index || Instant::now() >= deadline {
            break;
        }
        let wake = next_expiry.map_or(deadline, |e| e.min(deadline));
        tokio::select! {
            _ = changed.changed() => {}
            () = tokio::time::sleep_until(wake) => {}
        }
    }
    let state = shared.lock();
    let index = state
        .service_index
        .get(name)
        .copied()
        .unwrap_or(state.index)
        .max(1);
    let mut headers = HeaderMap::new();
    headers.insert("X-Consul-KnownLeader", HeaderValue::from_static("true"));
    headers.insert("X-Consul-LastContact", HeaderValue::from_static("0"));
    headers.insert(
        "X-Consul-Default-ACL-Policy",
        HeaderValue::from_static("allow"),
    );
    if state.faults.acl_revoked {
        headers.insert("X-Consul-Index", HeaderValue::from(index));
        headers.insert(
            "X-Consul-Results-Filtered-By-ACLs",
            HeaderValue::from_static("true"),
        );
        return (StatusCode::OK, headers, axum::Json(json!([]))).into_response();
    }
    let reported = if state.faults.index_zero { 0 } else { index };
    headers.insert("X-Consul-Index", HeaderValue::from(reported));
    let mut out = Vec::new();
    for entry in entries(&state, name) {
        if passing {
            let all_pass = entry["Checks"]
                .as_array()
                .is_some_and(|cs| cs.iter().all(|c| c["Status"] == "passing"));
            if !all_pass {
                continue;
            }
        }
        let entry_tags = entry["Service"]["Tags"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if !tags.iter().all(|t| entry_tags.iter().any(|et| et == t)) {
            continue;
        }
        if let Some(expr) = &filter_expr {
            match filter::matches(expr, &entry) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(message) => return text(StatusCode::BAD_REQUEST, message),
            }
        }
        out.push(entry);
    }
    (StatusCode::OK, headers, axum::Json(Value::Array(out))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_query_strings() {
        assert_eq!(percent_decode("a%20b+c"), "a b c");
        assert_eq!(
            percent_decode("Service.Tags%20contains%20%22v1%22"),
            r#"Service.Tags contains "v1""#
        );
        assert_eq!(percent_decode("100%"), "100%");
    }
}
