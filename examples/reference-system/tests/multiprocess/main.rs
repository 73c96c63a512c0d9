#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Multi-process end to end against the real RabbitMQ and PostgreSQL on loopback: every
//! service is its own `reference-system serve <name>` process, discovery is static
//! (`SERVICES`), the user service has three replicas of which one is killed mid-run, and the
//! order service (the saga orchestrator) is killed mid-saga and restarted: its sagas still
//! end `Completed` and `Compensated`.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";

fn up(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(1),
    )
    .is_ok()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The processes; all are killed when this is dropped (also on a failed assertion).
struct Processes {
    bin: PathBuf,
    logs: PathBuf,
    env: Vec<(String, String)>,
    children: BTreeMap<String, Child>,
}

impl Processes {
    fn spawn(&mut self, id: &str, service: &str, env: &[(&str, String)]) {
        let log = std::fs::File::create(self.logs.join(format!("{id}.log"))).unwrap();
        let child = Command::new(&self.bin)
            .args(["serve", service])
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("INSTANCE_ID", id)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.children.insert(id.to_owned(), child);
    }

    fn kill(&mut self, id: &str) {
        let mut child = self.children.remove(id).unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for child in self.children.values_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn wait_healthy(http: &reqwest::Client, url: &str) {
    for _ in 0..300 {
        if let Ok(r) = http.get(format!("{url}/health")).send().await
            && r.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url} did not become healthy");
}

async fn until<F, Fut>(what: &str, mut f: F) -> Value
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<Value>>,
{
    for _ in 0..300 {
        if let Some(v) = f().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::too_many_lines, reason = "one scenario, step by step")]
async fn every_service_its_own_process() {
    if !(up(5672) && up(5432)) {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "RabbitMQ and PostgreSQL must be up on loopback (CI=true)"
        );
        eprintln!("skipped: RabbitMQ or PostgreSQL is not running on loopback");
        return;
    }
    let ns = format!("mp{}", uuid::Uuid::now_v7().simple());
    let ns = &ns[..ns.len().min(24)];
    let admin = sqlx::PgPool::connect(PG_ADMIN).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {ns}")))
        .execute(&admin)
        .await
        .unwrap();
    let database_url = format!("postgres://postgres@127.0.0.1:5432/{ns}");
    let logs = std::env::temp_dir().join(format!("sinew-{ns}"));
    std::fs::create_dir_all(&logs).unwrap();
    // Dropped after the processes (declared before them), also when an assertion fails.
    let _cleanup = Cleanup {
        ns: ns.to_owned(),
        logs: logs.clone(),
    };

    let port: BTreeMap<&str, u16> = [
        "user-1",
        "user-2",
        "user-3",
        "post",
        "comment",
        "email",
        "order",
        "inventory",
        "payment",
        "notification",
        "gateway",
    ]
    .into_iter()
    .map(|name| (name, free_port()))
    .collect();
    let url = |name: &str| format!("http://127.0.0.1:{}", port[name]);
    let mut p = Processes {
        bin: PathBuf::from(env!("CARGO_BIN_EXE_reference-system")),
        logs: logs.clone(),
        env: vec![
            ("AMQP_URL".into(), AMQP_URL.into()),
            ("DATABASE_URL".into(), database_url.clone()),
            ("BUS_NAMESPACE".into(), format!("{ns}-")),
            ("DATA_DIR".into(), logs.display().to_string()),
            (
                "JWT_SECRET".into(),
                "multiprocess-secret-0123456789abcdef".into(),
            ),
            ("RUST_LOG".into(), "warn".into()),
        ],
        children: BTreeMap::new(),
    };
    for i in 1..=3 {
        let id = format!("user-{i}");
        let env = [
            ("PORT", port[id.as_str()].to_string()),
            ("GRPC_ADDR", format!("127.0.0.1:{}", free_port())),
        ];
        p.spawn(&id, "user", &env);
    }
    for name in [
        "post",
        "comment",
        "email",
        "inventory",
        "payment",
        "notification",
    ] {
        p.spawn(name, name, &[("PORT", port[name].to_string())]);
    }
    let order_env = [
        ("PORT", port["order"].to_string()),
        (
            "SERVICES",
            format!(
                "inventory={};payment={};notification={}",
                url("inventory"),
                url("payment"),
                url("notification")
            ),
        ),
    ];
    p.spawn("order", "order", &order_env);
    let gateway_services = format!(
        "user={},{},{};post={};comment={};order={}",
        url("user-1"),
        url("user-2"),
        url("user-3"),
        url("post"),
        url("comment"),
        url("order")
    );
    p.spawn(
        "gateway",
        "gateway",
        &[
            ("PORT", port["gateway"].to_string()),
            ("SERVICES", gateway_services),
        ],
    );

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    for name in port.keys() {
        wait_healthy(&http, &url(name)).await;
    }
    let gw = url("gateway");
    let token: Value = http
        .post(format!("{gw}/auth/token"))
        .json(&json!({ "username": "demo", "password": "sinew-demo" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["token"].as_str().unwrap().to_owned();
    let api = |method: reqwest::Method, path: &str| {
        http.request(method, format!("{gw}{path}"))
            .bearer_auth(&token)
    };

    // A user (PostgreSQL), and the welcome email through RabbitMQ in another process.
    let email = format!("{ns}@example.com");
    let r = api(reqwest::Method::POST, "/api/users")
        .json(&json!({ "email": email, "name": "Ada", "password": "long enough" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let user: Value = r.json().await.unwrap();
    let user_id = user["id"].as_str().unwrap().to_owned();
    until("the welcome email", || async {
        let mails: Value = http
            .get(format!("{}/emails", url("email")))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        mails
            .as_array()?
            .iter()
            .any(|m| m["to"] == email.as_str())
            .then_some(Value::Null)
    })
    .await;

    // The dashboard, across three processes.
    let r = api(reqwest::Method::POST, "/api/posts")
        .json(&json!({ "userId": user_id, "body": "hello" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let dash: Value = api(
        reqwest::Method::GET,
        &format!("/api/user-dashboard/{user_id}"),
    )
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(dash["user"]["id"], user_id.as_str());
    assert_eq!(dash["posts"].as_array().unwrap().len(), 1);

    // Orchestrated orders: one completes, one is compensated.
    let order = |extra: Value| {
        let mut o = json!({ "items": [{ "sku": "widget", "quantity": 1 }], "amount": 1000 });
        o.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        o
    };
    let post_order = |body: Value| async move {
        api(reqwest::Method::POST, "/api/orders")
            .json(&body)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    };
    let done = post_order(order(json!({}))).await;
    assert_eq!(done["saga"]["status"], "Completed", "{done}");
    let failed = post_order(order(json!({ "failPayment": true }))).await;
    assert_eq!(failed["saga"]["status"], "Compensated", "{failed}");
    assert_eq!(
        failed["saga"]["compensated"],
        json!(["reserve-inventory", "create-order"])
    );

    // Choreographed: events across four processes.
    let r = post_order(order(json!({ "mode": "choreographed" }))).await;
    let choreo = r["order"]["id"].as_str().unwrap().to_owned();
    until("the choreographed order to complete", || async {
        let o: Value = api(reqwest::Method::GET, &format!("/api/orders/{choreo}"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (o["status"] == "completed").then_some(o)
    })
    .await;

    // Kill one of three user replicas while requests are flowing: every request succeeds.
    let load = {
        let (http, gw, token, user_id) = (http.clone(), gw.clone(), token.clone(), user_id.clone());
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            for _ in 0..60 {
                let r = http
                    .get(format!("{gw}/api/users/{user_id}"))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .unwrap();
                statuses.push(r.status().as_u16());
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            statuses
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    p.kill("user-1");
    let statuses = load.await.unwrap();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let mut served = BTreeMap::<String, usize>::new();
    for _ in 0..30 {
        let r = api(reqwest::Method::GET, &format!("/api/users/{user_id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let instance = r.headers()["x-upstream-instance"]
            .to_str()
            .unwrap()
            .to_owned();
        *served.entry(instance).or_default() += 1;
    }
    assert!(!served.contains_key("user-1"), "{served:?}");
    let health: Value = http
        .get(format!("{gw}/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let users = health["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "user")
        .unwrap()
        .clone();
    assert_eq!(users["status"], "degraded", "{users}");

    // A poison event lands in the email service's DLQ; `reference-system dlq` lists and
    // replays it (the handler, still strict, rejects it again).
    {
        use sinew_messaging::Publisher as _;
        let broker = sinew_messaging::rabbitmq::RabbitBroker::builder(AMQP_URL)
            .exchange(format!("{ns}-domain-events"))
            .connect()
            .await
            .unwrap();
        let poison = sinew_messaging::Event::new(
            "user.created",
            "poison",
            json!({ "id": "poison", "email": "poison@example.com" }),
        );
        broker
            .publisher()
            .publish(poison.to_message("test").unwrap())
            .await
            .unwrap();
    }
    let queue = format!("{ns}-email.welcome");
    let dlq = |action: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_reference-system"))
            .args(["dlq", action, &queue])
            .env("AMQP_URL", AMQP_URL)
            .env("BUS_NAMESPACE", format!("{ns}-"))
            .env("RUST_LOG", "error")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let mut listed = String::new();
    for _ in 0..100 {
        listed = dlq("list");
        if listed.contains("user.created") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(listed.contains("type=rejected"), "{listed}");
    assert_eq!(
        dlq("replay").trim(),
        format!("replayed 1 message(s) to {queue}")
    );
    until("the replayed poison event to be rejected again", || async {
        dlq("list").contains("type=rejected").then_some(Value::Null)
    })
    .await;

    // Kill the orchestrator mid-saga (the payment takes 3 s), then restart it.
    let widgets = || async {
        let levels: Value = http
            .get(format!("{}/inventory", url("inventory")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        levels["widget"].as_i64().unwrap()
    };
    let stock_before = widgets().await;
    let ok_id = uuid::Uuid::now_v7().to_string();
    let bad_id = uuid::Uuid::now_v7().to_string();
    for (id, fail) in [(&ok_id, false), (&bad_id, true)] {
        let request = api(reqwest::Method::POST, "/api/orders").json(&order(
            json!({ "orderId": id, "failPayment": fail, "paymentDelayMs": 3000 }),
        ));
        tokio::spawn(async move {
            let _ = request.send().await; // dies with the orchestrator
        });
    }
    until("both reservations", || async {
        (widgets().await == stock_before - 2).then_some(Value::Null)
    })
    .await;
    p.kill("order");
    p.spawn("order", "order", &order_env);
    wait_healthy(&http, &url("order")).await;
    let saga = |id: String| {
        let http = http.clone();
        let base = url("order");
        async move {
            http.get(format!("{base}/sagas/{id}"))
                .send()
                .await
                .ok()?
                .json::<Value>()
                .await
                .ok()
        }
    };
    let ok = until("the interrupted saga to complete", || async {
        let s = saga(ok_id.clone()).await?;
        (s["status"] == "Completed").then_some(s)
    })
    .await;
    assert_eq!(
        ok["completed"],
        json!([
            "create-order",
            "reserve-inventory",
            "process-payment",
            "send-notification"
        ])
    );
    let bad = until("the interrupted failing saga to be compensated", || async {
        let s = saga(bad_id.clone()).await?;
        (s["status"] == "Compensated").then_some(s)
    })
    .await;
    assert_eq!(
        bad["compensated"],
        json!(["reserve-inventory", "create-order"])
    );
    assert_eq!(
        widgets().await,
        stock_before - 1,
        "one reservation kept, one released"
    );

    admin.close().await;
}

/// Drops this run's database, RabbitMQ queues and exchange, and log directory.
struct Cleanup {
    ns: String,
    logs: PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let (ns, logs) = (self.ns.clone(), self.logs.clone());
        // Drop runs inside the test's runtime: clean up on a thread with a runtime of its own.
        let done = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok(admin) = sqlx::PgPool::connect(PG_ADMIN).await {
                    let drop_db = format!("DROP DATABASE IF EXISTS {ns} WITH (FORCE)");
                    let _ = sqlx::query(sqlx::AssertSqlSafe(drop_db))
                        .execute(&admin)
                        .await;
                    admin.close().await;
                }
                cleanup_rabbit(&ns).await;
            });
            let _ = std::fs::remove_dir_all(&logs);
        });
        let _ = done.join();
    }
}

/// Deletes this run's queues and exchange (only ours: their names carry the namespace).
async fn cleanup_rabbit(ns: &str) {
    use sinew_messaging::Subscriber as _;
    let broker = sinew_messaging::rabbitmq::RabbitBroker::builder(AMQP_URL)
        .exchange(format!("{ns}-domain-events"))
        .connect()
        .await;
    let Ok(broker) = broker else { return };
    let bus_queues = [
        ("email", "welcome"),
        ("order", "saga"),
        ("inventory", "saga"),
        ("payment", "saga"),
        ("notification", "saga"),
    ];
    for (service, name) in bus_queues {
        let config = sinew_messaging::SubscriptionConfig::builder(format!("{ns}-{service}"), name)
            .routing_key("#")
            .build()
            .unwrap();
        let _ = broker.subscriber().declare(&config).await;
    }
    let _ = broker.delete_topology().await;
}
