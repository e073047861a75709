//! GraphiQL in a real browser: headless Chromium opens the page (everything it loads comes
//! from the server, so no internet access is needed), runs the query it starts with, and
//! runs a subscription over the page's WebSocket, also with an API key from the Headers
//! tab. Needs Chromium, so these tests are
//! ignored by a plain `cargo test`: `.ci/run` installs Chromium and runs them
//! (`cargo test --test api graphiql -- --ignored`); `TRACEGRAPH_TEST_CHROMIUM` names
//! another browser binary. What the page loads is checked without a browser in `http.rs`.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::helpers::{TestApp, spawn_app};

type DevTools = WebSocketStream<MaybeTlsStream<TcpStream>>;

#[tokio::test]
#[ignore = "needs Chromium: `.ci/run` installs it and runs this test"]
async fn graphiql_runs_its_first_query_in_a_browser() {
    let app = spawn_app().await;
    app.create_trace(json!({"name": "seen-in-graphiql"})).await;
    let mut page = Page::open(&app).await;
    let shown = page.run_until(None, |shown| shown.answer.contains("\"data\"")).await;
    let answer = shown.answer;
    assert!(
        answer.contains("seen-in-graphiql") && answer.contains("\"totalCount\": 1"),
        "the answer pane shows the trace: {answer}"
    );
    assert!(!answer.contains("\"errors\""), "the first query is valid: {answer}");
}

/// A subscription typed into GraphiQL goes over the page's WebSocket (graphql-transport-ws,
/// from a browser) and shows a span written afterwards.
#[tokio::test]
#[ignore = "needs Chromium: `.ci/run` installs it and runs this test"]
async fn graphiql_subscribes_to_live_spans_in_a_browser() {
    let app = spawn_app().await;
    let trace = app.create_trace(json!({"name": "live"})).await;
    let mut page = Page::open(&app).await;
    let subscription = "subscription { spanAdded { name spanType } }";
    page.subscribe(&app, subscription).await;
    app.add_spans(json!([{"traceId": trace["id"], "name": "seen-live", "spanType": "TOOL"}]))
        .await;
    let shown = page.until_shown("seen-live").await;
    assert!(
        shown.answer.contains("\"spanType\": \"TOOL\""),
        "the whole event: {shown:?}"
    );
}

/// With API keys in use, the key typed into GraphiQL's Headers tab serves its queries and
/// its subscriptions alike: GraphiQL sends those headers as the socket's `connection_init`
/// payload, where the server looks for the key (`Authorization`).
#[tokio::test]
#[ignore = "needs Chromium: `.ci/run` installs it and runs this test"]
async fn graphiql_uses_the_headers_tab_key_for_subscriptions_too() {
    let app = spawn_app().await;
    let trace = app.create_trace(json!({"name": "keyed"})).await;
    let key = app.create_key("graphiql", &["read", "ingest"], &[]).await;
    let mut page = Page::open(&app).await;
    page.set_headers(&json!({"Authorization": format!("Bearer {key}")}))
        .await;
    // GraphiQL takes an editor's change in after a pause: a press before that runs without
    // the key (UNAUTHENTICATED), and is made again.
    let shown = page.run_until(None, |shown| shown.answer.contains("keyed")).await;
    assert!(
        !shown.answer.contains("\"errors\""),
        "the query ran with the key: {shown:?}"
    );
    let subscription = "subscription { spanAdded { name } }";
    page.subscribe(&app, subscription).await;
    let add = "mutation($i: AddSpanInput!) { addSpan(input: $i) { id } }";
    let input = json!({"i": {"traceId": trace["id"], "name": "seen-with-key", "spanType": "TOOL"}});
    let (status, body) = app.gql_as(&key, add, input).await;
    assert_eq!(status, 200, "{body}");
    page.until_shown("seen-with-key").await;
}

/// GraphiQL's answer pane, and whether its run button has become a stop button (a
/// query in flight or a subscription open).
#[derive(Debug)]
struct Shown {
    answer: String,
    running: bool,
}

/// A headless Chromium showing the server's GraphiQL page, driven over its DevTools
/// socket. The browser is killed when this is dropped.
struct Page {
    devtools: DevTools,
    asked: u64,
    _browser: tokio::process::Child,
    _profile: tempfile::TempDir,
}

impl Page {
    async fn open(app: &TestApp) -> Page {
        let profile = tempfile::tempdir().unwrap();
        let chromium = std::env::var("TRACEGRAPH_TEST_CHROMIUM").unwrap_or_else(|_| "chromium".to_owned());
        let browser = tokio::process::Command::new(&chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--remote-debugging-port=0",
                &format!("--user-data-dir={}", profile.path().display()),
                &format!("{}/graphql", app.base),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("{chromium} does not start ({e}); apt-get install chromium"));
        let mut page = Page {
            devtools: devtools_of_page(&app.http, profile.path()).await,
            asked: 0,
            _browser: browser,
            _profile: profile,
        };
        // Ask only once the page has loaded: before, the tab may still show its first,
        // blank document, and a script sent while ours loads runs in one then replaced.
        let started = Instant::now();
        while page.value_of("location.pathname + ' ' + document.readyState").await != "/graphql complete" {
            assert!(started.elapsed() < Duration::from_secs(30), "the page did not load");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        page
    }

    /// Puts `query` in GraphiQL's editor when given, then presses the run button until
    /// `done` holds for what the page shows. A press before GraphiQL is ready does
    /// nothing, so while nothing runs it is pressed again every five seconds.
    async fn run_until(&mut self, query: Option<&str>, done: impl Fn(&Shown) -> bool) -> Shown {
        let put = format!(
            r#"(() => {{
              const editor = document.querySelector(".graphiql-query-editor .CodeMirror")?.CodeMirror;
              if (editor && {query} !== null) editor.setValue({query});
              return Boolean(editor);
            }})()"#,
            query = json!(query)
        );
        let press = r#"document.querySelector(".graphiql-execute-button")?.click()"#;
        let started = Instant::now();
        while self.value_of(&put).await != true {
            assert!(started.elapsed() < Duration::from_secs(30), "GraphiQL showed no editor");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut pressed: Option<Instant> = None;
        loop {
            let shown = self.shown().await;
            if done(&shown) {
                return shown;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "GraphiQL did not run it: {shown:?}"
            );
            if !shown.running && pressed.is_none_or(|at| at.elapsed() > Duration::from_secs(5)) {
                self.value_of(press).await;
                pressed = Some(Instant::now());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Types `headers` into the Headers tab's editor (the second of the tool editors,
    /// after Variables), waiting for GraphiQL to draw it.
    async fn set_headers(&mut self, headers: &Value) {
        let put = format!(
            r#"(() => {{
              const editor = document.querySelectorAll(".graphiql-editor-tool .CodeMirror")[1]?.CodeMirror;
              if (editor) editor.setValue({text});
              return Boolean(editor);
            }})()"#,
            text = json!(headers.to_string())
        );
        let started = Instant::now();
        while self.value_of(&put).await != true {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "GraphiQL showed no Headers editor"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs `subscription` in GraphiQL and waits until the server has it running.
    async fn subscribe(&mut self, app: &TestApp, subscription: &str) {
        self.run_until(Some(subscription), |shown| shown.running).await;
        let started = Instant::now();
        while app.metric("tracegraph_live_executions").await == 0 {
            let shown = self.shown().await;
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "no subscription reached the server: {shown:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// What the page shows once its answer pane holds `text`.
    async fn until_shown(&mut self, text: &str) -> Shown {
        let started = Instant::now();
        loop {
            let shown = self.shown().await;
            if shown.answer.contains(text) {
                return shown;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "no {text} shown: {shown:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn shown(&mut self) -> Shown {
        let shown = self
            .value_of(
                r#"({
                  answer: document.querySelector(".graphiql-response")?.innerText ?? "",
                  running: Boolean(document.querySelector(".graphiql-execute-button")
                    ?.getAttribute("aria-label")?.startsWith("Stop")),
                })"#,
            )
            .await;
        Shown {
            answer: shown["answer"].as_str().unwrap().to_owned(),
            running: shown["running"] == true,
        }
    }

    /// The value of `expression` in the page (a promise awaited); a panic saying what it
    /// threw if it threw.
    async fn value_of(&mut self, expression: &str) -> Value {
        self.asked += 1;
        let call = json!({
            "id": self.asked,
            "method": "Runtime.evaluate",
            "params": {"expression": expression, "awaitPromise": true, "returnByValue": true},
        });
        self.devtools.send(Message::text(call.to_string())).await.unwrap();
        loop {
            let message = tokio::time::timeout(Duration::from_secs(60), self.devtools.next())
                .await
                .expect("DevTools answers within a minute")
                .expect("the DevTools socket stays open")
                .unwrap();
            let Message::Text(text) = message else { continue };
            let reply: Value = serde_json::from_str(text.as_str()).unwrap();
            if reply["id"] == self.asked {
                let result = &reply["result"];
                assert!(
                    result["exceptionDetails"].is_null(),
                    "the page's script failed: {result}"
                );
                return result["result"]["value"].clone();
            }
        }
    }
}

/// The DevTools socket of the browser's page. Chromium writes the port it chose into the
/// profile once it listens.
async fn devtools_of_page(http: &reqwest::Client, profile: &Path) -> DevTools {
    let started = Instant::now();
    let waited = || {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "Chromium opened no page in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50))
    };
    let port = loop {
        let written = std::fs::read_to_string(profile.join("DevToolsActivePort")).unwrap_or_default();
        match written.lines().next() {
            Some(port) if !port.is_empty() => break port.to_owned(),
            _ => waited().await,
        }
    };
    let list = format!("http://127.0.0.1:{port}/json/list");
    loop {
        let targets: Value = http.get(&list).send().await.unwrap().json().await.unwrap();
        let page = targets
            .as_array()
            .and_then(|targets| targets.iter().find(|target| target["type"] == "page"))
            .and_then(|page| page["webSocketDebuggerUrl"].as_str());
        if let Some(url) = page {
            return tokio_tungstenite::connect_async(url).await.unwrap().0;
        }
        waited().await;
    }
}
