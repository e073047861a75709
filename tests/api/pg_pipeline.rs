//! PostgreSQL entity reads share a few connections and pipeline on them, over TLS as
//! sqlx takes the URL or in the clear; a connection the database ended is opened again;
//! a URL they cannot take as sqlx does keeps the reads on leased connections.

use std::time::Duration;

use sea_orm::sea_query::{Value, Values};
use sea_orm::{ConnectionTrait, DbErr};
use serde_json::json;
use tracegraph::db::pg_pipeline::Pipelines;
use tracegraph::live::postgres::LISTENER_NAME;

use crate::helpers::{TestDatabase, on_postgres, start_on, test_database};

const WAIT: Duration = Duration::from_secs(5);

/// A database of the test's own and its URL with `option` in place of any TLS options
/// (`sslmode`, `sslrootcert`, …), on PostgreSQL only.
async fn database_with(option: &str) -> Option<(String, TestDatabase)> {
    if !on_postgres() {
        return None;
    }
    let (url, database) = test_database().await;
    let (base, query) = url.split_once('?').unwrap_or((&url, ""));
    let mut options: Vec<&str> = query
        .split('&')
        .filter(|o| !o.is_empty() && !o.starts_with("ssl"))
        .collect();
    options.push(option);
    Some((format!("{base}?{}", options.join("&")), database))
}

async fn plain_database() -> Option<(String, TestDatabase)> {
    database_with("sslmode=disable").await
}

async fn plus_one(pipelines: &Pipelines, n: i32) -> Result<i32, DbErr> {
    let mut answer = None;
    pipelines
        .each_row("SELECT $1::int4 + 1", Values(vec![Value::Int(Some(n))]), |row| {
            answer = row.try_get(0).ok();
            Ok(true)
        })
        .await?;
    answer.ok_or_else(|| DbErr::Custom("no row".into()))
}

/// Whether the pipelined connection a read lands on is encrypted.
async fn on_tls(pipelines: &Pipelines) -> Result<bool, DbErr> {
    let mut ssl = None;
    pipelines
        .each_row(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            Values(Vec::new()),
            |row| {
                ssl = row.try_get(0).ok();
                Ok(true)
            },
        )
        .await?;
    ssl.ok_or_else(|| DbErr::Custom("no row".into()))
}

/// The one text cell a statement answers on the admin connection (empty for none).
async fn text_of(admin: &sea_orm::DatabaseConnection, sql: &str) -> String {
    admin
        .query_one_raw(sea_orm::Statement::from_string(admin.get_database_backend(), sql))
        .await
        .unwrap()
        .and_then(|row| row.try_get_by_index::<String>(0).ok())
        .unwrap_or_default()
}

#[tokio::test]
async fn urls_read_alike_by_both_clients_are_pipelined_and_others_are_not() {
    let Some((url, _database)) = plain_database().await else {
        return;
    };
    let with = |mode: &str| url.replace("sslmode=disable", mode);
    let pipelined = [
        "sslmode=disable",
        "sslmode=prefer",
        "sslmode=require",
        "sslmode=verify-ca",
        "sslmode=verify-full",
    ];
    for mode in pipelined {
        assert!(Pipelines::for_url(&with(mode), 2, WAIT).is_some(), "{mode}");
    }
    let default = url.replace("?sslmode=disable", "").replace("&sslmode=disable", "");
    assert!(Pipelines::for_url(&default, 2, WAIT).is_some(), "prefer, the default");
    // `allow` is a mode tokio-postgres does not know; a root certificate that cannot be
    // read leaves nothing to check the server against.
    assert!(Pipelines::for_url(&with("sslmode=allow"), 2, WAIT).is_none(), "allow");
    let unreadable = with("sslmode=verify-ca&sslrootcert=/nonexistent/root.pem");
    assert!(Pipelines::for_url(&unreadable, 2, WAIT).is_none(), "{unreadable}");
    // An option only sqlx reads is sqlx's own business; a client certificate is one the
    // pipelines are not given, so the URL stays with sqlx, whole.
    let own = format!("{url}&statement-cache-capacity=10");
    assert!(Pipelines::for_url(&own, 2, WAIT).is_some(), "{own}");
    let certificate = format!("{url}&sslcert=/tmp/client.pem");
    assert!(Pipelines::for_url(&certificate, 2, WAIT).is_none(), "{certificate}");
    // A Unix socket named as the host, or beside a host name (sqlx takes the socket).
    let socket = "postgres://postgres@%2Fvar%2Frun%2Fpostgresql/tracegraph";
    assert!(Pipelines::for_url(socket, 2, WAIT).is_some(), "{socket}");
    let beside = "postgres://postgres@localhost/tracegraph?host=/var/run/postgresql";
    assert!(Pipelines::for_url(beside, 2, WAIT).is_some(), "{beside}");
}

#[tokio::test]
async fn pipelined_reads_use_tls_as_sqlx_would() {
    let Some((url, _database)) = plain_database().await else {
        return;
    };
    let admin = sea_orm::Database::connect(&url).await.unwrap();
    let server_has_tls = text_of(&admin, "SHOW ssl").await == "on";
    let with = |mode: &str| url.replace("sslmode=disable", mode);

    let plain = Pipelines::for_url(&url, 1, WAIT).unwrap();
    assert!(!on_tls(&plain).await.unwrap(), "disable");
    // Checked with the certificate unchecked, as sqlx does for these modes: the test
    // server's is self-signed.
    let preferred = Pipelines::for_url(&with("sslmode=prefer"), 1, WAIT).unwrap();
    assert_eq!(on_tls(&preferred).await.unwrap(), server_has_tls, "prefer");
    let required = Pipelines::for_url(&with("sslmode=require"), 1, WAIT).unwrap();
    match on_tls(&required).await {
        Ok(tls) => assert!(tls && server_has_tls, "require"),
        Err(e) => assert!(!server_has_tls, "require refused by a server with TLS: {e}"),
    }

    // Over the server's Unix socket, when it is on this host: no TLS there, and under
    // `prefer` none is asked for.
    let sockets = text_of(&admin, "SHOW unix_socket_directories").await;
    let local = sockets
        .split(',')
        .map(str::trim)
        .find(|dir| std::path::Path::new(dir).is_dir());
    if let Some(directory) = local {
        let name = url.rsplit('/').next().unwrap().split('?').next().unwrap();
        let user = url.split("://").nth(1).unwrap().split(['@', ':']).next().unwrap();
        let socket = format!("postgres://{user}@{}/{name}", directory.replace('/', "%2F"));
        let over_socket = Pipelines::for_url(&socket, 1, WAIT).expect(&socket);
        assert!(!on_tls(&over_socket).await.unwrap(), "{socket}");
    }
}

#[tokio::test]
async fn pipelined_reads_check_the_certificate_as_sqlx_would() {
    let Some((url, _database)) = plain_database().await else {
        return;
    };
    let admin = sea_orm::Database::connect(&url).await.unwrap();
    let certificate = text_of(
        &admin,
        "SELECT current_setting('ssl_cert_file') WHERE current_setting('ssl') = 'on'",
    )
    .await;
    if certificate.is_empty() || std::fs::read(&certificate).is_err() {
        return;
    }
    let with = |options: &str| url.replace("sslmode=disable", options);
    // The test server's certificate is self-signed and made out to `localhost`: trusted
    // only when named as the root, and its name only when the URL names that host.
    let full = with(&format!("sslmode=verify-full&sslrootcert={certificate}"));
    let not_pem = std::env::temp_dir().join(format!("tracegraph-not-pem-{}", std::process::id()));
    std::fs::write(&not_pem, "not a certificate").unwrap();
    let mut cases = vec![
        (with(&format!("sslmode=verify-ca&sslrootcert={certificate}")), true),
        (with("sslmode=verify-ca"), false),
        (
            with(&format!("sslmode=verify-ca&sslrootcert={}", not_pem.display())),
            false,
        ),
        (full.replace("@localhost", "@127.0.0.1"), false),
    ];
    let system_roots = "/etc/ssl/certs/ca-certificates.crt";
    if std::path::Path::new(system_roots).is_file() {
        cases.push((with(&format!("sslmode=verify-ca&sslrootcert={system_roots}")), false));
    }
    if certificate.ends_with("ssl-cert-snakeoil.pem") {
        cases.push((full.replace("@127.0.0.1", "@localhost"), true));
    }
    for (url, trusted) in cases {
        // Every root here can be read: the pipelines take the URL, then connect or not.
        let pipelines = Pipelines::for_url(&url, 1, WAIT).expect(&url);
        if trusted {
            assert!(on_tls(&pipelines).await.unwrap(), "{url}");
        } else {
            assert!(pipelines.open_first().await.is_err(), "connected untrusted: {url}");
        }
        // And sqlx, on the writes' connections, agrees.
        let sqlx = sea_orm::Database::connect(&url).await;
        assert_eq!(sqlx.is_ok(), trusted, "sqlx on {url}: {:?}", sqlx.err());
    }
    let _ = std::fs::remove_file(not_pem);
}

/// Where the URL is silent, the pipelined connections take the settings sqlx takes from
/// the environment, as the writes' connections do: a server given only a host reads
/// from the database `PGDATABASE` names, in the clear as `PGSSLMODE` says (though the
/// test server offers TLS), under `PGAPPNAME`, and still on its pipelined connections.
#[tokio::test]
async fn settings_from_the_environment_reach_the_pipelined_connections() {
    let Some((url, _database)) = plain_database().await else {
        return;
    };
    let parsed = url::Url::parse(&url).unwrap();
    let database = parsed.path().trim_start_matches('/').to_owned();
    let host_only = format!(
        "postgres://{}@{}:{}",
        parsed.username(),
        parsed.host_str().unwrap(),
        parsed.port().unwrap_or(5432)
    );
    let name = format!("tg_env_{}", uuid::Uuid::new_v4().simple());
    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let _server = tokio::process::Command::new(env!("CARGO_BIN_EXE_tracegraph"))
        .args(["serve", "--listen", &listen.to_string(), "--database-url", &host_only])
        .env("PGDATABASE", &database)
        .env("PGSSLMODE", "disable")
        .env("PGAPPNAME", &name)
        .env("TRACEGRAPH_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .expect("tracegraph runs");
    let base = format!("http://{listen}");
    let http = reqwest::Client::new();
    let mut ready = false;
    for _ in 0..200 {
        ready = http
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200);
        if ready {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "the server did not start on {host_only}");
    let gql = |query: &'static str, variables: serde_json::Value| {
        let request = http
            .post(format!("{base}/graphql"))
            .json(&json!({"query": query, "variables": variables}));
        async move { request.send().await.unwrap().json::<serde_json::Value>().await.unwrap() }
    };
    let created = gql(
        "mutation($n: String!) { createTrace(input: {name: $n}) { id } }",
        json!({"n": "from the environment"}),
    )
    .await;
    let trace = created["data"]["createTrace"]["id"].clone();
    let read = gql("query($t: UUID!) { trace(id: $t) { name } }", json!({"t": trace})).await;
    assert_eq!(read["data"]["trace"]["name"], "from the environment", "{read}");
    let metrics = http.get(format!("{base}/metrics")).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(
        metrics.lines().any(|l| l == "tracegraph_read_pipelined_connections 2"),
        "{metrics}"
    );
    // Every connection the server holds to its database, pipelined or not, is in the
    // clear, and named as the environment says but the live relay's listener, which
    // names itself.
    let admin = sea_orm::Database::connect(&url).await.unwrap();
    let connections = text_of(
        &admin,
        &format!(
            "SELECT string_agg(DISTINCT a.application_name || ' ' || s.ssl, ', ') || ' x' || COUNT(*) \
             FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
             WHERE a.datname = '{database}' AND a.pid <> pg_backend_pid() \
             AND a.application_name <> '{LISTENER_NAME}'"
        ),
    )
    .await;
    let (kinds, count) = connections
        .rsplit_once(" x")
        .unwrap_or_else(|| panic!("no connection to {database}"));
    assert_eq!(kinds, format!("{name} false"), "{connections}");
    let relay = text_of(
        &admin,
        &format!(
            "SELECT string_agg(s.ssl::text, ', ') FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
             WHERE a.datname = '{database}' AND a.application_name = '{LISTENER_NAME}'"
        ),
    )
    .await;
    assert_eq!(relay, "false", "the relay's listener, in the clear too");
    assert!(
        count.parse::<u32>().unwrap() >= 2,
        "the writes' and the pipelines': {connections}"
    );
}

#[tokio::test]
async fn concurrent_reads_share_the_connections_and_a_read_stopped_early_leaves_them_usable() {
    let Some((url, _database)) = plain_database().await else {
        return;
    };
    let pipelines = Pipelines::for_url(&url, 2, WAIT).unwrap();
    let answers = futures::future::join_all((0..64).map(|n| plus_one(&pipelines, n))).await;
    for (n, answer) in answers.into_iter().enumerate() {
        assert_eq!(answer.unwrap(), n as i32 + 1);
    }
    assert!(
        pipelines.opened() <= 2,
        "{} connections for 64 reads",
        pipelines.opened()
    );

    // Stopped after 3 of 10,000 rows: the rest is drained, and the connection serves on.
    let mut read = 0;
    pipelines
        .each_row("SELECT generate_series(1, 10000)", Values(Vec::new()), |_| {
            read += 1;
            Ok(read < 3)
        })
        .await
        .unwrap();
    assert_eq!(read, 3);
    for n in 0..8 {
        assert_eq!(plus_one(&pipelines, n).await.unwrap(), n + 1);
    }
    assert!(pipelines.opened() <= 2, "{} connections", pipelines.opened());
    assert_eq!(pipelines.idle(), pipelines.opened() as usize, "all open, none busy");
}

#[tokio::test]
async fn connections_the_database_ended_are_opened_again_and_their_failures_are_retryable() {
    let Some((url, _database)) = plain_database().await else {
        return;
    };
    let pipelines = Pipelines::for_url(&url, 1, WAIT).unwrap();
    assert_eq!(plus_one(&pipelines, 1).await.unwrap(), 2);
    let name = url.rsplit('/').next().unwrap().split('?').next().unwrap().to_owned();
    let admin = sea_orm::Database::connect(&url).await.unwrap();
    admin
        .execute_unprepared(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        ))
        .await
        .unwrap();
    // The next read finds the connection closed and opens another, or fails once as a
    // lost connection (retryable), never as the statement's fault.
    match plus_one(&pipelines, 2).await {
        Ok(3) => {}
        Ok(other) => panic!("wrong answer {other}"),
        Err(DbErr::ConnectionAcquire(_)) => {
            assert_eq!(plus_one(&pipelines, 2).await.unwrap(), 3, "served after reconnecting");
        }
        Err(other) => panic!("a lost connection must be retryable, got {other:?}"),
    }
    assert_eq!(pipelines.opened(), 2, "opened again once");
}

#[tokio::test]
async fn a_server_on_a_plain_url_answers_from_its_shared_connections() {
    let Some((url, _database)) = plain_database().await else {
        return;
    };
    let app = start_on(url, |c| c.db_max_connections = 16).await;
    assert_eq!(app.metric("tracegraph_read_pipelined_connections").await, 2);
    let trace = app.create_trace(json!({"name": "plain"})).await["id"].clone();
    app.add_spans(json!([{"traceId": trace, "name": "step", "spanType": "TOOL"}]))
        .await;
    let query = "query($t: UUID!) { trace(id: $t) { name spans { name } } traces { totalCount } }";
    let answers = futures::future::join_all((0..32).map(|_| app.ok(query, json!({"t": trace})))).await;
    for data in answers {
        assert_eq!(data["trace"]["spans"][0]["name"], "step", "{data}");
        assert_eq!(data["traces"]["totalCount"], 1, "{data}");
    }
    let opened = app.metric("tracegraph_read_connections_opened_total").await;
    assert!((1..=2).contains(&opened), "{opened} read connections for 32 requests");
}
