use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tracegraph::app::App;
use tracegraph::config::Config;
use tracegraph::db::StatementCounter;
use uuid::Uuid;

pub const PG_ENV: &str = "TRACEGRAPH_TEST_DATABASE_URL";

pub struct TestApp {
    pub base: String,
    pub addr: std::net::SocketAddr,
    pub database_url: String,
    pub http: reqwest::Client,
    pub statements: StatementCounter,
    /// Dropped with the first instance on a database; `None` for a second instance.
    _database: Option<TestDatabase>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

/// A database that lives as long as the test: a temporary SQLite file, or a
/// PostgreSQL database dropped at the end.
pub enum TestDatabase {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres { admin_url: String, name: String },
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Self::Postgres { admin_url, name } = self {
            let (admin_url, name) = (admin_url.clone(), name.clone());
            // Drop runs outside any runtime we may block on: use a thread of its own.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    if let Ok(conn) = sea_orm::Database::connect(&admin_url).await {
                        use sea_orm::ConnectionTrait;
                        let _ = conn
                            .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                            .await;
                    }
                });
            })
            .join();
        }
    }
}

pub async fn test_database() -> (String, TestDatabase) {
    match std::env::var(PG_ENV) {
        Ok(admin_url) if !admin_url.is_empty() => {
            use sea_orm::ConnectionTrait;
            let name = format!("tg_test_{}", Uuid::new_v4().simple());
            let admin = sea_orm::Database::connect(&admin_url)
                .await
                .unwrap_or_else(|e| panic!("{PG_ENV} is set but PostgreSQL cannot be reached: {e}"));
            admin
                .execute_unprepared(&format!("CREATE DATABASE {name}"))
                .await
                .expect("create test database");
            let _ = admin.close().await;
            let url = replace_database(&admin_url, &name);
            (url, TestDatabase::Postgres { admin_url, name })
        }
        _ => {
            let dir = tempfile::tempdir().expect("temp dir");
            let url = format!("sqlite://{}?mode=rwc", dir.path().join("test.db").display());
            (url, TestDatabase::Sqlite(dir))
        }
    }
}

fn replace_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let prefix = match base.rfind('/') {
        Some(i) if base[..i].contains("://") && i > base.find("://").unwrap() + 2 => &base[..i],
        _ => base,
    };
    format!("{prefix}/{name}{query}")
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(configure: impl FnOnce(&mut Config)) -> TestApp {
    let (database_url, database) = test_database().await;
    start(database_url, Some(database), configure).await
}

pub fn on_postgres() -> bool {
    std::env::var(PG_ENV).is_ok_and(|url| !url.is_empty())
}

/// An instance on a given database URL, which the test owns.
pub async fn start_on(database_url: String, configure: impl FnOnce(&mut Config)) -> TestApp {
    start(database_url, None, configure).await
}

async fn start(database_url: String, database: Option<TestDatabase>, configure: impl FnOnce(&mut Config)) -> TestApp {
    let mut config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: database_url.clone(),
        db_max_connections: 4,
        ..Config::default()
    };
    configure(&mut config);
    let app = App::build(config).await.expect("app builds");
    let addr = app.local_addr();
    let statements = app.statements();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    TestApp {
        stop: Some(stop),
        server: Some(server),
        base: format!("http://{addr}"),
        addr,
        database_url,
        http: reqwest::Client::new(),
        statements,
        _database: database,
    }
}

impl TestApp {
    /// Shuts the server down as a signal would, and waits until it has stopped.
    pub async fn shut_down(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("server stops cleanly");
        }
    }

    /// Another server instance on the same database.
    pub async fn second_instance(&self) -> TestApp {
        self.second_instance_with(|_| {}).await
    }

    pub async fn second_instance_with(&self, configure: impl FnOnce(&mut Config)) -> TestApp {
        start(self.database_url.clone(), None, configure).await
    }

    /// Posts a GraphQL request and returns the JSON body.
    pub async fn gql(&self, query: &str, variables: Value) -> Value {
        let body = self.gql_text(query, variables).await;
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("JSON body ({e}): {body}"))
    }

    /// Posts a GraphQL request and returns the body as sent.
    pub async fn gql_text(&self, query: &str, variables: Value) -> String {
        let response = self
            .http
            .post(format!("{}/graphql", self.base))
            .json(&json!({"query": query, "variables": variables}))
            .send()
            .await
            .expect("request sent");
        response.text().await.expect("a body")
    }

    /// Posts and asserts success, returning `data`.
    pub async fn ok(&self, query: &str, variables: Value) -> Value {
        let body = self.gql(query, variables).await;
        assert!(body.get("errors").is_none(), "unexpected errors: {body}");
        body["data"].clone()
    }

    /// Posts and returns the first error's code, asserting there is one.
    pub async fn error_code(&self, query: &str, variables: Value) -> String {
        let body = self.gql(query, variables).await;
        error_code(&body)
    }

    pub async fn create_trace(&self, input: Value) -> Value {
        let data = self
            .ok(
                "mutation($i: CreateTraceInput!) { createTrace(input: $i) { id name agentId productId startedAt endedAt status } }",
                json!({"i": input}),
            )
            .await;
        data["createTrace"].clone()
    }

    pub async fn add_spans(&self, inputs: Value) -> Value {
        let data = self
            .ok(
                "mutation($i: [AddSpanInput!]!) { addSpans(inputs: $i) { id traceId parentId name spanType } }",
                json!({"i": inputs}),
            )
            .await;
        data["addSpans"].clone()
    }

    /// How many traces and spans exist: proof that a rejected write wrote nothing.
    pub async fn counts(&self) -> (u64, u64) {
        let data = self
            .ok(
                "{ traces(limit: 1) { totalCount } spans(limit: 1) { totalCount } }",
                json!({}),
            )
            .await;
        (
            data["traces"]["totalCount"].as_u64().unwrap(),
            data["spans"]["totalCount"].as_u64().unwrap(),
        )
    }

    pub async fn ws_at(&self, path: &str, protocol: &str) -> WsClient {
        let mut request = format!("ws://{}{path}", self.addr).into_client_request().unwrap();
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", protocol.parse().unwrap());
        let (socket, _) = tokio_tungstenite::connect_async(request).await.expect("ws connects");
        WsClient { socket }
    }
}

impl TestApp {
    /// A WebSocket client whose socket takes in little: when it stops reading, the
    /// server's writes back up within a few frames.
    pub async fn ws_with_small_window(&self) -> WsClient {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let stream = socket.connect(self.addr).await.unwrap();
        let mut request = format!("ws://{}/graphql/ws", self.addr).into_client_request().unwrap();
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse().unwrap());
        let (socket, _) = tokio_tungstenite::client_async(request, tokio_tungstenite::MaybeTlsStream::Plain(stream))
            .await
            .expect("ws connects");
        WsClient { socket }
    }
}

impl TestApp {
    /// Runs the real `tracegraph` CLI against this app's database.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_tracegraph"))
            .args(args)
            .env("TRACEGRAPH_DATABASE_URL", &self.database_url)
            .output()
            .expect("tracegraph runs")
    }

    /// Creates an API key with the CLI and returns it, once the server knows of it.
    pub async fn create_key(&self, name: &str, scopes: &[&str], products: &[&str]) -> String {
        let mut args = vec!["keys", "create", name];
        for s in scopes {
            args.extend(["--scope", s]);
        }
        for p in products {
            args.extend(["--product", p]);
        }
        let out = self.change_keys(&args).await;
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// Runs a `keys` command that changes keys, and waits until the server knows of the
    /// change (see `key_change_known`).
    pub async fn change_keys(&self, args: &[&str]) -> std::process::Output {
        let before = self.metric("tracegraph_key_epoch").await;
        let out = self.cli(args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        self.key_change_known(before).await;
        out
    }

    /// Posts a GraphQL request with a key; returns status and body.
    /// Status and body of a request sent without any key.
    pub async fn gql_status(&self, query: &str) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}/graphql", self.base))
            .json(&json!({"query": query}))
            .send()
            .await
            .expect("request sent");
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON body"))
    }

    /// A counter or gauge from `/metrics`.
    pub async fn metric(&self, name: &str) -> u64 {
        let text = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text");
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .parse()
            .expect("a number")
    }

    /// Waits until the server knows of an API-key change past `before` (its
    /// `tracegraph_key_epoch`): on SQLite once its last read of the counter is older than
    /// `SQLITE_FRESH_FOR`; on PostgreSQL when the change's notification arrives. Returns
    /// the new value.
    pub async fn key_change_known(&self, before: u64) -> u64 {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let now = self.metric("tracegraph_key_epoch").await;
            if now > before {
                return now;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the server never heard of the key change (epoch still {now})"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    pub async fn gql_as(&self, key: &str, query: &str, variables: Value) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}/graphql", self.base))
            .bearer_auth(key)
            .json(&json!({"query": query, "variables": variables}))
            .send()
            .await
            .expect("request sent");
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON body"))
    }
}

pub fn error_code(body: &Value) -> String {
    let errors = body["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("expected errors in {body}"));
    assert!(!errors.is_empty(), "expected errors in {body}");
    errors[0]["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("error without code: {body}"))
        .to_owned()
}

pub fn id() -> String {
    Uuid::new_v4().to_string()
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub struct WsClient {
    pub socket: Socket,
}

impl WsClient {
    pub async fn send(&mut self, message: Value) {
        self.socket
            .send(Message::text(message.to_string()))
            .await
            .expect("ws send");
    }

    /// The next JSON message, skipping pings; panics after `timeout`.
    pub async fn next_json(&mut self, timeout: Duration) -> Value {
        loop {
            let msg = tokio::time::timeout(timeout, self.socket.next())
                .await
                .expect("ws message before timeout")
                .expect("ws open")
                .expect("ws frame");
            if let Message::Text(text) = msg {
                let value: Value = serde_json::from_str(&text).expect("JSON frame");
                if value["type"] == "ping" || value["type"] == "ka" {
                    continue;
                }
                return value;
            }
        }
    }

    pub async fn init(&mut self) {
        self.send(json!({"type": "connection_init", "payload": {}})).await;
        let ack = self.next_json(Duration::from_secs(5)).await;
        assert_eq!(ack["type"], "connection_ack", "{ack}");
    }
}

impl WsClient {
    /// Reads until the server closes, returning its close code (0 if it gave none).
    pub async fn close_code(&mut self, timeout: Duration) -> u16 {
        self.close_frame(timeout).await.0
    }

    /// Reads until the server closes: its close code and reason (0 and "" if none).
    pub async fn close_frame(&mut self, timeout: Duration) -> (u16, String) {
        loop {
            let next = tokio::time::timeout(timeout, self.socket.next())
                .await
                .expect("server closes before timeout");
            match next {
                Some(Ok(Message::Close(frame))) => {
                    return frame.map_or((0, String::new()), |f| (u16::from(f.code), f.reason.to_string()));
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return (0, String::new()),
            }
        }
    }

    pub async fn subscribe(&mut self, id: &str, query: &str, variables: Value) {
        self.send(json!({"id": id, "type": "subscribe", "payload": {"query": query, "variables": variables}}))
            .await;
    }
}

/// Writes a data set from the shared generator into a temporary folder.
pub fn generate(traces: u32) -> (tempfile::TempDir, PathBuf) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/bench/gen_dataset.py");
    assert!(
        std::path::Path::new(script).exists(),
        "data set generator missing at {script}"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.ndjson");
    let out = Command::new("python3")
        .args([script, "--traces", &traces.to_string(), "--spans", "20", "--seed", "7"])
        .output()
        .expect("python3 runs the generator");
    assert!(
        out.status.success(),
        "generator failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(&path, out.stdout).unwrap();
    (dir, path)
}

pub fn import(database_url: &str, path: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_tracegraph"))
        .args(["import", path.to_str().unwrap(), "--batch-traces", "7"])
        .env("TRACEGRAPH_DATABASE_URL", database_url)
        .output()
        .expect("tracegraph import runs");
    assert!(
        out.status.success(),
        "import failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Another client's open transaction holding what a write to the trace needs: its row
/// on PostgreSQL, the database's write lock on SQLite. Roll it back to let writes on.
pub async fn hold_writes_to(database_url: &str, trace_id: &Value) -> sea_orm::DatabaseTransaction {
    use sea_orm::{ConnectionTrait, TransactionTrait};
    let other = sea_orm::Database::connect(database_url).await.unwrap();
    let blocker = other.begin().await.unwrap();
    let lock = if other.get_database_backend() == sea_orm::DbBackend::Sqlite {
        "UPDATE trace SET name = name".to_owned()
    } else {
        format!(
            "SELECT id FROM trace WHERE id = '{}' FOR UPDATE",
            trace_id.as_str().unwrap()
        )
    };
    blocker.execute_unprepared(&lock).await.unwrap();
    blocker
}

/// Runs `tracegraph` with `args` and `envs`, expecting it to stop on its own (a refused
/// start): (succeeded, stderr). A run that goes on serving fails the test.
pub async fn run_to_its_end(args: &[&str], envs: &[(String, &str)]) -> (bool, String) {
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_tracegraph"))
        .args(args)
        .envs(envs.iter().map(|(name, value)| (name, value)))
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .unwrap_or_else(|_| panic!("tracegraph {args:?} did not stop"))
        .expect("tracegraph runs");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}
