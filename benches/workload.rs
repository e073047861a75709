//! The published workload (`shared/bench/WORKLOAD.md`), W1–W5, against a tracegraph
//! server this program starts as a separate process, beside a raw-SQL baseline of the
//! same work on the same database, and the same raw reads behind a minimal HTTP server
//! (this program again, as its own process). Prints one table; asserts nothing.
//!
//!     cargo bench --bench workload                                   # SQLite
//!     cargo bench --bench workload -- --postgres postgres://postgres@127.0.0.1/postgres
//!     cargo bench --bench workload -- --scale-traces 50000           # and at 1M spans

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use futures::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use sea_orm::sea_query::Values;
use sea_orm::sqlx::{self, Row};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, TransactionTrait};
use sea_query_sqlx::SqlxValues;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tracegraph::db::pg_connections::ReadConnections;
use tracegraph::db::pg_pipeline::Pipelines;
use tracegraph::db::sqlite_reader::SqliteReader;
use tracegraph::db::store;
use tracegraph::db::store::spans::Texts;
use tracegraph::db::{Direct, Fetch};

#[derive(Parser, Debug)]
struct Args {
    /// Traces in the data set (20 spans each); the scale run uses 50000.
    #[arg(long, default_value_t = 1000)]
    traces: u32,
    /// Run on PostgreSQL: an admin URL where databases may be created (and dropped after).
    #[arg(long)]
    postgres: Option<String>,
    /// Concurrent clients for W2–W4.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Requests per measurement of W2–W4.
    #[arg(long, default_value_t = 800)]
    requests: usize,
    /// Concurrent writers for W1.
    #[arg(long, default_value_t = 4)]
    writers: usize,
    #[arg(long, default_value_t = 100)]
    subscribers: usize,
    #[arg(long, default_value_t = 1000)]
    live_spans: usize,
    /// Also run W2–W4 on this many traces (loaded with the importer) and print each p50
    /// as a ratio to the first data set's: the scale run is `--scale-traces 50000`.
    #[arg(long)]
    scale_traces: Option<u32>,
    /// Rounds of the scale run: W2–W4 on both sizes in each, one size after the other.
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..))]
    scale_rounds: u32,
    /// Only W5, this many times, one line each (for work on the live path): its figures
    /// move more between runs than a change there does.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    live_only: Option<u32>,
    /// Serve raw reads over HTTP on this address instead (the minimal server the
    /// benchmark starts as a separate process), on `--database-url`.
    #[arg(long, hide = true, requires = "database_url")]
    serve_raw: Option<String>,
    #[arg(long, hide = true)]
    database_url: Option<String>,
    /// Cargo passes `--bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args = Args::parse();
    if let (Some(listen), Some(database_url)) = (&args.serve_raw, &args.database_url) {
        serve_raw(listen, database_url).await;
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let data = generate(&args, &dir);
    let (server_url, raw_url, cleanup) = databases(&args, &dir).await;
    println!(
        "tracegraph workload: {} traces, {} spans; {} on {} cores",
        data.traces.len(),
        data.spans.len(),
        if args.postgres.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        },
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let server = Server::start(&server_url, &dir).await;
    let http = reqwest::Client::builder().pool_max_idle_per_host(64).build().unwrap();
    if let Some(rounds) = args.live_only {
        for _ in 0..rounds {
            let (p50, p99, lost) = w5(&server, &http, args.subscribers, args.live_spans).await;
            println!("{}", w5_row(&args, p50, p99, lost));
        }
        drop(server);
        cleanup.await;
        return;
    }
    let mut table = Vec::new();

    // W1: ingest through the API, and the same rows inserted directly.
    let api = w1_api(&server, &http, &data, args.writers).await;
    let raw_db = tracegraph::db::connect(&raw_url, args.writers as u32 + 1)
        .await
        .expect("raw database")
        .write;
    let raw = w1_raw(&raw_db, &data, args.writers).await;
    table.push(row("W1 ingest (spans/s)", api, raw));

    let reads = reads(&server, &server_url, &http, &data, Pace::full(&args), None).await;
    for (name, api, raw) in &reads.runs {
        table.push(latency_row(name, api, raw));
    }

    // Before W5, whose trace (the newest, with 1,000 root spans) would head the small
    // size's dashboard in the scale run's rounds.
    let scale_table = match args.scale_traces {
        Some(traces) => {
            scale(
                &args,
                traces,
                &dir,
                &http,
                (&server, &server_url, &data),
                reads.failed_page,
            )
            .await
        }
        None => Vec::new(),
    };

    // W5: live delivery.
    let (p50, p99, lost) = w5(&server, &http, args.subscribers, args.live_spans).await;

    println!();
    println!("| measurement | tracegraph | raw SQL | ratio |");
    println!("|---|---|---|---|");
    for line in &table {
        println!("{line}");
    }
    println!(
        "| W2 SQL statements per request | {:.1} (+ {:.1} in-process key change check) | 3 | |",
        reads.statements, reads.key_checks
    );
    println!(
        "| server peak RSS during W2 | {:.1} MB (resident at its start: {:.1} MB) | | |",
        reads.peak_rss_mb, reads.rss_before_mb
    );
    if let Some(row) = &reads.w3_union {
        println!("{row}");
    }
    for (name, api, raw) in &reads.alone {
        println!("{}", latency_row(&format!("{name}, one client"), api, raw));
    }
    for row in &reads.behind_http {
        println!("{row}");
    }
    for (name, per_sec) in &reads.floors {
        println!("| {name}: raw SQL in place, no round trip (req/s) | | {per_sec:.0} | |");
    }
    println!("{}", w5_row(&args, p50, p99, lost));
    drop(server);
    for line in scale_table {
        println!("{line}");
    }
    cleanup.await;
}

/// W2–W4 figures of one server: (name, tracegraph run, raw run) each.
struct Reads {
    runs: Vec<(String, Run, Run)>,
    /// The same reads from one client at a time (the first run only): each request's own
    /// latency, with no queue in front of it on either side.
    alone: Vec<(String, Run, Run)>,
    /// W4a′'s page size.
    failed_page: usize,
    /// On PostgreSQL, W3 against its own statement sent directly (a table row).
    w3_union: Option<String>,
    /// Each read against the same raw reads behind a minimal HTTP server (the first run
    /// only; table rows).
    behind_http: Vec<String>,
    /// On SQLite, the same raw reads run in place: (name, requests/s).
    floors: Vec<(String, f64)>,
    statements: f64,
    /// SQLite's in-process read of the key change counter, per request.
    key_checks: f64,
    peak_rss_mb: f64,
    /// Resident when W2 starts.
    rss_before_mb: f64,
}

/// W2–W4 on `server` and the same reads sent directly. `failed_page` is W4a′'s page: the
/// first run's count of failed runs when `None`.
async fn reads(
    server: &Server,
    database_url: &str,
    http: &reqwest::Client,
    data: &Data,
    pace: Pace,
    failed_page: Option<usize>,
) -> Reads {
    let (server_db, db, floor) = raw_side(database_url).await;
    let ids: Vec<String> = data
        .traces
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    let agent = data.traces[0]["agent"].as_str().unwrap().to_owned();
    let t_mid = data.traces[data.traces.len() / 2]["started_at"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut runs = Vec::new();

    settle(server_db.read.pool()).await;
    read_into_cache(server_db.read.pool(), database_url).await;
    // W2: the dashboard. The allocator returns freed pages to the system a second after
    // they are freed: the peak is W2's own, not what W1's batches left for that second.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_before_mb = server.status_kb("VmRSS:") as f64 / 1024.0;
    server.reset_peak_rss();
    let statements_before = server.statements(http).await;
    let client = Arc::new(Lean::new(&server.url));
    let w2_api = call({
        let client = client.clone();
        move |_| {
            let client = client.clone();
            async move { client.gql(DASHBOARD, json!({})).await }
        }
    });
    let w2_raw: ReadAt = Arc::new(|_| RawRead::Dashboard);
    let w2 = measure(pace, w2_api.clone()).await;
    let statements_after = server.statements(http).await;
    let per_request = |n: u64| n as f64 / w2.all_calls() as f64;
    let statements = per_request(statements_after.0 - statements_before.0);
    let key_checks = per_request(statements_after.1 - statements_before.1);
    let peak_rss_mb = server.status_kb("VmHWM:") as f64 / 1024.0;
    runs.push((
        "W2 dashboard".to_owned(),
        w2,
        measure(pace, sent_directly(&db, &w2_raw)).await,
    ));
    let mut both_sides = vec![("W2 dashboard".to_owned(), w2_api, w2_raw, pace)];

    // W3: one trace with everything.
    let ids = Arc::new(ids);
    let w3_api = call({
        let (client, ids) = (client.clone(), ids.clone());
        move |i| {
            let (client, id) = (client.clone(), ids[i * 7919 % ids.len()].clone());
            async move { client.gql(DETAIL, json!({"id": id})).await }
        }
    });
    let w3_raw: ReadAt = {
        let ids = ids.clone();
        Arc::new(move |i| RawRead::Detail {
            id: ids[i * 7919 % ids.len()].clone(),
        })
    };
    let w3 = measure(pace, w3_api.clone()).await;
    let w3_raw_run = measure(pace, sent_directly(&db, &w3_raw)).await;
    both_sides.push(("W3 trace detail".to_owned(), w3_api, w3_raw, pace));
    // On PostgreSQL tracegraph asks for W3 in one statement of its own (`store::detail`);
    // sent directly, that statement is a second baseline, beside the two plain reads.
    let w3_union = match &db {
        RawDb::Leases(_) => {
            let union = measure(
                pace,
                call({
                    let (db, ids) = (db.clone(), ids.clone());
                    move |i| raw_detail_union(db.clone(), ids[i * 7919 % ids.len()].clone())
                }),
            )
            .await;
            Some(latency_row(
                "W3 against raw SQL sending tracegraph's one UNION statement",
                &w3,
                &union,
            ))
        }
        _ => None,
    };
    runs.push(("W3 trace detail".to_owned(), w3, w3_raw_run));

    // W4: the debugging filters. W4a's answer grows with the data (a few failed runs in
    // the first run, a full page at scale); W4a′ asks for as many as the first run found
    // at every size, so that its scale ratio shows what the table's size alone costs.
    let failed_page = match failed_page {
        Some(page) => page,
        None => raw_failed_count(&db, &agent).await,
    };
    let filters: [(String, &str, Value, Filter); 4] = [
        (
            "W4a failed runs of an agent".to_owned(),
            FAILED,
            json!({"a": agent}),
            Filter::Failed { page: 50 },
        ),
        (
            format!("W4a′ failed runs of an agent, first {failed_page}"),
            FAILED_FIRST,
            json!({"a": agent, "n": failed_page}),
            Filter::Failed { page: failed_page },
        ),
        (
            "W4b tool spans of an agent in a window".to_owned(),
            TOOLS,
            json!({"a": agent, "from": t_mid, "to": "2026-12-01T00:00:00Z"}),
            Filter::Tools,
        ),
        (
            "W4c token totals of an agent".to_owned(),
            TOTALS,
            json!({"a": agent}),
            Filter::Totals,
        ),
    ];
    for (name, query, vars, filter) in filters {
        let api = call({
            let client = client.clone();
            move |_| {
                let (client, vars) = (client.clone(), vars.clone());
                async move { client.gql(query, vars).await }
            }
        });
        let read = RawRead::Filter {
            filter,
            agent: agent.clone(),
            from: t_mid.clone(),
        };
        let raw: ReadAt = Arc::new(move |_| read.clone());
        runs.push((
            name.clone(),
            measure(pace.halved(), api.clone()).await,
            measure(pace.halved(), sent_directly(&db, &raw)).await,
        ));
        both_sides.push((name, api, raw, pace.halved()));
    }
    let mut alone = Vec::new();
    let mut behind_http = Vec::new();
    if pace.first_run {
        let one = pace.alone();
        for (name, api, raw, _) in &both_sides {
            let api = measure(one, api.clone()).await;
            alone.push((name.clone(), api, measure(one, sent_directly(&db, raw)).await));
        }
        let raw_server = Server::raw(database_url).await;
        let raw_client = Arc::new(Lean::new(&raw_server.url));
        for ((name, _, raw, pace), (_, api, _)) in both_sides.iter().zip(&runs) {
            let behind = measure(*pace, sent_over_http(&raw_client, raw)).await;
            behind_http.push(latency_row(
                &format!("{name} against raw SQL behind a minimal HTTP server"),
                api,
                &behind,
            ));
        }
    }
    let mut floors = Vec::new();
    if let Some(floor) = &floor {
        for (name, _, raw, pace) in &both_sides {
            let run = measure(*pace, sent_directly(floor, raw)).await;
            floors.push((name.clone(), run.per_sec()));
        }
    }
    Reads {
        runs,
        alone,
        behind_http,
        w3_union,
        failed_page,
        floors,
        statements,
        key_checks,
        peak_rss_mb,
        rss_before_mb,
    }
}

/// Writes out what the loading left to write before anything is measured: at 1M spans
/// the operating system (and PostgreSQL's checkpointer) would otherwise write a gigabyte
/// back while tracegraph's side runs, and before the raw side's turn.
async fn settle(db: &DatabaseConnection) {
    if db.get_database_backend() == DbBackend::Postgres
        && let Err(e) = db.execute_unprepared("CHECKPOINT").await
    {
        eprintln!("no CHECKPOINT before measuring (it needs a superuser or pg_checkpoint): {e}");
    }
    let synced = tokio::process::Command::new("sync").status().await.expect("sync runs");
    assert!(synced.success(), "sync failed");
}

/// Reads a database's files into the operating system's cache. The machines these runs
/// are made on page out file cache that has gone a minute without a read (a DAMON
/// `pageout` scheme over unmapped file pages, up to 128 MB/s): between one round's reads
/// and the next, most of a 1.6 GB file went back to the disk, its reads then waited on
/// it, and the scale ratio measured the host's reclaim rather than the indexes (under
/// wrk, W3 on SQLite had a p50 of 2.5–5.2 ms at 1M spans with the file mostly out of the
/// cache, 1.3 ms read back in, 1.3 ms at 20k). Each size's reads start with this, in every
/// round, on both sides of the comparison alike; a scale round's reads last well under
/// that minute.
async fn read_into_cache(db: &DatabaseConnection, database_url: &str) {
    if db.get_database_backend() == DbBackend::Postgres {
        // `read`: into the operating system's cache, as the file reads below; PostgreSQL's
        // own buffers are its business. TOAST holds the long span texts.
        let prewarm = "SELECT count(pg_prewarm(c.oid, 'read')) FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'i', 't') AND n.nspname IN ('public', 'pg_toast')";
        let warmed = async {
            db.execute_unprepared("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
                .await?;
            db.execute_unprepared(prewarm).await
        };
        if let Err(e) = warmed.await {
            eprintln!("the database's files were not read into the cache (pg_prewarm): {e}");
        }
        return;
    }
    let path = tracegraph::db::sqlite_path(database_url).expect("a SQLite URL");
    tokio::task::spawn_blocking(move || {
        let mut wal = path.clone().into_os_string();
        wal.push("-wal");
        for file in [path, wal.into()] {
            if let Ok(mut f) = std::fs::File::open(&file) {
                std::io::copy(&mut f, &mut std::io::sink()).expect("the database file reads");
            }
        }
    })
    .await
    .unwrap();
}

/// The scale run: a larger data set loaded with the importer, then W2–W4 on both sizes in
/// short rounds, the first run's server beside one on the large database. Each round
/// measures one size right after the other (in turn first), so that both figures of a
/// ratio share the machine's state of those seconds: a ratio against the first run,
/// minutes and a gigabyte's import earlier, moved more between runs than the table's
/// size moves it.
/// Returns the table: each p50 ratio's median over the rounds (indexes keep it near 1)
/// and every round's.
async fn scale(
    args: &Args,
    traces: u32,
    dir: &tempfile::TempDir,
    http: &reqwest::Client,
    (small, small_url, small_data): (&Server, &str, &Data),
    failed_page: usize,
) -> Vec<String> {
    let data = generate_traces(traces, dir);
    let url = match &args.postgres {
        None => format!("sqlite://{}?mode=rwc", dir.path().join("scale.db").display()),
        Some(admin) => {
            let name = format!("tg_bench_scale_{}", uuid::Uuid::new_v4().simple());
            let admin_db = sea_orm::Database::connect(admin).await.unwrap();
            admin_db
                .execute_unprepared(&format!("CREATE DATABASE {name}"))
                .await
                .unwrap();
            same_server(admin, &name)
        }
    };
    let loaded = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_tracegraph"))
        .args([
            "import",
            dir.path().join("data.ndjson").to_str().unwrap(),
            "--database-url",
            &url,
        ])
        .output()
        .expect("import runs");
    assert!(
        out.status.success(),
        "import failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut table = vec![String::new()];
    table.push(format!(
        "scale run: {} traces, {} spans, imported in {:.0} s ({:.0} spans/s); {} rounds",
        data.traces.len(),
        data.spans.len(),
        loaded.elapsed().as_secs_f64(),
        data.spans.len() as f64 / loaded.elapsed().as_secs_f64(),
        args.scale_rounds
    ));
    let big = Server::start(&url, dir).await;
    let sizes = [(small, small_url, small_data), (&big, url.as_str(), &data)];
    // Each round's figures at both sizes: [20k, 1M].
    let mut rounds: Vec<[Reads; 2]> = Vec::new();
    for round in 0..args.scale_rounds {
        let order = if round.is_multiple_of(2) { [0, 1] } else { [1, 0] };
        let mut by_size = [None, None];
        for i in order {
            let (server, url, data) = sizes[i];
            by_size[i] = Some(reads(server, url, http, data, Pace::round(args), Some(failed_page)).await);
        }
        rounds.push(by_size.map(|reads| reads.expect("both sizes ran")));
    }
    table.push(format!(
        "| measurement | p50 {} spans ms | p50 {} spans ms | ratio | ratio per round | raw ratio |",
        small_data.spans.len(),
        data.spans.len()
    ));
    table.push("|---|---|---|---|---|---|".to_owned());
    let p50s = |m: usize, raw: bool| -> Vec<[f64; 2]> {
        rounds
            .iter()
            .map(|sizes| {
                sizes
                    .each_ref()
                    .map(|r| if raw { &r.runs[m].2 } else { &r.runs[m].1 }.pct(0.5))
            })
            .collect()
    };
    for (m, (name, ..)) in rounds[0][0].runs.iter().enumerate() {
        let raw_ratio = median(p50s(m, true).iter().map(|[small, big]| big / small).collect());
        table.push(format!("| {name} | {} {raw_ratio:.2} |", growth_cells(&p50s(m, false))));
    }
    // What the database's own reads cost at each size, without a server's or a pool's
    // hand-off around them.
    for (f, (name, _)) in rounds[0][0].floors.iter().enumerate() {
        let ms_per_read: Vec<[f64; 2]> = rounds
            .iter()
            .map(|sizes| sizes.each_ref().map(|r| 1000.0 / r.floors[f].1))
            .collect();
        table.push(format!(
            "| {name}: raw SQL in place, ms per read | {} |",
            growth_cells(&ms_per_read)
        ));
    }
    drop(big);
    if let Some(admin) = &args.postgres {
        // The path alone: the URL may carry options (`?sslmode=…`) after the name.
        let name = url::Url::parse(&url)
            .map(|u| u.path().trim_start_matches('/').to_owned())
            .unwrap_or_default();
        let admin_db = sea_orm::Database::connect(admin).await.unwrap();
        let _ = admin_db
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await;
    }
    table
}

/// Medians of the figures at each size over the rounds, the median of their ratios, and
/// every round's ratio: the cells of a scale table's row up to its last column.
fn growth_cells(per_round: &[[f64; 2]]) -> String {
    let ratios: Vec<f64> = per_round.iter().map(|[small, big]| big / small).collect();
    let each: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
    format!(
        "{:.3} | {:.3} | {:.2} | {} |",
        median(per_round.iter().map(|r| r[0]).collect()),
        median(per_round.iter().map(|r| r[1]).collect()),
        median(ratios),
        each.join(", ")
    )
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    }
}

const DASHBOARD: &str =
    "{ traces(limit: 50, sort: STARTED_AT_DESC) { totalCount items { id name status startedAt durationMs
    usage { totalTokens costUsd }
    rootSpans { name spanType startedAt endedAt error usage { totalTokens costUsd }
      children { name spanType startedAt endedAt error usage { totalTokens costUsd }
        children { name spanType startedAt endedAt error usage { totalTokens costUsd } } } } } } }";
const DETAIL: &str =
    "query($id: UUID!) { trace(id: $id) { id name agentId productId startedAt endedAt status error metadata
    spans { id parentId name spanType startedAt endedAt inputText outputText error metadata } } }";
const FAILED: &str =
    "query($a: UUID) { traces(filter: {agent: $a, hasError: true}) { items { id name error startedAt } } }";
const FAILED_FIRST: &str = "query($a: UUID, $n: Int) { traces(filter: {agent: $a, hasError: true}, limit: $n) { items { id name error startedAt } } }";
const TOOLS: &str = "query($a: UUID, $from: DateTime, $to: DateTime) { spans(filter: {agent: $a, spanType: TOOL, startedAfter: $from, startedBefore: $to}, limit: 100) { items { id name durationMs error } } }";
const TOTALS: &str =
    "query($a: UUID) { agentUsage(filter: {agent: $a}, limit: 1) { totals { llmCalls totalTokens costUsd } } }";

struct Data {
    traces: Vec<Value>,
    spans: Vec<Value>,
}

fn generate(args: &Args, dir: &tempfile::TempDir) -> Data {
    generate_traces(args.traces, dir)
}

fn generate_traces(traces: u32, dir: &tempfile::TempDir) -> Data {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/bench/gen_dataset.py");
    let path = dir.path().join("data.ndjson");
    let out = Command::new("python3")
        .args([script, "--traces", &traces.to_string(), "--spans", "20", "--seed", "7"])
        .output()
        .expect("python3 runs the generator");
    assert!(out.status.success(), "generator failed");
    std::fs::write(&path, &out.stdout).unwrap();
    let (mut traces, mut spans) = (vec![], vec![]);
    for line in out.stdout.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let v: Value = serde_json::from_slice(line).unwrap();
        if v["kind"] == "trace" {
            traces.push(v)
        } else {
            spans.push(v)
        }
    }
    Data { traces, spans }
}

/// (server database, raw-baseline database, cleanup)
async fn databases(args: &Args, dir: &tempfile::TempDir) -> (String, String, futures::future::BoxFuture<'static, ()>) {
    match &args.postgres {
        None => {
            let url = |n: &str| format!("sqlite://{}?mode=rwc", dir.path().join(n).display());
            (url("server.db"), url("raw.db"), Box::pin(async {}))
        }
        Some(admin) => {
            let admin_db = sea_orm::Database::connect(admin).await.expect("PostgreSQL");
            let suffix = uuid::Uuid::new_v4().simple().to_string();
            let names = [format!("tg_bench_{suffix}"), format!("tg_bench_raw_{suffix}")];
            for n in &names {
                admin_db
                    .execute_unprepared(&format!("CREATE DATABASE {n}"))
                    .await
                    .unwrap();
            }
            let urls = (same_server(admin, &names[0]), same_server(admin, &names[1]));
            let admin = admin.clone();
            let cleanup = Box::pin(async move {
                let admin_db = sea_orm::Database::connect(&admin).await.unwrap();
                for n in names {
                    let _ = admin_db
                        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {n} WITH (FORCE)"))
                        .await;
                }
            });
            (urls.0, urls.1, cleanup)
        }
    }
}

/// The URL of database `name` on the server `admin` points at, with the same options
/// (`?host=/var/run/postgresql` for a Unix socket, `sslmode`, …).
fn same_server(admin: &str, name: &str) -> String {
    let mut url = url::Url::parse(admin).expect("a PostgreSQL URL");
    url.set_path(name);
    url.to_string()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Server {
    child: Child,
    url: String,
    base: String,
}

impl Server {
    async fn start(database_url: &str, dir: &tempfile::TempDir) -> Self {
        let port = free_port();
        let log = std::fs::File::create(dir.path().join(format!("server-{port}.log"))).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_tracegraph"));
        command
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--database-url",
                database_url,
            ])
            .env("TRACEGRAPH_LOG", "warn")
            .stderr(log);
        Self::spawn(command, port).await
    }

    /// This program as the minimal HTTP server of raw reads (`serve_raw`).
    async fn raw(database_url: &str) -> Self {
        let port = free_port();
        let mut command = Command::new(std::env::current_exe().expect("this program"));
        command.args([
            "--serve-raw",
            &format!("127.0.0.1:{port}"),
            "--database-url",
            database_url,
        ]);
        Self::spawn(command, port).await
    }

    /// Starts `command` and waits until it answers `/readyz` on `port`.
    async fn spawn(mut command: Command, port: u16) -> Self {
        let child = command.stdout(Stdio::null()).spawn().expect("server starts");
        let base = format!("http://127.0.0.1:{port}");
        for _ in 0..200 {
            if reqwest::get(format!("{base}/readyz"))
                .await
                .is_ok_and(|r| r.status() == 200)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self {
            child,
            url: format!("{base}/graphql"),
            base,
        }
    }

    /// (SQL statements through the pools, in-process reads of the key change counter).
    async fn statements(&self, http: &reqwest::Client) -> (u64, u64) {
        let text = http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let counter = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        (
            counter("tracegraph_sql_statements_total"),
            counter("tracegraph_key_change_checks_total"),
        )
    }

    /// Resets the kernel's peak-RSS mark, so the next reading covers what follows.
    fn reset_peak_rss(&self) {
        let _ = std::fs::write(format!("/proc/{}/clear_refs", self.child.id()), "5");
    }

    /// A size line of the server's `/proc/PID/status` (`VmRSS:`, `VmHWM:`), in kB.
    fn status_kb(&self, line: &str) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix(line))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
            .unwrap_or(0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The parts of an answer the benchmark checks. The data is read through (every byte
/// parsed as JSON) but not built in memory: the raw side does not decode its cells
/// either, and both clients share the server's two cores.
#[derive(serde::Deserialize)]
struct Answer {
    data: Option<serde::de::IgnoredAny>,
    errors: Option<Value>,
}

async fn gql(http: &reqwest::Client, url: &str, query: &str, variables: Value) {
    let body = http
        .post(url)
        .json(&json!({"query": query, "variables": variables}))
        .send()
        .await
        .expect("request")
        .bytes()
        .await
        .expect("answer");
    check_answer(&body);
}

/// Valid JSON with `data` and without `errors`, read without building it in memory.
fn check_answer(body: &[u8]) {
    let answer: Answer = serde_json::from_slice(body).expect("JSON");
    assert!(
        answer.errors.is_none() && answer.data.is_some(),
        "{}",
        String::from_utf8_lossy(body)
    );
}

/// The measured reads' HTTP/1.1 client: keep-alive connections, one per caller at a
/// time, and nothing else. It shares the machine's cores with the server, and reqwest
/// (its pool, URL and header handling) took about 100 µs of CPU per small read, as much
/// as the whole raw read it is compared with; a read's latency ratio measured the
/// client as much as the server. This client costs what wrk costs per request.
struct Lean {
    address: String,
    path: String,
    host: hyper::header::HeaderValue,
    idle: std::sync::Mutex<Vec<SendRequest<Full<Bytes>>>>,
}

impl Lean {
    /// For `http://host:port/path`.
    fn new(url: &str) -> Self {
        let (address, path) = url
            .trim_start_matches("http://")
            .split_once('/')
            .expect("http://host:port/path");
        Self {
            host: address.parse().expect("host"),
            address: address.to_owned(),
            path: format!("/{path}"),
            idle: std::sync::Mutex::new(Vec::new()),
        }
    }

    async fn gql(&self, query: &str, variables: Value) {
        let body = serde_json::to_vec(&json!({"query": query, "variables": variables})).unwrap();
        let idle = self.idle.lock().unwrap().pop();
        let mut sender = match idle {
            Some(sender) if !sender.is_closed() => sender,
            _ => self.connect().await,
        };
        let request = hyper::Request::post(&self.path)
            .header(hyper::header::HOST, self.host.clone())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let response = sender.send_request(request).await.expect("request");
        assert_eq!(response.status(), hyper::StatusCode::OK);
        let body = response.into_body().collect().await.expect("answer").to_bytes();
        self.idle.lock().unwrap().push(sender);
        check_answer(&body);
    }

    async fn connect(&self) -> SendRequest<Full<Bytes>> {
        let stream = tokio::net::TcpStream::connect(&self.address).await.expect("connect");
        stream.set_nodelay(true).unwrap();
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(connection);
        sender
    }
}

/// Latencies of `requests` calls made by `clients` concurrent clients, and the wall time.
struct Run {
    latencies_ms: Vec<f64>,
    wall: Duration,
    /// Calls made before the measured ones.
    warm_up_calls: usize,
}

impl Run {
    fn all_calls(&self) -> usize {
        self.warm_up_calls + self.latencies_ms.len()
    }

    fn per_sec(&self) -> f64 {
        self.latencies_ms.len() as f64 / self.wall.as_secs_f64()
    }

    fn pct(&self, p: f64) -> f64 {
        let mut v = self.latencies_ms.clone();
        v.sort_by(f64::total_cmp);
        v[((v.len() as f64 - 1.0) * p) as usize]
    }
}

/// Unmeasured calls per client before each measurement: every pooled connection opens and
/// prepares its statements first, on both sides.
const WARM_UP_CALLS_PER_CLIENT: usize = 8;
/// A measurement lasts at least this long, however fast its calls: a few hundred
/// sub-millisecond calls are over before the machine's noise averages out.
const MIN_MEASURED: Duration = Duration::from_secs(2);
/// A scale round's measurements are shorter, and there are more rounds: the two sizes'
/// figures of a ratio are then taken seconds apart, not a minute, and the machine's
/// drift over minutes (W3's ratio moved 0.85–1.53 between one-minute rounds of one run)
/// falls out of the median.
const ROUND_MIN_MEASURED: Duration = Duration::from_millis(500);

/// How long each measurement runs, and with how many clients.
#[derive(Clone, Copy)]
struct Pace {
    clients: usize,
    /// At least this many calls (W4's queries make half as many each)...
    requests: usize,
    /// ...and calls for at least this long.
    min_time: Duration,
    /// Whether this is the first run, whose reads are then also measured from one client
    /// and against raw SQL behind a minimal HTTP server.
    first_run: bool,
}

impl Pace {
    /// The first run's measurements.
    fn full(args: &Args) -> Self {
        Self {
            clients: args.clients,
            requests: args.requests,
            min_time: MIN_MEASURED,
            first_run: true,
        }
    }

    /// One client at a time, after the first run's measurements: at 16 clients on two
    /// cores each latency is mostly the queue in front of the request, and on PostgreSQL
    /// the raw side's p50 is the share of reads that found a database process ready.
    fn alone(self) -> Self {
        Self {
            clients: 1,
            requests: self.requests / 4,
            min_time: MIN_MEASURED / 2,
            first_run: false,
        }
    }

    /// A scale round's.
    fn round(args: &Args) -> Self {
        Self {
            clients: args.clients,
            requests: args.requests / 4,
            min_time: ROUND_MIN_MEASURED,
            first_run: false,
        }
    }

    fn halved(self) -> Self {
        Self {
            requests: self.requests / 2,
            ..self
        }
    }
}

/// One read of W2–W4 on one side, the same whatever the clients: the `i`th call.
type Call = Arc<dyn Fn(usize) -> futures::future::BoxFuture<'static, ()> + Send + Sync>;

fn call<F, Fut>(read: F) -> Call
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    Arc::new(move |i| Box::pin(read(i)))
}

async fn measure(pace: Pace, call: Call) -> Run {
    let warm_up = pace.clients * WARM_UP_CALLS_PER_CLIENT;
    calls(pace.clients, warm_up, Duration::ZERO, call.clone()).await;
    let mut run = calls(pace.clients, pace.requests, pace.min_time, call).await;
    run.warm_up_calls = warm_up;
    run
}

/// At least `requests` calls, and calls for at least `min_time`, from `clients` concurrent
/// clients.
async fn calls(clients: usize, requests: usize, min_time: Duration, call: Call) -> Run {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (next, call) = (next.clone(), call.clone());
            tokio::spawn(async move {
                let mut latencies = vec![];
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= requests && started.elapsed() >= min_time {
                        return latencies;
                    }
                    let t = Instant::now();
                    call(i).await;
                    latencies.push(t.elapsed().as_secs_f64() * 1000.0);
                }
            })
        })
        .collect();
    let mut latencies_ms = vec![];
    for t in tasks {
        latencies_ms.extend(t.await.unwrap());
    }
    Run {
        latencies_ms,
        wall: started.elapsed(),
        warm_up_calls: 0,
    }
}

fn row(name: &str, api: f64, raw: f64) -> String {
    format!("| {name} | {api:.0} | {raw:.0} | {:.2} |", api / raw)
}

fn latency_row(name: &str, api: &Run, raw: &Run) -> String {
    format!(
        "| {name}: req/s; p50; p99 ms | {:.0}; {:.2}; {:.2} | {:.0}; {:.2}; {:.2} | {:.2} (req/s), {:.2} (p50) |",
        api.per_sec(),
        api.pct(0.5),
        api.pct(0.99),
        raw.per_sec(),
        raw.pct(0.5),
        raw.pct(0.99),
        api.per_sec() / raw.per_sec(),
        api.pct(0.5) / raw.pct(0.5)
    )
}

fn span_input(s: &Value) -> Value {
    json!({"id": s["id"], "traceId": s["trace_id"], "parentId": s["parent"], "name": s["name"],
           "spanType": s["span_type"].as_str().unwrap().to_uppercase(), "startedAt": s["started_at"],
           "endedAt": s["ended_at"], "inputText": s["input_text"], "outputText": s["output_text"],
           "error": s["error"], "metadata": s["metadata"]})
}

/// Writers share the traces, 50 at a time: one `createTraces`, one `addSpans` with their
/// 1,000 spans, one `endTraces`.
async fn w1_api(server: &Server, http: &reqwest::Client, data: &Data, writers: usize) -> f64 {
    let mut by_trace: HashMap<String, Vec<Value>> = HashMap::new();
    for s in &data.spans {
        by_trace
            .entry(s["trace_id"].as_str().unwrap().to_owned())
            .or_default()
            .push(span_input(s));
    }
    let chunks: Vec<Vec<(Value, Vec<Value>)>> = data
        .traces
        .chunks(50)
        .map(|c| {
            c.iter()
                .map(|t| {
                    (
                        t.clone(),
                        by_trace.remove(t["id"].as_str().unwrap()).unwrap_or_default(),
                    )
                })
                .collect()
        })
        .collect();
    let chunks = Arc::new(std::sync::Mutex::new(chunks));
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|_| {
            let (chunks, http, url) = (chunks.clone(), http.clone(), server.url.clone());
            tokio::spawn(async move {
                loop {
                    let Some(chunk) = chunks.lock().unwrap().pop() else { return };
                    let traces: Vec<Value> = chunk
                        .iter()
                        .map(|(t, _)| {
                            json!({"id": t["id"], "name": t["name"], "agentId": t["agent"], "productId": t["product_id"],
                                   "startedAt": t["started_at"], "metadata": t["metadata"]})
                        })
                        .collect();
                    let create = "mutation($i: [CreateTraceInput!]!) { createTraces(inputs: $i) { id } }";
                    gql(&http, &url, create, json!({"i": traces})).await;
                    let spans: Vec<Value> = chunk.iter().flat_map(|(_, s)| s.clone()).collect();
                    let add = "mutation($i: [AddSpanInput!]!) { addSpans(inputs: $i) { id } }";
                    gql(&http, &url, add, json!({"i": spans})).await;
                    let ends: Vec<Value> = chunk
                        .iter()
                        .map(|(t, _)| json!({"id": t["id"], "endedAt": t["ended_at"], "error": t["error"]}))
                        .collect();
                    let end = "mutation($i: [EndTraceInput!]!) { endTraces(inputs: $i) { id } }";
                    gql(&http, &url, end, json!({"i": ends})).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    data.spans.len() as f64 / started.elapsed().as_secs_f64()
}

/// The same rows inserted directly: traces, then spans in multi-row INSERTs of 500, a
/// transaction per 50 traces, by the same number of writers.
async fn w1_raw(db: &DatabaseConnection, data: &Data, writers: usize) -> f64 {
    let backend = db.get_database_backend();
    let mut by_trace: HashMap<&str, Vec<&Value>> = HashMap::new();
    for s in &data.spans {
        by_trace.entry(s["trace_id"].as_str().unwrap()).or_default().push(s);
    }
    let chunks: Vec<(Vec<Value>, Vec<Value>)> = data
        .traces
        .chunks(50)
        .map(|c| {
            (
                c.to_vec(),
                c.iter()
                    .flat_map(|t| by_trace[t["id"].as_str().unwrap()].iter().map(|s| (*s).clone()))
                    .collect(),
            )
        })
        .collect();
    let chunks = Arc::new(std::sync::Mutex::new(chunks));
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|_| {
            let (chunks, db) = (chunks.clone(), db.clone());
            tokio::spawn(async move {
                loop {
                    let Some((traces, spans)) = chunks.lock().unwrap().pop() else { return };
                    let txn = db.begin().await.unwrap();
                    for t in &traces {
                        let sql = format!(
                            "INSERT INTO trace (id, name, agent_id, product_id, started_at, ended_at, metadata) VALUES ({})",
                            placeholders(backend, 0, 7)
                        );
                        let values: Vec<sea_orm::Value> = vec![
                            uuid(&t["id"]).into(), t["name"].as_str().unwrap().into(), uuid(&t["agent"]).into(),
                            uuid(&t["product_id"]).into(), time(&t["started_at"]).into(), time(&t["ended_at"]).into(),
                            t["metadata"].clone().into(),
                        ];
                        txn.execute_raw(Statement::from_sql_and_values(backend, sql, values)).await.unwrap();
                    }
                    for batch in spans.chunks(500) {
                        let mut rows = vec![];
                        let mut values: Vec<sea_orm::Value> = vec![];
                        for (i, s) in batch.iter().enumerate() {
                            rows.push(format!("({})", placeholders(backend, i * 11, 11)));
                            let text = |k: &str| s[k].as_str().map(str::to_owned);
                            values.extend([
                                uuid(&s["id"]).into(), uuid(&s["trace_id"]).into(),
                                s["parent"].as_str().map(|p| uuid::Uuid::parse_str(p).unwrap()).into(),
                                s["name"].as_str().unwrap().into(), s["span_type"].as_str().unwrap().into(),
                                time(&s["started_at"]).into(), time(&s["ended_at"]).into(), text("input_text").into(),
                                text("output_text").into(), text("error").into(), s["metadata"].clone().into(),
                            ]);
                        }
                        let sql = format!(
                            "INSERT INTO span (id, trace_id, parent_id, name, span_type, started_at, ended_at, input_text, output_text, error, metadata) VALUES {}",
                            rows.join(", ")
                        );
                        txn.execute_raw(Statement::from_sql_and_values(backend, sql, values)).await.unwrap();
                    }
                    txn.commit().await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    data.spans.len() as f64 / started.elapsed().as_secs_f64()
}

fn uuid(v: &Value) -> uuid::Uuid {
    uuid::Uuid::parse_str(v.as_str().unwrap()).unwrap()
}

fn time(v: &Value) -> chrono::DateTime<chrono::Utc> {
    v.as_str().unwrap().parse().unwrap()
}

fn placeholders(backend: DbBackend, start: usize, n: usize) -> String {
    (1..=n)
        .map(|i| {
            if backend == DbBackend::Postgres {
                format!("${}", start + i)
            } else {
                "?".to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The raw side's database: the server's own connection setup and pool size, and where
/// the raw reads go (and, on a SQLite file, where they run in place). Each raw read is a
/// request to the database that others queue behind, as a server's would be. On
/// PostgreSQL the server's entity reads lease connections that are not pinged as they
/// come back; the raw reads do the same, so neither side pays a round trip the other
/// does not.
async fn raw_side(database_url: &str) -> (tracegraph::db::Db, RawDb, Option<RawDb>) {
    let max = tracegraph::config::DEFAULT_DB_MAX_CONNECTIONS;
    let server_db = tracegraph::db::connect(database_url, max).await.unwrap();
    let pool = server_db.read.pool().clone();
    let floor = match server_db.read.direct() {
        Some(Direct::Sqlite(reader)) => Some(RawDb::InPlace(reader.clone())),
        _ => None,
    };
    let db = if pool.get_database_backend() == DbBackend::Postgres {
        RawDb::Leases(Arc::new(
            ReadConnections::new(database_url, max, Duration::from_secs(5)).unwrap(),
        ))
    } else {
        RawDb::SqlitePool(pool)
    };
    (server_db, db, floor)
}

/// Where the raw side reads: on SQLite the server's kind of pool, on PostgreSQL leased
/// connections as the server's entity reads; or, for the floor on SQLite, in place
/// through the connections the server's own entity reads use (no round trip, so its
/// latency is the statement alone: only its throughput compares).
#[derive(Clone)]
enum RawDb {
    SqlitePool(DatabaseConnection),
    InPlace(Arc<SqliteReader>),
    Leases(Arc<ReadConnections>),
    /// On a few shared connections, pipelined, as tracegraph's entity reads on PostgreSQL.
    Pipelined(Arc<Pipelines>),
}

/// Runs a read and returns the first column of each row where it is an id (all a
/// caller needs); every cell of every row is received either way.
async fn query(db: &RawDb, sql: &str, values: Vec<sea_orm::Value>) -> Vec<uuid::Uuid> {
    match db {
        RawDb::InPlace(reader) => {
            let rows = reader
                .raw_rows(&Statement::from_sql_and_values(DbBackend::Sqlite, sql, values))
                .unwrap();
            rows.iter()
                .filter_map(|row| match row.first() {
                    Some(rusqlite::types::Value::Blob(id)) => uuid::Uuid::from_slice(id).ok(),
                    _ => None,
                })
                .collect()
        }
        RawDb::Leases(reads) => {
            let sql = numbered_parameters(sql);
            let mut lease = reads.lease().await.unwrap();
            let rows = sqlx::query_with(sqlx::AssertSqlSafe(sql), SqlxValues(Values(values)))
                .fetch_all(lease.connection())
                .await
                .unwrap();
            lease.finish();
            rows.iter()
                .filter_map(|r| r.try_get::<uuid::Uuid, _>("id").ok())
                .collect()
        }
        RawDb::Pipelined(pipelines) => {
            let mut ids = Vec::new();
            pipelines
                .each_row(&numbered_parameters(sql), Values(values), |row| {
                    ids.extend(row.try_get::<_, uuid::Uuid>("id").ok());
                    Ok(true)
                })
                .await
                .unwrap();
            ids
        }
        RawDb::SqlitePool(db) => db
            .query_all_raw(Statement::from_sql_and_values(DbBackend::Sqlite, sql, values))
            .await
            .unwrap()
            .iter()
            .filter_map(|r| r.try_get::<uuid::Uuid>("", "id").ok())
            .collect(),
    }
}

/// `?` placeholders as PostgreSQL's `$1`, `$2`, …
fn numbered_parameters(sql: &str) -> String {
    let mut n = 0;
    sql.chars()
        .map(|c| {
            if c == '?' {
                n += 1;
                format!("${n}")
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// What the server sends for W2, sent directly: the page, its count, its span trees.
async fn raw_dashboard(db: RawDb) {
    let traces = query(
        &db,
        "SELECT * FROM trace ORDER BY started_at DESC, id DESC LIMIT 51",
        vec![],
    )
    .await;
    query(&db, "SELECT COUNT(*) FROM trace", vec![]).await;
    let ids: Vec<sea_orm::Value> = traces.into_iter().take(50).map(Into::into).collect();
    let marks = vec!["?"; ids.len()].join(", ");
    query(
        &db,
        &format!("SELECT * FROM span WHERE trace_id IN ({marks}) ORDER BY started_at, id"),
        ids,
    )
    .await;
}

async fn raw_detail_union(db: RawDb, id: String) {
    let id = uuid::Uuid::parse_str(&id).unwrap();
    let union = store::detail::union_statement(&[id], Texts::Read, tracegraph::config::DEFAULT_MAX_TREE_SPANS);
    query(&db, &union.sql, union.values.map(|v| v.0).unwrap_or_default()).await;
}

async fn raw_detail(db: RawDb, id: String) {
    let id: sea_orm::Value = uuid::Uuid::parse_str(&id).unwrap().into();
    query(&db, "SELECT * FROM trace WHERE id = ?", vec![id.clone()]).await;
    query(
        &db,
        "SELECT * FROM span WHERE trace_id IN (?) ORDER BY started_at, id",
        vec![id],
    )
    .await;
}

/// How many failed runs of `agent` W4a's page shows (at most 50).
async fn raw_failed_count(db: &RawDb, agent: &str) -> usize {
    let agent: sea_orm::Value = uuid::Uuid::parse_str(agent).unwrap().into();
    query(db, &failed_runs(50), vec![agent]).await.len().max(1)
}

/// The newest `limit` failed traces of an agent.
fn failed_runs(limit: usize) -> String {
    format!("SELECT * FROM trace WHERE agent_id = ? AND has_error ORDER BY started_at DESC, id DESC LIMIT {limit}")
}

/// One raw read of W2–W4, run by the raw side, or sent to the minimal HTTP server
/// (`--serve-raw`) as a request's variables for it to run.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
enum RawRead {
    Dashboard,
    Detail {
        id: String,
    },
    Filter {
        filter: Filter,
        agent: String,
        from: String,
    },
}

impl RawRead {
    async fn run(self, db: RawDb) {
        match self {
            Self::Dashboard => raw_dashboard(db).await,
            Self::Detail { id } => raw_detail(db, id).await,
            Self::Filter { filter, agent, from } => raw_filter(db, filter, agent, from).await,
        }
    }
}

/// The raw read of a measurement's `i`th call.
type ReadAt = Arc<dyn Fn(usize) -> RawRead + Send + Sync>;

fn sent_directly(db: &RawDb, read: &ReadAt) -> Call {
    let (db, read) = (db.clone(), read.clone());
    call(move |i| read(i).run(db.clone()))
}

fn sent_over_http(client: &Arc<Lean>, read: &ReadAt) -> Call {
    let (client, read) = (client.clone(), read.clone());
    call(move |i| {
        let (client, read) = (client.clone(), serde_json::to_value(read(i)).unwrap());
        async move { client.gql(RAW_READ, read).await }
    })
}

/// What the minimal HTTP server is asked: the variables are the read.
const RAW_READ: &str = "raw";

/// The least any server in front of the database does per read: an HTTP/1.1 request
/// parsed, its JSON body read, the raw SQL run on the raw side's connections, and a
/// constant answer (no rows encoded). The bench runs it as its own process, as
/// tracegraph runs, on the same cores; the figure against it is what the server costs
/// beyond HTTP and the database.
async fn serve_raw(listen: &str, database_url: &str) {
    #[derive(serde::Deserialize)]
    struct Request {
        variables: RawRead,
    }
    use axum::serve::ListenerExt;
    let (_, mut db, _) = raw_side(database_url).await;
    // On PostgreSQL, tracegraph's way of reading: fewer connections, each busier.
    let lanes = tracegraph::db::pipelined_connections(tracegraph::config::DEFAULT_DB_MAX_CONNECTIONS);
    if let RawDb::Leases(_) = db
        && let Some(pipelines) = Pipelines::for_url(database_url, lanes, Duration::from_secs(5))
    {
        db = RawDb::Pipelined(Arc::new(pipelines));
    }
    let answer = |axum::extract::State(db): axum::extract::State<RawDb>, axum::Json(request): axum::Json<Request>| async move {
        request.variables.run(db).await;
        (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            r#"{"data":{}}"#,
        )
    };
    let router = axum::Router::new()
        .route("/graphql", axum::routing::post(answer))
        .route("/readyz", axum::routing::get(|| async { "ready" }))
        .with_state(db);
    let listener = tokio::net::TcpListener::bind(listen).await.expect("listen");
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router).await.expect("serve");
}

/// A W4 read, as the raw side sends it.
#[derive(Clone, Copy, serde::Serialize, serde::Deserialize)]
enum Filter {
    /// The newest failed traces of an agent, `page` of them (the API's default page is 50).
    Failed {
        page: usize,
    },
    Tools,
    Totals,
}

async fn raw_filter(db: RawDb, filter: Filter, agent: String, from: String) {
    let agent: sea_orm::Value = uuid::Uuid::parse_str(&agent).unwrap().into();
    match filter {
        Filter::Failed { page } => {
            query(&db, &failed_runs(page + 1), vec![agent]).await;
        }
        Filter::Tools => {
            let from: chrono::DateTime<chrono::Utc> = from.parse().unwrap();
            let to: chrono::DateTime<chrono::Utc> = "2026-12-01T00:00:00Z".parse().unwrap();
            query(
                &db,
                "SELECT * FROM span WHERE agent_id = ? AND span_type = 'tool' AND started_at >= ? AND started_at < ? ORDER BY started_at, id LIMIT 101",
                vec![agent, from.into(), to.into()],
            )
            .await;
        }
        Filter::Totals => {
            query(
                &db,
                "SELECT COUNT(*), SUM(llm_calls), SUM(total_tokens), SUM(cost_usd) FROM agent_usage WHERE agent_id = ?",
                vec![agent],
            )
            .await;
        }
    }
}

fn w5_row(args: &Args, p50: f64, p99: f64, lost: usize) -> String {
    format!(
        "| W5 live, {} subscribers, {} spans | p50 {p50:.2} ms, p99 {p99:.2} ms, lost {lost} | | |",
        args.subscribers, args.live_spans
    )
}

/// A subscription message, as much of it as W5 reads.
#[derive(serde::Deserialize)]
struct LiveMessage {
    #[serde(rename = "type")]
    kind: String,
    payload: Option<LivePayload>,
}

#[derive(serde::Deserialize)]
struct LivePayload {
    data: Option<LiveData>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct LiveData {
    span_added: LiveSpan,
}

#[derive(serde::Deserialize)]
struct LiveSpan {
    name: String,
}

/// W5: subscribers on one trace's new spans; one writer adds spans one by one.
async fn w5(server: &Server, http: &reqwest::Client, subscribers: usize, spans: usize) -> (f64, f64, usize) {
    let url = server.url.clone();
    let body: Value = http
        .post(&url)
        .json(&json!({"query": "mutation { createTrace(input: {name: \"w5\"}) { id } }"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let trace_id = body["data"]["createTrace"]["id"].as_str().unwrap().to_owned();
    let ws_url = url.replace("http://", "ws://") + "/ws";
    let mut readers = vec![];
    for _ in 0..subscribers {
        let mut request = ws_url.as_str().into_client_request().unwrap();
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse().unwrap());
        let (mut ws, _) = tokio_tungstenite::connect_async(request).await.expect("ws");
        ws.send(Message::text(json!({"type": "connection_init"}).to_string()))
            .await
            .unwrap();
        let q = "subscription($t: UUID) { spanAdded(traceId: $t) { name } }";
        ws.send(Message::text(
            json!({"id": "1", "type": "subscribe", "payload": {"query": q, "variables": {"t": trace_id}}}).to_string(),
        ))
        .await
        .unwrap();
        readers.push(tokio::spawn(async move {
            let mut received: HashMap<usize, Instant> = HashMap::new();
            while received.len() < spans {
                let Ok(Some(Ok(msg))) = tokio::time::timeout(Duration::from_secs(5), ws.next()).await else {
                    break;
                };
                // Received now: reading the message is the subscriber's own time.
                let at = Instant::now();
                let Message::Text(text) = msg else { continue };
                let message: LiveMessage = serde_json::from_str(&text).unwrap();
                if message.kind == "next"
                    && let Some(Ok(i)) = message.payload.and_then(|p| p.data).map(|d| d.span_added.name.parse())
                {
                    received.insert(i, at);
                }
            }
            received
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut acked = Vec::with_capacity(spans);
    for i in 0..spans {
        let input = json!({"traceId": trace_id, "name": i.to_string(), "spanType": "TOOL"});
        gql(
            http,
            &url,
            "mutation($i: AddSpanInput!) { addSpan(input: $i) { id } }",
            json!({"i": input}),
        )
        .await;
        acked.push(Instant::now());
    }
    let mut delays = vec![];
    let mut lost = 0;
    for reader in readers {
        let received = reader.await.unwrap();
        lost += spans - received.len();
        for (i, at) in received {
            // Usually an event arrives before the writer reads its acknowledgement: 0.
            delays.push(at.saturating_duration_since(acked[i]).as_secs_f64() * 1000.0);
        }
    }
    delays.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        delays
            .get(((delays.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    (pct(0.5), pct(0.99), lost)
}
