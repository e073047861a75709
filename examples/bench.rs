//! Benchmarks of the published workload (`shared/bench/WORKLOAD.md`) against a server
//! this program starts itself. Prints figures; asserts nothing.
//!
//!     cargo run --release --example bench -- live [--subscribers 100] [--spans 1000]
//!         [--database-url URL]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tracegraph::app::App;
use tracegraph::config::Config;

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    workload: Workload,
    /// Database to run against; default a fresh SQLite file in a temporary folder.
    #[arg(long, global = true)]
    database_url: Option<String>,
}

#[derive(Subcommand)]
enum Workload {
    /// W5: subscribers on live spans while one writer adds spans; delay from the
    /// write's acknowledgement to each subscriber's receipt, and lost events.
    Live {
        #[arg(long, default_value_t = 100)]
        subscribers: usize,
        #[arg(long, default_value_t = 1000)]
        spans: usize,
    },
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let dir = tempfile::tempdir().expect("temp dir");
    let database_url = args
        .database_url
        .unwrap_or_else(|| format!("sqlite://{}?mode=rwc", dir.path().join("bench.db").display()));
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url,
        ..Config::default()
    };
    let app = App::build(config).await.expect("server starts");
    let addr = app.local_addr();
    tokio::spawn(app.run_until(std::future::pending()));
    println!(
        "machine: {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    match args.workload {
        Workload::Live { subscribers, spans } => live(addr, subscribers, spans).await,
    }
}

async fn gql(http: &reqwest::Client, addr: std::net::SocketAddr, query: &str, variables: Value) -> Value {
    let body: Value = http
        .post(format!("http://{addr}/graphql"))
        .json(&json!({"query": query, "variables": variables}))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("JSON");
    assert!(body.get("errors").is_none(), "{body}");
    body["data"].clone()
}

async fn live(addr: std::net::SocketAddr, subscribers: usize, spans: usize) {
    let http = reqwest::Client::new();
    let trace = gql(
        &http,
        addr,
        "mutation { createTrace(input: {name: \"w5\"}) { id } }",
        json!({}),
    )
    .await;
    let trace_id = trace["createTrace"]["id"].as_str().unwrap().to_owned();

    let mut readers = Vec::new();
    for _ in 0..subscribers {
        let mut request = format!("ws://{addr}/graphql/ws").into_client_request().unwrap();
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse().unwrap());
        let (mut ws, _) = tokio_tungstenite::connect_async(request).await.expect("ws");
        ws.send(Message::text(json!({"type": "connection_init"}).to_string()))
            .await
            .unwrap();
        let query = "subscription($t: UUID) { spanAdded(traceId: $t) { name } }";
        ws.send(Message::text(
            json!({"id": "1", "type": "subscribe", "payload": {"query": query, "variables": {"t": trace_id}}})
                .to_string(),
        ))
        .await
        .unwrap();
        readers.push(tokio::spawn(async move {
            let mut received: HashMap<usize, Instant> = HashMap::new();
            let deadline = Duration::from_secs(5);
            while received.len() < spans {
                let Ok(Some(Ok(msg))) = tokio::time::timeout(deadline, ws.next()).await else {
                    break;
                };
                let Message::Text(text) = msg else { continue };
                let v: Value = serde_json::from_str(&text).unwrap();
                if v["type"] == "next" {
                    let name = v["payload"]["data"]["spanAdded"]["name"].as_str().unwrap_or_default();
                    if let Ok(i) = name.parse() {
                        received.insert(i, Instant::now());
                    }
                }
            }
            received
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let add = "mutation($i: AddSpanInput!) { addSpan(input: $i) { id } }";
    let mut acked = Vec::with_capacity(spans);
    let started = Instant::now();
    for i in 0..spans {
        let input = json!({"traceId": trace_id, "name": i.to_string(), "spanType": "TOOL"});
        gql(&http, addr, add, json!({"i": input})).await;
        acked.push(Instant::now());
    }
    let write_secs = started.elapsed().as_secs_f64();

    let mut delays = Vec::with_capacity(subscribers * spans);
    let mut lost = 0;
    for reader in readers {
        let received = reader.await.unwrap();
        lost += spans - received.len();
        for (i, at) in received {
            // Events usually arrive before the writer reads its own acknowledgement: 0.
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
    println!(
        "W5 live: {subscribers} subscribers, {spans} spans written one by one ({:.0} writes/s)",
        spans as f64 / write_secs
    );
    println!("| delay p50 | delay p99 | max | lost |");
    println!("|---|---|---|---|");
    println!(
        "| {:.2} ms | {:.2} ms | {:.2} ms | {lost} |",
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
}
