//! Starting the services: all of them in one process ([`System::start`]) or one alone
//! ([`serve`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use tokio::net::TcpListener;

use crate::bus::{Bus, BusSubscription};
use crate::content;
use crate::discovery::Directory;
use crate::email::EmailService;
use crate::gateway::{self, GatewayConfig};
use crate::http::Server;
use crate::order::OrderService;
use crate::order::inventory::InventoryService;
use crate::order::notification::NotificationService;
use crate::order::payment::PaymentService;
use crate::upstream::Upstreams;
use crate::user::UserService;
use crate::user::grpc::{GrpcUsers, UserServiceServer};
use crate::user::store::{UserOutbox, UserStore};
use sinew_messaging::outbox::{PgOutbox, Relay, RelayHandle, SqliteOutbox};

/// Any startup error.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// How the system is wired.
#[derive(Debug, Clone)]
pub struct SystemConfig {
    /// RabbitMQ (`AMQP_URL`); the in-memory broker when `None`.
    pub amqp_url: Option<String>,
    /// PostgreSQL (`DATABASE_URL`); SQLite in `data_dir` when `None`.
    pub database_url: Option<String>,
    /// Where the SQLite files live.
    pub data_dir: PathBuf,
    /// Remove `data_dir` on [`System::shutdown`] (set for the temporary directory of
    /// [`embedded`](Self::embedded), cleared when `DATA_DIR` is given).
    pub remove_data_dir: bool,
    /// How many user-service replicas to start.
    pub user_replicas: usize,
    /// The gateway's address (port 0: any free port).
    pub gateway_addr: SocketAddr,
    /// The user service's gRPC address (port 0: any free port).
    pub grpc_addr: SocketAddr,
    /// Payments over this many cents are declined.
    pub payment_limit: i64,
    /// Prefixes the exchange and every queue (`BUS_NAMESPACE`), so several systems can share
    /// one RabbitMQ.
    pub bus_namespace: String,
    /// The type of RabbitMQ's subscription queues (`AMQP_QUEUE_TYPE`: `quorum`, the
    /// default, or `classic`).
    #[cfg(feature = "rabbitmq")]
    pub queue_type: sinew_messaging::rabbitmq::QueueType,
    /// The gateway's settings.
    pub gateway: GatewayConfig,
}

/// An environment variable with a value [`SystemConfig::from_env`] cannot use.
#[derive(Debug, thiserror::Error)]
#[error("{variable}={value:?} is not valid: expected {expected}")]
pub struct ConfigError {
    /// The variable.
    pub variable: &'static str,
    /// Its value.
    pub value: String,
    /// What it should hold.
    pub expected: &'static str,
}

/// The value of `variable`, `None` when unset, empty or not UTF-8.
fn env_value(variable: &str) -> Option<String> {
    std::env::var(variable).ok().filter(|v| !v.is_empty())
}

/// The value of `variable` parsed, `None` when unset or empty.
fn env_parsed<T: std::str::FromStr>(
    variable: &'static str,
    expected: &'static str,
) -> Result<Option<T>, ConfigError> {
    let Some(value) = env_value(variable) else {
        return Ok(None);
    };
    match value.trim().parse() {
        Ok(parsed) => Ok(Some(parsed)),
        Err(_) => Err(ConfigError {
            variable,
            value,
            expected,
        }),
    }
}

impl SystemConfig {
    /// Embedded defaults on free ports: memory broker, SQLite in a fresh temporary directory,
    /// three user replicas.
    pub fn embedded() -> Self {
        let dir = std::env::temp_dir().join(format!("sinew-reference-{}", uuid::Uuid::now_v7()));
        Self {
            amqp_url: None,
            database_url: None,
            data_dir: dir,
            remove_data_dir: true,
            user_replicas: 3,
            gateway_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            payment_limit: 100_000,
            bus_namespace: String::new(),
            #[cfg(feature = "rabbitmq")]
            queue_type: sinew_messaging::rabbitmq::QueueType::default(),
            gateway: GatewayConfig::default(),
        }
    }

    /// [`embedded`](Self::embedded), then the environment: `AMQP_URL`, `AMQP_QUEUE_TYPE`,
    /// `DATABASE_URL`, `DATA_DIR`, `GATEWAY_ADDR`, `GRPC_ADDR`, `JWT_SECRET`, `RATE_LIMIT`,
    /// `PAYMENT_LIMIT`, `BUS_NAMESPACE`. Unset or empty variables keep the embedded values.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the first variable whose value cannot be used (an address that
    /// does not parse, a limit that is not a number, an unknown queue type): a typo fails at
    /// startup instead of silently running on a default.
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut config = Self::embedded();
        config.amqp_url = env_value("AMQP_URL");
        #[cfg(feature = "rabbitmq")]
        if let Some(queue_type) = env_parsed("AMQP_QUEUE_TYPE", "`quorum` or `classic`")? {
            config.queue_type = queue_type;
        }
        #[cfg(not(feature = "rabbitmq"))]
        if let Some(value) = env_value("AMQP_QUEUE_TYPE") {
            return Err(ConfigError {
                variable: "AMQP_QUEUE_TYPE",
                value,
                expected: "nothing: this binary was built without feature `rabbitmq`",
            });
        }
        config.database_url = env_value("DATABASE_URL");
        if let Some(dir) = env_value("DATA_DIR") {
            config.data_dir = dir.into();
            config.remove_data_dir = false;
        }
        const ADDRESS: &str = "a socket address such as 127.0.0.1:3000";
        if let Some(addr) = env_parsed("GATEWAY_ADDR", ADDRESS)? {
            config.gateway_addr = addr;
        }
        if let Some(addr) = env_parsed("GRPC_ADDR", ADDRESS)? {
            config.grpc_addr = addr;
        }
        if let Some(secret) = env_value("JWT_SECRET") {
            config.gateway.jwt_secret = secret.into_bytes();
        }
        if let Some(n) = env_parsed(
            "RATE_LIMIT",
            "a whole number of requests per client per window",
        )? {
            config.gateway.rate_limit = n;
        }
        if let Some(n) = env_parsed("PAYMENT_LIMIT", "a whole number of cents")? {
            config.payment_limit = n;
        }
        if let Some(namespace) = env_value("BUS_NAMESPACE") {
            config.bus_namespace = namespace;
        }
        Ok(config)
    }

    /// The user store on `DATABASE_URL` (PostgreSQL) or the embedded SQLite file, with its
    /// transactional outbox, and the relay that publishes the outbox on `bus`. With SQLite,
    /// run one user-service process per file (one relay per SQLite outbox).
    async fn user_store(&self, bus: &Bus) -> Result<(UserStore, RelayHandle), Error> {
        sqlx::any::install_default_drivers();
        let url = match &self.database_url {
            Some(url) => url.clone(),
            None => {
                std::fs::create_dir_all(&self.data_dir)?;
                format!(
                    "sqlite://{}?mode=rwc",
                    self.data_dir.join("users.db").display()
                )
            }
        };
        let pool = AnyPoolOptions::new()
            .max_connections(4)
            .connect(&url)
            .await?;
        let store = UserStore::open(pool).await?;
        let outbox = if url.starts_with("postgres") {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(4)
                .connect(&url)
                .await?;
            let outbox = PgOutbox::builder(pool).source("user-service").build()?;
            migrate_racing(|| outbox.migrate()).await?;
            UserOutbox::Pg(outbox)
        } else {
            let options: sqlx::sqlite::SqliteConnectOptions = url.parse()?;
            let pool = sqlx::sqlite::SqlitePoolOptions::new()
                .max_connections(4)
                .connect_with(options.busy_timeout(Duration::from_secs(10)))
                .await?;
            let outbox = SqliteOutbox::builder(pool).source("user-service").build()?;
            outbox.migrate().await?;
            UserOutbox::Sqlite(outbox)
        };
        let relay = match &outbox {
            UserOutbox::Pg(o) => Relay::builder(o.clone(), bus.clone()),
            UserOutbox::Sqlite(o) => Relay::builder(o.clone(), bus.clone()),
        }
        .poll_interval(Duration::from_millis(500))
        .build()?
        .start();
        Ok((store.with_outbox(outbox), relay))
    }
}

/// Replicas starting together race on `CREATE … IF NOT EXISTS` (PostgreSQL can answer a
/// unique violation on its catalog to the loser): try again a few times.
async fn migrate_racing<F, Fut>(migrate: F) -> Result<(), sinew_messaging::outbox::OutboxError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), sinew_messaging::outbox::OutboxError>>,
{
    let mut attempt = 0;
    loop {
        match migrate().await {
            Ok(()) => return Ok(()),
            Err(error) if attempt < 5 => {
                attempt += 1;
                tracing::debug!(%error, attempt, "creating the outbox table failed; retrying");
                tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
            }
            Err(error) => return Err(error),
        }
    }
}

fn local() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Every service of the system, running in this process.
#[derive(Debug)]
pub struct System {
    /// The event bus.
    pub bus: Bus,
    /// Discovery.
    pub registry: Directory,
    /// The gateway.
    pub gateway: Server,
    /// The user service's gRPC server address.
    pub grpc_addr: SocketAddr,
    /// The user-service replicas (a stopped one is `None`).
    pub users: Vec<Option<Server>>,
    /// The other HTTP services by name.
    pub servers: BTreeMap<&'static str, Server>,
    /// The user store (shared by the in-process user replicas), with its outbox.
    pub user_store: UserStore,
    /// The email service.
    pub email: EmailService,
    /// The order service.
    pub orders: OrderService,
    /// The inventory service.
    pub inventory: InventoryService,
    /// The payment service.
    pub payments: PaymentService,
    /// The notification service.
    pub notifications: NotificationService,
    /// The gateway's settings.
    pub gateway_config: GatewayConfig,
    subscriptions: Vec<BusSubscription>,
    grpc: tokio::task::JoinHandle<()>,
    relay: RelayHandle,
    remove_dir: Option<PathBuf>,
}

impl System {
    /// Starts every service.
    ///
    /// # Errors
    ///
    /// When a port cannot be bound, the database or the broker cannot be reached.
    pub async fn start(config: SystemConfig) -> Result<Self, Error> {
        let bus = Bus::connect(&config, "reference-system").await?;
        let registry = Directory::new();
        let (store, relay) = config.user_store(&bus).await?;
        let upstreams = Upstreams::new(registry.clone(), Duration::from_secs(5));

        let mut users = Vec::new();
        for i in 1..=config.user_replicas {
            let id = format!("user-{i}");
            let service = UserService::new(store.clone(), bus.clone(), id.clone());
            let server = Server::start(local(), crate::user::router(service)).await?;
            registry.register("user", &id, &server.url());
            users.push(Some(server));
        }
        let grpc_listener = TcpListener::bind(config.grpc_addr).await?;
        let grpc_addr = grpc_listener.local_addr()?;
        let grpc = spawn_grpc(
            grpc_listener,
            UserService::new(store.clone(), bus.clone(), "user-grpc"),
        );

        let email = EmailService::new();
        let inventory = InventoryService::default();
        let payments = PaymentService::new(config.payment_limit);
        let notifications = NotificationService::new();
        let orders = OrderService::new(
            upstreams,
            bus.clone(),
            config.database_url.as_deref(),
            &config.data_dir,
        )
        .await?;

        let mut servers = BTreeMap::new();
        for (name, router) in [
            ("post", content::posts_router()),
            ("comment", content::comments_router()),
            ("email", email.router()),
            ("order", orders.router()),
            ("inventory", inventory.router()),
            ("payment", payments.router()),
            ("notification", notifications.router()),
        ] {
            let server = Server::start(local(), router).await?;
            registry.register(name, &format!("{name}-1"), &server.url());
            servers.insert(name, server);
        }

        let mut subscriptions = vec![email.subscribe(&bus).await?];
        subscriptions.extend(orders.subscribe(&bus).await?);
        subscriptions.extend(inventory.subscribe(&bus).await?);
        subscriptions.extend(payments.subscribe(&bus).await?);
        subscriptions.extend(notifications.subscribe(&bus).await?);

        let listener = TcpListener::bind(config.gateway_addr).await?;
        let gateway = Server::from_listener(
            listener,
            gateway::router(registry.clone(), config.gateway.clone())?,
        )?;
        tracing::info!(gateway = %gateway.url(), grpc = %grpc_addr, "reference system up");
        Ok(Self {
            bus,
            registry,
            gateway,
            grpc_addr,
            users,
            servers,
            user_store: store,
            email,
            orders,
            inventory,
            payments,
            notifications,
            gateway_config: config.gateway,
            subscriptions,
            grpc,
            relay,
            remove_dir: config.remove_data_dir.then(|| config.data_dir.clone()),
        })
    }

    /// Stops user-service replica `index` (from 0) without deregistering it, as a crash would.
    pub async fn kill_user_replica(&mut self, index: usize) {
        if let Some(server) = self.users.get_mut(index).and_then(Option::take) {
            server.stop().await;
        }
    }

    /// Stops service `name` (without deregistering it).
    pub async fn kill(&mut self, name: &str) {
        if let Some(server) = self.servers.remove(name) {
            server.stop().await;
        }
    }

    /// Stops everything: subscriptions drain, servers close, instances deregister.
    pub async fn shutdown(self) {
        self.relay.shutdown(Duration::from_secs(2)).await;
        for subscription in self.subscriptions {
            subscription.shutdown(Duration::from_secs(2)).await;
        }
        for (i, user) in self.users.into_iter().enumerate() {
            self.registry.deregister("user", &format!("user-{}", i + 1));
            if let Some(server) = user {
                server.stop().await;
            }
        }
        for (name, server) in self.servers {
            self.registry.deregister(name, &format!("{name}-1"));
            server.stop().await;
        }
        self.gateway.stop().await;
        self.grpc.abort();
        if let Some(dir) = self.remove_dir
            && let Err(error) = std::fs::remove_dir_all(&dir)
        {
            tracing::debug!(%error, dir = %dir.display(), "cannot remove the data directory");
        }
    }
}

/// Serves the gRPC `UserService` on `listener`.
pub fn spawn_grpc(listener: TcpListener, service: UserService) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let result = tonic::transport::Server::builder()
            .layer(sinew_tracing_kit::grpc::GrpcServerLayer::new())
            .add_service(UserServiceServer::new(GrpcUsers(service)))
            .serve_with_incoming(incoming)
            .await;
        if let Err(error) = result {
            tracing::error!(%error, "gRPC server failed");
        }
    })
}

/// Runs one service alone until SIGTERM or Ctrl-C: `gateway`, `user`, `post`, `comment`,
/// `email`, `order`, `inventory`, `payment` or `notification`. `PORT` sets its port and
/// `INSTANCE_ID` its instance ID. With `CONSUL_HTTP_ADDR` it registers in Consul (address
/// `SERVICE_HOST`) and finds the others there; otherwise `SERVICES`
/// (`user=http://h1:3001,http://h2:3001;post=http://h3:3002`) is the static discovery table
/// of the services it calls.
///
/// # Errors
///
/// When the service is unknown or cannot start.
pub async fn serve(name: &str, config: SystemConfig) -> Result<(), Error> {
    let port: u16 = env_parsed("PORT", "a TCP port number")?.unwrap_or(0);
    let addr = SocketAddr::from(([0, 0, 0, 0], port));
    let registry = match env_value("CONSUL_HTTP_ADDR") {
        Some(address) => {
            let directory = Directory::consul(&address)?;
            for service in ["user", "post", "comment", "order"] {
                directory.expect(service);
            }
            directory
        }
        None => Directory::from_spec(&std::env::var("SERVICES").unwrap_or_default())?,
    };
    let instance_id =
        std::env::var("INSTANCE_ID").unwrap_or_else(|_| format!("{name}-{}", std::process::id()));
    let bus = Bus::connect(&config, name).await?;
    let upstreams = Upstreams::new(registry.clone(), Duration::from_secs(5));
    let mut subscriptions = Vec::new();
    let mut grpc = None;
    let mut relay = None;
    let server = match name {
        "gateway" => {
            let listener = TcpListener::bind(addr).await?;
            Server::from_listener(
                listener,
                gateway::router(registry.clone(), config.gateway.clone())?,
            )?
        }
        "user" => {
            let (store, handle) = config.user_store(&bus).await?;
            relay = Some(handle);
            let instance = instance_id.clone();
            let listener = TcpListener::bind(config.grpc_addr).await?;
            grpc = Some(spawn_grpc(
                listener,
                UserService::new(store.clone(), bus.clone(), instance.clone()),
            ));
            Server::start(
                addr,
                crate::user::router(UserService::new(store, bus, instance)),
            )
            .await?
        }
        "post" => Server::start(addr, content::posts_router()).await?,
        "comment" => Server::start(addr, content::comments_router()).await?,
        "email" => {
            let email = EmailService::new();
            subscriptions.push(email.subscribe(&bus).await?);
            Server::start(addr, email.router()).await?
        }
        "order" => {
            let orders = OrderService::new(
                upstreams,
                bus.clone(),
                config.database_url.as_deref(),
                &config.data_dir,
            )
            .await?;
            subscriptions.extend(orders.subscribe(&bus).await?);
            Server::start(addr, orders.router()).await?
        }
        "inventory" => {
            let inventory = InventoryService::default();
            subscriptions.extend(inventory.subscribe(&bus).await?);
            Server::start(addr, inventory.router()).await?
        }
        "payment" => {
            let payments = PaymentService::new(config.payment_limit);
            subscriptions.extend(payments.subscribe(&bus).await?);
            Server::start(addr, payments.router()).await?
        }
        "notification" => {
            let notifications = NotificationService::new();
            subscriptions.extend(notifications.subscribe(&bus).await?);
            Server::start(addr, notifications.router()).await?
        }
        other => return Err(format!("unknown service `{other}`").into()),
    };
    tracing::info!(service = name, addr = %server.addr(), "serving");
    // With Consul, register (HTTP health check on /health) and deregister on the way out.
    let host = std::env::var("SERVICE_HOST").unwrap_or_else(|_| "127.0.0.1".to_owned());
    let registration = registry
        .register_in_consul(name, &instance_id, &host, server.addr().port())
        .await?;
    shutdown_signal().await;
    tracing::info!(service = name, "shutting down");
    if let Some(registration) = registration
        && let Err(error) = registration.shutdown().await
    {
        tracing::warn!(%error, "cannot deregister from Consul");
    }
    if let Some(relay) = relay {
        relay.shutdown(Duration::from_secs(5)).await;
    }
    for subscription in subscriptions {
        subscription.shutdown(Duration::from_secs(5)).await;
    }
    server.stop().await;
    if let Some(grpc) = grpc {
        grpc.abort();
    }
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
