//! Saturation and outages: a retryable answer when the pool is full, and recovery
//! without restart when the database comes back, losing nothing acknowledged.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sea_orm::{ConnectionTrait, TransactionTrait};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;

use tracegraph::db::sqlite_path;
use tracegraph::error::AppError;

use crate::helpers::{generate, hold_writes_to, on_postgres, run_to_its_end, spawn_app, start_on, test_database};

#[tokio::test]
async fn a_saturated_pool_answers_overloaded_with_retry_after() {
    let app = spawn_app().await;
    let tid = app.create_trace(json!({"name": "t"})).await["id"].clone();
    let busy = app
        .second_instance_with(|c| {
            c.db_max_connections = 1;
            c.db_acquire_timeout_ms = 200;
        })
        .await;
    // Another client holds what the first write needs, so that write keeps the
    // instance's only write connection busy; the next request finds no connection.
    let blocker = hold_writes_to(&app.database_url, &tid).await;
    let add = "mutation($t: UUID!, $n: String!) { addSpan(input: {traceId: $t, name: $n, spanType: TOOL}) { id } }";
    let first = tokio::spawn({
        let (http, base, tid) = (busy.http.clone(), busy.base.clone(), tid.clone());
        async move {
            http.post(format!("{base}/graphql"))
                .json(&json!({"query": add, "variables": {"t": tid, "n": "first"}}))
                .send()
                .await
                .unwrap()
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = busy
        .http
        .post(format!("{}/graphql", busy.base))
        .json(&json!({"query": add, "variables": {"t": tid, "n": "second"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), 503);
    assert_eq!(second.headers()["retry-after"], "1");
    let body: Value = second.json().await.unwrap();
    assert_eq!(body["errors"][0]["extensions"]["code"], "OVERLOADED", "{body}");
    blocker.rollback().await.unwrap();
    // The first write waited on the lock: it went through, or gave up as retryable.
    let first = first.await.unwrap();
    let first_status = first.status();
    assert!(first_status == 200 || first_status == 503, "{first_status}");
    let want = if first_status == 200 {
        json!([{"name": "first"}])
    } else {
        json!([])
    };
    let names = app.ok("{ spans { items { name } } }", json!({})).await;
    assert_eq!(names["spans"]["items"], want, "only acknowledged writes are stored");
    let retry = busy.gql(add, json!({"t": tid, "n": "retry"})).await;
    assert!(
        retry.get("errors").is_none(),
        "served again once the lock is gone: {retry}"
    );
}

/// A TCP proxy the test can cut (dropping every connection and refusing new ones)
/// and restore.
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let (up2, conns2) = (up.clone(), conns.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if !up2.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let target = target.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                conns2.lock().await.push(task);
            }
        });
        Self { port, up, conns }
    }

    async fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for task in self.conns.lock().await.drain(..) {
            task.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_loses_nothing_acknowledged_and_recovers_without_restart() {
    if !on_postgres() {
        eprintln!("skipped: the outage is staged between the server and PostgreSQL");
        return;
    }
    let owner = spawn_app().await;
    let url = url::Url::parse(&owner.database_url).unwrap();
    let target = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432));
    let proxy = Proxy::start(target).await;
    let mut proxied = url.clone();
    proxied.set_host(Some("127.0.0.1")).unwrap();
    proxied.set_port(Some(proxy.port)).unwrap();
    let app = start_on(proxied.to_string(), |c| c.db_acquire_timeout_ms = 500).await;
    let tid = app.create_trace(json!({"name": "outage"})).await["id"].clone();

    // A writer adds spans one by one, remembering which were acknowledged.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn({
        let (http, base, tid, stop) = (app.http.clone(), app.base.clone(), tid.clone(), stop.clone());
        async move {
            let mut acked = Vec::new();
            let mut refused = 0;
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let span_id = uuid::Uuid::new_v4().to_string();
                let q = "mutation($i: AddSpanInput!) { addSpan(input: $i) { id } }";
                let vars = json!({"i": {"id": span_id, "traceId": tid, "name": format!("{i}"), "spanType": "TOOL"}});
                let sent = http
                    .post(format!("{base}/graphql"))
                    .json(&json!({"query": q, "variables": vars}))
                    .send()
                    .await;
                match sent {
                    Ok(r) => {
                        let body: Value = r.json().await.unwrap_or(Value::Null);
                        if body["data"]["addSpan"]["id"] == span_id {
                            acked.push(span_id);
                        } else {
                            let code = body["errors"][0]["extensions"]["code"]
                                .as_str()
                                .unwrap_or("")
                                .to_owned();
                            assert!(
                                ["OVERLOADED", "INTERNAL"].contains(&code.as_str()),
                                "a clean error: {body}"
                            );
                            refused += 1;
                        }
                    }
                    Err(e) => panic!("the server must answer during an outage: {e}"),
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (acked, refused)
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.cut().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ready = app.http.get(format!("{}/readyz", app.base)).send().await.unwrap();
    assert_eq!(ready.status(), 503, "not ready while the database is away");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    proxy.restore();
    // Recovers on its own.
    let mut recovered = false;
    for _ in 0..50 {
        let ready = app.http.get(format!("{}/readyz", app.base)).send().await.unwrap();
        if ready.status() == 200 {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(recovered, "ready again without a restart");
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    let (acked, refused) = writer.await.unwrap();
    assert!(refused > 0, "the outage was felt");
    assert!(acked.len() > 10, "writes went through before and after");

    // Every acknowledged span is stored exactly once (read through the direct instance).
    let data = owner
        .ok(
            "query($t: UUID) { spans(filter: {traceId: $t}, limit: 500) { totalCount items { id } } }",
            json!({"t": tid}),
        )
        .await;
    let stored: std::collections::HashSet<String> = data["spans"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        stored.len() as u64,
        data["spans"]["totalCount"].as_u64().unwrap(),
        "no duplicates"
    );
    for id in &acked {
        assert!(stored.contains(id), "acknowledged span {id} was lost");
    }
}

#[tokio::test]
async fn a_locked_sqlite_file_gives_a_retryable_error_then_recovers() {
    if on_postgres() {
        eprintln!("skipped: SQLite's file lock");
        return;
    }
    let app = crate::helpers::spawn_app_with(|c| c.db_acquire_timeout_ms = 300).await;
    let tid = app.create_trace(json!({"name": "t"})).await["id"].clone();
    // Another process's write transaction holds the file.
    let other = sea_orm::Database::connect(&app.database_url).await.unwrap();
    let blocker = other.begin().await.unwrap();
    blocker
        .execute_unprepared("UPDATE trace SET name = name")
        .await
        .unwrap();
    let add = "mutation($t: UUID!) { addSpan(input: {traceId: $t, name: \"s\", spanType: TOOL}) { id } }";
    let body = app.gql(add, json!({"t": tid})).await;
    assert_eq!(body["errors"][0]["extensions"]["code"], "OVERLOADED", "{body}");
    blocker.rollback().await.unwrap();
    let body = app.gql(add, json!({"t": tid})).await;
    assert!(body.get("errors").is_none(), "recovered: {body}");
    assert_eq!(app.counts().await, (1, 1));
}

#[tokio::test]
async fn requests_past_the_execution_limit_wait_their_turn() {
    let app = spawn_app().await;
    let tid = app.create_trace(json!({"name": "t"})).await["id"].clone();
    let one_at_a_time = app.second_instance_with(|c| c.max_concurrent_requests = 1).await;
    let blocker = hold_writes_to(&app.database_url, &tid).await;
    let post = |query: &'static str, variables: Value| {
        let (http, base) = (one_at_a_time.http.clone(), one_at_a_time.base.clone());
        tokio::spawn(async move {
            let response = http
                .post(format!("{base}/graphql"))
                .json(&json!({"query": query, "variables": variables}))
                .send()
                .await
                .unwrap();
            (response.status().as_u16(), response.json::<Value>().await.unwrap())
        })
    };
    // The write waits on the lock, holding the only turn to execute.
    let write = post(
        "mutation($t: UUID!) { addSpan(input: {traceId: $t, name: \"w\", spanType: TOOL}) { id } }",
        json!({"t": tid}),
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A read needs no lock, yet waits for its turn behind the write.
    let read = post("{ traces { totalCount } }", json!({}));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        !read.is_finished(),
        "the read ran beside the write despite the limit of 1"
    );
    blocker.rollback().await.unwrap();
    let (status, body) = write.await.unwrap();
    assert_eq!(status, 200, "{body}");
    let (status, body) = read.await.unwrap();
    assert_eq!(
        (status, &body["data"]["traces"]["totalCount"]),
        (200, &json!(1)),
        "{body}"
    );
    // Many at once all get their turn.
    let reads: Vec<_> = (0..8).map(|_| post("{ traces { totalCount } }", json!({}))).collect();
    for read in reads {
        assert_eq!(read.await.unwrap().0, 200);
    }
}

/// PostgreSQL connections are pinged before use only after a quiet second, so when the
/// server's connections are dropped: after a quiet moment nothing fails; under load each
/// busy connection fails one statement, a retryable OVERLOADED (never INTERNAL), and
/// fresh connections serve after.
#[tokio::test]
async fn connections_postgres_drops_are_replaced() {
    if !on_postgres() {
        eprintln!("skipped: PostgreSQL drops connections; a SQLite file's cannot be dropped");
        return;
    }
    let app = spawn_app().await;
    let admin = sea_orm::Database::connect(&app.database_url).await.unwrap();
    let query = "{ traces { totalCount } }";
    let drop_connections = || async {
        admin
            .execute_unprepared(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = current_database() AND pid <> pg_backend_pid()",
            )
            .await
            .unwrap();
    };
    let statuses = || async {
        let mut statuses = Vec::new();
        for _ in 0..12 {
            let (status, body) = app.gql_status(query).await;
            if status != 200 {
                let code = body["errors"][0]["extensions"]["code"].as_str();
                assert_eq!((status, code), (503, Some("OVERLOADED")), "{body}");
            }
            statuses.push(status);
        }
        statuses
    };
    let warm = || async {
        for _ in 0..8 {
            app.ok(query, json!({})).await;
        }
    };

    warm().await;
    drop_connections().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after_quiet = statuses().await;
    assert!(
        after_quiet.iter().all(|&s| s == 200),
        "idle connections are checked: {after_quiet:?}"
    );

    warm().await;
    drop_connections().await;
    let under_load = statuses().await;
    let failed = under_load.iter().filter(|&&s| s != 200).count();
    assert!(
        failed <= 4,
        "one failure at most per pooled connection (4): {under_load:?}"
    );
    assert!(
        under_load[8..].iter().all(|&s| s == 200),
        "served again: {under_load:?}"
    );
}

/// A stopped server leaves its database as a client should (see `left_cleanly`), with
/// what it wrote in the database file.
#[tokio::test]
async fn shutdown_closes_every_database_connection() {
    let mut app = spawn_app().await;
    let tid = app.create_trace(json!({"name": "kept"})).await["id"].clone();
    // Reads and writes on every kind of connection: the pools and the leased reads.
    app.add_spans(json!([{"traceId": tid, "name": "s", "spanType": "TOOL"}]))
        .await;
    let read = "query($t: UUID!) { trace(id: $t) { spans { id } } traces { items { id } } }";
    app.ok(read, json!({"t": tid})).await;
    app.shut_down().await;
    assert_left_cleanly(&app.database_url).await;
    if !on_postgres() {
        let kept = rusqlite::Connection::open(sqlite_path(&app.database_url).unwrap())
            .unwrap()
            .query_row("SELECT COUNT(*) FROM span", [], |row| row.get::<_, i64>(0))
            .unwrap();
        assert_eq!(kept, 1, "the written span is in the database file");
    }
}

/// The CLI's commands that open the database close it the same way.
#[tokio::test]
async fn cli_commands_close_their_database_connections() {
    let (database_url, _database) = test_database().await;
    let (_dir, data) = generate(3);
    let commands: [&[&str]; 4] = [
        &["migrate"],
        &["import", data.to_str().unwrap()],
        &["keys", "create", "ops", "--scope", "admin"],
        &["keys", "list"],
    ];
    for args in commands {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tracegraph"))
            .args(args)
            .env("TRACEGRAPH_DATABASE_URL", &database_url)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_left_cleanly(&database_url).await;
}

/// Every connection to the database at `database_url` has ended as a client should end
/// it: on SQLite the write-ahead log is folded into the database file and removed (one
/// file to copy); on PostgreSQL none is left open, and each ended with a Terminate
/// message (the database counts, and logs, the others as lost).
async fn assert_left_cleanly(database_url: &str) {
    if !on_postgres() {
        let wal = format!("{}-wal", sqlite_path(database_url).unwrap().display());
        assert!(!std::path::Path::new(&wal).exists(), "{wal} is left");
        return;
    }
    let db = sea_orm::Database::connect(database_url).await.unwrap();
    let count = |sql: &'static str| {
        let db = &db;
        async move {
            let row = db.query_one_raw(sea_orm::Statement::from_string(db.get_database_backend(), sql));
            row.await.unwrap().unwrap().try_get::<i64>("", "n").unwrap()
        }
    };
    let open =
        "SELECT COUNT(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()";
    let mut left = i64::MAX;
    // A backend exits a moment after its Terminate message arrives.
    for _ in 0..50 {
        left = count(open).await;
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(left, 0, "connections still open");
    let abandoned =
        count("SELECT sessions_abandoned AS n FROM pg_stat_database WHERE datname = current_database()").await;
    assert_eq!(abandoned, 0, "sessions ended without a Terminate message");
    let _ = db.close().await;
}

/// Each engine's error codes are read as its own. PostgreSQL's SQLSTATE 22021 (text that
/// is not UTF-8) is all digits, and read as a SQLite code it would be "busy" (22021 &
/// 0xff = 5): a fault of the statement would have been told as a retryable OVERLOADED.
#[tokio::test]
async fn a_database_error_is_read_by_its_own_engine() {
    let (url, _database) = test_database().await;
    let mut options = sea_orm::ConnectOptions::new(url.clone());
    options.max_connections(1);
    let conn = sea_orm::Database::connect(options.clone()).await.unwrap();
    if on_postgres() {
        let err = conn
            .execute_unprepared("SELECT convert_from('\\x00'::bytea, 'UTF8')")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("0x00"), "{err}");
        assert_eq!(AppError::from(err).code(), "INTERNAL");
        return;
    }
    // SQLite's own busy stays retryable: another connection holds the write lock.
    let holder = sea_orm::Database::connect(options).await.unwrap();
    let held = holder.begin().await.unwrap();
    held.execute_unprepared("CREATE TABLE held (x)").await.unwrap();
    conn.execute_unprepared("PRAGMA busy_timeout = 0").await.unwrap();
    let err = conn.execute_unprepared("CREATE TABLE waiting (x)").await.unwrap_err();
    assert_eq!(AppError::from(err).code(), "OVERLOADED");
    held.rollback().await.unwrap();
}

/// A database that refuses connections is named as such when the server or a command
/// starts, not as a pool that waited in vain.
#[tokio::test]
async fn an_unreachable_database_is_told_with_its_reason() {
    let nothing_listens = "postgres://postgres@127.0.0.1:1/tracegraph";
    for command in ["migrate", "serve"] {
        let args = [
            command,
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            nothing_listens,
            "--db-acquire-timeout-ms",
            "300",
        ];
        let (ran, said) = run_to_its_end(&args, &[]).await;
        assert!(!ran, "{command}: {said}");
        assert!(said.contains("Connection refused"), "{command}: {said}");
        assert!(!said.contains("pool timed out"), "{command}: {said}");
    }
}

/// A SQLite URL names a file the way a person would write it: without `mode=rwc` the
/// file is created, as the default's is; when it cannot be opened, the message says why
/// rather than SQLite's bare "unable to open database file". A URL of no engine
/// tracegraph speaks is refused naming the two it does.
#[tokio::test]
async fn a_sqlite_file_is_created_or_told_why_not() {
    let dir = tempfile::tempdir().unwrap();
    let at = |name: &str| dir.path().join(name).display().to_string();
    for url in [
        format!("sqlite://{}", at("new.db")),
        format!("sqlite:{}", at("plain.db")),
    ] {
        let (ran, said) = run_to_its_end(&["migrate", "--database-url", &url], &[]).await;
        assert!(ran, "{url}: {said}");
    }
    assert!(dir.path().join("new.db").is_file() && dir.path().join("plain.db").is_file());
    let refused = [
        (format!("sqlite://{}", at("missing/x.db")), "its folder"),
        (format!("sqlite://{}?mode=rw", at("absent.db")), "leave `mode` out"),
        (format!("sqlite://{}", dir.path().display()), "that is a folder"),
    ];
    for (url, why) in refused {
        for command in ["migrate", "serve"] {
            let (ran, said) = run_to_its_end(&[command, "--listen", "127.0.0.1:0", "--database-url", &url], &[]).await;
            assert!(!ran, "{command} {url}: {said}");
            assert!(
                said.contains("cannot open the SQLite database") && said.contains(why),
                "{command} {url}: {said}"
            );
        }
    }
    assert!(!dir.path().join("absent.db").exists(), "`mode=rw` created nothing");
    // Another engine's URL, or a bare file name, is refused before anything opens.
    for url in ["mysql://root@127.0.0.1/test", "tracegraph.db"] {
        let (ran, said) = run_to_its_end(&["migrate", "--database-url", url], &[]).await;
        assert!(!ran, "{url}: {said}");
        assert!(
            said.contains("--database-url") && said.contains("SQLite (`sqlite://FILE`"),
            "{url}: {said}"
        );
    }
}
